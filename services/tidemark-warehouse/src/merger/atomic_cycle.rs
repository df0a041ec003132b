//! The cycle of `merge.transactions = "atomic"`: every table's batch read, cut to whole source
//! transactions ([`crate::atomic`]), and applied in one warehouse transaction with every ledger
//! move, the transaction topics' included. One lease group holds all tables, so one merger
//! applies a source transaction's tables together.

use crate::stop::StopReason;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tidemark_core::event::TopicPartition;
use tidemark_core::metrics::labels::TxnFallback;

use tidemark_core::metrics;
use tracing::Instrument as _;

use super::{MergeError, Merger, Moves, Reach, apply_failure};
use crate::apply::{Context, TableBatch, apply};
use crate::atomic::{self, PartTxns, TxEnd};
use crate::bronze_fetch::Fetched;
use crate::spec::TableSpec;
use crate::sql::claims;
use crate::sql::ledger;
use crate::txn_read;

/// The lease group of every table in atomic mode.
pub(super) const ATOMIC_GROUP: &str = "*";

/// Source transactions the merger tracks between cycles.
#[derive(Debug, Default)]
pub(super) struct OpenTxns {
    /// When each transaction that holds changes back was first seen doing so.
    since: BTreeMap<String, Instant>,
    /// Events of transactions applied in pieces so far.
    pieces: atomic::Applied,
    /// Transaction topics with more than one partition, warned about once.
    split_topics: BTreeSet<String>,
    /// Whether each topic named like a transaction topic holds transaction records (`true`) or
    /// rows (a table named `transaction`), once its first commit record told.
    kinds: BTreeMap<String, bool>,
    /// This cycle's transaction topics.
    topics: BTreeSet<String>,
}

/// What the cycle reads and plans.
struct Read {
    tables: Vec<(TableSpec, Fetched)>,
    ends: BTreeMap<String, Vec<TxEnd>>,
}

impl Merger {
    /// Whether this cycle applies whole source transactions: the mode is on and some connector's
    /// transaction topic is in bronze.
    pub(super) async fn atomic(
        &mut self,
        by_topic: &BTreeMap<String, Vec<i32>>,
    ) -> Result<bool, MergeError> {
        if self.config.merge.transactions != tidemark_core::config::TransactionMode::Atomic {
            return Ok(false);
        }
        self.txns.topics = self.transaction_topics(by_topic).await?;
        Ok(!self.txns.topics.is_empty())
    }

    /// The connectors' transaction topics in bronze: named `<prefix>.transaction` and holding
    /// transaction records rather than rows (a source table named `transaction` has a topic of
    /// that name too, and is merged like any other).
    async fn transaction_topics(
        &mut self,
        by_topic: &BTreeMap<String, Vec<i32>>,
    ) -> Result<BTreeSet<String>, MergeError> {
        let mut out = BTreeSet::new();
        for (topic, parts) in by_topic {
            if txn_read::prefix_of(topic).is_none() {
                continue;
            }
            let is_txn = match self.txns.kinds.get(topic) {
                Some(k) => *k,
                None => {
                    let p = parts.iter().min().copied().unwrap_or(0);
                    let first = crate::bronze_read::records_from(
                        self.store.as_ref(),
                        &self.root,
                        topic,
                        p,
                        0,
                        1,
                    )
                    .await?;
                    match first.first().filter(|r| !r.files.is_empty()) {
                        Some(rec) => {
                            let rows = rec.files.iter().any(|f| f.table == *topic);
                            self.txns.kinds.insert(topic.clone(), !rows);
                            !rows
                        }
                        // Nothing landed to tell by yet: by its name.
                        None => true,
                    }
                }
            };
            if is_txn {
                out.insert(topic.clone());
            }
        }
        Ok(out)
    }

