//! JSON records, with the schema envelope (`{"schema":…,"payload":…}`) or without it.
//!
//! One borrowed pass over the record captures the members (row images as raw text); with a
//! schema, the images are then decoded straight into typed values under the cached schema.
//! Without one they are kept as JSON text (schemaless rows land as JSON).

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;

use tidemark_core::event::{Decoded, EventSchema, KafkaCoords, Tombstone};
use tidemark_core::schema::{Schema, StructSchema, fingerprint};
use tidemark_core::value::Row;

use super::envelope::{Classified, Images, Members, Routing};
use super::error::{DecodeErrorKind, FieldReason};
use super::json_row::{Ctx, decode_row};
use tidemark_core::converter::Placeholder;

/// A member captured as raw JSON text; `null` is present-but-null, a missing member is `None`.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct RawText<'a>(Option<&'a RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for RawText<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'a RawValue>::deserialize(d).map(|r| RawText(Some(r)))
    }
}

impl<'a> RawText<'a> {
    fn present(self) -> bool {
        self.0.is_some()
    }

    /// The text, unless missing or `null`.
    fn value(self) -> Option<&'a str> {
        self.0.map(RawValue::get).filter(|t| *t != "null")
    }
}

/// A parsed value or key schema with what decoding needs from it.
#[derive(Debug)]
pub(crate) struct CachedSchema {
    pub event: Arc<EventSchema>,
    pub name: Option<String>,
    pub before: Option<Arc<StructSchema>>,
    pub after: Option<Arc<StructSchema>>,
    /// For keys and other plain structs: the struct itself.
    pub plain: Option<Arc<StructSchema>>,
}

impl CachedSchema {
    pub(super) fn new(schema: Schema, text: String, registry_id: Option<u32>) -> CachedSchema {
        let schema = schema.with_connector_times();
        let field_struct = |name: &str| {
            schema
                .as_struct()
                .and_then(|s| s.field(name))
                .and_then(|f| f.schema.as_struct().cloned())
        };
        let before = field_struct("before");
        let after = field_struct("after");
        let plain = schema.as_struct().cloned();
        let row = match (&after, &before) {
            (Some(_), _) => schema
                .as_struct()
                .and_then(|s| s.field("after"))
                .map(|f| f.schema.clone()),
            (None, Some(_)) => schema
                .as_struct()
                .and_then(|s| s.field("before"))
                .map(|f| f.schema.clone()),
            _ => None,
        }
        .unwrap_or_else(|| schema.clone());
        CachedSchema {
            name: schema.name.clone(),
            event: Arc::new(EventSchema {
                row,
                fingerprint: fingerprint(text.as_bytes()),
                text,
                registry_id,
            }),
            before,
            after,
            plain,
        }
    }
}

/// Parsed JSON schemas by the fingerprint of their text (the same schema text repeats in every
/// record of a topic, so it is parsed once).
#[derive(Debug, Default)]
pub(crate) struct JsonSchemaCache {
    map: HashMap<u64, Arc<CachedSchema>>,
}

/// Bound on distinct schemas kept (schemas change rarely; this only stops a runaway).
const MAX_CACHED_SCHEMAS: usize = 4096;

impl JsonSchemaCache {
    fn get(&mut self, text: &str) -> Result<Arc<CachedSchema>, DecodeErrorKind> {
        let fp = fingerprint(text.as_bytes());
        if let Some(c) = self.map.get(&fp).filter(|c| c.event.text == text) {
            return Ok(c.clone());
        }
        let schema = Schema::from_json(text)?;
        let cached = Arc::new(CachedSchema::new(schema, text.to_owned(), None));
        if self.map.len() >= MAX_CACHED_SCHEMAS {
            self.map.clear();
        }
        self.map.insert(fp, cached.clone());
        Ok(cached)
    }
}

pub(crate) fn json_error(e: &serde_json::Error, ctx: &Ctx<'_>) -> DecodeErrorKind {
    if let Some((path, reason)) = ctx.error.borrow_mut().take() {
        return DecodeErrorKind::Field { path, reason };
    }
    DecodeErrorKind::Json {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    }
}

/// `{"schema": …, "payload": …}` is an envelope only when both members are there (a payload-only
/// row may have a column called `payload`).
fn is_empty_schema(text: &str) -> bool {
    text.bytes().filter(|b| !b.is_ascii_whitespace()).eq(*b"{}")
}

/// Decodes a JSON key: typed under its schema, or kept as JSON text.
/// A key's members are exactly its schema's: rows are tolerant of unknown members, but a key
/// decides which row a change applies to, so a member the schema does not name, or a required
/// one that is missing, makes the record a dead letter rather than a change to some other row.
fn key_members_match(payload: &str, st: &StructSchema) -> Result<(), DecodeErrorKind> {
    let members: std::collections::BTreeMap<String, serde::de::IgnoredAny> =
        serde_json::from_str(payload).map_err(|e| DecodeErrorKind::Envelope(e.to_string()))?;
    let field = |name: &str, why: &str| DecodeErrorKind::Field {
        path: format!("key.{name}"),
        reason: FieldReason::Other(why.to_owned()),
    };
    if let Some(extra) = members.keys().find(|m| st.index_of(m).is_none()) {
        return Err(field(extra, "the key schema has no such member"));
    }
    match st
        .fields
        .iter()
        .find(|f| !f.schema.optional && !members.contains_key(&f.name))
    {
        Some(missing) => Err(field(
            &missing.name,
            "missing, and the key schema requires it",
        )),
        None => Ok(()),
    }
}

