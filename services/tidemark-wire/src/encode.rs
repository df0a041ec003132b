//! The inverse of [`crate::decode`]: change events as Debezium would write them, in JSON (with or
//! without the schema envelope) or Confluent Avro. Used by the load generator, tests and
//! benchmarks; the round trip `decode(encode(e)) == e` is a property test.

use std::sync::Arc;

use apache_avro::types::Value as Avro;
use base64::Engine as _;
use serde_json::{Map, Value as Json, json};

use crate::decode::Placeholder;
use tidemark_core::event::{ChangeEvent, Source, TransactionBlock};
use tidemark_core::schema::{Field, Kind, Logical, Schema, StructSchema};
use tidemark_core::value::{Decimal, Row, TimeUnit, Value};

fn opt(kind: Kind) -> Schema {
    Schema::plain(kind, true)
}

/// The Connect schema of the `source` block as tidemark writes it (a superset of the
/// PostgreSQL and MySQL connectors' blocks; every member optional).
pub fn source_schema() -> Schema {
    let s = |n: &str| Field {
        name: n.into(),
        schema: opt(Kind::String),
    };
    let i = |n: &str| Field {
        name: n.into(),
        schema: opt(Kind::Int64),
    };
    let fields = vec![
        s("version"),
        s("connector"),
        s("name"),
        i("ts_ms"),
        i("ts_us"),
        i("ts_ns"),
        s("snapshot"),
        s("db"),
        s("sequence"),
        s("schema"),
        s("table"),
        i("txId"),
        i("lsn"),
        i("xmin"),
        i("server_id"),
        s("gtid"),
        s("file"),
        i("pos"),
        i("row"),
        i("thread"),
        s("query"),
        // Appended later (files written before lack them; readers look fields up by name).
        s("change_lsn"),
        s("commit_lsn"),
        i("event_serial_no"),
        s("scn"),
        s("commit_scn"),
    ];
    Schema {
        kind: Kind::Struct(Arc::new(StructSchema::new(
            Some("io.debezium.connector.Source".into()),
            fields,
        ))),
        optional: false,
        logical: Logical::None,
        name: Some("io.debezium.connector.Source".into()),
    }
}

/// A `source` block as a struct value of [`source_schema`].
pub fn source_values(s: &Source) -> Value {
    let st = |v: &Option<String>| v.clone().map_or(Value::Null, Value::String);
    let it = |v: Option<i64>| v.map_or(Value::Null, Value::Int);
    Value::Struct(vec![
        st(&s.version),
        st(&s.connector),
        st(&s.name),
        it(s.ts_ms),
        it(s.ts_us),
        it(s.ts_ns),
        s.snapshot
            .as_ref()
            .map_or(Value::Null, |x| Value::String(x.as_str().to_owned())),
        st(&s.db),
        st(&s.sequence),
        st(&s.schema),
        st(&s.table),
        it(s.tx_id),
        it(s.lsn),
        it(s.xmin),
        it(s.server_id),
        st(&s.gtid),
        st(&s.file),
        it(s.pos),
        it(s.row),
        it(s.thread),
        st(&s.query),
        st(&s.change_lsn),
        st(&s.commit_lsn),
        it(s.event_serial_no),
        st(&s.scn),
        st(&s.commit_scn),
    ])
}

/// The Connect schema of the `transaction` block.
pub fn transaction_schema() -> Schema {
    let fields = vec![
        Field {
            name: "id".into(),
            schema: Schema::plain(Kind::String, false),
        },
        Field {
            name: "total_order".into(),
            schema: Schema::plain(Kind::Int64, false),
        },
        Field {
            name: "data_collection_order".into(),
            schema: Schema::plain(Kind::Int64, false),
        },
    ];
    Schema {
        kind: Kind::Struct(Arc::new(StructSchema::new(
            Some("event.block".into()),
            fields,
        ))),
        optional: true,
        logical: Logical::None,
        name: Some("event.block".into()),
    }
}

/// A `transaction` block as a struct value of [`transaction_schema`].
pub fn transaction_value(t: &Option<TransactionBlock>) -> Value {
    match t {
        None => Value::Null,
        Some(t) => Value::Struct(vec![
            Value::String(t.id.clone()),
            Value::Int(t.total_order.unwrap_or(0)),
            Value::Int(t.data_collection_order.unwrap_or(0)),
        ]),
    }
}

