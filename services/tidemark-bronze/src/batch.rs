//! Record batches for bronze files: the bronze columns (`_kafka_topic`, `_kafka_partition`,
//! `_kafka_offset`, `_kafka_timestamp`, `op`, `ts_ms`, `source`, `transaction`, `key`, `before`,
//! `after`), typed from the event's schema, or JSON text for schemaless records.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use tidemark_lake::columns as col;

use arrow_array::{
    ArrayRef, BinaryArray, Int32Array, Int64Array, ListArray, RecordBatch, StringArray,
    StructArray, TimestampMillisecondArray,
};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use tidemark_core::event::{
    ChangeEvent, EventSchema, Heartbeat, KafkaCoords, LogicalMessage, SchemaChange,
    TransactionEvent,
};
use tidemark_core::mapping::{UNAVAILABLE_FIELD, arrow_field, arrow_row_fields};
use tidemark_core::schema::StructSchema;
use tidemark_core::value::{Row, TypedRow, Value};
use tidemark_wire::encode::{source_schema, source_values, transaction_schema, transaction_value};

use crate::arrow_values::{ValueTypeError, to_array};

/// Parquet key-value metadata keys.
pub(crate) const META_SCHEMA: &str = "tidemark.schema";
pub(crate) const META_FINGERPRINT: &str = "tidemark.schema_fingerprint";
pub(crate) const META_REGISTRY_ID: &str = "tidemark.schema_registry_id";

/// How an event's key is shaped.
#[derive(Debug, Clone)]
pub enum KeyShape {
    /// No key seen yet (compatible with any).
    Absent,
    /// Schemaless key: JSON text.
    Json,
    Typed(Arc<StructSchema>),
}

/// What a file's columns look like: one per file (a change rolls the file).
#[derive(Debug, Clone)]
pub struct Shape {
    /// The value schema; `None` for schemaless JSON.
    pub value: Option<Arc<EventSchema>>,
    pub key: KeyShape,
}

impl Shape {
    pub fn of(e: &ChangeEvent) -> Shape {
        let key = match &e.key {
            None => KeyShape::Absent,
            Some(Row::Json(_)) => KeyShape::Json,
            Some(Row::Typed(t)) => KeyShape::Typed(t.schema.clone()),
        };
        Shape {
            value: e.schema.clone(),
            key,
        }
    }

    /// Whether an event of shape `other` can go in the same file; widens `Absent` keys.
    pub fn absorb(&mut self, other: &Shape) -> bool {
        let value_same = match (&self.value, &other.value) {
            (None, None) => true,
            (Some(a), Some(b)) => {
                Arc::ptr_eq(a, b) || (a.fingerprint == b.fingerprint && a.text == b.text)
            }
            _ => false,
        };
        if !value_same {
            return false;
        }
        match (&self.key, &other.key) {
            (_, KeyShape::Absent) => true,
            (KeyShape::Absent, k) => {
                self.key = k.clone();
                true
            }
            (KeyShape::Json, KeyShape::Json) => true,
            (KeyShape::Typed(a), KeyShape::Typed(b)) => Arc::ptr_eq(a, b) || a == b,
            _ => false,
        }
    }

    fn row_struct(&self) -> Option<&Arc<StructSchema>> {
        self.value.as_ref().and_then(|s| s.row.as_struct())
    }
}

fn kafka_fields() -> Vec<Field> {
    vec![
        Field::new(col::KAFKA_TOPIC, DataType::Utf8, false),
        Field::new(col::KAFKA_PARTITION, DataType::Int32, false),
        Field::new(col::KAFKA_OFFSET, DataType::Int64, false),
        Field::new(
            col::KAFKA_TIMESTAMP,
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        ),
    ]
}

fn kafka_columns(coords: &[&KafkaCoords]) -> Vec<ArrayRef> {
    vec![
        Arc::new(StringArray::from_iter_values(
            coords.iter().map(|k| k.topic.as_str()),
        )),
        Arc::new(Int32Array::from_iter_values(
            coords.iter().map(|k| k.partition),
        )),
        Arc::new(Int64Array::from_iter_values(
            coords.iter().map(|k| k.offset),
        )),
        Arc::new(
            TimestampMillisecondArray::from(
                coords.iter().map(|k| k.timestamp_ms).collect::<Vec<_>>(),
            )
            .with_timezone("UTC"),
        ),
    ]
}

