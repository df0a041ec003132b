//! Type mapping: Connect/Avro schema → Arrow (bronze columns) → PostgreSQL and SQLite (warehouse).
//! The README's mapping table is checked against these functions by a test.

mod arrow;
mod sql;

pub use arrow::{
    LOGICAL_METADATA_KEY, UNAVAILABLE_FIELD, arrow_field, arrow_row_fields, arrow_type,
};
pub use sql::{Backend, ColType, UnknownType, sql_type};
