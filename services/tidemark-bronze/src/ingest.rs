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

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use tidemark_core::decode::{Decoder, Disposition};
use tidemark_core::event::RawRecord;
use tidemark_core::metrics;

use crate::dead_letter::DeadLetter;
use crate::kafka::{IngestConsumer, RebalanceEvent};
use crate::segment::{FlushPolicy, RollReason, Segment};
use crate::writer::{BronzeWriter, FlushError, Flushed};

/// Tuning of the loop.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    pub policy: FlushPolicy,
    /// Above this many buffered bytes (all partitions) the largest segment is flushed early.
    pub max_buffered_bytes: u64,
    /// Longest pause between retries of a failing flush.
    pub max_backoff: Duration,
    /// How long shutdown may spend flushing before it abandons what is left.
    pub drain_timeout: Duration,
}

impl IngestSettings {
    pub fn new(policy: FlushPolicy) -> IngestSettings {
        IngestSettings {
            policy,
            max_buffered_bytes: policy.max_bytes.saturating_mul(4).max(64 << 20),
            max_backoff: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(30),
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
}

enum Position {
    /// Assigned; the commit log has not been asked yet.
    Unresolved,
    /// Seeking to the commit log's next offset: older messages are ignored.
    Seeking(i64),
    Ready,
}

struct Part {
    seg: Segment,
    pos: Position,
}

type Key = (String, i32);

struct Loop<'a> {
    consumer: &'a IngestConsumer,
    decoder: Decoder,
    writer: BronzeWriter,
    settings: IngestSettings,
    parts: HashMap<Key, Part>,
    stats: IngestStats,
    /// Consumed-record counters per topic (resolved once).
    consumed: HashMap<String, metrics::Consumed>,
}

fn is_permanent(e: &FlushError) -> bool {
    matches!(e, FlushError::Arrow(_) | FlushError::Parquet(_))
}

impl Loop<'_> {
    fn apply_rebalances(&mut self) {
        for ev in self.consumer.context().take_events() {
            match ev {
                RebalanceEvent::Revoked(list) => {
                    for key in list {
                        if let Some(p) = self.parts.remove(&key)
                            && !p.seg.is_empty()
                        {
                            tracing::info!(topic = %key.0, partition = key.1, records = p.seg.records, "abandoning the buffer of a revoked partition");
                            self.stats.abandoned_segments += 1;
                        }
                    }
                }
                RebalanceEvent::Assigned(list) => {
                    for key in list {
                        self.parts.remove(&key);
                    }
                }
            }
        }
    }

