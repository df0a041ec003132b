//! Fuzzes the decoders: any bytes as a JSON value, a JSON key, a JSON row under a schema, and a
//! Confluent Avro value under a registered Debezium envelope schema. Decoding must never panic.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use tidemark_wire::decode::{Decoder, DecoderOptions, WireFormat, Placeholder, decode_json_row, infer_json_row};
use tidemark_wire::encode::AvroEventEncoder;
use tidemark_core::event::RawRecord;
use tidemark_core::schema::{Schema, StructSchema};

const ROW_SCHEMA: &str = r#"{"type":"struct","name":"f.Value","fields":[
 {"type":"int32","field":"id"},
 {"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"2"},"field":"price"},
 {"type":"struct","optional":true,"name":"io.debezium.data.VariableScaleDecimal","fields":[{"type":"int32","field":"scale"},{"type":"bytes","field":"value"}],"field":"amount"},
 {"type":"int32","optional":true,"name":"io.debezium.time.Date","field":"d"},
 {"type":"int64","optional":true,"name":"io.debezium.time.MicroTimestamp","field":"ts"},
 {"type":"string","optional":true,"name":"io.debezium.time.ZonedTimestamp","field":"tz"},
 {"type":"string","optional":true,"name":"io.debezium.data.Json","field":"doc"},
 {"type":"string","optional":true,"name":"io.debezium.data.Uuid","field":"uid"},
 {"type":"array","optional":true,"items":{"type":"int32","optional":true},"field":"arr"},
 {"type":"map","optional":true,"keys":{"type":"string"},"values":{"type":"int64","optional":true},"field":"m"},
 {"type":"string","optional":true,"field":"s"}]}"#;

struct Fixture {
    row: Arc<StructSchema>,
    avro_text: String,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let schema = Schema::from_json(ROW_SCHEMA).unwrap();
        let avro_text = AvroEventEncoder::new(&schema, "f", 1).schema_text;
        Fixture { row: schema.as_struct().unwrap().clone(), avro_text }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let f = fixture();
    match mode % 4 {
        0 => {
            let mut d = Decoder::new(DecoderOptions::default(), None);
            let _ = d.decode_cached(&RawRecord { topic: "f.public.t", partition: 0, offset: 0, timestamp_ms: None, key: None, value: Some(rest) });
        }
        1 => {
            let mut d = Decoder::new(DecoderOptions::default(), None);
            let _ = d.decode_cached(&RawRecord { topic: "f.public.t", partition: 0, offset: 0, timestamp_ms: None, key: Some(rest), value: None });
        }
        2 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                let _ = decode_json_row(text, &f.row, &Placeholder::default());
                let _ = infer_json_row(text, &Placeholder::default());
            }
        }
        _ => {
            let mut d = Decoder::new(DecoderOptions { format: WireFormat::Avro, ..Default::default() }, None);
            d.add_avro_schema(1, &f.avro_text).unwrap();
            let mut framed = vec![0, 0, 0, 0, 1];
            framed.extend_from_slice(rest);
            let _ = d.decode_cached(&RawRecord { topic: "f.public.t", partition: 0, offset: 0, timestamp_ms: None, key: None, value: Some(&framed) });
        }
    }
});
