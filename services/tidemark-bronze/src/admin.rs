//! Operations on a bronze root: the committed chain per partition (`inspect bronze`), dead
//! letters (`dlq list`), and removal of orphan files (`gc`).

use std::collections::HashSet;
use std::time::Duration;
use tidemark_core::event::TopicPartition;
use tidemark_lake::columns as col;

use chrono::Utc;
use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path;

use crate::commit_log::{self, CommitLogError};
use crate::dead_letter::{self, DeadLetter};
use crate::layout;

/// The committed chain of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSummary {
    pub topic: String,
    pub partition: i32,
    pub first_offset: i64,
    pub next_offset: i64,
    pub commits: usize,
    pub files: usize,
    pub rows: u64,
    pub bytes: u64,
    pub dead_letters: u64,
    pub skipped: u64,
    /// Offsets inside committed ranges that Kafka never delivered ([`commit_log::CommitRecord::holes`]).
    pub holes: u64,
    /// `(expected start, found start)` for each break in the chain (should be none).
    pub gaps: Vec<(i64, i64)>,
    /// Compaction records in the chain, and the records they replaced.
    pub compactions: usize,
    pub compacted_records: u64,
    /// Replaced records still stored (`gc` removes them after its grace period).
    pub awaiting_gc: usize,
}

pub async fn summarize(
    store: &dyn ObjectStore,
    root: &Path,
) -> Result<Vec<PartitionSummary>, CommitLogError> {
    let mut out = Vec::new();
    for TopicPartition { topic, partition } in commit_log::partitions(store, root).await? {
        let chain = commit_log::read_chain(store, root, &topic, partition).await?;
        let recs = &chain.records;
        out.push(PartitionSummary {
            first_offset: chain.first_offset().unwrap_or(0),
            next_offset: chain.next_offset().unwrap_or(0),
            commits: recs.len(),
            files: recs.iter().map(|r| r.files.len()).sum(),
            rows: recs.iter().map(|r| r.rows).sum(),
            bytes: recs.iter().flat_map(|r| &r.files).map(|f| f.bytes).sum(),
            dead_letters: recs.iter().map(|r| r.dead_letters).sum(),
            skipped: recs.iter().map(|r| r.skipped).sum(),
            holes: recs.iter().map(|r| r.holes()).sum(),
            gaps: chain.breaks.clone(),
            compactions: recs.iter().filter(|r| r.compacts > 0).count(),
            compacted_records: recs.iter().map(|r| r.compacts).sum(),
            awaiting_gc: chain.superseded.len(),
            topic,
            partition,
        });
    }
    Ok(out)
}

/// Every committed dead letter, in partition and offset order.
pub async fn dead_letters(
    store: &dyn ObjectStore,
    root: &Path,
) -> Result<Vec<DeadLetter>, CommitLogError> {
    let mut out = Vec::new();
    for TopicPartition { topic, partition } in commit_log::partitions(store, root).await? {
        for rec in commit_log::read_chain(store, root, &topic, partition)
            .await?
            .records
        {
            if let Some(path) = rec.dead_letter_file {
                let bytes = store
                    .get(&layout::stored_path(&path))
                    .await?
                    .bytes()
                    .await?;
                out.extend(dead_letter::from_jsonl(&bytes).map_err(|e| {
                    CommitLogError::Corrupt {
                        path,
                        reason: e.to_string(),
                    }
                })?);
            }
        }
    }
    Ok(out)
}

