//! A value the warehouse refuses belongs to its table: that table stops, with a message naming
//! it and the offsets, and the tables after it keep merging (issue "no record can stall
//! tidemark"). PostgreSQL: a number overflowing a declared numeric(5,2); SQLite: two columns
//! whose names differ only in case. A committed bronze file with mistyped columns likewise.

use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{Field, Schema};
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

/// Rewrites the first committed file of `topic` with its column `name` replaced by `with` (the
/// commit record's checksum updated, so the file reads as committed); returns the file's path.
async fn retype(
    bronze: &BronzeFixture,
    topic: &str,
    name: &str,
    with: impl Fn(usize) -> ArrayRef,
) -> String {
    use tidemark_bronze::{commit_log, layout};
    let store = bronze.store.as_ref();
    let mut rec = commit_log::read_chain(store, &bronze.root, topic, 0)
        .await
        .unwrap()
        .records
        .remove(0);
    let path = rec.files[0].path.clone();
    let batches = tidemark_warehouse::bronze_read::file_batches(store, &path, None)
        .await
        .unwrap();
    let batch = &batches[0];
    let i = batch.schema().index_of(name).unwrap();
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut columns = batch.columns().to_vec();
    columns[i] = with(batch.num_rows());
    fields[i] = Field::new(name, columns[i].data_type().clone(), true);
    let retyped = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    let mut bytes = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut bytes, retyped.schema(), None).unwrap();
    w.write(&retyped).unwrap();
    w.close().unwrap();
    rec.files[0].checksum = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes));
    rec.files[0].bytes = bytes.len() as u64;
    store
        .put(&layout::stored_path(&path), bytes.into())
        .await
        .unwrap();
    let record = layout::commit_record(&bronze.root, topic, 0, rec.start);
    store
        .put(&record, serde_json::to_vec(&rec).unwrap().into())
        .await
        .unwrap();
    path
}

/// A committed file whose columns have types bronze never writes (written by something else,
/// or damaged) stops its table with a read error naming the file and the column; the merger
/// does not panic and the other tables merge.
async fn mistyped_bronze_columns_stop_only_their_table(pool: Pool) {
    let mut bronze = BronzeFixture::new();
    let row = |t: &str| {
        change(
            "c",
            &json!(1),
            None,
            Some(json!({"id": 1, "x": t})),
            100,
            1000,
        )
    };
    for t in [
        "bank.public.offsets",
        "bank.public.images",
        "bank.public.fine",
    ] {
        bronze.land(t, 0, &[row("ok")]).await;
    }
    let offsets = retype(&bronze, "bank.public.offsets", "_kafka_offset", |n| {
        Arc::new(StringArray::from(vec!["0"; n]))
    })
    .await;
    let images = retype(&bronze, "bank.public.images", "after", |n| {
        Arc::new(Int64Array::from(vec![7; n]))
    })
    .await;
    let config = Config::from_toml_and_env("", std::iter::empty()).unwrap();
    let mut m = bronze.merger(&pool, &config).await;
    let st = m
        .catch_up()
        .await
        .expect("a bad file never fails the cycle");
    for (table, path, column) in [
        ("offsets", &offsets, "_kafka_offset"),
        ("images", &images, "after"),
    ] {
        let why = &st.stopped[table];
        assert!(
            why.contains(path.as_str()) && why.contains(&format!("column `{column}`")),
            "{table}: {why}"
        );
    }
    let got = rows(
        &pool,
        &format!("SELECT x FROM {}", table(&pool, "silver", "fine")),
    )
    .await;
    assert_eq!(got, vec![v(&["ok"])], "the other table merged");
}
on_both!(
    mistyped_bronze_columns_stop_only_their_table,
    mistyped_columns_sqlite,
    mistyped_columns_postgres
);

/// A column registry that names a type this version does not know (a newer tidemark wrote it)
/// stops the table with what to do, instead of the type being dropped and the column declared
/// again.
async fn an_unknown_registered_type_stops_its_table(pool: Pool) {
    let mut bronze = BronzeFixture::new();
    let row = |id: i64| json!({"id": id, "x": "ok"});
    let topic = "bank.public.newer";
    bronze
        .land(
            topic,
            0,
            &[change("c", &json!(1), None, Some(row(1)), 100, 1000)],
        )
        .await;
    let config = Config::from_toml_and_env("", std::iter::empty()).unwrap();
    let mut m = bronze.merger(&pool, &config).await;
    let st = m.catch_up().await.expect("merge");
    assert!(st.stopped.is_empty(), "{st:?}");
    let registry = tidemark_warehouse::sql::names::Target::new(pool.backend(), None)
        .unwrap()
        .registry();
    let mut tx = pool.begin().await.unwrap();
    tx.exec(
        &format!("UPDATE {registry} SET type = 'geometry' WHERE col = 'x'"),
        &[],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    bronze
        .land(
            topic,
            0,
            &[change("c", &json!(2), None, Some(row(2)), 101, 1001)],
        )
        .await;
    let mut m = bronze.merger(&pool, &config).await;
    let st = m
        .catch_up()
        .await
        .expect("one table's schema never fails the cycle");
    let why = &st.stopped["newer"];
    assert!(
        why.contains("`geometry`") && why.contains("upgrade tidemark"),
        "{why}"
    );
}
on_both!(
    an_unknown_registered_type_stops_its_table,
    unknown_registered_type_sqlite,
    unknown_registered_type_postgres
);
