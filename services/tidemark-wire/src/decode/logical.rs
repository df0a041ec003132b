//! Physical value + logical type → [`Value`]. Shared by the JSON and Avro decoders so both give
//! the same value for the same field.

use base64::Engine as _;

use tidemark_core::schema::{Kind, Logical, Schema};
use tidemark_core::value::{Decimal, TimeUnit, Timestamp, Value};

use super::error::FieldReason;
use tidemark_core::converter::Placeholder;

fn wrong(schema: &Schema, found: &'static str) -> FieldReason {
    FieldReason::WrongType {
        expected: expected_name(schema),
        found,
    }
}

/// What a schema expects, for error messages (`int32`, `int64 io.debezium.time.MicroTimestamp`).
pub(super) fn expected_name(schema: &Schema) -> String {
    match &schema.name {
        Some(n) if schema.logical != Logical::None => format!("{} {n}", schema.kind.name()),
        _ => schema.kind.name().to_owned(),
    }
}

pub(super) fn from_bool(schema: &Schema, v: bool) -> Result<Value, FieldReason> {
    match schema.kind {
        Kind::Boolean => Ok(Value::Bool(v)),
        _ => Err(wrong(schema, "boolean")),
    }
}

/// An integer under an integer, floating or temporal schema.
pub(super) fn from_int(schema: &Schema, v: i64) -> Result<Value, FieldReason> {
    let range = |lo: i64, hi: i64| {
        if (lo..=hi).contains(&v) {
            Ok(())
        } else {
            Err(FieldReason::OutOfRange {
                value: v.to_string(),
                expected: schema.kind.name(),
            })
        }
    };
    match schema.kind {
        Kind::Int8 => range(i8::MIN.into(), i8::MAX.into())?,
        Kind::Int16 => range(i16::MIN.into(), i16::MAX.into())?,
        Kind::Int32 => range(i32::MIN.into(), i32::MAX.into())?,
        Kind::Int64 => {}
        Kind::Float32 | Kind::Float64 => return Ok(Value::Float(v as f64)),
        _ => return Err(wrong(schema, "integer")),
    }
    let of_day = |per_second: i64| time_of_day(v, per_second);
    Ok(match schema.logical {
        Logical::Date => date(v)?,
        Logical::TimeMillis => of_day(1_000)?,
        Logical::TimeMicros => of_day(1_000_000)?,
        Logical::TimeNanos => of_day(1_000_000_000)?,
        Logical::Duration(unit) => Value::Duration(
            v.checked_mul(1_000_000_000 / unit.per_second())
                .ok_or_else(|| FieldReason::OutOfRange {
                    value: v.to_string(),
                    expected: "duration",
                })?,
        ),
        Logical::TimestampMillis => Value::Timestamp(Timestamp::from_epoch(v, TimeUnit::Millis)),
        Logical::TimestampMicros => Value::Timestamp(Timestamp::from_epoch(v, TimeUnit::Micros)),
        Logical::TimestampNanos => Value::Timestamp(Timestamp::from_epoch(v, TimeUnit::Nanos)),
        _ => Value::Int(v),
    })
}

/// A time of day, `00:00:00` … `24:00:00` (PostgreSQL's `24:00:00` included): a value past
/// midnight would be wrapped by every reader, and DuckDB refuses such a file.
fn time_of_day(v: i64, per_second: i64) -> Result<Value, FieldReason> {
    match v.checked_mul(1_000_000_000 / per_second) {
        Some(n) if (0..=NANOS_PER_DAY).contains(&n) => Ok(Value::Time(n)),
        _ => Err(FieldReason::OutOfRange {
            value: v.to_string(),
            expected: "a time of day (00:00:00 to 24:00:00)",
        }),
    }
}

const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;

/// Days since 1970 that every reader can render: chrono's years, which hold PostgreSQL's dates
/// up to year 262142 (a larger count is garbage, not a date any report can use).
fn date(v: i64) -> Result<Value, FieldReason> {
    i32::try_from(v)
        .ok()
        .filter(|d| tidemark_core::value::date_from_days(*d).is_some())
        .map(Value::Date)
        .ok_or_else(|| FieldReason::OutOfRange {
            value: v.to_string(),
            expected: "a date within years -262143 to 262142",
        })
}

pub(super) fn from_u64(schema: &Schema, v: u64) -> Result<Value, FieldReason> {
    match i64::try_from(v) {
        Ok(i) => from_int(schema, i),
        Err(_) if matches!(schema.kind, Kind::Float32 | Kind::Float64) => {
            Ok(Value::Float(v as f64))
        }
        Err(_) => Err(FieldReason::OutOfRange {
            value: v.to_string(),
            expected: schema.kind.name(),
        }),
    }
}

