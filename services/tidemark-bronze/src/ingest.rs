//! The ingest loop: consume, decode, buffer per partition, flush by the policy, commit.
//!
//! Positions: when a partition is (re)assigned, its next offset comes from the commit log, not
//! from Kafka. The first message of the partition tells where librdkafka started (Kafka's
//! committed offset, a hint); if that is not the commit log's next offset the loop seeks there
//! and ignores messages until it arrives.
//!
//! Rebalances: a revoked partition's buffered segment is abandoned (the new owner re-reads it
//! from the commit log's position); a zombie that still flushes is fenced by the commit record's
//! put-if-absent. Shutdown flushes every partition, commits offsets and leaves the group.
//!
//! Flushes run in the background (Arrow, Parquet and the store writes use the other core) while
//! the partition's next segment fills. At most one flush per partition is in flight: the next
//! one waits for it, so commit records are created in chain order, and a partition whose store
//! is down stops consuming once its next segment is due (back-pressure, nothing unbounded).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tidemark_core::metrics::labels::{DeadLetterReason, IngestFault, MemoryKind};

use futures::FutureExt as _;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use tidemark_core::event::{RawRecord, TopicPartition};

use crate::flush_end::{self, After, Ended};
use crate::position::{self, Position, Step};
use crate::relief::{self, Held, Relief};
use tidemark_core::metrics;
use tidemark_wire::decode::{Decoder, Disposition, panic_message};
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use crate::dead_letter::DeadLetter;
use crate::kafka::{IngestConsumer, RebalanceEvent};
use crate::segment::{FlushPolicy, RollReason, Segment};
use crate::writer::{BronzeWriter, FlushError, Flushed, OpenFile, STREAM_PART_BYTES, StreamTarget};

/// Tuning of the loop.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    pub policy: FlushPolicy,
    /// Above this many buffered bytes (all partitions) the largest segment is flushed early.
    pub max_buffered_bytes: u64,
    /// What the whole process may take (see [`MEMORY_RESERVE`]); `None`: no bound but
    /// `max_buffered_bytes`.
    pub memory_budget: Option<u64>,
    /// Longest pause between retries of a failing flush.
    pub max_backoff: Duration,
    /// How long shutdown may spend flushing before it abandons what is left.
    pub drain_timeout: Duration,
    /// Counts records taken into segments (progress displays and benchmarks).
    pub progress: Option<Arc<AtomicU64>>,
    /// A segment that reaches its share of the memory budget streams its change events into
    /// its file (a multipart upload) instead of rolling, so files grow to `max_records` /
    /// `max_bytes` at bounded memory.
    pub stream_files: bool,
}

