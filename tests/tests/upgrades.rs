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

/// A version-1 or -2 warehouse (change logs without key states) is upgraded in place: the stamp moves
/// to the current format and the keys' next changes recompute them from their logs once, giving
/// the history a fresh merge of everything gives.
async fn a_version_one_warehouse_is_upgraded(pool: tidemark_warehouse::sql::conn::Pool) {
    use serde_json::json;
    use tidemark_e2e::bronze_fixture::change;
    use tidemark_e2e::merge_scenario::{TABLES, fill, snapshot};
    let mut bronze = BronzeFixture::new();
    fill(&mut bronze, 3).await;
    // Changes of `id` with `bio` unchanged (a TOAST placeholder) for even ids.
    let toasted = |from: u64, tier: &str| -> Vec<_> {
        (0..60i64)
            .map(|id| {
                let bio = if id % 2 == 0 {
                    json!("__debezium_unavailable_value")
                } else {
                    json!(format!("{tier}-bio"))
                };
                let row = json!({"id": id, "tier": format!("{tier}{id}"), "note": "n", "bio": bio});
                let pos = from + id as u64 * 8;
                change("u", &json!(id), None, Some(row), pos, 1_800_000_000_000)
            })
            .collect()
    };
    // Keys whose newest change has a placeholder: their last full row is not that change's.
    bronze
        .land("bank.public.customers", 0, &toasted(40_000_000, "m"))
        .await;
    let config = Config::from_toml_and_env(TABLES, std::iter::empty()).unwrap();
    bronze
        .merger(&pool, &config)
        .await
        .catch_up()
        .await
        .unwrap();
    // What version 1 left: change logs without key states, stamp 1 (version 2 kept its
    // states in a table of their own, which this tidemark no longer reads: the same case).
    let t = Target::new(pool.backend(), None).unwrap();
    let mut tx = pool.begin().await.unwrap();
    let changes = t.changes("customers");
    for sql in [
        format!("ALTER TABLE {changes} DROP COLUMN state_vals"),
        format!(
            "DELETE FROM {} WHERE tbl = '{}' AND col = 'state_vals'",
            t.registry(),
            changes.replace('\'', "''")
        ),
        format!(
            "UPDATE {} SET value = '1' WHERE name = 'warehouse_format'",
            t.meta()
        ),
    ] {
        tx.exec(&sql, &[]).await.unwrap();
    }
    tx.commit().await.unwrap();
    // Newer changes of keys stored without a state, some with a TOAST placeholder.
    bronze
        .land("bank.public.customers", 0, &toasted(50_000_000, "u"))
        .await;
    bronze
        .merger(&pool, &config)
        .await
        .catch_up()
        .await
        .unwrap();
    let stamp = rows(
        &pool,
        &format!(
            "SELECT value FROM {} WHERE name = 'warehouse_format'",
            t.meta()
        ),
    )
    .await;
    assert_eq!(stamp, vec![vec![Some(WAREHOUSE_FORMAT.to_string())]]);
    // The same bronze merged from scratch into a side-by-side target.
    let fresh = Target::new(pool.backend(), Some("fresh".into())).unwrap();
    let mut opts = MergeOptions::from_config(&config);
    opts.target_suffix = Some("fresh".into());
    Merger::with(
        pool.clone(),
        bronze.store.clone(),
        bronze.root.clone(),
        &config,
        opts,
    )
    .await
    .unwrap()
    .catch_up()
    .await
    .unwrap();
    assert_eq!(snapshot(&pool, &t).await, snapshot(&pool, &fresh).await);
}

on_both!(
    a_version_one_warehouse_is_upgraded,
    a_version_one_warehouse_is_upgraded_on_sqlite,
    a_version_one_warehouse_is_upgraded_on_postgres
);
