//! Schema-driven JSON decoding of row images: one pass over the text, straight into [`Value`]s,
//! no intermediate `serde_json::Value`.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use tidemark_core::schema::{Kind, Logical, Schema, StructSchema};
use tidemark_core::value::{TypedRow, Value};

use super::error::FieldReason;
use super::logical;
use tidemark_core::converter::Placeholder;

/// A field path, built only when an error needs printing.
#[derive(Clone, Copy)]
pub(crate) enum Path<'a> {
    Root(&'a str),
    Field(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root(r) => f.write_str(r),
            Path::Field(p, name) => write!(f, "{p}.{name}"),
            Path::Index(p, i) => write!(f, "{p}[{i}]"),
        }
    }
}

/// Shared state of one decode: the placeholder, and the first field error (kept typed here
/// because serde errors only carry a message).
pub(crate) struct Ctx<'c> {
    pub placeholder: &'c Placeholder,
    pub error: RefCell<Option<(String, FieldReason)>>,
}

impl<'c> Ctx<'c> {
    pub(super) fn new(placeholder: &'c Placeholder) -> Self {
        Ctx {
            placeholder,
            error: RefCell::new(None),
        }
    }

    fn fail<E: de::Error>(&self, path: &Path<'_>, reason: FieldReason) -> E {
        let msg = format!("field `{path}`: {reason}");
        self.error
            .borrow_mut()
            .get_or_insert_with(|| (path.to_string(), reason));
        E::custom(msg)
    }
}

/// Decodes a JSON object under a struct schema into a typed row.
pub(crate) fn decode_row(
    text: &str,
    schema: &Arc<StructSchema>,
    ctx: &Ctx<'_>,
    root: &str,
) -> Result<TypedRow, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let values = StructSeed {
        schema,
        ctx,
        path: Path::Root(root),
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(TypedRow {
        schema: schema.clone(),
        values,
    })
}

struct StructSeed<'s, 'c, 'p> {
    schema: &'s StructSchema,
    ctx: &'c Ctx<'c>,
    path: Path<'p>,
}

impl<'de> DeserializeSeed<'de> for StructSeed<'_, '_, '_> {
    type Value = Vec<Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for StructSeed<'_, '_, '_> {
    type Value = Vec<Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let fields = &self.schema.fields;
        // Missing members are null (Debezium omits nothing, but hand-made events do).
        let mut values = vec![Value::Null; fields.len()];
        let mut next = 0;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            // Members usually come in schema order: try the expected slot before the index.
            let idx = if fields.get(next).is_some_and(|f| f.name == key) {
                Some(next)
            } else {
                self.schema.index_of(&key)
            };
            match idx {
                Some(i) => {
                    let path = Path::Field(&self.path, &fields[i].name);
                    values[i] = map.next_value_seed(ValueSeed {
                        schema: &fields[i].schema,
                        ctx: self.ctx,
                        path,
                    })?;
                    next = i + 1;
                }
                // Columns the schema does not know are ignored (tolerant reader).
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(values)
    }
}

struct ValueSeed<'s, 'c, 'p> {
    schema: &'s Schema,
    ctx: &'c Ctx<'c>,
    path: Path<'p>,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_, '_, '_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl ValueSeed<'_, '_, '_> {
    fn done<E: de::Error>(&self, r: Result<Value, FieldReason>) -> Result<Value, E> {
        r.map_err(|reason| self.ctx.fail(&self.path, reason))
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_, '_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a value of type {}", self.schema.kind.name())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        // Kafka Connect never writes null into a required field: such an event was not made by
        // a converter, and landing it would put NULL where the schema promises a value.
        if !self.schema.optional {
            return self.done(Err(FieldReason::Other(
                "null in a field the schema says is not optional".into(),
            )));
        }
        Ok(Value::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.done(logical::from_bool(self.schema, v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.done(logical::from_int(self.schema, v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.done(logical::from_u64(self.schema, v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.done(logical::from_f64(self.schema, v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.done(logical::from_str(self.schema, v, self.ctx.placeholder))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.done(logical::from_string(self.schema, v, self.ctx.placeholder))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        match &self.schema.kind {
            Kind::Array(items) => {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(4));
                while let Some(v) = seq.next_element_seed(ValueSeed {
                    schema: items,
                    ctx: self.ctx,
                    path: Path::Index(&self.path, out.len()),
                })? {
                    out.push(v);
                }
                // An unchanged TOASTed array arrives as [placeholder].
                if out.len() == 1 && out[0] == Value::Unavailable {
                    return Ok(Value::Unavailable);
                }
                Ok(Value::Array(out))
            }
            // JsonConverter writes maps with non-string keys as [[k, v], …].
            Kind::Map(k, v) => {
                let mut out = Vec::new();
                while let Some(pair) = seq.next_element_seed(PairSeed {
                    key: k,
                    value: v,
                    ctx: self.ctx,
                    path: Path::Index(&self.path, out.len()),
                })? {
                    out.push(pair);
                }
                Ok(Value::Map(out))
            }
            _ => Err(self.ctx.fail(
                &self.path,
                FieldReason::WrongType {
                    expected: logical::expected_name(self.schema),
                    found: "array",
                },
            )),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        match &self.schema.kind {
            Kind::Struct(st) => {
                let values = StructSeed {
                    schema: st,
                    ctx: self.ctx,
                    path: self.path,
                }
                .visit_map(map)?;
                if self.schema.logical == Logical::VariableScaleDecimal {
                    let (s, v) = (st.index_of("scale"), st.index_of("value"));
                    if let (Some(s), Some(v)) = (s, v) {
                        return self.done(logical::variable_scale(&values[s], &values[v]));
                    }
                }
                Ok(Value::Struct(values))
            }
            Kind::Map(k, v) => {
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let kv = self.done(logical::from_string(k, key, self.ctx.placeholder))?;
                    let vv = map.next_value_seed(ValueSeed {
                        schema: v,
                        ctx: self.ctx,
                        path: Path::Index(&self.path, out.len()),
                    })?;
                    out.push((kv, vv));
                }
                Ok(Value::Map(out))
            }
            _ => Err(self.ctx.fail(
                &self.path,
                FieldReason::WrongType {
                    expected: logical::expected_name(self.schema),
                    found: "object",
                },
            )),
        }
    }
}

struct PairSeed<'s, 'c, 'p> {
    key: &'s Schema,
    value: &'s Schema,
    ctx: &'c Ctx<'c>,
    path: Path<'p>,
}

impl<'de> DeserializeSeed<'de> for PairSeed<'_, '_, '_> {
    type Value = (Value, Value);
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for PairSeed<'_, '_, '_> {
    type Value = (Value, Value);
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a [key, value] pair")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mk = |schema| ValueSeed {
            schema,
            ctx: self.ctx,
            path: self.path,
        };
        let k = seq
            .next_element_seed(mk(self.key))?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        let v = seq
            .next_element_seed(mk(self.value))?
            .ok_or_else(|| de::Error::invalid_length(1, &self))?;
        Ok((k, v))
    }
}
