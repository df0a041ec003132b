//! tidemark-generator: a realistic banking change stream in Debezium's formats, for
//! `tidemark demo`, `tidemark generate`, benchmarks and tests.
//!
//! Layout: the domain (customers, accounts, transactions; their schemas, keys and the change
//! mix) in [`bank`]; the Kafka wire formats (JSON with or without the schema envelope,
//! Confluent Avro with the subjects to register) in [`wire`].
//!
//! Invariants: the same options give the same stream (seeded); every emitted change decodes
//! with `tidemark_wire::decode` to the row it was made from (checked by the crate's tests).
//! Kept out of `tidemark-core` so the library the pipeline links has no random generator.

pub mod bank;
pub mod wire;

pub use bank::{Bank, BankOptions, Emitted, Table};
pub use wire::{Encoding, Record, RecordEncoder, avro_subjects};
