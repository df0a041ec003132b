//! Malformed input yields a typed error naming the record (topic/partition/offset), the part and,
//! for field errors, the field path; never a panic.

mod common;

use tidemark_core::schema::SchemaError;
use tidemark_core::value::Value;
use tidemark_wire::decode::{
    DecodeErrorKind, Decoder, DecoderOptions, Disposition, FieldReason, RecordPart, WireFormat,
};

use common::{decode_json, json_decoder, record};

fn envelope(field_schema: &str, value: &str) -> Vec<u8> {
    format!(
        r#"{{"schema":{{"type":"struct","name":"e.Envelope","fields":[
            {{"type":"struct","optional":true,"field":"after","name":"e.Value","fields":[{field_schema}]}},
            {{"type":"struct","field":"source","fields":[{{"type":"string","field":"connector"}}]}},
            {{"type":"string","field":"op"}}]}},
          "payload":{{"after":{{"x":{value}}},"source":{{"connector":"postgresql"}},"op":"c"}}}}"#
    )
    .into_bytes()
}

fn field_error(bytes: &[u8]) -> (String, FieldReason) {
    let e = decode_json("bank.public.t", bytes).unwrap_err();
    assert_eq!(
        (e.kafka.topic.as_str(), e.kafka.partition, e.kafka.offset),
        ("bank.public.t", 3, 42)
    );
    assert_eq!(e.part, RecordPart::Value);
    assert_eq!(e.disposition(), Disposition::DeadLetter);
    match *e.kind {
        DecodeErrorKind::Field { path, reason } => (path, reason),
        other => panic!("expected a field error, got {other:?}"),
    }
}

#[test]
fn truncated_json_reports_position() {
    let good = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/debezium/postgres/pg_doc_create_envelope.json"
    ))
    .unwrap();
    let good = good.trim_ascii();
    for cut in [1, 10, good.len() / 2, good.len() - 1] {
        let e = decode_json("t", &good[..cut]).unwrap_err();
        assert!(
            matches!(*e.kind, DecodeErrorKind::Json { .. }),
            "cut {cut}: {e}"
        );
        assert!(e.to_string().contains("t[3]@42"), "{e}");
    }
    let e = decode_json("t", b"not json at all").unwrap_err();
    assert!(matches!(*e.kind, DecodeErrorKind::Json { line: 1, .. }));
    assert_eq!(e.reason(), "invalid_json");
}