/// Committed rows per bronze table and op (`c`, `u`, `d`, `r`, `t`, …), read from the data
/// files' `op` column, plus tombstones per topic under the op `tombstone`.
pub async fn op_counts(
    store: &dyn ObjectStore,
    root: &Path,
) -> Result<std::collections::BTreeMap<(String, String), u64>, OpCountError> {
    use parquet::arrow::ProjectionMask;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let mut out = std::collections::BTreeMap::new();
    for TopicPartition { topic, partition } in commit_log::partitions(store, root).await? {
        for rec in commit_log::read_chain(store, root, &topic, partition)
            .await?
            .records
        {
            if rec.skipped > 0 {
                *out.entry((topic.clone(), "tombstone".to_owned()))
                    .or_default() += rec.skipped;
            }
            for f in &rec.files {
                let bytes = store
                    .get(&layout::stored_path(&f.path))
                    .await
                    .map_err(CommitLogError::from)?
                    .bytes()
                    .await
                    .map_err(CommitLogError::from)?;
                let bad = |e: parquet::errors::ParquetError| OpCountError::Parquet {
                    path: f.path.clone(),
                    source: e,
                };
                let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(bad)?;
                let mask = ProjectionMask::columns(builder.parquet_schema(), [col::OP]);
                for batch in builder.with_projection(mask).build().map_err(bad)? {
                    let batch = batch.map_err(|e| bad(e.into()))?;
                    let Some(ops) = batch
                        .column_by_name(col::OP)
                        .and_then(|c| c.as_any().downcast_ref::<arrow_array::StringArray>())
                    else {
                        // Transactions and other non-row tables: count rows under the table.
                        *out.entry((f.table.clone(), "rows".to_owned())).or_default() +=
                            batch.num_rows() as u64;
                        continue;
                    };
                    for op in ops.iter().flatten() {
                        *out.entry((f.table.clone(), op.to_owned())).or_default() += 1;
                    }
                }
            }
        }
    }
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
pub enum OpCountError {
    #[error(transparent)]
    Log(#[from] CommitLogError),
    #[error("bronze file {path}: {source}")]
    Parquet {
        path: String,
        source: parquet::errors::ParquetError,
    },
}

/// What `gc` found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub referenced: usize,
    pub orphans: Vec<String>,
    /// Orphans too young to remove (a writer may be about to commit them).
    pub kept_young: usize,
    /// Commit records a compaction replaced at least `min_age` ago, removed (their files are
    /// then orphans, in `orphans`).
    pub superseded: Vec<String>,
    /// Replaced records kept, with their files: the compaction is younger than `min_age` (a
    /// reader may have listed the chain before it).
    pub superseded_young: usize,
}

/// Removes data and dead-letter files no commit record names, older than `min_age`, and the
/// commit records a compaction replaced at least `min_age` ago (`dry_run`: only report).
pub async fn gc(
    store: &dyn ObjectStore,
    root: &Path,
    min_age: Duration,
    dry_run: bool,
) -> Result<GcReport, CommitLogError> {
    let mut referenced = HashSet::new();
    let mut report = GcReport::default();
    let cutoff = Utc::now() - chrono::Duration::from_std(min_age).unwrap_or_default();
    for TopicPartition { topic, partition } in commit_log::partitions(store, root).await? {
        let chain = commit_log::read_chain(store, root, &topic, partition).await?;
        for &(start, by) in &chain.superseded {
            let path = layout::commit_record(root, &topic, partition, start);
            let switched = chain.records.iter().find(|r| r.start == by);
            if switched
                .and_then(|r| r.placed_at_ms())
                .is_some_and(|at| at <= cutoff.timestamp_millis())
            {
                // The record first, then its files (orphans below): a crash in between leaves
                // only orphans.
                if !dry_run {
                    store.delete(&path).await?;
                }
                report.superseded.push(path.to_string());
            } else {
                let rec = commit_log::read(store, &path).await?;
                referenced.extend(rec.files.into_iter().map(|f| f.path));
                referenced.extend(rec.dead_letter_file);
                report.superseded_young += 1;
            }
        }
        for rec in chain.records {
            referenced.extend(rec.files.into_iter().map(|f| f.path));
            referenced.extend(rec.dead_letter_file);
        }
    }
    report.referenced = referenced.len();
    let log_prefix = root.child("_log");
    let manifests = crate::layout::manifest_dir(root);
    let all: Vec<_> = store.list(Some(root)).try_collect().await?;
    for meta in all {
        let path = meta.location.to_string();
        let is_data = path.ends_with(".parquet") || path.ends_with(".jsonl");
        let own =
            meta.location.prefix_matches(&log_prefix) || meta.location.prefix_matches(&manifests);
        if !is_data || own || referenced.contains(&path) {
            continue;
        }
        if meta.last_modified > cutoff {
            report.kept_young += 1;
            continue;
        }
        if !dry_run {
            store.delete(&meta.location).await?;
        }
        report.orphans.push(path);
    }
    Ok(report)
}
