//! The commit log: one JSON record per committed offset range of a topic-partition, created with
//! put-if-absent. The chain of records is the source of truth of what has landed.
//!
//! Compaction (see `compact`) adds records of a second kind, under `_compacted/`: one covers a
//! run of consecutive records exactly and names the files that replace theirs. Where one exists,
//! the chain holds it instead of the records it covers (see [`resolve`]); creating it (one
//! put-if-absent) is the atomic switch from the old files to the new. Compaction records never
//! overlap (they only go forward along the chain and never include its last record), and the
//! records they replace stay until `gc` removes them, after a grace period.

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use tidemark_core::event::TopicPartition;

use crate::layout;

/// One landed file of a range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path under the store (not under the bronze root).
    pub path: String,
    /// The directory it lands in (`<topic>`, `_transactions`, …).
    pub table: String,
    pub rows: u64,
    pub bytes: u64,
    /// Value schema fingerprint (hex), absent for schemaless files.
    pub schema_fingerprint: Option<String>,
    /// xxh3-64 of the file's bytes (hex).
    pub checksum: String,
    pub min_offset: i64,
    pub max_offset: i64,
}

/// A committed offset range `[start, end]` of one topic-partition. Every offset in it is a row of
/// one of `files`, a dead letter, a skipped tombstone, or absent from Kafka (compaction,
/// transaction markers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRecord {
    pub version: u32,
    pub topic: String,
    pub partition: i32,
    pub start: i64,
    /// Inclusive.
    pub end: i64,
    /// Kafka records read in the range.
    pub records: u64,
    /// Rows landed (sum over `files`).
    pub rows: u64,
    /// Tombstones (counted, not landed).
    pub skipped: u64,
    pub dead_letters: u64,
    pub files: Vec<FileEntry>,
    pub dead_letter_file: Option<String>,
    /// The writer instance: recognises our own record after a lost create response.
    pub writer: String,
    pub committed_at: String,
    /// How many records this one replaces: 0 for a record ingest wrote, more for a compaction
    /// record.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub compacts: u64,
    /// When a compaction record was created (`committed_at` keeps when its newest replaced
    /// record landed: freshness and `replay --from` read it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compacted_at: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl CommitRecord {
    /// When the record was committed (ms since the epoch), if its time parses.
    pub fn committed_at_ms(&self) -> Option<i64> {
        chrono::DateTime::parse_from_rfc3339(&self.committed_at)
            .ok()
            .map(|t| t.timestamp_millis())
    }

    /// When the record took its place in the chain (ms): a compaction record's creation, else
    /// its commit.
    pub fn placed_at_ms(&self) -> Option<i64> {
        match &self.compacted_at {
            Some(at) => chrono::DateTime::parse_from_rfc3339(at)
                .ok()
                .map(|t| t.timestamp_millis()),
            None => self.committed_at_ms(),
        }
    }

    /// Offsets inside the range that Kafka never delivered: legitimate on compacted topics
    /// and for transaction markers, a broker fault elsewhere. Flagged, never hidden.
    pub fn holes(&self) -> u64 {
        u64::try_from(self.end - self.start + 1)
            .unwrap_or(0)
            .saturating_sub(self.records)
    }
}

/// A file's checksum as commit records hold it: xxh3-64 of its bytes, in hex.
pub fn checksum(bytes: &[u8]) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(bytes))
}

/// What happened to a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    Committed,
    /// Another writer committed this start offset first: our files must be dropped.
    Fenced(Box<CommitRecord>),
}

#[derive(Debug, thiserror::Error)]
pub enum CommitLogError {
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("commit record {path} is not valid: {reason}")]
    Corrupt { path: String, reason: String },
    #[error(
        "commit record {path} has format version {found}, newer than this tidemark reads \
         ({FORMAT_VERSION}): upgrade tidemark (see the README's Upgrades section)"
    )]
    Newer { path: String, found: u32 },
}

/// The commit-record format this binary writes and the newest it reads. A reader refuses a
/// newer record rather than misreading the range it describes.
pub const FORMAT_VERSION: u32 = 1;

/// Creates the commit record; put-if-absent decides between competing writers.
pub async fn create(
    store: &dyn ObjectStore,
    root: &Path,
    record: &CommitRecord,
) -> Result<CommitOutcome, CommitLogError> {
    let path = layout::commit_record(root, &record.topic, record.partition, record.start);
    create_at(store, &path, record).await
}

