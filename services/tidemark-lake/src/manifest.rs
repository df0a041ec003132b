//! The manifest: for each table directory, one Parquet file listing exactly the committed data
//! files (those a commit record names), for engines that read bronze by a list of files (DuckDB,
//! Spark, Trino, pandas). A file of a flush that crashed before its commit record (an orphan,
//! until `gc`) is never in it, so a reader of the manifest never sees a row twice or one that
//! does not count.
//!
//! `<root>/_manifest/<table>.parquet` holds one row per file ([`Entry`]; `path` relative to the
//! bronze root). Its key-value metadata `tidemark.manifest.coverage` holds, for every partition
//! of bronze, the start of the last commit record folded in, so a refresh reads only the records
//! after it. A manifest is replaced whole (one put, atomic on S3 and local files), so each is
//! self-consistent: exactly the files of the records up to its coverage. Two refreshes racing
//! can leave one manifest a little behind the other, never a committed file missing below its
//! coverage nor an uncommitted one in it. Merge and replay read the commit log, not this.
//!
//! Compaction: `tidemark.manifest.compacted` holds, per partition, the range of the last
//! compaction record folded in. A refresh lists only the compaction records after it (they only
//! go forward along a chain), replaces the entries of the records each one covers by its files,
//! and skips the covered records it has not folded yet.

use std::collections::BTreeMap;
use std::sync::Arc;
use tidemark_core::event::TopicPartition;

use arrow_array::{Array, ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{ArrowError, DataType, Field, Schema};
use bytes::Bytes;
use futures::{StreamExt as _, TryStreamExt as _};
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;

use crate::commit_log::{self, CommitLogError, CommitRecord};
use crate::layout;

const COVERAGE_KEY: &str = "tidemark.manifest.coverage";
const COMPACTED_KEY: &str = "tidemark.manifest.compacted";

/// One committed data file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the bronze root: `<table>/dt=<date>/<file>.parquet`.
    pub path: String,
    pub topic: String,
    pub partition: i32,
    /// The commit record's range.
    pub start: i64,
    pub end: i64,
    pub min_offset: i64,
    pub max_offset: i64,
    pub rows: i64,
    pub bytes: i64,
    pub checksum: String,
    pub schema_fingerprint: Option<String>,
    pub committed_at: String,
}

/// Topic → partition → start of the last commit record folded in.
type Coverage = BTreeMap<String, BTreeMap<i32, i64>>;

/// Topic → partition → `(start, end)` of the last compaction record folded in.
type Compacted = BTreeMap<String, BTreeMap<i32, (i64, i64)>>;

/// A table's manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    pub entries: Vec<Entry>,
    coverage: Coverage,
    compacted: Compacted,
}

impl Manifest {
    fn covered(&self, topic: &str, partition: i32) -> Option<i64> {
        self.coverage.get(topic)?.get(&partition).copied()
    }

    fn compacted(&self, topic: &str, partition: i32) -> Option<(i64, i64)> {
        self.compacted.get(topic)?.get(&partition).copied()
    }
}

