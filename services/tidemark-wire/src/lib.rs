//! tidemark-wire: Debezium change events as Kafka carries them.
//!
//! Layout:
//! - [`decode`]: the decoder (JSON with or without the schema envelope, Confluent Avro with
//!   schemas from a registry) into `tidemark_core::event` values, with typed errors that carry a
//!   disposition (dead-letter, retry, fatal) and a stable metric reason.
//! - [`registry`]: the Schema Registry client (TLS, basic auth, a cache per schema id).
//! - [`avro_schema`]: Avro schemas ↔ the Connect schema model of `tidemark_core::schema`.
//! - [`encode`]: the inverse of `decode` (load generator, tests, benchmarks).
//!
//! Invariants:
//! - Decoding never panics on input; every error is typed and carries the Kafka coordinates
//!   (a panic inside is caught and becomes a `decoder_panic` dead letter).
//! - The TOAST placeholder never becomes a value: it is `Value::Unavailable`.
//! - A schema is parsed once per distinct text (JSON) or registry id (Avro).
//! - `decode(encode(e)) == e` for every event the encoders write (a property test).
//!
//! Only ingest and the tools that read or write Kafka records link this crate: the merger reads
//! bronze through `tidemark-lake` and never links Avro or the registry client.

pub mod avro_schema;
pub mod decode;
pub mod encode;
pub mod registry;
