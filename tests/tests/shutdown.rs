//! SIGTERM ends `tidemark ingest` within 5 s whatever it is retrying (a registry answering 5xx,
//! a store that is down when partitions are assigned), and a registry that refuses the
//! credentials stops ingest at once with a clear error instead of retrying forever. Real
//! processes against a MockCluster and an HTTP registry the test serves.

use std::time::{Duration, Instant};

use tidemark_e2e::kafka::Kafka;
use tidemark_e2e::process::Tidemark;
use tidemark_e2e::stream::{Record, RecordKind};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOPIC: &str = "bank.public.avro_things";

fn ingest(dir: &std::path::Path, bootstrap: &str, bronze: &str, registry: &str) -> Tidemark {
    let config = dir.join("t.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbootstrap_servers = \"{bootstrap}\"\ntopics = [\"{TOPIC}\"]\nformat = \"avro\"\n\
             schema_registry_url = \"{registry}\"\nschema_registry_timeout_ms = 500\n\
             [kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\
             {bronze}\n[metrics]\nlisten = \"127.0.0.1:0\"\n"
        ),
    )
    .unwrap();
    Tidemark::start(&config, &["ingest"])
}

async fn kafka_with_an_avro_record() -> Kafka {
    let kafka = Kafka::start(&[(TOPIC, 1)]);
    let record = Record {
        topic: TOPIC.into(),
        partition: 0,
        key: None,
        value: Some(vec![0, 0, 0, 0, 1, 2, 4, 6]),
        timestamp_ms: 1_700_000_000_000,
        kind: RecordKind::Poison,
    };
    kafka.produce(&[record]).await;
    kafka
}

fn local_bronze(dir: &std::path::Path) -> String {
    format!("[bronze]\nurl = \"file://{}/bronze\"", dir.display())
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_ends_ingest_while_the_registry_fails() {
    let kafka = kafka_with_an_avro_record().await;
    let registry = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&registry)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let run = ingest(
        dir.path(),
        &kafka.bootstrap(),
        &local_bronze(dir.path()),
        &registry.uri(),
    );
    run.wait_for(
        "decode needs the schema registry, retrying",
        Duration::from_secs(30),
    );
    let took = run.terminate();
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_that_refuses_the_credentials_stops_ingest() {
    let kafka = kafka_with_an_avro_record().await;
    let registry = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&registry)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut run = ingest(
        dir.path(),
        &kafka.bootstrap(),
        &local_bronze(dir.path()),
        &registry.uri(),
    );
    let until = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = run.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < until,
            "still running:\n{}",
            run.log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_millis(200));
    assert!(!status.success());
    let log = run.log.lock().unwrap();
    assert!(log.contains("refused the credentials"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_ends_ingest_while_the_store_is_down() {
    let kafka = kafka_with_an_avro_record().await;
    let registry = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    // An S3 endpoint nobody listens on: the commit log cannot be read at assignment.
    let port = tidemark_e2e::run_setup::free_port();
    let bronze = format!(
        "[bronze]\nurl = \"s3://lake/bronze\"\n[bronze.s3]\nendpoint = \"http://127.0.0.1:{port}\"\n\
         allow_http = true\naccess_key_id = \"x\"\nsecret_access_key = \"y\"\nrequest_timeout_ms = 500"
    );
    let run = ingest(dir.path(), &kafka.bootstrap(), &bronze, &registry.uri());
    run.wait_for(
        "cannot read the commit log, retrying",
        Duration::from_secs(60),
    );
    let took = run.terminate();
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

/// The store refuses writes (an outage after start): the flush retries; SIGTERM gives it up at
/// once (its range is re-read by the next run) instead of holding shutdown for the drain timeout.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_ends_ingest_while_flushes_fail() {
    const JSON_TOPIC: &str = "bank.public.json_things";
    let kafka = Kafka::start(&[(JSON_TOPIC, 1)]);
    let value = br#"{"schema":null,"payload":{"op":"c","after":{"id":1},"source":{"connector":"postgresql"}}}"#;
    kafka
        .produce(&[Record {
            topic: JSON_TOPIC.into(),
            partition: 0,
            key: None,
            value: Some(value.to_vec()),
            timestamp_ms: 1_700_000_000_000,
            kind: RecordKind::Poison,
        }])
        .await;
    // An S3 endpoint whose bucket lists empty and refuses every write.
    let s3 = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string(
            r#"<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>lake</Name><Prefix></Prefix><KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated></ListBucketResult>"#,
        ))
        .mount(&s3)
        .await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&s3)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("t.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbootstrap_servers = \"{}\"\ntopics = [\"{JSON_TOPIC}\"]\n\
             [kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\
             [bronze]\nurl = \"s3://lake/bronze\"\nmax_records = 1\n[bronze.s3]\nendpoint = \"{}\"\n\
             allow_http = true\naccess_key_id = \"x\"\nsecret_access_key = \"y\"\nrequest_timeout_ms = 500\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n",
            kafka.bootstrap(),
            s3.uri()
        ),
    )
    .unwrap();
    let run = Tidemark::start(&config, &["ingest"]);
    run.wait_for("flush failed, retrying", Duration::from_secs(60));
    let log = run.log.clone();
    let took = run.terminate();
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let log = log.lock().unwrap();
    assert!(!log.contains("panicked"), "{log}");
}
