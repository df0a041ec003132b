//! tidemark-lake: the bronze format, shared by the ingest service that writes it and the merger,
//! `replay` and `inspect` that read it. No Kafka here: readers of bronze do not link librdkafka.
//!
//! Layout:
//! - [`layout`]: where data files, commit records and dead letters live under the bronze root.
//! - [`commit_log`]: commit records (one per committed offset range of a topic-partition),
//!   created with put-if-absent; reading a partition's chain, or its records from an offset.
//! - [`columns`]: the column names of bronze files, for the writer and every reader;
//!   [`committed_file`]: a committed file's bytes, checked against its commit record's checksum.
//! - [`store`]: the object store of a bronze URL (`file://`, `s3://`, `memory://`).
//! - [`manifest`]: per table, the committed files as one Parquet file, for engines (DuckDB,
//!   Spark, Trino) that read bronze by a list of files; never names an uncommitted file.
//! - [`compact`]: runs of small committed files rewritten into large ones (streamed through
//!   multipart uploads), switched in by one compaction record; [`parquet_file`]: record batches
//!   → Parquet (zstd, schema in key-value metadata), for ingest and compaction alike;
//!   [`upload`]: a file uploaded part by part as it is written, hashed as it goes.
//! - [`testing`] (feature `testing`): commit records for tests of bronze readers.
//!
//! Invariants (the ingest side keeps them, every reader relies on them):
//! - A partition's commit records form a gap-free chain: each starts at the previous `end + 1`.
//! - A file is part of bronze only when a commit record names it, with its checksum; committed
//!   files are never modified.
//! - A reader refuses a commit record of a newer format version instead of misreading it.
//! - Every reader resolves a chain alike ([`commit_log::resolve`]): a compaction record stands in
//!   for the records inside its range; compaction records never overlap and only go forward; the
//!   records they replace are removed only by `gc`, after a grace period.

pub mod columns;
pub mod commit_log;
pub mod committed_file;
pub mod compact;
pub mod layout;
pub mod manifest;
pub mod parquet_file;
pub mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod upload;
