//! The Kafka Connect schema model that Debezium writes, and its logical types.
//!
//! Both wire forms end here: the JsonConverter `schema` member is parsed by [`Schema::from_json`],
//! an Avro schema from the registry by [`crate::avro_schema`]. Logical types are resolved once,
//! when the schema is parsed, so decoding a value never looks at a type name.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Deserialize;

/// A schema could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("schema at `{path}`: unknown type `{found}`")]
    UnknownType { path: String, found: String },
    #[error(
        "schema at `{path}`: unknown logical type `{name}` (a Kafka Connect / Debezium semantic \
         type this version of tidemark does not decode; set the connector's handling mode to a \
         primitive form or report it)"
    )]
    UnknownLogicalType { path: String, name: String },
    #[error("schema at `{path}`: logical type `{name}` cannot be carried by `{physical}`")]
    LogicalTypeMismatch {
        path: String,
        name: String,
        physical: &'static str,
    },
    #[error("schema at `{path}`: {reason}")]
    Invalid { path: String, reason: String },
}

/// The physical Connect types.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Int8,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Boolean,
    String,
    Bytes,
    Array(Box<Schema>),
    Map(Box<Schema>, Box<Schema>),
    Struct(Arc<StructSchema>),
}

impl Kind {
    /// The JsonConverter spelling of the type.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Int8 => "int8",
            Kind::Int16 => "int16",
            Kind::Int32 => "int32",
            Kind::Int64 => "int64",
            Kind::Float32 => "float",
            Kind::Float64 => "double",
            Kind::Boolean => "boolean",
            Kind::String => "string",
            Kind::Bytes => "bytes",
            Kind::Array(_) => "array",
            Kind::Map(..) => "map",
            Kind::Struct(_) => "struct",
        }
    }
}

/// Semantic types layered on a physical type (Kafka Connect and Debezium names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Logical {
    None,
    /// `org.apache.kafka.connect.data.Decimal`: bytes, fixed scale.
    Decimal {
        scale: i32,
        precision: Option<u32>,
    },
    /// `io.debezium.data.VariableScaleDecimal`: struct {scale, value}.
    VariableScaleDecimal,
    /// `io.debezium.time.Date` / `org.apache.kafka.connect.data.Date`: int32 days.
    Date,
    /// `io.debezium.time.Time` / `org.apache.kafka.connect.data.Time`: int32 ms past midnight.
    TimeMillis,
    /// `io.debezium.time.MicroTime`: int64 µs past midnight.
    TimeMicros,
    /// `io.debezium.time.NanoTime`: int64 ns past midnight.
    TimeNanos,
    /// A time column of a connector whose TIME is a signed duration, not a time of day (MySQL
    /// and MariaDB: `-838:59:59` … `838:59:59`); the unit is the wire's.
    Duration(crate::value::TimeUnit),
    /// `io.debezium.time.Timestamp` / `org.apache.kafka.connect.data.Timestamp`: int64 ms.
    TimestampMillis,
    /// `io.debezium.time.MicroTimestamp`: int64 µs.
    TimestampMicros,
    /// `io.debezium.time.NanoTimestamp`: int64 ns.
    TimestampNanos,
    /// `io.debezium.time.ZonedTimestamp`: ISO-8601 string with offset.
    ZonedTimestamp,
    /// `io.debezium.time.ZonedTime`: ISO-8601 time with offset, kept as text.
    ZonedTime,
    /// `io.debezium.data.Json`: a string holding a JSON document.
    Json,
    /// `io.debezium.data.Uuid`.
    Uuid,
    /// `io.debezium.data.Enum` with its allowed values.
    Enum {
        allowed: Vec<String>,
    },
    /// Named Debezium types whose physical value is already the meaning (Year, Bits, Xml,
    /// EnumSet, Interval, MicroDuration, Ltree, …): kept as their physical value.
    Passthrough(String),
}

/// A Connect schema: a physical kind, optionality, and a logical type.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    pub kind: Kind,
    pub optional: bool,
    pub logical: Logical,
    /// The schema's `name` (record names like `server.inventory.customers.Value` too).
    pub name: Option<String>,
}

/// A struct's fields, with a name index for out-of-order members.
#[derive(Debug, Clone)]
pub struct StructSchema {
    pub name: Option<String>,
    pub fields: Vec<Field>,
    index: HashMap<String, usize>,
}

