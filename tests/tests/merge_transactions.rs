//! Transaction-consistent merging (`merge.transactions = "atomic"`): a bank's transfers, each a
//! source transaction that debits one account, credits another (rows in different partitions)
//! and records a transfer fact, land in bronze in small commits, partitions and topics out of
//! step, the transaction topic lagging behind. A reader polls the warehouse while the merger
//! runs and never sees money vanish or double, nor a fact without its balances; with
//! `merge.transactions = "off"` the same reader does see such states (so the test can fail).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tidemark_core::config::Config;
use tidemark_e2e::bronze_fixture::{BronzeFixture, Record, pg_source};
use tidemark_e2e::merge_scenario::{Rng, tidemark_bin};
use tidemark_e2e::proxy::Proxy;
use tidemark_e2e::transfers::{self, ACCOUNTS_TOPIC, OPENING, Stream, TXN_TOPIC, end, record};
use tidemark_e2e::warehouse::rows;
use tidemark_warehouse::sql::conn::Pool;
use tokio::task::JoinHandle;

const ACCOUNTS: i64 = 12;
const TRANSFERS: u64 = 160;

fn merge_config(mode: &str) -> String {
    transfers::tables(mode, 8)
}

fn stream() -> Stream {
    transfers::stream(ACCOUNTS, TRANSFERS, 2)
}

fn config(mode: &str) -> Config {
    Config::from_toml_and_env(&merge_config(mode), std::iter::empty()).expect("config")
}

/// One consistent read (one statement, one snapshot): accounts, their balance and moves in
/// silver, current balances in gold, and transfer facts.
const READ: &str = "SELECT (SELECT count(*) FROM silver.accounts)::text, \
     (SELECT sum(balance) FROM silver.accounts)::text, \
     (SELECT sum(moves) FROM silver.accounts)::text, \
     (SELECT sum(balance) FROM gold.dim_accounts WHERE is_current AND NOT is_deleted)::text, \
     (SELECT count(*) FROM gold.fact_transfers)::text";

/// A state no source commit point had: money created or destroyed, or facts apart from the
/// balances of their transactions.
fn inconsistent(r: &[Option<String>]) -> Option<String> {
    let n = |i: usize| r[i].as_deref().and_then(|s| s.parse::<i64>().ok());
    let (count, silver, moves, gold, facts) = (n(0)?, n(1)?, n(2)?, n(3)?, n(4)?);
    if count < ACCOUNTS {
        return None;
    }
    let total = ACCOUNTS * OPENING;
    (silver != total || gold != total || moves != 2 * facts)
        .then(|| format!("silver total {silver}, gold total {gold}, moves {moves}, facts {facts}"))
}

/// Lands the whole stream in small commits, partitions out of step, the ENDs trailing the data
/// by about twenty transactions, `pace` between commits (none once `hurry` is set).
async fn land_stream(bronze: &mut BronzeFixture, pace: Duration, hurry: &AtomicBool) {
    let (mut parts, ends) = stream();
    // Debezium writes a transaction's BEGIN before its events: the transaction topic is in
    // bronze from the first transaction on.
    let begin = json!({"status": "BEGIN", "id": "600:1017", "ts_ms": 1_700_000_100_000i64,
                       "event_count": null, "data_collections": null});
    let begin = (
        Some(json!({"id": "600:1017"}).to_string()),
        Some(begin.to_string()),
    );
    bronze.land(TXN_TOPIC, 0, &[begin]).await;
    let mut rng = Rng(0xfeed);
    let mut ends = ends.into_iter().peekable();
    let mut ends_landed = 0usize;
    let mut data_landed = 0usize;
    while parts.iter().any(|(_, rs)| !rs.is_empty()) {
        let open: Vec<usize> = (0..parts.len())
            .filter(|i| !parts[*i].1.is_empty())
            .collect();
        let i = open[rng.next(open.len() as u64) as usize];
        let ((topic, p), records) = &mut parts[i];
        let n = (1 + rng.next(5) as usize).min(records.len());
        let chunk: Vec<Record> = records.drain(..n).collect();
        bronze.land(topic, *p, &chunk).await;
        data_landed += n;
        let due = (data_landed / 3).saturating_sub(20);
        let chunk: Vec<Record> = ends
            .by_ref()
            .take(due.saturating_sub(ends_landed))
            .collect();
        if !chunk.is_empty() {
            ends_landed += chunk.len();
            bronze.land(TXN_TOPIC, 0, &chunk).await;
        }
        if !hurry.load(Ordering::SeqCst) {
            tokio::time::sleep(pace).await;
        }
    }
    let rest: Vec<Record> = ends.collect();
    if !rest.is_empty() {
        bronze.land(TXN_TOPIC, 0, &rest).await;
    }
}

