//! Merge throughput: a bronze backlog (a dimension with updates, deletes and late changes; facts
//! referencing it) merged into SQLite and, when `TIDEMARK_TEST_PG_URL` is set, PostgreSQL.
//! Prints changes/s per table and overall. `cargo bench -p tidemark-e2e --bench merge`
//! (`TIDEMARK_BENCH_EVENTS`, default 200000; `TIDEMARK_BENCH_BATCH`, default 50000).
//!
//! Then facts on a deep history: a dimension of 125 keys × `TIDEMARK_BENCH_VERSIONS` (default
//! 400) versions is merged, and 50,000 facts referencing it at random times are timed alone;
//! on PostgreSQL next to a hand-written floor over the same rows on the same server (stage the
//! facts with one UNNEST insert, then one INSERT … SELECT with an index lookup per fact).
//!
//! Then the SCD2 steps, each timed alone on every backend and, on PostgreSQL, next to the
//! hand-written floor of `tidemark_e2e::scd2_floor` applied to the same changes in batches of the
//! same size: a snapshot of `TIDEMARK_BENCH_ROWS` (default 1,000,000) rows, 1% and 10% of them
//! changed, 5 rounds of 100,000 changes on 200 hot keys (history grows by 500 versions per key
//! and round), and an empty cycle. `TIDEMARK_BENCH_STEPS` picks sections (default
//! `backlog,facts,scd2,transactions`), `TIDEMARK_BENCH_BACKENDS` the SCD2 steps' backends (default
//! `sqlite,postgres`).
//!
//! Then whole source transactions: `TIDEMARK_BENCH_TRANSFERS` (default 100,000) transfers between
//! 10,000 accounts on 4 partitions, each a source transaction of two account updates and a
//! transfer fact, with their END records, merged with `merge.transactions = "off"` and
//! `"atomic"` on each backend; prints both times and their ratio.

use std::time::Instant;

use serde_json::json;
use tidemark_core::config::Config;
use tidemark_e2e::bronze_fixture::{BronzeFixture, change};
use tidemark_e2e::merge_scenario::{Rng, TABLES};
use tidemark_e2e::scd2_floor::{CustomerChange, Floor};
use tidemark_e2e::transfers;
use tidemark_warehouse::merger::{MergeOptions, Merger};
use tidemark_warehouse::sql::conn::Pool;

// The allocator the `tidemark` binary runs with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    let mut m = bronze.merger(&pool, &config).await;
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

/// One backend's merger in the SCD2 steps.
struct Contender {
    name: &'static str,
    merger: Merger,
}

/// The changes of the SCD2 steps, in source order.
struct Steps {
    rng: Rng,
    seq: u64,
}

impl Steps {
    fn next(&mut self, id: i64, tier: String) -> CustomerChange {
        self.seq += 1;
        CustomerChange {
            id,
            lsn: 1_000_000_000 + self.seq * 8,
            ts_ms: DEEP_T0 + self.seq as i64,
            tier,
            city: format!("c{}", self.rng.next(50)),
        }
    }

    fn snapshot(&mut self, rows: usize) -> Vec<CustomerChange> {
        (0..rows as i64)
            .map(|id| self.next(id, "t0".into()))
            .collect()
    }

    /// `n` distinct keys of `rows`, each changed once.
    fn changed(&mut self, rows: usize, n: usize, step: &str) -> Vec<CustomerChange> {
        let stride = (rows / n.max(1)).max(1);
        let offset = self.rng.next(stride as u64) as usize;
        (0..n)
            .map(|i| self.next(((i * stride + offset) % rows) as i64, format!("{step}-{i}")))
            .collect()
    }

    /// `n` changes spread over `keys` hot keys, every one a new version.
    fn hot(&mut self, keys: u64, n: usize, round: usize) -> Vec<CustomerChange> {
        (0..n)
            .map(|i| {
                let id = self.rng.next(keys) as i64;
                self.next(id, format!("r{round}-{i}"))
            })
            .collect()
    }
}