/// Creates a compaction record (`record.compacts` > 0); put-if-absent decides between
/// compactors that chose the same start.
pub async fn create_compacted(
    store: &dyn ObjectStore,
    root: &Path,
    record: &CommitRecord,
) -> Result<CommitOutcome, CommitLogError> {
    let path = layout::compacted_record(root, &record.topic, record.partition, record.start);
    create_at(store, &path, record).await
}

async fn create_at(
    store: &dyn ObjectStore,
    path: &Path,
    record: &CommitRecord,
) -> Result<CommitOutcome, CommitLogError> {
    let path = path.clone();
    let body = serde_json::to_vec_pretty(record).expect("commit records serialize");
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    match store.put_opts(&path, PutPayload::from(body), opts).await {
        Ok(_) => Ok(CommitOutcome::Committed),
        Err(object_store::Error::AlreadyExists { .. }) => {
            let existing = read(store, &path).await?;
            // Our own earlier attempt whose response was lost counts as committed.
            if existing.writer == record.writer && existing.end == record.end {
                Ok(CommitOutcome::Committed)
            } else {
                Ok(CommitOutcome::Fenced(Box::new(existing)))
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Reads one commit record.
pub async fn read(store: &dyn ObjectStore, path: &Path) -> Result<CommitRecord, CommitLogError> {
    let bytes = store.get(path).await?.bytes().await?;
    parse(&bytes, path)
}

fn parse(bytes: &[u8], path: &Path) -> Result<CommitRecord, CommitLogError> {
    // The version first, so a newer record whose other fields changed says so.
    #[derive(Deserialize)]
    struct Versioned {
        version: u32,
    }
    let corrupt = |e: serde_json::Error| CommitLogError::Corrupt {
        path: path.to_string(),
        reason: e.to_string(),
    };
    let v: Versioned = serde_json::from_slice(bytes).map_err(corrupt)?;
    if v.version > FORMAT_VERSION {
        return Err(CommitLogError::Newer {
            path: path.to_string(),
            found: v.version,
        });
    }
    serde_json::from_slice(bytes).map_err(corrupt)
}

/// Start offsets of the commit records of a partition, sorted.
async fn starts(
    store: &dyn ObjectStore,
    root: &Path,
    topic: &str,
    partition: i32,
) -> Result<Vec<i64>, CommitLogError> {
    let dir = layout::log_dir(root, topic, partition);
    let metas: Vec<_> = store.list(Some(&dir)).try_collect().await?;
    let mut starts: Vec<i64> = metas
        .iter()
        .filter_map(|m| m.location.filename().and_then(layout::parse_commit_name))
        .collect();
    starts.sort_unstable();
    Ok(starts)
}

/// The next offset to land for a partition: the last record's end + 1, or `None` when nothing
/// was ever committed.
pub async fn next_offset(
    store: &dyn ObjectStore,
    root: &Path,
    topic: &str,
    partition: i32,
) -> Result<Option<i64>, CommitLogError> {
    Ok(last_record(store, root, topic, partition)
        .await?
        .map(|rec| rec.end + 1))
}

/// The newest commit record of a partition, if any.
pub async fn last_record(
    store: &dyn ObjectStore,
    root: &Path,
    topic: &str,
    partition: i32,
) -> Result<Option<CommitRecord>, CommitLogError> {
    Ok(find_last(store, root, topic, partition).await?.record)
}

/// How often (in commits of one partition) a writer refreshes the partition's end hint, and how
/// many record names a lookup may list past the hint before the writer refreshes it at once.
/// Finding the end of a chain then lists at most about this many names, however long the chain.
pub const HINT_EVERY: usize = 32;

/// The newest record of a partition, and how many record names were listed to find it.
#[derive(Debug, Clone)]
pub struct Last {
    pub record: Option<CommitRecord>,
    pub listed: usize,
}

/// Finds the newest record: from the end hint (`_last.json`, the start of a recent record) it
/// lists only the names after it. Without a hint, or when the hinted record is gone, it lists
/// the whole chain. The hint only saves listing: records are the truth, and a stale hint (an
/// older record) still finds the newest one.
pub async fn find_last(
    store: &dyn ObjectStore,
    root: &Path,
    topic: &str,
    partition: i32,
) -> Result<Last, CommitLogError> {
    if let Some(hinted) = read_hint(store, root, topic, partition).await? {
        let after = starts_after(store, root, topic, partition, Some(hinted)).await?;
        let last = after.last().copied().unwrap_or(hinted);
        match read(store, &layout::commit_record(root, topic, partition, last)).await {
            Ok(record) => {
                return Ok(Last {
                    record: Some(record),
                    listed: after.len(),
                });
            }
            Err(CommitLogError::Store(object_store::Error::NotFound { .. })) => {}
            Err(e) => return Err(e),
        }
    }
    let all = starts(store, root, topic, partition).await?;
    let record = match all.last() {
        Some(&last) => {
            Some(read(store, &layout::commit_record(root, topic, partition, last)).await?)
        }
        None => None,
    };
    Ok(Last {
        record,
        listed: all.len(),
    })
}

/// The end hint's body.
#[derive(Debug, Serialize, Deserialize)]
struct Hint {
    version: u32,
    /// Start offset of a committed record of the partition.
    start: i64,
}

async fn read_hint(
    store: &dyn ObjectStore,
    root: &Path,
    topic: &str,
    partition: i32,
) -> Result<Option<i64>, CommitLogError> {
    let path = layout::last_hint(root, topic, partition);
    let bytes = match store.get(&path).await {
        Ok(got) => got.bytes().await?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    // An unreadable hint (another format, a torn write on a store without atomic puts) is
    // ignored: the listing finds the end without it.
    Ok(serde_json::from_slice::<Hint>(&bytes)
        .ok()
        .filter(|h| h.version <= FORMAT_VERSION)
        .map(|h| h.start))
}

/// Points the partition's end hint at a committed record's start (an overwrite: only the
/// partition's writer calls it, after its record was created).
pub async fn write_hint(
    store: &dyn ObjectStore,
    root: &Path,
    topic: &str,
    partition: i32,
    start: i64,
) -> Result<(), CommitLogError> {
    let body = serde_json::to_vec(&Hint {
        version: FORMAT_VERSION,
        start,
    })
    .expect("hints serialize");
    store
        .put(
            &layout::last_hint(root, topic, partition),
            PutPayload::from(body),
        )
        .await?;
    Ok(())
}

/// Start offsets of the records after the one starting at `after` (every record for `None`),
/// sorted: lists only the names that sort after it.
pub async fn starts_after(
    store: &dyn ObjectStore,
    root: &Path,
    topic: &str,
    partition: i32,
    after: Option<i64>,
) -> Result<Vec<i64>, CommitLogError> {
    let Some(after) = after else {
        return starts(store, root, topic, partition).await;
    };
    let dir = layout::log_dir(root, topic, partition);
    let from = layout::commit_record(root, topic, partition, after);
    let metas: Vec<_> = store
        .list_with_offset(Some(&dir), &from)
        .try_collect()
        .await?;
    let mut starts: Vec<i64> = metas
        .iter()
        .filter_map(|m| m.location.filename().and_then(layout::parse_commit_name))
        .filter(|s| *s > after)
        .collect();
    starts.sort_unstable();
    Ok(starts)
}

/// The whole chain of a partition, checked.
#[derive(Debug, Clone, Default)]
pub struct Chain {
    pub records: Vec<CommitRecord>,
    /// `(expected start, found start)` where a record does not follow its predecessor.
    pub breaks: Vec<(i64, i64)>,
    /// Records a compaction record replaces (not in `records`): `(its start, the compaction
    /// record's start)`, for `gc`.
    pub superseded: Vec<(i64, i64)>,
}

impl Chain {
    pub fn next_offset(&self) -> Option<i64> {
        self.records.last().map(|r| r.end + 1)
    }

    pub fn first_offset(&self) -> Option<i64> {
        self.records.first().map(|r| r.start)
    }

    pub fn is_gap_free(&self) -> bool {
        self.breaks.is_empty()
    }
}

/// The chain of a partition as readers see it: compaction records in place of the records they
/// replace ([`resolve`]).
pub async fn read_chain(
    store: &dyn ObjectStore,
    root: &Path,
    topic: &str,
    partition: i32,
) -> Result<Chain, CommitLogError> {
    let compacted = read_compacted(store, root, topic, partition, None).await?;
    let plain = starts(store, root, topic, partition).await?;
    let resolved = resolve(&plain, &compacted);
    let mut chain = Chain {
        superseded: resolved.superseded,
        ..Chain::default()
    };
    let mut compacted = compacted.into_iter().peekable();
    for item in resolved.chain {
        let rec = match item {
            Resolved::Plain(start) => {
                read(store, &layout::commit_record(root, topic, partition, start)).await?
            }
            Resolved::Compacted(start) => loop {
                let c = compacted
                    .next()
                    .expect("resolve picks listed compaction records");
                if c.start == start {
                    break c;
                }
            },
        };
        if let Some(expected) = chain.next_offset()
            && rec.start != expected
        {
            chain.breaks.push((expected, rec.start));
        }
        chain.records.push(rec);
    }
    Ok(chain)
}

/// The compaction records of a partition starting after `after` (all for `None`), by start.
pub async fn read_compacted(
    store: &dyn ObjectStore,
    root: &Path,
    topic: &str,
    partition: i32,
    after: Option<i64>,
) -> Result<Vec<CommitRecord>, CommitLogError> {
    let dir = layout::compacted_dir(root, topic, partition);
    let metas: Vec<_> = match after {
        None => store.list(Some(&dir)).try_collect().await?,
        Some(a) => {
            let from = layout::compacted_record(root, topic, partition, a);
            store
                .list_with_offset(Some(&dir), &from)
                .try_collect()
                .await?
        }
    };
    let mut starts: Vec<i64> = metas
        .iter()
        .filter_map(|m| m.location.filename().and_then(layout::parse_commit_name))
        .filter(|s| after.is_none_or(|a| *s > a))
        .collect();
    starts.sort_unstable();
    let mut out = Vec::with_capacity(starts.len());
    for s in starts {
        out.push(read(store, &layout::compacted_record(root, topic, partition, s)).await?);
    }
    Ok(out)
}

/// One place in a resolved chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    /// A record ingest wrote, by start.
    Plain(i64),
    /// A compaction record, by start.
    Compacted(i64),
}

/// A partition's records resolved against its compaction records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolution {
    /// In start order.
    pub chain: Vec<Resolved>,
    /// `(plain start, compaction start)` for each record a compaction record replaces.
    pub superseded: Vec<(i64, i64)>,
}

/// Which records make the chain (pure): each compaction record replaces the records that start
/// inside its range. Compaction records do not overlap; if some did (two compactors with
/// different settings racing), the earliest start wins, then the longest range, and one starting
/// inside a chosen range is ignored, so every reader and `gc` decide alike.
pub fn resolve(plain: &[i64], compacted: &[CommitRecord]) -> Resolution {
    let mut ranges: Vec<(i64, i64)> = compacted.iter().map(|c| (c.start, c.end)).collect();
    ranges.sort_by_key(|&(s, e)| (s, std::cmp::Reverse(e)));
    let mut picked: Vec<(i64, i64)> = Vec::new();
    for (s, e) in ranges {
        if picked.last().is_none_or(|&(_, pe)| s > pe) {
            picked.push((s, e));
        }
    }
    let mut out = Resolution::default();
    let mut plain: Vec<i64> = plain.to_vec();
    plain.sort_unstable();
    let mut picked = picked.into_iter().peekable();
    // The last compaction range placed: plain records starting inside it are replaced.
    let mut current: Option<(i64, i64)> = None;
    for start in plain {
        while let Some(&(s, e)) = picked.peek()
            && s <= start
        {
            out.chain.push(Resolved::Compacted(s));
            current = Some((s, e));
            picked.next();
        }
        match current {
            Some((s, e)) if start <= e => out.superseded.push((start, s)),
            _ => out.chain.push(Resolved::Plain(start)),
        }
    }
    out.chain
        .extend(picked.map(|(s, _)| Resolved::Compacted(s)));
    out
}

/// Topic-partitions that have a commit log under the root. Lists directories only (two
/// delimiter listings), so it stays cheap however long the log grows.
pub async fn partitions(
    store: &dyn ObjectStore,
    root: &Path,
) -> Result<Vec<TopicPartition>, CommitLogError> {
    let log = root.child("_log");
    let mut out: Vec<TopicPartition> = Vec::new();
    for topic_dir in store.list_with_delimiter(Some(&log)).await?.common_prefixes {
        let Some(topic) = topic_dir.filename().map(layout::topic_of_dir) else {
            continue;
        };
        for part_dir in store
            .list_with_delimiter(Some(&topic_dir))
            .await?
            .common_prefixes
        {
            if let Some(p) = part_dir.filename().and_then(|p| p.parse().ok()) {
                out.push(TopicPartition::new(topic.clone(), p));
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: i64, end: i64) -> CommitRecord {
        crate::testing::record("t", 0, start, end, vec![])
    }

    /// A chain of `n` records of 10 offsets each.
    async fn chain(n: i64) -> (object_store::memory::InMemory, Path) {
        let store = object_store::memory::InMemory::new();
        let root = Path::from("bronze");
        for i in 0..n {
            create(&store, &root, &range(i * 10, i * 10 + 9))
                .await
                .unwrap();
        }
        (store, root)
    }

    #[tokio::test]
    async fn the_end_hint_lists_only_the_records_after_it() {
        let (store, root) = chain(200).await;
        let full = find_last(&store, &root, "t", 0).await.unwrap();
        assert_eq!(full.record.as_ref().map(|r| r.end), Some(1999));
        assert_eq!(full.listed, 200, "no hint: the whole chain is listed");

        write_hint(&store, &root, "t", 0, 1900).await.unwrap();
        let hinted = find_last(&store, &root, "t", 0).await.unwrap();
        assert_eq!(hinted.record, full.record);
        assert_eq!(hinted.listed, 9, "only the names after the hinted record");

        // A hint at the last record lists nothing more.
        write_hint(&store, &root, "t", 0, 1990).await.unwrap();
        assert_eq!(find_last(&store, &root, "t", 0).await.unwrap().listed, 0);
        assert_eq!(
            next_offset(&store, &root, "t", 0).await.unwrap(),
            Some(2000)
        );
    }

    #[tokio::test]
    async fn a_stale_missing_or_unreadable_hint_still_finds_the_end() {
        let (store, root) = chain(50).await;
        // Stale (an older record): still the newest.
        write_hint(&store, &root, "t", 0, 0).await.unwrap();
        assert_eq!(next_offset(&store, &root, "t", 0).await.unwrap(), Some(500));
        // The hinted record is gone (the bronze root was cleared and landed again): the whole
        // chain is listed.
        write_hint(&store, &root, "t", 0, 7000).await.unwrap();
        let last = find_last(&store, &root, "t", 0).await.unwrap();
        assert_eq!((last.record.map(|r| r.end), last.listed), (Some(499), 50));
        // Not a hint.
        store
            .put(
                &layout::last_hint(&root, "t", 0),
                PutPayload::from_static(b"{not json"),
            )
            .await
            .unwrap();
        assert_eq!(next_offset(&store, &root, "t", 0).await.unwrap(), Some(500));
        // The hint is not taken for a record by readers of the chain.
        let chain = read_chain(&store, &root, "t", 0).await.unwrap();
        assert_eq!((chain.records.len(), chain.is_gap_free()), (50, true));
    }

    fn record(version: u32) -> Vec<u8> {
        let r = CommitRecord {
            version,
            ..crate::testing::record("t", 0, 0, 9, vec![])
        };
        serde_json::to_vec(&r).unwrap()
    }

    #[test]
    fn a_record_of_a_newer_format_is_refused_not_misread() {
        let path = Path::from("_log/t/0/0.json");
        assert_eq!(parse(&record(FORMAT_VERSION), &path).unwrap().end, 9);
        // A newer writer may also have changed other fields: the version alone decides.
        let mut newer: serde_json::Value = serde_json::from_slice(&record(2)).unwrap();
        newer["files"] = serde_json::json!({"moved": true});
        let e = parse(newer.to_string().as_bytes(), &path).unwrap_err();
        assert!(matches!(e, CommitLogError::Newer { found: 2, .. }), "{e}");
        assert!(e.to_string().contains("upgrade tidemark"), "{e}");
    }

    #[test]
    fn compaction_records_replace_the_records_inside_their_range() {
        let c = |s, e| {
            let mut r = range(s, e);
            r.compacts = 2;
            r
        };
        let plain = [0, 10, 20, 30, 40, 50];
        let r = resolve(&plain, &[c(10, 29)]);
        use Resolved::*;
        assert_eq!(
            r.chain,
            vec![Plain(0), Compacted(10), Plain(30), Plain(40), Plain(50)]
        );
        assert_eq!(r.superseded, vec![(10, 10), (20, 10)]);
        // Replaced records already removed by gc: the compaction record still stands in.
        let r = resolve(&[0, 30], &[c(10, 29)]);
        assert_eq!(r.chain, vec![Plain(0), Compacted(10), Plain(30)]);
        // Overlapping compaction records (compactors racing with different settings): the
        // earliest, then the longest wins; one starting inside it is ignored.
        let r = resolve(&plain, &[c(10, 19), c(10, 39), c(20, 49)]);
        assert_eq!(r.chain, vec![Plain(0), Compacted(10), Plain(40), Plain(50)]);
    }
}