/// The Debezium envelope schema around a row schema (`<name>.Envelope`).
pub fn envelope_schema(row: &Schema, topic: &str) -> Schema {
    let mut row_opt = row.clone();
    row_opt.optional = true;
    let f = |n: &str, schema: Schema| Field {
        name: n.into(),
        schema,
    };
    let fields = vec![
        f("before", row_opt.clone()),
        f("after", row_opt),
        f("source", source_schema()),
        f("transaction", transaction_schema()),
        f("op", Schema::plain(Kind::String, false)),
        f("ts_ms", opt(Kind::Int64)),
        f("ts_us", opt(Kind::Int64)),
        f("ts_ns", opt(Kind::Int64)),
    ];
    let name = format!("{topic}.Envelope");
    Schema {
        kind: Kind::Struct(Arc::new(StructSchema::new(Some(name.clone()), fields))),
        optional: false,
        logical: Logical::None,
        name: Some(name),
    }
}

fn row_value(row: &Option<Row>) -> Value {
    match row {
        None => Value::Null,
        Some(Row::Typed(t)) => Value::Struct(t.values.clone()),
        // Schemaless rows are re-encoded from their text (see `json_value`).
        Some(Row::Json(text)) => Value::Json(text.clone()),
    }
}

fn envelope_value(e: &ChangeEvent) -> Value {
    Value::Struct(vec![
        row_value(&e.before),
        row_value(&e.after),
        source_values(&e.source),
        transaction_value(&e.transaction),
        Value::String(e.op.code().into()),
        e.ts_ms.map_or(Value::Null, Value::Int),
        e.ts_us.map_or(Value::Null, Value::Int),
        e.ts_ns.map_or(Value::Null, Value::Int),
    ])
}

/// JsonConverter's schema JSON for a Connect schema.
pub fn schema_json(schema: &Schema, field: Option<&str>) -> Json {
    let mut m = Map::new();
    m.insert("type".into(), json!(schema.kind.name()));
    match &schema.kind {
        Kind::Struct(st) => {
            let fields: Vec<Json> = st
                .fields
                .iter()
                .map(|f| schema_json(&f.schema, Some(&f.name)))
                .collect();
            m.insert("fields".into(), Json::Array(fields));
        }
        Kind::Array(items) => {
            m.insert("items".into(), schema_json(items, None));
        }
        Kind::Map(k, v) => {
            m.insert("keys".into(), schema_json(k, None));
            m.insert("values".into(), schema_json(v, None));
        }
        _ => {}
    }
    m.insert("optional".into(), json!(schema.optional));
    if let Some(n) = &schema.name {
        m.insert("name".into(), json!(n));
    }
    match &schema.logical {
        Logical::Decimal { scale, precision } => {
            let mut p = Map::new();
            p.insert("scale".into(), json!(scale.to_string()));
            if let Some(prec) = precision {
                p.insert("connect.decimal.precision".into(), json!(prec.to_string()));
            }
            m.insert("parameters".into(), Json::Object(p));
        }
        Logical::Enum { allowed } => {
            m.insert("parameters".into(), json!({ "allowed": allowed.join(",") }));
        }
        _ => {}
    }
    if let Some(f) = field {
        m.insert("field".into(), json!(f));
    }
    Json::Object(m)
}

fn b64(b: &[u8]) -> Json {
    json!(base64::engine::general_purpose::STANDARD.encode(b))
}

fn unit_of(logical: &Logical) -> TimeUnit {
    match logical {
        Logical::TimestampMillis | Logical::TimeMillis => TimeUnit::Millis,
        Logical::TimestampNanos | Logical::TimeNanos => TimeUnit::Nanos,
        Logical::Duration(unit) => *unit,
        _ => TimeUnit::Micros,
    }
}

/// The placeholder in a field's physical form.
fn placeholder_json(schema: &Schema, ph: &Placeholder) -> Json {
    let text = ph.text().unwrap_or_default();
    match schema.kind {
        Kind::Bytes => b64(text.as_bytes()),
        Kind::Array(_) => json!([text]),
        _ => json!(text),
    }
}

