//! Every Debezium fixture decodes, by a table that walks the fixture folders (a new file is
//! picked up with no code change), and the values INDEX.md lists are asserted.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tidemark_core::event::{Decoded, Op, Snapshot, TransactionStatus};
use tidemark_core::schema::{Schema, StructSchema};
use tidemark_core::value::{Row, Timestamp, TypedRow, Value, date_from_days, time_from_nanos};
use tidemark_wire::decode::{Placeholder, decode_json_row, infer_json_row};

use common::{decode_json, json_decoder, record};

/// The fixture folders: the copy in this repository, and the shared one when present.
fn fixture_dirs() -> Vec<PathBuf> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = vec![here.join("tests/fixtures/debezium")];
    let shared = here.join("../../../shared/fixtures/debezium");
    if shared.is_dir() {
        dirs.push(shared);
    }
    dirs
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|e| e == "json") {
            out.push(p);
        }
    }
}

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(fixture_dirs()[0].join(rel)).unwrap()
}

/// What a fixture's name says it holds (the folder's naming convention, see INDEX.md).
#[derive(Debug, PartialEq)]
enum Expect {
    Key,
    Tombstone,
    Heartbeat,
    Transaction(TransactionStatus),
    Message,
    SchemaChange,
    Change(Option<Op>),
}

fn expect_for(name: &str) -> Expect {
    if name.contains("_key") {
        Expect::Key
    } else if name.contains("tombstone") {
        Expect::Tombstone
    } else if name.contains("heartbeat") {
        Expect::Heartbeat
    } else if name.starts_with("tx_") && name.contains("_begin") {
        Expect::Transaction(TransactionStatus::Begin)
    } else if name.starts_with("tx_") && name.contains("_end") {
        Expect::Transaction(TransactionStatus::End)
    } else if name.contains("_message_") {
        Expect::Message
    } else if name.contains("schema_change") {
        Expect::SchemaChange
    } else {
        let op = [
            ("create", Op::Create),
            ("update", Op::Update),
            ("delete", Op::Delete),
            ("truncate", Op::Truncate),
            ("read", Op::Read),
            ("snapshot", Op::Read),
        ]
        .into_iter()
        .find(|(w, _)| name.contains(w))
        .map(|(_, op)| op);
        Expect::Change(op)
    }
}

fn topic_for(name: &str) -> &'static str {
    if name.contains("heartbeat") {
        "__debezium-heartbeat.dbserver1"
    } else {
        "dbserver1.inventory.customers"
    }
}

#[test]
fn every_fixture_decodes_to_what_its_name_says() {
    let mut files = Vec::new();
    for d in fixture_dirs() {
        walk(&d, &mut files);
    }
    assert!(files.len() >= 40, "fixtures found: {}", files.len());
    for path in files {
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let bytes = std::fs::read(&path).unwrap();
        let expect = expect_for(&name);
        let topic = topic_for(&name);
        let mut decoder = json_decoder();
        if expect == Expect::Key {
            // A key alone is decoded as a record without a value: a tombstone carrying the key.
            let d = decoder
                .decode_cached(&record(topic, Some(&bytes), None))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let Decoded::Tombstone(t) = d else {
                panic!("{name}: {d:?}")
            };
            assert!(t.key.is_some(), "{name}: key decoded to nothing");
            continue;
        }
        let d = decoder
            .decode_cached(&record(topic, None, Some(&bytes)))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        match (&expect, &d) {
            (Expect::Tombstone, Decoded::Tombstone(_)) => {}
            (Expect::Heartbeat, Decoded::Heartbeat(h)) => assert!(h.ts_ms.is_some(), "{name}"),
            (Expect::Transaction(s), Decoded::Transaction(t)) => assert_eq!(t.status, *s, "{name}"),
            (Expect::Message, Decoded::Message(_)) => {}
            (Expect::SchemaChange, Decoded::SchemaChange(s)) => assert!(s.ddl.is_some(), "{name}"),
            (Expect::Change(op), Decoded::Change(e)) => {
                if let Some(op) = op {
                    assert_eq!(e.op, *op, "{name}");
                }
                assert!(
                    e.source.connector.is_some() || e.source.name.is_some(),
                    "{name}: source lost"
                );
                match e.op {
                    Op::Truncate => assert!(e.before.is_none() && e.after.is_none(), "{name}"),
                    Op::Delete => assert!(e.before.is_some() && e.after.is_none(), "{name}"),
                    Op::Create | Op::Read => assert!(e.after.is_some(), "{name}"),
                    Op::Update => assert!(e.after.is_some(), "{name}"),
                }
                // Typed rows exactly when the record carries its schema.
                let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                let has_schema = doc.get("payload").is_some()
                    && doc
                        .get("schema")
                        .is_some_and(|s| s.as_object().is_some_and(|o| !o.is_empty()));
                if let Some(after) = &e.after {
                    assert_eq!(matches!(after, Row::Typed(_)), has_schema, "{name}");
                }
            }
            _ => panic!("{name}: expected {expect:?}, decoded {d:?}"),
        }
    }
}

