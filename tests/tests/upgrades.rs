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

/// The indexes of `gold.dim_customers`, by their definitions' column lists.
async fn dim_indexes(pool: &tidemark_warehouse::sql::conn::Pool, t: &Target) -> Vec<String> {
    let dim = t.dim("customers");
    let sql = match pool.backend() {
        tidemark_core::mapping::Backend::Postgres => {
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'gold' AND tablename = 'dim_customers'"
                .to_owned()
        }
        tidemark_core::mapping::Backend::Sqlite => format!(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND tbl_name = '{}'",
            dim.trim_matches('"')
        ),
    };
    let mut defs: Vec<String> = rows(pool, &sql)
        .await
        .into_iter()
        .filter_map(|r| r[0].clone())
        .map(|d| d[d.find('(').unwrap_or(0)..].replace(['"', ' '], ""))
        .collect();
    defs.sort();
    defs
}

/// A dimension made before its time index held the version gets the new index and loses the
/// old one on its next batch, once; a fresh dimension has only the new one.
async fn an_old_dimension_index_is_replaced(pool: tidemark_warehouse::sql::conn::Pool) {
    use tidemark_e2e::merge_scenario::{TABLES, fill};
    let mut bronze = BronzeFixture::new();
    fill(&mut bronze, 2).await;
    let config = Config::from_toml_and_env(TABLES, std::iter::empty()).unwrap();
    bronze
        .merger(&pool, &config)
        .await
        .catch_up()
        .await
        .unwrap();
    let t = Target::new(pool.backend(), None).unwrap();
    let fresh = dim_indexes(&pool, &t).await;
    assert!(
        fresh.contains(&"(id,valid_from,version)".to_owned()),
        "{fresh:?}"
    );
    assert!(!fresh.contains(&"(id,valid_from)".to_owned()), "{fresh:?}");

    // What an older tidemark left: the index without the version, no upgrade registered.
    let dim = t.dim("customers");
    let old = t.index_name(&dim, "bk");
    let new = t.index_name(&dim, "bk_version");
    let mut tx = pool.begin().await.unwrap();
    for sql in [
        format!("DROP INDEX {}", t.gold_index(&new)),
        format!("CREATE INDEX \"{old}\" ON {dim} (id, valid_from)"),
        format!(
            "DELETE FROM {} WHERE tbl = '{}' AND col LIKE '%dim_bk_version'",
            t.registry(),
            dim.replace('\'', "''")
        ),
    ] {
        tx.exec(&sql, &[]).await.unwrap();
    }
    tx.commit().await.unwrap();
    assert_eq!(
        dim_indexes(&pool, &t).await,
        fresh
            .iter()
            .map(|d| d.replace("(id,valid_from,version)", "(id,valid_from)"))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
    );

    fill_more(&mut bronze).await;
    bronze
        .merger(&pool, &config)
        .await
        .catch_up()
        .await
        .unwrap();
    assert_eq!(dim_indexes(&pool, &t).await, fresh, "upgraded in place");
}

/// More changes of the same keys, after those `fill` landed.
async fn fill_more(bronze: &mut BronzeFixture) {
    use serde_json::json;
    use tidemark_e2e::bronze_fixture::change;
    let more: Vec<_> = (0..20i64)
        .map(|id| {
            let row = json!({"id": id, "tier": format!("later{id}"), "note": "n", "bio": "b"});
            change(
                "u",
                &json!(id),
                None,
                Some(row),
                60_000_000 + id as u64 * 8,
                1_900_000_000_000,
            )
        })
        .collect();
    bronze.land("bank.public.customers", 0, &more).await;
}

on_both!(
    an_old_dimension_index_is_replaced,
    an_old_dimension_index_is_replaced_on_sqlite,
    an_old_dimension_index_is_replaced_on_postgres
);