impl IngestSettings {
    pub fn new(policy: FlushPolicy) -> IngestSettings {
        IngestSettings {
            policy,
            max_buffered_bytes: policy.max_bytes.saturating_mul(4).max(64 << 20),
            memory_budget: None,
            max_backoff: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(30),
            progress: None,
            stream_files: true,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestStats {
    pub records: u64,
    /// Key and value bytes of the records read.
    pub bytes: u64,
    pub commits: u64,
    pub fenced: u64,
    pub dead_letters: u64,
    pub abandoned_segments: u64,
    /// Flush attempts that failed and were retried (object store unreachable).
    pub flush_retries: u64,
    /// When the first record arrived (after the group join), for throughput figures.
    pub first_record_at: Option<Instant>,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("flush failed permanently: {0}")]
    Flush(FlushError),
    #[error("a flush task failed: {0}")]
    Task(String),
    #[error("{0}")]
    Fatal(String),
}

/// Of the memory budget, what is not for segments: librdkafka's prefetch (bounded from the
/// budget by `service::consumer`), the runtime, the code. Segments and flushes get the rest.
pub const MEMORY_RESERVE: u64 = 96 << 20;

/// Memory a buffered byte takes (the decoded event: its values and their allocations), and a
/// flushing one (the segment, its Arrow batch, the Parquet bytes), as multiples of the bytes
/// counted: measured with the ingest benchmark, and checked against the process's RSS.
const SEGMENT_COST: u64 = 3;
const FLUSH_COST: u64 = 4;

/// Every this many records the loop compares the process's RSS with the budget.
const RSS_EVERY: u64 = 1024;

/// Shutdown was asked for while a retry waited: the record is left for the next run.
struct Stopping;

/// How long past its give-up time a flush may take to end and be recorded.
const GIVE_UP_GRACE: Duration = Duration::from_millis(500);

/// Longer than this without a turn of the consume loop (stuck retrying the store, waiting on a
/// flush) and `/readyz` says so.
const STALE_AFTER: Duration = Duration::from_secs(120);

/// Completes once shutdown is asked for (the guard `wait_for` returns is dropped at once: the
/// futures awaiting this stay `Send`).
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

struct Part {
    seg: Segment,
    pos: Position,
    /// The previous segment, being written.
    inflight: Option<Inflight>,
    /// The segment's change file, being streamed.
    stream: Option<Stream>,
}

/// A segment's change file being streamed: the task ends with the file open after every spill
/// so far (a partition's spills run one after the other, each awaiting the one before).
struct Stream {
    /// `None` once handed to the flush that completes the file.
    task: Option<JoinHandle<Result<OpenFile, FlushError>>>,
    /// Bytes handed to spills that may still be encoding.
    bytes: u64,
    writer: BronzeWriter,
}

/// What an open streamed file may take beyond the events being encoded: the parts being sent
/// and the one filling.
const STREAM_COST: u64 = 3 * STREAM_PART_BYTES as u64;

impl Stream {
    fn cost(&self) -> u64 {
        let encoding = if self.is_finished() { 0 } else { self.bytes };
        STREAM_COST + encoding.saturating_mul(FLUSH_COST)
    }

    fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }

    fn into_task(mut self) -> Option<JoinHandle<Result<OpenFile, FlushError>>> {
        self.task.take()
    }
}

/// A stream dropped before its flush (the partition revoked, fenced or read again) gives its
/// upload up once its last spill ends.
impl Drop for Stream {
    fn drop(&mut self) {
        let (Some(task), Ok(rt)) = (self.task.take(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        let writer = self.writer.clone();
        rt.spawn(async move {
            if let Ok(Ok(open)) = task.await {
                writer.abandon(open).await;
            }
        });
    }
}

impl Part {
    /// What the partition holds, for [`relief::next`].
    fn held(&self) -> Held {
        Held {
            segment: (!self.seg.is_empty()).then_some(self.seg.bytes),
            flushing: self.inflight.as_ref().map(|f| f.bytes),
        }
    }

    /// The bytes counted of the partition's segment and its flush in flight.
    fn bytes(&self) -> u64 {
        self.seg.bytes + self.inflight.as_ref().map_or(0, |f| f.bytes)
    }

    /// What the partition's segment and its flush in flight take in memory (estimated).
    fn cost(&self) -> u64 {
        self.seg.bytes.saturating_mul(SEGMENT_COST)
            + self.inflight.as_ref().map_or(0, Inflight::cost)
            + self.stream.as_ref().map_or(0, Stream::cost)
    }
}

/// A flush running in the background.
struct Inflight {
    bytes: u64,
    handle: JoinHandle<FlushDone>,
    /// Set when the flush's work is done (the task is returning), before the loop is signalled.
    ended: Arc<AtomicBool>,
}

impl Inflight {
    fn cost(&self) -> u64 {
        self.bytes.saturating_mul(FLUSH_COST)
    }

    /// Whether awaiting the task takes no more than its return.
    fn is_done(&self) -> bool {
        self.handle.is_finished() || self.ended.load(Ordering::Acquire)
    }
}

/// How a background flush ended, with what the loop records about it.
struct FlushDone {
    outcome: Result<Flushed, FlushError>,
    /// The drain timeout passed while the store was failing: the range will be re-read.
    abandoned: bool,
    /// The segment's streamed file failed: its events are gone from memory, so the partition
    /// reads the range again from the commit log's position.
    restart: bool,
    retries: u64,
    landed: Vec<(&'static str, u64)>,
    dead_letters: Vec<(DeadLetterReason, u64)>,
    took: Duration,
}

impl FlushDone {
    fn ended(&self) -> Ended {
        match &self.outcome {
            Ok(Flushed::Committed(rec)) => Ended::Committed { end: rec.end },
            Ok(Flushed::Fenced { .. }) => Ended::Fenced,
            Err(_) if self.restart => Ended::StreamFailed,
            Err(_) if self.abandoned => Ended::Abandoned,
            Err(_) => Ended::Failed,
        }
    }
}

type Key = TopicPartition;

struct Loop<'a> {
    consumer: &'a IngestConsumer,
    decoder: Decoder,
    writer: BronzeWriter,
    settings: IngestSettings,
    parts: HashMap<Key, Part>,
    stats: IngestStats,
    /// Consumed-record counters per topic (resolved once).
    consumed: HashMap<String, metrics::Consumed>,
    /// Flushes of partitions this loop no longer holds (revoked or re-assigned).
    detached: Vec<(Key, Inflight)>,
    /// Signalled when a background flush ends, so an idle loop records it promptly.
    flush_ended: Arc<tokio::sync::Notify>,
    /// Flushes ended since the last look: the per-record check is one atomic load, not a scan.
    ended_since: Arc<AtomicUsize>,
    /// True once shutdown is asked for: every retry loop gives up its wait.
    stop: tokio::sync::watch::Receiver<bool>,
    /// When flushes in flight give up (set by the drain): a flush retrying a failing store, or
    /// waiting on one, ends by then instead of outliving the runtime.
    give_up: tokio::sync::watch::Sender<Option<Instant>>,
    /// Records until the next comparison of the RSS with the memory budget.
    until_rss: u64,
    /// The budget was found too small for ingest at rest (warned once).
    warned_budget: bool,
}

impl Loop<'_> {
    fn apply_rebalances(&mut self) {
        for ev in self.consumer.context().take_events() {
            match ev {
                RebalanceEvent::Revoked(list) => {
                    for key in list {
                        if let Some(mut p) = self.parts.remove(&key) {
                            if !p.seg.is_empty() {
                                tracing::info!(topic = %key.topic, partition = key.partition, records = p.seg.records, "abandoning the buffer of a revoked partition");
                                self.stats.abandoned_segments += 1;
                            }
                            if let Some(f) = p.inflight.take() {
                                self.detached.push((key, f));
                            }
                        }
                    }
                }
                RebalanceEvent::Assigned(list) => {
                    for key in list {
                        if let Some(f) = self.parts.remove(&key).and_then(|mut p| p.inflight.take())
                        {
                            self.detached.push((key, f));
                        }
                    }
                }
            }
        }
    }

    /// Waits `d`, or less when shutdown is asked for meanwhile (then `Err`).
    async fn pause(&self, d: Duration) -> Result<(), Stopping> {
        let mut stop = self.stop.clone();
        tokio::select! {
            () = tokio::time::sleep(d) => {}
            () = stopped(&mut stop) => {}
        }
        if *self.stop.borrow() {
            Err(Stopping)
        } else {
            Ok(())
        }
    }

    /// Where the commit log says `key` continues; retries while the store is unreachable.
    async fn resolve(&mut self, topic: &str, partition: i32) -> Result<Option<i64>, Stopping> {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.writer.next_offset(topic, partition).await {
                Ok(next) => {
                    metrics::topic_seen(topic);
                    metrics::partition_position(topic, partition, next.unwrap_or(0));
                    return Ok(next);
                }
                Err(e) => {
                    tracing::warn!(topic, partition, error = %e, "cannot read the commit log, retrying");
                    metrics::ingest_error(IngestFault::ObjectStore);
                    self.pause(backoff).await?;
                    backoff = (backoff * 2).min(self.settings.max_backoff);
                }
            }
        }
    }

