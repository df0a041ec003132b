//! Property: random rows under random Connect schemas (every logical type, nulls, nesting, the
//! TOAST placeholder), encoded as JSON with schema, JSON without schema and Confluent Avro, all
//! decode to the values they were made from.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proptest::prelude::*;
use tidemark_core::event::{ChangeEvent, Decoded, KafkaCoords, Op, Snapshot, Source};
use tidemark_core::schema::{Field, Kind, Logical, Schema, StructSchema};
use tidemark_core::value::{Decimal, Row, Timestamp, TypedRow, Value};
use tidemark_wire::decode::{Decoder, DecoderOptions, Placeholder, WireFormat, decode_json_row};
use tidemark_wire::encode::{AvroEventEncoder, event_json};

use common::record;

/// Column types the generator draws from.
#[derive(Debug, Clone)]
enum Col {
    Int8,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Bool,
    Text,
    Bytes,
    Decimal { precision: u32, scale: i32 },
    VarDecimal,
    Date,
    TimeMillis,
    TimeMicros,
    TimeNanos,
    TsMillis,
    TsMicros,
    TsNanos,
    Zoned,
    Json,
    Uuid,
    Enum,
    TextArray,
    IntArray,
    Map,
    Nested(Vec<(Col, bool)>),
}

const ENUM: [&str; 3] = ["sad", "ok", "happy"];

fn named(kind: Kind, optional: bool, name: &str, logical: Logical) -> Schema {
    Schema {
        kind,
        optional,
        logical,
        name: Some(name.into()),
    }
}

fn schema_of(c: &Col, optional: bool, field: &str) -> Schema {
    let plain = |k| Schema::plain(k, optional);
    match c {
        Col::Int8 => plain(Kind::Int8),
        Col::Int16 => plain(Kind::Int16),
        Col::Int32 => plain(Kind::Int32),
        Col::Int64 => plain(Kind::Int64),
        Col::Float32 => plain(Kind::Float32),
        Col::Float64 => plain(Kind::Float64),
        Col::Bool => plain(Kind::Boolean),
        Col::Text => plain(Kind::String),
        Col::Bytes => plain(Kind::Bytes),
        Col::Decimal { precision, scale } => named(
            Kind::Bytes,
            optional,
            "org.apache.kafka.connect.data.Decimal",
            Logical::Decimal {
                scale: *scale,
                precision: Some(*precision),
            },
        ),
        Col::VarDecimal => {
            let st = StructSchema::new(
                Some("io.debezium.data.VariableScaleDecimal".into()),
                vec![
                    Field {
                        name: "scale".into(),
                        schema: Schema::plain(Kind::Int32, false),
                    },
                    Field {
                        name: "value".into(),
                        schema: Schema::plain(Kind::Bytes, false),
                    },
                ],
            );
            named(
                Kind::Struct(Arc::new(st)),
                optional,
                "io.debezium.data.VariableScaleDecimal",
                Logical::VariableScaleDecimal,
            )
        }
        Col::Date => named(
            Kind::Int32,
            optional,
            "io.debezium.time.Date",
            Logical::Date,
        ),
        Col::TimeMillis => named(
            Kind::Int32,
            optional,
            "io.debezium.time.Time",
            Logical::TimeMillis,
        ),
        Col::TimeMicros => named(
            Kind::Int64,
            optional,
            "io.debezium.time.MicroTime",
            Logical::TimeMicros,
        ),
        Col::TimeNanos => named(
            Kind::Int64,
            optional,
            "io.debezium.time.NanoTime",
            Logical::TimeNanos,
        ),
        Col::TsMillis => named(
            Kind::Int64,
            optional,
            "io.debezium.time.Timestamp",
            Logical::TimestampMillis,
        ),
        Col::TsMicros => named(
            Kind::Int64,
            optional,
            "io.debezium.time.MicroTimestamp",
            Logical::TimestampMicros,
        ),
        Col::TsNanos => named(
            Kind::Int64,
            optional,
            "io.debezium.time.NanoTimestamp",
            Logical::TimestampNanos,
        ),
        Col::Zoned => named(
            Kind::String,
            optional,
            "io.debezium.time.ZonedTimestamp",
            Logical::ZonedTimestamp,
        ),
        Col::Json => named(
            Kind::String,
            optional,
            "io.debezium.data.Json",
            Logical::Json,
        ),
        Col::Uuid => named(
            Kind::String,
            optional,
            "io.debezium.data.Uuid",
            Logical::Uuid,
        ),
        Col::Enum => named(
            Kind::String,
            optional,
            "io.debezium.data.Enum",
            Logical::Enum {
                allowed: ENUM.iter().map(|s| s.to_string()).collect(),
            },
        ),
        Col::TextArray => plain(Kind::Array(Box::new(Schema::plain(Kind::String, true)))),
        Col::IntArray => plain(Kind::Array(Box::new(Schema::plain(Kind::Int32, true)))),
        Col::Map => plain(Kind::Map(
            Box::new(Schema::plain(Kind::String, false)),
            Box::new(Schema::plain(Kind::Int64, true)),
        )),
        Col::Nested(cols) => {
            let fields = cols
                .iter()
                .enumerate()
                .map(|(i, (c, o))| Field {
                    name: format!("n{i}"),
                    schema: schema_of(c, *o, &format!("{field}_n{i}")),
                })
                .collect();
            let name = format!("test.{field}");
            named(
                Kind::Struct(Arc::new(StructSchema::new(Some(name.clone()), fields))),
                optional,
                &name,
                Logical::None,
            )
        }
    }
}