fn after(rel: &str) -> TypedRow {
    match decode_json("dbserver1.public.t", &fixture(rel)).unwrap() {
        Decoded::Change(e) => match e.after {
            Some(Row::Typed(t)) => t,
            other => panic!("{rel}: after = {other:?}"),
        },
        other => panic!("{rel}: {other:?}"),
    }
}

fn after_json(rel: &str) -> String {
    match decode_json("dbserver1.public.t", &fixture(rel)).unwrap() {
        Decoded::Change(e) => match e.after {
            Some(Row::Json(t)) => t,
            other => panic!("{rel}: after = {other:?}"),
        },
        other => panic!("{rel}: {other:?}"),
    }
}

fn decimal(v: &Value) -> String {
    match v {
        Value::Decimal(d) => d.to_string(),
        other => panic!("not a decimal: {other:?}"),
    }
}

fn naive(v: &Value) -> String {
    match v {
        Value::Timestamp(t) => t
            .to_naive()
            .unwrap()
            .format("%Y-%m-%d %H:%M:%S%.9f")
            .to_string(),
        other => panic!("not a timestamp: {other:?}"),
    }
}

fn time(v: &Value) -> String {
    match v {
        Value::Time(n) => time_from_nanos(*n)
            .unwrap()
            .format("%H:%M:%S%.6f")
            .to_string(),
        other => panic!("not a time: {other:?}"),
    }
}

/// The INDEX.md values of the logical-types row, asserted on a typed row.
fn assert_logical_types(row: &TypedRow) {
    let get = |c: &str| row.get(c).unwrap_or_else(|| panic!("no column {c}"));
    assert_eq!(decimal(get("price")), "1234.56");
    assert_eq!(decimal(get("balance")), "-1234.567");
    assert_eq!(decimal(get("amount")), "-1.2345");
    let Value::Date(d) = get("d") else { panic!() };
    assert_eq!(date_from_days(*d).unwrap().to_string(), "2018-06-20");
    assert_eq!(time(get("t3")), "15:13:16.945000");
    assert_eq!(time(get("t6")), "15:13:16.945104");
    assert_eq!(naive(get("ts3")), "2018-06-20 15:13:16.945000000");
    assert_eq!(naive(get("ts6")), "2018-06-20 15:13:16.945104000");
    assert_eq!(get("ts_pos_inf"), &Value::Timestamp(Timestamp::PosInfinity));
    assert_eq!(naive(get("ts_nanos")), "2018-06-20 15:13:16.945104000");
    assert_eq!(naive(get("tstz")), "2018-06-20 15:13:16.945104000");
    let Value::Json(doc) = get("doc") else {
        panic!("doc: {:?}", get("doc"))
    };
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(doc).unwrap(),
        serde_json::json!({"a":1,"b":[true,null]})
    );
    assert_eq!(
        get("uid"),
        &Value::Uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".parse().unwrap())
    );
    assert_eq!(get("mood"), &Value::String("happy".into()));
    assert_eq!(
        get("int_arr"),
        &Value::Array(vec![Value::Int(1), Value::Int(2), Value::Null])
    );
    assert_eq!(
        get("txt_arr"),
        &Value::Array(vec![Value::String("x".into()), Value::String("y".into())])
    );
    assert_eq!(get("bio"), &Value::Unavailable);
}

#[test]
fn logical_types_with_schema() {
    assert_logical_types(&after("constructed/pg_logical_types_create_envelope.json"));
}

#[test]
fn logical_types_payload_only_under_the_tables_schema() {
    // Without a schema the row stays JSON; typed under the table's schema it gives the same values.
    let text = after_json("constructed/pg_logical_types_create_payload.json");
    let schema = after("constructed/pg_logical_types_create_envelope.json").schema;
    let row = decode_json_row(&text, &schema, &Placeholder::default()).unwrap();
    assert_logical_types(&row);
}

