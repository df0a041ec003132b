//! Decode throughput: `cargo bench -p tidemark-wire --bench decode`.
//!
//! Prints events/s and MB/s for an update of the demo's `customers` table (the generator's
//! schema) as a schemaless JSON event, a JSON event with the schema envelope, and an Avro event,
//! next to the floor: the same JSON parsed by plain typed `serde_json` into a struct (what any
//! consumer pays just to read it). The ratio is floor speed / tidemark speed.

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tidemark_core::event::{ChangeEvent, KafkaCoords, Op, RawRecord, Snapshot, Source};
use tidemark_core::schema::Schema;
use tidemark_core::value::{Row, TimeUnit, Timestamp, TypedRow, Value};
use tidemark_generator::bank::{self, Table};
use tidemark_wire::decode::{Decoder, DecoderOptions, Placeholder, WireFormat};
use tidemark_wire::encode::{AvroEventEncoder, event_json};

const EVENTS: usize = 20_000;
const TOPIC: &str = "bank.public.customers";

/// The demo's `customers` table, as the generator (and Debezium) describe it.
fn row_schema() -> Schema {
    bank::row_schema("bank", Table::Customers)
}

fn event(i: usize, schema: &Schema) -> ChangeEvent {
    let st = schema.as_struct().unwrap().clone();
    let ts = |off: i64| {
        Value::Timestamp(Timestamp::from_epoch(
            1_700_000_000_000 + off * 1_003,
            TimeUnit::Millis,
        ))
    };
    let values = vec![
        Value::Int(i as i64),
        Value::String(format!("Firstname{} Lastname-{}", i % 977, i % 3271)),
        Value::String(format!("customer.{i}@example-mail.com")),
        Value::String(["Lisbon", "Porto", "Braga", "Faro"][i % 4].into()),
        Value::String(["bronze", "silver", "gold", "platinum"][i % 4].into()),
        Value::String(["active", "dormant"][i % 2].into()),
        ts(i as i64),
    ];
    let after = Row::Typed(TypedRow { schema: st, values });
    let lsn = 24_000_000 + i as i64 * 40;
    ChangeEvent {
        op: Op::Update,
        key: None,
        before: None,
        after: Some(after),
        source: Source {
            version: Some("3.1.0.Final".into()),
            connector: Some("postgresql".into()),
            name: Some("bank".into()),
            ts_ms: Some(1_746_440_315_942 + i as i64),
            ts_us: Some(1_746_440_315_942_179 + i as i64 * 1000),
            ts_ns: Some(1_746_440_315_942_179_000 + i as i64 * 1_000_000),
            snapshot: Some(Snapshot::False),
            db: Some("bank".into()),
            sequence: Some(format!("[\"{}\",\"{lsn}\"]", lsn - 8)),
            schema: Some("public".into()),
            table: Some("customers".into()),
            tx_id: Some(777 + i as i64),
            lsn: Some(lsn),
            ..Default::default()
        },
        ts_ms: Some(1_746_440_316_214 + i as i64),
        ts_us: None,
        ts_ns: None,
        transaction: None,
        kafka: KafkaCoords {
            topic: TOPIC.into(),
            partition: 0,
            offset: i as i64,
            timestamp_ms: None,
        },
        schema: None,
    }
}

