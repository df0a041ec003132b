//! TLS and SASL against real peers: `tidemark run` consumes from a broker reachable only over
//! SASL_SSL with SCRAM-SHA-512 (tansu behind stunnel, the test CA) and merges into a PostgreSQL
//! serving TLS, with `ssl_mode = "verify-full"`; a wrong CA or password is refused with an error
//! that says so; the Schema Registry client does mutual TLS.

use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::FutureProducer;
use tidemark_core::config::{Config, Pem};
use tidemark_e2e::process::Tidemark;
use tidemark_e2e::run_setup::free_port;
use tidemark_e2e::stream::generate;
use tidemark_e2e::tls::{SecureKafka, Stunnel, certs, tools};
use tidemark_e2e::warehouse::{rows, table};
use tidemark_warehouse::sql::conn::Pool;
use tidemark_wire::registry::{RegistryClient, RegistrySettings};

const TOPIC: &str = "tls.public.accounts";
const USER: &str = "tidemark";
const PASSWORD: &str = "s3cret-scram";

/// The test PostgreSQL when it serves TLS with the test CA (scripts/test.sh starts one).
async fn tls_database() -> Option<String> {
    if std::env::var_os("TIDEMARK_TEST_PG_TLS").is_none() {
        assert!(
            std::env::var_os("TIDEMARK_REQUIRE_TLS").is_none(),
            "TIDEMARK_TEST_PG_TLS is required: run scripts/test.sh, which starts PostgreSQL with TLS"
        );
        eprintln!("skipped: no PostgreSQL serving TLS (run scripts/test.sh)");
        return None;
    }
    tidemark_e2e::postgres::fresh_database().await
}

fn producer(kafka: &SecureKafka, certs: &Path) -> FutureProducer {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &kafka.bootstrap)
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000");
    for (k, v) in SecureKafka::client_properties(certs, USER, PASSWORD) {
        c.set(k, v);
    }
    c.create().expect("producer")
}

