//! tidemark-core: what every part of tidemark agrees on.
//!
//! Layout:
//! - [`event`]: the change event model — `ChangeEvent`, `Decoded`, `Source`.
//! - [`value`]: typed values of rows (`Value`, `Decimal`, `Timestamp`, `Row`).
//! - [`schema`]: the Kafka Connect schema model and Debezium logical types.
//! - [`avro_schema`]: Avro schemas ↔ the Connect model.
//! - [`decode`]: the decoder (JSON with/without schema, Avro + registry).
//! - [`registry`]: the Schema Registry client.
//! - [`encode`]: the inverse of `decode` (load generator, tests, benchmarks).
//! - [`mapping`]: Connect schema → Arrow (bronze) → PostgreSQL / SQLite (warehouse).
//! - [`render`]: readable JSON of decoded records (inspect, logs).
//! - [`config`]: the typed configuration.
//! - [`metrics`]: the Prometheus metrics catalogue and the helpers that record them.
//! - [`health`]: whether the process's loops make progress, for `/healthz` and `/readyz`.
//! - [`allocator`]: how the binaries tune their allocator (mimalloc).
//!
//! Invariants:
//! - Decoding never panics on input; every error is typed and carries the Kafka coordinates.
//! - The TOAST placeholder never becomes a value: it is [`value::Value::Unavailable`].
//! - A schema is parsed once per distinct text (JSON) or registry id (Avro).

pub mod allocator;
pub mod avro_schema;
pub mod config;
pub mod decode;
pub mod encode;
pub mod event;
pub mod health;
pub mod mapping;
pub mod metrics;
pub mod registry;
pub mod render;
pub mod schema;
pub mod value;
