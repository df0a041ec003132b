//! A value the warehouse refuses belongs to its table: that table stops, with a message naming
//! it and the offsets, and the tables after it keep merging (issue "no record can stall
//! tidemark"). PostgreSQL: a number overflowing a declared numeric(5,2); SQLite: two columns
//! whose names differ only in case.

use serde_json::json;
use tidemark_core::config::Config;
use tidemark_e2e::bronze_fixture::{BronzeFixture, change};
use tidemark_e2e::on_both;
use tidemark_e2e::warehouse::{rows, table, v};
use tidemark_warehouse::sql::conn::Pool;

async fn refused_values_stop_only_their_table(pool: Pool) {
    let mut bronze = BronzeFixture::new();
    let bad = match pool {
        // numeric(5,2) holds at most 999.99.
        Pool::Postgres(_) => json!({"id": 1, "balance": 123456.78}),
        // SQLite names are case-insensitive: two columns, one name.
        Pool::Sqlite(_) => json!({"id": 1, "Name": "a", "name": "b"}),
    };
    bronze
        .land(
            "bank.public.aaa_accounts",
            0,
            &[change("c", &json!(1), None, Some(bad), 100, 1000)],
        )
        .await;
    for t in ["bank.public.zzz_one", "bank.public.zzz_two"] {
        bronze
            .land(
                t,
                0,
                &[change(
                    "c",
                    &json!(1),
                    None,
                    Some(json!({"id": 1, "x": "ok"})),
                    100,
                    1000,
                )],
            )
            .await;
    }
    let config = Config::from_toml_and_env(
        "[[tables]]\nsource = \"bank.public.aaa_accounts\"\ncolumns = { balance = \"numeric(5,2)\" }\n",
        std::iter::empty(),
    )
    .unwrap();
    let mut m = bronze.merger(&pool, &config).await;
    let st = m
        .catch_up()
        .await
        .expect("one table's data never fails the cycle");
    let why = &st.stopped["aaa_accounts"];
    assert!(
        why.contains("refused") && why.contains("bank.public.aaa_accounts[0] offsets 0..=0"),
        "{why}"
    );
    for t in ["zzz_one", "zzz_two"] {
        let got = rows(
            &pool,
            &format!("SELECT x FROM {}", table(&pool, "silver", t)),
        )
        .await;
        assert_eq!(got, vec![v(&["ok"])], "{t} merged after the stopped table");
    }
}
on_both!(
    refused_values_stop_only_their_table,
    refused_values_sqlite,
    refused_values_postgres
);