/// A `run` config: SASL_SSL to `bootstrap` (password and CA as given), PostgreSQL `db_url` over
/// verified TLS with `pg_ca`.
fn config(
    dir: &Path,
    bootstrap: &str,
    kafka_ca: &Path,
    password: &str,
    db_url: &str,
    pg_ca: &Path,
    metrics: u16,
) -> std::path::PathBuf {
    let secret = dir.join("kafka-password");
    std::fs::write(&secret, format!("{password}\n")).unwrap();
    let path = dir.join("tidemark.toml");
    let text = format!(
        r#"[kafka]
bootstrap_servers = "{bootstrap}"
group_id = "tls"
topics = ["{TOPIC}"]
[kafka.properties]
"security.protocol" = "SASL_SSL"
"sasl.mechanisms" = "SCRAM-SHA-512"
"sasl.username" = "{USER}"
"sasl.password" = {{ file = "{secret}" }}
"ssl.ca.location" = "{kafka_ca}"
"session.timeout.ms" = 6000
"statistics.interval.ms" = 500
[bronze]
url = "file://{d}/bronze"
max_records = 200
max_age_ms = 300
[warehouse]
url = "{db_url}"
ssl_mode = "verify-full"
ssl_root_cert = {{ file = "{pg_ca}" }}
[merge]
interval_ms = 100
[metrics]
listen = "127.0.0.1:{metrics}"
[[tables]]
source = "{TOPIC}"
kind = "dimension"
key = ["id"]
"#,
        secret = secret.display(),
        kafka_ca = kafka_ca.display(),
        pg_ca = pg_ca.display(),
        d = dir.display(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// The same database without TLS, for the test's own checks (so only tidemark's sessions are
/// encrypted).
async fn plain(db_url: &str) -> Pool {
    Pool::connect(&format!("{db_url}?sslmode=disable"), None)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn run_over_sasl_ssl_merges_into_postgres_over_verified_tls() {
    let Some(certs) = certs() else { return };
    let Some(()) = tools(&["tansu", "stunnel"]) else {
        return;
    };
    let Some(db_url) = tls_database().await else {
        return;
    };
    // verify-full checks the name: the server certificate is for `localhost`.
    let tls_url = db_url.replace("127.0.0.1", "localhost");
    let kafka = SecureKafka::start(&certs, TOPIC, 2, USER, PASSWORD);
    let records = generate(TOPIC, 2, 600, true, 11);
    let delivered = tidemark_e2e::kafka::produce(&producer(&kafka, &certs), &records).await;
    let ends: Vec<Vec<Option<String>>> = delivered
        .iter()
        .map(|((_, p), v)| {
            let end = v.iter().map(|(o, _)| *o).max().unwrap() + 1;
            vec![Some(p.to_string()), Some(end.to_string())]
        })
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let ca = certs.join("ca.pem");
    let cfg = config(
        dir.path(),
        &kafka.bootstrap,
        &ca,
        PASSWORD,
        &tls_url,
        &ca,
        free_port(),
    );
    let check = std::process::Command::new(tidemark_e2e::merge_scenario::tidemark_bin())
        .args(["--config", cfg.to_str().unwrap(), "config", "check"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "config check: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        !shown.contains(PASSWORD),
        "the password is printed:\n{shown}"
    );

    let run = Tidemark::start(&cfg, &["run"]);
    let pool = plain(&db_url).await;
    // Done when the ledger has applied every offset produced.
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let exists = rows(
            &pool,
            "SELECT CAST(to_regclass('tidemark.ledger') IS NOT NULL AS TEXT)",
        )
        .await;
        if exists[0][0].as_deref() == Some("true") {
            let got = rows(&pool, "SELECT CAST(part AS TEXT), CAST(next_offset AS TEXT) FROM tidemark.ledger ORDER BY part").await;
            if got == ends {
                break;
            }
        }
        assert!(
            Instant::now() < until,
            "not merged within 120 s:\n{}",
            run.log.lock().unwrap()
        );
    }
    let silver = rows(
        &pool,
        &format!(
            "SELECT CAST(count(*) AS TEXT) FROM {}",
            table(&pool, "silver", "accounts")
        ),
    )
    .await;
    assert_ne!(silver[0][0].as_deref(), Some("0"));
    let encrypted = rows(
        &pool,
        "SELECT CAST(count(*) AS TEXT) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.datname = current_database() AND s.ssl",
    )
    .await;
    assert_ne!(
        encrypted[0][0].as_deref(),
        Some("0"),
        "tidemark's sessions are not encrypted"
    );
    run.terminate();
}

/// `/readyz` of a process on `port`, once it says `text` (or the last answer after 30 s).
async fn readyz_until(port: u16, text: &str) -> (u16, String) {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await else {
            continue;
        };
        let status = r.status().as_u16();
        let body = r.text().await.unwrap_or_default();
        if body.contains(text) || Instant::now() > until {
            return (status, body);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_ca_or_password_is_refused_with_a_clear_error() {
    let Some(certs) = certs() else { return };
    let Some(()) = tools(&["tansu", "stunnel"]) else {
        return;
    };
    let Some(db_url) = tls_database().await else {
        return;
    };
    let tls_url = db_url.replace("127.0.0.1", "localhost");
    let kafka = SecureKafka::start(&certs, TOPIC, 1, USER, PASSWORD);
    let (ca, other) = (certs.join("ca.pem"), certs.join("other-ca.pem"));

    // Kafka: librdkafka retries for ever; the process says why it is not ready.
    for (kafka_ca, password, expected) in [
        (&other, PASSWORD, "certificate verify failed"),
        (&ca, "wrong", "SASL authentication error"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let cfg = config(
            dir.path(),
            &kafka.bootstrap,
            kafka_ca,
            password,
            &tls_url,
            &ca,
            port,
        );
        let ingest = Tidemark::start(&cfg, &["ingest"]);
        let (status, body) = readyz_until(port, expected).await;
        assert_eq!(status, 503, "{body}");
        assert!(
            body.contains("kafka") && body.contains(expected),
            "/readyz: {body}"
        );
        ingest.wait_for(expected, Duration::from_secs(10));
        ingest.terminate();
    }

    // PostgreSQL: the merger does not start, and says which setting to fix.
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &kafka.bootstrap,
        &ca,
        PASSWORD,
        &tls_url,
        &other,
        free_port(),
    );
    let out = std::process::Command::new(tidemark_e2e::merge_scenario::tidemark_bin())
        .args(["--config", cfg.to_str().unwrap(), "merge", "--once"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "merged with a wrong CA: {err}");
    assert!(
        err.contains("certificate") && err.contains("warehouse.ssl_root_cert"),
        "{err}"
    );
    assert_eq!(
        err.matches("UnknownIssuer").count(),
        1,
        "the cause is said once: {err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn schema_registry_over_mutual_tls() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let Some(certs) = certs() else { return };
    let Some(()) = tools(&["stunnel"]) else {
        return;
    };
    let server = MockServer::start().await;
    let schema = r#"{"type":"record","name":"K","fields":[{"name":"id","type":"long"}]}"#;
    Mock::given(method("GET"))
        .and(path("/schemas/ids/7"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({ "schema": schema })),
        )
        .mount(&server)
        .await;
    let tls = Stunnel::start(&certs, free_port(), server.address().port(), true);

    let pem = |f: &str| {
        let text = format!(
            "schema_registry_ca = {{ file = \"{}\" }}",
            certs.join(f).display()
        );
        let cfg = Config::from_toml_and_env(&format!("[kafka]\n{text}\n"), []).unwrap();
        cfg.kafka.schema_registry_ca.unwrap()
    };
    let read = |p: &str| Pem::inline(std::fs::read_to_string(certs.join(p)).unwrap());
    let url = format!("https://localhost:{}", tls.port);
    let settings = |ca: Option<Pem>, identity: Option<(Pem, Pem)>| RegistrySettings {
        ca,
        identity,
        attempts: 1,
        timeout: Duration::from_secs(5),
        ..RegistrySettings::new(url.clone())
    };

    let client = RegistryClient::new(settings(
        Some(pem("ca.pem")),
        Some((read("client.pem"), read("client.key"))),
    ))
    .unwrap();
    assert_eq!(&*client.schema_text(7).await.unwrap(), schema);

    let no_client_cert = RegistryClient::new(settings(Some(pem("ca.pem")), None)).unwrap();
    let e = no_client_cert.schema_text(7).await.unwrap_err().to_string();
    assert!(e.contains("unreachable"), "{e}");

    let wrong_ca = RegistryClient::new(settings(
        Some(pem("other-ca.pem")),
        Some((read("client.pem"), read("client.key"))),
    ))
    .unwrap();
    let e = wrong_ca.schema_text(7).await.unwrap_err().to_string();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
}