    async fn handle(&mut self, msg: OwnedMessage) -> Result<(), IngestError> {
        let (topic, partition, offset) = (msg.topic().to_owned(), msg.partition(), msg.offset());
        let key = TopicPartition::new(topic.clone(), partition);
        if !self.parts.contains_key(&key) {
            self.parts.insert(
                key.clone(),
                Part {
                    seg: Segment::new(&topic, partition, offset),
                    pos: Position::Unresolved,
                    inflight: None,
                    stream: None,
                },
            );
        }
        let part = &self.parts[&key];
        let (pos, buffered_next) = (part.pos, part.seg.end.map_or(part.seg.start, |e| e + 1));
        let log_next = if pos == Position::Unresolved {
            // Our own earlier flush of this partition lands before the commit log is read.
            self.settle_detached(Some(&key)).await?;
            match self.resolve(&topic, partition).await {
                Ok(next) => next,
                // Asked to stop while the store was down: nothing of it is taken.
                Err(Stopping) => return Ok(()),
            }
        } else {
            None
        };
        let (pos_after, step) = position::step(pos, offset, log_next, buffered_next);
        let part = self.parts.get_mut(&key).expect("present");
        part.pos = pos_after;
        let ready = match step {
            Step::Skip => false,
            Step::Seek(next) => {
                tracing::info!(
                    topic,
                    partition,
                    kafka = offset,
                    commit_log = next,
                    "seeking to the commit log position"
                );
                part.seg = Segment::new(&topic, partition, next);
                self.consumer.seek(
                    &topic,
                    partition,
                    Offset::Offset(next),
                    Duration::from_secs(10),
                )?;
                false
            }
            Step::Take { new_segment_at } => {
                if let Some(start) = new_segment_at {
                    part.seg = Segment::new(&topic, partition, start);
                }
                if let Position::Seeking(next) = pos
                    && offset > next
                {
                    tracing::warn!(
                        topic,
                        partition,
                        seek_target = next,
                        first_offset = offset,
                        "the first message after a seek is past its target: offsets in between were not delivered (expected on compacted or transactional topics)"
                    );
                }
                true
            }
        };
        if !ready {
            return Ok(());
        }
        self.stats.records += 1;
        self.stats.first_record_at.get_or_insert_with(Instant::now);
        if let Some(p) = &self.settings.progress {
            p.fetch_add(1, Ordering::Relaxed);
        }
        let raw = RawRecord {
            topic: &topic,
            partition,
            offset,
            timestamp_ms: msg.timestamp().to_millis(),
            key: msg.key(),
            value: msg.payload(),
        };
        let size = raw.key.map_or(0, <[u8]>::len) + raw.value.map_or(0, <[u8]>::len);
        self.stats.bytes += size as u64;
        match self.consumed.get(topic.as_str()) {
            Some(c) => c.record(size),
            None => {
                let c = metrics::Consumed::for_topic(&topic);
                c.record(size);
                self.consumed.insert(topic.clone(), c);
            }
        }
        let mut backoff = Duration::from_millis(100);
        let decoded = loop {
            match self.decoder.decode(&raw).await {
                Err(e) if e.disposition() == Disposition::Fatal => {
                    metrics::ingest_error(IngestFault::SchemaRegistry);
                    return Err(IngestError::Fatal(e.to_string()));
                }
                Err(e) if e.disposition() == Disposition::Retry => {
                    tracing::warn!(topic, partition, offset, error = %e, "decode needs the schema registry, retrying");
                    metrics::ingest_error(IngestFault::SchemaRegistry);
                    if self.pause(backoff).await.is_err() {
                        // The record is not taken: the next run reads it again.
                        self.stats.records -= 1;
                        return Ok(());
                    }
                    backoff = (backoff * 2).min(self.settings.max_backoff);
                }
                other => break other,
            }
        };
        match decoded {
            Ok(d) => {
                if let Some(reason) = self.parts[&key].seg.must_roll_before(&d) {
                    self.flush(&key, reason).await?;
                }
                // Budgets count what the record becomes, not only its raw size.
                let held = size.max(d.landed_bytes());
                self.parts.get_mut(&key).expect("present").seg.push(d, held);
            }
            Err(e) => {
                tracing::debug!(topic, partition, offset, error = %e, "dead letter");
                self.stats.dead_letters += 1;
                let dl = DeadLetter::new(&e, raw.key, raw.value);
                self.parts
                    .get_mut(&key)
                    .expect("present")
                    .seg
                    .push_dead_letter(dl, size);
            }
        }
        if let Some(reason) = self.parts[&key]
            .seg
            .due(&self.settings.policy, Instant::now())
        {
            self.flush(&key, reason).await?;
        }
        self.relieve_pressure(&key).await
    }

