//! Arrow → warehouse column types ([`ColType`]), their DDL per backend, declared types from the
//! config, and which type changes are safe widenings.

use std::fmt;

use arrow_schema::{DataType, Field};

use super::arrow::LOGICAL_METADATA_KEY;

/// The warehouse backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A warehouse column type. SQLite keeps exact values (decimals, timestamps) as TEXT because
/// its NUMERIC affinity would round them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColType {
    Bool,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    /// `numeric(p, s)`.
    Decimal {
        precision: u8,
        scale: i8,
    },
    /// `numeric` of any scale.
    Numeric,
    Text,
    Json,
    Uuid,
    Bytes,
    Date,
    Time,
    TimeTz,
    Timestamp,
    TimestampTz,
    /// A signed duration (a MySQL TIME): `interval` on PostgreSQL, `-838:59:59.000000` text on
    /// SQLite.
    Interval,
}

/// A declared type (`columns = { x = "…" }`) that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown column type `{0}`: use boolean, smallint, integer, bigint, real, double precision, \
     numeric, numeric(p,s), text, jsonb, uuid, bytea, date, time, timetz, timestamp, timestamptz or interval"
)]
pub struct UnknownType(pub String);

impl ColType {
    /// The type of an Arrow field in bronze.
    pub fn from_arrow(field: &Field) -> ColType {
        let tag = field
            .metadata()
            .get(LOGICAL_METADATA_KEY)
            .map(String::as_str);
        match (field.data_type(), tag) {
            (DataType::Utf8, Some("json")) => ColType::Json,
            (DataType::Utf8, Some("uuid")) => ColType::Uuid,
            (DataType::Utf8, Some("variable_decimal")) => ColType::Numeric,
            (DataType::Utf8, Some("zoned_time")) => ColType::TimeTz,
            (DataType::Int8 | DataType::Int16, _) => ColType::Int16,
            (DataType::Int32, _) => ColType::Int32,
            (DataType::Int64, _) => ColType::Int64,
            (DataType::Float32, _) => ColType::Float32,
            (DataType::Float64, _) => ColType::Float64,
            (DataType::Boolean, _) => ColType::Bool,
            (DataType::Utf8 | DataType::LargeUtf8, _) => ColType::Text,
            (DataType::Binary | DataType::LargeBinary, _) => ColType::Bytes,
            (DataType::Decimal128(p, s), _) if *s >= 0 => ColType::Decimal {
                precision: *p,
                scale: *s,
            },
            (DataType::Decimal128(..), _) => ColType::Numeric,
            (DataType::Date32, _) => ColType::Date,
            (DataType::Time32(_) | DataType::Time64(_), _) => ColType::Time,
            (DataType::Duration(_), _) => ColType::Interval,
            (DataType::Timestamp(_, None), _) => ColType::Timestamp,
            (DataType::Timestamp(_, Some(_)), _) => ColType::TimestampTz,
            _ => ColType::Json,
        }
    }

    /// Parses a declared type, in PostgreSQL spelling (case-insensitive).
    pub fn parse(declared: &str) -> Result<ColType, UnknownType> {
        let t = declared.trim().to_ascii_lowercase();
        let compact: String = t.split_whitespace().collect::<Vec<_>>().join(" ");
        Ok(match compact.as_str() {
            "boolean" | "bool" => ColType::Bool,
            "smallint" | "int2" => ColType::Int16,
            "integer" | "int" | "int4" => ColType::Int32,
            "bigint" | "int8" => ColType::Int64,
            "real" | "float4" => ColType::Float32,
            "double precision" | "float8" | "double" | "float" => ColType::Float64,
            "numeric" | "decimal" => ColType::Numeric,
            "text" | "varchar" | "string" => ColType::Text,
            "json" | "jsonb" => ColType::Json,
            "uuid" => ColType::Uuid,
            "bytea" | "blob" => ColType::Bytes,
            "date" => ColType::Date,
            "time" => ColType::Time,
            "timetz" => ColType::TimeTz,
            "timestamp" => ColType::Timestamp,
            "timestamptz" => ColType::TimestampTz,
            "interval" => ColType::Interval,
            other if other.starts_with("varchar(") && other.ends_with(')') => ColType::Text,
            other => return parse_decimal(other).ok_or_else(|| UnknownType(declared.into())),
        })
    }

    /// The column type in a backend's DDL.
    pub fn ddl(self, backend: Backend) -> String {
        match backend {
            Backend::Postgres => match self {
                ColType::Bool => "boolean".into(),
                ColType::Int16 => "smallint".into(),
                ColType::Int32 => "integer".into(),
                ColType::Int64 => "bigint".into(),
                ColType::Float32 => "real".into(),
                ColType::Float64 => "double precision".into(),
                ColType::Decimal { precision, scale } => format!("numeric({precision},{scale})"),
                ColType::Numeric => "numeric".into(),
                ColType::Text => "text".into(),
                ColType::Json => "jsonb".into(),
                ColType::Uuid => "uuid".into(),
                ColType::Bytes => "bytea".into(),
                ColType::Date => "date".into(),
                ColType::Time => "time".into(),
                ColType::TimeTz => "timetz".into(),
                ColType::Timestamp => "timestamp".into(),
                ColType::TimestampTz => "timestamptz".into(),
                ColType::Interval => "interval".into(),
            },
            Backend::Sqlite => match self {
                ColType::Bool | ColType::Int16 | ColType::Int32 | ColType::Int64 => "INTEGER",
                ColType::Float32 | ColType::Float64 => "REAL",
                ColType::Bytes => "BLOB",
                _ => "TEXT",
            }
            .into(),
        }
    }

