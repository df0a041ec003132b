//! A table's next batch of bronze, read and decoded without touching the merger's state, so it
//! can run ahead: while one batch applies, the next one of a table that is behind is already
//! being read (the client decodes while the warehouse writes, instead of taking turns).
//!
//! A read-ahead is used only when it starts exactly where the ledger stands when its turn comes;
//! otherwise (another merger moved the table, the batch before it failed) it is dropped and the
//! batch read again. At most one read-ahead per table is in flight, so memory stays within one
//! extra batch per table that is behind.

use std::collections::BTreeMap;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::Path;
use tidemark_lake::commit_log::CommitRecord;

use crate::bronze_read::{FileChanges, ReadError, ReadOptions, read_file, records_from};

/// Commit records read per partition per batch; a partition with more is behind.
pub(crate) const RECORDS_PER_READ: usize = 256;

/// Where to read each partition of a topic from: the ledger's next offset (`None`: the start).
pub(crate) type Starts = Vec<(i32, Option<i64>)>;

/// What to read: a topic's partitions from their positions, up to a row budget.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub topic: String,
    pub starts: Starts,
    pub budget: usize,
    /// Commit records read per partition at most ([`RECORDS_PER_READ`] but for a cycle that
    /// reads more to take a large source transaction in).
    pub records: usize,
}

/// A table's bronze from the ledger positions, read and decoded.
#[derive(Debug, Default)]
pub(crate) struct Fetched {
    pub parts: Vec<PartRead>,
    /// Bronze goes on past what was read (the budget, the record limit or a problem).
    pub behind: bool,
}

/// One partition's part of a batch.
#[derive(Debug)]
pub(crate) struct PartRead {
    pub partition: i32,
    /// The ledger position read from.
    pub expected: Option<i64>,
    /// When the newest commit record read landed (ms).
    pub committed_at_ms: Option<i64>,
    /// The files of the records read, in order.
    pub files: Vec<PartFile>,
    /// The offset after the last record read whole.
    pub next: Option<i64>,
    /// Why this partition cannot be read on (the table stops).
    pub problem: Option<String>,
    /// The partition goes on past what was read.
    pub more: bool,
}

/// A file of a partition's batch.
#[derive(Debug)]
pub(crate) struct PartFile {
    pub path: String,
    /// When its commit record landed (ms).
    pub landed_ms: Option<i64>,
    pub changes: FileChanges,
}

impl PartRead {
    /// Changes read.
    pub(crate) fn len(&self) -> usize {
        self.files.iter().map(|f| f.changes.changes.len()).sum()
    }

    /// Keeps the first `n` changes read: the partition's batch ends before the next one (the
    /// ledger moves to its offset) and the rest is read again later. Returns how many were
    /// dropped.
    pub(crate) fn keep_first(&mut self, n: usize) -> usize {
        let mut left = n;
        let Some(file) = self.files.iter().position(|f| {
            let here = f.changes.changes.len();
            let stop = left < here;
            if !stop {
                left -= here;
            }
            stop
        }) else {
            return 0;
        };
        let dropped = self.len() - n;
        let offset = self.files[file].changes.changes[left].offset;
        self.files.truncate(file + 1);
        let fc = &mut self.files[file].changes;
        fc.changes.truncate(left);
        fc.mysql.retain(|(i, _)| *i < left);
        if left == 0 {
            self.files.pop();
        }
        self.next = (self.expected != Some(offset)).then_some(offset);
        self.more = true;
        dropped
    }
}

impl Fetched {
    /// Where the batch after this one starts.
    pub(crate) fn next_starts(&self, starts: &Starts) -> Starts {
        let next: BTreeMap<i32, i64> = self
            .parts
            .iter()
            .filter_map(|p| p.next.map(|n| (p.partition, n)))
            .collect();
        starts
            .iter()
            .map(|(p, at)| (*p, next.get(p).copied().or(*at)))
            .collect()
    }

    pub(crate) fn has_problem(&self) -> bool {
        self.parts.iter().any(|p| p.problem.is_some())
    }
}