static SOURCE_FIELD: LazyLock<Field> = LazyLock::new(|| arrow_field(col::SOURCE, &source_schema()));
static TRANSACTION_FIELD: LazyLock<Field> =
    LazyLock::new(|| arrow_field(col::TRANSACTION, &transaction_schema()));

fn image_field(name: &str, shape: &Shape) -> Field {
    match shape.row_struct() {
        Some(st) => Field::new(name, DataType::Struct(arrow_row_fields(st)), true),
        None => Field::new(name, DataType::Utf8, true),
    }
}

/// The Arrow schema of a change file of this shape, with the schema text in its metadata.
pub(crate) fn change_schema(shape: &Shape) -> SchemaRef {
    let mut fields = kafka_fields();
    fields.push(Field::new(col::OP, DataType::Utf8, false));
    fields.push(Field::new(col::TS_MS, DataType::Int64, true));
    fields.push(SOURCE_FIELD.clone());
    fields.push(TRANSACTION_FIELD.clone());
    fields.push(match &shape.key {
        KeyShape::Typed(st) => Field::new(
            "key",
            DataType::Struct(Fields::from(
                st.fields
                    .iter()
                    .map(|f| arrow_field(&f.name, &f.schema))
                    .collect::<Vec<_>>(),
            )),
            true,
        ),
        _ => Field::new("key", DataType::Utf8, true),
    });
    fields.push(image_field(col::BEFORE, shape));
    fields.push(image_field(col::AFTER, shape));
    let mut meta = HashMap::new();
    if let Some(s) = &shape.value {
        meta.insert(META_SCHEMA.to_owned(), s.text.clone());
        meta.insert(
            META_FINGERPRINT.to_owned(),
            format!("{:016x}", s.fingerprint),
        );
        if let Some(id) = s.registry_id {
            meta.insert(META_REGISTRY_ID.to_owned(), id.to_string());
        }
    }
    Arc::new(Schema::new_with_metadata(fields, meta))
}

/// Values of a typed row aligned to the file's row struct (by position when the schemas are the
/// same, by name otherwise), and the names of its unavailable (TOAST) columns.
fn aligned<'a>(row: &'a TypedRow, target: &'a StructSchema) -> (Vec<&'a Value>, Vec<&'a str>) {
    let same = row.schema.fields.len() == target.fields.len()
        && row
            .schema
            .fields
            .iter()
            .zip(&target.fields)
            .all(|(a, b)| a.name == b.name);
    let values: Vec<&Value> = if same {
        row.values.iter().collect()
    } else {
        target
            .fields
            .iter()
            .map(|f| row.get(&f.name).unwrap_or(&Value::Null))
            .collect()
    };
    let unavailable = target
        .fields
        .iter()
        .zip(&values)
        .filter(|(_, v)| ***v == Value::Unavailable)
        .map(|(f, _)| f.name.as_str())
        .collect();
    (values, unavailable)
}

