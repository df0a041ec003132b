//! A lenient serde view of an apache-avro value, for reading envelope members (`source`,
//! `transaction`, …) with the same serde definitions as JSON. Unlike apache-avro's own
//! deserializer it accepts a plain record where serde expects an `Option` (Connect only wraps
//! *optional* values in unions) and unwraps unions everywhere.

use apache_avro::types::Value as Avro;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::forward_to_deserialize_any;

#[derive(Debug)]
pub(crate) struct AvroDe<'a>(pub &'a Avro);

#[derive(Debug)]
pub(crate) struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

fn unwrap(v: &Avro) -> &Avro {
    match v {
        Avro::Union(_, inner) => unwrap(inner),
        other => other,
    }
}

impl<'de> Deserializer<'de> for AvroDe<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match unwrap(self.0) {
            Avro::Null => visitor.visit_unit(),
            Avro::Boolean(b) => visitor.visit_bool(*b),
            Avro::Int(i) => visitor.visit_i64((*i).into()),
            Avro::Long(i) => visitor.visit_i64(*i),
            Avro::Float(f) => visitor.visit_f64((*f).into()),
            Avro::Double(f) => visitor.visit_f64(*f),
            Avro::String(s) | Avro::Enum(_, s) => visitor.visit_borrowed_str(s),
            Avro::Bytes(b) | Avro::Fixed(_, b) => visitor.visit_borrowed_bytes(b),
            Avro::Array(items) => visitor.visit_seq(Seq(items.iter())),
            Avro::Record(fields) => visitor.visit_map(Record {
                fields: fields.iter(),
                value: None,
            }),
            Avro::Map(entries) => {
                let fields: Vec<(String, Avro)> = entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                visitor.visit_map(OwnedRecord {
                    fields: fields.into_iter(),
                    value: None,
                })
            }
            other => Err(Error(format!("unexpected Avro value {other:?}"))),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match unwrap(self.0) {
            Avro::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

struct Seq<'a>(std::slice::Iter<'a, Avro>);

impl<'de> SeqAccess<'de> for Seq<'de> {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.0
            .next()
            .map(|v| seed.deserialize(AvroDe(v)))
            .transpose()
    }
}

struct Record<'a> {
    fields: std::slice::Iter<'a, (String, Avro)>,
    value: Option<&'a Avro>,
}

impl<'de> MapAccess<'de> for Record<'de> {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.fields.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(de::value::BorrowedStrDeserializer::new(k))
                    .map(Some)
            }
            None => Ok(None),
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        seed.deserialize(AvroDe(
            self.value
                .take()
                .ok_or_else(|| Error("value before key".into()))?,
        ))
    }
}

struct OwnedRecord {
    fields: std::vec::IntoIter<(String, Avro)>,
    value: Option<Avro>,
}

impl<'de> MapAccess<'de> for OwnedRecord {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.fields.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(de::value::StringDeserializer::new(k))
                    .map(Some)
            }
            None => Ok(None),
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let v = self
            .value
            .take()
            .ok_or_else(|| Error("value before key".into()))?;
        // Owned values cannot lend borrowed strings; they are only map entries (rare).
        let json = serde_json::Value::try_from(v).map_err(|e| Error(e.to_string()))?;
        seed.deserialize(json).map_err(|e| Error(e.to_string()))
    }
}
