//! Transaction-consistent merging (`merge.transactions = "atomic"`): a bank's transfers, each a
//! source transaction that debits one account, credits another (rows in different partitions)
//! and records a transfer fact, land in bronze in small commits, partitions and topics out of
//! step, the transaction topic lagging behind. A reader polls the warehouse while the merger
//! runs and never sees money vanish or double, nor a fact without its balances; with
//! `merge.transactions = "off"` the same reader does see such states (so the test can fail).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value as Json, json};
use tidemark_core::config::Config;
use tidemark_e2e::bronze_fixture::{BronzeFixture, Record, pg_source};
use tidemark_e2e::warehouse::rows;
use tidemark_warehouse::sql::conn::Pool;

const ACCOUNTS: i64 = 12;
const OPENING: i64 = 1_000;
const TRANSFERS: u64 = 160;
const ACCOUNTS_TOPIC: &str = "bank.public.accounts";
const TRANSFERS_TOPIC: &str = "bank.public.transfers";
const TXN_TOPIC: &str = "bank.transaction";

/// xorshift: the same stream every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn record(id: i64, op: &str, after: Json, source: Json, txn: Option<(&str, u64, u64)>) -> Record {
    let ts = source["ts_ms"].clone();
    let value = json!({
        "before": null, "after": after, "source": source, "op": op, "ts_ms": ts,
        "transaction": txn.map(|(id, total, order)| json!({
            "id": id, "total_order": total, "data_collection_order": order,
        })),
    });
    (
        Some(json!({ "id": id }).to_string()),
        Some(value.to_string()),
    )
}

fn end(id: &str, counts: &[(&str, i64)]) -> Record {
    let value = json!({
        "status": "END", "id": id, "ts_ms": 1_700_000_000_000i64,
        "event_count": counts.iter().map(|(_, n)| n).sum::<i64>(),
        "data_collections": counts.iter()
            .map(|(c, n)| json!({"data_collection": c, "event_count": n}))
            .collect::<Vec<_>>(),
    });
    (
        Some(json!({ "id": id }).to_string()),
        Some(value.to_string()),
    )
}

/// The stream: per `(topic, partition)` its records in order, and the END records in order.
type Stream = (Vec<((String, i32), Vec<Record>)>, Vec<Record>);

fn stream() -> Stream {
    let mut rng = Rng(0x5eed);
    let mut parts: std::collections::BTreeMap<(String, i32), Vec<Record>> = Default::default();
    let mut push = |topic: &str, id: i64, r: Record| {
        parts
            .entry((topic.to_owned(), (id % 2) as i32))
            .or_default()
            .push(r)
    };
    let mut balance = vec![OPENING; ACCOUNTS as usize];
    let mut moves = vec![0i64; ACCOUNTS as usize];
    let mut lsn = 1_000u64;
    for id in 0..ACCOUNTS {
        lsn += 1;
        let after = json!({"id": id, "balance": OPENING, "moves": 0});
        let src = pg_source(None, lsn, 1_700_000_000_000 + lsn as i64, true);
        push(ACCOUNTS_TOPIC, id, record(id, "r", after, src, None));
    }
    let mut ends = Vec::new();
    for t in 0..TRANSFERS {
        let from = rng.below(ACCOUNTS as u64) as i64;
        let to = (from + 1 + rng.below(ACCOUNTS as u64 - 1) as i64) % ACCOUNTS;
        let amount = 1 + rng.below(50) as i64;
        let txn = format!("{}:{}", 600 + t, lsn + 4);
        let commit = lsn + 4;
        let ts = 1_700_000_100_000 + (t as i64) * 10;
        for (order, (id, delta)) in [(from, -amount), (to, amount)].into_iter().enumerate() {
            lsn += 1;
            balance[id as usize] += delta;
            moves[id as usize] += 1;
            let after =
                json!({"id": id, "balance": balance[id as usize], "moves": moves[id as usize]});
            let src = pg_source(Some(commit), lsn, ts, false);
            let txn = Some((txn.as_str(), order as u64 + 1, order as u64 + 1));
            push(ACCOUNTS_TOPIC, id, record(id, "u", after, src, txn));
        }
        lsn += 1;
        let fact = json!({"id": t, "account_id": from, "amount": amount});
        let src = pg_source(Some(commit), lsn, ts, false);
        let txn_block = Some((txn.as_str(), 3, 1));
        push(
            TRANSFERS_TOPIC,
            t as i64,
            record(t as i64, "c", fact, src, txn_block),
        );
        lsn += 1;
        ends.push(end(
            &txn,
            &[("public.accounts", 2), ("public.transfers", 1)],
        ));
    }
    (parts.into_iter().collect(), ends)
}

