//! The Schema Registry client against a real HTTP server started by the test (wiremock):
//! caching by id, basic auth, 404, a slow and a down registry, retries, non-Avro schemas.

mod common;

use std::sync::Arc;
use std::time::Duration;

use tidemark_core::config::Secret;
use tidemark_core::event::{ChangeEvent, Decoded, KafkaCoords, Op, Source};
use tidemark_core::schema::{Field, Kind, Logical, Schema, StructSchema};
use tidemark_core::value::{Row, TypedRow, Value};
use tidemark_wire::decode::{
    DecodeErrorKind, Decoder, DecoderOptions, Disposition, Placeholder, WireFormat,
};
use tidemark_wire::encode::AvroEventEncoder;
use tidemark_wire::registry::{RegistryClient, RegistryError, RegistrySettings};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use common::record;

fn settings(url: &str) -> RegistrySettings {
    RegistrySettings {
        timeout: Duration::from_millis(300),
        attempts: 3,
        backoff: Duration::from_millis(10),
        ..RegistrySettings::new(url)
    }
}

fn row_schema() -> Schema {
    let fields = vec![
        Field {
            name: "id".into(),
            schema: Schema::plain(Kind::Int64, false),
        },
        Field {
            name: "balance".into(),
            schema: Schema {
                kind: Kind::Bytes,
                optional: true,
                logical: Logical::Decimal {
                    scale: 2,
                    precision: Some(12),
                },
                name: Some("org.apache.kafka.connect.data.Decimal".into()),
            },
        },
    ];
    Schema {
        kind: Kind::Struct(Arc::new(StructSchema::new(
            Some("bank.public.accounts.Value".into()),
            fields,
        ))),
        optional: false,
        logical: Logical::None,
        name: Some("bank.public.accounts.Value".into()),
    }
}

fn avro_event(id: u32) -> (AvroEventEncoder, Vec<u8>) {
    let schema = row_schema();
    let enc = AvroEventEncoder::new(&schema, "bank.public.accounts", id);
    let e = ChangeEvent {
        op: Op::Create,
        key: None,
        before: None,
        after: Some(Row::Typed(TypedRow {
            schema: schema.as_struct().unwrap().clone(),
            values: vec![Value::Int(7), tidemark_wire::encode::decimal(12345, 2)],
        })),
        source: Source {
            connector: Some("postgresql".into()),
            ..Default::default()
        },
        ts_ms: Some(1),
        ts_us: None,
        ts_ns: None,
        transaction: None,
        kafka: KafkaCoords {
            topic: "bank.public.accounts".into(),
            partition: 0,
            offset: 0,
            timestamp_ms: None,
        },
        schema: None,
    };
    let bytes = enc.encode(&e, &Placeholder::default()).unwrap();
    (enc, bytes)
}

fn schema_body(text: &str) -> serde_json::Value {
    serde_json::json!({ "schema": text })
}

#[tokio::test]
async fn avro_records_decode_through_the_registry_and_the_schema_is_fetched_once() {
    let server = MockServer::start().await;
    let (enc, bytes) = avro_event(17);
    Mock::given(method("GET"))
        .and(path("/schemas/ids/17"))
        .respond_with(ResponseTemplate::new(200).set_body_json(schema_body(&enc.schema_text)))
        .expect(1)
        .mount(&server)
        .await;
    let client = RegistryClient::new(settings(&server.uri())).unwrap();
    let mut d = Decoder::new(
        DecoderOptions {
            format: WireFormat::Avro,
            ..Default::default()
        },
        Some(client.clone()),
    );
    for _ in 0..3 {
        let Decoded::Change(e) = d
            .decode(&record("bank.public.accounts", None, Some(&bytes)))
            .await
            .unwrap()
        else {
            panic!()
        };
        let after = e.after.unwrap();
        let t = after.as_typed().unwrap();
        assert_eq!(
            t.get("balance").map(|v| format!("{v:?}")),
            Some("Decimal(Decimal { unscaled: 12345, scale: 2 })".into())
        );
        assert_eq!(e.schema.unwrap().registry_id, Some(17));
    }
    // A second decoder sharing the client reuses the client's cache: still one request.
    let mut d2 = Decoder::new(
        DecoderOptions {
            format: WireFormat::Avro,
            ..Default::default()
        },
        Some(client),
    );
    d2.decode(&record("t", None, Some(&bytes))).await.unwrap();
}

