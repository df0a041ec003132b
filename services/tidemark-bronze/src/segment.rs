//! The records of one topic-partition since its last commit, and when to roll them into files.
//! A pure value: no I/O, so the flush policy is tested without a store.

use std::time::{Duration, Instant};
use tidemark_core::metrics::labels::DeadLetterReason;

use chrono::{DateTime, NaiveDate};
use tidemark_core::event::{
    ChangeEvent, Decoded, Heartbeat, KafkaCoords, LogicalMessage, SchemaChange, TransactionEvent,
};

use crate::batch::{KeyShape, Shape};
use crate::dead_letter::DeadLetter;

/// Why a segment is flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollReason {
    Records,
    Bytes,
    Age,
    /// The next record has another schema: a file holds one schema.
    Schema,
    /// The next record falls on another UTC date (`dt=` directory).
    Date,
    /// The partition was revoked or the process is stopping.
    Drain,
    /// Ingest's memory budget is used up: the largest segment is written early.
    Memory,
}

impl RollReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RollReason::Records => "records",
            RollReason::Bytes => "bytes",
            RollReason::Age => "age",
            RollReason::Schema => "schema",
            RollReason::Date => "date",
            RollReason::Drain => "drain",
            RollReason::Memory => "memory",
        }
    }
}

/// When to roll a file.
#[derive(Debug, Clone, Copy)]
pub struct FlushPolicy {
    pub max_records: u64,
    pub max_bytes: u64,
    pub max_age: Duration,
}

/// The UTC date a record lands under: its Kafka timestamp, else the source commit time.
pub fn landing_date(kafka: &KafkaCoords, fallback_ms: Option<i64>) -> NaiveDate {
    kafka
        .timestamp_ms
        .filter(|t| *t >= 0)
        .or(fallback_ms)
        .and_then(DateTime::from_timestamp_millis)
        .unwrap_or_default()
        .date_naive()
}

/// Buffered records of one partition, from `start` (the chain's next offset) on.
#[derive(Debug)]
pub struct Segment {
    pub topic: String,
    pub partition: i32,
    pub start: i64,
    /// The last offset read (inclusive end of the range to commit).
    pub end: Option<i64>,
    pub records: u64,
    pub skipped: u64,
    pub bytes: u64,
    pub changes: Vec<ChangeEvent>,
    pub shape: Option<Shape>,
    pub date: Option<NaiveDate>,
    pub transactions: Vec<TransactionEvent>,
    pub heartbeats: Vec<Heartbeat>,
    pub schema_changes: Vec<SchemaChange>,
    pub messages: Vec<LogicalMessage>,
    pub dead_letters: Vec<DeadLetter>,
    opened_at: Option<Instant>,
    /// Bytes counted of the change events in `changes`.
    change_bytes: u64,
    /// Change events already written to the segment's open file ([`Segment::take_changes`]):
    /// their bytes (for `max_bytes`) and ops (for metrics). Once a file is open its columns are
    /// fixed: a record that would change them rolls the segment.
    pub spilled_bytes: u64,
    spilled_ops: std::collections::BTreeMap<&'static str, u64>,
}

fn fallback_ms(d: &Decoded) -> Option<i64> {
    match d {
        Decoded::Change(e) => e.source_ts_ms().or(e.ts_ms),
        Decoded::Message(m) => m.source.ts_ms.or(m.ts_ms),
        Decoded::Transaction(t) => t.ts_ms,
        Decoded::Heartbeat(h) => h.ts_ms,
        Decoded::SchemaChange(s) => s.source.ts_ms.or(s.ts_ms),
        Decoded::Tombstone(_) => None,
    }
}

impl Segment {
    pub fn new(topic: &str, partition: i32, start: i64) -> Segment {
        Segment {
            topic: topic.to_owned(),
            partition,
            start,
            end: None,
            records: 0,
            skipped: 0,
            bytes: 0,
            changes: Vec::new(),
            shape: None,
            date: None,
            transactions: Vec::new(),
            heartbeats: Vec::new(),
            schema_changes: Vec::new(),
            messages: Vec::new(),
            dead_letters: Vec::new(),
            opened_at: None,
            change_bytes: 0,
            spilled_bytes: 0,
            spilled_ops: Default::default(),
        }
    }

    /// Whether change events were written to an open file already.
    pub fn has_spilled(&self) -> bool {
        !self.spilled_ops.is_empty()
    }

    /// Moves the buffered change events out, to be written to the segment's open file (the
    /// bytes counted move from `bytes` to `spilled_bytes`), with the shape they are written in.
    pub fn take_changes(&mut self) -> (Vec<ChangeEvent>, Option<Shape>) {
        let changes = std::mem::take(&mut self.changes);
        for c in &changes {
            *self.spilled_ops.entry(c.op.code()).or_default() += 1;
        }
        self.bytes -= self.change_bytes;
        self.spilled_bytes += self.change_bytes;
        self.change_bytes = 0;
        (changes, self.shape.clone())
    }

