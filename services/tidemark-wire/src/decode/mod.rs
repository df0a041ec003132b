//! The Debezium decoder: a Kafka record becomes a typed [`Decoded`] or a typed [`DecodeError`].
//!
//! - `json`: JsonConverter output with or without the schema envelope (detected per record).
//! - `avro`: Confluent wire format with schemas from a [`RegistryClient`].
//! - `envelope`: routing by members (op, status, ddl) and names (heartbeat topic, schema name).
//! - `json_row` / `logical`: schema-driven values; both formats share `logical`.
//!
//! Invariant: decoding never panics on input; every failure names the record's coordinates,
//! the part (key or value) and, for field errors, the field path.

mod avro;
mod avro_guard;
mod avro_serde;
mod envelope;
mod error;
mod json;
mod json_row;
mod logical;
mod schemaless;

use std::sync::Arc;

pub use avro::split_wire;
pub use envelope::Routing;
pub use error::{DecodeError, DecodeErrorKind, Disposition, FieldReason, RecordPart};
pub use schemaless::{decode_json_row, infer_json_row};
pub use tidemark_core::converter::{DEFAULT_PLACEHOLDER, Placeholder, WireFormat};

use crate::registry::RegistryClient;
use tidemark_core::event::{Decoded, RawRecord, Tombstone};
use tidemark_core::value::Row;

/// How to decode.
#[derive(Debug, Clone, Default)]
pub struct DecoderOptions {
    pub format: WireFormat,
    pub placeholder: Placeholder,
    pub routing: Routing,
}

/// Decodes records of any number of topics; keeps parsed schemas. One per consumer task.
#[derive(Debug)]
pub struct Decoder {
    opts: DecoderOptions,
    json_schemas: json::JsonSchemaCache,
    avro_schemas: avro::AvroCache,
    registry: Option<RegistryClient>,
}

impl Decoder {
    /// A decoder; Avro needs a registry client.
    pub fn new(opts: DecoderOptions, registry: Option<RegistryClient>) -> Decoder {
        Decoder {
            opts,
            json_schemas: Default::default(),
            avro_schemas: Default::default(),
            registry,
        }
    }

    /// Decodes one record, fetching unknown Avro schemas from the registry first.
    pub async fn decode(&mut self, rec: &RawRecord<'_>) -> Result<Decoded, DecodeError> {
        if self.opts.format == WireFormat::Avro {
            for (part, bytes) in [(RecordPart::Key, rec.key), (RecordPart::Value, rec.value)] {
                if let Some(bytes) = bytes {
                    self.ensure_avro_schema(bytes)
                        .await
                        .map_err(|kind| self.error(rec, part, kind))?;
                }
            }
        }
        self.decode_guarded(rec)
    }

    /// [`Decoder::decode_cached`], with a panic turned into this record's dead letter: one record
    /// that trips a bug must not end ingest (and, re-read at every restart, end it again).
    fn decode_guarded(&mut self, rec: &RawRecord<'_>) -> Result<Decoded, DecodeError> {
        catch_panic(|| self.decode_cached(rec)).unwrap_or_else(|text| {
            // The caches may hold a half-built entry: start them afresh.
            self.json_schemas = Default::default();
            self.avro_schemas = Default::default();
            Err(self.error(rec, RecordPart::Value, DecodeErrorKind::Panic(text)))
        })
    }

    /// Decodes one record without network I/O: JSON always; Avro only when its schemas are
    /// already cached (use [`Decoder::decode`] otherwise).
    pub fn decode_cached(&mut self, rec: &RawRecord<'_>) -> Result<Decoded, DecodeError> {
        let key = match rec.key {
            None => None,
            Some(bytes) => self
                .decode_key(bytes)
                .map_err(|kind| self.error(rec, RecordPart::Key, kind))?,
        };
        let Some(value) = rec.value else {
            return Ok(Decoded::Tombstone(Tombstone {
                kafka: rec.coords(),
                key,
            }));
        };
        let opts = &self.opts;
        let result = match opts.format {
            WireFormat::Json => json::decode_value(
                value,
                rec.coords(),
                key,
                &mut self.json_schemas,
                &opts.placeholder,
                &opts.routing,
            ),
            WireFormat::Avro => self.cached_avro(value).and_then(|(entry, body)| {
                avro::decode_value(
                    &entry,
                    body,
                    rec.coords(),
                    key,
                    &opts.placeholder,
                    &opts.routing,
                )
            }),
        };
        result.map_err(|kind| self.error(rec, RecordPart::Value, kind))
    }

    fn decode_key(&mut self, bytes: &[u8]) -> Result<Option<Row>, DecodeErrorKind> {
        match self.opts.format {
            WireFormat::Json => {
                json::decode_key(bytes, &mut self.json_schemas, &self.opts.placeholder)
            }
            WireFormat::Avro => {
                let (entry, body) = self.cached_avro(bytes)?;
                avro::decode_key(&entry, body, &self.opts.placeholder)
            }
        }
    }

    fn cached_avro<'b>(
        &self,
        bytes: &'b [u8],
    ) -> Result<(Arc<avro::AvroEntry>, &'b [u8]), DecodeErrorKind> {
        let (id, body) = split_wire(bytes)?;
        let entry = self.avro_schemas.map.get(&id).cloned().ok_or_else(|| {
            DecodeErrorKind::Avro(format!("schema id {id} not fetched (call Decoder::decode)"))
        })?;
        Ok((entry, body))
    }

    async fn ensure_avro_schema(&mut self, bytes: &[u8]) -> Result<(), DecodeErrorKind> {
        let (id, _) = split_wire(bytes)?;
        if self.avro_schemas.map.contains_key(&id) {
            return Ok(());
        }
        let registry = self.registry.as_ref().ok_or_else(|| {
            DecodeErrorKind::Avro("format is avro but no schema registry is configured".into())
        })?;
        let text = registry.schema_text(id).await?;
        self.avro_schemas.insert(id, &text)?;
        Ok(())
    }

    /// Registers an Avro schema under an id without a registry (tests, `inspect decode`).
    pub fn add_avro_schema(&mut self, id: u32, text: &str) -> Result<(), DecodeErrorKind> {
        self.avro_schemas.insert(id, text).map(|_| ())
    }

    fn error(&self, rec: &RawRecord<'_>, part: RecordPart, kind: DecodeErrorKind) -> DecodeError {
        DecodeError {
            kafka: rec.coords(),
            part,
            kind: Box::new(kind),
        }
    }
}

/// Runs `f`, turning a panic into its message.
pub fn catch_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| panic_message(p.as_ref()))
}

/// The message a panic was raised with.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

#[cfg(test)]
mod panic_tests {
    #[test]
    fn a_panic_becomes_its_message() {
        assert_eq!(super::catch_panic(|| 7), Ok(7));
        let n = 3;
        assert_eq!(
            super::catch_panic(|| -> i32 { panic!("offset overflow at {n}") }),
            Err("offset overflow at 3".to_owned())
        );
        assert_eq!(
            super::catch_panic(|| -> i32 { panic!("static") }),
            Err("static".to_owned())
        );
    }
}
