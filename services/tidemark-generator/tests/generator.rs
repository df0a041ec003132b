//! The banking generator: its records decode with tidemark's decoder in all three wire formats,
//! the stream holds every op, tombstones and late changes, and balances add up.

use std::collections::{BTreeMap, HashMap};

use tidemark_core::event::{Decoded, Op, RawRecord};
use tidemark_core::value::{Row, Value};
use tidemark_generator::{Bank, BankOptions, Emitted, RecordEncoder, Table, avro_subjects};
use tidemark_wire::decode::{Decoder, DecoderOptions, WireFormat};

fn stream(steps: usize, seed: u64) -> (Bank, Vec<Emitted>) {
    let mut bank = Bank::new(BankOptions {
        customers: 50,
        late_ratio: 0.05,
        seed,
        ..Default::default()
    });
    let mut out = Vec::new();
    for i in 0..=steps {
        out.extend(bank.next_batch(1_790_000_000_000 + i as i64 * 1000));
    }
    out.extend(bank.drain_late());
    (bank, out)
}

fn decode_all(
    dec: &mut Decoder,
    bank: &Bank,
    enc: &RecordEncoder,
    events: &[Emitted],
) -> Vec<Decoded> {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let r = enc.encode(bank, e).unwrap();
            dec.decode_cached(&RawRecord {
                topic: &r.topic,
                partition: 0,
                offset: i as i64,
                timestamp_ms: None,
                key: Some(&r.key),
                value: r.value.as_deref(),
            })
            .unwrap_or_else(|err| panic!("record {i} ({}) does not decode: {err}", e.kind()))
        })
        .collect()
}

fn int(row: &Row, col: &str) -> i64 {
    match row.as_typed().unwrap().get(col) {
        Some(Value::Int(i)) => *i,
        other => panic!("{col}: {other:?}"),
    }
}

fn cents(row: &Row, col: &str) -> i128 {
    match row.as_typed().unwrap().get(col) {
        Some(Value::Decimal(d)) => {
            assert_eq!(d.scale, 2);
            d.unscaled
        }
        other => panic!("{col}: {other:?}"),
    }
}

#[test]
fn every_format_decodes_to_the_generated_events() {
    let (bank, events) = stream(2000, 7);
    let json = RecordEncoder::json(&bank, true);
    let mut dec = Decoder::new(DecoderOptions::default(), None);
    let decoded = decode_all(&mut dec, &bank, &json, &events);
    for (e, d) in events.iter().zip(&decoded) {
        match (&e.event, d) {
            (Some(ev), Decoded::Change(c)) => {
                assert_eq!(c.op, ev.op);
                assert_eq!(c.after, ev.after, "after image of a {}", e.kind());
                assert_eq!(c.before, ev.before);
                assert_eq!(c.source.position(), ev.source.position());
            }
            (None, Decoded::Tombstone(_)) => {}
            (e, d) => panic!("generated {e:?} decoded as {d:?}"),
        }
    }

    // Payload-only JSON: same ops, same ids.
    let bare = RecordEncoder::json(&bank, false);
    let mut dec = Decoder::new(DecoderOptions::default(), None);
    for (e, d) in events
        .iter()
        .zip(decode_all(&mut dec, &bank, &bare, &events))
    {
        match (&e.event, d) {
            (Some(ev), Decoded::Change(c)) => assert_eq!(c.op, ev.op),
            (None, Decoded::Tombstone(_)) => {}
            (e, d) => panic!("generated {e:?} decoded as {d:?}"),
        }
    }

    // Avro: ids as a registry would hand them out.
    let mut ids = BTreeMap::new();
    let mut dec = Decoder::new(
        DecoderOptions {
            format: WireFormat::Avro,
            ..Default::default()
        },
        None,
    );
    for (i, s) in avro_subjects(&bank).iter().enumerate() {
        let (k, v) = (10 + 2 * i as u32, 11 + 2 * i as u32);
        dec.add_avro_schema(k, &s.key.to_string()).unwrap();
        dec.add_avro_schema(v, &s.value.to_string()).unwrap();
        ids.insert(s.topic.clone(), (k, v));
    }
    let avro = RecordEncoder::avro(&bank, &ids).unwrap();
    for (e, d) in events
        .iter()
        .zip(decode_all(&mut dec, &bank, &avro, &events))
    {
        match (&e.event, d) {
            (Some(ev), Decoded::Change(c)) => {
                assert_eq!(c.op, ev.op);
                assert_eq!(c.after, ev.after);
            }
            (None, Decoded::Tombstone(_)) => {}
            (e, d) => panic!("generated {e:?} decoded as {d:?}"),
        }
    }
}

