//! The cases real connectors produce that bend history if the merger gets them wrong (issue
//! "merger correctness"): re-snapshots and the first transaction after a snapshot, other
//! connectors' positions, upsert facts with deletes and NULL references. Each runs on SQLite and
//! PostgreSQL.

use serde_json::{Value as Json, json};
use tidemark_core::config::Config;
use tidemark_e2e::bronze_fixture::{BronzeFixture, change, change_with_source, pg_source};
use tidemark_e2e::on_both;
use tidemark_e2e::warehouse::{rows, table, text, v, versions};
use tidemark_warehouse::merger::{MergeOptions, Merger};
use tidemark_warehouse::sql::conn::Pool;

const CUSTOMERS: &str = "bank.public.customers";
const BALANCES: &str = "bank.public.balances";
const ORDERS: &str = "shop.dbo.orders";
const SALES: &str = "shop.dbo.sales";

const TABLES: &str = r#"
[[tables]]
source = "bank.public.customers"
kind = "dimension"
key = ["id"]
[[tables]]
source = "bank.public.accounts"
kind = "dimension"
key = ["id"]
[[tables]]
source = "bank.public.balances"
kind = "fact"
key = ["id"]
upsert = true
references = { account_id = "bank.public.accounts" }
[[tables]]
source = "shop.dbo.sales"
kind = "fact"
"#;

async fn merger(pool: &Pool, bronze: &BronzeFixture) -> Merger {
    let config = Config::from_toml_and_env(TABLES, std::iter::empty()).expect("test config");
    Merger::with(
        pool.clone(),
        bronze.store.clone(),
        bronze.root.clone(),
        &config,
        MergeOptions::from_config(&config),
    )
    .await
    .expect("merger")
}

fn customer(id: i64, tier: &str) -> Json {
    json!({"id": id, "tier": tier})
}

/// Streamed history, then a re-snapshot (`sequence` = `[null, lsn]`: one read equal to the
/// current row, one changed), then the first transaction after it (also a null commit LSN),
/// then an ordinary one.
async fn resnapshot_and_first_transaction_take_their_place(pool: Pool) {
    let mut bronze = BronzeFixture::new();
    let up = |op: &str, id: i64, tier: &str, src: Json| {
        change_with_source(op, &json!(id), None, Some(customer(id, tier)), src)
    };
    bronze
        .land(
            CUSTOMERS,
            0,
            &[
                up("r", 1, "silver", pg_source(None, 1000, 1000, true)),
                up("r", 2, "silver", pg_source(None, 1000, 1000, true)),
                up("u", 1, "gold", pg_source(None, 1100, 1100, false)),
                up("u", 2, "gold", pg_source(Some(1150), 1200, 1200, false)),
            ],
        )
        .await;
    let mut m = merger(&pool, &bronze).await;
    m.catch_up().await.expect("merge");
    // `snapshot.mode=always` after a restart: reads at the new snapshot's LSN.
    bronze
        .land(
            CUSTOMERS,
            0,
            &[
                up("r", 1, "gold", pg_source(None, 5000, 5000, true)),
                up("r", 2, "platinum", pg_source(None, 5000, 5000, true)),
                up("u", 1, "bronze", pg_source(None, 5100, 5100, false)),
                up("u", 2, "iron", pg_source(Some(5150), 5200, 5200, false)),
            ],
        )
        .await;
    m.catch_up().await.expect("merge");
    assert_eq!(
        versions(&pool, "customers", 1, "tier").await,
        vec![
            v(&["1", "1000", "1100", "", "", "", "silver"]),
            v(&["2", "1100", "5100", "", "", "", "gold"]),
            v(&["3", "5100", "NULL", "cur", "", "", "bronze"]),
        ],
        "a re-snapshot read equal to the current row makes no version"
    );
    assert_eq!(
        versions(&pool, "customers", 2, "tier").await,
        vec![
            v(&["1", "1000", "1200", "", "", "", "silver"]),
            v(&["2", "1200", "5000", "", "", "", "gold"]),
            v(&["3", "5000", "5200", "", "", "", "platinum"]),
            v(&["4", "5200", "NULL", "cur", "", "", "iron"]),
        ]
    );
    let silver = rows(
        &pool,
        &format!(
            "SELECT {}, tier FROM {} ORDER BY id",
            text(&pool, "id"),
            table(&pool, "silver", "customers")
        ),
    )
    .await;
    assert_eq!(silver, vec![v(&["1", "bronze"]), v(&["2", "iron"])]);

    // The same on a table that is not configured (silver only).
    bronze
        .land(
            "bank.public.branches",
            0,
            &[
                up("u", 1, "old", pg_source(Some(900), 950, 950, false)),
                up("r", 1, "snap", pg_source(None, 5000, 5000, true)),
            ],
        )
        .await;
    bronze
        .land(
            "bank.public.branches",
            0,
            &[up("r", 1, "resnap", pg_source(None, 6000, 6000, true))],
        )
        .await;
    m.catch_up().await.expect("merge");
    let silver = rows(
        &pool,
        &format!("SELECT tier FROM {}", table(&pool, "silver", "branches")),
    )
    .await;
    assert_eq!(silver, vec![v(&["resnap"])]);
}
on_both!(
    resnapshot_and_first_transaction_take_their_place,
    resnapshot_sqlite,
    resnapshot_postgres
);

