//! Helpers shared by the decoder tests.
#![allow(dead_code)]

use tidemark_core::event::{Decoded, RawRecord};
use tidemark_wire::decode::{DecodeError, Decoder, DecoderOptions, WireFormat};

pub(crate) fn record<'a>(
    topic: &'a str,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
) -> RawRecord<'a> {
    RawRecord {
        topic,
        partition: 3,
        offset: 42,
        timestamp_ms: Some(1_700_000_000_000),
        key,
        value,
    }
}

pub(crate) fn json_decoder() -> Decoder {
    Decoder::new(
        DecoderOptions {
            format: WireFormat::Json,
            ..Default::default()
        },
        None,
    )
}

pub(crate) fn decode_json(topic: &str, value: &[u8]) -> Result<Decoded, DecodeError> {
    json_decoder().decode_cached(&record(topic, None, Some(value)))
}
