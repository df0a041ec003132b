//! Compaction: a partition's small committed files rewritten into large ones, inside the
//! commit-log protocol.
//!
//! A run of consecutive records is read file by file and streamed into one new file per table
//! (row group by row group, through a multipart upload: memory holds one source file and one row
//! group, however large the new file). Then one compaction record covering exactly the run's
//! offset range is created with put-if-absent (`_compacted/<topic>/<partition>/<start>.json`).
//! That create is the atomic switch: before it readers see the old files, after it the new ones
//! ([`commit_log::resolve`]). A crash before it leaves only orphans for `gc`; the old records and
//! files stay until `gc` removes them after a grace period, so a reader that listed the chain
//! before the switch can still read them. Offsets, rows and the merger's ledger positions are
//! unchanged: a compaction record holds the same rows at the same offsets.
//!
//! Compaction only goes forward: runs start after the partition's last compaction record and
//! never include the chain's last record (ingest reads the end of the chain from its newest
//! record). Two compactors that race choose the same start, and put-if-absent lets one win; the
//! loser deletes its files and stops the partition.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;
use tidemark_core::event::TopicPartition;

use bytes::Bytes;
use chrono::{NaiveDate, Utc};
use object_store::ObjectStore;
use object_store::path::Path;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::errors::ParquetError;

use crate::commit_log::{self, CommitLogError, CommitOutcome, CommitRecord, FileEntry};
use crate::committed_file;
use crate::layout::{self, FlushId, TableDir};
use crate::parquet_file::ParquetFile;
use crate::upload::Upload;

pub use crate::upload::PART_BYTES;

/// What to compact.
#[derive(Debug, Clone)]
pub struct Options {
    /// Size a compacted file grows to (the sum of its source files' sizes) at most.
    pub target_bytes: u64,
    /// Only records committed at least this long ago (readers that are behind find the
    /// records they expect; young files are often read right away by the merger).
    pub min_age: Duration,
    pub zstd_level: i32,
    /// Size of the parts a compacted file is uploaded in (S3: at least 5 MiB); two parts at
    /// most are in memory.
    pub part_bytes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            target_bytes: 128 * 1024 * 1024,
            min_age: Duration::from_secs(3600),
            zstd_level: 3,
            part_bytes: PART_BYTES,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error(transparent)]
    Log(#[from] CommitLogError),
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("bronze file {path}: {source}")]
    Parquet { path: String, source: ParquetError },
    #[error("bronze file {path}: {problem}")]
    Shape { path: String, problem: String },
    #[error(transparent)]
    File(#[from] committed_file::CommittedFileError),
}

/// What compaction did to one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compacted {
    pub topic: String,
    pub partition: i32,
    /// Compaction records created.
    pub runs: usize,
    /// Records they replace.
    pub records: u64,
    pub files_before: usize,
    pub files_after: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Another compactor created a run's record first: this partition stopped there.
    pub lost_race: bool,
}

/// Compacts every partition of the bronze root.
pub async fn compact(
    store: &dyn ObjectStore,
    root: &Path,
    opts: &Options,
) -> Result<Vec<Compacted>, CompactError> {
    let mut out = Vec::new();
    for TopicPartition { topic, partition } in commit_log::partitions(store, root).await? {
        out.push(compact_partition(store, root, &topic, partition, opts).await?);
    }
    Ok(out)
}

/// Compacts one partition's chain.
pub async fn compact_partition(
    store: &dyn ObjectStore,
    root: &Path,
    topic: &str,
    partition: i32,
    opts: &Options,
) -> Result<Compacted, CompactError> {
    let chain = commit_log::read_chain(store, root, topic, partition).await?;
    let mut done = Compacted {
        topic: topic.to_owned(),
        partition,
        ..Compacted::default()
    };
    if !chain.is_gap_free() {
        tracing::warn!(topic, partition, breaks = ?chain.breaks, "not compacting a broken chain");
        return Ok(done);
    }
    let writer = format!("compact-{}", uuid::Uuid::new_v4().simple());
    for run in plan(&chain.records, opts, Utc::now().timestamp_millis()) {
        let records = &chain.records[run];
        let record = rewrite(store, root, records, opts, &writer).await?;
        match commit_log::create_compacted(store, root, &record).await? {
            CommitOutcome::Committed => {
                done.runs += 1;
                done.records += record.compacts;
                done.files_before += records.iter().map(|r| r.files.len()).sum::<usize>();
                done.bytes_before += records.iter().map(bytes_of).sum::<u64>();
                done.files_after += record.files.len();
                done.bytes_after += bytes_of(&record);
                tracing::info!(
                    topic,
                    partition,
                    start = record.start,
                    end = record.end,
                    replaced = record.compacts,
                    "compacted"
                );
            }
            CommitOutcome::Fenced(_) => {
                for f in &record.files {
                    let _ = store.delete(&layout::stored_path(&f.path)).await;
                }
                done.lost_race = true;
                break;
            }
        }
    }
    Ok(done)
}

