//! One warehouse value in its canonical form: what bronze's Arrow values and schemaless JSON
//! become, what row hashes are computed over, how the change log stores values, and how values
//! reach each backend (CSV for PostgreSQL's COPY, typed binds for SQLite).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value as Json;
use tidemark_core::mapping::ColType;

/// A value. Exact types that SQL spells as text (decimals, dates, timestamps, JSON, UUIDs) are
/// held as their canonical text, which both backends parse or store as is.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
}

/// Column name → value.
pub(crate) type Values = BTreeMap<String, Cell>;

impl Cell {
    pub fn is_null(&self) -> bool {
        matches!(self, Cell::Null)
    }

    /// The value as a column of type `ty` holds it: integers in a float column become floats,
    /// numbers in a text-like column become text, and so on.
    pub fn coerce(self, ty: ColType) -> Cell {
        use ColType::*;
        match (self, ty) {
            (Cell::Int(i), Float32 | Float64) => Cell::Float(i as f64),
            (Cell::Int(i), Bool) => Cell::Bool(i != 0),
            (Cell::Bool(b), Int16 | Int32 | Int64) => Cell::Int(i64::from(b)),
            (Cell::Text(t), Int16 | Int32 | Int64) if t.trim().parse::<i64>().is_ok() => {
                Cell::Int(t.trim().parse().unwrap_or_default())
            }
            (Cell::Text(t), Float32 | Float64) if t.trim().parse::<f64>().is_ok() => {
                Cell::Float(t.trim().parse().unwrap_or_default())
            }
            (Cell::Int(i), Bytes) => Cell::Text(i.to_string()),
            (c @ (Cell::Int(_) | Cell::Float(_) | Cell::Bool(_)), t)
                if !matches!(t, Bool | Int16 | Int32 | Int64 | Float32 | Float64) =>
            {
                Cell::Text(c.to_text())
            }
            (c, _) => c,
        }
    }

    /// Text for messages and for numbers stored in text columns.
    pub fn to_text(&self) -> String {
        match self {
            Cell::Null => String::new(),
            Cell::Bool(b) => b.to_string(),
            Cell::Int(i) => i.to_string(),
            Cell::Float(f) => float_text(*f),
            Cell::Text(t) => t.clone(),
            Cell::Bytes(b) => hex(b),
        }
    }

    /// The change-log form: JSON, self-describing so a later type change can still read it.
    pub fn to_json(&self) -> Json {
        match self {
            Cell::Null => Json::Null,
            Cell::Bool(b) => Json::Bool(*b),
            Cell::Int(i) => Json::from(*i),
            Cell::Float(f) => serde_json::json!({ "f": float_text(*f) }),
            Cell::Text(t) => Json::String(t.clone()),
            Cell::Bytes(b) => serde_json::json!({ "x": B64.encode(b) }),
        }
    }

    pub fn from_json(v: &Json) -> Cell {
        match v {
            Json::Null => Cell::Null,
            Json::Bool(b) => Cell::Bool(*b),
            Json::Number(n) => n
                .as_i64()
                .map(Cell::Int)
                .unwrap_or_else(|| Cell::Float(n.as_f64().unwrap_or(f64::NAN))),
            Json::String(s) => Cell::Text(s.clone()),
            Json::Object(o) => {
                if let Some(Json::String(f)) = o.get("f") {
                    Cell::Float(f.parse().unwrap_or(f64::NAN))
                } else if let Some(Json::String(x)) = o.get("x") {
                    Cell::Bytes(B64.decode(x).unwrap_or_default())
                } else {
                    Cell::Text(v.to_string())
                }
            }
            Json::Array(_) => Cell::Text(v.to_string()),
        }
    }

