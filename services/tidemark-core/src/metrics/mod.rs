//! Prometheus metrics: one registry built from the [`catalogue`], and small helpers
//! named for what happened (`Consumed::record`, `range_committed`, `batch_merged`, …) so call
//! sites never touch metric objects. Labels are low-cardinality: topic, partition, table, op,
//! layer, action, reason.

pub mod catalogue;
pub mod labels;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::core::Collector;
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use catalogue::{CATALOGUE, Kind, MetricDoc};
use labels::{
    DeadLetterReason, IngestFault, MemoryKind, MergeFault, RowsWritten, Scd2Event, TxnFallback,
};

use crate::event::Op;

/// The registry and every metric of the catalogue.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    counters: HashMap<&'static str, IntCounterVec>,
    gauges: HashMap<&'static str, IntGaugeVec>,
    float_gauges: HashMap<&'static str, GaugeVec>,
    histograms: HashMap<&'static str, HistogramVec>,
    /// Newest source commit time applied per table (ms), for freshness.
    newest_applied: Mutex<HashMap<String, i64>>,
}

fn doc(name: &str) -> &'static MetricDoc {
    CATALOGUE
        .iter()
        .find(|d| d.name == name)
        .unwrap_or_else(|| panic!("{name} is not in the metrics catalogue"))
}

/// Seconds buckets from 1 ms to ~10 min.
fn buckets() -> Vec<f64> {
    vec![
        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
        300.0, 600.0,
    ]
}