// The floor: the same document read by plain typed serde into structs.
#[derive(Deserialize)]
#[allow(dead_code)]
struct FloorRow {
    id: i64,
    name: Option<String>,
    email: Option<String>,
    city: Option<String>,
    tier: Option<String>,
    status: Option<String>,
    updated_at: Option<String>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct FloorSource {
    version: Option<String>,
    connector: Option<String>,
    name: Option<String>,
    ts_ms: Option<i64>,
    ts_us: Option<i64>,
    ts_ns: Option<i64>,
    snapshot: Option<String>,
    db: Option<String>,
    sequence: Option<String>,
    schema: Option<String>,
    table: Option<String>,
    #[serde(rename = "txId")]
    tx_id: Option<i64>,
    lsn: Option<i64>,
    xmin: Option<i64>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct FloorPayload {
    before: Option<FloorRow>,
    after: Option<FloorRow>,
    source: FloorSource,
    op: String,
    ts_ms: Option<i64>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct FloorEnvelope {
    schema: serde::de::IgnoredAny,
    payload: FloorPayload,
}

/// Best of five rounds over the corpus: events/s and MB/s.
fn measure(corpus: &[Vec<u8>], mut f: impl FnMut(&[u8])) -> (f64, f64) {
    let bytes: usize = corpus.iter().map(Vec::len).sum();
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        for rec in corpus {
            f(rec);
        }
        best = best.min(t.elapsed());
    }
    let s = best.as_secs_f64();
    (corpus.len() as f64 / s, bytes as f64 / s / 1e6)
}

fn report(name: &str, corpus: &[Vec<u8>], ours: (f64, f64), floor: Option<(f64, f64)>) {
    let avg = corpus.iter().map(Vec::len).sum::<usize>() / corpus.len();
    print!(
        "{name:<34} {avg:>6} B/event  {:>10.0} events/s  {:>7.1} MB/s",
        ours.0, ours.1
    );
    match floor {
        Some(fl) => println!(
            "   floor {:>10.0} events/s  {:>7.1} MB/s   ratio {:.2}x",
            fl.0,
            fl.1,
            fl.0 / ours.0
        ),
        None => println!(),
    }
}

fn main() {
    let schema = row_schema();
    let ph = Placeholder::default();
    let events: Vec<ChangeEvent> = (0..EVENTS).map(|i| event(i, &schema)).collect();
    let schemaless: Vec<Vec<u8>> = events
        .iter()
        .map(|e| event_json(e, &schema, false, &ph))
        .collect();
    let with_schema: Vec<Vec<u8>> = (0..EVENTS)
        .map(|i| event_json(&event(i, &schema), &schema, true, &ph))
        .collect();
    let enc = AvroEventEncoder::new(&schema, TOPIC, 1);
    let avro: Vec<Vec<u8>> = events.iter().map(|e| enc.encode(e, &ph).unwrap()).collect();

    let mut json = Decoder::new(DecoderOptions::default(), None);
    let mut avro_dec = Decoder::new(
        DecoderOptions {
            format: WireFormat::Avro,
            ..Default::default()
        },
        None,
    );
    avro_dec.add_avro_schema(1, &enc.schema_text).unwrap();

    println!(
        "decode throughput, {EVENTS} events per round, best of 5 (ratio = floor speed / tidemark speed)"
    );
    let ours = measure(&schemaless, |v| {
        black_box(json.decode_cached(&rec(v)).unwrap());
    });
    let floor = measure(&schemaless, |v| {
        black_box(serde_json::from_slice::<FloorPayload>(v).unwrap());
    });
    report(
        "json, no schema (rows as JSON)",
        &schemaless,
        ours,
        Some(floor),
    );

    let ours = measure(&with_schema, |v| {
        black_box(json.decode_cached(&rec(v)).unwrap());
    });
    let floor = measure(&with_schema, |v| {
        black_box(serde_json::from_slice::<FloorEnvelope>(v).unwrap());
    });
    report(
        "json + schema (typed rows)",
        &with_schema,
        ours,
        Some(floor),
    );

    // Avro's floor: apache-avro reading the datum into its own value tree, nothing more.
    let avro_schema = apache_avro::Schema::parse_str(&enc.schema_text).unwrap();
    let ours = measure(&avro, |v| {
        black_box(avro_dec.decode_cached(&rec(v)).unwrap());
    });
    let floor = measure(&avro, |v| {
        let mut body = &v[5..];
        black_box(apache_avro::from_avro_datum(&avro_schema, &mut body, None).unwrap());
    });
    report("avro (typed rows)", &avro, ours, Some(floor));
}

fn rec(v: &[u8]) -> RawRecord<'_> {
    RawRecord {
        topic: TOPIC,
        partition: 0,
        offset: 0,
        timestamp_ms: None,
        key: None,
        value: Some(v),
    }
}