    /// The type a column of type `self` must become to also hold `new` values: `Some(self)` when
    /// it already does, a wider type when that is a safe widening, `None` when incompatible.
    pub fn widen_to(self, new: ColType) -> Option<ColType> {
        use ColType::*;
        if self == new {
            return Some(self);
        }
        let int_rank = |t: ColType| match t {
            Int16 => Some(1),
            Int32 => Some(2),
            Int64 => Some(3),
            _ => None,
        };
        match (self, new) {
            (a, b) if int_rank(a).is_some() && int_rank(b).is_some() => {
                Some(if int_rank(a) >= int_rank(b) { a } else { b })
            }
            (Float64, Float32) | (Float32, Float64) => Some(Float64),
            // Inferred schemaless columns: an integer column that meets a fraction, or the other
            // way round. A double holds integers exactly only up to 2^53, so a bigint and a
            // floating-point number meet in numeric, which holds both.
            (Int16 | Int32, Float32 | Float64) | (Float32 | Float64, Int16 | Int32) => {
                Some(Float64)
            }
            (Int64, Float32 | Float64) | (Float32 | Float64, Int64) => Some(Numeric),
            (Numeric, Int16 | Int32 | Int64 | Float32 | Float64)
            | (Int16 | Int32 | Int64 | Float32 | Float64, Numeric) => Some(Numeric),
            (Int16 | Int32 | Int64, Decimal { .. }) => new.widen_to(self),
            (Decimal { precision, scale }, Int16 | Int32 | Int64) => {
                let int_digits = match new {
                    Int16 => 5,
                    Int32 => 10,
                    _ => 19,
                };
                let precision =
                    (i16::from(precision) - i16::from(scale)).max(int_digits) + i16::from(scale);
                Some(if precision <= 38 {
                    Decimal {
                        precision: precision as u8,
                        scale,
                    }
                } else {
                    Numeric
                })
            }
            (Decimal { .. }, Numeric) | (Numeric, Decimal { .. }) => Some(Numeric),
            (
                Decimal {
                    precision: p1,
                    scale: s1,
                },
                Decimal {
                    precision: p2,
                    scale: s2,
                },
            ) => {
                let scale = s1.max(s2);
                let int_digits = (i16::from(p1) - i16::from(s1)).max(i16::from(p2) - i16::from(s2));
                let precision = int_digits + i16::from(scale);
                if precision <= 38 {
                    Some(Decimal {
                        precision: precision as u8,
                        scale,
                    })
                } else {
                    Some(Numeric)
                }
            }
            (Timestamp, TimestampTz) | (TimestampTz, Timestamp) => None,
            // A MySQL TIME column landed as a time of day before durations were read as such.
            (Time, Interval) | (Interval, Time) => Some(Interval),
            (Text, Json | Uuid) => Some(Text),
            _ => None,
        }
    }
}

fn parse_decimal(t: &str) -> Option<ColType> {
    let inner = t
        .strip_prefix("numeric")
        .or_else(|| t.strip_prefix("decimal"))?
        .trim()
        .strip_prefix('(')?
        .strip_suffix(')')?;
    let (p, s) = inner.split_once(',').unwrap_or((inner, "0"));
    let precision: u8 = p.trim().parse().ok()?;
    let scale: i8 = s.trim().parse().ok()?;
    ((1..=38).contains(&precision) && scale >= 0 && i16::from(scale) <= i16::from(precision))
        .then_some(ColType::Decimal { precision, scale })
}

impl fmt::Display for ColType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.ddl(Backend::Postgres))
    }
}

/// The column type of an Arrow field in a backend.
pub fn sql_type(field: &Field, backend: Backend) -> String {
    ColType::from_arrow(field).ddl(backend)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_types_parse_and_print_back() {
        for t in [
            "boolean",
            "smallint",
            "integer",
            "bigint",
            "real",
            "double precision",
            "numeric",
            "numeric(12,2)",
            "text",
            "jsonb",
            "uuid",
            "bytea",
            "date",
            "time",
            "timetz",
            "timestamp",
            "timestamptz",
            "interval",
        ] {
            assert_eq!(ColType::parse(t).unwrap().to_string(), t);
        }
        assert_eq!(
            ColType::parse(" NUMERIC ( 12 , 2 ) ").unwrap(),
            ColType::Decimal {
                precision: 12,
                scale: 2
            }
        );
        assert!(ColType::parse("numeric(40,2)").is_err());
        assert!(ColType::parse("money").is_err());
    }

    #[test]
    fn widenings() {
        use ColType::*;
        assert_eq!(Int32.widen_to(Int64), Some(Int64));
        assert_eq!(Int64.widen_to(Int16), Some(Int64));
        assert_eq!(Int32.widen_to(Float64), Some(Float64));
        // Not lossless through a double: bigints above 2^53.
        assert_eq!(Int64.widen_to(Float64), Some(Numeric));
        assert_eq!(Float64.widen_to(Int64), Some(Numeric));
        assert_eq!(
            Decimal {
                precision: 5,
                scale: 2
            }
            .widen_to(Int64),
            Some(Decimal {
                precision: 21,
                scale: 2
            })
        );
        assert_eq!(
            Decimal {
                precision: 10,
                scale: 2
            }
            .widen_to(Decimal {
                precision: 6,
                scale: 4
            }),
            Some(Decimal {
                precision: 12,
                scale: 4
            })
        );
        assert_eq!(Text.widen_to(Int64), None);
        assert_eq!(Int64.widen_to(Text), None);
        assert_eq!(Timestamp.widen_to(TimestampTz), None);
    }
}