fn leaf() -> impl Strategy<Value = Col> {
    prop_oneof![
        Just(Col::Int8),
        Just(Col::Int16),
        Just(Col::Int32),
        Just(Col::Int64),
        Just(Col::Float32),
        Just(Col::Float64),
        Just(Col::Bool),
        Just(Col::Text),
        Just(Col::Bytes),
        (1u32..=38)
            .prop_flat_map(|p| (Just(p), 0..=(p.min(12) as i32)))
            .prop_map(|(precision, scale)| Col::Decimal { precision, scale }),
        Just(Col::VarDecimal),
        Just(Col::Date),
        Just(Col::TimeMillis),
        Just(Col::TimeMicros),
        Just(Col::TimeNanos),
        Just(Col::TsMillis),
        Just(Col::TsMicros),
        Just(Col::TsNanos),
        Just(Col::Zoned),
        Just(Col::Json),
        Just(Col::Uuid),
        Just(Col::Enum),
        Just(Col::TextArray),
        Just(Col::IntArray),
        Just(Col::Map),
    ]
}

fn col() -> impl Strategy<Value = Col> {
    prop_oneof![
        8 => leaf(),
        1 => prop::collection::vec((leaf(), any::<bool>()), 1..4).prop_map(Col::Nested),
    ]
}

const SECS_YEAR_1: i64 = -62_135_596_800;
const SECS_YEAR_9999: i64 = 253_402_300_799;

fn ts(unit_nanos: u32, secs: std::ops::RangeInclusive<i64>) -> impl Strategy<Value = Value> {
    (secs, 0u32..1_000_000_000).prop_map(move |(s, n)| {
        Value::Timestamp(Timestamp::At {
            seconds: s,
            nanos: n / unit_nanos * unit_nanos,
        })
    })
}

fn not_placeholder(s: &String) -> bool {
    s != tidemark_wire::decode::DEFAULT_PLACEHOLDER
}