fn struct_schema(json: &str) -> Arc<StructSchema> {
    Schema::from_json(json)
        .unwrap()
        .as_struct()
        .unwrap()
        .clone()
}

#[test]
fn toast_placeholder_and_negative_micro_timestamp() {
    let rel = "postgres/pg_toast_unavailable_update_payload.json";
    let text = after_json(rel);
    let ph = Placeholder::default();
    // Inferred: the placeholder is "unavailable", never the literal.
    let inferred = infer_json_row(&text, &ph).unwrap();
    let bio = inferred.iter().find(|(k, _)| k == "biography").unwrap();
    assert_eq!(bio.1, Value::Unavailable);
    assert!(
        inferred
            .iter()
            .all(|(_, v)| *v != Value::String("__debezium_unavailable_value".into()))
    );
    let schema = struct_schema(
        r#"{"type":"struct","fields":[{"type":"int32","field":"id"},{"type":"string","field":"first_name"},
        {"type":"string","field":"last_name"},{"type":"string","optional":true,"field":"biography"},
        {"type":"int64","optional":true,"name":"io.debezium.time.MicroTimestamp","field":"dob"}]}"#,
    );
    let row = decode_json_row(&text, &schema, &ph).unwrap();
    assert_eq!(
        naive(row.get("dob").unwrap()),
        "1930-03-01 00:00:00.000000000"
    );
    assert_eq!(row.get("biography").unwrap(), &Value::Unavailable);
    let Decoded::Change(e) = decode_json("t", &fixture(rel)).unwrap() else {
        panic!()
    };
    assert!(
        e.before.is_none(),
        "REPLICA IDENTITY DEFAULT update has before = null"
    );
    assert_eq!(e.source.sequence.as_deref(), Some("[null,\"34415840\"]"));
}