    /// Keeps buffering within its bounds after a record of `key` was taken.
    async fn relieve_pressure(&mut self, key: &Key) -> Result<(), IngestError> {
        while self.parts.values().map(Part::bytes).sum::<u64>() > self.settings.max_buffered_bytes {
            let key = self
                .parts
                .iter()
                .max_by_key(|(_, p)| p.bytes())
                .map(|(k, _)| k.clone())
                .expect("some part holds bytes");
            self.flush(&key, RollReason::Bytes).await?;
        }
        let Some(budget) = self.settings.memory_budget else {
            return Ok(());
        };
        let limit = budget.saturating_sub(MEMORY_RESERVE);
        // A segment is written before its flush alone would take a quarter of what segments
        // get: flushes of large segments are what overshoots. Only `key`'s segment grew.
        let cap = limit / (4 * FLUSH_COST);
        if self
            .parts
            .get(key)
            .is_some_and(|p| p.seg.bytes > cap && p.inflight.is_none())
        {
            if self.may_stream(key, limit) {
                self.spill(key);
            } else {
                self.flush(key, RollReason::Memory).await?;
            }
        }
        while self.held_memory() > limit {
            if !self.free_some().await? {
                break;
            }
        }
        self.until_rss = self.until_rss.saturating_sub(1);
        if self.until_rss == 0 {
            self.until_rss = RSS_EVERY;
            self.check_resident(budget).await?;
        }
        Ok(())
    }

    /// Whether `key`'s segment, at its share of the budget, may stream its change events into
    /// its file instead of rolling: it is not due by policy, and the budget has room for one
    /// more open file.
    fn may_stream(&self, key: &Key, limit: u64) -> bool {
        let Some(p) = self.parts.get(key) else {
            return false;
        };
        self.settings.stream_files
            && !p.seg.changes.is_empty()
            && p.seg.due(&self.settings.policy, Instant::now()).is_none()
            && (p.stream.is_some() || self.held_memory() + STREAM_COST <= limit)
    }