fn image_column(
    images: &[Option<&Row>],
    field: &Field,
    shape: &Shape,
) -> Result<ArrayRef, ValueTypeError> {
    let Some(st) = shape.row_struct() else {
        let text: Vec<Option<&str>> = images
            .iter()
            .map(|r| match r {
                Some(Row::Json(t)) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        return Ok(Arc::new(StringArray::from(text)));
    };
    let DataType::Struct(fields) = field.data_type() else {
        unreachable!("typed image fields are structs")
    };
    let n_cols = st.fields.len();
    let mut columns: Vec<Vec<&Value>> = vec![Vec::with_capacity(images.len()); n_cols];
    let mut unavailable_lens = Vec::with_capacity(images.len());
    let mut unavailable_names: Vec<&str> = Vec::new();
    let mut valid = Vec::with_capacity(images.len());
    for img in images {
        match img {
            Some(Row::Typed(row)) => {
                let (values, unavailable) = aligned(row, st);
                for (c, v) in columns.iter_mut().zip(values) {
                    c.push(v);
                }
                unavailable_lens.push(unavailable.len());
                unavailable_names.extend(unavailable);
                valid.push(true);
            }
            _ => {
                columns.iter_mut().for_each(|c| c.push(&Value::Null));
                unavailable_lens.push(0);
                valid.push(false);
            }
        }
    }
    let mut children = columns
        .iter()
        .zip(fields.iter())
        .map(|(c, f)| to_array(c, f))
        .collect::<Result<Vec<_>, _>>()?;
    let list_field = fields
        .iter()
        .find(|f| f.name() == UNAVAILABLE_FIELD)
        .expect("row structs carry the unavailable list");
    let DataType::List(item) = list_field.data_type() else {
        unreachable!()
    };
    let has_any = unavailable_lens.iter().any(|l| *l > 0);
    let names = Arc::new(StringArray::from_iter_values(unavailable_names));
    let list_nulls = (!has_any).then(|| NullBuffer::new_null(images.len()));
    children.push(Arc::new(ListArray::new(
        item.clone(),
        OffsetBuffer::from_lengths(unavailable_lens),
        names,
        list_nulls,
    )));
    let nulls = NullBuffer::from(valid);
    Ok(Arc::new(StructArray::new(
        fields.clone(),
        children,
        (nulls.null_count() > 0).then_some(nulls),
    )))
}

fn key_column(events: &[&ChangeEvent], field: &Field) -> Result<ArrayRef, ValueTypeError> {
    match field.data_type() {
        DataType::Struct(fields) => {
            let structs: Vec<Value> = events
                .iter()
                .map(|e| match &e.key {
                    Some(Row::Typed(t)) => Value::Struct(t.values.clone()),
                    _ => Value::Null,
                })
                .collect();
            let refs: Vec<&Value> = structs.iter().collect();
            to_array(
                &refs,
                &Field::new("key", DataType::Struct(fields.clone()), true),
            )
        }
        _ => Ok(Arc::new(StringArray::from(
            events
                .iter()
                .map(|e| match &e.key {
                    Some(Row::Json(t)) => Some(t.as_str()),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        ))),
    }
}

/// A record batch of change events that share `shape`.
pub(crate) fn change_batch(
    events: &[&ChangeEvent],
    shape: &Shape,
) -> Result<RecordBatch, ValueTypeError> {
    let schema = change_schema(shape);
    let coords: Vec<&KafkaCoords> = events.iter().map(|e| &e.kafka).collect();
    let mut columns = kafka_columns(&coords);
    columns.push(Arc::new(StringArray::from_iter_values(
        events.iter().map(|e| e.op.code()),
    )));
    columns.push(Arc::new(Int64Array::from(
        events.iter().map(|e| e.ts_ms).collect::<Vec<_>>(),
    )));
    columns.push(source_column(events.iter().map(|e| &e.source))?);
    let txs: Vec<Value> = events
        .iter()
        .map(|e| transaction_value(&e.transaction))
        .collect();
    columns.push(to_array(
        &txs.iter().collect::<Vec<_>>(),
        &TRANSACTION_FIELD,
    )?);
    columns.push(key_column(
        events,
        schema.field_with_name(col::KEY).expect("key field"),
    )?);
    let before: Vec<Option<&Row>> = events.iter().map(|e| e.before.as_ref()).collect();
    let after: Vec<Option<&Row>> = events.iter().map(|e| e.after.as_ref()).collect();
    columns.push(image_column(
        &before,
        schema.field_with_name(col::BEFORE).expect("before field"),
        shape,
    )?);
    columns.push(image_column(
        &after,
        schema.field_with_name(col::AFTER).expect("after field"),
        shape,
    )?);
    Ok(RecordBatch::try_new(schema, columns).expect("columns follow the schema"))
}

/// The `source` struct column.
fn source_column<'a>(
    sources: impl Iterator<Item = &'a tidemark_core::event::Source>,
) -> Result<ArrayRef, ValueTypeError> {
    let values: Vec<Value> = sources.map(source_values).collect();
    to_array(&values.iter().collect::<Vec<_>>(), &SOURCE_FIELD)
}

fn batch(fields: Vec<Field>, columns: Vec<ArrayRef>) -> RecordBatch {
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("columns follow the schema")
}

fn utf8(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}

fn i64f(name: &str) -> Field {
    Field::new(name, DataType::Int64, true)
}

/// `_transactions`: BEGIN/END records.
pub(crate) fn transactions_batch(rows: &[&TransactionEvent]) -> RecordBatch {
    let mut fields = kafka_fields();
    fields.extend([
        utf8(col::TXN_STATUS),
        utf8(col::TXN_ID),
        i64f(col::TXN_EVENT_COUNT),
        utf8(col::TXN_DATA_COLLECTIONS),
        i64f(col::TS_MS),
    ]);
    let mut cols = kafka_columns(&rows.iter().map(|r| &r.kafka).collect::<Vec<_>>());
    cols.push(Arc::new(StringArray::from_iter_values(rows.iter().map(
        |r| match r.status {
            tidemark_core::event::TransactionStatus::Begin => "BEGIN",
            tidemark_core::event::TransactionStatus::End => "END",
        },
    ))));
    cols.push(Arc::new(StringArray::from_iter_values(
        rows.iter().map(|r| r.id.as_str()),
    )));
    cols.push(Arc::new(Int64Array::from(
        rows.iter().map(|r| r.event_count).collect::<Vec<_>>(),
    )));
    cols.push(Arc::new(StringArray::from_iter_values(rows.iter().map(
        |r| {
            serde_json::to_string(
                &r.data_collections
                    .iter()
                    .map(|(n, c)| serde_json::json!({"data_collection": n, "event_count": c}))
                    .collect::<Vec<_>>(),
            )
            .unwrap_or_default()
        },
    ))));
    cols.push(Arc::new(Int64Array::from(
        rows.iter().map(|r| r.ts_ms).collect::<Vec<_>>(),
    )));
    batch(fields, cols)
}

/// `_heartbeats`.
pub(crate) fn heartbeats_batch(rows: &[&Heartbeat]) -> RecordBatch {
    let mut fields = kafka_fields();
    fields.push(i64f("ts_ms"));
    let mut cols = kafka_columns(&rows.iter().map(|r| &r.kafka).collect::<Vec<_>>());
    cols.push(Arc::new(Int64Array::from(
        rows.iter().map(|r| r.ts_ms).collect::<Vec<_>>(),
    )));
    batch(fields, cols)
}

/// `_schema_changes`: DDL records.
pub(crate) fn schema_changes_batch(rows: &[&SchemaChange]) -> Result<RecordBatch, ValueTypeError> {
    let mut fields = kafka_fields();
    fields.extend([
        SOURCE_FIELD.clone(),
        utf8("database"),
        utf8("schema"),
        utf8("ddl"),
        utf8("table_changes"),
        i64f("ts_ms"),
    ]);
    let mut cols = kafka_columns(&rows.iter().map(|r| &r.kafka).collect::<Vec<_>>());
    cols.push(source_column(rows.iter().map(|r| &r.source))?);
    cols.push(Arc::new(StringArray::from(
        rows.iter()
            .map(|r| r.database.as_deref())
            .collect::<Vec<_>>(),
    )));
    cols.push(Arc::new(StringArray::from(
        rows.iter().map(|r| r.schema.as_deref()).collect::<Vec<_>>(),
    )));
    cols.push(Arc::new(StringArray::from(
        rows.iter().map(|r| r.ddl.as_deref()).collect::<Vec<_>>(),
    )));
    cols.push(Arc::new(StringArray::from(
        rows.iter()
            .map(|r| r.table_changes.as_deref())
            .collect::<Vec<_>>(),
    )));
    cols.push(Arc::new(Int64Array::from(
        rows.iter().map(|r| r.ts_ms).collect::<Vec<_>>(),
    )));
    Ok(batch(fields, cols))
}

/// `_messages`: logical decoding messages.
pub(crate) fn messages_batch(rows: &[&LogicalMessage]) -> Result<RecordBatch, ValueTypeError> {
    let mut fields = kafka_fields();
    fields.extend([
        SOURCE_FIELD.clone(),
        utf8("prefix"),
        Field::new("content", DataType::Binary, true),
        i64f("ts_ms"),
    ]);
    let mut cols = kafka_columns(&rows.iter().map(|r| &r.kafka).collect::<Vec<_>>());
    cols.push(source_column(rows.iter().map(|r| &r.source))?);
    cols.push(Arc::new(StringArray::from(
        rows.iter().map(|r| r.prefix.as_deref()).collect::<Vec<_>>(),
    )));
    cols.push(Arc::new(BinaryArray::from(
        rows.iter()
            .map(|r| Some(r.content.as_slice()))
            .collect::<Vec<_>>(),
    )));
    cols.push(Arc::new(Int64Array::from(
        rows.iter().map(|r| r.ts_ms).collect::<Vec<_>>(),
    )));
    Ok(batch(fields, cols))
}
