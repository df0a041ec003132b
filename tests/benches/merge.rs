//! Merge throughput: a bronze backlog (a dimension with updates, deletes and late changes; facts
//! referencing it) merged into SQLite and, when `TIDEMARK_TEST_PG_URL` is set, PostgreSQL.
//! Prints changes/s per table and overall. `cargo bench -p tidemark-e2e --bench merge`
//! (`TIDEMARK_BENCH_EVENTS`, default 200000; `TIDEMARK_BENCH_BATCH`, default 50000).
//!
//! Then facts on a deep history: a dimension of 125 keys × `TIDEMARK_BENCH_VERSIONS` (default
//! 400) versions is merged, and 50,000 facts referencing it at random times are timed alone;
//! on PostgreSQL next to a hand-written floor over the same rows on the same server (stage the
//! facts with one UNNEST insert, then one INSERT … SELECT with an index lookup per fact).

use std::time::Instant;

use serde_json::json;
use tidemark_core::config::Config;
use tidemark_e2e::bronze_fixture::{BronzeFixture, change};
use tidemark_e2e::merge_scenario::{Rng, TABLES};
use tidemark_warehouse::merger::{MergeOptions, Merger};
use tidemark_warehouse::sql::conn::Pool;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn backlog(events: usize) -> (BronzeFixture, usize, usize) {
    let mut bronze = BronzeFixture::new();
    let mut rng = Rng(42);
    let keys = (events / 8).max(10) as u64;
    let mut live = std::collections::HashSet::new();
    let (mut customers, mut facts) = (Vec::new(), Vec::new());
    for i in 0..events as u64 {
        let lsn = 100 + i * 8;
        let ts = 1_700_000_000_000 + i as i64;
        let id = rng.next(keys) as i64;
        if i % 2 == 0 {
            let row = json!({"id": i, "customer_id": id, "amount": rng.next(10_000), "memo": "card payment"});
            facts.push(change("c", &json!(i), None, Some(row), lsn, ts));
            continue;
        }
        let row = json!({"id": id, "name": format!("customer {id}"), "tier": format!("t{}", rng.next(4)),
            "city": format!("c{}", rng.next(50)), "note": format!("n{}", rng.next(9)), "bio": "b"});
        let op = if live.insert(id) {
            "c"
        } else if rng.next(20) == 0 {
            live.remove(&id);
            "d"
        } else {
            "u"
        };
        let (before, after) = if op == "d" {
            (Some(row), None)
        } else {
            (None, Some(row))
        };
        customers.push(change(op, &json!(id), before, after, lsn, ts));
    }
    let (nc, nf) = (customers.len(), facts.len());
    for chunk in customers.chunks(5000) {
        bronze.land("bank.public.customers", 0, chunk).await;
    }
    for chunk in facts.chunks(5000) {
        bronze.land("bank.public.transactions", 0, chunk).await;
    }
    (bronze, nc, nf)
}

async fn bench(name: &str, pool: Pool, bronze: &BronzeFixture, batch: usize, total: usize) {
    let mut config = Config::from_toml_and_env(TABLES, std::iter::empty()).expect("config");
    config.merge.max_batch_rows = batch;
    let mut m = Merger::with(
        pool,
        bronze.store.clone(),
        bronze.root.clone(),
        &config,
        MergeOptions::from_config(&config),
    )
    .await
    .expect("merger");
    let t = Instant::now();
    let stats = m.catch_up().await.expect("merge");
    let secs = t.elapsed().as_secs_f64();
    for (table, a) in &stats.tables {
        println!(
            "{name:>10}  {table:<13} {:>8} changes  silver {:>7}  versions {:>7}  facts {:>7}",
            a.changes, a.silver_rows, a.dim.opened, a.facts
        );
    }
    println!(
        "{name:>10}  all           {total:>8} changes in {secs:.2} s = {:.0} changes/s",
        total as f64 / secs
    );
}

const DEEP_KEYS: u64 = 125;
const DEEP_FACTS: u64 = 50_000;
const DEEP_T0: i64 = 1_700_000_000_000;

/// The dimension with `versions` versions per key, landed and merged (untimed).
async fn deep_dimension(m: &mut Merger, bronze: &mut BronzeFixture, versions: u64) {
    let mut rows = Vec::new();
    for v in 0..versions {
        for k in 0..DEEP_KEYS {
            let i = v * DEEP_KEYS + k;
            let row = json!({"id": k, "name": format!("customer {k}"), "tier": format!("t{v}"),
                "city": "c", "note": "n", "bio": "b"});
            let op = if v == 0 { "c" } else { "u" };
            rows.push(change(
                op,
                &json!(k),
                None,
                Some(row),
                100 + i * 8,
                DEEP_T0 + i as i64 * 10,
            ));
        }
    }
    for chunk in rows.chunks(5000) {
        bronze.land("bank.public.customers", 0, chunk).await;
    }
    m.catch_up().await.expect("merge the dimension");
}