fn sqlserver(commit: &str, change: &str, serial: i64, ts_ms: i64) -> Json {
    json!({"connector": "sqlserver", "ts_ms": ts_ms, "db": "shop", "schema": "dbo",
           "change_lsn": change, "commit_lsn": commit, "event_serial_no": serial})
}

fn oracle(scn: &str, commit_scn: &str, ts_ms: i64) -> Json {
    json!({"connector": "oracle", "ts_ms": ts_ms, "db": "SHOP", "schema": "DBO",
           "scn": scn, "commit_scn": commit_scn})
}

/// SQL Server and Oracle positions order silver, and a redelivery (same position, another
/// offset) is not a second fact.
async fn sql_server_and_oracle_positions_order_changes(pool: Pool) {
    let mut bronze = BronzeFixture::new();
    let row = |v: &str| Some(json!({"id": 1, "status": v}));
    // Kafka order differs from commit order: the later commit arrives first.
    bronze
        .land(
            ORDERS,
            0,
            &[
                change_with_source(
                    "u",
                    &json!(1),
                    None,
                    row("shipped"),
                    sqlserver("0000002a:00000100:0003", "0000002a:000000f0:0002", 1, 900),
                ),
                change_with_source(
                    "u",
                    &json!(1),
                    None,
                    row("paid"),
                    sqlserver("00000029:00000100:0003", "00000029:000000f0:0002", 1, 1000),
                ),
            ],
        )
        .await;
    bronze
        .land(
            "shop.DBO.orders_ora",
            0,
            &[
                change_with_source("u", &json!(1), None, row("b"), oracle("900", "1000", 10)),
                change_with_source("u", &json!(1), None, row("a"), oracle("950", "999", 20)),
            ],
        )
        .await;
    let sale = |src: Json| {
        change_with_source(
            "c",
            &json!(5),
            None,
            Some(json!({"id": 5, "amount": 3})),
            src,
        )
    };
    bronze
        .land(
            SALES,
            0,
            &[
                sale(sqlserver(
                    "0000002a:00000100:0003",
                    "0000002a:000000f0:0002",
                    1,
                    900,
                )),
                // Debezium is at least once: the same change again, at a later offset.
                sale(sqlserver(
                    "0000002a:00000100:0003",
                    "0000002a:000000f0:0002",
                    1,
                    900,
                )),
            ],
        )
        .await;
    let mut m = merger(&pool, &bronze).await;
    m.catch_up().await.expect("merge");
    let status = |t: &'static str| {
        let pool = pool.clone();
        async move {
            rows(
                &pool,
                &format!("SELECT status FROM {}", table(&pool, "silver", t)),
            )
            .await
        }
    };
    assert_eq!(status("orders").await, vec![v(&["shipped"])]);
    assert_eq!(status("orders_ora").await, vec![v(&["b"])]);
    let facts = rows(
        &pool,
        &format!(
            "SELECT {} FROM {}",
            text(&pool, "count(*)"),
            table(&pool, "fact", "sales")
        ),
    )
    .await;
    assert_eq!(facts, vec![v(&["1"])], "a redelivered fact is one row");
}
on_both!(
    sql_server_and_oracle_positions_order_changes,
    other_connectors_sqlite,
    other_connectors_postgres
);