/// Reads `req`: per partition, the commit records from its position and their files, each
/// partition up to an equal share of the budget, so the partitions of a table that is behind
/// advance together (its facts wait for the slowest, see [`crate::fact_hold`]). Store outages
/// are errors; unreadable data is a problem of its partition.
pub(crate) async fn fetch(
    store: &dyn ObjectStore,
    root: &Path,
    opts: &ReadOptions,
    req: &Request,
) -> Result<Fetched, ReadError> {
    let mut out = Fetched::default();
    let share = req.budget.max(1).div_ceil(req.starts.len().max(1));
    for &(p, expected) in &req.starts {
        if out.has_problem() {
            out.behind = true;
            break;
        }
        let part = read_partition(store, root, opts, (req, share), (p, expected)).await?;
        out.behind |= part.more;
        out.parts.push(part);
    }
    out.behind |= out.has_problem();
    Ok(out)
}

/// One partition from `expected`, up to `budget` rows.
async fn read_partition(
    store: &dyn ObjectStore,
    root: &Path,
    opts: &ReadOptions,
    (req, budget): (&Request, usize),
    (p, expected): (i32, Option<i64>),
) -> Result<PartRead, ReadError> {
    let topic = req.topic.as_str();
    let from = expected.unwrap_or(0);
    let part = PartRead {
        partition: p,
        expected,
        committed_at_ms: None,
        files: Vec::new(),
        next: None,
        problem: None,
        more: false,
    };
    let records = records_from(store, root, topic, p, from, req.records).await;
    let part = read_records(store, (req, budget), opts, part, records).await?;
    if !part.gone_file {
        return Ok(part.read);
    }
    // A file of the records read was removed meanwhile: `gc` collects the records a compaction
    // replaced. The chain as resolved now names the compacted file instead.
    let records = crate::bronze_read::from_whole_chain(store, root, (topic, p), from, req.records);
    // Missing again: a file really is gone, and the partition's problem says so.
    Ok(
        read_records(store, (req, budget), opts, part.read, records.await)
            .await?
            .read,
    )
}

/// A partition's read, and whether a file of it was missing.
struct Attempt {
    read: PartRead,
    gone_file: bool,
}

/// Reads the files of `records` into `part` (emptied first).
async fn read_records(
    store: &dyn ObjectStore,
    (req, budget): (&Request, usize),
    opts: &ReadOptions,
    mut part: PartRead,
    records: Result<Vec<CommitRecord>, ReadError>,
) -> Result<Attempt, ReadError> {
    let (topic, p, expected) = (req.topic.as_str(), part.partition, part.expected);
    let from = expected.unwrap_or(0);
    part.files.clear();
    (part.next, part.problem, part.more) = (None, None, false);
    let mut gone_file = false;
    let records = match records {
        Ok(r) => r,
        Err(e) if e.is_data() => {
            part.problem = Some(format!(
                "the commit log of {topic}/{p} cannot be read from offset {from}: {e}"
            ));
            part.more = true;
            return Ok(Attempt {
                read: part,
                gone_file,
            });
        }
        Err(e) => return Err(e),
    };
    if let Some(gap) = chain_gap(expected, &records) {
        part.problem = Some(format!(
            "offsets {}..={} of {topic}/{p} are in no commit record (a gap in bronze's chain; \
             `tidemark inspect bronze` shows it): the table's history would skip them",
            gap.0, gap.1
        ));
        part.more = true;
        return Ok(Attempt {
            read: part,
            gone_file,
        });
    }
    part.more = records.len() >= req.records;
    part.committed_at_ms = records.iter().filter_map(|r| r.committed_at_ms()).max();
    let mut rows = 0;
    'records: for rec in records {
        if rows >= budget {
            part.more = true;
            break;
        }
        for f in rec.files.iter().filter(|f| f.table == topic) {
            match read_file(store, &f.path, from, opts, Some(&f.checksum)).await {
                Ok(fc) => {
                    rows += fc.changes.len();
                    part.files.push(PartFile {
                        path: f.path.clone(),
                        landed_ms: rec.committed_at_ms(),
                        changes: fc,
                    });
                }
                Err(e) if e.is_data() => {
                    gone_file = matches!(e, ReadError::Store(object_store::Error::NotFound { .. }));
                    part.problem = Some(format!(
                        "offsets {}..={} of {topic}/{p}: {e}",
                        rec.start, rec.end
                    ));
                    part.more = true;
                    break 'records;
                }
                Err(e) => return Err(e),
            }
        }
        part.next = Some(rec.end + 1);
    }
    Ok(Attempt {
        read: part,
        gone_file,
    })
}