    /// Hands the segment's change events to its streamed file (opened by the first spill), in
    /// the background, after the partition's previous spill.
    fn spill(&mut self, key: &Key) {
        let p = self.parts.get_mut(key).expect("present");
        let target = StreamTarget {
            topic: key.topic.clone(),
            partition: key.partition,
            start: p.seg.start,
            date: p.seg.date.unwrap_or_default(),
        };
        let before = p.seg.bytes;
        let (events, shape) = p.seg.take_changes();
        let moved = before - p.seg.bytes;
        let shape = shape.expect("a segment with change events has a shape");
        let (prev, pending) = match p.stream.take() {
            Some(s) => {
                let pending = if s.is_finished() { 0 } else { s.bytes };
                (s.into_task(), pending)
            }
            None => (None, 0),
        };
        let writer = self.writer.clone();
        let work = async move {
            let mut open = match prev {
                Some(task) => task.await.map_err(|e| FlushError::Panic(e.to_string()))??,
                None => writer.open_file(&target, &shape).await?,
            };
            if let Err(e) = writer.append(&mut open, &events, &shape).await {
                writer.abandon(open).await;
                return Err(e);
            }
            Ok(open)
        };
        let rt = tokio::runtime::Handle::current();
        let task = tokio::task::spawn_blocking(move || rt.block_on(work));
        p.stream = Some(Stream {
            task: Some(task),
            bytes: pending + moved,
            writer: self.writer.clone(),
        });
    }

    /// The estimated memory of every segment and flush in flight.
    fn held_memory(&self) -> u64 {
        let detached: u64 = self.detached.iter().map(|(_, f)| f.cost()).sum();
        self.parts.values().map(Part::cost).sum::<u64>() + detached
    }

    /// One step towards less memory: a flush takes more than the segment it writes until it
    /// ends, so the largest flush in flight is waited for first; with none, the largest segment
    /// starts flushing. Returns false when nothing is held.
    async fn free_some(&mut self) -> Result<bool, IngestError> {
        let held = self.parts.iter().map(|(k, p)| (k, p.held()));
        match relief::next(held, !self.detached.is_empty()) {
            Relief::AwaitFlush(key) => self.settle(&key).await?,
            Relief::AwaitDetached => self.settle_detached(None).await?,
            Relief::Flush(key) => self.flush(&key, RollReason::Memory).await?,
            Relief::Nothing => return Ok(false),
        }
        Ok(true)
    }

    /// The backstop of the estimate: over budget, the allocator returns what it keeps of freed
    /// memory; still over, segments are written and flushes waited for (no consuming meanwhile)
    /// until the process is within budget or holds nothing.
    async fn check_resident(&mut self, budget: u64) -> Result<(), IngestError> {
        let held = self.held_memory();
        metrics::ingest_memory(MemoryKind::Held, held);
        let Some(mut rss) = tidemark_core::allocator::resident_bytes() else {
            return Ok(());
        };
        if rss > budget {
            tidemark_core::allocator::release();
            rss = tidemark_core::allocator::resident_bytes().unwrap_or(rss);
        }
        while rss > budget {
            if !self.free_some().await? {
                if !self.warned_budget {
                    self.warned_budget = true;
                    tracing::warn!(
                        resident_mib = rss >> 20,
                        budget_mib = budget >> 20,
                        "ingest holds nothing buffered and is still over bronze.memory_budget_bytes: raise the budget"
                    );
                }
                break;
            }
            tidemark_core::allocator::release();
            rss = tidemark_core::allocator::resident_bytes().unwrap_or(0);
        }
        metrics::ingest_memory(MemoryKind::Resident, rss);
        Ok(())
    }

    /// Starts flushing one partition's segment in the background (after its previous flush
    /// has ended); store failures are retried with backoff until `give_up_at`.
    async fn flush_until(
        &mut self,
        key: &Key,
        reason: RollReason,
        give_up_at: Option<Instant>,
    ) -> Result<(), IngestError> {
        self.settle_until(key, give_up_at).await?;
        let Some(part) = self.parts.get_mut(key) else {
            return Ok(());
        };
        if part.seg.is_empty() {
            return Ok(());
        }
        let next = part.seg.successor();
        let seg = std::mem::replace(&mut part.seg, next);
        let span = tracing::info_span!("flush", topic = %key.topic, partition = key.partition, start = seg.start, reason = reason.as_str());
        let bytes = seg.bytes;
        let writer = self.writer.clone();
        let max_backoff = self.settings.max_backoff;
        // On a blocking-pool thread: a task spawned from this busy loop would wait in the
        // worker's LIFO slot until the loop yields, and the flush would not overlap consuming.
        let rt = tokio::runtime::Handle::current();
        if give_up_at.is_some() {
            self.give_up.send_replace(give_up_at);
        }
        let stream = part.stream.take().and_then(Stream::into_task);
        let work = write_segment(writer, seg, stream, self.give_up.subscribe(), max_backoff)
            .instrument(span);
        let signal = self.flush_ended.clone();
        let count = self.ended_since.clone();
        let ended = Arc::new(AtomicBool::new(false));
        let flag = ended.clone();
        let handle = tokio::task::spawn_blocking(move || {
            let done = rt.block_on(work);
            flag.store(true, Ordering::Release);
            count.fetch_add(1, Ordering::Release);
            signal.notify_one();
            done
        });
        part.inflight = Some(Inflight {
            bytes,
            handle,
            ended,
        });
        Ok(())
    }

