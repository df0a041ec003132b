//! Avro records in the Confluent wire format: magic byte 0, a 4-byte big-endian schema id, then
//! Avro binary. Schemas come from the registry once per id and are resolved once (see
//! [`crate::avro_schema`]); values then go through the same logical conversions as JSON.

use std::collections::HashMap;
use std::sync::Arc;

use apache_avro::types::Value as Avro;
use serde::de::IgnoredAny;

use crate::avro_schema::AvroSchema;
use tidemark_core::event::{Decoded, KafkaCoords};
use tidemark_core::schema::{Kind, Logical, Schema, StructSchema};
use tidemark_core::value::{Row, TypedRow, Value};

use super::avro_guard;
use super::envelope::{Classified, Images, Members, Routing};
use super::error::{DecodeErrorKind, FieldReason};
use super::json::CachedSchema;
use super::logical;
use tidemark_core::converter::Placeholder;

/// Splits the Confluent framing off an Avro record.
pub fn split_wire(bytes: &[u8]) -> Result<(u32, &[u8]), DecodeErrorKind> {
    match bytes {
        [] => Err(DecodeErrorKind::AvroWire("empty record".into())),
        [0, a, b, c, d, rest @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), rest)),
        [0, ..] => Err(DecodeErrorKind::AvroWire(format!(
            "{} bytes, shorter than the 5-byte header",
            bytes.len()
        ))),
        [m, ..] => Err(DecodeErrorKind::AvroWire(format!(
            "magic byte {m:#04x}, expected 0x00 (is the topic JSON? set kafka.format)"
        ))),
    }
}

/// A registry schema parsed for decoding.
#[derive(Debug)]
pub(crate) struct AvroEntry {
    pub avro: AvroSchema,
    pub cached: CachedSchema,
    /// Named types, for the pre-decode bounds check.
    names: avro_guard::Names,
}

/// Parsed schemas by registry id (ids are immutable).
#[derive(Debug, Default)]
pub(crate) struct AvroCache {
    pub map: HashMap<u32, Arc<AvroEntry>>,
}

impl AvroCache {
    pub(super) fn insert(
        &mut self,
        id: u32,
        text: &str,
    ) -> Result<Arc<AvroEntry>, DecodeErrorKind> {
        let avro = AvroSchema::parse(text)?;
        let cached = CachedSchema::new(avro.connect.clone(), text.to_owned(), Some(id));
        let mut names = avro_guard::Names::new();
        avro_guard::collect_names(&avro.avro, &mut names);
        let entry = Arc::new(AvroEntry {
            avro,
            cached,
            names,
        });
        self.map.insert(id, entry.clone());
        Ok(entry)
    }
}

fn read_datum(entry: &AvroEntry, body: &[u8]) -> Result<Avro, DecodeErrorKind> {
    avro_guard::check(&entry.avro.avro, &entry.names, body).map_err(DecodeErrorKind::Avro)?;
    let mut reader = body;
    let v = apache_avro::from_avro_datum(&entry.avro.avro, &mut reader, None)
        .map_err(|e| DecodeErrorKind::Avro(e.to_string()))?;
    if !reader.is_empty() {
        return Err(DecodeErrorKind::Avro(format!(
            "{} bytes left after the datum (schema id points at another schema?)",
            reader.len()
        )));
    }
    Ok(v)
}

fn unwrap_union(v: Avro) -> Avro {
    match v {
        Avro::Union(_, inner) => unwrap_union(*inner),
        other => other,
    }
}

/// Decodes an Avro key under its entry.
pub(crate) fn decode_key(
    entry: &AvroEntry,
    body: &[u8],
    placeholder: &Placeholder,
) -> Result<Option<Row>, DecodeErrorKind> {
    let v = unwrap_union(read_datum(entry, body)?);
    match (&entry.cached.plain, v) {
        (_, Avro::Null) => Ok(None),
        (Some(st), v) => row(v, st, placeholder, "key").map(Some),
        (None, v) => {
            let json =
                serde_json::Value::try_from(v).map_err(|e| DecodeErrorKind::Avro(e.to_string()))?;
            Ok(Some(Row::Json(json.to_string())))
        }
    }
}