/// The first offsets after `from` that no record covers, if any.
pub(crate) fn chain_gap(from: Option<i64>, records: &[CommitRecord]) -> Option<(i64, i64)> {
    let mut expected = from.or_else(|| records.first().map(|r| r.start))?;
    for r in records {
        if r.start > expected {
            return Some((expected, r.start - 1));
        }
        expected = expected.max(r.end + 1);
    }
    None
}

/// Read-aheads in flight, one per topic at most.
#[derive(Debug, Default)]
pub(crate) struct ReadAheads {
    running: BTreeMap<String, (Starts, tokio::task::JoinHandle<Result<Fetched, ReadError>>)>,
    /// Topics whose read-ahead started since the last [`ReadAheads::keep_started`].
    started: std::collections::BTreeSet<String>,
}

impl ReadAheads {
    /// Starts reading `req` in the background, replacing the topic's read-ahead.
    pub(crate) fn start(
        &mut self,
        store: Arc<dyn ObjectStore>,
        root: Path,
        opts: ReadOptions,
        req: Request,
    ) {
        let topic = req.topic.clone();
        let starts = req.starts.clone();
        let task = tokio::spawn(async move { fetch(store.as_ref(), &root, &opts, &req).await });
        self.started.insert(topic.clone());
        if let Some((_, old)) = self.running.insert(topic, (starts, task)) {
            old.abort();
        }
    }

    /// The topic's read-ahead when it starts at `starts` and found something. Otherwise the
    /// batch is read again: a read-ahead from elsewhere is stale, one that failed may have met
    /// an outage since gone, and one that found nothing may have run before bronze grew (taken,
    /// it would make a cycle look idle while bronze holds more).
    pub(crate) async fn take(&mut self, topic: &str, starts: &Starts) -> Option<Fetched> {
        let (from, task) = self.running.remove(topic)?;
        if &from != starts {
            task.abort();
            return None;
        }
        match task.await {
            Ok(Ok(f)) if f.parts.iter().any(|p| p.next.is_some()) => Some(f),
            _ => None,
        }
    }

    /// Drops the read-aheads not started since the last call (their tables were not merged:
    /// stopped, or held by another merger).
    pub(crate) fn keep_started(&mut self) {
        let started = std::mem::take(&mut self.started);
        self.running.retain(|t, (_, task)| {
            let keep = started.contains(t);
            if !keep {
                task.abort();
            }
            keep
        });
    }
}

impl Drop for ReadAheads {
    fn drop(&mut self) {
        for (_, task) in self.running.values() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_read_ahead_that_found_nothing_or_starts_elsewhere_is_not_used() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let opts = ReadOptions {
            unavailable_placeholder: "__debezium_unavailable_value".into(),
        };
        let req = Request {
            topic: "t".into(),
            starts: vec![(0, Some(5))],
            budget: 10,
            records: RECORDS_PER_READ,
        };
        let mut ahead = ReadAheads::default();
        ahead.start(store.clone(), Path::from("b"), opts.clone(), req.clone());
        assert!(
            ahead.take("t", &req.starts).await.is_none(),
            "found nothing"
        );
        ahead.start(store, Path::from("b"), opts, req);
        assert!(
            ahead.take("t", &vec![(0, Some(6))]).await.is_none(),
            "elsewhere"
        );
        assert!(ahead.running.is_empty());
    }

    #[test]
    fn the_next_batch_starts_after_the_records_read() {
        let fetched = Fetched {
            parts: vec![PartRead {
                partition: 1,
                expected: Some(10),
                committed_at_ms: None,
                files: Vec::new(),
                next: Some(20),
                problem: None,
                more: true,
            }],
            behind: true,
        };
        let starts = vec![(0, Some(5)), (1, Some(10)), (2, None)];
        assert_eq!(
            fetched.next_starts(&starts),
            vec![(0, Some(5)), (1, Some(20)), (2, None)]
        );
    }
}
