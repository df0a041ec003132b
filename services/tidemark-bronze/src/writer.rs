//! Flushing a segment: data files under unique names, the dead-letter file, then the commit
//! record with put-if-absent. A fenced writer deletes what it wrote.
//!
//! Crash safety: a crash before the commit record leaves orphan files that no commit names
//! (collected by `gc`); a crash after it leaves a complete commit. A retried flush writes the
//! same names again (they include the writer id and range), so retries never duplicate rows.

use std::sync::Arc;
use tidemark_lake::columns as col;

use arrow_array::{Array, Int64Array, RecordBatch};
use bytes::Bytes;
use chrono::{NaiveDate, Utc};
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};

use crate::arrow_values::ValueTypeError;
use crate::batch::{self, Shape};
use crate::commit_log::{self, CommitLogError, CommitOutcome, CommitRecord, FileEntry};
use crate::dead_letter;
use crate::layout::{self, TableDir};
use crate::parquet_file;
use crate::segment::Segment;
use tidemark_core::disposition::Disposition;
use tidemark_core::event::{ChangeEvent, TopicPartition};
use tidemark_lake::upload::Upload;

#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error(transparent)]
    CommitLog(#[from] CommitLogError),
    #[error("building Arrow columns: {0}")]
    Arrow(#[from] ValueTypeError),
    #[error("writing Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Building the files panicked (a bug): retrying would panic again.
    #[error("building the files failed (a bug; please report it): {0}")]
    Panic(String),
    /// The drain's time ran out while the store still failed: the range is re-read next run.
    #[error("given up at shutdown: the store did not answer before the drain timeout")]
    Abandoned,
}

impl FlushError {
    /// A store that fails is retried with backoff (the range stays in memory); building the
    /// file failed on its own data or code, which retrying would repeat: fatal.
    pub fn disposition(&self) -> Disposition {
        match self {
            FlushError::Arrow(_) | FlushError::Parquet(_) | FlushError::Panic(_) => {
                Disposition::Fatal
            }
            FlushError::Store(_) | FlushError::CommitLog(_) | FlushError::Abandoned => {
                Disposition::Retry
            }
        }
    }
}

/// What a flush did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flushed {
    Committed(Box<CommitRecord>),
    /// Another writer owns the range; our files were removed. Re-read the chain.
    Fenced {
        winner: Box<CommitRecord>,
    },
}

/// Writes segments of any partition under one bronze root.
#[derive(Debug, Clone)]
pub struct BronzeWriter {
    store: Arc<dyn ObjectStore>,
    root: Path,
    zstd_level: i32,
    writer_id: String,
    /// Commits per partition since this writer started: every
    /// [`commit_log::HINT_EVERY`]th refreshes the partition's end hint.
    commits: Arc<std::sync::Mutex<std::collections::HashMap<TopicPartition, usize>>>,
    /// Flushes encoding at once, over all partitions: each holds an Arrow batch, a Parquet
    /// writer and zstd state whatever its size, so 64 partitions rolling together would take
    /// far more than their bytes say; more encodes than cores gain nothing.
    encoding: Arc<tokio::sync::Semaphore>,
}

/// Flushes encoding at once: the cores (at least 2).
fn encoding_permits() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().max(2))
}

/// One file of a flush, encoded.
struct Group {
    table: TableDir,
    date: NaiveDate,
    file: Encoded,
    fingerprint: Option<String>,
}

/// A Parquet file's bytes, rows and lowest and highest `_kafka_offset`.
struct Encoded {
    bytes: Bytes,
    rows: u64,
    offsets: (i64, i64),
}

/// Change events converted to Arrow at a time: a flush holds one such batch beside the Parquet
/// it writes, not an Arrow copy of the whole segment.
const CHUNK_ROWS: usize = 8192;

fn encode(batch: &RecordBatch, zstd_level: i32) -> Result<Encoded, FlushError> {
    Ok(Encoded {
        bytes: parquet_file::to_parquet(batch, zstd_level)?,
        rows: batch.num_rows() as u64,
        offsets: offsets(batch),
    })
}

/// A segment's change events as one Parquet file, encoded [`CHUNK_ROWS`] at a time.
fn encode_changes(
    events: &[ChangeEvent],
    shape: &Shape,
    zstd_level: i32,
) -> Result<Encoded, FlushError> {
    let mut enc = ChangeEncoder::default();
    enc.add(events, shape, zstd_level)?;
    let rows = enc.rows;
    let offsets = enc.offsets;
    let bytes = enc.finish()?;
    Ok(Encoded {
        bytes,
        rows,
        offsets,
    })
}

