//! tidemark-bronze: Debezium events landed as Parquet in object storage, exactly once.
//!
//! Layout:
//! - [`ingest`]: the loop — consume, decode, buffer per partition, flush by policy, commit.
//! - [`kafka`]: the consumer-group member (cooperative rebalancing, bounded queues);
//!   [`kafka_check`]: `kafka.properties` checked against this build of librdkafka.
//! - [`segment`]: one partition's records since its last commit, and when to roll (pure).
//! - [`batch`] / [`arrow_values`]: decoded events → Arrow record batches (typed or JSON text).
//! - [`parquet_file`] (in `tidemark-lake`): record batches → Parquet bytes (zstd, schema in
//!   key-value metadata), shared with compaction.
//! - [`writer`]: a segment → data files, dead-letter file, commit record.
//! - [`commit_log`]: commit records, put-if-absent, chain reading; [`layout`]: paths under the
//!   bronze root; [`store`]: `file://`, `s3://`, `memory://`. These are the bronze format, in the
//!   `tidemark-lake` crate (re-exported here) so that readers of bronze do not link librdkafka.
//! - [`dead_letter`]: records that could not be decoded; [`admin`]: inspect, dlq list, gc.
//! - [`service`]: `tidemark ingest` wired from the configuration.
//!
//! # The exactly-once protocol
//!
//! 1. On (re)assignment of a partition its position is the last commit record's `end + 1`
//!    (Kafka's committed offset is only a hint, and feeds lag). The first message tells where
//!    librdkafka started; if that is not the position, the loop seeks and ignores older messages.
//! 2. Records accumulate in the partition's segment: decoded rows, dead letters (raw bytes, error,
//!    coordinates) and tombstones (counted). A segment rolls on count, bytes, age (the latency
//!    bound), a schema change or a new UTC date.
//! 3. A flush writes the data file(s) under unique names
//!    (`<table>/dt=<date>/<topic>+<partition>+<start>-<end>+<writer>.parquet`) and the dead-letter
//!    file, then creates `_log/<topic>/<partition>/<start>.json` with put-if-absent.
//! 4. If the create fails because the record exists, another writer (the new owner after a
//!    rebalance, while we are a zombie) committed that start: we delete our files and re-read the
//!    position. If it exists and is our own (a retried create whose first response was lost), it
//!    counts as committed.
//! 5. After a commit the Kafka offset `end + 1` is committed asynchronously (a hint).
//!
//! A segment that reaches its share of the memory budget before its policy rolls it streams
//! instead (`writer::OpenFile`): its change events are encoded into its file row group by row
//! group and sent as parts of a multipart upload, in the background, one spill after the other.
//! The upload completes at the roll, in step 3, before the commit record; until then the file
//! is no object. A stream that fails cannot be retried from memory: the partition goes back to
//! its commit-log position and reads the range again.
//!
//! Steps 3–5 run in the background, on the blocking pool, while the partition's next segment
//! (starting at `end + 1`) fills. A partition has at most one flush in flight: the next flush
//! waits for it, so commit records are created in chain order. If the flush is fenced, what
//! was buffered after it is dropped, and the partition re-reads its position.
//!
//! Invariants:
//! - Every offset of a managed partition is accounted for exactly once: a row of one committed
//!   file, a dead letter of one commit, a tombstone counted by the commit whose range holds it, or
//!   absent from Kafka (compaction, transaction markers).
//! - The commit records of a partition form a gap-free chain: each starts at the previous `end + 1`.
//! - A committed file is never modified; readers only read files named by commit records. Files of
//!   a crash between steps 3 and 4 are orphans that `gc` removes.
//! - A revoked partition's uncommitted segment is abandoned, never half-committed; shutdown
//!   flushes every partition within a bounded drain time.

pub mod admin;
pub(crate) mod arrow_values;
pub(crate) mod batch;
pub mod dead_letter;
pub(crate) mod flush_end;
pub mod ingest;
pub mod kafka;
pub mod kafka_check;
pub(crate) mod position;
pub(crate) mod relief;
pub mod segment;
pub mod service;
pub mod writer;

// The bronze format lives in `tidemark-lake` (readers need no Kafka); ingest writes it.
pub use tidemark_lake::{commit_log, compact, layout, manifest, parquet_file, store};
