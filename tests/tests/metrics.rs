//! `/metrics` during an end-to-end run (MockCluster → `tidemark run` → bronze → merge into
//! SQLite): the counters move by exactly the number of records processed, per table and op, the
//! consumer lag returns to 0, and `/healthz` and `/readyz` answer.

use std::collections::{BTreeMap, HashMap};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tidemark_e2e::kafka::Kafka;
use tidemark_e2e::merge_scenario::tidemark_bin;
use tidemark_e2e::run_setup::{free_port, run_config};
use tidemark_e2e::stream::{RecordKind, generate};

const TOPIC: &str = "bank.public.accounts";

/// `(name, labels) → value` of a Prometheus text exposition.
fn parse(text: &str) -> HashMap<(String, BTreeMap<String, String>), f64> {
    let mut out = HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => {
                let body = rest.trim_end_matches('}');
                let labels = body
                    .split("\",")
                    .filter(|kv| !kv.is_empty())
                    .filter_map(|kv| {
                        let (k, v) = kv.split_once("=\"")?;
                        Some((k.to_owned(), v.trim_end_matches('"').to_owned()))
                    })
                    .collect();
                (n.to_owned(), labels)
            }
            None => (series.to_owned(), BTreeMap::new()),
        };
        out.insert((name, labels), value.parse().unwrap_or(f64::NAN));
    }
    out
}

fn get(
    m: &HashMap<(String, BTreeMap<String, String>), f64>,
    name: &str,
    labels: &[(&str, &str)],
) -> f64 {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    m.get(&(name.to_owned(), want)).copied().unwrap_or(0.0)
}

fn sum(
    m: &HashMap<(String, BTreeMap<String, String>), f64>,
    name: &str,
    label: (&str, &str),
) -> f64 {
    m.iter()
        .filter(|((n, l), _)| n == name && l.get(label.0).map(String::as_str) == Some(label.1))
        .map(|(_, v)| v)
        .sum()
}

async fn http(port: u16, path: &str) -> (u16, String) {
    let r = reqwest_like(port, path).await;
    r.unwrap_or((0, String::new()))
}

/// A minimal HTTP/1.0 GET (the test needs no client library).
async fn reqwest_like(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await?;
    let code = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_exactly_what_was_processed() {
    let kafka = Kafka::start(&[(TOPIC, 2)]);
    let records = generate(TOPIC, 2, 1500, true, 9);
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = run_config(dir.path(), &kafka.bootstrap(), TOPIC, "m", Some(port));
    let mut child = Command::new(tidemark_bin())
        .args([
            "--config",
            config.to_str().unwrap(),
            "--log-level",
            "warn",
            "run",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    kafka.produce(&records).await;

    let mut by_op: BTreeMap<&str, f64> = BTreeMap::new();
    let (mut tombstones, mut poison) = (0.0, 0.0);
    for r in &records {
        match r.kind {
            RecordKind::Change(op) => *by_op.entry(op.code()).or_default() += 1.0,
            RecordKind::Tombstone => tombstones += 1.0,
            RecordKind::Poison => poison += 1.0,
            RecordKind::Transaction => {}
        }
    }
    let changes: f64 = by_op.values().sum();

    let started = Instant::now();
    let m = loop {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "metrics did not settle"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (code, body) = http(port, "/metrics").await;
        if code != 200 {
            continue;
        }
        let m = parse(&body);
        let merged = sum(&m, "tidemark_merge_changes_total", ("table", "accounts"));
        let lag: f64 = ["0", "1"]
            .iter()
            .map(|p| {
                get(
                    &m,
                    "tidemark_consumer_lag",
                    &[("topic", TOPIC), ("partition", p)],
                )
            })
            .sum();
        let lag_seen = ["0", "1"].iter().all(|p| {
            m.contains_key(&(
                "tidemark_consumer_lag".to_owned(),
                [
                    ("partition".to_owned(), (*p).to_owned()),
                    ("topic".to_owned(), TOPIC.to_owned()),
                ]
                .into(),
            ))
        });
        if merged >= changes && lag_seen && lag == 0.0 {
            break m;
        }
    };

    assert_eq!(
        get(&m, "tidemark_records_consumed_total", &[("topic", TOPIC)]),
        records.len() as f64
    );
    for (op, n) in &by_op {
        assert_eq!(
            get(
                &m,
                "tidemark_records_landed_total",
                &[("topic", TOPIC), ("op", op)]
            ),
            *n,
            "landed {op}"
        );
        assert_eq!(
            get(
                &m,
                "tidemark_merge_changes_total",
                &[("table", "accounts"), ("op", op)]
            ),
            *n,
            "merged {op}"
        );
    }
    assert_eq!(
        get(
            &m,
            "tidemark_records_landed_total",
            &[("topic", TOPIC), ("op", "tombstone")]
        ),
        tombstones
    );
    assert_eq!(
        sum(&m, "tidemark_dead_letters_total", ("topic", TOPIC)),
        poison
    );
    assert!(
        get(
            &m,
            "tidemark_bronze_files_committed_total",
            &[("topic", TOPIC)]
        ) > 0.0
    );
    assert!(get(&m, "tidemark_merge_batches_total", &[("table", "accounts")]) > 0.0);
    assert!(
        sum(
            &m,
            "tidemark_scd2_events_total",
            ("event", "version_opened")
        ) > 0.0
    );
    assert!(
        get(
            &m,
            "tidemark_end_to_end_latency_seconds_count",
            &[("table", "accounts")]
        ) == changes
    );
    assert!(m.keys().any(|(n, _)| n == "tidemark_freshness_seconds"));
    assert_eq!(
        get(
            &m,
            "tidemark_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );

    assert_eq!(http(port, "/healthz").await.0, 200);
    let (code, body) = http(port, "/readyz").await;
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("kafka: ok")
            && body.contains("warehouse: ok")
            && body.contains("object_store: ok"),
        "{body}"
    );

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}