    /// One atomic cycle over the tables this merger holds.
    pub(super) async fn cycle_atomic(
        &mut self,
        specs: &BTreeMap<String, TableSpec>,
        by_topic: &BTreeMap<String, Vec<i32>>,
        order: &[&String],
        positions: &BTreeMap<TopicPartition, i64>,
        held: &BTreeMap<String, (String, String)>,
        stats: &mut super::CycleStats,
    ) -> Result<(), MergeError> {
        // A transaction larger than a batch: read up to max_transaction_rows to take it whole.
        let most = self.config.merge.max_transaction_rows;
        let mut scale = 1;
        let chosen = self.choose_tables((specs, order), held, stats).await?;
        let ends = self.read_ends(by_topic, positions, &chosen).await?;
        let (read, parts, plan, released) = loop {
            let mut tables = Vec::with_capacity(chosen.len());
            for spec in &chosen {
                let fetched = self
                    .fetch_batch(
                        spec,
                        &by_topic[&spec.topic],
                        positions,
                        &[],
                        Reach::Scaled(scale),
                    )
                    .await?;
                tables.push((spec.clone(), fetched));
            }
            let (parts, plan, released) = self.plan_atomic(&tables, &ends);
            let reach = self.opts.max_batch_rows.saturating_mul(scale);
            if plan.pieces.is_empty() || reach >= most {
                break (Read { tables, ends }, parts, plan, released);
            }
            scale = scale
                .saturating_mul(4)
                .min(most.div_ceil(self.opts.max_batch_rows.max(1)));
            tracing::debug!(
                rows = reach,
                "a source transaction is larger than a batch: reading more"
            );
        };
        let times = atomic::commit_times(&read.ends);
        let mut batches = Vec::new();
        for (spec, mut fetched) in read.tables {
            for p in &mut fetched.parts {
                let keep = plan.keep[&TopicPartition::new(spec.topic.clone(), p.partition)];
                p.keep_first(keep);
                let changes = p
                    .files
                    .iter_mut()
                    .flat_map(|f| f.changes.changes.iter_mut());
                atomic::at_commit_times(changes, &times);
            }
            fetched.behind |= fetched.parts.iter().any(|p| p.more);
            let (batch, moves) = self.assemble(&spec, fetched);
            batches.push((spec, batch, moves));
        }
        let txn_moves: Vec<(String, Option<i64>, i64)> = plan
            .done
            .iter()
            .filter(|(_, done)| **done > 0)
            .map(|(t, done)| {
                let next = read.ends[t][done - 1].offset + 1;
                (
                    t.clone(),
                    positions.get(&TopicPartition::new(t.clone(), 0)).copied(),
                    next,
                )
            })
            .collect();
        let committed = self
            .apply_atomic(specs, &batches, &txn_moves, stats)
            .await?;
        self.note_transactions(&read.ends, &plan, (&released, committed), &parts);
        Ok(())
    }

    /// Each partition's transactions in order, and the plan of the cycle with the transactions
    /// released at their timeout.
    fn plan_atomic(
        &self,
        tables: &[(TableSpec, Fetched)],
        ends: &BTreeMap<String, Vec<TxEnd>>,
    ) -> (Vec<PartTxns>, atomic::Plan, BTreeSet<String>) {
        // A connector whose transaction topic is not in bronze has no transactions to wait for.
        let connectors = Connectors::of(ends, &[]);
        let parts: Vec<PartTxns> = tables
            .iter()
            .flat_map(|(spec, f)| {
                let tracked = connectors.of_topic(&spec.topic).is_some();
                f.parts.iter().map(move |p| PartTxns {
                    topic: spec.topic.clone(),
                    partition: p.partition,
                    txns: p
                        .files
                        .iter()
                        .flat_map(|f| f.changes.changes.iter())
                        .map(|c| c.txn.clone().filter(|_| tracked))
                        .collect(),
                    more: p.more,
                })
            })
            .collect();
        let timeout = self.config.merge.transaction_timeout();
        let released: BTreeSet<String> = self
            .txns
            .since
            .iter()
            .filter(|(_, at)| at.elapsed() >= timeout)
            .map(|(id, _)| id.clone())
            .collect();
        let plan = atomic::plan(ends, &parts, &self.txns.pieces, &released);
        (parts, plan, released)
    }

    /// The tables this cycle merges: held, not skipped, their claims agreeing (a refused one
    /// is stopped here, once per cycle).
    async fn choose_tables(
        &mut self,
        (specs, order): (&BTreeMap<String, TableSpec>, &[&String]),
        held: &BTreeMap<String, (String, String)>,
        stats: &mut super::CycleStats,
    ) -> Result<Vec<TableSpec>, MergeError> {
        let mut chosen = Vec::new();
        for topic in order.iter().copied() {
            let spec = &specs[topic];
            if self.txns.topics.contains(topic) || self.skips(topic, spec) || !self.holds(spec) {
                continue;
            }
            if let Some((held_topic, role)) = held.get(&spec.name)
                && let Err(refusal) = claims::judge(spec, &spec.role(), held_topic, role)
            {
                self.refuse(stats, spec, refusal).await?;
                continue;
            }
            chosen.push(spec.clone());
        }
        Ok(chosen)
    }

