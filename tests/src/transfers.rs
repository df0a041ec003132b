//! A bank's transfers with Debezium transaction metadata: each transfer is one source
//! transaction that debits one account, credits another (`accounts`, a dimension) and records a
//! transfer (`transfers`, a fact), with the END records of `bank.transaction`. The same stream
//! every run; used by the whole-transaction tests and the merge benchmark.

use serde_json::{Value as Json, json};

use crate::bronze_fixture::{Record, pg_source};
use crate::merge_scenario::Rng;

pub const ACCOUNTS_TOPIC: &str = "bank.public.accounts";
pub const TRANSFERS_TOPIC: &str = "bank.public.transfers";
pub const TXN_TOPIC: &str = "bank.transaction";
pub const OPENING: i64 = 1_000;

/// A Debezium change record of `accounts` or `transfers`, with its transaction block.
pub fn record(
    id: i64,
    op: &str,
    after: Json,
    source: Json,
    txn: Option<(&str, u64, u64)>,
) -> Record {
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

/// An END record; its time is the transaction's commit time.
pub fn end(id: &str, ts_ms: i64, counts: &[(&str, i64)]) -> Record {
    let value = json!({
        "status": "END", "id": id, "ts_ms": ts_ms,
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
pub type Stream = (Vec<((String, i32), Vec<Record>)>, Vec<Record>);

/// `transfers` transfers between `accounts` accounts (opening balance [`OPENING`]), rows in
/// `partitions` partitions by id.
pub fn stream(accounts: i64, transfers: u64, partitions: i32) -> Stream {
    let mut rng = Rng(0x5eed);
    let mut parts: std::collections::BTreeMap<(String, i32), Vec<Record>> = Default::default();
    let mut push = |topic: &str, id: i64, r: Record| {
        parts
            .entry((topic.to_owned(), (id % partitions as i64) as i32))
            .or_default()
            .push(r)
    };
    let mut balance = vec![OPENING; accounts as usize];
    let mut moves = vec![0i64; accounts as usize];
    let mut lsn = 1_000u64;
    for id in 0..accounts {
        lsn += 1;
        let after = json!({"id": id, "balance": OPENING, "moves": 0});
        let src = pg_source(None, lsn, 1_700_000_000_000 + lsn as i64, true);
        push(ACCOUNTS_TOPIC, id, record(id, "r", after, src, None));
    }
    let mut ends = Vec::new();
    for t in 0..transfers {
        let from = rng.next(accounts as u64) as i64;
        let to = (from + 1 + rng.next(accounts as u64 - 1) as i64) % accounts;
        let amount = 1 + rng.next(50) as i64;
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
        // Committed 5 ms after its statements ran.
        ends.push(end(
            &txn,
            ts + 5,
            &[("public.accounts", 2), ("public.transfers", 1)],
        ));
    }
    (parts.into_iter().collect(), ends)
}

/// The merge settings and tables of the stream: `transactions = "<mode>"`, batches of `batch`.
pub fn tables(mode: &str, batch: usize) -> String {
    format!(
        r#"
[merge]
max_batch_rows = {batch}
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
    )
}
