//! A realistic banking change stream in Debezium's formats, for `tidemark demo` and
//! `tidemark generate`: the domain in [`bank`], the Kafka wire formats in [`wire`].

pub mod bank;
pub mod wire;

pub use bank::{Bank, BankOptions, Emitted, Table};
pub use wire::{Record, RecordEncoder, WireFormat, avro_subjects};