/// A value in JsonConverter's payload form.
pub fn json_value(v: &Value, schema: &Schema, ph: &Placeholder) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Unavailable => placeholder_json(schema, ph),
        Value::Bool(b) => json!(b),
        Value::Int(i) => json!(i),
        Value::Float(f) => json!(f),
        Value::String(s) => json!(s),
        Value::Bytes(b) => b64(b),
        Value::Decimal(d) => match schema.logical {
            Logical::VariableScaleDecimal => {
                json!({ "scale": d.scale, "value": base64::engine::general_purpose::STANDARD.encode(d.to_be_bytes()) })
            }
            _ => b64(&d.to_be_bytes()),
        },
        Value::Date(d) => json!(d),
        Value::Time(n) | Value::Duration(n) => {
            json!(n / (1_000_000_000 / unit_of(&schema.logical).per_second()))
        }
        Value::Timestamp(t) => match schema.logical {
            Logical::ZonedTimestamp => json!(t.to_string()),
            ref l => json!(t.to_epoch(unit_of(l))),
        },
        // A schemaless row's text, or a Json column (a string holding a document).
        Value::Json(text) if schema.kind == Kind::String => json!(text),
        Value::Json(text) => serde_json::from_str(text).unwrap_or(Json::Null),
        Value::Uuid(u) => json!(u.to_string()),
        Value::Array(items) => {
            let item = match &schema.kind {
                Kind::Array(i) => i.as_ref(),
                _ => schema,
            };
            Json::Array(items.iter().map(|x| json_value(x, item, ph)).collect())
        }
        Value::Struct(values) => match &schema.kind {
            Kind::Struct(st) => Json::Object(
                st.fields
                    .iter()
                    .zip(values)
                    .map(|(f, v)| (f.name.clone(), json_value(v, &f.schema, ph)))
                    .collect(),
            ),
            _ => Json::Null,
        },
        Value::Map(entries) => match &schema.kind {
            Kind::Map(k, val) if k.kind == Kind::String => Json::Object(
                entries
                    .iter()
                    .map(|(key, v)| {
                        let key = match key {
                            Value::String(s) => s.clone(),
                            other => format!("{other:?}"),
                        };
                        (key, json_value(v, val, ph))
                    })
                    .collect(),
            ),
            Kind::Map(k, val) => Json::Array(
                entries
                    .iter()
                    .map(|(a, b)| json!([json_value(a, k, ph), json_value(b, val, ph)]))
                    .collect(),
            ),
            _ => Json::Null,
        },
    }
}

/// An event as JsonConverter writes it: with the schema envelope or payload only.
pub fn event_json(
    e: &ChangeEvent,
    row_schema: &Schema,
    with_schema: bool,
    ph: &Placeholder,
) -> Vec<u8> {
    let env = envelope_schema(row_schema, &e.kafka.topic);
    let payload = json_value(&envelope_value(e), &env, ph);
    let doc = if with_schema {
        json!({ "schema": schema_json(&env, None), "payload": payload })
    } else {
        payload
    };
    serde_json::to_vec(&doc).expect("JSON values serialize")
}

/// A JSON writer for one topic's events: the envelope schema and its JSON rendered once (a load
/// generator writing the schema envelope re-rendered it for every record otherwise).
#[derive(Debug)]
pub struct JsonEventEncoder {
    envelope: Schema,
    /// `{"schema":<schema JSON>,"payload":`, or empty without the schema envelope.
    prefix: Vec<u8>,
}

impl JsonEventEncoder {
    pub fn new(row_schema: &Schema, topic: &str, with_schema: bool) -> JsonEventEncoder {
        let envelope = envelope_schema(row_schema, topic);
        let prefix = if with_schema {
            let mut p = b"{\"schema\":".to_vec();
            serde_json::to_writer(&mut p, &schema_json(&envelope, None))
                .expect("JSON values serialize");
            p.extend_from_slice(b",\"payload\":");
            p
        } else {
            Vec::new()
        };
        JsonEventEncoder { envelope, prefix }
    }

    /// The same document as [`event_json`] (with `schema` first, as JsonConverter writes it).
    pub fn encode(&self, e: &ChangeEvent, ph: &Placeholder) -> Vec<u8> {
        let payload = json_value(&envelope_value(e), &self.envelope, ph);
        let mut out = self.prefix.clone();
        serde_json::to_writer(&mut out, &payload).expect("JSON values serialize");
        if !self.prefix.is_empty() {
            out.push(b'}');
        }
        out
    }
}

/// A key row as JsonConverter writes it.
pub fn key_json(row: &Row, with_schema: bool, ph: &Placeholder) -> Vec<u8> {
    match row {
        Row::Json(text) => text.as_bytes().to_vec(),
        Row::Typed(t) => {
            let schema = Schema {
                kind: Kind::Struct(t.schema.clone()),
                optional: false,
                logical: Logical::None,
                name: t.schema.name.clone(),
            };
            let payload = json_value(&Value::Struct(t.values.clone()), &schema, ph);
            let doc = if with_schema {
                json!({ "schema": schema_json(&schema, None), "payload": payload })
            } else {
                payload
            };
            serde_json::to_vec(&doc).expect("JSON values serialize")
        }
    }
}