/// Lands `changes`, then times each contender's merge of them and the floor's.
async fn step(
    label: &str,
    bronze: &mut BronzeFixture,
    contenders: &mut [Contender],
    floor: Option<&mut Floor>,
    changes: &[CustomerChange],
    op: &str,
    batch: usize,
) -> Vec<f64> {
    let records: Vec<_> = changes.iter().map(|c| c.record(op)).collect();
    for chunk in records.chunks(5000) {
        bronze.land("bank.public.customers", 0, chunk).await;
    }
    let n = changes.len() as f64;
    let mut line = format!("{label:<22} {:>9}", changes.len());
    let mut secs = Vec::new();
    for c in contenders.iter_mut() {
        let t = Instant::now();
        let stats = c.merger.catch_up().await.expect("merge");
        let s = t.elapsed().as_secs_f64();
        assert_eq!(
            stats.changes() as usize,
            changes.len(),
            "{} merged it all",
            c.name
        );
        line.push_str(&format!("  {:>8}: {:>7.0}/s", c.name, n / s));
        secs.push(s);
    }
    if let Some(f) = floor {
        let s = f.apply(changes, batch).await;
        let pg = secs.last().copied().unwrap_or(f64::NAN);
        line.push_str(&format!("  floor: {:>7.0}/s  ratio {:.2}", n / s, pg / s));
    }
    println!("{line}");
    secs
}

async fn scd2_steps(rows: usize, batch: usize, dir: &std::path::Path) {
    let mut config = Config::from_toml_and_env(TABLES, std::iter::empty()).expect("config");
    config.merge.max_batch_rows = batch;
    let mut bronze = BronzeFixture::new();
    let backends = std::env::var("TIDEMARK_BENCH_BACKENDS").unwrap_or("sqlite,postgres".into());
    let mut pools = Vec::new();
    if backends.contains("sqlite") {
        let url = format!("sqlite://{}/steps.db", dir.display());
        pools.push(("sqlite", Pool::connect(&url, None).await.expect("sqlite")));
    }
    let pg_url = match backends.contains("postgres") {
        true => tidemark_e2e::postgres::fresh_database().await,
        false => None,
    };
    if let Some(url) = &pg_url {
        pools.push(("postgres", Pool::connect(url, None).await.expect("pg")));
    }
    let mut contenders = Vec::new();
    for (name, pool) in pools {
        let opts = MergeOptions::from_config(&config);
        let merger = Merger::with(
            pool,
            bronze.store.clone(),
            bronze.root.clone(),
            &config,
            opts,
        )
        .await
        .expect("merger");
        contenders.push(Contender { name, merger });
    }
    let mut floor = match &pg_url {
        Some(url) => Some(Floor::connect(url).await),
        None => None,
    };
    println!(
        "SCD2 steps: {rows} rows, batch {batch} (changes/s; ratio = postgres time / floor time)"
    );
    let mut steps = Steps {
        rng: Rng(11),
        seq: 0,
    };
    let snapshot = steps.snapshot(rows);
    step(
        "snapshot",
        &mut bronze,
        &mut contenders,
        floor.as_mut(),
        &snapshot,
        "r",
        batch,
    )
    .await;
    drop(snapshot);
    for pct in [1, 10] {
        let changes = steps.changed(rows, rows * pct / 100, &format!("p{pct}"));
        let label = format!("{pct}% of rows changed");
        step(
            &label,
            &mut bronze,
            &mut contenders,
            floor.as_mut(),
            &changes,
            "u",
            batch,
        )
        .await;
    }
    let mut rounds = Vec::new();
    for round in 1..=5 {
        let changes = steps.hot(200, 100_000, round);
        let label = format!("hot keys, round {round}");
        rounds.push(
            step(
                &label,
                &mut bronze,
                &mut contenders,
                floor.as_mut(),
                &changes,
                "u",
                batch,
            )
            .await,
        );
    }
    for (i, c) in contenders.iter().enumerate() {
        println!(
            "{:>8}: last hot round / first = {:.2}",
            c.name,
            rounds[4][i] / rounds[0][i]
        );
    }
    for c in contenders.iter_mut() {
        let t = Instant::now();
        c.merger.cycle().await.expect("empty cycle");
        println!(
            "{:>8}: empty cycle {:.1} ms",
            c.name,
            t.elapsed().as_secs_f64() * 1e3
        );
    }
    if let Some(f) = floor.as_mut() {
        println!("floor versions: {}", f.versions().await);
    }
}

