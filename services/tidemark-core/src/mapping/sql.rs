//! Arrow → warehouse column types.

use arrow_schema::{DataType, Field};

use super::arrow::LOGICAL_METADATA_KEY;

/// The warehouse backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// The column type of an Arrow field in a backend. SQLite keeps exact values (decimals,
/// timestamps) as TEXT because its NUMERIC affinity would round them.
pub fn sql_type(field: &Field, backend: Backend) -> String {
    let tag = field
        .metadata()
        .get(LOGICAL_METADATA_KEY)
        .map(String::as_str);
    let pg = |s: &str| s.to_owned();
    match backend {
        Backend::Postgres => match (field.data_type(), tag) {
            (DataType::Utf8, Some("json")) => pg("jsonb"),
            (DataType::Utf8, Some("uuid")) => pg("uuid"),
            (DataType::Utf8, Some("variable_decimal")) => pg("numeric"),
            (DataType::Utf8, Some("zoned_time")) => pg("timetz"),
            (DataType::Int8 | DataType::Int16, _) => pg("smallint"),
            (DataType::Int32, _) => pg("integer"),
            (DataType::Int64, _) => pg("bigint"),
            (DataType::Float32, _) => pg("real"),
            (DataType::Float64, _) => pg("double precision"),
            (DataType::Boolean, _) => pg("boolean"),
            (DataType::Utf8 | DataType::LargeUtf8, _) => pg("text"),
            (DataType::Binary | DataType::LargeBinary, _) => pg("bytea"),
            (DataType::Decimal128(p, s), _) if *s >= 0 => format!("numeric({p},{s})"),
            (DataType::Decimal128(..), _) => pg("numeric"),
            (DataType::Date32, _) => pg("date"),
            (DataType::Time32(_) | DataType::Time64(_), _) => pg("time"),
            (DataType::Timestamp(_, None), _) => pg("timestamp"),
            (DataType::Timestamp(_, Some(_)), _) => pg("timestamptz"),
            _ => pg("jsonb"),
        },
        Backend::Sqlite => match field.data_type() {
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::Boolean => "INTEGER",
            DataType::Float32 | DataType::Float64 => "REAL",
            DataType::Binary | DataType::LargeBinary => "BLOB",
            _ => "TEXT",
        }
        .to_owned(),
    }
}