fn bytes_of(r: &CommitRecord) -> u64 {
    r.files.iter().map(|f| f.bytes).sum()
}

/// Which runs of `chain` to compact (pure): index ranges of ≥ 2 consecutive records, after the
/// last compaction record and before the last record, each committed at least `min_age` before
/// `now_ms`, without dead letters, smaller than half the target; a run keeps one schema
/// fingerprint and one `dt=` date per table and stays within the target.
pub fn plan(chain: &[CommitRecord], opts: &Options, now_ms: i64) -> Vec<Range<usize>> {
    let first = chain
        .iter()
        .rposition(|r| r.compacts > 0)
        .map_or(0, |i| i + 1);
    let min_age = i64::try_from(opts.min_age.as_millis()).unwrap_or(i64::MAX);
    let eligible = |r: &CommitRecord| {
        r.compacts == 0
            && r.dead_letter_file.is_none()
            && bytes_of(r) < opts.target_bytes / 2
            && r.committed_at_ms()
                .is_some_and(|at| at <= now_ms.saturating_sub(min_age))
    };
    let mut runs = Vec::new();
    let mut i = first;
    let last = chain.len().saturating_sub(1);
    while i < last {
        if !eligible(&chain[i]) {
            i += 1;
            continue;
        }
        let mut shape = Shape::default();
        shape.add(&chain[i]);
        let mut j = i + 1;
        while j < last
            && eligible(&chain[j])
            && shape.bytes + bytes_of(&chain[j]) <= opts.target_bytes
            && shape.fits(&chain[j])
        {
            shape.add(&chain[j]);
            j += 1;
        }
        if j - i >= 2 {
            runs.push(i..j);
        }
        i = j;
    }
    runs
}

/// What a run holds so far: per table, its schema fingerprint and date.
#[derive(Debug, Default)]
struct Shape {
    tables: BTreeMap<String, (Option<String>, Option<String>)>,
    bytes: u64,
}

impl Shape {
    fn fits(&self, r: &CommitRecord) -> bool {
        r.files.iter().all(|f| {
            self.tables
                .get(&f.table)
                .is_none_or(|(fp, dt)| *fp == f.schema_fingerprint && *dt == dt_of(&f.path))
        })
    }

    fn add(&mut self, r: &CommitRecord) {
        for f in &r.files {
            self.tables
                .entry(f.table.clone())
                .or_insert_with(|| (f.schema_fingerprint.clone(), dt_of(&f.path)));
        }
        self.bytes += bytes_of(r);
    }
}

/// The `dt=` date of a data file's path.
fn dt_of(path: &str) -> Option<String> {
    path.split('/')
        .find_map(|part| part.strip_prefix("dt="))
        .map(str::to_owned)
}