/// `(id, customer_id, ts_ms, amount)` of the facts: random keys at random times in the history.
fn deep_facts(versions: u64) -> Vec<(i64, i64, i64, i64)> {
    let mut rng = Rng(7);
    let span = (versions * DEEP_KEYS * 10) as i64;
    (0..DEEP_FACTS as i64)
        .map(|i| {
            let ts = DEEP_T0 + rng.next(span as u64) as i64;
            (i, rng.next(DEEP_KEYS) as i64, ts, rng.next(10_000) as i64)
        })
        .collect()
}

async fn deep_history(name: &str, pool: Pool, pg_url: Option<&str>, versions: u64) {
    let config = Config::from_toml_and_env(TABLES, std::iter::empty()).expect("config");
    let mut bronze = BronzeFixture::new();
    let store = bronze.store.clone();
    let root = bronze.root.clone();
    let opts = MergeOptions::from_config(&config);
    let mut m = Merger::with(pool, store, root, &config, opts)
        .await
        .expect("merger");
    deep_dimension(&mut m, &mut bronze, versions).await;
    let facts = deep_facts(versions);
    let records: Vec<_> = facts
        .iter()
        .map(|(id, c, ts, amount)| {
            let row = json!({"id": id, "customer_id": c, "amount": amount, "memo": "card payment"});
            change(
                "c",
                &json!(id),
                None,
                Some(row),
                10_000_000 + *id as u64 * 8,
                *ts,
            )
        })
        .collect();
    for chunk in records.chunks(5000) {
        bronze.land("bank.public.transactions", 0, chunk).await;
    }
    let t = Instant::now();
    m.catch_up().await.expect("merge the facts");
    let secs = t.elapsed().as_secs_f64();
    let n = facts.len() as f64;
    println!(
        "{name:>10}  facts on {versions} versions per key: {:.0} facts/s ({secs:.2} s)",
        n / secs
    );
    if let Some(url) = pg_url {
        let floor = pg_floor(url, &facts).await;
        println!(
            "{name:>10}  floor (hand-written SQL, same rows): {:.0} facts/s ({floor:.2} s); ratio {:.2}",
            n / floor,
            secs / floor
        );
    }
}

/// The hand-written floor: stage the facts, then insert them with their surrogate keys.
async fn pg_floor(url: &str, facts: &[(i64, i64, i64, i64)]) -> f64 {
    let pool = sqlx::PgPool::connect(url).await.expect("pg");
    sqlx::query("CREATE TABLE floor_fact (id bigint PRIMARY KEY, customer_id bigint, ts timestamptz, amount bigint, memo text, customer_id_sk bigint)")
        .execute(&pool)
        .await
        .expect("floor table");
    let col = |f: fn(&(i64, i64, i64, i64)) -> i64| facts.iter().map(f).collect::<Vec<i64>>();
    let t = Instant::now();
    let mut tx = pool.begin().await.expect("tx");
    sqlx::query("CREATE TEMP TABLE floor_stage ON COMMIT DROP AS SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[]) AS s(id, customer_id, ts_ms, amount)")
        .bind(col(|f| f.0))
        .bind(col(|f| f.1))
        .bind(col(|f| f.2))
        .bind(col(|f| f.3))
        .execute(&mut *tx)
        .await
        .expect("stage");
    sqlx::query(
        "INSERT INTO floor_fact SELECT s.id, s.customer_id, to_timestamp(s.ts_ms / 1000.0), s.amount, 'card payment', \
         (SELECT d.sk FROM gold.dim_customers d WHERE d.id = s.customer_id AND d.valid_from <= to_timestamp(s.ts_ms / 1000.0) \
          ORDER BY d.valid_from DESC LIMIT 1) FROM floor_stage s",
    )
    .execute(&mut *tx)
    .await
    .expect("floor insert");
    tx.commit().await.expect("commit");
    t.elapsed().as_secs_f64()
}

fn main() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let events = env("TIDEMARK_BENCH_EVENTS", 200_000);
    let batch = env("TIDEMARK_BENCH_BATCH", 50_000);
    rt.block_on(async {
        let (bronze, nc, nf) = backlog(events).await;
        println!("backlog: {nc} customer changes, {nf} facts; batch {batch}");
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/bench.db", dir.path().display());
        bench(
            "sqlite",
            Pool::connect(&url, None).await.expect("sqlite"),
            &bronze,
            batch,
            nc + nf,
        )
        .await;
        if std::env::var_os("TIDEMARK_TEST_PG_URL").is_some() {
            let url = tidemark_e2e::postgres::fresh_database().await.expect("pg");
            bench(
                "postgres",
                Pool::connect(&url, None).await.expect("pg"),
                &bronze,
                batch,
                nc + nf,
            )
            .await;
        } else {
            println!("  postgres  skipped: set TIDEMARK_TEST_PG_URL=postgres://user@host:port");
        }
        let versions = env("TIDEMARK_BENCH_VERSIONS", 400) as u64;
        let deep = format!("sqlite://{}/deep.db", dir.path().display());
        let sqlite = Pool::connect(&deep, None).await.expect("sqlite");
        deep_history("sqlite", sqlite, None, versions).await;
        if std::env::var_os("TIDEMARK_TEST_PG_URL").is_some() {
            let url = tidemark_e2e::postgres::fresh_database().await.expect("pg");
            let pool = Pool::connect(&url, None).await.expect("pg");
            deep_history("postgres", pool, Some(&url), versions).await;
        }
    });
}