#[test]
fn wrong_types_name_the_field() {
    let (path, reason) = field_error(&envelope(r#"{"type":"int32","field":"x"}"#, r#""abc""#));
    assert_eq!(path, "after.x");
    assert!(
        matches!(
            reason,
            FieldReason::WrongType {
                found: "string",
                ..
            }
        ),
        "{reason:?}"
    );
    let (path, reason) = field_error(&envelope(r#"{"type":"int8","field":"x"}"#, "300"));
    assert_eq!(path, "after.x");
    assert!(matches!(reason, FieldReason::OutOfRange { .. }));
    let (path, _) = field_error(&envelope(
        r#"{"type":"array","items":{"type":"int32","optional":true},"field":"x"}"#,
        r#"[1, 2, true]"#,
    ));
    assert_eq!(path, "after.x[2]");
    let (path, _) = field_error(&envelope(r#"{"type":"boolean","field":"x"}"#, r#"{"a":1}"#));
    assert_eq!(path, "after.x");
}

#[test]
fn bad_base64_and_bad_decimal() {
    let dec = r#"{"type":"bytes","name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"2"},"field":"x"}"#;
    let (path, reason) = field_error(&envelope(dec, r#""!!not base64!!""#));
    assert_eq!(path, "after.x");
    assert!(matches!(reason, FieldReason::BadBase64(_)));
    // 20 significant bytes do not fit 38 digits.
    let (_, reason) = field_error(&envelope(dec, r#""f/////////////////////////8=""#));
    assert!(
        matches!(reason, FieldReason::DecimalOverflow { .. }),
        "{reason:?}"
    );
    let (_, reason) = field_error(&envelope(
        r#"{"type":"string","name":"io.debezium.time.ZonedTimestamp","field":"x"}"#,
        r#""yesterday""#,
    ));
    assert!(matches!(reason, FieldReason::BadTimestamp(_)));
    let (_, reason) = field_error(&envelope(
        r#"{"type":"string","name":"io.debezium.data.Uuid","field":"x"}"#,
        r#""nope""#,
    ));
    assert!(matches!(reason, FieldReason::BadUuid(_)));
    let (_, reason) = field_error(&envelope(
        r#"{"type":"string","name":"io.debezium.data.Json","field":"x"}"#,
        r#""{broken""#,
    ));
    assert!(matches!(reason, FieldReason::BadJson(_)));
}

#[test]
fn unknown_logical_type_is_a_schema_error() {
    let e = decode_json(
        "t",
        &envelope(
            r#"{"type":"int64","name":"io.debezium.time.FancyTime","field":"x"}"#,
            "1",
        ),
    )
    .unwrap_err();
    assert_eq!(e.reason(), "bad_schema");
    match *e.kind {
        DecodeErrorKind::Schema(SchemaError::UnknownLogicalType { path, name }) => {
            assert_eq!(path, "after.x");
            assert_eq!(name, "io.debezium.time.FancyTime");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn envelope_problems() {
    let e = decode_json("t", br#"{"after":{"id":1},"op":"x","source":{}}"#).unwrap_err();
    assert!(matches!(&*e.kind, DecodeErrorKind::UnknownOp(op) if op == "x"));
    let e = decode_json("t", br#"{"after":{"id":1},"source":{"connector":"mysql"}}"#).unwrap_err();
    assert!(matches!(*e.kind, DecodeErrorKind::MissingOp));
    let e = decode_json("t", br#"{"after":{"id":1},"op":"c"}"#).unwrap_err();
    assert!(
        matches!(*e.kind, DecodeErrorKind::Envelope(_)),
        "a change needs a source block"
    );
    let e = decode_json("t", br#"[1,2,3]"#).unwrap_err();
    assert!(matches!(*e.kind, DecodeErrorKind::Envelope(_)), "{e}");
    let e = decode_json("t", b"  ").unwrap_err();
    assert!(matches!(*e.kind, DecodeErrorKind::Json { .. }), "{e}");
    let e = decode_json(
        "t",
        br#"{"after":{"id":1},"op":"c","source":{"snapshot":[1]}}"#,
    )
    .unwrap_err();
    assert!(matches!(*e.kind, DecodeErrorKind::Json { .. }), "{e}");
}

#[test]
fn bad_keys_are_reported_as_key_errors() {
    let mut d = Decoder::new(DecoderOptions::default(), None);
    let e = d
        .decode_cached(&record("t", Some(b"{\"id\":"), Some(b"{}")))
        .unwrap_err();
    assert_eq!(e.part, RecordPart::Key);
}

#[test]
fn avro_wire_errors() {
    let mut d = Decoder::new(
        DecoderOptions {
            format: WireFormat::Avro,
            ..Default::default()
        },
        None,
    );
    let e = d
        .decode_cached(&record("t", None, Some(b"{\"op\":\"c\"}")))
        .unwrap_err();
    assert!(
        matches!(&*e.kind, DecodeErrorKind::AvroWire(m) if m.contains("magic byte 0x7b")),
        "{e}"
    );
    let e = d
        .decode_cached(&record("t", None, Some(&[0, 0, 1])))
        .unwrap_err();
    assert!(matches!(*e.kind, DecodeErrorKind::AvroWire(_)));
    let e = d.decode_cached(&record("t", None, Some(&[]))).unwrap_err();
    assert!(matches!(*e.kind, DecodeErrorKind::AvroWire(_)));
    // A registered schema and a body that does not match it.
    d.add_avro_schema(
        9,
        r#"{"type":"record","name":"E","fields":[{"name":"op","type":"string"}]}"#,
    )
    .unwrap();
    let e = d
        .decode_cached(&record("t", None, Some(&[0, 0, 0, 0, 9, 0x7f])))
        .unwrap_err();
    assert!(matches!(*e.kind, DecodeErrorKind::Avro(_)), "{e}");
    let e = d
        .decode_cached(&record("t", None, Some(&[0, 0, 0, 0, 9, 2, b'c', 0, 0])))
        .unwrap_err();
    assert!(
        matches!(&*e.kind, DecodeErrorKind::Avro(m) if m.contains("left after")),
        "{e}"
    );
}

#[test]
fn avro_counts_beyond_the_record_are_rejected_without_allocating() {
    // The fuzzer's find: a block count of ~64M items in a tiny record made apache-avro reserve GBs.
    let mut d = Decoder::new(
        DecoderOptions {
            format: WireFormat::Avro,
            ..Default::default()
        },
        None,
    );
    d.add_avro_schema(2, r#"{"type":"record","name":"E","fields":[{"name":"op","type":"string"},{"name":"after","type":["null",{"type":"record","name":"V","fields":[{"name":"xs","type":{"type":"array","items":"long"}}]}]}]}"#).unwrap();
    let body = [0u8, 0, 0, 0, 2, 2, b'c', 2, 0x80, 0x80, 0x80, 0x40];
    let e = d
        .decode_cached(&record("t", None, Some(&body)))
        .unwrap_err();
    assert!(
        matches!(&*e.kind, DecodeErrorKind::Avro(m) if m.contains("items")),
        "{e}"
    );
    let long_string = [0u8, 0, 0, 0, 2, 0xfe, 0xff, 0xff, 0xff, 0x0f];
    let e = d
        .decode_cached(&record("t", None, Some(&long_string)))
        .unwrap_err();
    assert!(matches!(&*e.kind, DecodeErrorKind::Avro(_)), "{e}");
}

#[test]
fn garbage_never_panics() {
    // A cheap sweep; the fuzz target (fuzz/) goes much further.
    let seeds: Vec<Vec<u8>> = vec![
        envelope(r#"{"type":"int32","field":"x"}"#, "1"),
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/debezium/constructed/pg_logical_types_create_envelope.json"
        ))
        .unwrap(),
    ];
    let mut json = Decoder::new(DecoderOptions::default(), None);
    let mut avro = Decoder::new(
        DecoderOptions {
            format: WireFormat::Avro,
            ..Default::default()
        },
        None,
    );
    avro.add_avro_schema(1, r#"{"type":"record","name":"E","fields":[{"name":"op","type":"string"},{"name":"after","type":["null",{"type":"record","name":"V","fields":[{"name":"x","type":"long"}]}]}]}"#).unwrap();
    for seed in &seeds {
        for i in 0..seed.len() {
            let mut b = seed.clone();
            b[i] = b[i].wrapping_add(17);
            let _ = json.decode_cached(&record("t", None, Some(&b)));
            let mut framed = vec![0, 0, 0, 0, 1];
            framed.extend_from_slice(&b[..i.min(40)]);
            let _ = avro.decode_cached(&record("t", None, Some(&framed)));
        }
    }
}

/// A decimal whose scale would expand its text to millions of digits is a dead letter, not a
/// value (one 1 KB record must not take gigabytes).
#[test]
fn huge_decimal_scales_are_dead_letters() {
    let vsd = r#"{"type":"struct","optional":true,"name":"io.debezium.data.VariableScaleDecimal","field":"x","fields":[{"type":"int32","field":"scale"},{"type":"bytes","field":"value"}]}"#;
    let (path, reason) = field_error(&envelope(vsd, r#"{"scale":100000000,"value":"AQ=="}"#));
    assert_eq!(path, "after.x");
    assert!(matches!(reason, FieldReason::OutOfRange { .. }), "{reason}");
    let fixed = r#"{"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"100000000"},"field":"x"}"#;
    let (_, reason) = field_error(&envelope(fixed, r#""AQ==""#));
    assert!(reason.to_string().contains("scale 100000000"), "{reason}");
    // An ordinary scale still decodes.
    let ok = envelope(vsd, r#"{"scale":2,"value":"AQ=="}"#);
    assert!(decode_json("bank.public.t", &ok).is_ok());
}

/// `op = u` or `c` with `after: null` would wipe a silver row: a dead letter with its reason.
#[test]
fn a_change_without_its_row_is_a_dead_letter() {
    for op in ["c", "u", "r"] {
        let v = format!(
            r#"{{"before":null,"after":null,"source":{{"connector":"postgresql","lsn":1}},"op":"{op}"}}"#
        );
        let e = decode_json("bank.public.t", v.as_bytes()).unwrap_err();
        assert_eq!(e.disposition(), Disposition::DeadLetter, "{e}");
        assert!(e.to_string().contains("`after` null"), "{e}");
    }
    let delete =
        r#"{"before":{"id":1},"after":null,"source":{"connector":"postgresql","lsn":1},"op":"d"}"#;
    assert!(decode_json("bank.public.t", delete.as_bytes()).is_ok());
}

/// A null where the schema says the field is not optional is a dead letter naming the field.
#[test]
fn a_null_in_a_required_field_is_a_dead_letter() {
    let (path, reason) = field_error(&envelope(
        r#"{"type":"int64","optional":false,"field":"x"}"#,
        "null",
    ));
    assert_eq!(path, "after.x");
    assert!(reason.to_string().contains("not optional"), "{reason}");
    let optional = envelope(r#"{"type":"int64","optional":true,"field":"x"}"#, "null");
    assert!(decode_json("bank.public.t", &optional).is_ok());
}

/// A time of day past midnight is refused, not wrapped (100:00:00 would read back as 04:00:00
/// and DuckDB refuses the file); PostgreSQL's `24:00:00` is a time of day.
#[test]
fn times_past_midnight_and_unrenderable_dates_are_dead_letters() {
    let micro = r#"{"type":"int64","name":"io.debezium.time.MicroTime","field":"x"}"#;
    let (path, reason) = field_error(&envelope(micro, "360000000000"));
    assert_eq!(path, "after.x");
    assert!(
        reason.to_string().contains("time of day"),
        "{reason}: the reason says what was expected"
    );
    let (_, reason) = field_error(&envelope(micro, "-1"));
    assert!(matches!(reason, FieldReason::OutOfRange { .. }));
    let ok = decode_json("bank.public.t", &envelope(micro, "86400000000")).unwrap();
    assert_eq!(after_x(&ok), Value::Time(86_400_000_000_000));
    let date = r#"{"type":"int32","name":"io.debezium.time.Date","field":"x"}"#;
    let (_, reason) = field_error(&envelope(date, "2147483647"));
    assert!(reason.to_string().contains("date"), "{reason}");
}

/// MySQL's TIME is a duration (-838:59:59 … 838:59:59): read from a MySQL envelope, a MicroTime
/// column is a signed duration, never a time of day.
#[test]
fn mysql_times_are_durations() {
    let bytes = format!(
        r#"{{"schema":{{"type":"struct","name":"m.Envelope","fields":[
            {{"type":"struct","optional":true,"field":"after","name":"m.Value","fields":[
                {{"type":"int64","name":"io.debezium.time.MicroTime","field":"x"}}]}},
            {{"type":"struct","field":"source","name":"io.debezium.connector.mysql.Source",
              "fields":[{{"type":"string","field":"connector"}}]}},
            {{"type":"string","field":"op"}}]}},
          "payload":{{"after":{{"x":{}}},"source":{{"connector":"mysql"}},"op":"c"}}}}"#,
        -3_020_399_000_000i64
    );
    let d = decode_json("m.db.t", bytes.as_bytes()).unwrap();
    assert_eq!(after_x(&d), Value::Duration(-3_020_399_000_000_000));
    assert_eq!(
        tidemark_core::value::duration_text(-3_020_399_000_000_000),
        "-838:59:59.000000"
    );
    assert_eq!(
        tidemark_core::value::duration_text(360_000_250_000_000),
        "100:00:00.250000"
    );
}

fn after_x(d: &tidemark_core::event::Decoded) -> Value {
    let tidemark_core::event::Decoded::Change(c) = d else {
        panic!("not a change: {d:?}")
    };
    match c.after.as_ref().unwrap() {
        tidemark_core::value::Row::Typed(t) => t.values[0].clone(),
        other => panic!("{other:?}"),
    }
}

/// A key whose payload disagrees with its key schema (a member the schema does not name, a
/// required member missing or of another type) is a dead letter naming the key field: the
/// key decides which row a change applies to.
#[test]
fn keys_that_disagree_with_their_schema_are_dead_letters() {
    let value = envelope(r#"{"type":"int32","field":"x"}"#, "1");
    let key = |payload: &str| {
        format!(
            r#"{{"schema":{{"type":"struct","name":"e.Key","optional":false,"fields":[{{"type":"int32","optional":false,"field":"id"}}]}},"payload":{payload}}}"#
        )
    };
    for (payload, expect) in [
        (r#"{"id":"seven"}"#, "key.id"),
        (r#"{"name":"x"}"#, "key.name"),
        (r#"{}"#, "`key.id`: missing"),
        (r#"{"id":7,"tenant":3}"#, "key.tenant"),
        (r#"[7]"#, "key"),
    ] {
        let k = key(payload);
        let r = json_decoder().decode_cached(&record(
            "bank.public.t",
            Some(k.as_bytes()),
            Some(&value),
        ));
        let e = r.expect_err(payload);
        assert_eq!(e.part, RecordPart::Key, "{payload}: {e}");
        assert_eq!(e.disposition(), Disposition::DeadLetter);
        assert!(e.to_string().contains(expect), "{payload}: {e}");
    }
    let ok = key(r#"{"id":7}"#);
    json_decoder()
        .decode_cached(&record("bank.public.t", Some(ok.as_bytes()), Some(&value)))
        .unwrap();
}