/// A reader polling the warehouse in its own task until `stop`; it returns the states no commit
/// point had and how many reads it made.
fn watch(reader: Pool, stop: Arc<AtomicBool>) -> JoinHandle<(Vec<String>, usize)> {
    tokio::spawn(async move {
        let mut bad = Vec::new();
        let mut reads = 0;
        while !stop.load(Ordering::SeqCst) {
            let mut tx = reader.begin().await.expect("begin");
            if let Ok(r) = tx.fetch(READ, &[]).await {
                reads += 1;
                bad.extend(r.first().and_then(|r| inconsistent(r)));
            }
            tx.rollback().await.expect("rollback");
        }
        (bad, reads)
    })
}

/// Stops the reader; checks it read during the run and that the end state is the source's.
async fn finish(
    pool: &Pool,
    stop: &AtomicBool,
    seen: JoinHandle<(Vec<String>, usize)>,
) -> Vec<String> {
    stop.store(true, Ordering::SeqCst);
    let (bad, reads) = seen.await.expect("reader task");
    assert!(
        reads > 50,
        "the reader polled during the run ({reads} reads)"
    );
    let end_state = rows(pool, READ).await;
    assert_eq!(inconsistent(&end_state[0]), None, "{end_state:?}");
    assert_eq!(
        end_state[0][4].as_deref(),
        Some(TRANSFERS.to_string().as_str())
    );
    bad
}