impl PartialEq for StructSchema {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.fields == other.fields
    }
}

/// A named field of a struct.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub schema: Schema,
}

impl StructSchema {
    pub fn new(name: Option<String>, fields: Vec<Field>) -> StructSchema {
        let index = fields
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.clone(), i))
            .collect();
        StructSchema {
            name,
            fields,
            index,
        }
    }

    /// The position of a field by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// The field by name.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.index_of(name).map(|i| &self.fields[i])
    }
}

impl Schema {
    /// A schema without a logical type.
    pub fn plain(kind: Kind, optional: bool) -> Schema {
        Schema {
            kind,
            optional,
            logical: Logical::None,
            name: None,
        }
    }

    /// The struct behind this schema, if it is one.
    pub fn as_struct(&self) -> Option<&Arc<StructSchema>> {
        match &self.kind {
            Kind::Struct(s) => Some(s),
            _ => None,
        }
    }

    /// Parses a JsonConverter schema (`{"type":"struct","fields":[…]}`).
    pub fn from_json(text: &str) -> Result<Schema, SchemaError> {
        let raw: RawSchema = serde_json::from_str(text).map_err(|e| SchemaError::Invalid {
            path: String::new(),
            reason: e.to_string(),
        })?;
        raw.into_schema("")
    }

    /// Builds a schema from a physical kind plus an optional logical-type name and its
    /// parameters, checking that the two fit together. Shared by the JSON and Avro parsers.
    pub fn with_name(
        kind: Kind,
        optional: bool,
        name: Option<String>,
        parameters: &BTreeMap<String, String>,
        path: &str,
    ) -> Result<Schema, SchemaError> {
        let logical = match name.as_deref() {
            None => Logical::None,
            Some(n) => logical_for(n, &kind, parameters, path)?,
        };
        Ok(Schema {
            kind,
            optional,
            logical,
            name,
        })
    }
}

/// Source blocks of connectors whose TIME columns are durations (MySQL's TIME spans ±838 hours).
const DURATION_TIME_SOURCES: &[&str] = &[
    "io.debezium.connector.mysql.Source",
    "io.debezium.connector.mariadb.Source",
];

impl Schema {
    /// The envelope with its row images' time columns read as durations when its `source` block
    /// names a connector whose TIME is a duration: a time of day would wrap 100:00:00 to
    /// 04:00:00, and readers refuse a time past midnight. Other schemas are returned as they are.
    pub fn with_connector_times(self) -> Schema {
        let Some(st) = self.as_struct() else {
            return self;
        };
        let durations = st
            .field("source")
            .and_then(|f| f.schema.name.as_deref())
            .is_some_and(|n| DURATION_TIME_SOURCES.contains(&n));
        if !durations {
            return self;
        }
        let fields = st
            .fields
            .iter()
            .map(|f| match f.name.as_str() {
                "before" | "after" => Field {
                    name: f.name.clone(),
                    schema: times_as_durations(&f.schema),
                },
                _ => f.clone(),
            })
            .collect();
        Schema {
            kind: Kind::Struct(Arc::new(StructSchema::new(st.name.clone(), fields))),
            ..self
        }
    }
}

fn times_as_durations(row: &Schema) -> Schema {
    use crate::value::TimeUnit;
    let Some(st) = row.as_struct() else {
        return row.clone();
    };
    let fields = st
        .fields
        .iter()
        .map(|f| {
            let unit = match f.schema.logical {
                Logical::TimeMillis => TimeUnit::Millis,
                Logical::TimeMicros => TimeUnit::Micros,
                Logical::TimeNanos => TimeUnit::Nanos,
                _ => return f.clone(),
            };
            let mut schema = f.schema.clone();
            schema.logical = Logical::Duration(unit);
            Field {
                name: f.name.clone(),
                schema,
            }
        })
        .collect();
    Schema {
        kind: Kind::Struct(Arc::new(StructSchema::new(st.name.clone(), fields))),
        ..row.clone()
    }
}

