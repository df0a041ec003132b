//! Whole source transactions per merge cycle (`merge.transactions = "atomic"`), planned as
//! values. Debezium's transaction topic lists each source transaction's END in commit order with
//! its event count per table; change events carry their transaction's id. A cycle applies, per
//! connector, the longest prefix of pending transactions whose events are all in the batch read
//! (or that were released), and cuts every partition before its first event of a transaction
//! outside that prefix. Every state a reader sees is then one the source had at a commit point:
//! - events of one partition follow commit order, so a prefix of transactions is a prefix of
//!   each partition's events;
//! - an event whose transaction has no pending END but which precedes, in its partition, an
//!   event of a pending transaction belongs to one already applied (a redelivery) or that never
//!   ended: it goes through;
//! - a transaction whose END never arrives is released by the caller after
//!   `merge.transaction_timeout`; one too large for a batch (its tables' reads stopped at the
//!   row budget before it was whole) is applied in pieces.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use tidemark_core::event::TopicPartition;

use crate::change::Change;

/// A source transaction's END record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxEnd {
    pub id: String,
    /// Its offset in the transaction topic.
    pub offset: i64,
    /// Events per data topic.
    pub counts: Vec<(String, i64)>,
    /// The END record's time: the transaction's commit time.
    pub commit_ms: Option<i64>,
}

/// One partition's read: the transaction of each change, in offset order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartTxns {
    pub topic: String,
    pub partition: i32,
    pub txns: Vec<Option<String>>,
    /// The read stopped at its row budget: bronze holds more.
    pub more: bool,
}

/// Events of transactions applied in pieces so far, by id and topic.
pub(crate) type Applied = BTreeMap<String, BTreeMap<String, i64>>;

/// What a cycle applies.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Changes kept per `(topic, partition)` (a prefix of its read).
    pub keep: BTreeMap<TopicPartition, usize>,
    /// Per transaction topic: how many of its pending ENDs are applied whole with this cycle.
    pub done: BTreeMap<String, usize>,
    /// Transactions applied in part this cycle, with the events applied, by topic.
    pub pieces: Applied,
    /// Transactions that hold changes back (for the caller's timeout).
    pub blocking: BTreeSet<String>,
    /// Changes held back.
    pub held: usize,
}

/// Plans a cycle. `ends` are the pending END records per transaction topic in order;
/// `released` the transactions let through whatever they miss.
pub(crate) fn plan(
    ends: &BTreeMap<String, Vec<TxEnd>>,
    parts: &[PartTxns],
    applied: &Applied,
    released: &BTreeSet<String>,
) -> Plan {
    let read = read_counts(parts);
    let complete = |e: &TxEnd| {
        e.counts
            .iter()
            .all(|(topic, n)| had(&read, applied, &e.id, topic) >= *n)
    };
    let known: HashSet<&str> = ends.values().flatten().map(|e| e.id.as_str()).collect();
    let mut prefix: BTreeMap<&str, usize> = ends
        .iter()
        .map(|(t, es)| {
            let k = es
                .iter()
                .take_while(|e| released.contains(&e.id) || complete(e))
                .count();
            (t.as_str(), k)
        })
        .collect();
    let mut pieces: BTreeSet<&str> = BTreeSet::new();
    for (t, es) in ends {
        if prefix[t.as_str()] == 0
            && let Some(e) = es.first()
            && too_large(e, &read, applied, parts)
        {
            pieces.insert(e.id.as_str());
        }
    }
    loop {
        let included: HashSet<&str> = ends
            .iter()
            .flat_map(|(t, es)| es[..prefix[t.as_str()]].iter().map(|e| e.id.as_str()))
            .chain(released.iter().map(String::as_str))
            .chain(pieces.iter().copied())
            .collect();
        let keep: Vec<usize> = parts.iter().map(|p| cut(p, &included, &known)).collect();
        // A transaction with an event past some cut is not whole: it and those after it wait.
        let past_cuts: HashSet<&str> = parts
            .iter()
            .zip(&keep)
            .flat_map(|(p, k)| p.txns[*k..].iter().flatten().map(String::as_str))
            .collect();
        let mut shrunk = false;
        for (t, es) in ends {
            let k = prefix[t.as_str()];
            let first_split = es[..k]
                .iter()
                .position(|e| past_cuts.contains(e.id.as_str()));
            if let Some(i) = first_split {
                prefix.insert(t.as_str(), i);
                if let Some(e) = es.get(k) {
                    pieces.remove(e.id.as_str());
                }
                shrunk = true;
            }
        }
        if !shrunk {
            return finish(ends, parts, &prefix, &pieces, keep);
        }
    }
}