/// Decodes an Avro value under its entry.
pub(crate) fn decode_value(
    entry: &AvroEntry,
    body: &[u8],
    kafka: KafkaCoords,
    key: Option<Row>,
    placeholder: &Placeholder,
    routing: &Routing,
) -> Result<Decoded, DecodeErrorKind> {
    let Avro::Record(fields) = unwrap_union(read_datum(entry, body)?) else {
        return Err(DecodeErrorKind::Envelope(
            "Avro value is not a record".into(),
        ));
    };
    let (mut before, mut after, mut table_changes) = (None, None, None);
    let mut rest = Vec::with_capacity(fields.len());
    for (name, v) in fields {
        match name.as_str() {
            "before" => before = Some(v),
            "after" => after = Some(v),
            "tableChanges" => table_changes = Some(v),
            _ => rest.push((name, v)),
        }
    }
    let rest = Avro::Record(rest);
    let members: Members<IgnoredAny> =
        serde::Deserialize::deserialize(super::avro_serde::AvroDe(&rest))
            .map_err(|e| DecodeErrorKind::Envelope(e.to_string()))?;
    let table_changes = table_changes
        .map(|v| serde_json::Value::try_from(unwrap_union(v)))
        .transpose()
        .map_err(|e| DecodeErrorKind::Avro(e.to_string()))?
        .filter(|j| !j.is_null())
        .map(|j| j.to_string());
    let cached = &entry.cached;
    let classified = Classified {
        kafka,
        key,
        schema: Some(cached.event.clone()),
        schema_name: cached.name.as_deref(),
        table_changes,
    };
    members.into_decoded(routing, classified, || {
        let image = |v: Option<Avro>, st: Option<&Arc<StructSchema>>, root: &str| match (
            v.map(unwrap_union),
            st,
        ) {
            (None | Some(Avro::Null), _) => Ok(None),
            (Some(v), Some(st)) => row(v, st, placeholder, root).map(Some),
            (Some(_), None) => Err(DecodeErrorKind::Envelope(format!(
                "schema has no `{root}` record"
            ))),
        };
        Ok(Images {
            before: image(before, cached.before.as_ref(), "before")?,
            after: image(after, cached.after.as_ref(), "after")?,
        })
    })
}

fn row(
    v: Avro,
    st: &Arc<StructSchema>,
    ph: &Placeholder,
    root: &str,
) -> Result<Row, DecodeErrorKind> {
    let Avro::Record(fields) = v else {
        return Err(DecodeErrorKind::Field {
            path: root.to_owned(),
            reason: FieldReason::WrongType {
                expected: "record".into(),
                found: "other Avro value",
            },
        });
    };
    let values = struct_values(fields, st, ph, root)?;
    Ok(Row::Typed(TypedRow {
        schema: st.clone(),
        values,
    }))
}

fn struct_values(
    fields: Vec<(String, Avro)>,
    st: &StructSchema,
    ph: &Placeholder,
    path: &str,
) -> Result<Vec<Value>, DecodeErrorKind> {
    let mut values = vec![Value::Null; st.fields.len()];
    for (i, (name, v)) in fields.into_iter().enumerate() {
        let idx = if st.fields.get(i).is_some_and(|f| f.name == name) {
            Some(i)
        } else {
            st.index_of(&name)
        };
        if let Some(idx) = idx {
            let fpath = format!("{path}.{name}");
            values[idx] = value(v, &st.fields[idx].schema, ph, &fpath)?;
        }
    }
    Ok(values)
}

/// One Avro value under its Connect schema.
fn value(v: Avro, schema: &Schema, ph: &Placeholder, path: &str) -> Result<Value, DecodeErrorKind> {
    let field = |reason| DecodeErrorKind::Field {
        path: path.to_owned(),
        reason,
    };
    let r = match v {
        Avro::Union(_, inner) => return value(*inner, schema, ph, path),
        Avro::Null => Ok(Value::Null),
        Avro::Boolean(b) => logical::from_bool(schema, b),
        Avro::Int(i) => logical::from_int(schema, i.into()),
        Avro::Long(i) => logical::from_int(schema, i),
        Avro::Float(f) => logical::from_f64(schema, f.into()),
        Avro::Double(f) => logical::from_f64(schema, f),
        Avro::Bytes(b) | Avro::Fixed(_, b) => logical::from_bytes(schema, b, ph),
        Avro::String(s) | Avro::Enum(_, s) => logical::from_string(schema, s, ph),
        Avro::Array(items) => match &schema.kind {
            Kind::Array(item) => {
                let out = items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| value(v, item, ph, &format!("{path}[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?;
                if out.len() == 1 && out[0] == Value::Unavailable {
                    return Ok(Value::Unavailable);
                }
                return Ok(Value::Array(out));
            }
            _ => Err(FieldReason::WrongType {
                expected: logical::expected_name(schema),
                found: "array",
            }),
        },
        Avro::Map(entries) => match &schema.kind {
            Kind::Map(_, vs) => {
                let mut out = Vec::with_capacity(entries.len());
                let mut entries: Vec<_> = entries.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                for (k, v) in entries {
                    let vv = value(v, vs, ph, &format!("{path}.{k}"))?;
                    out.push((Value::String(k), vv));
                }
                return Ok(Value::Map(out));
            }
            _ => Err(FieldReason::WrongType {
                expected: logical::expected_name(schema),
                found: "map",
            }),
        },
        Avro::Record(fields) => match &schema.kind {
            Kind::Struct(st) => {
                let values = struct_values(fields, st, ph, path)?;
                if schema.logical == Logical::VariableScaleDecimal
                    && let (Some(s), Some(v)) = (st.index_of("scale"), st.index_of("value"))
                {
                    return logical::variable_scale(&values[s], &values[v]).map_err(field);
                }
                return Ok(Value::Struct(values));
            }
            _ => Err(FieldReason::WrongType {
                expected: logical::expected_name(schema),
                found: "record",
            }),
        },
        other => Err(FieldReason::Other(format!(
            "unexpected Avro value {other:?}"
        ))),
    };
    r.map_err(field)
}