    /// Feeds the value into a row hash (type-tagged so `1` and `"1"` differ).
    fn hash_into(&self, out: &mut Vec<u8>) {
        match self {
            Cell::Null => out.push(0),
            Cell::Bool(b) => out.extend_from_slice(&[1, u8::from(*b)]),
            Cell::Int(i) => {
                out.push(2);
                out.extend_from_slice(&i.to_le_bytes());
            }
            Cell::Float(f) => {
                out.push(3);
                out.extend_from_slice(&f.to_bits().to_le_bytes());
            }
            Cell::Text(t) => {
                out.push(4);
                out.extend_from_slice(&(t.len() as u64).to_le_bytes());
                out.extend_from_slice(t.as_bytes());
            }
            Cell::Bytes(b) => {
                out.push(5);
                out.extend_from_slice(&(b.len() as u64).to_le_bytes());
                out.extend_from_slice(b);
            }
        }
    }

    /// The field of a PostgreSQL `COPY … (FORMAT csv)` row: unquoted empty is NULL.
    pub fn write_csv(&self, out: &mut String) {
        match self {
            Cell::Null => {}
            Cell::Bool(b) => out.push_str(if *b { "t" } else { "f" }),
            Cell::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Cell::Float(f) => out.push_str(&float_text(*f)),
            Cell::Text(t) => {
                out.push('"');
                // Whole runs between quotes: most text has none.
                let mut parts = t.split('"');
                out.push_str(parts.next().unwrap_or_default());
                for part in parts {
                    out.push_str("\"\"");
                    out.push_str(part);
                }
                out.push('"');
            }
            Cell::Bytes(b) => {
                out.push_str("\"\\x");
                out.push_str(&hex(b));
                out.push('"');
            }
        }
    }
}

/// Floats in the spelling PostgreSQL reads back (`NaN`, `Infinity`).
fn float_text(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f == f64::INFINITY {
        "Infinity".into()
    } else if f == f64::NEG_INFINITY {
        "-Infinity".into()
    } else {
        format!("{f:?}")
    }
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

/// The hash of a row's tracked values (nulls skipped, so adding a column changes no hash), as
/// 16 hex digits.
pub(crate) fn row_hash<'a>(values: impl IntoIterator<Item = (&'a String, &'a Cell)>) -> String {
    let mut buf = Vec::with_capacity(256);
    for (name, cell) in values {
        if cell.is_null() {
            continue;
        }
        buf.extend_from_slice(&(name.len() as u64).to_le_bytes());
        buf.extend_from_slice(name.as_bytes());
        cell.hash_into(&mut buf);
    }
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&buf))
}

/// Values as a JSON object (the change log's `vals`), written straight from the cells.
pub(crate) fn values_to_json(values: &Values) -> String {
    serde_json::to_string(&JsonValues(values)).expect("cells serialize")
}

/// [`Cell::to_json`]'s JSON of a row, without building a `serde_json::Value`.
struct JsonValues<'a>(&'a Values);

impl serde::Serialize for JsonValues<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, JsonCell(v))))
    }
}

struct JsonCell<'a>(&'a Cell);

impl serde::Serialize for JsonCell<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let (tag, text) = match self.0 {
            Cell::Null => return s.serialize_unit(),
            Cell::Bool(b) => return s.serialize_bool(*b),
            Cell::Int(i) => return s.serialize_i64(*i),
            Cell::Text(t) => return s.serialize_str(t),
            Cell::Float(f) => ("f", float_text(*f)),
            Cell::Bytes(b) => ("x", B64.encode(b)),
        };
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(tag, &text)?;
        m.end()
    }
}

pub(crate) fn values_from_json(text: &str) -> Values {
    match serde_json::from_str::<Json>(text) {
        Ok(Json::Object(m)) => m
            .iter()
            .map(|(k, v)| (k.clone(), Cell::from_json(v)))
            .collect(),
        _ => Values::new(),
    }
}

/// The canonical key text (`_key`): a JSON array of the key values in key-column order.
pub(crate) fn key_text(cells: &[Cell]) -> String {
    Json::Array(cells.iter().map(Cell::to_json).collect()).to_string()
}