/// Change events encoded into one Parquet file, [`CHUNK_ROWS`] at a time.
struct ChangeEncoder {
    file: Option<parquet_file::ParquetFile>,
    rows: u64,
    offsets: (i64, i64),
}

impl Default for ChangeEncoder {
    fn default() -> Self {
        ChangeEncoder {
            file: None,
            rows: 0,
            offsets: (i64::MAX, i64::MIN),
        }
    }
}

impl ChangeEncoder {
    fn add(
        &mut self,
        events: &[ChangeEvent],
        shape: &Shape,
        zstd_level: i32,
    ) -> Result<(), FlushError> {
        for chunk in events.chunks(CHUNK_ROWS) {
            let batch = batch::change_batch(&chunk.iter().collect::<Vec<_>>(), shape)?;
            let (a, b) = offsets(&batch);
            self.offsets = (self.offsets.0.min(a), self.offsets.1.max(b));
            self.rows += batch.num_rows() as u64;
            let f = match &mut self.file {
                Some(f) => f,
                None => self
                    .file
                    .insert(parquet_file::ParquetFile::new(&batch, zstd_level)?),
            };
            f.write(&batch)?;
        }
        Ok(())
    }

    /// Ends the row group in progress and returns the bytes written since the last call (a
    /// spill is a row group: nothing of an open file stays in memory between spills).
    fn take_row_groups(&mut self) -> Result<Vec<u8>, FlushError> {
        match &mut self.file {
            Some(f) => Ok(f.take_row_groups()?),
            None => Ok(Vec::new()),
        }
    }

    /// Adds the last events and returns the rest of the file, its rows and offsets.
    fn finish_with(
        mut self,
        events: &[ChangeEvent],
        shape: &Shape,
        zstd_level: i32,
    ) -> Result<(Bytes, u64, (i64, i64)), FlushError> {
        self.add(events, shape, zstd_level)?;
        let (rows, offsets) = (self.rows, self.offsets);
        Ok((self.finish()?, rows, offsets))
    }

    /// The rest of the file, footer included.
    fn finish(self) -> Result<Bytes, FlushError> {
        let file = self
            .file
            .expect("only a segment with changes has a change file");
        Ok(file.finish()?)
    }
}

/// A segment's change file written while the segment fills: its row groups go to a multipart
/// upload as they are encoded, so the file can grow far past what memory holds. It is part of
/// bronze only once the segment's commit record names it; until the upload completes it is no
/// object at all.
pub struct OpenFile {
    upload: Upload,
    enc: ChangeEncoder,
    fingerprint: Option<String>,
}

impl std::fmt::Debug for OpenFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenFile")
            .field("upload", &self.upload)
            .field("rows", &self.enc.rows)
            .finish_non_exhaustive()
    }
}

/// Part size of the files ingest streams: S3's least (5 MiB), to keep an open file small.
pub const STREAM_PART_BYTES: usize = 5 * 1024 * 1024;

/// Where a segment's streamed file goes.
#[derive(Debug, Clone)]
pub struct StreamTarget {
    pub topic: String,
    pub partition: i32,
    pub start: i64,
    pub date: NaiveDate,
}

/// The lowest and highest `_kafka_offset` of a batch.
fn offsets(batch: &RecordBatch) -> (i64, i64) {
    let col = batch
        .column_by_name(col::KAFKA_OFFSET)
        .and_then(|c| c.as_any().downcast_ref::<Int64Array>());
    let values = col
        .map(|a| a.values().iter().copied())
        .into_iter()
        .flatten();
    values.fold((i64::MAX, i64::MIN), |(lo, hi), o| (lo.min(o), hi.max(o)))
}

impl BronzeWriter {
    pub fn new(store: Arc<dyn ObjectStore>, root: Path, zstd_level: i32) -> BronzeWriter {
        BronzeWriter {
            store,
            root,
            zstd_level,
            writer_id: uuid::Uuid::new_v4().simple().to_string(),
            commits: Arc::default(),
            encoding: Arc::new(tokio::sync::Semaphore::new(encoding_permits())),
        }
    }