    /// Nothing read since the last commit.
    pub fn is_empty(&self) -> bool {
        self.end.is_none()
    }

    /// The segment that follows this one once it is committed.
    pub fn successor(&self) -> Segment {
        Segment::new(
            &self.topic,
            self.partition,
            self.end.map_or(self.start, |e| e + 1),
        )
    }

    /// Whether `d` must go into a new file: another schema or another date.
    pub fn must_roll_before(&self, d: &Decoded) -> Option<RollReason> {
        if let Decoded::Tombstone(_) = d {
            return None;
        }
        if let Some(date) = self.date
            && date != landing_date(d.kafka(), fallback_ms(d))
        {
            return Some(RollReason::Date);
        }
        if let (Decoded::Change(e), Some(shape)) = (d, &self.shape) {
            let next = Shape::of(e);
            // An open file's key column cannot appear later.
            let widens =
                matches!(shape.key, KeyShape::Absent) && !matches!(next.key, KeyShape::Absent);
            if !shape.clone().absorb(&next) || (self.has_spilled() && widens) {
                return Some(RollReason::Schema);
            }
        }
        None
    }

    fn touch(&mut self, offset: i64, raw_bytes: usize) {
        self.end = Some(offset);
        self.records += 1;
        self.bytes += raw_bytes as u64;
        self.opened_at.get_or_insert_with(Instant::now);
    }

    /// Adds a decoded record (call [`Segment::must_roll_before`] first).
    pub fn push(&mut self, d: Decoded, raw_bytes: usize) {
        let offset = d.kafka().offset;
        self.touch(offset, raw_bytes);
        if !matches!(d, Decoded::Tombstone(_)) {
            self.date
                .get_or_insert_with(|| landing_date(d.kafka(), fallback_ms(&d)));
        }
        match d {
            Decoded::Tombstone(_) => self.skipped += 1,
            Decoded::Change(e) => {
                self.change_bytes += raw_bytes as u64;
                let shape = Shape::of(&e);
                match &mut self.shape {
                    Some(s) => {
                        s.absorb(&shape);
                    }
                    None => self.shape = Some(shape),
                }
                self.changes.push(*e);
            }
            Decoded::Transaction(t) => self.transactions.push(t),
            Decoded::Heartbeat(h) => self.heartbeats.push(h),
            Decoded::SchemaChange(s) => self.schema_changes.push(*s),
            Decoded::Message(m) => self.messages.push(*m),
        }
    }

    /// Records by op (`c`, `u`, …) or kind (`tombstone`, `transaction`, …), for metrics.
    pub fn landed_by_kind(&self) -> Vec<(&'static str, u64)> {
        let mut ops: std::collections::BTreeMap<&'static str, u64> = Default::default();
        for c in &self.changes {
            *ops.entry(c.op.code()).or_default() += 1;
        }
        for (op, n) in &self.spilled_ops {
            *ops.entry(op).or_default() += n;
        }
        for (kind, n) in [
            ("tombstone", self.skipped),
            ("transaction", self.transactions.len() as u64),
            ("heartbeat", self.heartbeats.len() as u64),
            ("schema_change", self.schema_changes.len() as u64),
            ("message", self.messages.len() as u64),
        ] {
            if n > 0 {
                ops.insert(kind, n);
            }
        }
        ops.into_iter().collect()
    }

    /// Dead letters by reason, for metrics.
    pub fn dead_letters_by_reason(&self) -> Vec<(DeadLetterReason, u64)> {
        let mut by: std::collections::BTreeMap<DeadLetterReason, u64> = Default::default();
        for reason in self
            .dead_letters
            .iter()
            .filter_map(|d| DeadLetterReason::parse(&d.reason))
        {
            *by.entry(reason).or_default() += 1;
        }
        by.into_iter().collect()
    }

    /// Adds a record that could not be decoded.
    pub fn push_dead_letter(&mut self, dl: DeadLetter, raw_bytes: usize) {
        self.touch(dl.offset, raw_bytes);
        self.dead_letters.push(dl);
    }

    /// Whether the segment is due: count, bytes or age.
    pub fn due(&self, policy: &FlushPolicy, now: Instant) -> Option<RollReason> {
        if self.records >= policy.max_records {
            Some(RollReason::Records)
        } else if self.bytes + self.spilled_bytes >= policy.max_bytes {
            Some(RollReason::Bytes)
        } else if self
            .opened_at
            .is_some_and(|t| now.duration_since(t) >= policy.max_age)
        {
            Some(RollReason::Age)
        } else {
            None
        }
    }

    /// When the age bound expires, if anything is buffered.
    pub fn deadline(&self, policy: &FlushPolicy) -> Option<Instant> {
        self.opened_at.map(|t| t + policy.max_age)
    }
}