    /// Waits for the partition's flush in flight, if any, and records how it ended.
    async fn settle(&mut self, key: &Key) -> Result<(), IngestError> {
        self.settle_until(key, None).await
    }

    /// [`Loop::settle`], but past `give_up_at` the flush is given up: its range is left to be
    /// re-read (a flush that still completes later is safe: the commit record is one atomic
    /// create, and the next owner is fenced or continues after it).
    async fn settle_until(
        &mut self,
        key: &Key,
        give_up_at: Option<Instant>,
    ) -> Result<(), IngestError> {
        let Some(mut f) = self.parts.get_mut(key).and_then(|p| p.inflight.take()) else {
            return Ok(());
        };
        let joined = match give_up_at {
            None => (&mut f.handle).await,
            Some(t) => {
                // The flush gives up by `t` itself; a moment more lets its retries be counted.
                let t = tokio::time::Instant::from_std(t) + GIVE_UP_GRACE;
                match tokio::time::timeout_at(t, &mut f.handle).await {
                    Ok(r) => r,
                    Err(_) => {
                        f.handle.abort();
                        tracing::warn!(topic = %key.topic, partition = key.partition, "drain timeout: abandoning a flush in flight (its range will be re-read)");
                        self.stats.abandoned_segments += 1;
                        return Ok(());
                    }
                }
            }
        };
        let done = joined.map_err(|e| IngestError::Task(e.to_string()))?;
        self.record(key, done, true)
    }

    /// Records flushes that have ended, without waiting for the others.
    async fn settle_finished(&mut self) -> Result<(), IngestError> {
        if self.ended_since.swap(0, Ordering::Acquire) == 0 {
            return Ok(());
        }
        let done: Vec<Key> = self
            .parts
            .iter()
            .filter(|(_, p)| p.inflight.as_ref().is_some_and(Inflight::is_done))
            .map(|(k, _)| k.clone())
            .collect();
        for key in done {
            self.settle(&key).await?;
        }
        if self.detached.iter().any(|(_, f)| f.is_done()) {
            self.settle_detached(None).await?;
        }
        Ok(())
    }

    /// Records flushes of partitions no longer held: those of `key` (waiting for them), or
    /// every finished one.
    async fn settle_detached(&mut self, key: Option<&Key>) -> Result<(), IngestError> {
        let mut keep = Vec::new();
        for (k, f) in std::mem::take(&mut self.detached) {
            if key.is_some_and(|want| *want == k) || (key.is_none() && f.is_done()) {
                let done = f
                    .handle
                    .await
                    .map_err(|e| IngestError::Task(e.to_string()))?;
                self.record(&k, done, false)?;
            } else {
                keep.push((k, f));
            }
        }
        self.detached.extend(keep);
        Ok(())
    }

    /// Stats, metrics and the Kafka offset commit (`owned`: the partition is still ours) of an
    /// ended flush; what to do is [`flush_end::after`]'s answer.
    fn record(&mut self, key: &Key, done: FlushDone, owned: bool) -> Result<(), IngestError> {
        self.stats.flush_retries += done.retries;
        let ended = done.ended();
        match &done.outcome {
            Ok(Flushed::Committed(rec)) => {
                tracing::debug!(topic = %key.topic, partition = key.partition, end = rec.end, rows = rec.rows, "committed");
                self.stats.commits += 1;
                let holes = rec.holes();
                if holes > 0 {
                    tracing::warn!(topic = %key.topic, partition = key.partition, start = rec.start, end = rec.end, holes,
                        "offsets in this committed range were never delivered by Kafka (expected on compacted or transactional topics)");
                    metrics::offset_holes(&key.topic, holes);
                }
                metrics::range_committed(&metrics::RangeCommitted {
                    topic: &key.topic,
                    partition: key.partition,
                    next_offset: rec.end + 1,
                    files: rec.files.len() as u64,
                    bytes: rec.files.iter().map(|f| f.bytes).sum(),
                    landed: done.landed,
                    dead_letters: done.dead_letters,
                    took: done.took,
                });
            }
            Ok(Flushed::Fenced { winner }) => {
                tracing::warn!(topic = %key.topic, partition = key.partition, winner = %winner.writer, end = winner.end, "another writer committed this range; re-reading the commit log");
                self.stats.fenced += 1;
                metrics::range_fenced(&key.topic);
            }
            Err(e) if done.restart => {
                tracing::warn!(topic = %key.topic, partition = key.partition, error = %e, "a streamed file failed; the partition reads its range again from the commit log");
                metrics::ingest_error(IngestFault::ObjectStore);
                self.stats.abandoned_segments += 1;
            }
            Err(e) if done.abandoned => {
                tracing::warn!(topic = %key.topic, partition = key.partition, error = %e, "drain timeout: abandoning the segment (it will be re-read)");
                self.stats.abandoned_segments += 1;
            }
            Err(_) => {}
        }
        match flush_end::after(ended, owned) {
            After::CommitOffset(next) => {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(&key.topic, key.partition, Offset::Offset(next))?;
                if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
                    tracing::debug!(error = %e, "kafka offset commit not sent");
                }
            }
            After::Reread => {
                // What was buffered after the range is re-read from the log's new position.
                self.parts.remove(key);
            }
            After::Nothing => {}
            After::Fail => {
                let Err(e) = done.outcome else {
                    unreachable!("only an error fails")
                };
                return Err(IngestError::Flush(e));
            }
        }
        Ok(())
    }