/// A JSON text in canonical form (keys sorted, compact), so equal documents hash equal.
/// A decimal's canonical text: no trailing fractional zeros, no `-0`, so `12.50` and `12.500`
/// (a widened scale) hash and key alike. Other text is returned as it is.
pub(crate) fn canonical_decimal(text: &str) -> String {
    let t = text.trim();
    let (neg, digits) = match t.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return text.to_owned();
    }
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let body = if frac.is_empty() {
        int.to_owned()
    } else {
        format!("{int}.{frac}")
    };
    if neg && body != "0" {
        format!("-{body}")
    } else {
        body
    }
}

pub(crate) fn canonical_json(text: &str) -> String {
    serde_json::from_str::<Json>(text).map_or_else(|_| text.to_owned(), |v| v.to_string())
}

/// A schemaless JSON value and the column type it implies (`None` for null).
pub(crate) fn infer(v: &Json) -> (Cell, Option<ColType>) {
    match v {
        Json::Null => (Cell::Null, None),
        Json::Bool(b) => (Cell::Bool(*b), Some(ColType::Bool)),
        Json::Number(n) => match n.as_i64() {
            Some(i) => (Cell::Int(i), Some(ColType::Int64)),
            None if n.is_u64() => (Cell::Text(n.to_string()), Some(ColType::Numeric)),
            None => (
                Cell::Float(n.as_f64().unwrap_or(f64::NAN)),
                Some(ColType::Float64),
            ),
        },
        Json::String(s) => (Cell::Text(s.clone()), Some(ColType::Text)),
        Json::Array(_) | Json::Object(_) => (Cell::Text(v.to_string()), Some(ColType::Json)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_written_as_their_json_values_and_read_back() {
        let values: Values = [
            ("a", Cell::Null),
            ("b", Cell::Bool(true)),
            ("c", Cell::Int(-7)),
            ("d", Cell::Float(1.5)),
            ("e", Cell::Text("quote \" and \\ and \u{1}".into())),
            ("f", Cell::Bytes(vec![0, 255])),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let via_value = Json::Object(
            values
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect(),
        )
        .to_string();
        assert_eq!(values_to_json(&values), via_value);
        assert_eq!(values_from_json(&values_to_json(&values)), values);
    }

    #[test]
    fn decimals_have_one_text() {
        for (a, b) in [
            ("12.50", "12.5"),
            ("12.500", "12.5"),
            ("-0.00", "0"),
            ("007", "7"),
            ("-1.10", "-1.1"),
            ("0.0010", "0.001"),
            ("NaN", "NaN"),
        ] {
            assert_eq!(canonical_decimal(a), b, "{a}");
        }
    }

    #[test]
    fn log_form_round_trips() {
        for c in [
            Cell::Null,
            Cell::Bool(true),
            Cell::Int(-7),
            Cell::Float(1.5),
            Cell::Float(f64::INFINITY),
            Cell::Text("x\"y".into()),
            Cell::Bytes(vec![0, 255]),
        ] {
            assert_eq!(Cell::from_json(&c.to_json()), c);
        }
        assert!(
            matches!(Cell::from_json(&Cell::Float(f64::NAN).to_json()), Cell::Float(f) if f.is_nan())
        );
    }

    #[test]
    fn csv_quotes_text_and_leaves_null_empty() {
        let mut s = String::new();
        Cell::Text("a\"b,\n".into()).write_csv(&mut s);
        assert_eq!(s, "\"a\"\"b,\n\"");
        let mut s = String::new();
        Cell::Text(String::new()).write_csv(&mut s);
        assert_eq!(s, "\"\"");
        let mut s = String::new();
        Cell::Null.write_csv(&mut s);
        assert_eq!(s, "");
    }

    #[test]
    fn hash_ignores_nulls_and_tells_types_apart() {
        let a: Values = [("a".into(), Cell::Int(1))].into();
        let b: Values = [("a".into(), Cell::Int(1)), ("b".into(), Cell::Null)].into();
        let c: Values = [("a".into(), Cell::Text("1".into()))].into();
        assert_eq!(row_hash(&a), row_hash(&b));
        assert_ne!(row_hash(&a), row_hash(&c));
    }
}
