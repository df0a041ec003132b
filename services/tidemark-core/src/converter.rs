//! What a Kafka Connect converter wrote, as the configuration names it: the wire format of a
//! topic's keys and values, and the TOAST placeholder Debezium puts in place of values it did
//! not read. The decoder itself lives in `tidemark-wire`.

use std::fmt;

/// The wire format of a topic's keys and values (the converter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WireFormat {
    /// JsonConverter, with or without the schema envelope.
    #[default]
    Json,
    /// Confluent Avro (needs a Schema Registry).
    Avro,
}

impl WireFormat {
    pub const ALL: [WireFormat; 2] = [WireFormat::Json, WireFormat::Avro];

    pub fn as_str(self) -> &'static str {
        match self {
            WireFormat::Json => "json",
            WireFormat::Avro => "avro",
        }
    }
}

impl fmt::Display for WireFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The TOAST placeholder (`unavailable.value.placeholder`), as text and as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    text: Option<String>,
    bytes: Vec<u8>,
}

/// Debezium's default `unavailable.value.placeholder`.
pub const DEFAULT_PLACEHOLDER: &str = "__debezium_unavailable_value";

impl Default for Placeholder {
    fn default() -> Self {
        Placeholder::new(DEFAULT_PLACEHOLDER).expect("default placeholder is valid")
    }
}

impl Placeholder {
    /// From the connector setting: plain text, or `hex:<bytes>` as Debezium allows.
    pub fn new(setting: &str) -> Result<Placeholder, String> {
        let bytes = match setting.strip_prefix("hex:") {
            Some(hex) => decode_hex(hex).ok_or_else(|| format!("`{setting}` is not valid hex"))?,
            None => setting.as_bytes().to_vec(),
        };
        let text = String::from_utf8(bytes.clone()).ok();
        Ok(Placeholder { text, bytes })
    }

    pub fn matches_str(&self, s: &str) -> bool {
        self.text.as_deref() == Some(s)
    }

    pub fn matches_bytes(&self, b: &[u8]) -> bool {
        self.bytes == b
    }

    /// The placeholder as text, when it is valid UTF-8 (used by encoders and tests).
    pub fn text(&self) -> Option<&str> {
        self.text.as_deref()
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}