    /// The next offset of a partition according to the commit log. A lookup that had to list
    /// many records (no hint yet, or an old one) points the end hint at the last record.
    pub async fn next_offset(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, CommitLogError> {
        let last = commit_log::find_last(self.store.as_ref(), &self.root, topic, partition).await?;
        if let Some(rec) = &last.record
            && last.listed > commit_log::HINT_EVERY
        {
            self.hint(topic, partition, rec.start).await;
        }
        Ok(last.record.map(|r| r.end + 1))
    }

    /// Points the end hint at `start` (best effort: a hint only saves listing).
    async fn hint(&self, topic: &str, partition: i32, start: i64) {
        let store = self.store.as_ref();
        if let Err(e) = commit_log::write_hint(store, &self.root, topic, partition, start).await {
            tracing::warn!(topic, partition, error = %e, "could not update the commit log's end hint");
        }
    }

    /// Counts a commit; every [`commit_log::HINT_EVERY`]th of a partition refreshes its hint.
    async fn committed(&self, record: &CommitRecord) {
        let n = {
            let mut commits = self.commits.lock().unwrap_or_else(|p| p.into_inner());
            let n = commits
                .entry(TopicPartition::new(record.topic.clone(), record.partition))
                .or_default();
            *n += 1;
            *n
        };
        if n % commit_log::HINT_EVERY == 0 {
            self.hint(&record.topic, record.partition, record.start)
                .await;
        }
    }

    /// The segment's files, encoded one after the other.
    fn groups(&self, seg: &Segment, with_changes: bool) -> Result<Vec<Group>, FlushError> {
        let (date, level) = (seg.date.unwrap_or_default(), self.zstd_level);
        let mut out = Vec::new();
        let mut add = |table: TableDir, file: Encoded, fingerprint: Option<String>| {
            out.push(Group {
                table,
                date,
                file,
                fingerprint,
            });
        };
        if let Some(first) = seg.changes.first().filter(|_| with_changes) {
            let shape = seg.shape.clone().unwrap_or_else(|| Shape::of(first));
            let fingerprint = shape
                .value
                .as_ref()
                .map(|s| format!("{:016x}", s.fingerprint));
            let file = encode_changes(&seg.changes, &shape, level)?;
            add(TableDir::Topic(seg.topic.clone()), file, fingerprint);
        }
        if !seg.transactions.is_empty() {
            let b = batch::transactions_batch(&seg.transactions.iter().collect::<Vec<_>>());
            add(TableDir::Transactions, encode(&b, level)?, None);
        }
        if !seg.heartbeats.is_empty() {
            let b = batch::heartbeats_batch(&seg.heartbeats.iter().collect::<Vec<_>>());
            add(TableDir::Heartbeats, encode(&b, level)?, None);
        }
        if !seg.schema_changes.is_empty() {
            let b = batch::schema_changes_batch(&seg.schema_changes.iter().collect::<Vec<_>>())?;
            add(TableDir::SchemaChanges, encode(&b, level)?, None);
        }
        if !seg.messages.is_empty() {
            let b = batch::messages_batch(&seg.messages.iter().collect::<Vec<_>>())?;
            add(TableDir::Messages, encode(&b, level)?, None);
        }
        Ok(out)
    }

    /// Starts the change file of a segment that is to be streamed.
    pub async fn open_file(
        &self,
        at: &StreamTarget,
        shape: &Shape,
    ) -> Result<OpenFile, FlushError> {
        let path = layout::streamed_file(
            &self.root,
            &TableDir::Topic(at.topic.clone()),
            at.date,
            (&at.topic, at.partition, at.start),
            &self.writer_id,
        );
        Ok(OpenFile {
            upload: Upload::start(self.store.as_ref(), path, STREAM_PART_BYTES).await?,
            enc: ChangeEncoder::default(),
            fingerprint: shape
                .value
                .as_ref()
                .map(|s| format!("{:016x}", s.fingerprint)),
        })
    }

    /// Encodes change events into the open file and sends its finished row groups.
    pub async fn append(
        &self,
        open: &mut OpenFile,
        events: &[ChangeEvent],
        shape: &Shape,
    ) -> Result<(), FlushError> {
        let written = {
            let _encoding = self.encoding.acquire().await.expect("never closed");
            open.enc.add(events, shape, self.zstd_level)?;
            open.enc.take_row_groups()?
        };
        Ok(open.upload.put(written).await?)
    }

    /// Completes a segment's streamed file with the change events still buffered: the file
    /// exists from now on, and [`BronzeWriter::land`] names it in the commit record.
    pub async fn finish_file(
        &self,
        open: OpenFile,
        seg: &Segment,
    ) -> Result<FileEntry, FlushError> {
        let OpenFile {
            mut upload,
            enc,
            fingerprint,
        } = open;
        let tail = {
            let _encoding = self.encoding.acquire().await.expect("never closed");
            let shape = seg.shape.as_ref().expect("a streamed segment has a shape");
            enc.finish_with(&seg.changes, shape, self.zstd_level)
        };
        let (bytes, rows, offsets) = match tail {
            Ok(t) => t,
            Err(e) => {
                upload.abort().await;
                return Err(e);
            }
        };
        if let Err(e) = upload.put(bytes.to_vec()).await {
            upload.abort().await;
            return Err(e.into());
        }
        let done = upload.finish().await?;
        Ok(FileEntry {
            path: done.path.to_string(),
            table: seg.topic.clone(),
            rows,
            bytes: done.bytes,
            schema_fingerprint: fingerprint,
            checksum: done.checksum,
            min_offset: offsets.0,
            max_offset: offsets.1,
        })
    }

    /// Gives an open file up: its upload is dropped by the store (best effort; an S3 lifecycle
    /// rule collects what a crash leaves).
    pub async fn abandon(&self, open: OpenFile) {
        open.upload.abort().await;
    }

    /// Lands a non-empty segment: files, then the commit record.
    pub async fn flush(&self, seg: &Segment) -> Result<Flushed, FlushError> {
        self.land(seg, None).await
    }

    /// [`BronzeWriter::flush`], its change events already in `streamed` (a completed
    /// [`OpenFile`]).
    pub async fn land(
        &self,
        seg: &Segment,
        streamed: Option<FileEntry>,
    ) -> Result<Flushed, FlushError> {
        let end = seg.end.expect("only non-empty segments are flushed");
        let id = layout::FlushId {
            topic: &seg.topic,
            partition: seg.partition,
            start: seg.start,
            end,
            writer: &self.writer_id,
        };
        let mut written: Vec<Path> = Vec::new();
        written.extend(streamed.iter().map(|f| layout::stored_path(&f.path)));
        let mut files: Vec<FileEntry> = streamed.iter().cloned().collect();
        let groups = {
            let _encoding = self.encoding.acquire().await.expect("never closed");
            self.groups(seg, files.is_empty())?
        };
        for g in groups {
            let bytes = g.file.bytes;
            let path = layout::data_file(&self.root, &g.table, g.date, &id);
            let checksum = commit_log::checksum(&bytes);
            let len = bytes.len() as u64;
            self.store.put(&path, PutPayload::from(bytes)).await?;
            written.push(path.clone());
            files.push(FileEntry {
                path: path.to_string(),
                table: g.table.name().to_owned(),
                rows: g.file.rows,
                bytes: len,
                schema_fingerprint: g.fingerprint,
                checksum,
                min_offset: g.file.offsets.0,
                max_offset: g.file.offsets.1,
            });
        }
        let dead_letter_file = if seg.dead_letters.is_empty() {
            None
        } else {
            let path = layout::dead_letter_file(&self.root, &id);
            self.store
                .put(
                    &path,
                    PutPayload::from(dead_letter::to_jsonl(&seg.dead_letters)),
                )
                .await?;
            written.push(path.clone());
            Some(path.to_string())
        };
        let record = CommitRecord {
            version: crate::commit_log::FORMAT_VERSION,
            topic: seg.topic.clone(),
            partition: seg.partition,
            start: seg.start,
            end,
            records: seg.records,
            rows: files.iter().map(|f| f.rows).sum(),
            skipped: seg.skipped,
            dead_letters: seg.dead_letters.len() as u64,
            files,
            dead_letter_file,
            writer: self.writer_id.clone(),
            committed_at: Utc::now().to_rfc3339(),
            compacts: 0,
            compacted_at: None,
        };
        match commit_log::create(self.store.as_ref(), &self.root, &record).await? {
            CommitOutcome::Committed => {
                self.committed(&record).await;
                Ok(Flushed::Committed(Box::new(record)))
            }
            CommitOutcome::Fenced(winner) => {
                // Never delete a path the winner names (defensive: names carry our writer id).
                let theirs: Vec<&str> = winner
                    .files
                    .iter()
                    .map(|f| f.path.as_str())
                    .chain(winner.dead_letter_file.as_deref())
                    .collect();
                for p in written
                    .into_iter()
                    .filter(|p| !theirs.contains(&p.as_ref()))
                {
                    if let Err(e) = self.store.delete(&p).await {
                        tracing::warn!(path = %p, error = %e, "could not remove a fenced file; gc will");
                    }
                }
                Ok(Flushed::Fenced { winner })
            }
        }
    }
}