/// What a refresh did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refreshed {
    /// Commit records read (those after the manifests' coverage).
    pub records: usize,
    pub files_added: usize,
    pub manifests_written: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error(transparent)]
    Log(#[from] CommitLogError),
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("manifest {path}: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("writing a manifest: {0}")]
    Parquet(#[from] ParquetError),
    #[error("writing a manifest: {0}")]
    Arrow(#[from] ArrowError),
}

/// Brings every table's manifest up to the commit log: reads the records after what the
/// manifests cover and writes the manifests that gained files or coverage.
pub async fn refresh(store: &dyn ObjectStore, root: &Path) -> Result<Refreshed, ManifestError> {
    Manifests::default().refresh(store, root).await
}

/// The manifests as this process last wrote them, for a refresher that runs again and again
/// (ingest): later refreshes fold new records into these instead of reading every manifest
/// back. Overwriting a manifest another process wrote since is allowed (each is
/// self-consistent: at most a little behind).
#[derive(Debug, Default)]
pub struct Manifests {
    /// `None` until read, and after a failed refresh (what was written is then unknown).
    tables: Option<BTreeMap<String, Manifest>>,
}

impl Manifests {
    /// [`refresh`], from the manifests kept since the last one.
    pub async fn refresh(
        &mut self,
        store: &dyn ObjectStore,
        root: &Path,
    ) -> Result<Refreshed, ManifestError> {
        let mut tables = match self.tables.take() {
            Some(t) => t,
            None => read_all(store, root).await?,
        };
        let done = fold_new(store, root, &mut tables).await?;
        self.tables = Some(tables);
        Ok(done)
    }
}

async fn fold_new(
    store: &dyn ObjectStore,
    root: &Path,
    tables: &mut BTreeMap<String, Manifest>,
) -> Result<Refreshed, ManifestError> {
    let parts = commit_log::partitions(store, root).await?;
    let mut done = Refreshed::default();
    let mut news: Vec<((String, i32), New)> = Vec::new();
    for TopicPartition { topic, partition } in parts {
        // From what every manifest covers; a table without a manifest reads the whole chain.
        let from = tables
            .values()
            .map(|m| m.covered(&topic, partition))
            .min()
            .flatten();
        let from_compacted = tables
            .values()
            .map(|m| m.compacted(&topic, partition).map(|c| c.0))
            .min()
            .flatten();
        let mut new = New::read(store, root, (&topic, partition), from, from_compacted).await?;
        if new.names_unknown_table(tables) && (from.is_some() || from_compacted.is_some()) {
            // A table seen for the first time: its manifest starts from the whole chain.
            new = New::read(store, root, (&topic, partition), None, None).await?;
        }
        for f in new.files() {
            tables.entry(f.table.clone()).or_default();
        }
        done.records += new.records.len() + new.compacted.len();
        news.push(((topic, partition), new));
    }
    for (table, m) in tables.iter_mut() {
        let (coverage, compacted, mut added) = (m.coverage.clone(), m.compacted.clone(), 0);
        for ((topic, partition), new) in &news {
            let part = (topic.as_str(), *partition);
            added += fold_compacted(m, table, root, part, &new.compacted);
            added += fold(m, table, root, part, &new.records);
        }
        if added > 0 || m.coverage != coverage || m.compacted != compacted {
            write(store, root, table, m).await?;
            done.manifests_written += 1;
        }
        done.files_added += added;
    }
    Ok(done)
}

/// A partition's records and compaction records after what the manifests cover.
struct New {
    records: Vec<CommitRecord>,
    compacted: Vec<CommitRecord>,
}

impl New {
    async fn read(
        store: &dyn ObjectStore,
        root: &Path,
        (topic, partition): (&str, i32),
        after: Option<i64>,
        after_compacted: Option<i64>,
    ) -> Result<New, CommitLogError> {
        Ok(New {
            records: records_after(store, root, topic, partition, after).await?,
            compacted: commit_log::read_compacted(store, root, topic, partition, after_compacted)
                .await?,
        })
    }

    fn files(&self) -> impl Iterator<Item = &crate::commit_log::FileEntry> {
        self.records
            .iter()
            .chain(&self.compacted)
            .flat_map(|r| &r.files)
    }

    fn names_unknown_table(&self, tables: &BTreeMap<String, Manifest>) -> bool {
        self.files().any(|f| !tables.contains_key(&f.table))
    }
}

/// Replaces the entries of the records each new compaction record covers by its files of
/// `table`; returns how many entries changed.
fn fold_compacted(
    m: &mut Manifest,
    table: &str,
    root: &Path,
    (topic, partition): (&str, i32),
    compacted: &[CommitRecord],
) -> usize {
    let mut changed = 0;
    for c in compacted {
        // Compaction records do not overlap; one starting inside the last folded is ignored,
        // as `commit_log::resolve` does.
        if m.compacted(topic, partition)
            .is_some_and(|(_, e)| c.start <= e)
        {
            continue;
        }
        let before = m.entries.len();
        m.entries.retain(|x| {
            x.topic != topic || x.partition != partition || x.start < c.start || x.start > c.end
        });
        changed += before - m.entries.len();
        changed += push_files(m, table, root, (topic, partition), c);
        m.compacted
            .entry(topic.to_owned())
            .or_default()
            .insert(partition, (c.start, c.end));
    }
    changed
}

/// Adds the files of `table` in the records after the manifest's coverage of the partition
/// (but those a folded compaction record covers); returns how many.
fn fold(
    m: &mut Manifest,
    table: &str,
    root: &Path,
    (topic, partition): (&str, i32),
    records: &[CommitRecord],
) -> usize {
    let covered = m.covered(topic, partition);
    let compacted_to = m.compacted(topic, partition).map(|(_, e)| e);
    let mut added = 0;
    for r in records
        .iter()
        .filter(|r| covered.is_none_or(|c| r.start > c))
    {
        if compacted_to.is_none_or(|e| r.start > e) {
            added += push_files(m, table, root, (topic, partition), r);
        }
        m.coverage
            .entry(topic.to_owned())
            .or_default()
            .insert(partition, r.start);
    }
    added
}

fn push_files(
    m: &mut Manifest,
    table: &str,
    root: &Path,
    (topic, partition): (&str, i32),
    r: &CommitRecord,
) -> usize {
    let before = m.entries.len();
    for f in r.files.iter().filter(|f| f.table == table) {
        m.entries.push(Entry {
            path: relative(root, &f.path),
            topic: topic.to_owned(),
            partition,
            start: r.start,
            end: r.end,
            min_offset: f.min_offset,
            max_offset: f.max_offset,
            rows: i64::try_from(f.rows).unwrap_or(i64::MAX),
            bytes: i64::try_from(f.bytes).unwrap_or(i64::MAX),
            checksum: f.checksum.clone(),
            schema_fingerprint: f.schema_fingerprint.clone(),
            committed_at: r.committed_at.clone(),
        });
    }
    m.entries.len() - before
}

/// A stored path relative to the bronze root (commit records hold it under the store).
fn relative(root: &Path, stored: &str) -> String {
    let root = root.as_ref();
    if root.is_empty() {
        return stored.to_owned();
    }
    stored
        .strip_prefix(root)
        .and_then(|p| p.strip_prefix('/'))
        .unwrap_or(stored)
        .to_owned()
}

/// The partition's records after the one starting at `after` (all of them for `None`), read
/// a few at a time.
async fn records_after(
    store: &dyn ObjectStore,
    root: &Path,
    topic: &str,
    partition: i32,
    after: Option<i64>,
) -> Result<Vec<CommitRecord>, CommitLogError> {
    let starts = commit_log::starts_after(store, root, topic, partition, after).await?;
    futures::stream::iter(starts)
        .map(|s| async move {
            commit_log::read(store, &layout::commit_record(root, topic, partition, s)).await
        })
        .buffered(16)
        .try_collect()
        .await
}

/// Every table's manifest; one that cannot be read is rebuilt (left out, with a warning).
async fn read_all(
    store: &dyn ObjectStore,
    root: &Path,
) -> Result<BTreeMap<String, Manifest>, ManifestError> {
    let dir = layout::manifest_dir(root);
    let metas: Vec<_> = store.list(Some(&dir)).try_collect().await?;
    let mut out = BTreeMap::new();
    for meta in metas {
        let Some(table) = meta
            .location
            .filename()
            .and_then(|n| n.strip_suffix(".parquet"))
            .map(layout::topic_of_dir)
        else {
            continue;
        };
        match read_at(store, &meta.location).await {
            Ok(m) => {
                out.insert(table, m);
            }
            Err(e) => {
                tracing::warn!(path = %meta.location, error = %e, "rebuilding an unreadable manifest")
            }
        }
    }
    Ok(out)
}

/// A table's manifest, if it has one.
pub async fn read(
    store: &dyn ObjectStore,
    root: &Path,
    table: &str,
) -> Result<Option<Manifest>, ManifestError> {
    match read_at(store, &layout::manifest_file(root, table)).await {
        Err(ManifestError::Store(object_store::Error::NotFound { .. })) => Ok(None),
        other => other.map(Some),
    }
}

async fn read_at(store: &dyn ObjectStore, path: &Path) -> Result<Manifest, ManifestError> {
    let bytes = store.get(path).await?.bytes().await?;
    decode(bytes).map_err(|reason| ManifestError::Corrupt {
        path: path.to_string(),
        reason,
    })
}

fn schema() -> Schema {
    let text = |n: &str, null| Field::new(n, DataType::Utf8, null);
    let int = |n: &str| Field::new(n, DataType::Int64, false);
    Schema::new(vec![
        text("path", false),
        text("topic", false),
        Field::new("partition", DataType::Int32, false),
        int("start"),
        int("end"),
        int("min_offset"),
        int("max_offset"),
        int("rows"),
        int("bytes"),
        text("checksum", false),
        text("schema_fingerprint", true),
        text("committed_at", false),
    ])
}

async fn write(
    store: &dyn ObjectStore,
    root: &Path,
    table: &str,
    m: &Manifest,
) -> Result<(), ManifestError> {
    let body = encode(m)?;
    store
        .put(&layout::manifest_file(root, table), PutPayload::from(body))
        .await?;
    Ok(())
}

fn encode(m: &Manifest) -> Result<Bytes, ManifestError> {
    let e = &m.entries;
    let texts = |f: fn(&Entry) -> &str| -> ArrayRef {
        Arc::new(e.iter().map(|x| Some(f(x))).collect::<StringArray>())
    };
    let ints =
        |f: fn(&Entry) -> i64| -> ArrayRef { Arc::new(e.iter().map(f).collect::<Int64Array>()) };
    let columns: Vec<ArrayRef> = vec![
        texts(|x| &x.path),
        texts(|x| &x.topic),
        Arc::new(e.iter().map(|x| x.partition).collect::<Int32Array>()),
        ints(|x| x.start),
        ints(|x| x.end),
        ints(|x| x.min_offset),
        ints(|x| x.max_offset),
        ints(|x| x.rows),
        ints(|x| x.bytes),
        texts(|x| &x.checksum),
        Arc::new(
            e.iter()
                .map(|x| x.schema_fingerprint.as_deref())
                .collect::<StringArray>(),
        ),
        texts(|x| &x.committed_at),
    ];
    let batch = RecordBatch::try_new(Arc::new(schema()), columns)?;
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), None)?;
    let coverage = serde_json::to_string(&m.coverage).expect("coverage serializes");
    writer.append_key_value_metadata(KeyValue::new(COVERAGE_KEY.to_owned(), coverage));
    let compacted = serde_json::to_string(&m.compacted).expect("coverage serializes");
    writer.append_key_value_metadata(KeyValue::new(COMPACTED_KEY.to_owned(), compacted));
    writer.write(&batch)?;
    writer.close()?;
    Ok(Bytes::from(out))
}

fn decode(bytes: Bytes) -> Result<Manifest, String> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| e.to_string())?;
    let kv = |key: &str| {
        builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|k| k.key == key))
            .and_then(|k| k.value.clone())
    };
    let coverage = kv(COVERAGE_KEY).ok_or("no coverage")?;
    let coverage: Coverage = serde_json::from_str(&coverage).map_err(|e| e.to_string())?;
    // Absent in manifests written before compaction existed: nothing compacted folded in.
    let compacted: Compacted = match kv(COMPACTED_KEY) {
        Some(text) => serde_json::from_str(&text).map_err(|e| e.to_string())?,
        None => Compacted::default(),
    };
    let mut entries = Vec::new();
    for batch in builder.build().map_err(|e| e.to_string())? {
        entries.extend(entries_of(&batch.map_err(|e| e.to_string())?)?);
    }
    Ok(Manifest {
        entries,
        coverage,
        compacted,
    })
}