pub(super) fn from_f64(schema: &Schema, v: f64) -> Result<Value, FieldReason> {
    match schema.kind {
        Kind::Float32 | Kind::Float64 => Ok(Value::Float(v)),
        _ => Err(wrong(schema, "floating-point number")),
    }
}

/// A string under a string schema (or a float's NaN/Infinity spelling, or JSON's base64 bytes).
pub(super) fn from_str(schema: &Schema, s: &str, ph: &Placeholder) -> Result<Value, FieldReason> {
    if ph.matches_str(s) {
        return Ok(Value::Unavailable);
    }
    match schema.kind {
        Kind::String => string_logical(schema, s.to_owned()),
        Kind::Bytes => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| FieldReason::BadBase64(e.to_string()))?;
            from_bytes(schema, bytes, ph)
        }
        Kind::Float32 | Kind::Float64 => match s {
            "NaN" => Ok(Value::Float(f64::NAN)),
            "Infinity" => Ok(Value::Float(f64::INFINITY)),
            "-Infinity" => Ok(Value::Float(f64::NEG_INFINITY)),
            _ => Err(wrong(schema, "string")),
        },
        _ => Err(wrong(schema, "string")),
    }
}

/// An owned string under a string schema (the Avro path hands strings over by value).
pub(super) fn from_string(
    schema: &Schema,
    s: String,
    ph: &Placeholder,
) -> Result<Value, FieldReason> {
    if schema.kind == Kind::String && !ph.matches_str(&s) {
        return string_logical(schema, s);
    }
    from_str(schema, &s, ph)
}

fn string_logical(schema: &Schema, s: String) -> Result<Value, FieldReason> {
    Ok(match schema.logical {
        Logical::ZonedTimestamp => {
            let t = chrono::DateTime::parse_from_rfc3339(&s)
                .map_err(|e| FieldReason::BadTimestamp(format!("`{s}`: {e}")))?;
            let utc = t.to_utc();
            Value::Timestamp(Timestamp::At {
                seconds: utc.timestamp(),
                nanos: utc.timestamp_subsec_nanos(),
            })
        }
        Logical::Json => {
            serde_json::from_str::<serde::de::IgnoredAny>(&s)
                .map_err(|e| FieldReason::BadJson(e.to_string()))?;
            Value::Json(s)
        }
        Logical::Uuid => Value::Uuid(
            uuid::Uuid::parse_str(&s).map_err(|e| FieldReason::BadUuid(format!("`{s}`: {e}")))?,
        ),
        _ => Value::String(s),
    })
}

/// Bytes under a bytes schema (Decimal or plain).
pub(super) fn from_bytes(
    schema: &Schema,
    b: Vec<u8>,
    ph: &Placeholder,
) -> Result<Value, FieldReason> {
    if ph.matches_bytes(&b) {
        return Ok(Value::Unavailable);
    }
    match (&schema.kind, &schema.logical) {
        (Kind::Bytes, Logical::Decimal { scale, .. }) => decimal(&b, *scale),
        (Kind::Bytes, _) => Ok(Value::Bytes(b)),
        (Kind::String, _) => {
            // Avro may carry strings as bytes only if the schema says so; refuse otherwise.
            Err(wrong(schema, "bytes"))
        }
        _ => Err(wrong(schema, "bytes")),
    }
}

/// The decimal scales a value may have: PostgreSQL's numeric keeps at most 16383 digits after
/// the point, and a negative scale adds zeros before it. Outside, a value's text would grow to
/// `scale` digits (one small record could take gigabytes): it is a dead letter instead.
pub(super) const DECIMAL_SCALES: std::ops::RangeInclusive<i32> = -1000..=16383;

/// Kafka Connect's Decimal bytes at a scale.
pub(super) fn decimal(b: &[u8], scale: i32) -> Result<Value, FieldReason> {
    if !DECIMAL_SCALES.contains(&scale) {
        return Err(FieldReason::OutOfRange {
            value: format!("decimal scale {scale}"),
            expected: "a decimal scale within -1000..=16383",
        });
    }
    Decimal::from_be_bytes(b, scale)
        .map(Value::Decimal)
        .ok_or(FieldReason::DecimalOverflow { bytes: b.len() })
}

/// `io.debezium.data.VariableScaleDecimal` from its decoded struct fields.
pub(super) fn variable_scale(scale: &Value, value: &Value) -> Result<Value, FieldReason> {
    match (scale, value) {
        (Value::Int(s), Value::Bytes(b)) => decimal(b, *s as i32),
        (Value::Null, Value::Null) => Ok(Value::Null),
        _ => Err(FieldReason::WrongType {
            expected: "struct {scale int32, value bytes}".into(),
            found: "other struct",
        }),
    }
}
