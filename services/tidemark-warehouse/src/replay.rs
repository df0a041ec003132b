//! Replay: rebuild silver and gold from bronze. A full replay drops the target's tables of the
//! chosen topics (their change logs, registry rows, claims and ledger rows too) and merges from
//! the first commit record; `--from` rebuilds the same way only the tables that have bronze
//! committed at or after that time (and the facts of such dimensions).

use std::collections::BTreeSet;
use tidemark_core::event::TopicPartition;

use chrono::{DateTime, Utc};
use object_store::ObjectStore;
use object_store::path::Path;
use tidemark_core::config::Config;
use tidemark_lake::commit_log;

use crate::bronze_read::ReadError;
use crate::cell::Cell;
use crate::merger::MergeError;
use crate::spec::TableSpec;
use crate::sql::conn::{Pool, Tx};
use crate::sql::names::Target;
use crate::sql::schema::bootstrap;

/// `topics` plus the facts that reference a dimension among them: a dimension's inferred
/// members and the facts' surrogate keys are rebuilt only together.
pub fn with_dependents(config: &Config, topics: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = topics.clone();
    for t in &config.tables {
        if t.references.values().any(|dim| topics.contains(dim)) {
            out.insert(t.source.clone());
        }
    }
    out
}

/// Drops everything the target holds for `topics`.
pub async fn drop_tables(
    pool: &Pool,
    target: &Target,
    config: &Config,
    topics: &BTreeSet<String>,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    bootstrap(&mut tx, target).await?;
    for topic in topics {
        let spec = TableSpec::for_topic(config, topic);
        crate::sql::claims::release(&mut tx, target, &spec.name).await?;
        drop_table(&mut tx, target, &spec).await?;
    }
    tx.commit().await
}

/// Drops a table's silver, gold, change log and key states, its registry rows and its topic's ledger rows,
/// inside the caller's transaction: it is rebuilt from the start of bronze.
pub async fn drop_table(tx: &mut Tx, target: &Target, spec: &TableSpec) -> Result<(), sqlx::Error> {
    for table in [
        target.silver(&spec.name),
        target.dim(&spec.name),
        target.fact(&spec.name),
        target.changes(&spec.name),
        target.dim_state(&spec.name),
    ] {
        tx.exec(&format!("DROP TABLE IF EXISTS {table}"), &[])
            .await?;
        let p = tx.param(1);
        tx.exec(
            &format!("DELETE FROM {} WHERE tbl = {p}", target.registry()),
            &[Cell::Text(table)],
        )
        .await?;
    }
    let p = tx.param(1);
    tx.exec(
        &format!("DELETE FROM {} WHERE topic = {p}", target.ledger()),
        &[Cell::Text(spec.topic.clone())],
    )
    .await?;
    Ok(())
}

/// The topics among `topics` with a bronze range committed at or after `from`: what a replay
/// `--from` rebuilds. A table's history is a function of all its changes (late ones splice into
/// the past), so such a table is rebuilt whole from bronze; the result equals a full replay.
pub async fn touched_since(
    store: &dyn ObjectStore,
    root: &Path,
    topics: &BTreeSet<String>,
    from: DateTime<Utc>,
) -> Result<BTreeSet<String>, MergeError> {
    let mut out = BTreeSet::new();
    for TopicPartition { topic, partition } in commit_log::partitions(store, root)
        .await
        .map_err(ReadError::from)?
    {
        if !topics.contains(&topic) || out.contains(&topic) {
            continue;
        }
        let chain = commit_log::read_chain(store, root, &topic, partition)
            .await
            .map_err(ReadError::from)?;
        // Newest first: a recent range is found without parsing the whole chain's times.
        if chain
            .records
            .iter()
            .rev()
            .any(|r| DateTime::parse_from_rfc3339(&r.committed_at).map_or(true, |t| t >= from))
        {
            out.insert(topic);
        }
    }
    Ok(out)
}