#[test]
fn zoned_timestamp_keeps_nanoseconds() {
    let text = after_json("postgres/pg_doc_zoned_timestamp_create_payload.json");
    let schema = struct_schema(
        r#"{"type":"struct","fields":[{"type":"string","optional":true,"name":"io.debezium.time.ZonedTimestamp","field":"created_at"}]}"#,
    );
    let row = decode_json_row(&text, &schema, &Placeholder::default()).unwrap();
    assert_eq!(
        naive(row.get("created_at").unwrap()),
        "2011-01-11 16:40:30.123456789"
    );
    let Decoded::Change(e) = decode_json(
        "t",
        &fixture("postgres/pg_doc_zoned_timestamp_create_payload.json"),
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(
        e.source.snapshot,
        Some(Snapshot::True),
        "boolean snapshot accepted"
    );
}

#[test]
fn logical_decoding_messages_decode_their_bytes() {
    let Decoded::Message(m) =
        decode_json("t", &fixture("postgres/pg_doc_message_smt_payload.json")).unwrap()
    else {
        panic!()
    };
    assert_eq!(
        std::str::from_utf8(&m.content).unwrap(),
        r#"{"id": 1, "item": "Debezium in Action", "status": "ENTERED", "quantity": 2, "totalPrice": 39.98}"#
    );
    let Decoded::Message(m) = decode_json(
        "t",
        &fixture("postgres/pg_doc_message_transactional_payload.json"),
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(m.content, b"bg\xf2");
    assert_eq!(m.source.table.as_deref(), Some(""));
}

#[test]
fn heartbeat_by_schema_name_and_by_topic() {
    let Decoded::Heartbeat(h) = decode_json(
        "any.topic",
        &fixture("constructed/heartbeat_value_envelope.json"),
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(h.ts_ms, Some(1_559_033_904_863));
    let t = Timestamp::from_epoch(h.ts_ms.unwrap(), tidemark_core::value::TimeUnit::Millis);
    assert_eq!(t.to_string(), "2019-05-28T08:58:24.863Z");
    // Payload-only heartbeats are indistinguishable by shape: only the topic tells.
    let payload = fixture("constructed/heartbeat_value_payload.json");
    assert!(matches!(
        decode_json("__debezium-heartbeat.bank", &payload).unwrap(),
        Decoded::Heartbeat(_)
    ));
    assert!(
        decode_json("bank.public.customers", &payload).is_err(),
        "no op on a table topic is an error"
    );
}

#[test]
fn real_postgres_create_source_block() {
    let Decoded::Change(e) =
        decode_json("t", &fixture("postgres/pg_doc_create_envelope.json")).unwrap()
    else {
        panic!()
    };
    assert_eq!(e.ts_ms, Some(1_559_033_904_863));
    assert_eq!(e.source.pg_lsn_text().as_deref(), Some("0/16E9058"));
    assert_eq!(
        e.source.sequence.as_deref(),
        Some(r#"["24023119","24023128"]"#)
    );
    assert_eq!(e.source.tx_id, Some(555));
    assert!(e.schema.is_some());
}

#[test]
fn transactions_and_transaction_blocks() {
    let Decoded::Transaction(t) = decode_json(
        "dbserver1.transaction",
        &fixture("other/tx_pg_doc_end.json"),
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(t.id, "571:53195832");
    assert_eq!(t.event_count, Some(2));
    assert_eq!(
        t.data_collections,
        vec![("s1.a".to_owned(), 1), ("s2.a".to_owned(), 1)]
    );
    let Decoded::Transaction(b) = decode_json(
        "dbserver1.transaction",
        &fixture("other/tx_mysql_doc_begin.json"),
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(b.id, "0e4d5dcd-a33b-11ea-80f1-02010a22a99e:10");
    assert_eq!(b.event_count, None);
    // Numbers written as strings in the doc example are accepted.
    let Decoded::Change(e) = decode_json(
        "t",
        &fixture("other/tx_pg_doc_event_with_transaction_block.json"),
    )
    .unwrap() else {
        panic!()
    };
    let tx = e.transaction.unwrap();
    assert_eq!(
        (tx.id.as_str(), tx.total_order, tx.data_collection_order),
        ("571:53195832", Some(1), Some(1))
    );
    assert_eq!(e.ts_ms, Some(1_580_390_884_335));
}

#[test]
fn tombstone_forms() {
    let key = fixture("mysql/mysql_tutorial_delete_key.json");
    let mut d = json_decoder();
    let Decoded::Tombstone(t) = d
        .decode_cached(&record("dbserver1.inventory.customers", Some(&key), None))
        .unwrap()
    else {
        panic!()
    };
    let Some(Row::Typed(k)) = t.key else {
        panic!("typed key expected")
    };
    assert_eq!(k.get("id"), Some(&Value::Int(1004)));
    let printed = fixture("mysql/mysql_tutorial_tombstone_value_schema_null_payload_null.json");
    assert!(matches!(
        d.decode_cached(&record("t", Some(&key), Some(&printed)))
            .unwrap(),
        Decoded::Tombstone(_)
    ));
}

#[test]
fn truncate_has_no_images_and_legacy_mysql_source() {
    let Decoded::Change(e) =
        decode_json("t", &fixture("postgres/pg_doc_truncate_payload.json")).unwrap()
    else {
        panic!()
    };
    assert_eq!(e.op, Op::Truncate);
    assert!(e.before.is_none() && e.after.is_none());
    let Decoded::Change(e) = decode_json(
        "t",
        &fixture("mysql/mysql_tutorial_console_create_1005_value.json"),
    )
    .unwrap() else {
        panic!()
    };
    assert!(e.source.ts_sec.is_some() && e.source.ts_ms.is_none());
    assert_eq!(e.source_ts_ms(), e.source.ts_sec.map(|s| s * 1000));
    let Decoded::Change(e) =
        decode_json("t", &fixture("mysql/mysql_doc_update_envelope.json")).unwrap()
    else {
        panic!()
    };
    assert!(matches!(
        e.source.position(),
        tidemark_core::event::SourcePosition::MySql { .. }
    ));
}

#[test]
fn every_index_entry_with_values_is_asserted_here() {
    // The INDEX.md sections listing decoded values; a new section must get assertions above.
    let index = std::fs::read_to_string(fixture_dirs()[0].join("INDEX.md")).unwrap();
    let covered = [
        "postgres/pg_doc_message_smt_payload.json",
        "postgres/pg_doc_message_transactional_payload.json",
        "postgres/pg_doc_zoned_timestamp_create_payload.json",
        "postgres/pg_toast_unavailable_update_payload.json",
        "constructed/heartbeat_value_envelope.json",
        "constructed/pg_logical_types_create_envelope.json",
        "constructed/pg_logical_types_create_payload.json",
    ];
    for line in index.lines().filter(|l| l.starts_with("### `")) {
        let file = line.trim_start_matches("### `").trim_end_matches('`');
        assert!(
            covered.contains(&file),
            "INDEX.md lists values for {file}: assert them in tests/fixtures.rs"
        );
    }
}