fn value_of(c: &Col) -> BoxedStrategy<Value> {
    match c {
        Col::Int8 => any::<i8>().prop_map(|v| Value::Int(v.into())).boxed(),
        Col::Int16 => any::<i16>().prop_map(|v| Value::Int(v.into())).boxed(),
        Col::Int32 => any::<i32>().prop_map(|v| Value::Int(v.into())).boxed(),
        Col::Int64 => any::<i64>().prop_map(Value::Int).boxed(),
        Col::Float32 => any::<f32>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| Value::Float(f.into())).boxed(),
        Col::Float64 => any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::Float).boxed(),
        Col::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        Col::Text => any::<String>().prop_filter("not the placeholder", not_placeholder).prop_map(Value::String).boxed(),
        Col::Bytes => prop::collection::vec(any::<u8>(), 0..40).prop_map(Value::Bytes).boxed(),
        Col::Decimal { precision, scale } => {
            let max = 10i128.pow(*precision) - 1;
            let scale = *scale;
            (-max..=max).prop_map(move |u| Value::Decimal(Decimal { unscaled: u, scale })).boxed()
        }
        Col::VarDecimal => (any::<i64>(), 0i32..20).prop_map(|(u, s)| Value::Decimal(Decimal { unscaled: u.into(), scale: s })).boxed(),
        Col::Date => (-719_162i32..=2_932_896).prop_map(Value::Date).boxed(),
        Col::TimeMillis => (0i64..86_400_000).prop_map(|ms| Value::Time(ms * 1_000_000)).boxed(),
        Col::TimeMicros => (0i64..86_400_000_000).prop_map(|us| Value::Time(us * 1_000)).boxed(),
        Col::TimeNanos => (0i64..86_400_000_000_000).prop_map(Value::Time).boxed(),
        Col::TsMillis => ts(1_000_000, SECS_YEAR_1..=SECS_YEAR_9999).boxed(),
        Col::TsMicros => prop_oneof![
            9 => ts(1_000, SECS_YEAR_1..=SECS_YEAR_9999),
            1 => prop_oneof![Just(Value::Timestamp(Timestamp::PosInfinity)), Just(Value::Timestamp(Timestamp::NegInfinity))],
        ]
        .boxed(),
        Col::TsNanos => ts(1, -9_000_000_000..=9_000_000_000).boxed(),
        Col::Zoned => ts(1, SECS_YEAR_1..=SECS_YEAR_9999).boxed(),
        Col::Json => (any::<i32>(), any::<bool>(), "[a-z]{0,8}")
            .prop_map(|(n, b, s)| Value::Json(serde_json::json!({"n": n, "b": [b, null], "s": s}).to_string()))
            .boxed(),
        Col::Uuid => any::<u128>().prop_map(|u| Value::Uuid(uuid::Uuid::from_u128(u))).boxed(),
        Col::Enum => prop::sample::select(&ENUM[..]).prop_map(|s| Value::String(s.into())).boxed(),
        Col::TextArray => prop::collection::vec(prop::option::of("[a-z ]{0,6}"), 0..5)
            .prop_map(|v| Value::Array(v.into_iter().map(|s| s.map_or(Value::Null, Value::String)).collect()))
            .boxed(),
        Col::IntArray => prop::collection::vec(prop::option::of(any::<i32>()), 0..5)
            .prop_map(|v| Value::Array(v.into_iter().map(|s| s.map_or(Value::Null, |i| Value::Int(i.into()))).collect()))
            .boxed(),
        Col::Map => prop::collection::btree_map("[a-z]{1,5}", prop::option::of(any::<i64>()), 0..4)
            .prop_map(|m: BTreeMap<String, Option<i64>>| {
                Value::Map(m.into_iter().map(|(k, v)| (Value::String(k), v.map_or(Value::Null, Value::Int))).collect())
            })
            .boxed(),
        Col::Nested(cols) => cols.iter().map(|(c, o)| cell(c, *o)).collect::<Vec<_>>().prop_map(Value::Struct).boxed(),
    }
}

/// Which columns may carry the TOAST placeholder in every wire form.
fn may_be_unavailable(c: &Col) -> bool {
    matches!(
        c,
        Col::Text
            | Col::Bytes
            | Col::Json
            | Col::Uuid
            | Col::Zoned
            | Col::Enum
            | Col::TextArray
            | Col::Decimal { .. }
    )
}

