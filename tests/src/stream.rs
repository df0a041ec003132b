//! A Debezium-like change stream: creates, updates, deletes, snapshot reads, a truncate,
//! tombstones after deletes, and a few poison records; one topic with the schema envelope, one
//! without.

use std::sync::Arc;

use tidemark_core::event::{ChangeEvent, KafkaCoords, Op, Snapshot, Source};
use tidemark_core::schema::{Field, Kind, Logical, Schema, StructSchema};
use tidemark_core::value::{Row, TimeUnit, Timestamp, TypedRow, Value};
use tidemark_wire::decode::Placeholder;
use tidemark_wire::encode::{decimal, event_json};

/// What a produced record is, for the proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    Change(Op),
    Tombstone,
    Poison,
    /// A record of a connector's own topics (transaction BEGIN/END): landed, not a change.
    Transaction,
}

#[derive(Debug, Clone)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub timestamp_ms: i64,
    pub kind: RecordKind,
}

pub fn row_schema(table: &str) -> Schema {
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
        f("name", Kind::String, Logical::None, None),
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
            "updated_at",
            Kind::Int64,
            Logical::TimestampMicros,
            Some("io.debezium.time.MicroTimestamp"),
        ),
        f("tier", Kind::String, Logical::None, None),
    ];
    let name = format!("bank.public.{table}.Value");
    Schema {
        kind: Kind::Struct(Arc::new(StructSchema::new(Some(name.clone()), fields))),
        optional: false,
        logical: Logical::None,
        name: Some(name),
    }
}

/// The balance of row `id` at version `v`, in cents (the proof checks decimals with it).
pub fn balance_cents(id: i64, v: i64) -> i128 {
    i128::from(id * 1000 + v * 7)
}

fn row(schema: &Schema, id: i64, v: i64) -> Row {
    let values = vec![
        Value::Int(id),
        Value::String(format!("name-{id}-v{v}")),
        decimal(balance_cents(id, v), 2),
        Value::Timestamp(Timestamp::from_epoch(
            1_700_000_000_000_000 + v * 1_000_000,
            TimeUnit::Micros,
        )),
        Value::String(["bronze", "silver", "gold"][(v % 3) as usize].into()),
    ];
    Row::Typed(TypedRow {
        schema: schema.as_struct().unwrap().clone(),
        values,
    })
}

/// `n` records over `partitions` partitions of `topic`; `with_schema` picks the JSON form.
/// Timestamps stay inside one UTC day unless `cross_midnight`.
pub fn generate(
    topic: &str,
    partitions: i32,
    n: usize,
    with_schema: bool,
    seed: u64,
) -> Vec<Record> {
    let table = topic.rsplit('.').next().unwrap();
    let schema = row_schema(table);
    let ph = Placeholder::default();
    let mut out = Vec::with_capacity(n);
    let mut versions: std::collections::HashMap<i64, i64> = Default::default();
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let base_ts = 1_700_006_400_000; // 2023-11-15T00:00:00Z
    while out.len() < n {
        let i = out.len() as i64;
        let id = (rnd() % 500) as i64;
        let partition = (id % i64::from(partitions)) as i32;
        let key = if with_schema {
            format!(
                r#"{{"schema":{{"type":"struct","name":"bank.public.{table}.Key","fields":[{{"type":"int64","optional":false,"field":"id"}}]}},"payload":{{"id":{id}}}}}"#
            )
        } else {
            format!(r#"{{"id":{id}}}"#)
        };
        let ts = base_ts + i * 10;
        let roll = rnd() % 100;
        if roll < 2 {
            let poison: &[u8] = if roll == 0 {
                b"this is not json"
            } else {
                br#"{"op":"c","source":{"connector":"postgresql"},"after":{"id":1},"before":"#
                    .as_slice()
            };
            out.push(Record {
                topic: topic.into(),
                partition,
                key: Some(key.into_bytes()),
                value: Some(poison.to_vec()),
                timestamp_ms: ts,
                kind: RecordKind::Poison,
            });
            continue;
        }
        let v = versions.entry(id).or_insert(0);
        let op = match roll {
            2..=9 => Op::Read,
            10..=19 if *v > 0 => Op::Delete,
            98 if i > 100 && partition == 0 => Op::Truncate,
            _ if *v == 0 => Op::Create,
            _ => Op::Update,
        };
        let before = matches!(op, Op::Update | Op::Delete).then(|| row(&schema, id, *v));
        *v += 1;
        let after = matches!(op, Op::Create | Op::Update | Op::Read).then(|| row(&schema, id, *v));
        if op == Op::Delete {
            *v = 0;
        }
        let e = ChangeEvent {
            op,
            key: None,
            before,
            after,
            source: Source {
                version: Some("3.1.0.Final".into()),
                connector: Some("postgresql".into()),
                name: Some("bank".into()),
                ts_ms: Some(ts - 5),
                snapshot: Some(if op == Op::Read {
                    Snapshot::True
                } else {
                    Snapshot::False
                }),
                db: Some("bank".into()),
                schema: Some("public".into()),
                table: Some(table.into()),
                lsn: Some(1_000_000 + i * 64),
                tx_id: Some(500 + i),
                ..Default::default()
            },
            ts_ms: Some(ts),
            ts_us: None,
            ts_ns: None,
            transaction: None,
            kafka: KafkaCoords {
                topic: topic.into(),
                partition,
                offset: 0,
                timestamp_ms: Some(ts),
            },
            schema: None,
        };
        let value = event_json(&e, &schema, with_schema, &ph);
        out.push(Record {
            topic: topic.into(),
            partition,
            key: Some(key.clone().into_bytes()),
            value: Some(value),
            timestamp_ms: ts,
            kind: RecordKind::Change(op),
        });
        if op == Op::Delete && out.len() < n {
            out.push(Record {
                topic: topic.into(),
                partition,
                key: Some(key.into_bytes()),
                value: None,
                timestamp_ms: ts + 1,
                kind: RecordKind::Tombstone,
            });
        }
    }
    out
}
