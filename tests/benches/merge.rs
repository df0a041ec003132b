//! Merge throughput: a bronze backlog (a dimension with updates, deletes and late changes; facts
//! referencing it) merged into SQLite and, when `TIDEMARK_TEST_PG_URL` is set, PostgreSQL.
//! Prints changes/s per table and overall. `cargo bench -p tidemark-e2e --bench merge`
//! (`TIDEMARK_BENCH_EVENTS`, default 200000; `TIDEMARK_BENCH_BATCH`, default 50000).

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
    });
}
