//! tidemark-core: what every part of tidemark agrees on.
//!
//! Layout:
//! - [`event`]: the change event model — `ChangeEvent`, `Decoded`, `Source`.
//! - [`value`]: typed values of rows (`Value`, `Decimal`, `Timestamp`, `Row`).
//! - [`schema`]: the Kafka Connect schema model and Debezium logical types.
//! - [`converter`]: what the configuration says of the converters (wire format, TOAST
//!   placeholder). The decoder, encoders and registry client are `tidemark-wire`.
//! - [`mapping`]: Connect schema → Arrow (bronze) → PostgreSQL / SQLite (warehouse).
//! - [`render`]: readable JSON of decoded records (inspect, logs).
//! - [`config`]: the typed configuration.
//! - [`disposition`]: what a loop does with an error (retry, dead-letter, stop the table, fatal).
//! - [`ident`]: the one rule for warehouse identifiers (config table names, event columns).
//! - [`metrics`]: the Prometheus metrics catalogue and the helpers that record them.
//! - [`health`]: whether the process's loops make progress, for `/healthz` and `/readyz`.
//! - [`allocator`]: how the binaries tune their allocator (mimalloc).
//!
//! Invariants:
//! - The TOAST placeholder never becomes a value: it is [`value::Value::Unavailable`].
//! - Every metric label value comes from an enum in [`metrics::labels`], which also makes its
//!   series exist from the start.
//! - Core links no wire codec, registry client or random numbers: the merger, which reads only
//!   bronze, depends on it.

pub mod allocator;
pub mod config;
pub mod converter;
pub mod disposition;
pub mod event;
pub mod health;
pub mod ident;
pub mod mapping;
pub mod metrics;
pub mod render;
pub mod schema;
pub mod value;