fn config(mode: &str) -> Config {
    let toml = format!(
        r#"
[merge]
max_batch_rows = 8
transactions = "{mode}"
transaction_timeout_ms = 600000

[[tables]]
source = "{ACCOUNTS_TOPIC}"
kind = "dimension"

[[tables]]
source = "{TRANSFERS_TOPIC}"
kind = "fact"
references = {{ account_id = "{ACCOUNTS_TOPIC}" }}
"#
    );
    Config::from_toml_and_env(&toml, std::iter::empty()).expect("config")
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

/// Lands the stream in small commits, partitions out of step, ENDs lagging, while a merger
/// cycles and a reader polls; returns what the reader saw that no commit point had.
async fn run(mode: &str) -> Option<Vec<String>> {
    let url = tidemark_e2e::postgres::fresh_database().await?;
    let pool = Pool::connect(&url, None).await.expect("pg");
    let reader = Pool::connect(&url, None).await.expect("pg");
    let mut bronze = BronzeFixture::new();
    let cfg = config(mode);
    let mut merger = bronze.merger(&pool, &cfg).await;
    let (mut parts, ends) = stream();

    let stop = Arc::new(AtomicBool::new(false));
    let landed = AtomicBool::new(false);
    // The merger's futures are not `Send`: it runs beside the landing in this task.
    let merging = async {
        while !landed.load(Ordering::SeqCst) {
            merger.cycle().await.expect("cycle");
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    };
    let seen = {
        let stop = stop.clone();
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
    };

    let landing = async {
        // Debezium writes a transaction's BEGIN before its events: the transaction topic is in
        // bronze from the first transaction on (the ENDs trail).
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
            let i = open[rng.below(open.len() as u64) as usize];
            let ((topic, p), records) = &mut parts[i];
            let n = (1 + rng.below(5) as usize).min(records.len());
            let chunk: Vec<Record> = records.drain(..n).collect();
            bronze.land(topic, *p, &chunk).await;
            data_landed += n;
            // The transaction topic trails the data by about twenty transactions.
            let due = (data_landed / 3).saturating_sub(20);
            let chunk: Vec<Record> = ends
                .by_ref()
                .take(due.saturating_sub(ends_landed))
                .collect();
            if !chunk.is_empty() {
                ends_landed += chunk.len();
                bronze.land(TXN_TOPIC, 0, &chunk).await;
            }
            tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        }
        let rest: Vec<Record> = ends.collect();
        if !rest.is_empty() {
            bronze.land(TXN_TOPIC, 0, &rest).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        landed.store(true, Ordering::SeqCst);
    };
    tokio::join!(merging, landing);
    stop.store(true, Ordering::SeqCst);
    let (bad, reads) = seen.await.expect("reader task");
    assert!(
        reads > 50,
        "the reader polled during the run ({reads} reads)"
    );
    merger.catch_up().await.expect("catch up");

    // Whatever the mode, the end state is the source's.
    let end_state = rows(&pool, READ).await;
    assert_eq!(inconsistent(&end_state[0]), None, "{end_state:?}");
    assert_eq!(
        end_state[0][4].as_deref(),
        Some(TRANSFERS.to_string().as_str())
    );
    Some(bad)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_see_half_a_source_transaction() {
    let Some(bad) = run("atomic").await else {
        return;
    };
    assert!(
        bad.is_empty(),
        "{} states no source commit point had, first: {:?}",
        bad.len(),
        bad.first()
    );
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
