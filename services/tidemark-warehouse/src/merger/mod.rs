//! The merge loop: per table, read bronze from the ledger position through the commit log,
//! apply the batch and advance the ledger in one transaction. Dimensions go before facts so
//! references resolve against the newest versions. A table that cannot go on (an incompatible
//! schema change, a bad name) stops alone; a warehouse or store outage fails the cycle, which the
//! caller retries.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tidemark_core::event::TopicPartition;

use object_store::ObjectStore;
use object_store::path::Path;
use tidemark_core::config::Config;
use tidemark_core::disposition::Disposition;
use tidemark_core::event::Op;
use tidemark_core::metrics::labels::{MergeFault, RowsWritten, Scd2Event};
use tidemark_core::metrics::{self, BatchMerged};
use tidemark_lake::commit_log;
use tracing::Instrument as _;

mod atomic_cycle;

use crate::apply::{Applied, ApplyError, Context, FactMarks, TableBatch, apply};
use crate::bronze_fetch::{Fetched, ReadAheads, Request, Starts, fetch};
use crate::bronze_read::{ReadError, ReadOptions};
use crate::change::Columns;
use crate::fact_hold::Limit;
use crate::freshness::{self, HeartbeatLog};
use crate::spec::TableSpec;
use crate::sql::claims::{self, Refusal};
use crate::sql::conn::Pool;
use crate::sql::leases::{self, Leases};
use crate::sql::ledger::{self, LedgerError};
use crate::sql::names::Target;
use crate::sql::schema::bootstrap;
use crate::stop::{StopKind, StopReason};

/// Per partition, the ledger position a batch read from and the one after it.
type Moves = BTreeMap<i32, (Option<i64>, i64)>;

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("warehouse: {0}")]
    Sql(#[from] sqlx::Error),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("bronze: {0}")]
    Store(#[from] tidemark_lake::store::StoreError),
    #[error("target suffix `{0}` must be 1-20 characters of a-z, 0-9 and _")]
    BadSuffix(String),
    #[error(
        "--from rebuilds tables of a target that exists; {0:?} has none yet: build it whole \
         (drop --from)"
    )]
    NothingToRebuild(Vec<String>),
}

impl MergeError {
    /// What failed, as the metrics name it.
    pub fn fault(&self) -> MergeFault {
        match self {
            MergeError::Ledger(LedgerError::Conflict { .. }) => MergeFault::LedgerConflict,
            MergeError::Read(_) | MergeError::Store(_) => MergeFault::Bronze,
            MergeError::Sql(_)
            | MergeError::Ledger(_)
            | MergeError::BadSuffix(_)
            | MergeError::NothingToRebuild(_) => MergeFault::Warehouse,
        }
    }

    /// A failed cycle is retried with backoff (a peer went away, a ledger race); a request that
    /// cannot be met is fatal. Data problems never get here: they stop their table
    /// ([`crate::stop::StopReason`]).
    pub fn disposition(&self) -> Disposition {
        match self {
            MergeError::BadSuffix(_) | MergeError::NothingToRebuild(_) => Disposition::Fatal,
            MergeError::Read(_)
            | MergeError::Sql(_)
            | MergeError::Ledger(_)
            | MergeError::Store(_) => Disposition::Retry,
        }
    }
}

/// How a merger is set up.
#[derive(Debug, Clone)]
pub struct MergeOptions {
    /// Replay target suffix (`None`: the live tables).
    pub target_suffix: Option<String>,
    /// Only these topics (`None`: every topic in bronze).
    pub only_topics: Option<BTreeSet<String>>,
    /// At most this many changes per table per transaction.
    pub max_batch_rows: usize,
    /// Merge topics no `[[tables]]` entry names (into silver).
    pub unconfigured_topics: bool,
}

impl MergeOptions {
    pub fn from_config(config: &Config) -> MergeOptions {
        MergeOptions {
            target_suffix: None,
            only_topics: None,
            max_batch_rows: config.merge.max_batch_rows,
            unconfigured_topics: config.merge.unconfigured_topics,
        }
    }
}

/// What one cycle did, per table.
#[derive(Debug, Clone, Default)]
pub struct CycleStats {
    pub tables: BTreeMap<String, Applied>,
    /// Newly stopped tables and why.
    pub stopped: BTreeMap<String, StopReason>,
}

impl CycleStats {
    pub fn changes(&self) -> u64 {
        self.tables.values().map(|a| a.changes).sum()
    }