fn entries_of(b: &RecordBatch) -> Result<Vec<Entry>, String> {
    fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> Result<&'a T, String> {
        b.column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<T>())
            .ok_or_else(|| format!("column {name} is missing or mistyped"))
    }
    let text = |n| col::<StringArray>(b, n);
    let int = |n| col::<Int64Array>(b, n);
    let (path, topic, checksum, fp, at) = (
        text("path")?,
        text("topic")?,
        text("checksum")?,
        text("schema_fingerprint")?,
        text("committed_at")?,
    );
    let partition = col::<Int32Array>(b, "partition")?;
    let (start, end, lo, hi, rows, bytes) = (
        int("start")?,
        int("end")?,
        int("min_offset")?,
        int("max_offset")?,
        int("rows")?,
        int("bytes")?,
    );
    Ok((0..b.num_rows())
        .map(|i| Entry {
            path: path.value(i).to_owned(),
            topic: topic.value(i).to_owned(),
            partition: partition.value(i),
            start: start.value(i),
            end: end.value(i),
            min_offset: lo.value(i),
            max_offset: hi.value(i),
            rows: rows.value(i),
            bytes: bytes.value(i),
            checksum: checksum.value(i).to_owned(),
            schema_fingerprint: (!fp.is_null(i)).then(|| fp.value(i).to_owned()),
            committed_at: at.value(i).to_owned(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn root() -> Path {
        Path::from("bronze")
    }

    /// Commits `[start, start + 9]` of `topic`/`partition` with one file per table.
    async fn commit(store: &InMemory, topic: &str, partition: i32, start: i64, tables: &[&str]) {
        let files = tables
            .iter()
            .map(|t| {
                let path = format!("bronze/{t}/dt=2026-12-07/{topic}+{partition}+{start}.parquet");
                crate::testing::file(path, t, start, start + 9, 100)
            })
            .collect();
        let rec = crate::testing::record(topic, partition, start, start + 9, files);
        commit_log::create(store, &root(), &rec).await.unwrap();
    }

    async fn paths(store: &InMemory, table: &str) -> Vec<String> {
        let m = read(store, &root(), table).await.unwrap().unwrap();
        let mut p: Vec<String> = m.entries.into_iter().map(|e| e.path).collect();
        p.sort();
        p
    }

    #[tokio::test]
    async fn the_manifest_names_exactly_the_committed_files_and_reads_only_new_records() {
        let store = InMemory::new();
        for p in 0..2 {
            for i in 0..5 {
                commit(&store, "t", p, i * 10, &["t"]).await;
            }
        }
        // An orphan: a flush that crashed before its commit record.
        let orphan = Path::from("bronze/t/dt=2026-12-07/t+0+50.parquet");
        store
            .put(&orphan, PutPayload::from_static(b"x"))
            .await
            .unwrap();

        let first = refresh(&store, &root()).await.unwrap();
        assert_eq!(
            (first.records, first.files_added, first.manifests_written),
            (10, 10, 1)
        );
        let listed = paths(&store, "t").await;
        assert_eq!(listed.len(), 10);
        assert!(
            listed.iter().all(|p| p.starts_with("t/dt=2026-12-07/")),
            "{listed:?}"
        );
        assert!(!listed.contains(&"t/dt=2026-12-07/t+0+50.parquet".to_owned()));

        // Nothing new: nothing read past the coverage, nothing written.
        assert_eq!(
            refresh(&store, &root()).await.unwrap(),
            Refreshed::default()
        );

        commit(&store, "t", 0, 50, &["t"]).await;
        let next = refresh(&store, &root()).await.unwrap();
        assert_eq!((next.records, next.files_added), (1, 1));
        assert_eq!(paths(&store, "t").await.len(), 11);
    }

    #[tokio::test]
    async fn a_refresher_that_runs_again_folds_into_what_it_wrote_without_reading_it_back() {
        let store = InMemory::new();
        commit(&store, "t", 0, 0, &["t"]).await;
        let mut kept = Manifests::default();
        kept.refresh(&store, &root()).await.unwrap();
        // Unreadable now: a refresher that read it back would rebuild it from the whole chain.
        let path = layout::manifest_file(&root(), "t");
        store
            .put(&path, PutPayload::from_static(b"not parquet"))
            .await
            .unwrap();
        commit(&store, "t", 0, 10, &["t"]).await;
        let next = kept.refresh(&store, &root()).await.unwrap();
        assert_eq!((next.records, next.files_added), (1, 1));
        assert_eq!(paths(&store, "t").await.len(), 2);
    }

    #[tokio::test]
    async fn a_table_seen_late_gets_its_files_from_the_whole_chain() {
        let store = InMemory::new();
        commit(&store, "t", 0, 0, &["t", "_heartbeats"]).await;
        commit(&store, "t", 0, 10, &["t"]).await;
        refresh(&store, &root()).await.unwrap();
        // `_heartbeats` lost its manifest (deleted by hand): it is rebuilt in full.
        store
            .delete(&layout::manifest_file(&root(), "_heartbeats"))
            .await
            .unwrap();
        commit(&store, "t", 0, 20, &["t", "_heartbeats"]).await;
        refresh(&store, &root()).await.unwrap();
        assert_eq!(paths(&store, "_heartbeats").await.len(), 2);
        assert_eq!(paths(&store, "t").await.len(), 3);
    }

    #[tokio::test]
    async fn an_unreadable_or_stale_manifest_is_brought_back_to_the_log() {
        let store = InMemory::new();
        commit(&store, "t", 0, 0, &["t"]).await;
        refresh(&store, &root()).await.unwrap();
        let stale = store
            .get(&layout::manifest_file(&root(), "t"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        commit(&store, "t", 0, 10, &["t"]).await;
        refresh(&store, &root()).await.unwrap();
        // A slower refresh racing this one puts back its older manifest: still consistent.
        let path = layout::manifest_file(&root(), "t");
        store.put(&path, PutPayload::from(stale)).await.unwrap();
        assert_eq!(paths(&store, "t").await.len(), 1);
        refresh(&store, &root()).await.unwrap();
        assert_eq!(paths(&store, "t").await.len(), 2);

        store
            .put(&path, PutPayload::from_static(b"not parquet"))
            .await
            .unwrap();
        refresh(&store, &root()).await.unwrap();
        assert_eq!(paths(&store, "t").await.len(), 2);
    }
}
