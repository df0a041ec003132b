//! Typed values of decoded rows.
//!
//! A [`Value`] holds the *meaning* of a Debezium field, not its wire form: a Decimal is an
//! unscaled integer and a scale (not base64 bytes), a MicroTimestamp is an instant (not a count),
//! and the TOAST placeholder is [`Value::Unavailable`] (not a string). Which SQL/Arrow type a value
//! lands in is decided by its schema (see [`crate::mapping`]), so the value itself stays small.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};

use crate::schema::StructSchema;

/// One decoded field value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    /// The column was not sent (Debezium's `__debezium_unavailable_value`, an unchanged TOASTed
    /// value): the stored value must be kept, never overwritten.
    Unavailable,
    Bool(bool),
    /// Any integer width (int8 … int64); the width is in the schema.
    Int(i64),
    Float(f64),
    String(String),
    Bytes(Vec<u8>),
    Decimal(Decimal),
    /// Days since 1970-01-01 (raw, because PostgreSQL dates exceed chrono's range).
    Date(i32),
    /// Nanoseconds since midnight (raw, because `24:00:00` is a valid PostgreSQL time).
    Time(i64),
    /// A signed duration in nanoseconds (a MySQL TIME, which spans ±838 hours).
    Duration(i64),
    /// An instant in UTC (naive timestamps are UTC wall clock in Debezium).
    Timestamp(Timestamp),
    /// A JSON document (`io.debezium.data.Json`), validated, as text.
    Json(String),
    Uuid(uuid::Uuid),
    Array(Vec<Value>),
    /// Values in the order of the struct schema's fields.
    Struct(Vec<Value>),
    Map(Vec<(Value, Value)>),
}

/// An exact decimal: `unscaled × 10^-scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decimal {
    pub unscaled: i128,
    pub scale: i32,
}

impl Decimal {
    /// Decodes Kafka Connect's Decimal wire form: big-endian two's-complement bytes.
    /// Returns `None` when the number does not fit 128 bits (38 digits).
    pub fn from_be_bytes(bytes: &[u8], scale: i32) -> Option<Decimal> {
        if bytes.len() > 16 {
            // Leading sign-extension bytes are allowed; anything more overflows.
            let (head, tail) = bytes.split_at(bytes.len() - 16);
            let fill = if tail[0] & 0x80 != 0 { 0xff } else { 0x00 };
            if head.iter().any(|b| *b != fill) {
                return None;
            }
            return Decimal::from_be_bytes(tail, scale);
        }
        if bytes.is_empty() {
            return Some(Decimal { unscaled: 0, scale });
        }
        let fill = if bytes[0] & 0x80 != 0 { 0xff } else { 0x00 };
        let mut buf = [fill; 16];
        buf[16 - bytes.len()..].copy_from_slice(bytes);
        Some(Decimal {
            unscaled: i128::from_be_bytes(buf),
            scale,
        })
    }

    /// The shortest big-endian two's-complement encoding (the inverse of `from_be_bytes`).
    pub fn to_be_bytes(&self) -> Vec<u8> {
        let all = self.unscaled.to_be_bytes();
        let fill = if self.unscaled < 0 { 0xff } else { 0x00 };
        let mut start = 0;
        while start < 15 && all[start] == fill && (all[start + 1] & 0x80) == (fill & 0x80) {
            start += 1;
        }
        all[start..].to_vec()
    }
}

impl fmt::Display for Decimal {
    /// Plain decimal notation, e.g. `-1234.567`; negative scales print trailing zeros.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let negative = self.unscaled < 0;
        let digits = self.unscaled.unsigned_abs().to_string();
        let sign = if negative { "-" } else { "" };
        if self.scale <= 0 {
            let zeros = "0".repeat(self.scale.unsigned_abs() as usize);
            return if self.unscaled == 0 {
                write!(f, "0")
            } else {
                write!(f, "{sign}{digits}{zeros}")
            };
        }
        let scale = self.scale as usize;
        if digits.len() > scale {
            let (int, frac) = digits.split_at(digits.len() - scale);
            write!(f, "{sign}{int}.{frac}")
        } else {
            write!(f, "{sign}0.{}{digits}", "0".repeat(scale - digits.len()))
        }
    }
}