/// Writes the run's files, one per table, and returns the compaction record that names them
/// (not yet created).
async fn rewrite(
    store: &dyn ObjectStore,
    root: &Path,
    run: &[CommitRecord],
    opts: &Options,
    writer: &str,
) -> Result<CommitRecord, CompactError> {
    let (first, last) = (&run[0], &run[run.len() - 1]);
    let mut tables: BTreeMap<&str, Vec<&FileEntry>> = BTreeMap::new();
    for f in run.iter().flat_map(|r| &r.files) {
        tables.entry(&f.table).or_default().push(f);
    }
    let id = FlushId {
        topic: &first.topic,
        partition: first.partition,
        start: first.start,
        end: last.end,
        writer,
    };
    let mut files = Vec::new();
    for (table, sources) in tables {
        match write_table(store, root, &id, (table, &sources), opts).await {
            Ok(f) => files.push(f),
            Err(e) => {
                for f in &files {
                    let _ = store.delete(&layout::stored_path(&f.path)).await;
                }
                return Err(e);
            }
        }
    }
    Ok(CommitRecord {
        version: commit_log::FORMAT_VERSION,
        topic: first.topic.clone(),
        partition: first.partition,
        start: first.start,
        end: last.end,
        records: run.iter().map(|r| r.records).sum(),
        rows: files.iter().map(|f| f.rows).sum(),
        skipped: run.iter().map(|r| r.skipped).sum(),
        dead_letters: 0,
        files,
        dead_letter_file: None,
        writer: writer.to_owned(),
        committed_at: last.committed_at.clone(),
        compacts: run.len() as u64,
        compacted_at: Some(Utc::now().to_rfc3339()),
    })
}

/// Streams one table's source files, in order, into one new file.
async fn write_table(
    store: &dyn ObjectStore,
    root: &Path,
    id: &FlushId<'_>,
    (table, sources): (&str, &[&FileEntry]),
    opts: &Options,
) -> Result<FileEntry, CompactError> {
    let dt = dt_of(&sources[0].path)
        .and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok())
        .unwrap_or_else(|| Utc::now().date_naive());
    let path = layout::data_file(root, &TableDir::from_name(table), dt, id);
    let mut out = Stream(Upload::start(store, path, opts.part_bytes).await?);
    match out.fill(store, sources, opts.zstd_level).await {
        Ok(rows) => {
            let done = out.0.finish().await?;
            Ok(FileEntry {
                path: done.path.to_string(),
                table: table.to_owned(),
                rows,
                bytes: done.bytes,
                schema_fingerprint: sources[0].schema_fingerprint.clone(),
                checksum: done.checksum,
                min_offset: sources
                    .iter()
                    .map(|f| f.min_offset)
                    .min()
                    .unwrap_or(id.start),
                max_offset: sources.iter().map(|f| f.max_offset).max().unwrap_or(id.end),
            })
        }
        Err(e) => {
            out.0.abort().await;
            Err(e)
        }
    }
}

/// A compacted file being uploaded.
struct Stream(Upload);

impl Stream {
    /// Writes every source's rows; returns how many.
    async fn fill(
        &mut self,
        store: &dyn ObjectStore,
        sources: &[&FileEntry],
        zstd_level: i32,
    ) -> Result<u64, CompactError> {
        let mut file: Option<(ParquetFile, arrow_schema::SchemaRef)> = None;
        let mut rows = 0u64;
        for src in sources {
            let perr = |source| CompactError::Parquet {
                path: src.path.clone(),
                source,
            };
            let bytes = read_checked(store, src).await?;
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                .and_then(|b| b.build())
                .map_err(perr)?;
            let mut src_rows = 0u64;
            for batch in reader {
                let batch = batch.map_err(|e| perr(e.into()))?;
                let (pf, schema) = match &mut file {
                    Some(f) => f,
                    None => file.insert((
                        ParquetFile::new(&batch, zstd_level).map_err(perr)?,
                        batch.schema(),
                    )),
                };
                if batch.schema().fields() != schema.fields() {
                    return Err(CompactError::Shape {
                        path: src.path.clone(),
                        problem: "its columns differ from the run's first file's".into(),
                    });
                }
                pf.write(&batch).map_err(perr)?;
                src_rows += batch.num_rows() as u64;
                let written = pf.take_written().map_err(perr)?;
                self.put(written).await?;
            }
            if src_rows != src.rows {
                return Err(CompactError::Shape {
                    path: src.path.clone(),
                    problem: format!("{src_rows} rows, its commit record says {}", src.rows),
                });
            }
            rows += src_rows;
        }
        if let Some((pf, _)) = file {
            let tail = pf.finish().map_err(|source| CompactError::Parquet {
                path: sources[0].path.clone(),
                source,
            })?;
            self.put(tail.to_vec()).await?;
        }
        Ok(rows)
    }