    /// The pending END records of every transaction topic, their counts only for the `chosen`
    /// tables (the others count as present).
    async fn read_ends(
        &mut self,
        by_topic: &BTreeMap<String, Vec<i32>>,
        positions: &BTreeMap<TopicPartition, i64>,
        chosen: &[TableSpec],
    ) -> Result<BTreeMap<String, Vec<TxEnd>>, MergeError> {
        let merged: BTreeSet<&str> = chosen.iter().map(|s| s.topic.as_str()).collect();
        let mut ends = BTreeMap::new();
        for topic in self.txns.topics.clone() {
            let Some(connector) = txn_read::prefix_of(&topic) else {
                continue;
            };
            metrics::transactions_seen(connector);
            if by_topic[&topic].iter().any(|p| *p != 0)
                && self.txns.split_topics.insert(topic.clone())
            {
                tracing::warn!(
                    topic,
                    "the transaction topic has more than one partition: END records are read from \
                     partition 0 only (their commit order across partitions is unknown), so \
                     transactions ending elsewhere wait for merge.transaction_timeout_ms; create \
                     the topic with one partition"
                );
            }
            let from = positions
                .get(&TopicPartition::new(topic.clone(), 0))
                .copied()
                .unwrap_or(0);
            let mut list =
                txn_read::ends_from(self.store.as_ref(), &self.root, &topic, 0, from).await?;
            for e in &mut list {
                e.counts.retain(|(t, _)| merged.contains(t.as_str()));
            }
            ends.insert(topic, list);
        }
        Ok(ends)
    }

    /// Applies the batches and moves the ledger, all in one warehouse transaction. `false`
    /// when nothing was committed (nothing to do, a table stopped, the lease was lost).
    async fn apply_atomic(
        &mut self,
        specs: &BTreeMap<String, TableSpec>,
        batches: &[(TableSpec, Result<TableBatch, StopReason>, Moves)],
        txn_moves: &[(String, Option<i64>, i64)],
        stats: &mut super::CycleStats,
    ) -> Result<bool, MergeError> {
        let idle = |(_, b, m): &&(TableSpec, Result<TableBatch, StopReason>, Moves)| {
            m.is_empty() && b.is_ok()
        };
        if txn_moves.is_empty() && batches.iter().all(|b| idle(&b)) {
            return Ok(false);
        }
        let started = Instant::now();
        let mut tx = self.pool.begin().await?;
        let mut applied = Vec::new();
        for entry in batches.iter().filter(|b| !idle(b)) {
            let (spec, batch, moves) = entry;
            let related = super::related(spec, specs);
            if let Err(refusal) = claims::hold(&mut tx, &self.target, spec, &related).await? {
                tx.rollback().await?;
                self.refuse(stats, spec, refusal).await?;
                return Ok(false);
            }
            let batch = match batch {
                Ok(b) => b,
                Err(problem) => {
                    tx.rollback().await?;
                    self.stop(stats, spec, problem.clone());
                    return Ok(false);
                }
            };
            let ctx = Context {
                target: &self.target,
                specs,
                now_ms: chrono::Utc::now().timestamp_millis(),
                fact_marks: &self.fact_marks,
            };
            let span = tracing::info_span!("merge_batch", table = %spec.name, changes = batch.changes.len());
            match apply(&mut tx, ctx, batch).instrument(span).await {
                Ok(a) => applied.push((batch, moves, a)),
                Err(e) => {
                    let problem = apply_failure(e, &spec.topic, moves)?;
                    tx.rollback().await?;
                    self.stop(stats, spec, problem);
                    return Ok(false);
                }
            }
        }
        if !self
            .leases
            .fence(&mut tx, &self.target, ATOMIC_GROUP)
            .await?
        {
            tx.rollback().await?;
            self.lost_group(ATOMIC_GROUP, specs);
            return Ok(false);
        }
        for (batch, moves, _) in &applied {
            for (partition, (expected, next)) in moves.iter() {
                let topic = &batch.spec.topic;
                ledger::advance(&mut tx, &self.target, topic, *partition, *expected, *next).await?;
            }
        }
        for (topic, expected, next) in txn_moves {
            ledger::advance(&mut tx, &self.target, topic, 0, *expected, *next).await?;
        }
        let segments = self.lineages.take_dirty();
        crate::sql::segments::write(&mut tx, &self.target, &segments).await?;
        tx.commit().await?;
        for (topic, _, next) in txn_moves {
            metrics::merged_position(topic, 0, *next);
        }
        let took = started.elapsed();
        for (batch, moves, a) in applied {
            self.merged(batch, moves, &a, took);
            stats.tables.insert(batch.spec.name.clone(), a);
        }
        Ok(true)
    }

