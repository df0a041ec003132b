//! Schemaless JSON rows (`Row::Json`): typed later, either under a schema the user declares or by
//! inferring types from the values (integer → bigint, other number → double,
//! string → text, boolean, object/array → json).

use std::fmt;
use std::sync::Arc;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use tidemark_core::schema::StructSchema;
use tidemark_core::value::{TypedRow, Value};

use super::error::DecodeErrorKind;
use super::json::json_error;
use super::json_row::{Ctx, decode_row};
use tidemark_core::converter::Placeholder;

/// Types a schemaless row's text under a struct schema (configured columns, or a schema known
/// from elsewhere), with the same conversions as enveloped JSON.
pub fn decode_json_row(
    text: &str,
    schema: &Arc<StructSchema>,
    placeholder: &Placeholder,
) -> Result<TypedRow, DecodeErrorKind> {
    let ctx = Ctx::new(placeholder);
    decode_row(text, schema, &ctx, "row").map_err(|e| json_error(&e, &ctx))
}

/// Reads a schemaless row's columns with inferred types, in document order. The placeholder
/// string becomes [`Value::Unavailable`].
pub fn infer_json_row(
    text: &str,
    placeholder: &Placeholder,
) -> Result<Vec<(String, Value)>, DecodeErrorKind> {
    let ctx = Ctx::new(placeholder);
    let mut de = serde_json::Deserializer::from_str(text);
    let row = de
        .deserialize_map(InferRow { placeholder })
        .and_then(|r| de.end().map(|()| r))
        .map_err(|e| json_error(&e, &ctx))?;
    Ok(row)
}

struct InferRow<'p> {
    placeholder: &'p Placeholder,
}

impl<'de> Visitor<'de> for InferRow<'_> {
    type Value = Vec<(String, Value)>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object (a row)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(key) = map.next_key::<String>()? {
            let raw: &RawValue = map.next_value()?;
            let v = infer_value(raw.get(), self.placeholder).map_err(de::Error::custom)?;
            out.push((key, v));
        }
        Ok(out)
    }
}

fn infer_value(raw: &str, ph: &Placeholder) -> Result<Value, serde_json::Error> {
    struct Scalar<'p>(&'p Placeholder);
    impl<'de> Visitor<'de> for Scalar<'_> {
        type Value = Option<Value>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Some(Value::Null))
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(Some(Value::Bool(v)))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(Value::Int(v)))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(
                i64::try_from(v).map_or(Value::Float(v as f64), Value::Int),
            ))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Some(Value::Float(v)))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(if self.0.matches_str(v) {
                Value::Unavailable
            } else {
                Value::String(v.to_owned())
            }))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<de::IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map
                .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
                .is_some()
            {}
            Ok(None)
        }
    }
    let mut de = serde_json::Deserializer::from_str(raw);
    Ok(de
        .deserialize_any(Scalar(ph))?
        .unwrap_or_else(|| Value::Json(raw.to_owned())))
}