/// A value as apache-avro's value for the schema `avro_schema::from_connect` renders.
pub fn avro_value(v: &Value, schema: &Schema, ph: &Placeholder) -> Avro {
    let inner = avro_inner(v, schema, ph);
    if schema.optional {
        match inner {
            Avro::Null => Avro::Union(0, Box::new(Avro::Null)),
            other => Avro::Union(1, Box::new(other)),
        }
    } else {
        inner
    }
}

fn avro_inner(v: &Value, schema: &Schema, ph: &Placeholder) -> Avro {
    let int = |i: i64| match schema.kind {
        Kind::Int8 | Kind::Int16 | Kind::Int32 => Avro::Int(i as i32),
        _ => Avro::Long(i),
    };
    match v {
        Value::Null => Avro::Null,
        Value::Unavailable => {
            let text = ph.text().unwrap_or_default().to_owned();
            match &schema.kind {
                Kind::Bytes => Avro::Bytes(text.into_bytes()),
                Kind::Array(item) => Avro::Array(vec![avro_value(&Value::String(text), item, ph)]),
                _ => Avro::String(text),
            }
        }
        Value::Bool(b) => Avro::Boolean(*b),
        Value::Int(i) => int(*i),
        Value::Float(f) => match schema.kind {
            Kind::Float32 => Avro::Float(*f as f32),
            _ => Avro::Double(*f),
        },
        Value::String(s) | Value::Json(s) => Avro::String(s.clone()),
        Value::Bytes(b) => Avro::Bytes(b.clone()),
        Value::Decimal(d) => match schema.logical {
            Logical::VariableScaleDecimal => Avro::Record(vec![
                ("scale".into(), Avro::Int(d.scale)),
                ("value".into(), Avro::Bytes(d.to_be_bytes())),
            ]),
            _ => Avro::Bytes(d.to_be_bytes()),
        },
        Value::Date(d) => Avro::Int(*d),
        Value::Time(n) | Value::Duration(n) => {
            int(n / (1_000_000_000 / unit_of(&schema.logical).per_second()))
        }
        Value::Timestamp(t) => match schema.logical {
            Logical::ZonedTimestamp => Avro::String(t.to_string()),
            ref l => Avro::Long(t.to_epoch(unit_of(l))),
        },
        Value::Uuid(u) => Avro::String(u.to_string()),
        Value::Array(items) => {
            let item = match &schema.kind {
                Kind::Array(i) => i.as_ref(),
                _ => schema,
            };
            Avro::Array(items.iter().map(|x| avro_value(x, item, ph)).collect())
        }
        Value::Struct(values) => match &schema.kind {
            Kind::Struct(st) => Avro::Record(
                st.fields
                    .iter()
                    .zip(values)
                    .map(|(f, v)| (f.name.clone(), avro_value(v, &f.schema, ph)))
                    .collect(),
            ),
            _ => Avro::Null,
        },
        Value::Map(entries) => match &schema.kind {
            Kind::Map(_, val) => Avro::Map(
                entries
                    .iter()
                    .map(|(k, v)| {
                        (
                            match k {
                                Value::String(s) => s.clone(),
                                o => format!("{o:?}"),
                            },
                            avro_value(v, val, ph),
                        )
                    })
                    .collect(),
            ),
            _ => Avro::Null,
        },
    }
}

/// Confluent framing: magic 0, schema id, Avro binary.
pub fn confluent_frame(schema_id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(0);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// An Avro writer for one topic's events: the envelope schema rendered once.
#[derive(Debug)]
pub struct AvroEventEncoder {
    pub schema_id: u32,
    /// The Avro schema text to register under `schema_id`.
    pub schema_text: String,
    envelope: Schema,
    avro: apache_avro::Schema,
}

impl AvroEventEncoder {
    pub fn new(row_schema: &Schema, topic: &str, schema_id: u32) -> AvroEventEncoder {
        let envelope = envelope_schema(row_schema, topic);
        let json = crate::avro_schema::from_connect(&envelope, "Envelope");
        let avro = apache_avro::Schema::parse(&json).expect("rendered Avro schemas parse");
        AvroEventEncoder {
            schema_id,
            schema_text: json.to_string(),
            envelope,
            avro,
        }
    }

    pub fn encode(&self, e: &ChangeEvent, ph: &Placeholder) -> Result<Vec<u8>, apache_avro::Error> {
        let v = avro_value(&envelope_value(e), &self.envelope, ph);
        let body = apache_avro::to_avro_datum(&self.avro, v)?;
        Ok(confluent_frame(self.schema_id, &body))
    }
}

/// `Decimal` helper for generators: `unscaled × 10^-scale`.
pub fn decimal(unscaled: i128, scale: i32) -> Value {
    Value::Decimal(Decimal { unscaled, scale })
}