fn cell(c: &Col, optional: bool) -> BoxedStrategy<Value> {
    let v = value_of(c);
    match (optional, may_be_unavailable(c)) {
        (true, true) => {
            prop_oneof![6 => v, 1 => Just(Value::Null), 1 => Just(Value::Unavailable)].boxed()
        }
        (true, false) => prop_oneof![6 => v, 1 => Just(Value::Null)].boxed(),
        _ => v,
    }
}

#[derive(Debug, Clone)]
struct Case {
    schema: Schema,
    before: Option<Vec<Value>>,
    after: Option<Vec<Value>>,
    op: Op,
    source: Source,
}

fn source() -> impl Strategy<Value = Source> {
    (
        prop::option::of(0i64..1 << 40),
        prop::option::of(0i64..1 << 40),
        prop::option::of(prop::sample::select(vec![
            Snapshot::True,
            Snapshot::False,
            Snapshot::Last,
            Snapshot::Incremental,
        ])),
        prop::option::of("[a-z]{1,8}"),
    )
        .prop_map(|(ts, lsn, snapshot, table)| Source {
            version: Some("3.7.0.Final".into()),
            connector: Some("postgresql".into()),
            name: Some("bank".into()),
            ts_ms: ts,
            snapshot,
            db: Some("bank".into()),
            sequence: lsn.map(|l| format!("[null,\"{l}\"]")),
            schema: Some("public".into()),
            table,
            tx_id: ts.map(|t| t % 100_000),
            lsn,
            ..Default::default()
        })
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec((col(), any::<bool>()), 1..10),
        prop::sample::select(vec![Op::Create, Op::Update, Op::Delete, Op::Read]),
        source(),
    )
        .prop_flat_map(|(cols, op, source)| {
            let fields: Vec<Field> = cols
                .iter()
                .enumerate()
                .map(|(i, (c, o))| Field {
                    name: format!("c{i}"),
                    schema: schema_of(c, *o, &format!("c{i}")),
                })
                .collect();
            let schema = Schema {
                kind: Kind::Struct(Arc::new(StructSchema::new(
                    Some("bank.public.t.Value".into()),
                    fields,
                ))),
                optional: false,
                logical: Logical::None,
                name: Some("bank.public.t.Value".into()),
            };
            let row = cols.iter().map(|(c, o)| cell(c, *o)).collect::<Vec<_>>();
            let before = if op == Op::Create || op == Op::Read {
                Just(None).boxed()
            } else {
                row.clone().prop_map(Some).boxed()
            };
            let after = if op == Op::Delete {
                Just(None).boxed()
            } else {
                row.prop_map(Some).boxed()
            };
            (Just(schema), before, after, Just(op), Just(source))
        })
        .prop_map(|(schema, before, after, op, source)| Case {
            schema,
            before,
            after,
            op,
            source,
        })
}

fn event(c: &Case) -> ChangeEvent {
    let st = c.schema.as_struct().unwrap().clone();
    let row = |v: &Option<Vec<Value>>| {
        v.clone().map(|values| {
            Row::Typed(TypedRow {
                schema: st.clone(),
                values,
            })
        })
    };
    ChangeEvent {
        op: c.op,
        key: None,
        before: row(&c.before),
        after: row(&c.after),
        source: c.source.clone(),
        ts_ms: Some(1_700_000_000_123),
        ts_us: None,
        ts_ns: None,
        transaction: None,
        kafka: KafkaCoords {
            topic: "bank.public.t".into(),
            partition: 3,
            offset: 42,
            timestamp_ms: Some(1_700_000_000_000),
        },
        schema: None,
    }
}

fn values(r: &Option<Row>, schema: &Arc<StructSchema>) -> Option<Vec<Value>> {
    r.as_ref().map(|r| match r {
        Row::Typed(t) => t.values.clone(),
        Row::Json(text) => {
            decode_json_row(text, schema, &Placeholder::default())
                .unwrap()
                .values
        }
    })
}

