//! Every metric tidemark exports: name, type, labels and meaning. The registry is built from this
//! list and the README's metrics reference is checked against it, so they cannot drift.

/// The Prometheus type of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric's documentation.
#[derive(Debug, Clone, Copy)]
pub struct MetricDoc {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

const fn m(
    name: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    help: &'static str,
) -> MetricDoc {
    MetricDoc {
        name,
        kind,
        labels,
        help,
    }
}

use Kind::{Counter, Gauge, Histogram};

pub const BUILD_INFO: &str = "tidemark_build_info";
pub const RECORDS_CONSUMED: &str = "tidemark_records_consumed_total";
pub const CONSUMED_BYTES: &str = "tidemark_consumed_bytes_total";
pub const RECORDS_LANDED: &str = "tidemark_records_landed_total";
pub const DEAD_LETTERS: &str = "tidemark_dead_letters_total";
pub const FILES_COMMITTED: &str = "tidemark_bronze_files_committed_total";
pub const COMMITTED_BYTES: &str = "tidemark_bronze_committed_bytes_total";
pub const FLUSH_DURATION: &str = "tidemark_bronze_flush_duration_seconds";
pub const FLUSH_RETRIES: &str = "tidemark_bronze_flush_retries_total";
pub const FENCED: &str = "tidemark_bronze_fenced_total";
pub const OFFSET_HOLES: &str = "tidemark_bronze_offset_holes_total";
pub const CONSUMER_LAG: &str = "tidemark_consumer_lag";
pub const COMMITTED_OFFSET: &str = "tidemark_committed_offset";
pub const MERGE_BATCHES: &str = "tidemark_merge_batches_total";
pub const MERGE_CHANGES: &str = "tidemark_merge_changes_total";
pub const MERGE_ROWS: &str = "tidemark_merge_rows_total";
pub const MERGE_DURATION: &str = "tidemark_merge_duration_seconds";
pub const MERGE_FAILURES: &str = "tidemark_merge_failures_total";
pub const MERGED_OFFSET: &str = "tidemark_merged_offset";
pub const SCD2_EVENTS: &str = "tidemark_scd2_events_total";
pub const TABLE_STOPPED: &str = "tidemark_table_stopped";
pub const FACTS_WAITING: &str = "tidemark_merge_facts_waiting";
pub const TXN_OPEN: &str = "tidemark_source_transactions_open";
pub const TXN_OLDEST: &str = "tidemark_source_transaction_oldest_seconds";
pub const TXN_HELD: &str = "tidemark_source_transaction_events_held";
pub const TXN_APPLIED: &str = "tidemark_source_transactions_applied_total";
pub const TXN_FALLBACKS: &str = "tidemark_source_transaction_fallbacks_total";
pub const FRESHNESS: &str = "tidemark_freshness_seconds";
pub const END_TO_END: &str = "tidemark_end_to_end_latency_seconds";
pub const ERRORS: &str = "tidemark_errors_total";
pub const POSITION_REGRESSIONS: &str = "tidemark_source_position_regressions_total";
pub const INGEST_MEMORY: &str = "tidemark_ingest_memory_bytes";

pub const CATALOGUE: &[MetricDoc] = &[
    m(
        BUILD_INFO,
        Gauge,
        &["version"],
        "Always 1; the running version.",
    ),
    m(
        RECORDS_CONSUMED,
        Counter,
        &["topic"],
        "Kafka records read by ingest.",
    ),
    m(
        CONSUMED_BYTES,
        Counter,
        &["topic"],
        "Bytes of Kafka keys and values read by ingest.",
    ),
    m(
        RECORDS_LANDED,
        Counter,
        &["topic", "op"],
        "Records in committed bronze ranges, by op (c, u, d, r, t) or kind (tombstone, transaction, heartbeat, schema_change, message).",
    ),
    m(
        DEAD_LETTERS,
        Counter,
        &["topic", "reason"],
        "Records dead-lettered in committed ranges, by reason.",
    ),
    m(
        FILES_COMMITTED,
        Counter,
        &["topic"],
        "Bronze data files named by a commit record.",
    ),
    m(
        COMMITTED_BYTES,
        Counter,
        &["topic"],
        "Bytes of committed bronze data files.",
    ),
    m(
        FLUSH_DURATION,
        Histogram,
        &["topic"],
        "Time to write a range's files and create its commit record.",
    ),
    m(
        FLUSH_RETRIES,
        Counter,
        &["topic"],
        "Flushes retried after an object-store error.",
    ),
    m(
        FENCED,
        Counter,
        &["topic"],
        "Flushes that lost their range to another writer (after a rebalance).",
    ),
    m(
        OFFSET_HOLES,
        Counter,
        &["topic"],
        "Offsets inside committed ranges that Kafka never delivered (expected on compacted and transactional topics, a broker fault elsewhere).",
    ),
    m(
        CONSUMER_LAG,
        Gauge,
        &["topic", "partition"],
        "Records in Kafka not yet landed: high watermark minus the next offset to land.",
    ),
    m(
        COMMITTED_OFFSET,
        Gauge,
        &["topic", "partition"],
        "Next offset to land in bronze (the commit log's end + 1).",
    ),
    m(
        MERGE_BATCHES,
        Counter,
        &["table"],
        "Merge transactions committed.",
    ),
    m(
        MERGE_CHANGES,
        Counter,
        &["table", "op"],
        "Changes applied to the warehouse, by op.",
    ),
    m(
        MERGE_ROWS,
        Counter,
        &["table", "layer", "action"],
        "Warehouse rows written: silver upserted, dimension versions inserted/updated/removed, facts inserted.",
    ),
    m(
        MERGE_DURATION,
        Histogram,
        &["table"],
        "Time to read, apply and commit one merge batch.",
    ),
    m(
        MERGE_FAILURES,
        Counter,
        &["reason"],
        "Merge cycles that failed and will be retried (warehouse, bronze, ledger conflict).",
    ),
    m(
        MERGED_OFFSET,
        Gauge,
        &["topic", "partition"],
        "Next offset the merger will apply (its ledger).",
    ),
    m(
        SCD2_EVENTS,
        Counter,
        &["table", "event"],
        "Dimension history events: version_opened, version_updated, version_removed, late_spliced, redelivered, inferred_member.",
    ),
    m(
        TABLE_STOPPED,
        Gauge,
        &["table"],
        "1 while a table is stopped by an incompatible schema change or a bad name.",
    ),
    m(
        FACTS_WAITING,
        Gauge,
        &["table"],
        "Changes of a fact table its last read held back in bronze to wait for its dimensions (merge.fact_hold_ms).",
    ),
    m(
        TXN_OPEN,
        Gauge,
        &["connector"],
        "Source transactions holding changes back because bronze does not hold all of them yet (merge.transactions = \"atomic\").",
    ),
    m(
        TXN_OLDEST,
        Gauge,
        &["connector"],
        "How long the oldest open source transaction has held changes back (released at merge.transaction_timeout_ms).",
    ),
    m(
        TXN_HELD,
        Gauge,
        &["connector"],
        "Changes the last atomic cycle held back until their source transactions are whole in bronze.",
    ),
    m(
        TXN_APPLIED,
        Counter,
        &["connector"],
        "Source transactions applied whole, in one warehouse transaction.",
    ),
    m(
        TXN_FALLBACKS,
        Counter,
        &["connector", "reason"],
        "Source transactions applied incomplete: timeout (its events or END never came) or too_large (more events than one batch reads).",
    ),
    m(
        FRESHNESS,
        Gauge,
        &["table"],
        "Now minus the newest source time through which the warehouse holds every change (the newest change applied, or a heartbeat of a quiet source); NaN until the first of either.",
    ),
    m(
        END_TO_END,
        Histogram,
        &["table"],
        "Source commit time to visible in the warehouse, per change.",
    ),
    m(
        ERRORS,
        Counter,
        &["component", "reason"],
        "Errors by component and reason.",
    ),
    m(
        POSITION_REGRESSIONS,
        Counter,
        &["table"],
        "Changes whose source position went backwards while source time moved forward (a MySQL failover or RESET MASTER); they order after the earlier changes.",
    ),
    m(
        INGEST_MEMORY,
        Gauge,
        &["kind"],
        "Ingest's memory: `budget` (bronze.memory_budget_bytes), `resident` (the process's RSS), `held` (the estimate of what buffered and flushing segments take).",
    ),
];

/// The README's metrics reference, rendered from the catalogue.
pub fn markdown_table() -> String {
    let mut out = String::from("| metric | type | labels | meaning |\n|---|---|---|---|\n");
    for d in CATALOGUE {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            d.name,
            d.kind.as_str(),
            d.labels.join(", "),
            d.help
        ));
    }
    out
}