/// Float gauges (the rest are integers).
const FLOAT_GAUGES: &[&str] = &[catalogue::FRESHNESS];

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        let mut m = Metrics {
            registry,
            counters: HashMap::new(),
            gauges: HashMap::new(),
            float_gauges: HashMap::new(),
            histograms: HashMap::new(),
            newest_applied: Mutex::new(HashMap::new()),
        };
        for d in CATALOGUE {
            let collector: Box<dyn Collector> = match d.kind {
                Kind::Counter => {
                    let c = IntCounterVec::new(Opts::new(d.name, d.help), d.labels)
                        .expect("valid counter");
                    m.counters.insert(d.name, c.clone());
                    Box::new(c)
                }
                Kind::Gauge if FLOAT_GAUGES.contains(&d.name) => {
                    let g =
                        GaugeVec::new(Opts::new(d.name, d.help), d.labels).expect("valid gauge");
                    m.float_gauges.insert(d.name, g.clone());
                    Box::new(g)
                }
                Kind::Gauge => {
                    let g =
                        IntGaugeVec::new(Opts::new(d.name, d.help), d.labels).expect("valid gauge");
                    m.gauges.insert(d.name, g.clone());
                    Box::new(g)
                }
                Kind::Histogram => {
                    let h = HistogramVec::new(
                        HistogramOpts::new(d.name, d.help).buckets(buckets()),
                        d.labels,
                    )
                    .expect("valid histogram");
                    m.histograms.insert(d.name, h.clone());
                    Box::new(h)
                }
            };
            m.registry.register(collector).expect("unique metric names");
        }
        m.gauges[catalogue::BUILD_INFO]
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        for kind in MemoryKind::ALL {
            m.gauges[catalogue::INGEST_MEMORY].with_label_values(&[kind.as_str()]);
        }
        m
    }

    fn counter(&self, name: &str, labels: &[&str]) -> prometheus::IntCounter {
        debug_assert_eq!(doc(name).labels.len(), labels.len());
        self.counters[name].with_label_values(labels)
    }

    fn gauge(&self, name: &str, labels: &[&str]) -> prometheus::IntGauge {
        self.gauges[name].with_label_values(labels)
    }

    fn histogram(&self, name: &str, labels: &[&str]) -> prometheus::Histogram {
        self.histograms[name].with_label_values(labels)
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        refresh_freshness();
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding");
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The sum of a counter over all its label values (progress displays, the demo's summary).
pub fn counter_total(name: &str) -> u64 {
    global().counters.get(name).map_or(0, |c| {
        c.collect()
            .iter()
            .flat_map(|f| f.get_metric())
            .map(|m| m.get_counter().get_value() as u64)
            .sum()
    })
}

/// A histogram's observation count and sum over all its label values.
pub fn histogram_totals(name: &str) -> (u64, f64) {
    global().histograms.get(name).map_or((0, 0.0), |h| {
        h.collect()
            .iter()
            .flat_map(|f| f.get_metric())
            .map(|m| {
                let h = m.get_histogram();
                (h.get_sample_count(), h.get_sample_sum())
            })
            .fold((0, 0.0), |(c, s), (c2, s2)| (c + c2, s + s2))
    })
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns recording on or off (the ingest benchmark measures what metrics cost).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

fn on() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    &METRICS
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

// ---- ingest ----

/// Makes a topic's series exist at 0 (dashboards and alerts see them before the first event).
pub fn topic_seen(topic: &str) {
    let m = global();
    for name in [
        catalogue::RECORDS_CONSUMED,
        catalogue::CONSUMED_BYTES,
        catalogue::FILES_COMMITTED,
        catalogue::COMMITTED_BYTES,
        catalogue::FLUSH_RETRIES,
        catalogue::FENCED,
        catalogue::OFFSET_HOLES,
    ] {
        m.counter(name, &[topic]);
    }
    for reason in IngestFault::ALL {
        m.counter(catalogue::ERRORS, &["ingest", reason.as_str()]);
    }
    for reason in DeadLetterReason::ALL {
        m.counter(catalogue::DEAD_LETTERS, &[topic, reason.as_str()]);
    }
}

/// The consumed-records counters of one topic, resolved once: per record only two atomic adds
/// (ingest keeps one per topic).
#[derive(Debug, Clone)]
pub struct Consumed {
    records: prometheus::IntCounter,
    bytes: prometheus::IntCounter,
}

impl Consumed {
    pub fn for_topic(topic: &str) -> Consumed {
        let m = global();
        Consumed {
            records: m.counter(catalogue::RECORDS_CONSUMED, &[topic]),
            bytes: m.counter(catalogue::CONSUMED_BYTES, &[topic]),
        }
    }

    pub fn record(&self, bytes: usize) {
        if on() {
            self.records.inc();
            self.bytes.inc_by(bytes as u64);
        }
    }
}

/// A range that became durable.
#[derive(Debug, Default, Clone)]
pub struct RangeCommitted<'a> {
    pub topic: &'a str,
    pub partition: i32,
    /// The commit record's end + 1.
    pub next_offset: i64,
    pub files: u64,
    pub bytes: u64,
    /// Records by op or kind.
    pub landed: Vec<(&'static str, u64)>,
    /// Dead letters by reason.
    pub dead_letters: Vec<(DeadLetterReason, u64)>,
    pub took: Duration,
}

/// A range became durable: its files, rows per op/kind and dead letters by reason.
pub fn range_committed(r: &RangeCommitted<'_>) {
    if !on() {
        return;
    }
    let m = global();
    let topic = r.topic;
    m.counter(catalogue::FILES_COMMITTED, &[topic])
        .inc_by(r.files);
    m.counter(catalogue::COMMITTED_BYTES, &[topic])
        .inc_by(r.bytes);
    for (op, n) in &r.landed {
        m.counter(catalogue::RECORDS_LANDED, &[topic, op])
            .inc_by(*n);
    }
    for (reason, n) in &r.dead_letters {
        m.counter(catalogue::DEAD_LETTERS, &[topic, reason.as_str()])
            .inc_by(*n);
    }
    m.histogram(catalogue::FLUSH_DURATION, &[topic])
        .observe(r.took.as_secs_f64());
    m.gauge(
        catalogue::COMMITTED_OFFSET,
        &[topic, &r.partition.to_string()],
    )
    .set(r.next_offset);
}

/// Ingest's memory of one kind, bytes.
pub fn ingest_memory(kind: MemoryKind, bytes: u64) {
    global()
        .gauge(catalogue::INGEST_MEMORY, &[kind.as_str()])
        .set(i64::try_from(bytes).unwrap_or(i64::MAX));
}

/// The position ingest resumes a partition from (assignment).
pub fn partition_position(topic: &str, partition: i32, next_offset: i64) {
    global()
        .gauge(
            catalogue::COMMITTED_OFFSET,
            &[topic, &partition.to_string()],
        )
        .set(next_offset);
}

pub fn flush_retried(topic: &str) {
    if !on() {
        return;
    }
    global().counter(catalogue::FLUSH_RETRIES, &[topic]).inc();
}

pub fn offset_holes(topic: &str, holes: u64) {
    global()
        .counter(catalogue::OFFSET_HOLES, &[topic])
        .inc_by(holes);
}

pub fn range_fenced(topic: &str) {
    if !on() {
        return;
    }
    global().counter(catalogue::FENCED, &[topic]).inc();
}

/// Kafka's high watermark of a partition (from librdkafka statistics): lag = high watermark −
/// next offset to land.
pub fn high_watermark(topic: &str, partition: i32, high: i64) {
    let m = global();
    let p = partition.to_string();
    let landed = m.gauge(catalogue::COMMITTED_OFFSET, &[topic, &p]).get();
    m.gauge(catalogue::CONSUMER_LAG, &[topic, &p])
        .set((high - landed).max(0));
}

pub fn ingest_error(reason: IngestFault) {
    global()
        .counter(catalogue::ERRORS, &["ingest", reason.as_str()])
        .inc();
}

// ---- merge ----

/// Makes a table's series exist at 0.
pub fn table_seen(table: &str) {
    let m = global();
    m.counter(catalogue::MERGE_BATCHES, &[table]);
    m.gauge(catalogue::TABLE_STOPPED, &[table]);
    m.gauge(catalogue::FACTS_WAITING, &[table]);
    m.counter(catalogue::POSITION_REGRESSIONS, &[table]);
    for e in Scd2Event::ALL {
        m.counter(catalogue::SCD2_EVENTS, &[table, e.as_str()]);
    }
    let silver = RowsWritten::SilverUpserted;
    m.counter(
        catalogue::MERGE_ROWS,
        &[table, silver.layer(), silver.action()],
    );
    for op in Op::ALL {
        m.counter(catalogue::MERGE_CHANGES, &[table, op.code()]);
    }
    m.histogram(catalogue::MERGE_DURATION, &[table]);
    m.histogram(catalogue::END_TO_END, &[table]);
    // Unknown (NaN) until the table's first change or heartbeat is merged: no alert fires on
    // it, and a dashboard shows it rather than nothing.
    let known = m
        .newest_applied
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains_key(table);
    if !known {
        m.float_gauges[catalogue::FRESHNESS]
            .with_label_values(&[table])
            .set(f64::NAN);
    }
    for r in MergeFault::ALL {
        m.counter(catalogue::MERGE_FAILURES, &[r.as_str()]);
        m.counter(catalogue::ERRORS, &["merge", r.as_str()]);
    }
}

/// What one merged batch did.
#[derive(Debug, Default, Clone)]
pub struct BatchMerged<'a> {
    pub table: &'a str,
    pub changes_by_op: Vec<(Op, u64)>,
    pub rows: Vec<(RowsWritten, u64)>,
    /// Dimension history events and their counts.
    pub scd2: Vec<(Scd2Event, u64)>,
    /// Source commit times (ms) of the batch's changes.
    pub source_ts_ms: Vec<i64>,
    pub took: Duration,
}

/// A batch committed: counts, duration, end-to-end latency and freshness.
pub fn batch_merged(b: &BatchMerged<'_>) {
    if !on() {
        return;
    }
    let m = global();
    let t = b.table;
    m.counter(catalogue::MERGE_BATCHES, &[t]).inc();
    for (op, n) in &b.changes_by_op {
        m.counter(catalogue::MERGE_CHANGES, &[t, op.code()])
            .inc_by(*n);
    }
    for (r, n) in &b.rows {
        m.counter(catalogue::MERGE_ROWS, &[t, r.layer(), r.action()])
            .inc_by(*n);
    }
    scd2_events(t, &b.scd2);
    m.histogram(catalogue::MERGE_DURATION, &[t])
        .observe(b.took.as_secs_f64());
    let now = now_ms();
    let h = m.histogram(catalogue::END_TO_END, &[t]);
    for ts in &b.source_ts_ms {
        h.observe(((now - ts).max(0)) as f64 / 1000.0);
    }
    if let Some(newest) = b.source_ts_ms.iter().max() {
        let mut map = m.newest_applied.lock().unwrap_or_else(|e| e.into_inner());
        let e = map.entry(t.to_owned()).or_insert(*newest);
        *e = (*e).max(*newest);
    }
    refresh_freshness();
}

/// The warehouse holds every change of `table` up to source time `ts_ms` (a heartbeat showed
/// its source quiet): freshness counts from there even when no change was applied.
pub fn source_complete_through(table: &str, ts_ms: i64) {
    if !on() {
        return;
    }
    {
        let m = global();
        let mut map = m.newest_applied.lock().unwrap_or_else(|e| e.into_inner());
        let e = map.entry(table.to_owned()).or_insert(ts_ms);
        *e = (*e).max(ts_ms);
    }
    refresh_freshness();
}

/// Recomputes every table's freshness from the newest applied source time.
fn refresh_freshness() {
    let m = global();
    let now = now_ms();
    let map = m.newest_applied.lock().unwrap_or_else(|e| e.into_inner());
    for (t, newest) in map.iter() {
        m.float_gauges[catalogue::FRESHNESS]
            .with_label_values(&[t])
            .set(((now - newest).max(0)) as f64 / 1000.0);
    }
}

/// Dimension history events applied to `table` (e.g. inferred members a fact created).
pub fn scd2_events(table: &str, events: &[(Scd2Event, u64)]) {
    let m = global();
    for (e, n) in events {
        m.counter(catalogue::SCD2_EVENTS, &[table, e.as_str()])
            .inc_by(*n);
    }
}

pub fn merged_position(topic: &str, partition: i32, next_offset: i64) {
    global()
        .gauge(catalogue::MERGED_OFFSET, &[topic, &partition.to_string()])
        .set(next_offset);
}

pub fn position_regression(table: &str) {
    global()
        .counter(catalogue::POSITION_REGRESSIONS, &[table])
        .inc();
}

/// Changes of a fact table its last read held back to wait for its dimensions.
pub fn facts_waiting(table: &str, changes: u64) {
    global()
        .gauge(catalogue::FACTS_WAITING, &[table])
        .set(i64::try_from(changes).unwrap_or(i64::MAX));
}

/// Makes a connector's transaction series exist at 0.
pub fn transactions_seen(connector: &str) {
    let m = global();
    m.gauge(catalogue::TXN_OPEN, &[connector]);
    m.gauge(catalogue::TXN_OLDEST, &[connector]);
    m.gauge(catalogue::TXN_HELD, &[connector]);
    m.counter(catalogue::TXN_APPLIED, &[connector]);
    for r in TxnFallback::ALL {
        m.counter(catalogue::TXN_FALLBACKS, &[connector, r.as_str()]);
    }
}

/// What an atomic cycle left open: transactions, the oldest one's age, changes held back.
pub fn transactions_open(connector: &str, open: usize, oldest_secs: f64, held: usize) {
    let m = global();
    let n = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
    m.gauge(catalogue::TXN_OPEN, &[connector]).set(n(open));
    m.gauge(catalogue::TXN_OLDEST, &[connector])
        .set(oldest_secs.round() as i64);
    m.gauge(catalogue::TXN_HELD, &[connector]).set(n(held));
}

pub fn transactions_applied(connector: &str, n: u64) {
    global()
        .counter(catalogue::TXN_APPLIED, &[connector])
        .inc_by(n);
}

pub fn transaction_fallback(connector: &str, reason: TxnFallback) {
    global()
        .counter(catalogue::TXN_FALLBACKS, &[connector, reason.as_str()])
        .inc();
}

pub fn table_stopped(table: &str, stopped: bool) {
    global()
        .gauge(catalogue::TABLE_STOPPED, &[table])
        .set(i64::from(stopped));
}

/// A merge cycle failed: counted as a merge failure and as a merge error.
pub fn merge_failed(reason: MergeFault) {
    let m = global();
    m.counter(catalogue::MERGE_FAILURES, &[reason.as_str()])
        .inc();
    m.counter(catalogue::ERRORS, &["merge", reason.as_str()])
        .inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalogue_entry_is_registered_and_exposed() {
        topic_seen("t");
        table_seen("x");
        transactions_seen("c");
        Consumed::for_topic("t").record(10);
        range_committed(&RangeCommitted {
            topic: "t",
            partition: 0,
            next_offset: 5,
            files: 1,
            bytes: 100,
            landed: vec![("c", 3)],
            dead_letters: vec![(DeadLetterReason::BadField, 1)],
            took: Duration::from_millis(3),
        });
        high_watermark("t", 0, 9);
        merged_position("t", 0, 5);
        batch_merged(&BatchMerged {
            table: "x",
            changes_by_op: vec![(Op::Create, 2)],
            rows: vec![(RowsWritten::SilverUpserted, 2)],
            scd2: vec![],
            source_ts_ms: vec![now_ms() - 1500],
            took: Duration::from_millis(2),
        });
        let text = global().render();
        for d in CATALOGUE {
            assert!(
                text.contains(&format!("# TYPE {} {}", d.name, d.kind.as_str())),
                "{}",
                d.name
            );
        }
        assert!(
            text.contains("tidemark_consumer_lag{partition=\"0\",topic=\"t\"} 4"),
            "{text}"
        );
        assert!(text.contains("tidemark_records_landed_total{op=\"c\",topic=\"t\"} 3"));
    }
}