fn finish(
    ends: &BTreeMap<String, Vec<TxEnd>>,
    parts: &[PartTxns],
    prefix: &BTreeMap<&str, usize>,
    pieces: &BTreeSet<&str>,
    keep: Vec<usize>,
) -> Plan {
    let mut plan = Plan::default();
    for (p, k) in parts.iter().zip(keep) {
        plan.held += p.txns.len() - k;
        if let Some(Some(id)) = p.txns.get(k) {
            plan.blocking.insert(id.clone());
        }
        for id in p.txns[..k].iter().flatten() {
            if pieces.contains(id.as_str()) {
                *plan
                    .pieces
                    .entry(id.clone())
                    .or_default()
                    .entry(p.topic.clone())
                    .or_default() += 1;
            }
        }
        plan.keep
            .insert(TopicPartition::new(p.topic.clone(), p.partition), k);
    }
    for (t, es) in ends {
        let k = prefix[t.as_str()];
        plan.done.insert(t.clone(), k);
        if let Some(e) = es.get(k)
            && !pieces.contains(e.id.as_str())
        {
            plan.blocking.insert(e.id.clone());
        }
    }
    plan
}

/// Events read per transaction and topic.
type ReadCounts<'a> = HashMap<(&'a str, &'a str), i64>;

fn read_counts(parts: &[PartTxns]) -> ReadCounts<'_> {
    let mut read = HashMap::new();
    for p in parts {
        for id in p.txns.iter().flatten() {
            *read.entry((id.as_str(), p.topic.as_str())).or_default() += 1;
        }
    }
    read
}

/// Events of transaction `id` in `topic` read now or applied in earlier pieces.
fn had(read: &ReadCounts<'_>, applied: &Applied, id: &str, topic: &str) -> i64 {
    let before = applied.get(id).and_then(|t| t.get(topic)).copied();
    read.get(&(id, topic)).copied().unwrap_or(0) + before.unwrap_or(0)
}

/// The first pending transaction cannot be read whole: in every table it still misses events
/// of, a partition's read stopped at the row budget holding nothing but its events.
fn too_large(e: &TxEnd, read: &ReadCounts<'_>, applied: &Applied, parts: &[PartTxns]) -> bool {
    let short: Vec<&str> = e
        .counts
        .iter()
        .filter(|(t, n)| had(read, applied, &e.id, t) < *n)
        .map(|(t, _)| t.as_str())
        .collect();
    !short.is_empty()
        && short.iter().all(|t| {
            parts
                .iter()
                .any(|p| p.topic == *t && p.more && only(p, &e.id))
        })
}

/// Whether a partition's read holds events of transaction `id` and none of another.
fn only(p: &PartTxns, id: &str) -> bool {
    p.txns.iter().all(|t| t.as_deref().is_none_or(|t| t == id))
        && p.txns.iter().any(|t| t.as_deref() == Some(id))
}

/// How many changes of a partition go through: up to its first event of a transaction not
/// included, unless that transaction is unknown and an event of a known one follows it.
fn cut(p: &PartTxns, included: &HashSet<&str>, known: &HashSet<&str>) -> usize {
    let last_known = p
        .txns
        .iter()
        .rposition(|t| t.as_deref().is_some_and(|id| known.contains(id)));
    p.txns
        .iter()
        .enumerate()
        .position(|(i, t)| match t.as_deref() {
            None => false,
            Some(id) if included.contains(id) => false,
            Some(id) => known.contains(id) || last_known.is_none_or(|k| i > k),
        })
        .unwrap_or(p.txns.len())
}

/// Each transaction's commit time, from its END record where that has one.
pub(crate) fn commit_times(ends: &BTreeMap<String, Vec<TxEnd>>) -> BTreeMap<&str, i64> {
    ends.values()
        .flatten()
        .filter_map(|e| Some((e.id.as_str(), e.commit_ms?)))
        .collect()
}

