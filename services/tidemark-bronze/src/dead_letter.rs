//! Dead letters: records that could not be decoded, kept with their raw bytes, the error and
//! their coordinates. Written as JSON lines next to the commit that accounts for them.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tidemark_wire::decode::DecodeError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    /// Base64 of the raw key bytes.
    pub key: Option<String>,
    /// Base64 of the raw value bytes.
    pub value: Option<String>,
    /// A stable label (`invalid_json`, `bad_field`, …).
    pub reason: String,
    /// The full error message.
    pub error: String,
}

impl DeadLetter {
    pub fn new(err: &DecodeError, key: Option<&[u8]>, value: Option<&[u8]>) -> DeadLetter {
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        DeadLetter {
            topic: err.kafka.topic.clone(),
            partition: err.kafka.partition,
            offset: err.kafka.offset,
            timestamp_ms: err.kafka.timestamp_ms,
            key: key.map(b64),
            value: value.map(b64),
            reason: err.reason().as_str().to_owned(),
            error: err.to_string(),
        }
    }

    /// The raw value bytes.
    pub fn value_bytes(&self) -> Option<Vec<u8>> {
        self.value
            .as_ref()
            .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
    }
}

/// JSON lines of dead letters.
pub fn to_jsonl(letters: &[DeadLetter]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in letters {
        serde_json::to_writer(&mut out, l).expect("dead letters serialize");
        out.push(b'\n');
    }
    out
}

pub fn from_jsonl(bytes: &[u8]) -> Result<Vec<DeadLetter>, serde_json::Error> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(serde_json::from_slice)
        .collect()
}