/// Debezium/Connect names that only label a physical value (no conversion needed).
const PASSTHROUGH: &[&str] = &[
    "io.debezium.time.Year",
    "io.debezium.time.MicroDuration",
    "io.debezium.time.NanoDuration",
    "io.debezium.time.Interval",
    "io.debezium.time.IsoDate",
    "io.debezium.time.IsoTime",
    "io.debezium.time.IsoTimestamp",
    "io.debezium.data.Bits",
    "io.debezium.data.Xml",
    "io.debezium.data.EnumSet",
    "io.debezium.data.Ltree",
    "io.debezium.data.Enum",
    "io.debezium.data.geometry.Geometry",
    "io.debezium.data.geometry.Geography",
    "io.debezium.data.geometry.Point",
    "io.debezium.data.SparseVector",
    "io.debezium.data.DoubleVector",
    "io.debezium.data.FloatVector",
];

fn logical_for(
    name: &str,
    kind: &Kind,
    params: &BTreeMap<String, String>,
    path: &str,
) -> Result<Logical, SchemaError> {
    use Logical as L;
    let (logical, fits) = match name {
        "org.apache.kafka.connect.data.Decimal" => {
            let scale = params
                .get("scale")
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| SchemaError::Invalid {
                    path: path.to_owned(),
                    reason: "Decimal without an integer `scale` parameter".into(),
                })?;
            let precision = params
                .get("connect.decimal.precision")
                .and_then(|s| s.parse().ok());
            (L::Decimal { scale, precision }, *kind == Kind::Bytes)
        }
        "io.debezium.data.VariableScaleDecimal" => {
            let ok = matches!(kind, Kind::Struct(s)
                if s.field("scale").is_some() && s.field("value").is_some_and(|f| f.schema.kind == Kind::Bytes));
            (L::VariableScaleDecimal, ok)
        }
        "io.debezium.time.Date" | "org.apache.kafka.connect.data.Date" => {
            (L::Date, *kind == Kind::Int32)
        }
        "io.debezium.time.Time" | "org.apache.kafka.connect.data.Time" => {
            (L::TimeMillis, *kind == Kind::Int32)
        }
        "io.debezium.time.MicroTime" => (L::TimeMicros, *kind == Kind::Int64),
        "io.debezium.time.NanoTime" => (L::TimeNanos, *kind == Kind::Int64),
        "io.debezium.time.Timestamp" | "org.apache.kafka.connect.data.Timestamp" => {
            (L::TimestampMillis, *kind == Kind::Int64)
        }
        "io.debezium.time.MicroTimestamp" => (L::TimestampMicros, *kind == Kind::Int64),
        "io.debezium.time.NanoTimestamp" => (L::TimestampNanos, *kind == Kind::Int64),
        "io.debezium.time.ZonedTimestamp" => (L::ZonedTimestamp, *kind == Kind::String),
        "io.debezium.time.ZonedTime" => (L::ZonedTime, *kind == Kind::String),
        "io.debezium.data.Json" => (L::Json, *kind == Kind::String),
        "io.debezium.data.Uuid" => (L::Uuid, *kind == Kind::String),
        "io.debezium.data.Enum" if *kind == Kind::String => {
            let allowed = params
                .get("allowed")
                .map(|a| a.split(',').map(str::to_owned).collect())
                .unwrap_or_default();
            (L::Enum { allowed }, true)
        }
        n if PASSTHROUGH.contains(&n) => (L::Passthrough(n.to_owned()), true),
        // Record names and user-defined names on structs are not semantic types.
        _ if matches!(kind, Kind::Struct(_)) => (L::None, true),
        n if n.starts_with("io.debezium.") || n.starts_with("org.apache.kafka.connect.") => {
            return Err(SchemaError::UnknownLogicalType {
                path: path.to_owned(),
                name: n.to_owned(),
            });
        }
        _ => (L::None, true),
    };
    if fits {
        Ok(logical)
    } else {
        Err(SchemaError::LogicalTypeMismatch {
            path: path.to_owned(),
            name: name.to_owned(),
            physical: kind.name(),
        })
    }
}

/// JsonConverter's schema JSON, member order free.
#[derive(Deserialize)]
struct RawSchema {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    optional: bool,
    name: Option<String>,
    #[serde(default)]
    parameters: BTreeMap<String, ParamValue>,
    field: Option<String>,
    fields: Option<Vec<RawSchema>>,
    items: Option<Box<RawSchema>>,
    keys: Option<Box<RawSchema>>,
    values: Option<Box<RawSchema>>,
}

/// Connect parameters are strings, but hand-written schemas use numbers too.
#[derive(Deserialize)]
#[serde(untagged)]
enum ParamValue {
    Text(String),
    Number(serde_json::Number),
    Bool(bool),
}