/// Gives every change of a transaction with a commit time (see [`commit_times`]) that time, so
/// all versions and facts one source transaction writes share it (`valid_from`; a fact resolves
/// to the dimension versions its own transaction wrote). Other changes keep their event time.
pub(crate) fn at_commit_times<'a>(
    changes: impl IntoIterator<Item = &'a mut Change>,
    times: &BTreeMap<&str, i64>,
) {
    if times.is_empty() {
        return;
    }
    for c in changes {
        if let Some(t) = c.txn.as_deref().and_then(|id| times.get(id)) {
            c.ts_ms = *t;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(id: &str, offset: i64, counts: &[(&str, i64)]) -> TxEnd {
        TxEnd {
            commit_ms: None,
            id: id.into(),
            offset,
            counts: counts.iter().map(|(t, n)| (t.to_string(), *n)).collect(),
        }
    }

    fn part(topic: &str, partition: i32, txns: &[Option<&str>], more: bool) -> PartTxns {
        PartTxns {
            topic: topic.into(),
            partition,
            txns: txns.iter().map(|t| t.map(String::from)).collect(),
            more,
        }
    }

    fn ends(list: Vec<TxEnd>) -> BTreeMap<String, Vec<TxEnd>> {
        BTreeMap::from([("c.transaction".to_string(), list)])
    }

    fn keep(plan: &Plan) -> Vec<usize> {
        plan.keep.values().copied().collect()
    }

    #[test]
    fn whole_transactions_go_through_and_an_incomplete_one_waits_in_every_table() {
        // t1 and t2 each move money between accounts in two partitions; t2's credit has not
        // landed yet.
        let ends = ends(vec![end("t1", 10, &[("a", 2)]), end("t2", 11, &[("a", 2)])]);
        let parts = [
            part("a", 0, &[Some("t1"), Some("t2")], false),
            part("a", 1, &[Some("t1")], false),
        ];
        let plan = plan(&ends, &parts, &Applied::new(), &BTreeSet::new());
        assert_eq!(keep(&plan), vec![1, 1]);
        assert_eq!(plan.done["c.transaction"], 1);
        assert_eq!(plan.held, 1);
        assert!(plan.blocking.contains("t2"));
    }

    #[test]
    fn a_transaction_without_its_end_holds_back_what_follows() {
        // The transaction topic lags: t2's END is not in bronze yet.
        let ends = ends(vec![end("t1", 10, &[("a", 1), ("b", 1)])]);
        let parts = [
            part("a", 0, &[Some("t1"), Some("t2"), None], false),
            part("b", 0, &[Some("t1"), Some("t2")], false),
        ];
        let plan = plan(&ends, &parts, &Applied::new(), &BTreeSet::new());
        assert_eq!(keep(&plan), vec![1, 1]);
        assert!(plan.blocking.contains("t2"));
    }

    #[test]
    fn an_unknown_transaction_before_a_known_one_goes_through_and_alone_it_waits() {
        // Partition b0 holds an event of x (no pending END) before t1's.
        let ends = ends(vec![
            end("t1", 10, &[("a", 1), ("b", 1)]),
            end("t2", 12, &[("a", 1)]),
        ]);
        let parts = [
            part("a", 0, &[Some("t1"), Some("t2")], false),
            part("b", 0, &[Some("x"), Some("t1")], false),
        ];
        let plan = plan(&ends, &parts, &Applied::new(), &BTreeSet::new());
        // x precedes t1 in b0, so x is taken as already ended (or never to end): it goes.
        assert_eq!(keep(&plan), vec![2, 2]);
        assert_eq!(plan.done["c.transaction"], 2);
        // Alone, x waits (its END may still come).
        let parts = [part("b", 0, &[Some("x")], false)];
        let plan = self::plan(&BTreeMap::new(), &parts, &Applied::new(), &BTreeSet::new());
        assert_eq!(keep(&plan), vec![0]);
        assert!(plan.blocking.contains("x"));
        let released = BTreeSet::from(["x".to_string()]);
        let plan = self::plan(&BTreeMap::new(), &parts, &Applied::new(), &released);
        assert_eq!(keep(&plan), vec![1]);
    }

    #[test]
    fn a_complete_transaction_cut_in_one_partition_waits_in_all() {
        // Out of commit order (never from one Debezium connector, but never half applied):
        // t1 is whole, yet in b0 it follows t3, which is not.
        let ends = ends(vec![
            end("t1", 1, &[("a", 1), ("b", 1)]),
            end("t3", 2, &[("b", 2)]),
        ]);
        let parts = [
            part("a", 0, &[Some("t1")], false),
            part("b", 0, &[Some("t3"), Some("t1")], false),
        ];
        let plan = plan(&ends, &parts, &Applied::new(), &BTreeSet::new());
        assert_eq!(keep(&plan), vec![0, 0]);
        assert_eq!(plan.done["c.transaction"], 0);
    }

    #[test]
    fn a_read_stopped_at_its_budget_is_no_reason_to_split_a_transaction() {
        let ends = ends(vec![end("t1", 1, &[("a", 1)]), end("t2", 2, &[("a", 2)])]);
        let parts = [part("a", 0, &[Some("t1"), Some("t2")], true)];
        let plan = plan(&ends, &parts, &Applied::new(), &BTreeSet::new());
        assert_eq!(keep(&plan), vec![1]);
        assert!(plan.pieces.is_empty());
    }

    #[test]
    fn a_transaction_larger_than_a_read_goes_in_pieces_and_ends_when_whole() {
        let ends = ends(vec![
            end("big", 10, &[("a", 5)]),
            end("t2", 11, &[("a", 1)]),
        ]);
        let parts = [part("a", 0, &[Some("big"); 3], true)];
        let first = plan(&ends, &parts, &Applied::new(), &BTreeSet::new());
        assert_eq!(keep(&first), vec![3]);
        assert_eq!(first.done["c.transaction"], 0);
        assert_eq!(first.pieces["big"]["a"], 3);
        let parts = [part("a", 0, &[Some("big"), Some("big"), Some("t2")], false)];
        let second = plan(&ends, &parts, &first.pieces, &BTreeSet::new());
        assert_eq!(keep(&second), vec![3]);
        assert_eq!(second.done["c.transaction"], 2);
    }

    #[test]
    fn events_without_transactions_never_wait() {
        let ends = ends(vec![end("t1", 3, &[("a", 1)])]);
        let parts = [part(
            "a",
            0,
            &[None, Some("t1"), None, Some("t2"), None],
            false,
        )];
        let plan = plan(&ends, &parts, &Applied::new(), &BTreeSet::new());
        assert_eq!(keep(&plan), vec![3]);
        assert_eq!(plan.done["c.transaction"], 1);
    }

    #[test]
    fn a_released_transaction_goes_through_incomplete() {
        let ends = ends(vec![end("t1", 3, &[("a", 2)])]);
        let parts = [part("a", 0, &[Some("t1"), Some("t2")], false)];
        let plan = plan(
            &ends,
            &parts,
            &Applied::new(),
            &BTreeSet::from(["t1".to_string()]),
        );
        assert_eq!(keep(&plan), vec![1]);
        assert_eq!(plan.done["c.transaction"], 1);
    }

    #[test]
    fn changes_of_a_transaction_take_its_commit_time() {
        let change = |txn: Option<&str>, ts_ms: i64| Change {
            topic: "bank.public.a".into(),
            partition: 0,
            offset: 0,
            op: tidemark_core::event::Op::Update,
            pos: crate::change::SourcePos::default(),
            ts_ms,
            record_key: Default::default(),
            before: None,
            after: None,
            txn: txn.map(String::from),
        };
        let mut changes = vec![
            change(Some("t1"), 10),
            change(Some("t1"), 12),
            change(Some("t2"), 20),
            change(None, 30),
        ];
        let mut ends = BTreeMap::new();
        let mut e1 = end("t1", 0, &[]);
        e1.commit_ms = Some(15);
        ends.insert("bank.transaction".to_owned(), vec![e1, end("t2", 1, &[])]);
        at_commit_times(&mut changes, &commit_times(&ends));
        let ts: Vec<i64> = changes.iter().map(|c| c.ts_ms).collect();
        assert_eq!(
            ts,
            [15, 15, 20, 30],
            "t2's END has no time: its events keep theirs"
        );
    }
}