/// `(id, amount, referenced account id or NULL)` of the upsert fact table.
async fn balances(pool: &Pool) -> Vec<Vec<Option<String>>> {
    rows(
        pool,
        &format!(
            "SELECT {}, {}, {} FROM {} f LEFT JOIN {} d ON d.sk = f.account_id_sk ORDER BY f.id",
            text(pool, "f.id"),
            text(pool, "f.amount"),
            text(pool, "d.id"),
            table(pool, "fact", "balances"),
            table(pool, "dim", "accounts"),
        ),
    )
    .await
}

/// Upsert facts: a batch mixing a delete and a TOAST row with ordinary rows resolves every
/// row's surrogate key; a reference set to NULL clears it.
async fn upsert_facts_resolve_every_row(pool: Pool) {
    let mut bronze = BronzeFixture::new();
    let bal =
        |id: i64, acct: Json, amount: Json| json!({"id": id, "account_id": acct, "amount": amount});
    bronze
        .land(
            BALANCES,
            0,
            &[
                change(
                    "c",
                    &json!(1),
                    None,
                    Some(bal(1, json!(7), json!(10))),
                    100,
                    1000,
                ),
                change(
                    "c",
                    &json!(2),
                    None,
                    Some(bal(2, json!(8), json!(20))),
                    110,
                    1100,
                ),
                change(
                    "c",
                    &json!(3),
                    None,
                    Some(bal(3, json!(9), json!(30))),
                    120,
                    1200,
                ),
            ],
        )
        .await;
    let mut m = merger(&pool, &bronze).await;
    m.catch_up().await.expect("merge");
    // One batch, three kinds of rows: new ones, a delete alone, a TOAST placeholder alone.
    bronze
        .land(
            BALANCES,
            0,
            &[
                change(
                    "c",
                    &json!(4),
                    None,
                    Some(bal(4, json!(9), json!(40))),
                    125,
                    1250,
                ),
                change(
                    "d",
                    &json!(3),
                    Some(bal(3, json!(9), json!(30))),
                    None,
                    130,
                    1300,
                ),
                change(
                    "u",
                    &json!(2),
                    None,
                    Some(bal(2, json!(7), json!("__debezium_unavailable_value"))),
                    140,
                    1400,
                ),
                change(
                    "c",
                    &json!(5),
                    None,
                    Some(bal(5, json!(8), json!(50))),
                    145,
                    1450,
                ),
            ],
        )
        .await;
    m.catch_up().await.expect("merge");
    assert_eq!(
        balances(&pool).await,
        vec![
            v(&["1", "10", "7"]),
            v(&["2", "20", "7"]),
            v(&["3", "30", "9"]),
            v(&["4", "40", "9"]),
            v(&["5", "50", "8"]),
        ]
    );
    bronze
        .land(
            BALANCES,
            0,
            &[change(
                "u",
                &json!(1),
                None,
                Some(bal(1, Json::Null, json!(11))),
                150,
                1500,
            )],
        )
        .await;
    m.catch_up().await.expect("merge");
    assert_eq!(
        balances(&pool).await[0],
        v(&["1", "11", "NULL"]),
        "a NULL reference has no surrogate key"
    );
}
on_both!(
    upsert_facts_resolve_every_row,
    upsert_facts_sqlite,
    upsert_facts_postgres
);