pub(crate) fn decode_key(
    bytes: &[u8],
    cache: &mut JsonSchemaCache,
    placeholder: &Placeholder,
) -> Result<Option<Row>, DecodeErrorKind> {
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct KeyEnvelope<'a> {
        #[serde(borrow)]
        schema: RawText<'a>,
        #[serde(borrow)]
        payload: RawText<'a>,
    }
    let ctx = Ctx::new(placeholder);
    let text = std::str::from_utf8(bytes).map_err(|e| DecodeErrorKind::Json {
        line: 1,
        column: e.valid_up_to() + 1,
        message: format!("not UTF-8: {e}"),
    })?;
    let env: Result<KeyEnvelope, _> = serde_json::from_str(text);
    match env {
        Ok(env) if env.schema.present() && env.payload.present() => {
            let Some(payload) = env.payload.value() else {
                return Ok(None);
            };
            let schema = match env.schema.value() {
                Some(s) if !is_empty_schema(s) => cache.get(s)?,
                _ => return Ok(Some(Row::Json(payload.to_owned()))),
            };
            match &schema.plain {
                Some(st) => {
                    let row =
                        decode_row(payload, st, &ctx, "key").map_err(|e| json_error(&e, &ctx))?;
                    key_members_match(payload, st)?;
                    Ok(Some(Row::Typed(row)))
                }
                None => Ok(Some(Row::Json(payload.to_owned()))),
            }
        }
        // Not an object (a string or number key) or payload-only: keep the text.
        _ => {
            serde_json::from_str::<&RawValue>(text).map_err(|e| json_error(&e, &ctx))?;
            Ok(Some(Row::Json(text.trim().to_owned())))
        }
    }
}

/// Decodes a JSON value (never null: tombstones are handled by the caller).
pub(crate) fn decode_value(
    bytes: &[u8],
    kafka: KafkaCoords,
    key: Option<Row>,
    cache: &mut JsonSchemaCache,
    placeholder: &Placeholder,
    routing: &Routing,
) -> Result<Decoded, DecodeErrorKind> {
    let ctx = Ctx::new(placeholder);
    // serde would read a struct from an array positionally; a Debezium value is an object.
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        Some(_) => {
            serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
                .map_err(|e| json_error(&e, &ctx))?;
            return Err(DecodeErrorKind::Envelope(
                "the value is not a JSON object".into(),
            ));
        }
        None => {
            return Err(DecodeErrorKind::Json {
                line: 1,
                column: 1,
                message: "empty value".into(),
            });
        }
    }
    let top: Members<RawText<'_>> =
        serde_json::from_slice(bytes).map_err(|e| json_error(&e, &ctx))?;
    let (members, schema) = if top.schema.present() && top.payload.present() {
        let Some(payload) = top.payload.value() else {
            // `{"schema":null,"payload":null}` is how console consumers print a tombstone.
            return Ok(Decoded::Tombstone(Tombstone { kafka, key }));
        };
        let schema = match top.schema.value() {
            Some(s) if !is_empty_schema(s) => Some(cache.get(s)?),
            _ => None,
        };
        let members: Members<RawText<'_>> =
            serde_json::from_str(payload).map_err(|e| json_error(&e, &ctx))?;
        (members, schema)
    } else {
        (top, None)
    };
    let (before, after) = (members.before, members.after);
    let table_changes = members.table_changes.value().map(str::to_owned);
    let classified = Classified {
        kafka,
        key,
        schema: schema.as_ref().map(|s| s.event.clone()),
        schema_name: schema.as_ref().and_then(|s| s.name.as_deref()),
        table_changes,
    };
    members.into_decoded(routing, classified, || {
        let image = |raw: RawText<'_>, st: Option<&Arc<StructSchema>>, root: &str| {
            let Some(text) = raw.value() else {
                return Ok(None);
            };
            match (&schema, st) {
                (Some(_), Some(st)) => decode_row(text, st, &ctx, root)
                    .map(|r| Some(Row::Typed(r)))
                    .map_err(|e| json_error(&e, &ctx)),
                (Some(_), None) => Err(DecodeErrorKind::Envelope(format!(
                    "`{root}` is present but the schema has no `{root}` struct"
                ))),
                (None, _) => Ok(Some(Row::Json(text.to_owned()))),
            }
        };
        Ok(Images {
            before: image(
                before,
                schema.as_ref().and_then(|s| s.before.as_ref()),
                "before",
            )?,
            after: image(
                after,
                schema.as_ref().and_then(|s| s.after.as_ref()),
                "after",
            )?,
        })
    })
}