    async fn flush(&mut self, key: &Key, reason: RollReason) -> Result<(), IngestError> {
        self.flush_until(key, reason, None).await
    }

    async fn flush_aged(&mut self) -> Result<(), IngestError> {
        let now = Instant::now();
        let due: Vec<Key> = self
            .parts
            .iter()
            .filter(|(_, p)| p.seg.due(&self.settings.policy, now).is_some())
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.flush(&key, RollReason::Age).await?;
        }
        Ok(())
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.parts
            .values()
            .filter_map(|p| p.seg.deadline(&self.settings.policy))
            .min()
    }

    async fn drain(&mut self) -> Result<(), IngestError> {
        let give_up = Instant::now() + self.settings.drain_timeout;
        self.give_up.send_replace(Some(give_up));
        let keys: Vec<Key> = self.parts.keys().cloned().collect();
        let limit = self
            .settings
            .memory_budget
            .map(|b| b.saturating_sub(MEMORY_RESERVE));
        for key in &keys {
            self.flush_until(key, RollReason::Drain, Some(give_up))
                .await?;
            // Under a budget the drain's flushes run a few at a time, not all at once.
            while limit.is_some_and(|l| self.held_memory() > l) {
                let held = self.parts.iter().map(|(k, p)| (k, p.held()));
                let Some(flushing) = relief::largest_flush(held) else {
                    break;
                };
                self.settle_until(&flushing, Some(give_up)).await?;
            }
        }
        for key in &keys {
            self.settle_until(key, Some(give_up)).await?;
        }
        for (key, mut f) in std::mem::take(&mut self.detached) {
            let deadline = tokio::time::Instant::from_std(give_up) + GIVE_UP_GRACE;
            match tokio::time::timeout_at(deadline, &mut f.handle).await {
                Ok(joined) => {
                    let done = joined.map_err(|e| IngestError::Task(e.to_string()))?;
                    self.record(&key, done, false)?;
                }
                // Not ours any more: the new owner re-reads whatever this did not commit.
                Err(_) => f.handle.abort(),
            }
        }
        Ok(())
    }
}

/// Consumes until `shutdown` completes, then flushes, commits and leaves the group.
pub async fn run(
    consumer: IngestConsumer,
    decoder: Decoder,
    writer: BronzeWriter,
    settings: IngestSettings,
    shutdown: impl Future<Output = ()>,
) -> Result<IngestStats, IngestError> {
    // Shutdown is watched beside the loop, so retry waits inside a record see it too.
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let watcher = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    let main = consume(consumer, decoder, writer, settings, stop);
    tokio::pin!(main, watcher);
    match futures::future::select(main, watcher).await {
        futures::future::Either::Left((Err(e), watcher)) if e.is_stuck() => {
            // Restarting would meet the same records and fail the same way (a crash loop that
            // looks alive): stay up, unhealthy with the cause, until an operator stops us.
            tidemark_core::health::broken(format!("ingest: {e}"));
            watcher.await;
            Err(e)
        }
        futures::future::Either::Left((done, _)) => done,
        futures::future::Either::Right(((), main)) => main.await,
    }
}

impl IngestError {
    /// An error that a restart meets again (the same records re-read).
    fn is_stuck(&self) -> bool {
        matches!(self, IngestError::Flush(_) | IngestError::Task(_))
    }
}

