//! Connect schema → Arrow types for bronze.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, TimeUnit};

use crate::schema::{Kind, Logical, Schema, StructSchema};

/// Field metadata key naming the Debezium semantic type where Arrow has no exact one
/// (`json`, `uuid`, `enum`, `variable_decimal`, `zoned_time`), read back by the SQL mapping.
pub const LOGICAL_METADATA_KEY: &str = "tidemark.logical";

/// A child of every `before`/`after` struct in bronze: the names of the columns that held the
/// TOAST placeholder (unchanged, value not sent). Their own column is null in that row.
pub const UNAVAILABLE_FIELD: &str = "__unavailable";

/// The Arrow type of a Connect schema.
pub fn arrow_type(schema: &Schema) -> DataType {
    match (&schema.kind, &schema.logical) {
        (Kind::Int32, Logical::Date) => DataType::Date32,
        (Kind::Int32, Logical::TimeMillis) => DataType::Time32(TimeUnit::Millisecond),
        (Kind::Int64, Logical::TimeMicros) => DataType::Time64(TimeUnit::Microsecond),
        (Kind::Int64, Logical::TimeNanos) => DataType::Time64(TimeUnit::Nanosecond),
        (Kind::Int32 | Kind::Int64, Logical::Duration(unit)) => DataType::Duration(match unit {
            crate::value::TimeUnit::Millis => TimeUnit::Millisecond,
            crate::value::TimeUnit::Micros => TimeUnit::Microsecond,
            crate::value::TimeUnit::Nanos => TimeUnit::Nanosecond,
        }),
        (Kind::Int64, Logical::TimestampMillis) => DataType::Timestamp(TimeUnit::Millisecond, None),
        (Kind::Int64, Logical::TimestampMicros) => DataType::Timestamp(TimeUnit::Microsecond, None),
        (Kind::Int64, Logical::TimestampNanos) => DataType::Timestamp(TimeUnit::Nanosecond, None),
        // PostgreSQL keeps µs; µs also covers years 1..9999 where ns overflows.
        (Kind::String, Logical::ZonedTimestamp) => {
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        }
        (Kind::Bytes, Logical::Decimal { scale, precision }) => {
            let p = precision.unwrap_or(38);
            match (u8::try_from(p), i8::try_from(*scale)) {
                (Ok(p @ 1..=38), Ok(s)) if i32::from(s) <= i32::from(p) => {
                    DataType::Decimal128(p, s)
                }
                _ => DataType::Utf8,
            }
        }
        (Kind::Struct(_), Logical::VariableScaleDecimal) => DataType::Utf8,
        (Kind::Int8, _) => DataType::Int8,
        (Kind::Int16, _) => DataType::Int16,
        (Kind::Int32, _) => DataType::Int32,
        (Kind::Int64, _) => DataType::Int64,
        (Kind::Float32, _) => DataType::Float32,
        (Kind::Float64, _) => DataType::Float64,
        (Kind::Boolean, _) => DataType::Boolean,
        (Kind::String, _) => DataType::Utf8,
        (Kind::Bytes, _) => DataType::Binary,
        (Kind::Array(items), _) => DataType::List(Arc::new(arrow_field("item", items))),
        (Kind::Map(k, v), _) => {
            let entries = Field::new(
                "entries",
                DataType::Struct(Fields::from(vec![
                    arrow_field("key", k).with_nullable(false),
                    arrow_field("value", v),
                ])),
                false,
            );
            DataType::Map(Arc::new(entries), false)
        }
        (Kind::Struct(st), _) => DataType::Struct(Fields::from(
            st.fields
                .iter()
                .map(|f| arrow_field(&f.name, &f.schema))
                .collect::<Vec<_>>(),
        )),
    }
}

fn logical_tag(schema: &Schema) -> Option<&'static str> {
    Some(match schema.logical {
        Logical::Json => "json",
        Logical::Uuid => "uuid",
        Logical::Enum { .. } => "enum",
        Logical::VariableScaleDecimal => "variable_decimal",
        Logical::ZonedTime => "zoned_time",
        _ => return None,
    })
}

/// A nullable Arrow field (bronze rows may lack any column: key-only `before` images, TOAST).
pub fn arrow_field(name: &str, schema: &Schema) -> Field {
    let field = Field::new(name, arrow_type(schema), true);
    match logical_tag(schema) {
        Some(tag) => field.with_metadata(HashMap::from([(
            LOGICAL_METADATA_KEY.to_owned(),
            tag.to_owned(),
        )])),
        None => field,
    }
}

/// The fields of a `before`/`after` struct in bronze: the row's columns plus [`UNAVAILABLE_FIELD`].
pub fn arrow_row_fields(row: &StructSchema) -> Fields {
    let mut fields: Vec<Field> = row
        .fields
        .iter()
        .map(|f| arrow_field(&f.name, &f.schema))
        .collect();
    fields.push(Field::new(
        UNAVAILABLE_FIELD,
        DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        true,
    ));
    Fields::from(fields)
}