    /// Which transactions stay open (and since when); after a commit also which went whole, in
    /// pieces or past their timeout; metrics per connector.
    fn note_transactions(
        &mut self,
        ends: &BTreeMap<String, Vec<TxEnd>>,
        plan: &atomic::Plan,
        (released, committed): (&BTreeSet<String>, bool),
        parts: &[PartTxns],
    ) {
        let connectors = Connectors::of(ends, parts);
        if committed {
            self.count_transactions(ends, plan, released, &connectors);
            self.txns.since.retain(|id, _| plan.blocking.contains(id));
        }
        // Uncommitted, a released transaction keeps its timer: it is released again next cycle.
        let now = Instant::now();
        for id in &plan.blocking {
            self.txns.since.entry(id.clone()).or_insert(now);
        }
        for topic in ends.keys() {
            let connector = txn_read::prefix_of(topic).unwrap_or(topic);
            let waits: Vec<Duration> = self
                .txns
                .since
                .iter()
                .filter(|(id, _)| connectors.of_txn(id) == connector)
                .map(|(_, at)| now - *at)
                .collect();
            let oldest = waits.iter().max().copied().unwrap_or_default();
            let held: usize = parts
                .iter()
                .filter(|p| connectors.of_topic(&p.topic) == Some(connector))
                .map(|p| {
                    p.txns.len() - plan.keep[&TopicPartition::new(p.topic.clone(), p.partition)]
                })
                .sum();
            metrics::transactions_open(connector, waits.len(), oldest.as_secs_f64(), held);
        }
    }

    /// Transactions a committed cycle applied: whole, in pieces, or released at their timeout.
    fn count_transactions(
        &mut self,
        ends: &BTreeMap<String, Vec<TxEnd>>,
        plan: &atomic::Plan,
        released: &BTreeSet<String>,
        connectors: &Connectors,
    ) {
        for id in released.iter().filter(|id| !plan.blocking.contains(*id)) {
            let connector = connectors.of_txn(id);
            tracing::warn!(
                transaction = id,
                connector,
                "source transaction applied incomplete: its events or its END record did not reach bronze within merge.transaction_timeout_ms"
            );
            metrics::transaction_fallback(connector, TxnFallback::Timeout);
            self.txns.since.remove(id);
        }
        for (id, counts) in &plan.pieces {
            let connector = connectors.of_txn(id);
            if !self.txns.pieces.contains_key(id) {
                tracing::warn!(
                    transaction = id,
                    connector,
                    "source transaction larger than merge.max_transaction_rows (events of one table): applied in pieces"
                );
                metrics::transaction_fallback(connector, TxnFallback::TooLarge);
            }
            let had = self.txns.pieces.entry(id.clone()).or_default();
            for (t, n) in counts {
                *had.entry(t.clone()).or_default() += n;
            }
        }
        for (topic, done) in &plan.done {
            let connector = txn_read::prefix_of(topic).unwrap_or(topic);
            metrics::transactions_applied(connector, *done as u64);
            for e in &ends[topic][..*done] {
                self.txns.pieces.remove(&e.id);
                self.txns.since.remove(&e.id);
            }
        }
    }
}

/// The connector (topic prefix) of each data topic and source transaction of a cycle.
struct Connectors {
    /// `"<prefix>."` of each transaction topic in bronze, with its prefix.
    prefixes: Vec<(String, String)>,
    txns: BTreeMap<String, String>,
}

impl Connectors {
    fn of(ends: &BTreeMap<String, Vec<TxEnd>>, parts: &[PartTxns]) -> Connectors {
        let prefixes: Vec<(String, String)> = ends
            .keys()
            .filter_map(|t| txn_read::prefix_of(t))
            .map(|c| (format!("{c}."), c.to_owned()))
            .collect();
        let mut c = Connectors {
            prefixes,
            txns: BTreeMap::new(),
        };
        for (topic, es) in ends {
            let connector = txn_read::prefix_of(topic).unwrap_or(topic);
            for e in es {
                c.txns.insert(e.id.clone(), connector.to_owned());
            }
        }
        for p in parts {
            let Some(connector) = c.of_topic(&p.topic).map(str::to_owned) else {
                continue;
            };
            for id in p.txns.iter().flatten() {
                c.txns
                    .entry(id.clone())
                    .or_insert_with(|| connector.clone());
            }
        }
        c
    }

    /// The connector whose transaction topic covers a data topic.
    fn of_topic(&self, topic: &str) -> Option<&str> {
        self.prefixes
            .iter()
            .find(|(dotted, _)| topic.starts_with(dotted.as_str()))
            .map(|(_, c)| c.as_str())
    }

    /// A transaction's connector ("" when unknown).
    fn of_txn(&self, id: &str) -> &str {
        self.txns.get(id).map_or("", String::as_str)
    }
}
