//! Avro schemas (as Debezium's AvroConverter registers them) ↔ the Connect schema model.
//!
//! Debezium marks semantic types with `connect.name` / `connect.parameters` (and sometimes an Avro
//! `logicalType`). We read those into [`Logical`] once, then hand apache-avro a copy *without*
//! `logicalType`, so every value arrives in its physical form and goes through the same
//! conversions as JSON (one decoder of Decimal bytes, one of MicroTimestamp, …).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{Map, Value as Json, json};

use tidemark_core::schema::{Field, Kind, Logical, Schema, SchemaError, StructSchema};

/// A registry schema ready for decoding.
#[derive(Debug)]
pub struct AvroSchema {
    /// What apache-avro reads with (logical types stripped).
    pub avro: apache_avro::Schema,
    /// The same schema in the Connect model.
    pub connect: Schema,
    /// The schema text as registered.
    pub text: String,
}

fn invalid(path: &str, reason: impl Into<String>) -> SchemaError {
    SchemaError::Invalid {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

impl AvroSchema {
    /// Parses registered Avro schema text.
    pub fn parse(text: &str) -> Result<AvroSchema, SchemaError> {
        let mut json: Json = serde_json::from_str(text).map_err(|e| invalid("", e.to_string()))?;
        let mut names = HashMap::new();
        let connect = to_connect(&json, None, &mut names, "")?;
        strip_logical_types(&mut json);
        let avro = apache_avro::Schema::parse(&json).map_err(|e| invalid("", e.to_string()))?;
        Ok(AvroSchema {
            avro,
            connect,
            text: text.to_owned(),
        })
    }
}

fn strip_logical_types(v: &mut Json) {
    match v {
        Json::Object(m) => {
            m.remove("logicalType");
            m.values_mut().for_each(strip_logical_types);
        }
        Json::Array(a) => a.iter_mut().for_each(strip_logical_types),
        _ => {}
    }
}

fn full_name(name: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if !name.contains('.') && !ns.is_empty() => format!("{ns}.{name}"),
        _ => name.to_owned(),
    }
}

fn to_connect(
    v: &Json,
    namespace: Option<&str>,
    names: &mut HashMap<String, Schema>,
    path: &str,
) -> Result<Schema, SchemaError> {
    match v {
        Json::String(t) => primitive_or_named(t, namespace, names, path),
        Json::Array(branches) => {
            // Connect only writes unions as ["null", T] for optional values.
            let non_null: Vec<&Json> = branches.iter().filter(|b| *b != "null").collect();
            if non_null.len() != 1 {
                return Err(invalid(
                    path,
                    "unions other than [\"null\", T] are not Kafka Connect schemas",
                ));
            }
            let mut s = to_connect(non_null[0], namespace, names, path)?;
            s.optional = branches.len() > 1;
            Ok(s)
        }
        Json::Object(m) => object_schema(m, namespace, names, path),
        _ => Err(invalid(path, "schema must be a string, array or object")),
    }
}

fn primitive_or_named(
    t: &str,
    namespace: Option<&str>,
    names: &mut HashMap<String, Schema>,
    path: &str,
) -> Result<Schema, SchemaError> {
    let kind = match t {
        "int" => Kind::Int32,
        "long" => Kind::Int64,
        "float" => Kind::Float32,
        "double" => Kind::Float64,
        "boolean" => Kind::Boolean,
        "string" => Kind::String,
        "bytes" => Kind::Bytes,
        named => {
            return names
                .get(&full_name(named, namespace))
                .or_else(|| names.get(named))
                .cloned()
                .ok_or_else(|| SchemaError::UnknownType {
                    path: path.to_owned(),
                    found: named.to_owned(),
                });
        }
    };
    Ok(Schema::plain(kind, false))
}

fn object_schema(
    m: &Map<String, Json>,
    namespace: Option<&str>,
    names: &mut HashMap<String, Schema>,
    path: &str,
) -> Result<Schema, SchemaError> {
    let ty = m
        .get("type")
        .ok_or_else(|| invalid(path, "missing `type`"))?;
    let ns = m.get("namespace").and_then(Json::as_str).or(namespace);
    let connect_name = m.get("connect.name").and_then(Json::as_str);
    let mut params: BTreeMap<String, String> = m
        .get("connect.parameters")
        .and_then(Json::as_object)
        .map(|p| {
            p.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let kind = match ty {
        Json::String(t) if t == "record" => {
            let name = m
                .get("name")
                .and_then(Json::as_str)
                .ok_or_else(|| invalid(path, "record without name"))?;
            let full = full_name(name, ns);
            let record_ns = full.rsplit_once('.').map(|(n, _)| n.to_owned());
            let mut fields = Vec::new();
            for f in m
                .get("fields")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
            {
                let fname = f
                    .get("name")
                    .and_then(Json::as_str)
                    .ok_or_else(|| invalid(path, "field without name"))?;
                let fpath = if path.is_empty() {
                    fname.to_owned()
                } else {
                    format!("{path}.{fname}")
                };
                let ftype = f
                    .get("type")
                    .ok_or_else(|| invalid(&fpath, "field without type"))?;
                let schema = to_connect(ftype, record_ns.as_deref(), names, &fpath)?;
                fields.push(Field {
                    name: fname.to_owned(),
                    schema,
                });
            }
            let st = Schema::with_name(
                Kind::Struct(Arc::new(StructSchema::new(
                    Some(connect_name.unwrap_or(&full).to_owned()),
                    fields,
                ))),
                false,
                Some(connect_name.unwrap_or(&full).to_owned()),
                &params,
                path,
            )?;
            names.insert(full, st.clone());
            return Ok(st);
        }
        Json::String(t) if t == "array" => {
            let items = m
                .get("items")
                .ok_or_else(|| invalid(path, "array without items"))?;
            Kind::Array(Box::new(to_connect(
                items,
                ns,
                names,
                &format!("{path}[]"),
            )?))
        }
        Json::String(t) if t == "map" => {
            let values = m
                .get("values")
                .ok_or_else(|| invalid(path, "map without values"))?;
            Kind::Map(
                Box::new(Schema::plain(Kind::String, false)),
                Box::new(to_connect(values, ns, names, path)?),
            )
        }
        Json::String(t) if t == "enum" => {
            let name = m.get("name").and_then(Json::as_str).unwrap_or("enum");
            let symbols: Vec<String> = m
                .get("symbols")
                .and_then(Json::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let s = Schema {
                kind: Kind::String,
                optional: false,
                logical: Logical::Enum { allowed: symbols },
                name: Some(full_name(name, ns)),
            };
            names.insert(full_name(name, ns), s.clone());
            return Ok(s);
        }
        Json::String(t) if t == "fixed" => {
            let name = m.get("name").and_then(Json::as_str).unwrap_or("fixed");
            let s = Schema::plain(Kind::Bytes, false);
            names.insert(full_name(name, ns), s.clone());
            Kind::Bytes
        }
        // `{"type": "int", "connect.type": "int16", ...}` and nested type objects.
        other => {
            let base = to_connect(other, ns, names, path)?;
            match (m.get("connect.type").and_then(Json::as_str), base.kind) {
                (Some("int8"), Kind::Int32) => Kind::Int8,
                (Some("int16"), Kind::Int32) => Kind::Int16,
                (_, k) => k,
            }
        }
    };
    // Plain Avro logical types, for producers that are not Kafka Connect.
    let name = connect_name.map(str::to_owned).or_else(|| {
        let lt = m.get("logicalType").and_then(Json::as_str)?;
        let mapped = match lt {
            "decimal" => {
                let scale = m.get("scale").and_then(Json::as_i64).unwrap_or(0);
                params
                    .entry("scale".into())
                    .or_insert_with(|| scale.to_string());
                if let Some(p) = m.get("precision").and_then(Json::as_i64) {
                    params
                        .entry("connect.decimal.precision".into())
                        .or_insert_with(|| p.to_string());
                }
                "org.apache.kafka.connect.data.Decimal"
            }
            "date" => "io.debezium.time.Date",
            "time-millis" => "io.debezium.time.Time",
            "time-micros" => "io.debezium.time.MicroTime",
            "timestamp-millis" | "local-timestamp-millis" => "io.debezium.time.Timestamp",
            "timestamp-micros" | "local-timestamp-micros" => "io.debezium.time.MicroTimestamp",
            "timestamp-nanos" | "local-timestamp-nanos" => "io.debezium.time.NanoTimestamp",
            "uuid" => "io.debezium.data.Uuid",
            _ => return None,
        };
        Some(mapped.to_owned())
    });
    Schema::with_name(kind, false, name, &params, path)
}

/// Renders a Connect schema as Avro schema JSON the way Debezium's AvroConverter does
/// (`connect.name`, `connect.parameters`, optional values as `["null", T]` with default null).
pub fn from_connect(schema: &Schema, record_name: &str) -> Json {
    let mut seen = HashMap::new();
    render(schema, record_name, &mut seen)
}

fn render(schema: &Schema, name_hint: &str, seen: &mut HashMap<String, ()>) -> Json {
    let mut obj = Map::new();
    let ty: Json = match &schema.kind {
        Kind::Int8 | Kind::Int16 | Kind::Int32 => {
            if matches!(schema.kind, Kind::Int8 | Kind::Int16) {
                obj.insert("connect.type".into(), json!(schema.kind.name()));
            }
            json!("int")
        }
        Kind::Int64 => json!("long"),
        Kind::Float32 => json!("float"),
        Kind::Float64 => json!("double"),
        Kind::Boolean => json!("boolean"),
        Kind::String => json!("string"),
        Kind::Bytes => json!("bytes"),
        Kind::Array(items) => {
            obj.insert(
                "items".into(),
                render(items, &format!("{name_hint}_item"), seen),
            );
            json!("array")
        }
        Kind::Map(_, v) => {
            obj.insert(
                "values".into(),
                render(v, &format!("{name_hint}_value"), seen),
            );
            json!("map")
        }
        Kind::Struct(st) => {
            let name = st.name.clone().unwrap_or_else(|| name_hint.to_owned());
            // Avro names are dotted identifiers; Connect struct names may be too.
            let name: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            if seen.insert(name.clone(), ()).is_some() {
                return optional(schema, json!(name));
            }
            let fields: Vec<Json> = st
                .fields
                .iter()
                .map(|f| {
                    let mut fj = Map::new();
                    fj.insert("name".into(), json!(f.name));
                    fj.insert(
                        "type".into(),
                        render(&f.schema, &format!("{name}_{}", f.name), seen),
                    );
                    if f.schema.optional {
                        fj.insert("default".into(), Json::Null);
                    }
                    Json::Object(fj)
                })
                .collect();
            obj.insert("name".into(), json!(name));
            obj.insert("fields".into(), Json::Array(fields));
            json!("record")
        }
    };
    obj.insert("type".into(), ty);
    if let (Some(n), false) = (&schema.name, matches!(schema.kind, Kind::Struct(_))) {
        obj.insert("connect.name".into(), json!(n));
    } else if let (Some(n), true) = (&schema.name, schema.logical != Logical::None) {
        obj.insert("connect.name".into(), json!(n));
    }
    let params = match &schema.logical {
        Logical::Decimal { scale, precision } => {
            let mut p = Map::new();
            p.insert("scale".into(), json!(scale.to_string()));
            if let Some(prec) = precision {
                p.insert("connect.decimal.precision".into(), json!(prec.to_string()));
            }
            Some(p)
        }
        Logical::Enum { allowed } => {
            let mut p = Map::new();
            p.insert("allowed".into(), json!(allowed.join(",")));
            Some(p)
        }
        _ => None,
    };
    if let Some(p) = params {
        obj.insert("connect.parameters".into(), Json::Object(p));
    }
    let plain = obj.len() == 1;
    let body = if plain {
        obj.remove("type").expect("type set")
    } else {
        Json::Object(obj)
    };
    optional(schema, body)
}

fn optional(schema: &Schema, body: Json) -> Json {
    if schema.optional {
        json!(["null", body])
    } else {
        body
    }
}