/// PostgreSQL `+infinity` as Debezium sends it in any timestamp unit.
pub const PG_POS_INFINITY: i64 = 9_223_372_036_825_200_000;
/// PostgreSQL `-infinity` as Debezium sends it in any timestamp unit.
pub const PG_NEG_INFINITY: i64 = -9_223_372_036_832_400_000;

/// An instant, or one of PostgreSQL's infinities (which overflow every date library).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timestamp {
    NegInfinity,
    /// Seconds since the epoch and the nanoseconds within that second (always `0..1e9`).
    At {
        seconds: i64,
        nanos: u32,
    },
    PosInfinity,
}

/// The unit of an epoch count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeUnit {
    Millis,
    Micros,
    Nanos,
}

impl TimeUnit {
    /// How many of this unit make a second.
    pub const fn per_second(self) -> i64 {
        match self {
            TimeUnit::Millis => 1_000,
            TimeUnit::Micros => 1_000_000,
            TimeUnit::Nanos => 1_000_000_000,
        }
    }
}

impl Timestamp {
    /// From a count since the epoch, recognising PostgreSQL's infinity sentinels.
    pub fn from_epoch(count: i64, unit: TimeUnit) -> Timestamp {
        if count >= PG_POS_INFINITY {
            return Timestamp::PosInfinity;
        }
        if count <= PG_NEG_INFINITY {
            return Timestamp::NegInfinity;
        }
        let per = unit.per_second();
        let seconds = count.div_euclid(per);
        let frac = count.rem_euclid(per);
        let nanos = (frac * (1_000_000_000 / per)) as u32;
        Timestamp::At { seconds, nanos }
    }

    /// The count in `unit` (truncated); the infinities saturate to `i64::MAX`/`i64::MIN`,
    /// as do instants outside the unit's range.
    pub fn to_epoch(self, unit: TimeUnit) -> i64 {
        match self {
            Timestamp::NegInfinity => i64::MIN,
            Timestamp::PosInfinity => i64::MAX,
            Timestamp::At { seconds, nanos } => {
                let per = unit.per_second();
                let sub = i64::from(nanos) / (1_000_000_000 / per);
                seconds
                    .checked_mul(per)
                    .and_then(|s| s.checked_add(sub))
                    .unwrap_or(if seconds < 0 { i64::MIN } else { i64::MAX })
            }
        }
    }

    /// The UTC wall clock, or `None` for the infinities and instants beyond chrono's range.
    pub fn to_naive(self) -> Option<NaiveDateTime> {
        match self {
            Timestamp::At { seconds, nanos } => {
                DateTime::from_timestamp(seconds, nanos).map(|d| d.naive_utc())
            }
            _ => None,
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self, self.to_naive()) {
            (Timestamp::PosInfinity, _) => write!(f, "infinity"),
            (Timestamp::NegInfinity, _) => write!(f, "-infinity"),
            (_, Some(t)) => write!(f, "{}Z", t.format("%Y-%m-%dT%H:%M:%S%.f")),
            (Timestamp::At { seconds, nanos }, None) => write!(f, "@{seconds}.{nanos:09}"),
        }
    }
}

/// Days since the epoch as a calendar date (`None` beyond chrono's range).
/// A signed duration as MySQL writes a TIME, which PostgreSQL reads as an interval:
/// `-838:59:59.000000`, `100:00:00.250000`.
pub fn duration_text(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    let (secs, sub) = (n / 1_000_000_000, n % 1_000_000_000);
    format!(
        "{sign}{:02}:{:02}:{:02}.{:06}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        sub / 1000
    )
}

pub fn date_from_days(days: i32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(1970, 1, 1)?.checked_add_signed(chrono::Duration::days(days.into()))
}

/// Nanoseconds since midnight as a time of day (`None` for 24:00:00 and beyond).
pub fn time_from_nanos(nanos: i64) -> Option<NaiveTime> {
    let secs = u32::try_from(nanos.div_euclid(1_000_000_000)).ok()?;
    NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos.rem_euclid(1_000_000_000) as u32)
}