#[test]
fn the_cached_json_encoder_writes_what_event_json_writes() {
    use tidemark_wire::decode::Placeholder;
    use tidemark_wire::encode::{JsonEventEncoder, event_json};
    let (bank, events) = stream(300, 3);
    let ph = Placeholder::default();
    for with_schema in [true, false] {
        let encoders: BTreeMap<Table, JsonEventEncoder> = Table::ALL
            .iter()
            .map(|t| {
                (
                    *t,
                    JsonEventEncoder::new(bank.row_schema(*t), &bank.topic(*t), with_schema),
                )
            })
            .collect();
        for e in events.iter().filter(|e| e.event.is_some()) {
            let ev = e.event.as_ref().unwrap();
            let fast: serde_json::Value =
                serde_json::from_slice(&encoders[&e.table].encode(ev, &ph)).unwrap();
            let slow: serde_json::Value =
                serde_json::from_slice(&event_json(ev, bank.row_schema(e.table), with_schema, &ph))
                    .unwrap();
            assert_eq!(fast, slow);
        }
    }
}

#[test]
fn the_stream_has_every_op_tombstones_late_changes_and_consistent_balances() {
    let (_, events) = stream(5000, 11);
    let mut kinds: BTreeMap<(Table, &str), usize> = BTreeMap::new();
    for e in &events {
        *kinds.entry((e.table, e.kind())).or_default() += 1;
    }
    for want in [
        (Table::Customers, "r"),
        (Table::Customers, "c"),
        (Table::Customers, "u"),
        (Table::Customers, "d"),
        (Table::Customers, "tombstone"),
        (Table::Accounts, "r"),
        (Table::Accounts, "u"),
        (Table::Accounts, "d"),
        (Table::Transactions, "c"),
    ] {
        assert!(kinds.contains_key(&want), "no {want:?} in {kinds:?}");
    }

    // Late: a change whose position is older than one already emitted for the same row.
    let mut newest: HashMap<(Table, i64), _> = HashMap::new();
    let mut late = 0;
    for e in &events {
        if let Some(ev) = &e.event {
            let pos = ev.source.position();
            match newest.get(&(e.table, e.id)) {
                Some(p) if *p > pos => late += 1,
                _ => {
                    newest.insert((e.table, e.id), pos);
                }
            }
        }
    }
    assert!(late > 5, "only {late} late changes");

    // Each account's balance moves by exactly its transactions' amounts.
    let mut moved: HashMap<i64, i128> = HashMap::new();
    let mut first: HashMap<i64, i128> = HashMap::new();
    let mut last: BTreeMap<i64, (tidemark_core::event::SourcePosition, i128)> = BTreeMap::new();
    for e in &events {
        let Some(ev) = &e.event else { continue };
        match (e.table, &ev.after) {
            (Table::Transactions, Some(a)) => {
                *moved.entry(int(a, "account_id")).or_default() += cents(a, "amount");
            }
            (Table::Accounts, Some(a)) if ev.op != Op::Update => {
                first.insert(e.id, cents(a, "balance"));
            }
            (Table::Accounts, Some(a)) => {
                let pos = ev.source.position();
                if last.get(&e.id).is_none_or(|(p, _)| *p < pos) {
                    last.insert(e.id, (pos, cents(a, "balance")));
                }
            }
            _ => {}
        }
    }
    let mut checked = 0;
    for (id, (_, balance)) in &last {
        // Accounts deleted and never re-created keep their last balance too.
        if let Some(start) = first.get(id) {
            assert_eq!(
                *balance,
                start + moved.get(id).copied().unwrap_or(0),
                "account {id}"
            );
            checked += 1;
        }
    }
    assert!(checked > 20);
}