    /// Whether anything moved (changes applied or ranges without data passed).
    pub fn is_idle(&self) -> bool {
        self.tables.is_empty()
    }
}

#[derive(Debug)]
pub struct Merger {
    pool: Pool,
    store: Arc<dyn ObjectStore>,
    root: Path,
    target: Target,
    config: Config,
    opts: MergeOptions,
    read_opts: ReadOptions,
    /// Topics whose tables stopped, with the reason; they are not retried until restart.
    stopped: BTreeMap<String, StopReason>,
    /// MySQL lineage segments, loaded each cycle.
    lineages: crate::lineage::Lineages,
    /// Per heartbeat partition: where to read on from.
    heartbeat_next: BTreeMap<TopicPartition, i64>,
    /// Per connector: the heartbeats read.
    heartbeats: BTreeMap<String, HeartbeatLog>,
    /// Per partition: when its newest commit record seen landed (ms).
    last_commit_ms: BTreeMap<TopicPartition, i64>,
    /// Topics whose bronze this cycle did not read to the end (budget, problem).
    behind: BTreeSet<String>,
    started_ms: i64,
    /// The table groups this merger holds.
    leases: Leases,
    /// Each table's group (a dimension with its facts), from the last cycle.
    groups: BTreeMap<String, String>,
    /// The next batches of tables that are behind, read while the current ones apply.
    ahead: ReadAheads,
    /// Per partition: the newest source time merged (ms), since start; facts wait for it.
    merged_ts: BTreeMap<TopicPartition, i64>,
    /// Partitions whose last read did not reach the end of their bronze.
    lagging: BTreeSet<TopicPartition>,
    /// Merging as it lands ([`Merger::run`]): facts may wait for their dimensions a while.
    live: bool,
    /// The newest fact of each fact table this merger holds, where known.
    fact_marks: FactMarks,
    /// Source transactions open or applied in pieces (`merge.transactions = "atomic"`).
    txns: atomic_cycle::OpenTxns,
}

impl Merger {
    pub async fn open(config: &Config, opts: MergeOptions) -> Result<Merger, MergeError> {
        let (store, root) = tidemark_lake::store::open(&config.bronze)?;
        let pool = Pool::connect_to(&config.warehouse).await?;
        Merger::with(pool, store, root, config, opts).await
    }