/// Lands the stream while a merger in this process cycles and a reader polls; returns what the
/// reader saw that no commit point had.
async fn run(mode: &str) -> Option<Vec<String>> {
    let url = tidemark_e2e::postgres::fresh_database().await?;
    let pool = Pool::connect(&url, None).await.expect("pg");
    let reader = Pool::connect(&url, None).await.expect("pg");
    let mut bronze = BronzeFixture::new();
    let mut merger = bronze.merger(&pool, &config(mode)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let seen = watch(reader, stop.clone());
    let landed = AtomicBool::new(false);
    // The merger's futures are not `Send`: it runs beside the landing in this task.
    let merging = async {
        while !landed.load(Ordering::SeqCst) {
            merger.cycle().await.expect("cycle");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    let landing = async {
        land_stream(
            &mut bronze,
            Duration::from_millis(3),
            &AtomicBool::new(false),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        landed.store(true, Ordering::SeqCst);
    };
    tokio::join!(merging, landing);
    merger.catch_up().await.expect("catch up");
    let bad = finish(&pool, &stop, seen).await;
    if mode == "atomic" {
        // Every version and fact a transaction wrote carries its commit time (its END's).
        let off_commit = rows(
            &pool,
            "SELECT count(*)::text FROM gold.dim_accounts \
             WHERE version > 1 AND (extract(epoch FROM valid_from) * 1000)::bigint % 10 <> 5",
        )
        .await;
        assert_eq!(
            off_commit[0][0].as_deref(),
            Some("0"),
            "versions at commit time"
        );
    }
    Some(bad)
}

/// What goes wrong while `tidemark merge` works.
#[derive(Debug, Clone, Copy)]
enum Chaos {
    /// SIGKILL this many times, each after the run made progress; restart each time.
    Kills(usize),
    /// The warehouse goes away for this long (connections cut, new ones refused).
    Outage(Duration),
}

/// A `tidemark merge` process, killed when dropped (a failing test leaves none behind).
struct Merge(Child);

impl Merge {
    fn start(config: &std::path::Path) -> Merge {
        let child = Command::new(tidemark_bin())
            .env("TIDEMARK__METRICS__LISTEN", "127.0.0.1:0")
            .args([
                "--config",
                config.to_str().unwrap(),
                "--log-level",
                "error",
                "merge",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn tidemark merge");
        Merge(child)
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Merge {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One value of a one-row query, `None` while its table does not exist yet.
async fn scalar(pool: &Pool, sql: &str) -> Option<i64> {
    let mut tx = pool.begin().await.unwrap();
    let r = tx.fetch(sql, &[]).await;
    tx.rollback().await.unwrap();
    r.ok()?.first()?[0].as_deref()?.parse().ok()
}

/// The sum of the ledger's next offsets: 0 until a merger has created it.
async fn ledger_total(pool: &Pool) -> i64 {
    scalar(pool, "SELECT sum(next_offset)::text FROM tidemark.ledger")
        .await
        .unwrap_or(0)
}

/// Waits until the merger has committed something past `since`.
async fn progress(pool: &Pool, since: i64) -> i64 {
    let t = Instant::now();
    loop {
        let now = ledger_total(pool).await;
        if now > since {
            return now;
        }
        assert!(t.elapsed() < Duration::from_secs(90), "no merge progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether every transfer and both its balance moves are merged.
async fn caught_up(pool: &Pool) -> bool {
    let facts = scalar(pool, "SELECT count(*)::text FROM gold.fact_transfers").await;
    let moves = scalar(pool, "SELECT sum(moves)::text FROM silver.accounts").await;
    facts == Some(TRANSFERS as i64) && moves == Some(2 * TRANSFERS as i64)
}

/// `url` with its host and port replaced by the proxy's.
fn through(url: &str, port: u16) -> String {
    let (scheme, rest) = url.split_once('@').unwrap();
    let (_, db) = rest.split_once('/').unwrap();
    format!("{scheme}@127.0.0.1:{port}/{db}")
}

fn upstream(url: &str) -> std::net::SocketAddr {
    let (_, rest) = url.split_once('@').unwrap();
    let (host, _) = rest.split_once('/').unwrap();
    host.parse().expect("host:port of the test PostgreSQL")
}

/// Lands the stream while `tidemark merge` (a process, its warehouse behind a proxy) works
/// through it under `chaos`, and a reader polls the warehouse directly.
async fn run_process(chaos: Chaos) -> Option<Vec<String>> {
    let url = tidemark_e2e::postgres::fresh_database().await?;
    let dir = tempfile::tempdir().unwrap();
    let bronze_dir = dir.path().join("bronze");
    std::fs::create_dir_all(&bronze_dir).unwrap();
    let mut bronze = BronzeFixture::on_disk(&bronze_dir);
    let proxy = Proxy::start(upstream(&url)).await;
    let path = dir.path().join("tidemark.toml");
    let text = format!(
        "[bronze]\nurl = \"file://{}\"\n[warehouse]\nurl = \"{}\"\n{}",
        bronze_dir.display(),
        through(&url, proxy.port),
        merge_config("atomic").replace("[merge]", "[merge]\ninterval_ms = 20")
    );
    std::fs::write(&path, text).unwrap();
    let pool = Pool::connect(&url, None).await.expect("pg");
    let reader = Pool::connect(&url, None).await.expect("pg");
    let stop = Arc::new(AtomicBool::new(false));
    let seen = watch(reader, stop.clone());

    let mut child = Merge::start(&path);
    // Slow landing until the trouble is over, so there is work left for every kill to interrupt
    // however slowly the merger starts on this machine.
    let hurry = AtomicBool::new(false);
    let landing = land_stream(&mut bronze, Duration::from_millis(80), &hurry);
    let trouble = async {
        match chaos {
            Chaos::Kills(n) => {
                let mut rng = Rng(0xdead);
                let mut done = ledger_total(&pool).await;
                for _ in 0..n {
                    done = progress(&pool, done).await;
                    tokio::time::sleep(Duration::from_millis(rng.next(120))).await;
                    child.kill();
                    child = Merge::start(&path);
                }
            }
            Chaos::Outage(d) => {
                progress(&pool, 0).await;
                proxy.down();
                tokio::time::sleep(d).await;
                proxy.up();
                assert!(
                    child.0.try_wait().unwrap().is_none(),
                    "the merger outlives the outage"
                );
            }
        }
        hurry.store(true, Ordering::SeqCst);
    };
    tokio::join!(landing, trouble);
    let t = Instant::now();
    while !caught_up(&pool).await {
        assert!(
            t.elapsed() < Duration::from_secs(180),
            "the merger caught up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(child);
    Some(finish(&pool, &stop, seen).await)
}

fn assert_consistent(bad: &[String]) {
    assert!(
        bad.is_empty(),
        "{} states no source commit point had, first: {:?}",
        bad.len(),
        bad.first()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_see_half_a_source_transaction() {
    let Some(bad) = run("atomic").await else {
        return;
    };
    assert_consistent(&bad);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_atomic_transactions_readers_see_half_applied_ones() {
    let Some(bad) = run("off").await else {
        return;
    };
    assert!(
        !bad.is_empty(),
        "merge.transactions = \"off\" applies tables apart, so a reader sees half a transfer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_sigkills_never_leave_half_a_source_transaction_visible() {
    let Some(bad) = run_process(Chaos::Kills(5)).await else {
        return;
    };
    assert_consistent(&bad);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_30s_warehouse_outage_never_leaves_half_a_source_transaction_visible() {
    let Some(bad) = run_process(Chaos::Outage(Duration::from_secs(30))).await else {
        return;
    };
    assert_consistent(&bad);
}

/// One source transaction of 40 balance moves between the accounts (in both partitions), with
/// batches of 8: the cycle that applies it either reads on to take it whole (up to
/// `merge.max_transaction_rows`) or, past that bound, applies it in pieces. Returns the totals
/// readers could see after each cycle, once every account is in.
async fn one_large_transaction(max_transaction_rows: usize) -> Option<Vec<i64>> {
    let url = tidemark_e2e::postgres::fresh_database().await?;
    let pool = Pool::connect(&url, None).await.expect("pg");
    let mut bronze = BronzeFixture::new();
    let toml = format!(
        "[merge]\nmax_batch_rows = 8\nmax_transaction_rows = {max_transaction_rows}\n\
         [[tables]]\nsource = \"{ACCOUNTS_TOPIC}\"\nkind = \"dimension\"\n"
    );
    let config = Config::from_toml_and_env(&toml, std::iter::empty()).expect("config");
    let mut merger = bronze.merger(&pool, &config).await;
    let mut balance = vec![OPENING; ACCOUNTS as usize];
    let mut lsn = 1_000u64;
    for id in 0..ACCOUNTS {
        lsn += 1;
        let after = json!({"id": id, "balance": OPENING, "moves": 0});
        let src = pg_source(None, lsn, 1_700_000_000_000, true);
        bronze
            .land(
                ACCOUNTS_TOPIC,
                (id % 2) as i32,
                &[record(id, "r", after, src, None)],
            )
            .await;
    }
    let txn = "700:5000";
    for i in 0..40i64 {
        // Every debit before every credit: any piece of it shows money gone.
        let (id, delta) = if i < 20 {
            (i % ACCOUNTS, -3)
        } else {
            ((i - 20) % ACCOUNTS, 3)
        };
        lsn += 1;
        balance[id as usize] += delta;
        let after = json!({"id": id, "balance": balance[id as usize], "moves": i + 1});
        let src = pg_source(Some(5000), lsn, 1_700_000_100_000, false);
        let r = record(id, "u", after, src, Some((txn, i as u64 + 1, i as u64 + 1)));
        bronze.land(ACCOUNTS_TOPIC, (id % 2) as i32, &[r]).await;
    }
    bronze
        .land(
            TXN_TOPIC,
            0,
            &[end(txn, 1_700_000_100_005, &[("public.accounts", 40)])],
        )
        .await;
    let mut totals = Vec::new();
    for _ in 0..20 {
        let s = merger.cycle().await.expect("cycle");
        let r = rows(
            &pool,
            "SELECT sum(balance)::text FROM silver.accounts HAVING count(*) = 12",
        )
        .await;
        totals.extend(r.first().and_then(|r| r[0].as_deref()?.parse::<i64>().ok()));
        if s.is_idle() {
            break;
        }
    }
    Some(totals)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_larger_than_a_batch_is_applied_whole() {
    let Some(totals) = one_large_transaction(1_000_000).await else {
        return;
    };
    assert!(
        totals.iter().all(|t| *t == ACCOUNTS * OPENING),
        "every state after a cycle is a commit point: {totals:?}"
    );
    // Past the bound it goes in pieces, which a reader can see.
    let totals = one_large_transaction(8).await.unwrap();
    assert!(
        totals.iter().any(|t| *t != ACCOUNTS * OPENING),
        "with max_transaction_rows = 8 the transaction goes in pieces: {totals:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_says_which_connectors_lack_transaction_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let bronze_dir = dir.path().join("bronze");
    std::fs::create_dir_all(&bronze_dir).unwrap();
    let mut bronze = BronzeFixture::on_disk(&bronze_dir);
    let after = json!({"id": 1, "balance": OPENING, "moves": 0});
    let src = pg_source(None, 1, 1_700_000_000_000, true);
    let r = record(1, "r", after, src, None);
    bronze
        .land(ACCOUNTS_TOPIC, 0, std::slice::from_ref(&r))
        .await;
    bronze.land("shop.public.orders", 0, &[r]).await;
    bronze
        .land(
            TXN_TOPIC,
            0,
            &[end("1:1", 1_700_000_000_005, &[("public.accounts", 1)])],
        )
        .await;
    // A second partition of the transaction topic: its ENDs are not read, which inspect says.
    bronze
        .land(
            TXN_TOPIC,
            1,
            &[end("2:2", 1_700_000_000_006, &[("public.accounts", 1)])],
        )
        .await;
    let path = dir.path().join("tidemark.toml");
    let text = format!(
        "[kafka]\nbootstrap_servers = \"127.0.0.1:1\"\n[bronze]\nurl = \"file://{}\"\n",
        bronze_dir.display()
    );
    std::fs::write(&path, text).unwrap();
    let out = Command::new(tidemark_bin())
        .args(["--config", path.to_str().unwrap(), "inspect", "bronze"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("bank.transaction is in bronze"), "{text}");
    assert!(
        text.contains("no shop.transaction in bronze")
            && text.contains("provide.transaction.metadata=true"),
        "{text}"
    );
    assert!(!text.contains("no bank.transaction"), "{text}");
    assert!(
        text.contains("bank.transaction has more than one partition"),
        "{text}"
    );
    assert_eq!(
        text.matches("bank.transaction is in bronze").count(),
        1,
        "{text}"
    );
}

/// A source table named `transaction` has a topic named like a transaction topic
/// (`bank.public.transaction`): it holds rows, so it is merged like any other table, beside the
/// connector's real transaction topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_named_transaction_is_merged_not_taken_for_the_transaction_topic() {
    let pool = Pool::connect("sqlite::memory:", None)
        .await
        .expect("sqlite");
    let mut bronze = BronzeFixture::new();
    let rows_of = |n: i64| -> Vec<Record> {
        (0..n)
            .map(|id| {
                let src = pg_source(None, 10 + id as u64, 1_700_000_000_000, true);
                record(id, "r", json!({"id": id, "memo": "m"}), src, None)
            })
            .collect()
    };
    bronze.land("bank.public.transaction", 0, &rows_of(3)).await;
    bronze
        .land(
            TXN_TOPIC,
            0,
            &[end("1:1", 1_700_000_000_005, &[("public.accounts", 0)])],
        )
        .await;
    let mut merger = bronze.merger(&pool, &config("atomic")).await;
    merger.catch_up().await.expect("catch up");
    let got = rows(
        &pool,
        "SELECT CAST(count(*) AS TEXT) FROM silver__transaction",
    )
    .await;
    assert_eq!(
        got[0][0].as_deref(),
        Some("3"),
        "the table's rows are merged"
    );
}
