//! SIGTERM ends `tidemark ingest` within 5 s whatever it is retrying (a registry answering 5xx,
//! a store that is down when partitions are assigned), and a registry that refuses the
//! credentials stops ingest at once with a clear error instead of retrying forever. Real
//! processes against a MockCluster and an HTTP registry the test serves.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tidemark_e2e::kafka::Kafka;
use tidemark_e2e::merge_scenario::tidemark_bin;
use tidemark_e2e::stream::{Record, RecordKind};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOPIC: &str = "bank.public.avro_things";

/// A running ingest and what it printed so far.
struct Ingest {
    child: Child,
    log: Arc<Mutex<String>>,
}

fn ingest(dir: &std::path::Path, bootstrap: &str, bronze: &str, registry: &str) -> Ingest {
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
    let mut child = Command::new(tidemark_bin())
        .arg("--config")
        .arg(&config)
        .args(["--log-format", "json", "ingest"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let (sink, stderr) = (log.clone(), child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut l = sink.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
    Ingest { child, log }
}

impl Ingest {
    /// Waits until the log holds `text` (or panics after `within`).
    fn wait_for(&self, text: &str, within: Duration) {
        let until = Instant::now() + within;
        while Instant::now() < until {
            if self.log.lock().unwrap().contains(text) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no `{text}` in the log:\n{}", self.log.lock().unwrap());
    }

    /// Sends SIGTERM and returns how long the process took to exit.
    fn terminate(mut self) -> Duration {
        let sent = Instant::now();
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        loop {
            if self.child.try_wait().unwrap().is_some() {
                return sent.elapsed();
            }
            if sent.elapsed() > Duration::from_secs(30) {
                let _ = self.child.kill();
                panic!("ingest ignored SIGTERM:\n{}", self.log.lock().unwrap());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
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
