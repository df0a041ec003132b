//! tidemark-bronze: Debezium events landed as Parquet in object storage, exactly once.
//!
//! Layout:
//! - [`layout`]: paths of data files, commit records and dead letters under the bronze root.
//! - [`arrow_values`] / [`batch`]: decoded events → Arrow record batches (typed or JSON text).
//! - [`parquet_file`]: record batch → Parquet bytes (zstd, schema in key-value metadata).
//!
//! Invariants (DESIGN §3):
//! - A data file is written under a unique name before its commit record exists; a committed
//!   file is never modified. Readers only read files named by commit records.
//! - The commit records of a topic-partition form a gap-free chain of offset ranges; each range
//!   is created with put-if-absent, so of two writers of one range (a zombie after a rebalance)
//!   exactly one wins and the other drops its files.

pub mod admin;
pub mod arrow_values;
pub mod batch;
pub mod commit_log;
pub mod dead_letter;
pub mod ingest;
pub mod kafka;
pub mod layout;
pub mod parquet_file;
pub mod segment;
pub mod service;
pub mod store;
pub mod writer;
