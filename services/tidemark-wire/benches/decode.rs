//! Decode throughput: `cargo bench -p tidemark-wire --bench decode`.
//!
//! Prints events/s and MB/s for a ~700-byte schemaless event, a ~2.5 KB event with the schema
//! envelope, and an Avro event, next to the floor: the same JSON parsed by plain typed
//! `serde_json` into a struct (what any consumer pays just to read it). The ratio is
//! tidemark time / floor time.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tidemark_core::event::{ChangeEvent, KafkaCoords, Op, RawRecord, Snapshot, Source};
use tidemark_core::schema::{Field, Kind, Logical, Schema, StructSchema};
use tidemark_core::value::{Row, TimeUnit, Timestamp, TypedRow, Value};
use tidemark_wire::decode::{Decoder, DecoderOptions, Placeholder, WireFormat};
use tidemark_wire::encode::{AvroEventEncoder, decimal, event_json};

const EVENTS: usize = 20_000;
const TOPIC: &str = "bank.public.customers";

/// The table's first `columns` columns (the with-schema event uses a narrower table so that the
/// whole envelope is ~2.5 KB, like a real PostgreSQL event of a 5-column table).
fn row_schema(columns: usize) -> Schema {
    let f = |n: &str, kind: Kind, logical: Logical, name: Option<&str>| Field {
        name: n.into(),
        schema: Schema {
            kind,
            optional: n != "id",
            logical,
            name: name.map(str::to_owned),
        },
    };
    let fields = vec![
        f("id", Kind::Int64, Logical::None, None),
        f("first_name", Kind::String, Logical::None, None),
        f("last_name", Kind::String, Logical::None, None),
        f("email", Kind::String, Logical::None, None),
        f("tier", Kind::String, Logical::None, None),
        f(
            "balance",
            Kind::Bytes,
            Logical::Decimal {
                scale: 2,
                precision: Some(12),
            },
            Some("org.apache.kafka.connect.data.Decimal"),
        ),
        f(
            "birth_date",
            Kind::Int32,
            Logical::Date,
            Some("io.debezium.time.Date"),
        ),
        f(
            "created_at",
            Kind::Int64,
            Logical::TimestampMicros,
            Some("io.debezium.time.MicroTimestamp"),
        ),
        f(
            "updated_at",
            Kind::Int64,
            Logical::TimestampMicros,
            Some("io.debezium.time.MicroTimestamp"),
        ),
        f("active", Kind::Boolean, Logical::None, None),
        f("street", Kind::String, Logical::None, None),
        f("city", Kind::String, Logical::None, None),
    ];
    let fields = fields.into_iter().take(columns).collect();
    Schema {
        kind: Kind::Struct(Arc::new(StructSchema::new(
            Some("bank.public.customers.Value".into()),
            fields,
        ))),
        optional: false,
        logical: Logical::None,
        name: Some("bank.public.customers.Value".into()),
    }
}

fn event(i: usize, schema: &Schema) -> ChangeEvent {
    let st = schema.as_struct().unwrap().clone();
    let ts = |off: i64| {
        Value::Timestamp(Timestamp::from_epoch(
            1_700_000_000_000_000 + off * 1_000_003,
            TimeUnit::Micros,
        ))
    };
    let mut values = vec![
        Value::Int(i as i64),
        Value::String(format!("Firstname{}", i % 977)),
        Value::String(format!("Lastname-{}", i % 3271)),
        Value::String(format!("customer.{i}@example-mail.com")),
        Value::String(["bronze", "silver", "gold", "platinum"][i % 4].into()),
        decimal((i as i128 * 7919) % 10_000_000, 2),
        Value::Date(7_000 + (i % 9000) as i32),
        ts(i as i64),
        ts(i as i64 * 3),
        Value::Bool(!i.is_multiple_of(3)),
        Value::String(format!("{} Harbour Street, Apartment {}", i % 500, i % 40)),
        Value::String(["Lisbon", "Porto", "Braga", "Faro"][i % 4].into()),
    ];
    values.truncate(st.fields.len());
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
struct FloorNarrowRow {
    id: i64,
    first_name: Option<String>,
    last_name: Option<String>,
    email: Option<String>,
    tier: Option<String>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct FloorNarrowPayload {
    before: Option<FloorNarrowRow>,
    after: Option<FloorNarrowRow>,
    source: FloorSource,
    op: String,
    ts_ms: Option<i64>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct FloorRow {
    id: i64,
    first_name: Option<String>,
    last_name: Option<String>,
    email: Option<String>,
    tier: Option<String>,
    balance: Option<String>,
    birth_date: Option<i32>,
    created_at: Option<i64>,
    updated_at: Option<i64>,
    active: Option<bool>,
    street: Option<String>,
    city: Option<String>,
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
    payload: FloorNarrowPayload,
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
    let schema = row_schema(12);
    let narrow = row_schema(5);
    let ph = Placeholder::default();
    let events: Vec<ChangeEvent> = (0..EVENTS).map(|i| event(i, &schema)).collect();
    let schemaless: Vec<Vec<u8>> = events
        .iter()
        .map(|e| event_json(e, &schema, false, &ph))
        .collect();
    let with_schema: Vec<Vec<u8>> = (0..EVENTS)
        .map(|i| event_json(&event(i, &narrow), &narrow, true, &ph))
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
