//! The columns of bronze files, named once for the writer (ingest) and every reader (merge,
//! replay, inspect, compaction). A change file holds the Kafka coordinates, the envelope (`op`,
//! `ts_ms`, `source`, `transaction`) and the images (`key`, `before`, `after`); transaction
//! files hold `status`, `id`, `event_count`, `data_collections`, `ts_ms`.

pub const KAFKA_TOPIC: &str = "_kafka_topic";
pub const KAFKA_PARTITION: &str = "_kafka_partition";
pub const KAFKA_OFFSET: &str = "_kafka_offset";
pub const KAFKA_TIMESTAMP: &str = "_kafka_timestamp";
pub const OP: &str = "op";
pub const TS_MS: &str = "ts_ms";
pub const SOURCE: &str = "source";
pub const TRANSACTION: &str = "transaction";
pub const KEY: &str = "key";
pub const BEFORE: &str = "before";
pub const AFTER: &str = "after";

/// Columns of the connector's transaction (BEGIN/END) records.
pub const TXN_STATUS: &str = "status";
pub const TXN_ID: &str = "id";
pub const TXN_EVENT_COUNT: &str = "event_count";
pub const TXN_DATA_COLLECTIONS: &str = "data_collections";
