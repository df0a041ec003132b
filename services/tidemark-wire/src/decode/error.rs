//! Typed decode errors: what failed, where in the record, and what the pipeline should do.

use std::fmt;

use crate::registry::RegistryError;
use tidemark_core::event::KafkaCoords;
use tidemark_core::metrics::labels::DeadLetterReason;
use tidemark_core::schema::SchemaError;

/// Which part of the Kafka record failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordPart {
    Key,
    Value,
}

impl fmt::Display for RecordPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecordPart::Key => "key",
            RecordPart::Value => "value",
        })
    }
}

/// A record that could not be decoded, with its Kafka coordinates.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("cannot decode {part} of {}[{}]@{}: {kind}", .kafka.topic, .kafka.partition, .kafka.offset)]
pub struct DecodeError {
    pub kafka: KafkaCoords,
    pub part: RecordPart,
    /// Boxed: errors are the cold path, and results stay small on the hot one.
    pub kind: Box<DecodeErrorKind>,
}

pub use tidemark_core::disposition::Disposition;

impl DecodeError {
    /// A bad record is dead-lettered; a registry that is down is retried; one that refuses the
    /// credentials is fatal.
    pub fn disposition(&self) -> Disposition {
        match self.kind.as_ref() {
            DecodeErrorKind::Registry(e) if e.is_unauthorized() => Disposition::Fatal,
            DecodeErrorKind::Registry(e) if e.is_transient() => Disposition::Retry,
            _ => Disposition::DeadLetter,
        }
    }

    /// A short, stable label for metrics (`reason` label of dead letters).
    pub fn reason(&self) -> DeadLetterReason {
        use DeadLetterReason as R;
        match self.kind.as_ref() {
            DecodeErrorKind::Json { .. } => R::InvalidJson,
            DecodeErrorKind::Field { .. } => R::BadField,
            DecodeErrorKind::Schema(_) => R::BadSchema,
            DecodeErrorKind::MissingOp => R::MissingOp,
            DecodeErrorKind::UnknownOp(_) => R::UnknownOp,
            DecodeErrorKind::Envelope(_) => R::BadEnvelope,
            DecodeErrorKind::AvroWire(_) => R::BadAvroWire,
            DecodeErrorKind::Avro(_) => R::BadAvro,
            DecodeErrorKind::Registry(_) => R::SchemaRegistry,
            DecodeErrorKind::Panic(_) => R::DecoderPanic,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeErrorKind {
    #[error("invalid JSON at line {line} column {column}: {message}")]
    Json {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("field `{path}`: {reason}")]
    Field { path: String, reason: FieldReason },
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error(
        "no `op` member: not a Debezium change event (heartbeat, transaction and schema-change topics are recognised by name; check the topic settings)"
    )]
    MissingOp,
    #[error("unknown op `{0}` (expected c, u, d, r, t or m)")]
    UnknownOp(String),
    #[error("not a Debezium envelope: {0}")]
    Envelope(String),
    #[error("not Confluent Avro wire format: {0}")]
    AvroWire(String),
    #[error("Avro: {0}")]
    Avro(String),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The decoder panicked on this record (a bug): the record is set aside so ingest goes on.
    #[error("the decoder failed on this record (a bug; please report it): {0}")]
    Panic(String),
}

/// Why one field's value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldReason {
    #[error("expected {expected}, found {found}")]
    WrongType {
        expected: String,
        found: &'static str,
    },
    #[error("{value} does not fit {expected}")]
    OutOfRange {
        value: String,
        expected: &'static str,
    },
    #[error("invalid base64: {0}")]
    BadBase64(String),
    #[error("decimal of {bytes} bytes does not fit 38 digits")]
    DecimalOverflow { bytes: usize },
    #[error("invalid timestamp {0}")]
    BadTimestamp(String),
    #[error("invalid UUID {0}")]
    BadUuid(String),
    #[error("invalid JSON document: {0}")]
    BadJson(String),
    #[error("{0}")]
    Other(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_listed() {
        let kinds = [
            DecodeErrorKind::Json {
                line: 1,
                column: 1,
                message: String::new(),
            },
            DecodeErrorKind::Field {
                path: "a".into(),
                reason: FieldReason::WrongType {
                    expected: "int".into(),
                    found: "string",
                },
            },
            DecodeErrorKind::MissingOp,
            DecodeErrorKind::UnknownOp("x".into()),
            DecodeErrorKind::Envelope(String::new()),
            DecodeErrorKind::AvroWire(String::new()),
            DecodeErrorKind::Avro(String::new()),
            DecodeErrorKind::Panic(String::new()),
        ];
        for kind in kinds {
            let e = DecodeError {
                kafka: tidemark_core::event::KafkaCoords {
                    topic: "t".into(),
                    partition: 0,
                    offset: 0,
                    timestamp_ms: None,
                },
                part: RecordPart::Value,
                kind: Box::new(kind),
            };
            assert!(
                DeadLetterReason::ALL.contains(&e.reason()),
                "{}",
                e.reason()
            );
        }
    }
}