    pub async fn with(
        pool: Pool,
        store: Arc<dyn ObjectStore>,
        root: Path,
        config: &Config,
        opts: MergeOptions,
    ) -> Result<Merger, MergeError> {
        let target = Target::new(pool.backend(), opts.target_suffix.clone())
            .map_err(MergeError::BadSuffix)?;
        let mut tx = pool.begin().await?;
        bootstrap(&mut tx, &target).await?;
        tx.commit().await?;
        Ok(Merger {
            pool,
            store,
            root,
            target,
            read_opts: ReadOptions {
                unavailable_placeholder: config.kafka.unavailable_value_placeholder.clone(),
            },
            config: config.clone(),
            opts,
            stopped: BTreeMap::new(),
            lineages: Default::default(),
            heartbeat_next: BTreeMap::new(),
            heartbeats: BTreeMap::new(),
            last_commit_ms: BTreeMap::new(),
            behind: BTreeSet::new(),
            started_ms: chrono::Utc::now().timestamp_millis(),
            leases: Leases::new(config.merge.lease()),
            groups: BTreeMap::new(),
            ahead: ReadAheads::default(),
            merged_ts: BTreeMap::new(),
            lagging: BTreeSet::new(),
            live: false,
            fact_marks: FactMarks::default(),
            txns: Default::default(),
        })
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn store(&self) -> &dyn ObjectStore {
        self.store.as_ref()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn stopped(&self) -> &BTreeMap<String, StopReason> {
        &self.stopped
    }

    /// One pass over every table: at most one batch each.
    pub async fn cycle(&mut self) -> Result<CycleStats, MergeError> {
        let parts = commit_log::partitions(self.store.as_ref(), &self.root)
            .await
            .map_err(ReadError::from)?;
        let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for TopicPartition { topic, partition } in parts {
            by_topic.entry(topic).or_default().push(partition);
        }
        let mut specs: BTreeMap<String, TableSpec> = by_topic
            .keys()
            .map(|t| (t.clone(), TableSpec::for_topic(&self.config, t)))
            .collect();
        for t in &self.config.tables {
            specs
                .entry(t.source.clone())
                .or_insert_with(|| TableSpec::for_topic(&self.config, &t.source));
        }
        let positions = ledger::read(&self.pool, &self.target).await?;
        let held = claims::read(&self.pool, &self.target).await?;
        self.lineages = crate::sql::segments::read(&self.pool, &self.target).await?;
        for s in specs.values() {
            metrics::table_seen(&s.name);
        }
        for (topic, parts) in &by_topic {
            for p in parts {
                let next = positions
                    .get(&TopicPartition::new(topic.clone(), *p))
                    .copied()
                    .unwrap_or(0);
                metrics::merged_position(topic, *p, next);
            }
        }

        let rank = |s: &TableSpec| match (s.is_dimension(), s.is_fact()) {
            (true, _) => 0,
            (_, false) => 1,
            _ => 2,
        };
        let mut order: Vec<&String> = by_topic.keys().collect();
        order.sort_by_key(|t| (rank(&specs[*t]), (*t).clone()));

        let atomic = self.atomic(&by_topic).await?;
        let mut groups = leases::groups(&specs);
        if atomic {
            // A source transaction's tables are applied together, by one merger.
            for g in groups.values_mut() {
                *g = atomic_cycle::ATOMIC_GROUP.to_owned();
            }
        }
        let wanted: BTreeSet<String> = order
            .iter()
            .filter(|t| !self.skips(t, &specs[**t]))
            .filter_map(|t| groups.get(&specs[*t].name).cloned())
            .collect();
        self.groups = groups;
        self.leases
            .settle(&self.pool, &self.target, &wanted)
            .await?;
        // Another merger may write the fact tables of groups this one does not hold.
        for s in specs.values().filter(|s| s.is_fact() && !self.holds(s)) {
            self.fact_marks.forget(&s.name);
        }

        // Heartbeats are read before any table's bronze is listed (see `freshness`).
        let cycle_start_ms = chrono::Utc::now().timestamp_millis();
        self.read_heartbeats(&by_topic).await?;
        self.behind.clear();
        let mut stats = CycleStats::default();
        if atomic {
            self.cycle_atomic(&specs, &by_topic, &order, &positions, &held, &mut stats)
                .await?;
            self.heartbeat_freshness(&specs, &by_topic, &order, cycle_start_ms);
            return Ok(stats);
        }
        for topic in &order {
            let topic: &String = topic;
            let spec = &specs[topic];
            if self.skips(topic, spec) || !self.holds(spec) {
                continue;
            }
            let group = self.groups[&spec.name].clone();
            // Claims first: a table taken over or held elsewhere is settled even when idle.
            if let Some((held_topic, role)) = held.get(&spec.name)
                && let Err(refusal) = claims::judge(spec, &spec.role(), held_topic, role)
            {
                self.refuse(&mut stats, spec, refusal).await?;
                continue;
            }
            let limits = self.fact_limits(spec, &specs, &by_topic);
            let (batch, moves) = self
                .read_batch(spec, &by_topic[topic], &positions, &limits)
                .await?;
            if moves.is_empty() && batch.is_ok() {
                continue;
            }
            let ctx = Context {
                target: &self.target,
                specs: &specs,
                now_ms: chrono::Utc::now().timestamp_millis(),
                fact_marks: &self.fact_marks,
            };
            let started = std::time::Instant::now();
            let mut tx = self.pool.begin().await?;
            let related = related(spec, &specs);
            if let Err(refusal) = claims::hold(&mut tx, &self.target, spec, &related).await? {
                tx.rollback().await?;
                self.refuse(&mut stats, spec, refusal).await?;
                continue;
            }
            let batch_for_metrics = batch;
            let applied = match &batch_for_metrics {
                Ok(batch) => match apply(&mut tx, ctx, batch)
                    .instrument(tracing::info_span!("merge_batch", table = %spec.name, changes = batch.changes.len()))
                    .await
                {
                    Ok(a) => a,
                    Err(e) => {
                        let problem = apply_failure(e, topic, &moves)?;
                        tx.rollback().await?;
                        self.stop(&mut stats, spec, problem);
                        continue;
                    }
                },
                Err(problem) => {
                    tx.rollback().await?;
                    self.stop(&mut stats, spec, problem.clone());
                    continue;
                }
            };
            // The fence: a merger that lost this group meanwhile (paused, cut off) applies nothing.
            if !self.leases.fence(&mut tx, &self.target, &group).await? {
                tx.rollback().await?;
                self.lost_group(&group, &specs);
                continue;
            }
            for (partition, (expected, next)) in &moves {
                ledger::advance(&mut tx, &self.target, topic, *partition, *expected, *next).await?;
            }
            let segments = self.lineages.take_dirty();
            crate::sql::segments::write(&mut tx, &self.target, &segments).await?;
            tx.commit().await?;
            if let Ok(batch) = &batch_for_metrics {
                self.merged(batch, &moves, &applied, started.elapsed());
            }
            stats.tables.insert(spec.name.clone(), applied);
        }
        self.heartbeat_freshness(&specs, &by_topic, &order, cycle_start_ms);
        self.ahead.keep_started();
        Ok(stats)
    }

    /// A group's lease was lost: what this merger knew of its tables may be stale.
    fn lost_group(&mut self, group: &str, specs: &BTreeMap<String, TableSpec>) {
        self.leases.lost(group);
        for s in specs
            .values()
            .filter(|s| self.groups.get(&s.name).map(String::as_str) == Some(group))
        {
            self.fact_marks.forget(&s.name);
        }
    }

    /// Notes a committed batch: metrics, and how far its partitions have merged.
    fn merged(
        &mut self,
        batch: &TableBatch,
        moves: &Moves,
        applied: &Applied,
        took: std::time::Duration,
    ) {
        let (spec, topic) = (&batch.spec, &batch.spec.topic);
        tracing::debug!(table = spec.name, changes = applied.changes, "batch merged");
        for (partition, (_, next)) in moves {
            metrics::merged_position(topic, *partition, *next);
        }
        let mut newest: BTreeMap<i32, i64> = BTreeMap::new();
        for c in &batch.changes {
            let e = newest.entry(c.partition).or_insert(c.ts_ms);
            *e = (*e).max(c.ts_ms);
        }
        for (p, ts) in newest {
            let e = self
                .merged_ts
                .entry(TopicPartition::new(topic.clone(), p))
                .or_insert(ts);
            *e = (*e).max(ts);
        }
        metrics::batch_merged(&batch_metrics(&spec.name, batch, applied, took));
        for (dim, st) in &applied.referenced {
            metrics::scd2_events(dim, &scd2_counts(st));
        }
    }

    /// Whether this merger holds the lease of `spec`'s group this cycle.
    fn holds(&self, spec: &TableSpec) -> bool {
        self.groups
            .get(&spec.name)
            .is_some_and(|g| self.leases.holds(g))
    }

    /// What each dimension a fact table references lets through this cycle (see
    /// [`crate::fact_hold`]); dimensions are merged before facts in a cycle, so their state is
    /// this cycle's.
    fn fact_limits(
        &self,
        spec: &TableSpec,
        specs: &BTreeMap<String, TableSpec>,
        by_topic: &BTreeMap<String, Vec<i32>>,
    ) -> Vec<Limit> {
        if !spec.is_fact() {
            return Vec::new();
        }
        let hold = self.config.merge.fact_hold_ms as i64;
        let now = chrono::Utc::now().timestamp_millis();
        spec.references
            .values()
            .filter_map(|topic| {
                let dim = specs.get(topic)?;
                // No bronze, stopped or merged elsewhere: nothing to wait for.
                if !by_topic.contains_key(topic) || self.skips(topic, dim) || !self.holds(dim) {
                    return None;
                }
                let merged = |p: &i32| {
                    let at = TopicPartition::new(topic.clone(), *p);
                    (
                        self.merged_ts.get(&at).copied().unwrap_or(i64::MIN),
                        self.lagging.contains(&at),
                    )
                };
                let parts = by_topic[topic].iter().map(merged);
                let ts_ms = parts.clone().map(|(ts, _)| ts).max().unwrap_or(i64::MIN);
                if self.behind.contains(topic) {
                    // As far as its slowest lagging partition has merged.
                    let slowest = parts.filter(|(_, lags)| *lags).map(|(ts, _)| ts).min();
                    return Some(Limit {
                        ts_ms: slowest.unwrap_or(ts_ms),
                        landed_ms: i64::MIN,
                    });
                }
                (self.live && hold > 0).then(|| Limit {
                    ts_ms,
                    landed_ms: now - hold,
                })
            })
            .collect()
    }

    /// Whether this merger leaves `topic` alone: stopped, not configured, or not among
    /// `only_topics`.
    fn skips(&self, topic: &str, spec: &TableSpec) -> bool {
        self.stopped.contains_key(topic)
            || (!spec.configured && !self.opts.unconfigured_topics)
            || self
                .opts
                .only_topics
                .as_ref()
                .is_some_and(|only| !only.contains(topic))
    }

    /// Reads the heartbeats each connector's partitions landed since the last cycle.
    async fn read_heartbeats(
        &mut self,
        by_topic: &BTreeMap<String, Vec<i32>>,
    ) -> Result<(), MergeError> {
        let prefix = self.config.kafka.heartbeat_topic_prefix.clone();
        for (topic, partitions) in by_topic {
            let Some(connector) = freshness::connector_of(&prefix, topic) else {
                continue;
            };
            for p in partitions {
                let key = TopicPartition::new(topic.clone(), *p);
                let from = self.heartbeat_next.get(&key).copied();
                let read = crate::heartbeat_read::newest_after;
                match read(self.store.as_ref(), &self.root, topic, *p, from).await {
                    Ok(Some((next, hb))) => {
                        self.heartbeat_next.insert(key, next);
                        if let Some(h) = hb {
                            self.heartbeats
                                .entry(connector.to_owned())
                                .or_default()
                                .push(h);
                        }
                    }
                    Ok(None) => {}
                    // Freshness is a hint: an unreadable heartbeat only leaves it as it was.
                    Err(e) if e.is_data() => {
                        tracing::warn!(topic, partition = p, error = %e, "cannot read heartbeats")
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    /// Tables merged to the end of a quiet bronze are as fresh as their connector's heartbeat.
    fn heartbeat_freshness(
        &mut self,
        specs: &BTreeMap<String, TableSpec>,
        by_topic: &BTreeMap<String, Vec<i32>>,
        order: &[&String],
        cycle_start_ms: i64,
    ) {
        if self.heartbeats.is_empty() {
            return;
        }
        let quiet_ms =
            (self.config.bronze.max_age_ms + self.config.merge.interval_ms) as i64 + 2_000;
        let heartbeats: BTreeMap<String, freshness::Heartbeat> = self
            .heartbeats
            .iter_mut()
            .filter_map(|(c, log)| Some((c.clone(), log.usable(cycle_start_ms - quiet_ms)?)))
            .collect();
        for topic in order {
            let spec = &specs[*topic];
            if self.skips(topic, spec) || !self.holds(spec) {
                continue;
            }
            let Some(hb) = freshness::heartbeat_for(topic, &heartbeats) else {
                continue;
            };
            let last: Vec<i64> = by_topic[*topic]
                .iter()
                .map(|p| {
                    let key = TopicPartition::new((*topic).clone(), *p);
                    self.last_commit_ms
                        .get(&key)
                        .copied()
                        .unwrap_or(self.started_ms)
                })
                .collect();
            let merged = !self.behind.contains(*topic);
            if let Some(ts) =
                freshness::complete_through(hb, merged, &last, cycle_start_ms, quiet_ms)
            {
                metrics::source_complete_through(&spec.name, ts);
            }
        }
    }

    /// Acts on a claim that does not let this merger apply `spec`'s batch.
    async fn refuse(
        &mut self,
        stats: &mut CycleStats,
        spec: &TableSpec,
        refusal: Refusal,
    ) -> Result<(), MergeError> {
        match refusal {
            Refusal::NotOurs => {
                tracing::debug!(
                    table = spec.name,
                    "merged by another merger under its configured role"
                );
            }
            Refusal::Stop(problem) => self.stop(stats, spec, problem),
            Refusal::TakeOver { held } => {
                tracing::warn!(
                    table = spec.name,
                    was = held,
                    now = spec.role(),
                    "table was merged as an unconfigured table; rebuilding it from bronze under its configured role"
                );
                let mut tx = self.pool.begin().await?;
                crate::replay::drop_table(&mut tx, &self.target, spec).await?;
                claims::set_role(&mut tx, &self.target, spec).await?;
                tx.commit().await?;
                // This cycle's ledger positions are stale now: the next cycle starts the table.
                stats.tables.entry(spec.name.clone()).or_default();
            }
        }
        Ok(())
    }

    /// Stops a topic's table until restart: other tables go on.
    fn stop(&mut self, stats: &mut CycleStats, spec: &TableSpec, problem: StopReason) {
        let table = spec.name.as_str();
        tracing::error!(
            table,
            topic = spec.topic,
            kind = problem.kind.as_str(),
            problem = problem.message(),
            "table stopped; other tables go on"
        );
        metrics::table_stopped(table, true);
        self.stopped.insert(spec.topic.clone(), problem.clone());
        stats.stopped.insert(table.to_owned(), problem);
    }

    /// Reads the next batch of a table: its changes (or why the table must stop) and, per
    /// partition, the ledger move `(expected, next)`.
    async fn read_batch(
        &mut self,
        spec: &TableSpec,
        partitions: &[i32],
        positions: &BTreeMap<TopicPartition, i64>,
        limits: &[Limit],
    ) -> Result<(Result<TableBatch, StopReason>, Moves), MergeError> {
        let fetched = self
            .fetch_batch(spec, partitions, positions, limits, Reach::Batch)
            .await?;
        Ok(self.assemble(spec, fetched))
    }

    /// A table's bronze from the ledger positions, facts held back at `limits`. A batch's
    /// reach starts reading the batch after it when the table is behind.
    async fn fetch_batch(
        &mut self,
        spec: &TableSpec,
        partitions: &[i32],
        positions: &BTreeMap<TopicPartition, i64>,
        limits: &[Limit],
        reach: Reach,
    ) -> Result<Fetched, MergeError> {
        let starts: Starts = partitions
            .iter()
            .map(|p| {
                (
                    *p,
                    positions
                        .get(&TopicPartition::new(spec.topic.clone(), *p))
                        .copied(),
                )
            })
            .collect();
        let scale = match reach {
            Reach::Batch => 1,
            Reach::Scaled(n) => n,
        };
        let req = Request {
            topic: spec.topic.clone(),
            starts,
            budget: self.opts.max_batch_rows.saturating_mul(scale),
            records: crate::bronze_fetch::RECORDS_PER_READ.saturating_mul(scale),
        };
        let mut fetched = match self.ahead.take(&req.topic, &req.starts).await {
            Some(read) => read,
            None => fetch(self.store.as_ref(), &self.root, &self.read_opts, &req).await?,
        };
        let waiting = crate::fact_hold::hold_back(&mut fetched.parts, limits);
        if spec.is_fact() {
            metrics::facts_waiting(&spec.name, waiting as u64);
        }
        fetched.behind |= waiting > 0;
        if reach == Reach::Batch && fetched.behind && !fetched.has_problem() {
            let next = Request {
                starts: fetched.next_starts(&req.starts),
                ..req.clone()
            };
            self.ahead.start(
                self.store.clone(),
                self.root.clone(),
                self.read_opts.clone(),
                next,
            );
        }
        Ok(fetched)
    }

    /// A fetched batch as the table's changes (MySQL positions keyed through the lineage
    /// segments), with the ledger moves it makes.
    fn assemble(
        &mut self,
        spec: &TableSpec,
        fetched: Fetched,
    ) -> (Result<TableBatch, StopReason>, Moves) {
        let mut changes = Vec::new();
        let mut columns = Columns::default();
        let mut moves = BTreeMap::new();
        let mut problem: Option<String> = None;
        if fetched.behind {
            self.behind.insert(spec.topic.clone());
        }
        for part in fetched.parts {
            let p = part.partition;
            if part.more {
                self.lagging
                    .insert(TopicPartition::new(spec.topic.clone(), p));
            } else {
                self.lagging
                    .remove(&TopicPartition::new(spec.topic.clone(), p));
            }
            if let Some(at) = part.committed_at_ms {
                let e = self
                    .last_commit_ms
                    .entry(TopicPartition::new(spec.topic.clone(), p))
                    .or_default();
                *e = (*e).max(at);
            }
            for crate::bronze_fetch::PartFile {
                path, changes: fc, ..
            } in part.files
            {
                for s in &fc.skipped {
                    tracing::warn!(table = spec.name, file = path, "{s}");
                }
                for name in fc.columns.null_only() {
                    columns.saw_null(name);
                }
                for (name, ty) in &fc.columns.0 {
                    if let Err((a, b)) = columns.absorb(name, *ty) {
                        problem.get_or_insert(format!(
                            "column {name} changed type from {a} to {b} within bronze, which is not a safe widening; declare its type in [[tables]] columns"
                        ));
                    }
                }
                let base = changes.len();
                changes.extend(fc.changes);
                for (i, pos) in &fc.mysql {
                    changes[base + i].pos =
                        crate::change::SourcePos::stored(self.lineages.key(pos));
                }
            }
            if let Some(n) = part.next {
                moves.insert(p, (part.expected, n));
            }
            if let Some(pr) = part.problem {
                problem.get_or_insert(pr);
            }
        }
        for r in std::mem::take(&mut self.lineages.regressions) {
            tracing::warn!(
                table = spec.name,
                source = r.source,
                from = %crate::lineage::Regression::describe(&r.from),
                to = %crate::lineage::Regression::describe(&r.to),
                "source position went backwards while source time moved forward (a failover or RESET MASTER?): later changes order after the earlier ones"
            );
            metrics::position_regression(&spec.name);
        }
        if problem.is_some() {
            self.behind.insert(spec.topic.clone());
        }
        let batch = match problem {
            Some(p) => Err(StopReason::new(StopKind::Bronze, p)),
            None => Ok(TableBatch {
                spec: spec.clone(),
                columns,
                changes,
            }),
        };
        (batch, moves)
    }

    /// Whether the target's ledger is empty (nothing was ever merged into it).
    pub async fn has_merged_nothing(&self) -> Result<bool, MergeError> {
        Ok(ledger::read(&self.pool, &self.target).await?.is_empty())
    }

    /// Cycles until nothing is left to merge.
    pub async fn catch_up(&mut self) -> Result<CycleStats, MergeError> {
        let mut total = CycleStats::default();
        loop {
            let s = self.cycle().await?;
            total.stopped.extend(s.stopped.clone());
            if s.is_idle() {
                return Ok(total);
            }
            for (t, a) in s.tables {
                let e = total.tables.entry(t).or_default();
                e.changes += a.changes;
                e.silver_rows += a.silver_rows;
                e.facts += a.facts;
                e.truncates += a.truncates;
                e.unkeyed += a.unkeyed;
                e.dim += &a.dim;
                e.referenced.extend(a.referenced);
            }
        }
    }

    /// Merges until `shutdown` completes: a cycle, then a pause of `merge.interval_ms` when it
    /// found nothing; failures back off up to a minute and retry.
    /// One cycle, unless shutdown comes first: then the cycle gets a moment to finish and is
    /// otherwise dropped (its transaction rolls back; the ledger keeps exactly once), so a
    /// warehouse that hangs or refuses connections cannot hold SIGTERM up.
    async fn cycle_or_shutdown(
        &mut self,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Option<Result<CycleStats, MergeError>> {
        let cycle = self.cycle();
        tokio::pin!(cycle);
        tokio::select! {
            r = &mut cycle => Some(r),
            () = shutdown.as_mut() => {
                let _ = tokio::time::timeout(SHUTDOWN_GRACE, &mut cycle).await;
                None
            }
        }
    }

    pub async fn run(&mut self, shutdown: impl Future<Output = ()>) -> Result<(), MergeError> {
        tokio::pin!(shutdown);
        self.live = true;
        let idle = self.config.merge.interval();
        let mut backoff = Duration::from_millis(500);
        // A cycle is short; one past this is stuck (a lock, a hung peer).
        let beat = tidemark_core::health::beat("merge", (idle * 20).max(Duration::from_secs(600)));
        loop {
            let Some(cycle) = self.cycle_or_shutdown(&mut shutdown).await else {
                return Ok(());
            };
            let pause = match cycle {
                Ok(s) => {
                    beat.ok();
                    backoff = Duration::from_millis(500);
                    if s.is_idle() { idle } else { Duration::ZERO }
                }
                Err(e) if e.disposition() == Disposition::Fatal => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "merge cycle failed");
                    beat.failed(&e.to_string());
                    metrics::merge_failed(e.fault());
                    let b = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                    b
                }
            };
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
}

/// How far one table's read reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reach {
    /// A batch: `max_batch_rows` changes, [`crate::bronze_fetch::RECORDS_PER_READ`] commit
    /// records per partition, the next batch read ahead.
    Batch,
    /// That many batches' worth at once, nothing read ahead (a cycle taking in a large source
    /// transaction).
    Scaled(usize),
}

/// How long a cycle under way may finish after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// An error of the warehouse that is about the data (a value it cannot hold, a name it refuses),
/// not about reaching it: retrying cannot help, so the table stops. Connection, resource,
/// serialization and operator errors are retried.
/// The names of the dimensions a table references (its claim covers them).
fn related(spec: &TableSpec, specs: &BTreeMap<String, TableSpec>) -> Vec<String> {
    spec.references
        .values()
        .filter_map(|dim| specs.get(dim).map(|d| d.name.clone()))
        .collect()
}

/// Why a table must stop after its batch failed to apply; `Err` for failures of the whole cycle
/// (the warehouse went away).
fn apply_failure(e: ApplyError, topic: &str, moves: &Moves) -> Result<StopReason, MergeError> {
    match e {
        ApplyError::Stopped { problem, .. } => Ok(problem),
        ApplyError::Sql(e) => match refused_data(&e) {
            // The warehouse refused this table's data: it stops alone.
            Some(why) => Ok(StopReason::new(
                StopKind::Refused,
                format!(
                    "the warehouse refused its batch ({}): {why}; fix the value at the source \
                 or declare the column's type in [[tables]] columns, then restart",
                    ranges(topic, moves)
                ),
            )),
            None => Err(e.into()),
        },
    }
}

fn refused_data(e: &sqlx::Error) -> Option<String> {
    let sqlx::Error::Database(db) = e else {
        return None;
    };
    let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
    let transient = if db
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .is_some()
    {
        // 23505 (unique violation) is a race on tidemark's own keys, not data a user can fix:
        // a merger that lost its lease meanwhile inserting the same facts; the retry is fenced.
        ["08", "40", "53", "57", "58", "23505"]
            .iter()
            .any(|c| code.starts_with(c))
    } else {
        // SQLite: busy, locked, I/O, full, cannot open, protocol (primary result codes).
        let primary = code.parse::<i32>().map_or(0, |c| c & 0xff);
        matches!(primary, 5 | 6 | 10 | 13 | 14 | 15)
    };
    if transient {
        return None;
    }
    let mut why = format!("{} (code {code})", db.message());
    if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        if let Some(col) = pg.column() {
            why.push_str(&format!(", column {col}"));
        }
        if let Some(detail) = pg.detail() {
            why.push_str(&format!(": {detail}"));
        }
    }
    Some(why)
}

/// `topic[p] a..=b, …` of a batch's ledger moves.
fn ranges(topic: &str, moves: &BTreeMap<i32, (Option<i64>, i64)>) -> String {
    let parts: Vec<String> = moves
        .iter()
        .map(|(p, (from, next))| {
            format!("{topic}[{p}] offsets {}..={}", from.unwrap_or(0), next - 1)
        })
        .collect();
    parts.join(", ")
}

/// The metrics of one committed batch.
fn batch_metrics<'a>(
    table: &'a str,
    batch: &TableBatch,
    a: &Applied,
    took: Duration,
) -> BatchMerged<'a> {
    let mut by_op: BTreeMap<Op, u64> = BTreeMap::new();
    for c in &batch.changes {
        *by_op.entry(c.op).or_default() += 1;
    }
    let mut rows = vec![(RowsWritten::SilverUpserted, a.silver_rows)];
    if batch.spec.is_dimension() {
        rows.push((RowsWritten::DimInserted, a.dim.opened));
        rows.push((RowsWritten::DimUpdated, a.dim.updated));
        rows.push((RowsWritten::DimRemoved, a.dim.removed));
    }
    if batch.spec.is_fact() {
        rows.push((RowsWritten::FactInserted, a.facts));
    }
    let scd2 = if batch.spec.is_dimension() {
        scd2_counts(&a.dim)
    } else {
        Vec::new()
    };
    BatchMerged {
        table,
        changes_by_op: by_op.into_iter().collect(),
        rows,
        scd2,
        source_ts_ms: batch.changes.iter().map(|c| c.ts_ms).collect(),
        took,
    }
}

fn scd2_counts(d: &crate::apply::DimStats) -> Vec<(Scd2Event, u64)> {
    vec![
        (Scd2Event::VersionOpened, d.opened - d.inferred),
        (Scd2Event::VersionUpdated, d.updated),
        (Scd2Event::VersionRemoved, d.removed),
        (Scd2Event::LateSpliced, d.late),
        (Scd2Event::Redelivered, d.redelivered),
        (Scd2Event::InferredMember, d.inferred),
    ]
}