    /// Where the commit log says `key` continues; retries while the store is unreachable.
    async fn resolve(&mut self, topic: &str, partition: i32) -> Option<i64> {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.writer.next_offset(topic, partition).await {
                Ok(next) => {
                    metrics::topic_seen(topic);
                    metrics::partition_position(topic, partition, next.unwrap_or(0));
                    return next;
                }
                Err(e) => {
                    tracing::warn!(topic, partition, error = %e, "cannot read the commit log, retrying");
                    metrics::error("ingest", "object_store");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.settings.max_backoff);
                }
            }
        }
    }

    async fn handle(&mut self, msg: OwnedMessage) -> Result<(), IngestError> {
        let (topic, partition, offset) = (msg.topic().to_owned(), msg.partition(), msg.offset());
        let key = (topic.clone(), partition);
        if !self.parts.contains_key(&key) {
            self.parts.insert(
                key.clone(),
                Part {
                    seg: Segment::new(&topic, partition, offset),
                    pos: Position::Unresolved,
                },
            );
        }
        let pos = std::mem::replace(
            &mut self.parts.get_mut(&key).expect("inserted").pos,
            Position::Ready,
        );
        let ready = match pos {
            Position::Unresolved => match self.resolve(&topic, partition).await {
                None => {
                    // A new chain starts where Kafka positioned us.
                    self.parts.get_mut(&key).expect("present").seg =
                        Segment::new(&topic, partition, offset);
                    true
                }
                Some(next) if next == offset => {
                    self.parts.get_mut(&key).expect("present").seg =
                        Segment::new(&topic, partition, next);
                    true
                }
                Some(next) => {
                    tracing::info!(
                        topic,
                        partition,
                        kafka = offset,
                        commit_log = next,
                        "seeking to the commit log position"
                    );
                    self.consumer.seek(
                        &topic,
                        partition,
                        Offset::Offset(next),
                        Duration::from_secs(10),
                    )?;
                    let p = self.parts.get_mut(&key).expect("present");
                    p.seg = Segment::new(&topic, partition, next);
                    p.pos = Position::Seeking(next);
                    false
                }
            },
            Position::Seeking(next) if offset < next => {
                self.parts.get_mut(&key).expect("present").pos = Position::Seeking(next);
                false
            }
            Position::Seeking(_) => true,
            Position::Ready => {
                let p = self.parts.get(&key).expect("present");
                // Redelivered after a seek: already buffered or committed.
                offset > p.seg.end.unwrap_or(p.seg.start - 1)
            }
        };
        if !ready {
            return Ok(());
        }
        self.stats.records += 1;
        self.stats.first_record_at.get_or_insert_with(Instant::now);
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
                Err(e) if e.disposition() == Disposition::Retry => {
                    tracing::warn!(topic, partition, offset, error = %e, "decode needs the schema registry, retrying");
                    metrics::error("ingest", "schema_registry");
                    tokio::time::sleep(backoff).await;
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
                self.parts.get_mut(&key).expect("present").seg.push(d, size);
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
        self.relieve_pressure().await
    }

    async fn relieve_pressure(&mut self) -> Result<(), IngestError> {
        while self.parts.values().map(|p| p.seg.bytes).sum::<u64>()
            > self.settings.max_buffered_bytes
        {
            let key = self
                .parts
                .iter()
                .max_by_key(|(_, p)| p.seg.bytes)
                .map(|(k, _)| k.clone())
                .expect("some part holds bytes");
            self.flush(&key, RollReason::Bytes).await?;
        }
        Ok(())
    }

    /// Flushes one partition, retrying store failures with backoff until `give_up_at`.
    async fn flush_until(
        &mut self,
        key: &Key,
        reason: RollReason,
        give_up_at: Option<Instant>,
    ) -> Result<(), IngestError> {
        let Some(part) = self.parts.get(key) else {
            return Ok(());
        };
        if part.seg.is_empty() {
            return Ok(());
        }
        let span = tracing::info_span!("flush", topic = %key.0, partition = key.1, start = part.seg.start, reason = reason.as_str());
        let _enter = span.enter();
        let mut backoff = Duration::from_millis(100);
        let started = Instant::now();
        loop {
            let seg = &self.parts[key].seg;
            match self.writer.flush(seg).await {
                Ok(Flushed::Committed(rec)) => {
                    tracing::debug!(end = rec.end, rows = rec.rows, "committed");
                    self.stats.commits += 1;
                    metrics::range_committed(&metrics::RangeCommitted {
                        topic: &key.0,
                        partition: key.1,
                        next_offset: rec.end + 1,
                        files: rec.files.len() as u64,
                        bytes: rec.files.iter().map(|f| f.bytes).sum(),
                        landed: seg.landed_by_kind(),
                        dead_letters: seg.dead_letters_by_reason(),
                        took: started.elapsed(),
                    });
                    let mut tpl = TopicPartitionList::new();
                    tpl.add_partition_offset(&key.0, key.1, Offset::Offset(rec.end + 1))?;
                    if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
                        tracing::debug!(error = %e, "kafka offset commit not sent");
                    }
                    let p = self.parts.get_mut(key).expect("present");
                    p.seg = p.seg.successor();
                    return Ok(());
                }
                Ok(Flushed::Fenced { winner }) => {
                    tracing::warn!(winner = %winner.writer, end = winner.end, "another writer committed this range; re-reading the commit log");
                    self.stats.fenced += 1;
                    metrics::range_fenced(&key.0);
                    self.parts.remove(key);
                    return Ok(());
                }
                Err(e) if is_permanent(&e) => return Err(IngestError::Flush(e)),
                Err(e) => {
                    if give_up_at.is_some_and(|t| Instant::now() >= t) {
                        tracing::warn!(error = %e, "drain timeout: abandoning the segment (it will be re-read)");
                        self.stats.abandoned_segments += 1;
                        return Ok(());
                    }
                    tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "flush failed, retrying");
                    metrics::error("ingest", "object_store");
                    self.stats.flush_retries += 1;
                    metrics::flush_retried(&key.0);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.settings.max_backoff);
                }
            }
        }
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
        let keys: Vec<Key> = self.parts.keys().cloned().collect();
        for key in keys {
            self.flush_until(&key, RollReason::Drain, Some(give_up))
                .await?;
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
    let mut lp = Loop {
        consumer: &consumer,
        decoder,
        writer,
        settings,
        parts: HashMap::new(),
        stats: IngestStats::default(),
        consumed: HashMap::new(),
    };
    tokio::pin!(shutdown);
    loop {
        let deadline = lp.next_deadline().map(tokio::time::Instant::from_std);
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            msg = lp.consumer.recv() => {
                let msg = msg.map(|m| m.detach());
                lp.apply_rebalances();
                match msg {
                    Ok(m) => lp.handle(m).await?,
                    Err(e) => {
                        tracing::warn!(error = %e, "kafka error");
                        metrics::error("ingest", "kafka");
                    }
                }
                // Under steady load `recv` is always ready and the timer branch never runs: check
                // the age bound of the other partitions here too.
                if lp.next_deadline().is_some_and(|d| d <= Instant::now()) {
                    lp.flush_aged().await?;
                }
            }
            () = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                lp.apply_rebalances();
                lp.flush_aged().await?;
            }
        }
    }
    tracing::info!("shutting down: flushing buffered partitions");
    lp.apply_rebalances();
    lp.drain().await?;
    consumer.unsubscribe();
    Ok(lp.stats)
}