impl RawSchema {
    fn into_schema(self, path: &str) -> Result<Schema, SchemaError> {
        let kind_name = self.kind.ok_or_else(|| SchemaError::Invalid {
            path: path.to_owned(),
            reason: "missing `type`".into(),
        })?;
        let child = |name: &str| {
            if path.is_empty() {
                name.to_owned()
            } else {
                format!("{path}.{name}")
            }
        };
        let missing = |member: &str| SchemaError::Invalid {
            path: path.to_owned(),
            reason: format!("`{kind_name}` without `{member}`"),
        };
        let kind = match kind_name.as_str() {
            "int8" => Kind::Int8,
            "int16" => Kind::Int16,
            "int32" => Kind::Int32,
            "int64" => Kind::Int64,
            "float" | "float32" => Kind::Float32,
            "double" | "float64" => Kind::Float64,
            "boolean" => Kind::Boolean,
            "string" => Kind::String,
            "bytes" => Kind::Bytes,
            "array" => {
                let items = self.items.ok_or_else(|| missing("items"))?;
                Kind::Array(Box::new(items.into_schema(&format!("{path}[]"))?))
            }
            "map" => {
                let k = self.keys.ok_or_else(|| missing("keys"))?;
                let v = self.values.ok_or_else(|| missing("values"))?;
                Kind::Map(
                    Box::new(k.into_schema(&child("<key>"))?),
                    Box::new(v.into_schema(&child("<value>"))?),
                )
            }
            "struct" => {
                let mut fields = Vec::new();
                for f in self.fields.unwrap_or_default() {
                    let fname = f.field.clone().ok_or_else(|| SchemaError::Invalid {
                        path: path.to_owned(),
                        reason: "struct field without `field` name".into(),
                    })?;
                    let schema = f.into_schema(&child(&fname))?;
                    fields.push(Field {
                        name: fname,
                        schema,
                    });
                }
                Kind::Struct(Arc::new(StructSchema::new(self.name.clone(), fields)))
            }
            other => {
                return Err(SchemaError::UnknownType {
                    path: path.to_owned(),
                    found: other.to_owned(),
                });
            }
        };
        let params = self
            .parameters
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    ParamValue::Text(s) => s,
                    ParamValue::Number(n) => n.to_string(),
                    ParamValue::Bool(b) => b.to_string(),
                };
                (k, v)
            })
            .collect();
        Schema::with_name(kind, self.optional, self.name, &params, path)
    }
}

/// A stable 64-bit fingerprint of schema text (xxh3), printed as 16 hex digits.
pub fn fingerprint(text: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logical_types_resolve_once() {
        let s = Schema::from_json(
            r#"{"type":"struct","fields":[
              {"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"2"},"field":"p"},
              {"type":"int32","name":"io.debezium.time.Date","field":"d"},
              {"type":"string","name":"io.debezium.data.Enum","parameters":{"allowed":"a,b"},"field":"e"}
            ],"name":"x.Value"}"#,
        )
        .unwrap();
        let st = s.as_struct().unwrap();
        assert_eq!(
            st.fields[0].schema.logical,
            Logical::Decimal {
                scale: 2,
                precision: None
            }
        );
        assert_eq!(st.field("d").unwrap().schema.logical, Logical::Date);
        assert_eq!(
            st.field("e").unwrap().schema.logical,
            Logical::Enum {
                allowed: vec!["a".into(), "b".into()]
            }
        );
    }

    #[test]
    fn unknown_and_mismatched_logical_types_are_typed_errors() {
        let e =
            Schema::from_json(r#"{"type":"int64","name":"io.debezium.time.Bogus"}"#).unwrap_err();
        assert!(
            matches!(e, SchemaError::UnknownLogicalType { name, .. } if name == "io.debezium.time.Bogus")
        );
        let e =
            Schema::from_json(r#"{"type":"string","name":"io.debezium.time.Date"}"#).unwrap_err();
        assert!(matches!(e, SchemaError::LogicalTypeMismatch { .. }));
        // A user-defined name on a primitive is only a label.
        let s = Schema::from_json(r#"{"type":"string","name":"com.acme.Sku"}"#).unwrap();
        assert_eq!(s.logical, Logical::None);
    }
}