    async fn put(&mut self, chunk: Vec<u8>) -> Result<(), CompactError> {
        Ok(self.0.put(chunk).await?)
    }
}

/// A committed file's bytes, checked against its commit record's checksum.
async fn read_checked(store: &dyn ObjectStore, f: &FileEntry) -> Result<Bytes, CompactError> {
    Ok(committed_file::read(store, &f.path, Some(&f.checksum)).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(start: i64, end: i64, bytes: u64, age_h: i64) -> CommitRecord {
        let at = Utc::now() - chrono::Duration::hours(age_h);
        let path = format!("b/t/dt=2026-12-07/t+0+{start}.parquet");
        let file = crate::testing::file(path, "t", start, end, bytes);
        CommitRecord {
            committed_at: at.to_rfc3339(),
            ..crate::testing::record("t", 0, start, end, vec![file])
        }
    }

    fn opts(target: u64) -> Options {
        Options {
            target_bytes: target,
            min_age: Duration::from_secs(3600),
            zstd_level: 3,
            part_bytes: PART_BYTES,
        }
    }

    fn chain(n: i64, bytes: u64, age_h: i64) -> Vec<CommitRecord> {
        (0..n)
            .map(|i| rec(i * 10, i * 10 + 9, bytes, age_h))
            .collect()
    }

    #[test]
    fn runs_fill_up_to_the_target_and_never_take_the_last_record() {
        let now = Utc::now().timestamp_millis();
        // 10 records of 100 bytes, target 350: runs of 3, the last record left alone.
        let runs = plan(&chain(10, 100, 2), &opts(350), now);
        assert_eq!(runs, vec![0..3, 3..6, 6..9]);
        // Too young: nothing.
        assert!(plan(&chain(10, 100, 0), &opts(350), now).is_empty());
        // Already large: nothing.
        assert!(plan(&chain(10, 200, 2), &opts(350), now).is_empty());
    }

    #[test]
    fn runs_start_after_the_last_compaction_and_break_on_dead_letters_dates_and_schemas() {
        let now = Utc::now().timestamp_millis();
        let mut c = chain(12, 10, 2);
        c[2].compacts = 2; // a compaction record: runs start after it
        c[5].dead_letter_file = Some("dlq".into());
        c[8].files[0].path = "b/t/dt=2026-12-08/x.parquet".into();
        c[9].files[0].path = "b/t/dt=2026-12-08/y.parquet".into();
        c[10].files[0].schema_fingerprint = Some("ab".into());
        let runs = plan(&c, &opts(1000), now);
        assert_eq!(runs, vec![3..5, 6..8, 8..10]);
    }

    #[test]
    fn a_single_eligible_record_is_not_a_run() {
        let now = Utc::now().timestamp_millis();
        let mut c = chain(4, 10, 2);
        c[1].dead_letter_file = Some("dlq".into());
        assert!(plan(&c, &opts(1000), now).is_empty());
    }

    /// `n` committed records of 10 offsets, each with one real Parquet file, on a store.
    async fn landed(n: i64) -> (object_store::memory::InMemory, Path) {
        use arrow_array::{Int64Array, RecordBatch, StringArray};
        use std::sync::Arc;
        let store = object_store::memory::InMemory::new();
        let root = Path::from("bronze");
        for i in 0..n {
            let (start, end) = (i * 10, i * 10 + 9);
            let offsets: Int64Array = (start..=end).collect();
            let values: StringArray = (start..=end).map(|o| Some(format!("v{o}"))).collect();
            let batch = RecordBatch::try_from_iter([
                ("offset", Arc::new(offsets) as arrow_array::ArrayRef),
                ("v", Arc::new(values) as arrow_array::ArrayRef),
            ])
            .unwrap();
            let body = crate::parquet_file::to_parquet(&batch, 3).unwrap();
            let path = format!("bronze/t/dt=2026-12-07/t+0+{start}.parquet");
            store
                .put(&Path::from(path.as_str()), body.clone().into())
                .await
                .unwrap();
            let mut r = rec(start, end, body.len() as u64, 2);
            r.files[0].path = path;
            r.files[0].checksum = commit_log::checksum(&body);
            commit_log::create(&store, &root, &r).await.unwrap();
        }
        (store, root)
    }

    async fn offsets(store: &dyn ObjectStore, chain: &[CommitRecord]) -> Vec<i64> {
        use arrow_array::cast::AsArray;
        let mut out = Vec::new();
        for f in chain.iter().flat_map(|r| &r.files) {
            let bytes = read_checked(store, f).await.unwrap();
            for b in ParquetRecordBatchReaderBuilder::try_new(bytes)
                .unwrap()
                .build()
                .unwrap()
            {
                let b = b.unwrap();
                let col = b.column_by_name("offset").unwrap();
                out.extend(col.as_primitive::<arrow_array::types::Int64Type>().values());
            }
        }
        out
    }

    #[tokio::test]
    async fn a_compacted_chain_holds_every_offset_once_and_readers_switch_at_the_record() {
        let (store, root) = landed(10).await;
        let before = commit_log::read_chain(&store, &root, "t", 0).await.unwrap();
        let want = offsets(&store, &before.records).await;
        assert_eq!(want, (0..100).collect::<Vec<_>>());

        let mut o = opts(1 << 30);
        o.min_age = Duration::ZERO;
        let done = compact_partition(&store, &root, "t", 0, &o).await.unwrap();
        assert_eq!((done.runs, done.records, done.files_after), (1, 9, 1));

        let after = commit_log::read_chain(&store, &root, "t", 0).await.unwrap();
        assert!(after.is_gap_free(), "{:?}", after.breaks);
        assert_eq!(
            after.records.len(),
            2,
            "one compaction record and the last record"
        );
        assert_eq!((after.records[0].start, after.records[0].end), (0, 89));
        assert_eq!(after.superseded.len(), 9);
        assert_eq!(offsets(&store, &after.records).await, want);

        // A second pass has nothing to do: the last record stays, runs only go forward.
        let again = compact_partition(&store, &root, "t", 0, &o).await.unwrap();
        assert_eq!(again.runs, 0);

        // The manifest lists the compacted file and the last record's, nothing twice.
        crate::manifest::refresh(&store, &root).await.unwrap();
        let m = crate::manifest::read(&store, &root, "t")
            .await
            .unwrap()
            .unwrap();
        let rows: i64 = m.entries.iter().map(|e| e.rows).sum();
        assert_eq!((m.entries.len(), rows), (2, 100));
    }

    #[tokio::test]
    async fn a_manifest_written_before_compaction_drops_the_replaced_files() {
        let (store, root) = landed(6).await;
        let mut cached = crate::manifest::Manifests::default();
        cached.refresh(&store, &root).await.unwrap();
        let mut o = opts(1 << 30);
        o.min_age = Duration::ZERO;
        compact_partition(&store, &root, "t", 0, &o).await.unwrap();
        // More records land after the compaction.
        let (more, _) = landed(8).await;
        for s in [60, 70] {
            let p = layout::commit_record(&root, "t", 0, s);
            let body = more.get(&p).await.unwrap().bytes().await.unwrap();
            let r: CommitRecord = serde_json::from_slice(&body).unwrap();
            let f = &r.files[0].path;
            let data = more
                .get(&Path::from(f.as_str()))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            store
                .put(&Path::from(f.as_str()), data.into())
                .await
                .unwrap();
            commit_log::create(&store, &root, &r).await.unwrap();
        }
        cached.refresh(&store, &root).await.unwrap();
        let m = crate::manifest::read(&store, &root, "t")
            .await
            .unwrap()
            .unwrap();
        let mut ranges: Vec<(i64, i64)> = m.entries.iter().map(|e| (e.start, e.end)).collect();
        ranges.sort();
        assert_eq!(ranges, vec![(0, 49), (50, 59), (60, 69), (70, 79)]);
        // A fresh refresh from nothing agrees.
        store
            .delete(&layout::manifest_file(&root, "t"))
            .await
            .unwrap();
        crate::manifest::refresh(&store, &root).await.unwrap();
        let fresh = crate::manifest::read(&store, &root, "t")
            .await
            .unwrap()
            .unwrap();
        let mut again: Vec<(i64, i64)> = fresh.entries.iter().map(|e| (e.start, e.end)).collect();
        again.sort();
        assert_eq!(again, ranges);
    }
}
