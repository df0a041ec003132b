//! Durations in the config: every `…_ms` key takes milliseconds (`interval_ms = 1000`) or a
//! human duration (`interval_ms = "1s"`). Environment overrides arrive as text and parse the
//! same way.

use serde::Deserializer;
use serde::de::{self, Visitor};

/// Milliseconds from an integer, a numeric string or a human duration ("250ms", "5s", "1m 30s").
pub fn parse(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if let Ok(ms) = t.parse::<u64>() {
        return Ok(ms);
    }
    humantime::parse_duration(t)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .map_err(|e| {
            format!("`{t}` is neither milliseconds nor a duration such as \"500ms\", \"5s\" or \"1m\": {e}")
        })
}

/// serde `deserialize_with` of the `…_ms` fields.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(Millis)
}

struct Millis;

impl Visitor<'_> for Millis {
    type Value = u64;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("milliseconds or a duration such as \"5s\"")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        parse(v).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn milliseconds_and_human_durations() {
        assert_eq!(parse("1500"), Ok(1500));
        assert_eq!(parse("250ms"), Ok(250));
        assert_eq!(parse("5s"), Ok(5000));
        assert_eq!(parse("1m 30s"), Ok(90_000));
        assert!(parse("5 parsecs").unwrap_err().contains("5 parsecs"));
    }
}