/// A row image (`key`, `before` or `after`).
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    /// Decoded under a schema (JSON with the schema envelope, or Avro).
    Typed(TypedRow),
    /// Schemaless JSON: the object's text, kept as it came (bronze stores it as JSON text; the
    /// merger infers column types from the values or from the table's configured columns).
    Json(String),
}

impl Value {
    /// About how many bytes the value takes once landed (Arrow buffers): what the memory budget
    /// counts, since a small record can decode to much more (a decimal of scale 16,383 is a
    /// 16 KB string).
    pub fn landed_bytes(&self) -> usize {
        match self {
            Value::Null | Value::Unavailable | Value::Bool(_) => 1,
            Value::Int(_) | Value::Float(_) | Value::Date(_) | Value::Time(_) => 8,
            Value::Duration(_) | Value::Timestamp(_) => 8,
            Value::Uuid(_) => 36,
            Value::String(s) | Value::Json(s) => s.len() + 4,
            Value::Bytes(b) => b.len() + 4,
            // Rendered as text when the scale is outside what Decimal128 holds.
            Value::Decimal(d) => 16 + d.scale.unsigned_abs() as usize,
            Value::Array(items) | Value::Struct(items) => {
                4 + items.iter().map(Value::landed_bytes).sum::<usize>()
            }
            Value::Map(entries) => {
                4 + entries
                    .iter()
                    .map(|(k, v)| k.landed_bytes() + v.landed_bytes())
                    .sum::<usize>()
            }
        }
    }
}

impl Row {
    /// [`Value::landed_bytes`] of the row's values (a schemaless row is its text).
    pub fn landed_bytes(&self) -> usize {
        match self {
            Row::Typed(t) => t.values.iter().map(Value::landed_bytes).sum(),
            Row::Json(text) => text.len(),
        }
    }
}

/// Values aligned with the fields of their struct schema.
#[derive(Debug, Clone, PartialEq)]
pub struct TypedRow {
    pub schema: Arc<StructSchema>,
    pub values: Vec<Value>,
}

impl TypedRow {
    /// The value of the named column, if the schema has it.
    pub fn get(&self, column: &str) -> Option<&Value> {
        self.schema.index_of(column).map(|i| &self.values[i])
    }
}

impl Row {
    /// The typed row, if this row was decoded under a schema.
    pub fn as_typed(&self) -> Option<&TypedRow> {
        match self {
            Row::Typed(t) => Some(t),
            Row::Json(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_bytes_round_trip_and_print() {
        let d = Decimal::from_be_bytes(&[0x01, 0xe2, 0x40], 2).unwrap();
        assert_eq!(d.to_string(), "1234.56");
        let n = Decimal::from_be_bytes(&[0xed, 0x29, 0x79], 3).unwrap();
        assert_eq!(n.to_string(), "-1234.567");
        for v in [
            0i128,
            1,
            -1,
            127,
            128,
            -128,
            -129,
            255,
            256,
            i128::MAX,
            i128::MIN,
        ] {
            let d = Decimal {
                unscaled: v,
                scale: 0,
            };
            assert_eq!(Decimal::from_be_bytes(&d.to_be_bytes(), 0), Some(d), "{v}");
        }
        assert_eq!(
            Decimal {
                unscaled: -5,
                scale: 3
            }
            .to_string(),
            "-0.005"
        );
        assert_eq!(Decimal::from_be_bytes(&[1u8; 17], 0), None);
        let long = [&[0xffu8; 4][..], &(-2i128).to_be_bytes()[..]].concat();
        assert_eq!(Decimal::from_be_bytes(&long, 0).unwrap().unscaled, -2);
    }

    #[test]
    fn timestamps_handle_negative_epochs_and_infinity() {
        let t = Timestamp::from_epoch(-1_257_206_400_000_000, TimeUnit::Micros);
        assert_eq!(t.to_string(), "1930-03-01T00:00:00Z");
        assert_eq!(
            Timestamp::from_epoch(PG_POS_INFINITY, TimeUnit::Micros),
            Timestamp::PosInfinity
        );
        assert_eq!(
            Timestamp::from_epoch(-1, TimeUnit::Millis).to_epoch(TimeUnit::Nanos),
            -1_000_000
        );
    }
}
