//! A readable JSON rendering of decoded records (for `tidemark inspect decode` and logs):
//! decimals as exact strings, temporal values in ISO-8601, the TOAST placeholder as
//! `{"$unavailable": true}`, bytes as `{"$base64": …}`.

use base64::Engine as _;
use serde_json::{Map, Value as Json, json};

use crate::event::{Decoded, KafkaCoords, Source};
use crate::value::{Row, Value, date_from_days, time_from_nanos};

/// One value.
pub fn value(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Unavailable => json!({ "$unavailable": true }),
        Value::Bool(b) => json!(b),
        Value::Int(i) => json!(i),
        Value::Float(f) => json!(f),
        Value::String(s) => json!(s),
        Value::Bytes(b) => {
            json!({ "$base64": base64::engine::general_purpose::STANDARD.encode(b) })
        }
        Value::Decimal(d) => json!(d.to_string()),
        Value::Date(d) => {
            date_from_days(*d).map_or_else(|| json!({ "$days": d }), |d| json!(d.to_string()))
        }
        Value::Time(n) => time_from_nanos(*n).map_or_else(
            || json!({ "$nanos": n }),
            |t| json!(t.format("%H:%M:%S%.f").to_string()),
        ),
        Value::Duration(n) => json!(crate::value::duration_text(*n)),
        Value::Timestamp(t) => json!(t.to_string()),
        Value::Json(text) => serde_json::from_str(text).unwrap_or_else(|_| json!(text)),
        Value::Uuid(u) => json!(u.to_string()),
        Value::Array(items) => Json::Array(items.iter().map(value).collect()),
        Value::Struct(values) => Json::Array(values.iter().map(value).collect()),
        Value::Map(entries) => Json::Array(
            entries
                .iter()
                .map(|(k, v)| json!([value(k), value(v)]))
                .collect(),
        ),
    }
}

/// A row image: typed rows as an object of columns, schemaless rows as their JSON.
pub fn row(r: &Row) -> Json {
    match r {
        Row::Typed(t) => Json::Object(
            t.schema
                .fields
                .iter()
                .zip(&t.values)
                .map(|(f, v)| {
                    let rendered = match (v, f.schema.as_struct()) {
                        (Value::Struct(vals), Some(st)) => {
                            row(&Row::Typed(crate::value::TypedRow {
                                schema: st.clone(),
                                values: vals.clone(),
                            }))
                        }
                        _ => value(v),
                    };
                    (f.name.clone(), rendered)
                })
                .collect(),
        ),
        Row::Json(text) => serde_json::from_str(text).unwrap_or_else(|_| json!(text)),
    }
}

fn opt_row(r: &Option<Row>) -> Json {
    r.as_ref().map_or(Json::Null, row)
}

fn kafka(k: &KafkaCoords) -> Json {
    json!({ "topic": k.topic, "partition": k.partition, "offset": k.offset, "timestamp_ms": k.timestamp_ms })
}

fn source(s: &Source) -> Json {
    let mut m = Map::new();
    let mut put = |k: &str, v: Json| {
        if !v.is_null() {
            m.insert(k.to_owned(), v);
        }
    };
    put("connector", json!(s.connector));
    put("name", json!(s.name));
    put("version", json!(s.version));
    put("db", json!(s.db));
    put("schema", json!(s.schema));
    put("table", json!(s.table));
    put("ts_ms", json!(s.ts_ms));
    put("ts_us", json!(s.ts_us));
    put("ts_ns", json!(s.ts_ns));
    put("snapshot", json!(s.snapshot.as_ref().map(|x| x.as_str())));
    put("txId", json!(s.tx_id));
    put("lsn", json!(s.lsn));
    put("lsn_text", json!(s.pg_lsn_text()));
    put("sequence", json!(s.sequence));
    put("file", json!(s.file));
    put("pos", json!(s.pos));
    put("row", json!(s.row));
    put("gtid", json!(s.gtid));
    put("position", json!(s.position().to_string()));
    Json::Object(m)
}

/// A whole decoded record.
pub fn decoded(d: &Decoded) -> Json {
    match d {
        Decoded::Change(e) => json!({
            "kind": "change",
            "op": e.op.code(),
            "kafka": kafka(&e.kafka),
            "key": opt_row(&e.key),
            "before": opt_row(&e.before),
            "after": opt_row(&e.after),
            "source": source(&e.source),
            "ts_ms": e.ts_ms,
            "transaction": e.transaction.as_ref().map(|t| json!({"id": t.id, "total_order": t.total_order, "data_collection_order": t.data_collection_order})),
            "schema_fingerprint": e.schema.as_ref().map(|s| format!("{:016x}", s.fingerprint)),
        }),
        Decoded::Tombstone(t) => {
            json!({ "kind": "tombstone", "kafka": kafka(&t.kafka), "key": opt_row(&t.key) })
        }
        Decoded::Message(m) => json!({
            "kind": "message",
            "kafka": kafka(&m.kafka),
            "prefix": m.prefix,
            "content_base64": base64::engine::general_purpose::STANDARD.encode(&m.content),
            "content_utf8": std::str::from_utf8(&m.content).ok(),
            "source": source(&m.source),
        }),
        Decoded::Transaction(t) => json!({
            "kind": "transaction",
            "kafka": kafka(&t.kafka),
            "status": format!("{:?}", t.status).to_uppercase(),
            "id": t.id,
            "event_count": t.event_count,
            "data_collections": t.data_collections.iter().map(|(n, c)| json!({"data_collection": n, "event_count": c})).collect::<Vec<_>>(),
        }),
        Decoded::Heartbeat(h) => {
            json!({ "kind": "heartbeat", "kafka": kafka(&h.kafka), "ts_ms": h.ts_ms })
        }
        Decoded::SchemaChange(s) => json!({
            "kind": "schema_change",
            "kafka": kafka(&s.kafka),
            "database": s.database,
            "schema": s.schema,
            "ddl": s.ddl,
            "table_changes": s.table_changes.as_deref().and_then(|t| serde_json::from_str::<Json>(t).ok()),
        }),
    }
}
