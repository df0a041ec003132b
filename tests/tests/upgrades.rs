//! Format stamps: a warehouse records the format of the tables tidemark manages on first use,
//! and a tidemark older than the stamp refuses to run against it rather than misread or damage
//! it (the commit-log side is a unit test of `tidemark_bronze::commit_log`).

use tidemark_core::config::Config;
use tidemark_e2e::bronze_fixture::BronzeFixture;
use tidemark_e2e::on_both;
use tidemark_e2e::warehouse::rows;
use tidemark_warehouse::merger::{MergeOptions, Merger};
use tidemark_warehouse::sql::names::Target;
use tidemark_warehouse::sql::schema::WAREHOUSE_FORMAT;

async fn a_newer_warehouse_is_refused(pool: tidemark_warehouse::sql::conn::Pool) {
    let bronze = BronzeFixture::new();
    let config = Config::default();
    drop(bronze.merger(&pool, &config).await);
    let meta = Target::new(pool.backend(), None).unwrap().meta();
    let stamp = rows(
        &pool,
        &format!("SELECT value FROM {meta} WHERE name = 'warehouse_format'"),
    )
    .await;
    assert_eq!(stamp, vec![vec![Some(WAREHOUSE_FORMAT.to_string())]]);

    let mut tx = pool.begin().await.unwrap();
    let newer = WAREHOUSE_FORMAT + 1;
    tx.exec(
        &format!("UPDATE {meta} SET value = '{newer}' WHERE name = 'warehouse_format'"),
        &[],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let opened = Merger::with(
        pool.clone(),
        bronze.store.clone(),
        bronze.root.clone(),
        &config,
        MergeOptions::from_config(&config),
    )
    .await;
    let e = match opened {
        Ok(_) => panic!("a newer warehouse is refused"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains(&format!("format version {newer}")) && e.contains("upgrade tidemark"),
        "{e}"
    );
}

on_both!(
    a_newer_warehouse_is_refused,
    a_newer_warehouse_is_refused_on_sqlite,
    a_newer_warehouse_is_refused_on_postgres
);