/// Changes in bronze after the target's ledger positions, for a progress bar.
pub async fn pending_rows(
    pool: &Pool,
    target: &Target,
    store: &dyn ObjectStore,
    root: &Path,
    topics: &BTreeSet<String>,
) -> Result<u64, MergeError> {
    let positions = crate::sql::ledger::read(pool, target).await?;
    let mut total = 0;
    for TopicPartition { topic, partition } in commit_log::partitions(store, root)
        .await
        .map_err(ReadError::from)?
    {
        if !topics.contains(&topic) {
            continue;
        }
        let from = positions
            .get(&TopicPartition::new(topic.clone(), partition))
            .copied()
            .unwrap_or(0);
        let chain = commit_log::read_chain(store, root, &topic, partition)
            .await
            .map_err(ReadError::from)?;
        total += chain
            .records
            .iter()
            .filter(|r| r.start >= from)
            .map(|r| r.rows)
            .sum::<u64>();
    }
    Ok(total)
}

/// Every data topic in bronze.
pub async fn bronze_topics(
    store: &dyn ObjectStore,
    root: &Path,
) -> Result<BTreeSet<String>, MergeError> {
    Ok(commit_log::partitions(store, root)
        .await
        .map_err(ReadError::from)?
        .into_iter()
        .map(|tp| tp.topic)
        .collect())
}

/// What to rebuild: into the live tables (`target_suffix` `None`, in place) or a side target;
/// all topics in bronze or `tables` (with the facts of chosen dimensions); everything, or only
/// what has bronze committed since `from`.
#[derive(Debug, Clone, Default)]
pub struct ReplayRequest {
    pub target_suffix: Option<String>,
    pub tables: Vec<String>,
    pub from: Option<DateTime<Utc>>,
}

/// A replay ready to run: its topics' tables dropped from the target and a merger that merges
/// only them, from the first commit record.
#[derive(Debug)]
pub struct Replay {
    pub merger: crate::merger::Merger,
    pub topics: BTreeSet<String>,
    /// Changes in bronze for the replayed topics (for progress).
    pub pending: u64,
    /// What the plan decided beyond the request, for the operator.
    pub notes: Vec<String>,
}

impl Replay {
    /// Chooses the topics, drops their tables and opens the merger that rebuilds them.
    pub async fn prepare(config: &Config, req: &ReplayRequest) -> Result<Replay, MergeError> {
        use crate::merger::{MergeOptions, Merger};
        let mut opts = MergeOptions::from_config(config);
        opts.target_suffix = req.target_suffix.clone();
        let probe = Merger::open(config, opts.clone()).await?;
        let mut notes = Vec::new();
        let topics = if req.tables.is_empty() {
            bronze_topics(probe.store(), probe.root()).await?
        } else {
            let chosen = req.tables.iter().cloned().collect();
            let all = with_dependents(config, &chosen);
            for extra in all.difference(&chosen) {
                notes.push(format!(
                    "also {extra} (facts referencing a replayed dimension)"
                ));
            }
            all
        };
        let topics = match req.from {
            Some(t) => {
                if req.target_suffix.is_some() && probe.has_merged_nothing().await? {
                    return Err(MergeError::NothingToRebuild(probe.target().schemas()));
                }
                let touched = touched_since(probe.store(), probe.root(), &topics, t).await?;
                let touched = with_dependents(config, &touched);
                notes.push(format!(
                    "--from {t}: {} topics have bronze committed since, rebuilt from bronze: {}; {} unchanged",
                    touched.len(),
                    touched.iter().cloned().collect::<Vec<_>>().join(", "),
                    topics.difference(&touched).count()
                ));
                touched
            }
            None => topics,
        };
        drop_tables(probe.pool(), probe.target(), config, &topics).await?;
        opts.only_topics = Some(topics.clone());
        let merger = Merger::open(config, opts).await?;
        let pending = pending_rows(
            merger.pool(),
            merger.target(),
            merger.store(),
            merger.root(),
            &topics,
        )
        .await?;
        Ok(Replay {
            merger,
            topics,
            pending,
            notes,
        })
    }

    /// Merges until bronze is applied, calling `progress` after every cycle that did something;
    /// returns how many tables stopped.
    pub async fn run(
        &mut self,
        mut progress: impl FnMut(&crate::merger::CycleStats),
    ) -> Result<usize, MergeError> {
        let mut stopped = 0;
        loop {
            let s = self.merger.cycle().await?;
            if s.is_idle() {
                return Ok(stopped);
            }
            stopped += s.stopped.len();
            progress(&s);
        }
    }
}