fn main() {
    tidemark_core::allocator::configure();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let events = env("TIDEMARK_BENCH_EVENTS", 200_000);
    let batch = env("TIDEMARK_BENCH_BATCH", 50_000);
    let sections =
        std::env::var("TIDEMARK_BENCH_STEPS").unwrap_or("backlog,facts,scd2,transactions".into());
    let wants = |s: &str| sections.split(',').any(|x| x.trim() == s);
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        if wants("backlog") {
            backlog_section(events, batch, dir.path()).await;
        }
        if wants("facts") {
            facts_section(dir.path()).await;
        }
        if wants("scd2") {
            scd2_steps(env("TIDEMARK_BENCH_ROWS", 1_000_000), batch, dir.path()).await;
        }
        if wants("transactions") {
            transactions_section(batch, dir.path()).await;
        }
    });
}

async fn backlog_section(events: usize, batch: usize, dir: &std::path::Path) {
    let (bronze, nc, nf) = backlog(events).await;
    println!("backlog: {nc} customer changes, {nf} facts; batch {batch}");
    let url = format!("sqlite://{}/bench.db", dir.display());
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
}

async fn facts_section(dir: &std::path::Path) {
    let versions = env("TIDEMARK_BENCH_VERSIONS", 400) as u64;
    let deep = format!("sqlite://{}/deep.db", dir.display());
    let sqlite = Pool::connect(&deep, None).await.expect("sqlite");
    deep_history("sqlite", sqlite, None, versions).await;
    if std::env::var_os("TIDEMARK_TEST_PG_URL").is_some() {
        let url = tidemark_e2e::postgres::fresh_database().await.expect("pg");
        let pool = Pool::connect(&url, None).await.expect("pg");
        deep_history("postgres", pool, Some(&url), versions).await;
    }
}

/// The same transfer stream merged per table (`"off"`) and as whole source transactions.
async fn transactions_section(batch: usize, dir: &std::path::Path) {
    let n = env("TIDEMARK_BENCH_TRANSFERS", 100_000) as u64;
    let (parts, ends) = transfers::stream(10_000, n, 4);
    let mut bronze = BronzeFixture::new();
    let mut events = 0;
    for ((topic, p), records) in &parts {
        events += records.len();
        for chunk in records.chunks(5000) {
            bronze.land(topic, *p, chunk).await;
        }
    }
    for chunk in ends.chunks(5000) {
        bronze.land(transfers::TXN_TOPIC, 0, chunk).await;
    }
    println!("transactions: {n} transfers, {events} events in 4 partitions; batch {batch}");
    let mut backends = vec![("sqlite", None)];
    if std::env::var_os("TIDEMARK_TEST_PG_URL").is_some() {
        backends.push(("postgres", Some(())));
    }
    for (name, pg) in backends {
        let mut secs = Vec::new();
        for mode in ["off", "atomic"] {
            let url = match pg {
                Some(()) => tidemark_e2e::postgres::fresh_database().await.expect("pg"),
                None => format!("sqlite://{}/txn-{mode}.db", dir.display()),
            };
            let pool = Pool::connect(&url, None).await.expect("warehouse");
            let toml = transfers::tables(mode, batch);
            let config = Config::from_toml_and_env(&toml, std::iter::empty()).expect("config");
            let mut m = bronze.merger(&pool, &config).await;
            let t = Instant::now();
            m.catch_up().await.expect("merge");
            let s = t.elapsed().as_secs_f64();
            println!(
                "{name:>10}  {mode:<6} {events:>8} events in {s:.2} s = {:.0} events/s",
                events as f64 / s
            );
            secs.push(s);
        }
        println!(
            "{name:>10}  atomic / off = {:.2} (aim <= 1.3)",
            secs[1] / secs[0]
        );
    }
}