fn check(c: &Case, d: Decoded, form: &str) -> Result<(), TestCaseError> {
    let Decoded::Change(e) = d else {
        return Err(TestCaseError::fail(format!("{form}: not a change: {d:?}")));
    };
    let st = c.schema.as_struct().unwrap();
    prop_assert_eq!(e.op, c.op, "{}", form);
    prop_assert_eq!(&values(&e.before, st), &c.before, "{}: before", form);
    prop_assert_eq!(&values(&e.after, st), &c.after, "{}: after", form);
    prop_assert_eq!(&e.source, &c.source, "{}: source", form);
    prop_assert_eq!(e.ts_ms, Some(1_700_000_000_123));
    Ok(())
}

proptest! {
    // 1024 cases by default; PROPTEST_CASES raises it (the note reports a 20k-case run).
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1024), ..ProptestConfig::default() })]

    #[test]
    fn json_with_schema_json_without_and_avro_decode_to_the_same_values(c in case()) {
        let ph = Placeholder::default();
        let e = event(&c);
        let topic = "bank.public.t";

        let with_schema = event_json(&e, &c.schema, true, &ph);
        let mut json = Decoder::new(DecoderOptions::default(), None);
        let d = json.decode_cached(&record(topic, None, Some(&with_schema))).map_err(|e| TestCaseError::fail(e.to_string()))?;
        check(&c, d, "json+schema")?;

        let payload_only = event_json(&e, &c.schema, false, &ph);
        let d = json.decode_cached(&record(topic, None, Some(&payload_only))).map_err(|e| TestCaseError::fail(e.to_string()))?;
        check(&c, d, "json payload-only")?;

        let enc = AvroEventEncoder::new(&c.schema, topic, 7);
        let bytes = enc.encode(&e, &ph).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut avro = Decoder::new(DecoderOptions { format: WireFormat::Avro, ..Default::default() }, None);
        avro.add_avro_schema(7, &enc.schema_text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let d = avro.decode_cached(&record(topic, None, Some(&bytes))).map_err(|e| TestCaseError::fail(e.to_string()))?;
        check(&c, d, "avro")?;
    }
}

#[test]
fn distinct_schemas_are_cached_separately() {
    // Two schemas of one topic alternate: each record is decoded under its own.
    let ph = Placeholder::default();
    let mk = |cols: &[(&str, Kind)]| {
        let fields = cols
            .iter()
            .map(|(n, k)| Field {
                name: (*n).into(),
                schema: Schema::plain(k.clone(), true),
            })
            .collect();
        Schema {
            kind: Kind::Struct(Arc::new(StructSchema::new(Some("v".into()), fields))),
            optional: false,
            logical: Logical::None,
            name: Some("v".into()),
        }
    };
    let a = mk(&[("id", Kind::Int64)]);
    let b = mk(&[("id", Kind::Int64), ("name", Kind::String)]);
    let mut dec = Decoder::new(DecoderOptions::default(), None);
    let mut seen = BTreeSet::new();
    for (i, s) in [&a, &b, &a, &b].into_iter().enumerate() {
        let st = s.as_struct().unwrap().clone();
        let n = st.fields.len();
        let vals: Vec<Value> = (0..n)
            .map(|j| {
                if j == 0 {
                    Value::Int(i as i64)
                } else {
                    Value::String("x".into())
                }
            })
            .collect();
        let c = Case {
            schema: s.clone(),
            before: None,
            after: Some(vals),
            op: Op::Create,
            source: Source::default(),
        };
        let bytes = event_json(&event(&c), s, true, &ph);
        let Decoded::Change(e) = dec.decode_cached(&record("t", None, Some(&bytes))).unwrap()
        else {
            panic!()
        };
        let t = e.after.unwrap();
        assert_eq!(t.as_typed().unwrap().values.len(), n);
        seen.insert(e.schema.unwrap().fingerprint);
    }
    assert_eq!(seen.len(), 2);
}
