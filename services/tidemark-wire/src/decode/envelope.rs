//! The members of a Debezium value other than the row images, and the routing of a record to
//! what it is (change, message, transaction, heartbeat, schema change). Shared by JSON and Avro.

use base64::Engine as _;
use serde::{Deserialize, Deserializer};

use tidemark_core::event::{
    ChangeEvent, Decoded, EventSchema, Heartbeat, KafkaCoords, LogicalMessage, Op, SchemaChange,
    Source, TransactionBlock, TransactionEvent, TransactionStatus, lenient_i64,
};
use tidemark_core::value::Row;

use super::error::DecodeErrorKind;
use std::sync::Arc;

/// Envelope members, all optional: which ones are present tells what the record is.
/// `R` is how the row images and other nested documents are captured: borrowed raw JSON text
/// for JSON (decoded afterwards under the schema), ignored for Avro (read from the record).
#[derive(Debug, Default, Deserialize)]
#[serde(default, bound(deserialize = "R: Deserialize<'de> + Default"))]
pub(crate) struct Members<R> {
    pub schema: R,
    pub payload: R,
    pub before: R,
    pub after: R,
    #[serde(rename = "tableChanges")]
    pub table_changes: R,
    pub op: Option<String>,
    pub source: Option<Source>,
    #[serde(deserialize_with = "lenient_i64")]
    pub ts_ms: Option<i64>,
    #[serde(deserialize_with = "lenient_i64")]
    pub ts_us: Option<i64>,
    #[serde(deserialize_with = "lenient_i64")]
    pub ts_ns: Option<i64>,
    pub transaction: Option<TransactionBlock>,
    pub message: Option<MessageBlock>,
    // Transaction metadata (BEGIN/END).
    pub status: Option<String>,
    pub id: Option<String>,
    #[serde(deserialize_with = "lenient_i64")]
    pub event_count: Option<i64>,
    pub data_collections: Option<Vec<DataCollection>>,
    // Schema change.
    pub ddl: Option<String>,
    #[serde(rename = "databaseName")]
    pub database_name: Option<String>,
    #[serde(rename = "schemaName")]
    pub schema_name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct MessageBlock {
    pub prefix: Option<String>,
    #[serde(default, deserialize_with = "bytes_or_base64")]
    pub content: Vec<u8>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct DataCollection {
    pub data_collection: String,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub event_count: Option<i64>,
}

/// Names that say what a record is, whatever its shape.
#[derive(Debug, Clone)]
pub struct Routing {
    /// Topics starting with this are heartbeats (Debezium `topic.heartbeat.prefix`).
    pub heartbeat_prefix: String,
}

impl Default for Routing {
    fn default() -> Self {
        Routing {
            heartbeat_prefix: "__debezium-heartbeat".into(),
        }
    }
}

/// Row images, decoded lazily: only changes need them.
pub(crate) struct Images {
    pub before: Option<Row>,
    pub after: Option<Row>,
}

pub(crate) struct Classified<'a> {
    pub kafka: KafkaCoords,
    pub key: Option<Row>,
    pub schema: Option<Arc<EventSchema>>,
    pub schema_name: Option<&'a str>,
    /// `tableChanges` as JSON text, where present.
    pub table_changes: Option<String>,
}

impl<R> Members<R> {
    /// Decides what the record is. `images` is called only for row changes.
    pub(super) fn into_decoded(
        self,
        routing: &Routing,
        c: Classified<'_>,
        images: impl FnOnce() -> Result<Images, DecodeErrorKind>,
    ) -> Result<Decoded, DecodeErrorKind> {
        let name = c.schema_name.unwrap_or("");
        match self.op.as_deref() {
            Some("m") => {
                let msg = self.message.unwrap_or(MessageBlock {
                    prefix: None,
                    content: Vec::new(),
                });
                Ok(Decoded::Message(Box::new(LogicalMessage {
                    kafka: c.kafka,
                    source: self.source.unwrap_or_default(),
                    prefix: msg.prefix,
                    content: msg.content,
                    ts_ms: self.ts_ms,
                })))
            }
            Some(code) => {
                let op = Op::from_code(code)
                    .ok_or_else(|| DecodeErrorKind::UnknownOp(code.to_owned()))?;
                let images = images()?;
                // Applied, such an event would wipe the row: it is malformed, not a change.
                if matches!(op, Op::Create | Op::Update | Op::Read) && images.after.is_none() {
                    return Err(DecodeErrorKind::Envelope(format!(
                        "op `{code}` with `after` null: a create, update or read carries the row"
                    )));
                }
                Ok(Decoded::Change(Box::new(ChangeEvent {
                    op,
                    key: c.key,
                    before: images.before,
                    after: images.after,
                    source: self.source.ok_or_else(|| {
                        DecodeErrorKind::Envelope("change event without `source`".into())
                    })?,
                    ts_ms: self.ts_ms,
                    ts_us: self.ts_us,
                    ts_ns: self.ts_ns,
                    transaction: self.transaction,
                    kafka: c.kafka,
                    schema: c.schema,
                })))
            }
            None if c.kafka.topic.starts_with(&routing.heartbeat_prefix)
                || name == "io.debezium.connector.common.Heartbeat" =>
            {
                Ok(Decoded::Heartbeat(Heartbeat {
                    kafka: c.kafka,
                    ts_ms: self.ts_ms,
                }))
            }
            None if self.status.is_some() && self.id.is_some() => {
                let status = match self.status.as_deref() {
                    Some("BEGIN") => TransactionStatus::Begin,
                    Some("END") => TransactionStatus::End,
                    Some(other) => {
                        return Err(DecodeErrorKind::Envelope(format!(
                            "transaction status `{other}` (expected BEGIN or END)"
                        )));
                    }
                    None => unreachable!("checked above"),
                };
                Ok(Decoded::Transaction(TransactionEvent {
                    kafka: c.kafka,
                    status,
                    id: self.id.unwrap_or_default(),
                    ts_ms: self.ts_ms,
                    event_count: self.event_count,
                    data_collections: self
                        .data_collections
                        .unwrap_or_default()
                        .into_iter()
                        .map(|d| (d.data_collection, d.event_count.unwrap_or(0)))
                        .collect(),
                }))
            }
            None if self.ddl.is_some()
                || c.table_changes.is_some()
                || name.ends_with("SchemaChangeValue") =>
            {
                Ok(Decoded::SchemaChange(Box::new(SchemaChange {
                    kafka: c.kafka,
                    source: self.source.unwrap_or_default(),
                    database: self.database_name,
                    schema: self.schema_name,
                    ddl: self.ddl,
                    table_changes: c.table_changes,
                    ts_ms: self.ts_ms,
                })))
            }
            None => Err(DecodeErrorKind::MissingOp),
        }
    }
}

/// Bytes arrive base64 in JSON and raw in Avro.
fn bytes_or_base64<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("bytes or a base64 string")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
            base64::engine::general_purpose::STANDARD
                .decode(v)
                .map_err(|e| E::custom(format!("invalid base64: {e}")))
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Vec<u8>, E> {
            Ok(Vec::new())
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Vec<u8>, D2::Error> {
            bytes_or_base64(d)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Vec<u8>, E> {
            Ok(Vec::new())
        }
    }
    d.deserialize_any(V)
}
