//! Generated events as Kafka records in the formats Debezium's converters write: JSON with the
//! schema envelope (`schemas.enable=true`), JSON payload only, or Confluent-framed Avro.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use tidemark_core::value::{Row, Value};
use tidemark_wire::avro_schema::from_connect;
use tidemark_wire::decode::Placeholder;
use tidemark_wire::encode::{
    AvroEventEncoder, JsonEventEncoder, avro_value, confluent_frame, key_json,
};

use crate::bank::{Bank, Emitted, Table, key_schema};

/// How generated records are encoded: a converter ([`tidemark_core::converter::WireFormat`])
/// and, for JSON, whether the schema envelope is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// JsonConverter with `schemas.enable=true` (Debezium's default).
    Json,
    /// JsonConverter with `schemas.enable=false`.
    JsonSchemaless,
    /// AvroConverter: Confluent framing, schemas in a Schema Registry.
    Avro,
}

impl Encoding {
    pub const ALL: [Encoding; 3] = [Encoding::Json, Encoding::JsonSchemaless, Encoding::Avro];

    /// The name `tidemark generate --format` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Json => "json",
            Encoding::JsonSchemaless => "json-schemaless",
            Encoding::Avro => "avro",
        }
    }
}

/// One Kafka record.
#[derive(Debug, Clone)]
pub struct Record {
    pub topic: String,
    pub table: Table,
    pub key: Vec<u8>,
    /// `None`: a tombstone.
    pub value: Option<Vec<u8>>,
}

/// The Avro schemas of one topic, to register as `<topic>-key` and `<topic>-value`.
#[derive(Debug, Clone)]
pub struct AvroSubjects {
    pub topic: String,
    pub key: Json,
    pub value: Json,
}

/// Avro schemas of every topic of the stream, as the AvroConverter would register them.
pub fn avro_subjects(bank: &Bank) -> Vec<AvroSubjects> {
    Table::ALL
        .iter()
        .map(|t| {
            let topic = bank.topic(*t);
            let value = AvroEventEncoder::new(bank.row_schema(*t), &topic, 0);
            AvroSubjects {
                key: from_connect(&key_schema(&bank.options().topic_prefix, *t), "Key"),
                value: serde_json::from_str(&value.schema_text).expect("rendered schema is JSON"),
                topic,
            }
        })
        .collect()
}

#[derive(Debug)]
struct AvroTopic {
    key_id: u32,
    key_schema: apache_avro::Schema,
    value: AvroEventEncoder,
}

/// Encodes [`Emitted`] records of one [`Bank`].
#[derive(Debug)]
pub struct RecordEncoder {
    format: Encoding,
    placeholder: Placeholder,
    topics: BTreeMap<Table, String>,
    json: BTreeMap<Table, JsonEventEncoder>,
    avro: BTreeMap<Table, AvroTopic>,
}

impl RecordEncoder {
    /// A JSON encoder (`format` must not be Avro: use [`RecordEncoder::avro`]).
    pub fn json(bank: &Bank, with_schema: bool) -> RecordEncoder {
        RecordEncoder {
            format: if with_schema {
                Encoding::Json
            } else {
                Encoding::JsonSchemaless
            },
            placeholder: Placeholder::default(),
            topics: Table::ALL.iter().map(|t| (*t, bank.topic(*t))).collect(),
            json: Table::ALL
                .iter()
                .map(|t| {
                    let enc =
                        JsonEventEncoder::new(bank.row_schema(*t), &bank.topic(*t), with_schema);
                    (*t, enc)
                })
                .collect(),
            avro: BTreeMap::new(),
        }
    }

    /// An Avro encoder; `ids` are the registered ids of each topic's (key, value) schemas.
    pub fn avro(bank: &Bank, ids: &BTreeMap<String, (u32, u32)>) -> Result<RecordEncoder, String> {
        let mut enc = RecordEncoder::json(bank, true);
        enc.format = Encoding::Avro;
        for t in Table::ALL {
            let topic = bank.topic(t);
            let (key_id, value_id) = *ids
                .get(&topic)
                .ok_or_else(|| format!("no registered schema ids for {topic}"))?;
            let key_json = from_connect(&key_schema(&bank.options().topic_prefix, t), "Key");
            let key_schema = apache_avro::Schema::parse(&key_json).map_err(|e| e.to_string())?;
            let mut value = AvroEventEncoder::new(bank.row_schema(t), &topic, 0);
            value.schema_id = value_id;
            enc.avro.insert(
                t,
                AvroTopic {
                    key_id,
                    key_schema,
                    value,
                },
            );
        }
        Ok(enc)
    }

    pub fn encode(&self, bank: &Bank, e: &Emitted) -> Result<Record, String> {
        let key_row = bank.key_row(e.id);
        let (key, value) = match self.format {
            Encoding::Json | Encoding::JsonSchemaless => {
                let with_schema = self.format == Encoding::Json;
                (
                    key_json(&key_row, with_schema, &self.placeholder),
                    e.event
                        .as_ref()
                        .map(|ev| self.json[&e.table].encode(ev, &self.placeholder)),
                )
            }
            Encoding::Avro => {
                let a = &self.avro[&e.table];
                let key = self.avro_key(a, &key_row)?;
                let value = e
                    .event
                    .as_ref()
                    .map(|ev| a.value.encode(ev, &self.placeholder))
                    .transpose()
                    .map_err(|err| err.to_string())?;
                (key, value)
            }
        };
        Ok(Record {
            topic: self.topics[&e.table].clone(),
            table: e.table,
            key,
            value,
        })
    }

    fn avro_key(&self, a: &AvroTopic, key: &Row) -> Result<Vec<u8>, String> {
        let Row::Typed(t) = key else {
            return Err("a generated key is typed".into());
        };
        let schema = tidemark_core::schema::Schema {
            kind: tidemark_core::schema::Kind::Struct(t.schema.clone()),
            optional: false,
            logical: tidemark_core::schema::Logical::None,
            name: t.schema.name.clone(),
        };
        let v = avro_value(&Value::Struct(t.values.clone()), &schema, &self.placeholder);
        let body = apache_avro::to_avro_datum(&a.key_schema, v).map_err(|e| e.to_string())?;
        Ok(confluent_frame(a.key_id, &body))
    }
}