#[tokio::test]
async fn basic_auth_is_sent_and_refusal_is_typed() {
    let server = MockServer::start().await;
    let (enc, _) = avro_event(1);
    // "user:pass" in base64.
    Mock::given(method("GET"))
        .and(path("/schemas/ids/1"))
        .and(header("authorization", "Basic dXNlcjpwYXNz"))
        .respond_with(ResponseTemplate::new(200).set_body_json(schema_body(&enc.schema_text)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&server)
        .await;
    let mut s = settings(&server.uri());
    s.username = Some("user".into());
    s.password = Some(Secret::new("pass"));
    RegistryClient::new(s)
        .unwrap()
        .schema_text(1)
        .await
        .unwrap();
    let err = RegistryClient::new(settings(&server.uri()))
        .unwrap()
        .schema_text(1)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::Unauthorized { status: 401, .. }),
        "{err}"
    );
    // Refused credentials are a config problem: not retried, not a dead letter.
    assert!(err.is_unauthorized() && !err.is_transient());
}

#[tokio::test]
async fn unknown_id_is_not_found_and_dead_letters_the_record() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(404).set_body_json(
                serde_json::json!({"error_code": 40403, "message": "Schema not found"}),
            ),
        )
        .expect(1)
        .mount(&server)
        .await;
    let client = RegistryClient::new(settings(&server.uri())).unwrap();
    let mut d = Decoder::new(
        DecoderOptions {
            format: WireFormat::Avro,
            ..Default::default()
        },
        Some(client),
    );
    let e = d
        .decode(&record(
            "bank.public.accounts",
            None,
            Some(&[0, 0, 0, 0, 99, 2]),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &*e.kind,
            DecodeErrorKind::Registry(RegistryError::SchemaNotFound { id: 99, .. })
        ),
        "{e}"
    );
    assert_eq!(e.disposition(), Disposition::DeadLetter);
    assert!(e.to_string().contains("bank.public.accounts[3]@42"), "{e}");
}

#[tokio::test]
async fn a_slow_registry_times_out_with_a_retryable_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(schema_body("\"string\""))
                .set_delay(Duration::from_secs(2)),
        )
        .mount(&server)
        .await;
    let started = std::time::Instant::now();
    let err = RegistryClient::new(settings(&server.uri()))
        .unwrap()
        .schema_text(5)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::Unavailable { attempts: 3, .. }),
        "{err}"
    );
    assert!(err.is_transient());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "timeouts bound the wait: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_down_registry_is_unavailable_and_retryable() {
    // Bind then drop a listener: nothing listens on that port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = RegistryClient::new(settings(&format!("http://127.0.0.1:{port}"))).unwrap();
    let mut d = Decoder::new(
        DecoderOptions {
            format: WireFormat::Avro,
            ..Default::default()
        },
        Some(client),
    );
    let e = d
        .decode(&record("t", None, Some(&[0, 0, 0, 0, 1, 0])))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &*e.kind,
            DecodeErrorKind::Registry(RegistryError::Unavailable { .. })
        ),
        "{e}"
    );
    assert_eq!(e.disposition(), Disposition::Retry);
}

#[tokio::test]
async fn server_errors_are_retried_until_the_registry_answers() {
    let server = MockServer::start().await;
    let (enc, _) = avro_event(3);
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(schema_body(&enc.schema_text)))
        .mount(&server)
        .await;
    let text = RegistryClient::new(settings(&server.uri()))
        .unwrap()
        .schema_text(3)
        .await
        .unwrap();
    assert_eq!(&*text, enc.schema_text);
}

#[tokio::test]
async fn non_avro_schemas_are_refused() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"schema": "syntax = \"proto3\";", "schemaType": "PROTOBUF"}),
        ))
        .mount(&server)
        .await;
    let err = RegistryClient::new(settings(&server.uri()))
        .unwrap()
        .schema_text(4)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RegistryError::NotAvro { schema_type, .. } if schema_type == "PROTOBUF"),
        "{err}"
    );
    assert!(!err.is_transient());
}