/// The loop of [`run`], until `stop` turns true.
async fn consume(
    consumer: IngestConsumer,
    decoder: Decoder,
    writer: BronzeWriter,
    settings: IngestSettings,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<IngestStats, IngestError> {
    let mut stop_seen = stop.clone();
    let mut lp = Loop {
        consumer: &consumer,
        decoder,
        writer,
        settings,
        parts: HashMap::new(),
        stats: IngestStats::default(),
        consumed: HashMap::new(),
        detached: Vec::new(),
        flush_ended: Default::default(),
        ended_since: Default::default(),
        stop,
        give_up: tokio::sync::watch::channel(None).0,
        until_rss: RSS_EVERY,
        warned_budget: false,
    };
    if let Some(b) = lp.settings.memory_budget {
        metrics::ingest_memory(MemoryKind::Budget, b);
    }
    let beat = tidemark_core::health::beat("ingest", STALE_AFTER);
    loop {
        beat.ok();
        // Also wake when idle, so a quiet topic is not taken for a wedged loop.
        let wake = Instant::now() + STALE_AFTER / 4;
        let deadline =
            tokio::time::Instant::from_std(lp.next_deadline().map_or(wake, |d| d.min(wake)));
        tokio::select! {
            biased;
            () = stopped(&mut stop_seen) => break,
            msg = lp.consumer.recv() => {
                let msg = msg.map(|m| m.detach());
                lp.apply_rebalances();
                match msg {
                    Ok(m) => lp.handle(m).await?,
                    Err(e) => {
                        tracing::warn!(error = %e, "kafka error");
                        metrics::ingest_error(IngestFault::Kafka);
                    }
                }
                // Under steady load `recv` is always ready and the timer branch never runs: check
                // the age bound of the other partitions here too.
                if lp.next_deadline().is_some_and(|d| d <= Instant::now()) {
                    lp.flush_aged().await?;
                }
                lp.settle_finished().await?;
            }
            () = lp.flush_ended.notified() => {
                lp.apply_rebalances();
                lp.settle_finished().await?;
            }
            () = tokio::time::sleep_until(deadline) => {
                lp.apply_rebalances();
                lp.flush_aged().await?;
                lp.settle_finished().await?;
            }
        }
    }
    tracing::info!("shutting down: flushing buffered partitions");
    lp.apply_rebalances();
    lp.drain().await?;
    consumer.unsubscribe();
    Ok(lp.stats)
}

/// Writes one segment, retrying store failures with backoff until shutdown: then a failing flush
/// gives up at once, and one under way at the drain's give-up time. A panic while building the
/// files is this segment's permanent error, not the end of the task.
async fn write_segment(
    writer: BronzeWriter,
    seg: Segment,
    stream: Option<JoinHandle<Result<OpenFile, FlushError>>>,
    mut give_up: tokio::sync::watch::Receiver<Option<Instant>>,
    max_backoff: Duration,
) -> FlushDone {
    let started = Instant::now();
    let mut backoff = Duration::from_millis(100);
    let mut retries = 0;
    let done = |outcome, abandoned, retries| FlushDone {
        outcome,
        abandoned,
        restart: false,
        retries,
        landed: seg.landed_by_kind(),
        dead_letters: seg.dead_letters_by_reason(),
        took: started.elapsed(),
    };
    // A streamed file is completed once; its events are no longer in memory, so a failure
    // sends the partition back to the commit log instead of retrying.
    let streamed = match stream {
        None => None,
        Some(task) => {
            let finished = async {
                let open = task.await.map_err(|e| FlushError::Panic(e.to_string()))??;
                writer.finish_file(open, &seg).await
            };
            let finished = std::panic::AssertUnwindSafe(finished).catch_unwind();
            let result = tokio::select! {
                r = finished => r.unwrap_or_else(|p| Err(FlushError::Panic(panic_message(p.as_ref())))),
                () = passed(&mut give_up) => return done(Err(FlushError::Abandoned), true, retries),
            };
            match result {
                Ok(entry) => Some(entry),
                Err(e) => {
                    return FlushDone {
                        restart: true,
                        ..done(Err(e), false, retries)
                    };
                }
            }
        }
    };
    loop {
        let attempt =
            std::panic::AssertUnwindSafe(writer.land(&seg, streamed.clone())).catch_unwind();
        let result = tokio::select! {
            r = attempt => r.unwrap_or_else(|p| Err(FlushError::Panic(panic_message(p.as_ref())))),
            () = passed(&mut give_up) => return done(Err(FlushError::Abandoned), true, retries),
        };
        match result {
            Ok(f) => return done(Ok(f), false, retries),
            Err(e) if e.disposition() == Disposition::Fatal => return done(Err(e), false, retries),
            // Shutting down and the store fails: waiting for it would only hold SIGTERM up; the
            // range is re-read by the next run.
            Err(e) if give_up.borrow().is_some() => return done(Err(e), true, retries),
            Err(e) => {
                tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "flush failed, retrying");
                metrics::ingest_error(IngestFault::ObjectStore);
                retries += 1;
                metrics::flush_retried(&seg.topic);
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = give_up.wait_for(Option::is_some) => return done(Err(e), true, retries),
                }
                backoff = (backoff * 2).min(max_backoff);
            }
        }
    }
}

/// Completes once a give-up time is set and has passed.
async fn passed(give_up: &mut tokio::sync::watch::Receiver<Option<Instant>>) {
    loop {
        let at = *give_up.borrow_and_update();
        match at {
            Some(t) => {
                tokio::select! {
                    () = tokio::time::sleep_until(tokio::time::Instant::from_std(t)) => return,
                    changed = give_up.changed() => if changed.is_err() { return },
                }
            }
            None => {
                if give_up.changed().await.is_err() {
                    // The loop is gone: nobody waits for this flush any more.
                    return;
                }
            }
        }
    }
}
