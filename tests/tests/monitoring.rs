//! monitoring/ against real Prometheus tools: `promtool check config`, `check rules` and
//! `test rules` (one unit test per alert), then a real Prometheus server scrapes a running
//! `tidemark run` (MockCluster → bronze → SQLite) and every PromQL expression of the Grafana
//! dashboard returns at least one series, and every metric the alert rules use exists.
//! Needs the Debian package `prometheus`; skipped without it unless TIDEMARK_REQUIRE_PROMETHEUS.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tidemark_e2e::kafka::Kafka;
use tidemark_e2e::merge_scenario::tidemark_bin;
use tidemark_e2e::run_setup::{free_port, run_config};
use tidemark_e2e::stream::{Record, RecordKind, generate};

const TOPIC: &str = "bank.public.accounts";
const TXN_TOPIC: &str = "bank.transaction";

/// A BEGIN record of the connector's transaction topic.
fn begin() -> Record {
    let value = serde_json::json!({"status": "BEGIN", "id": "571:53195829", "ts_ms": 1_700_000_000_000i64,
                                   "event_count": null, "data_collections": null});
    Record {
        topic: TXN_TOPIC.into(),
        partition: 0,
        key: Some(br#"{"id":"571:53195829"}"#.to_vec()),
        value: Some(value.to_string().into_bytes()),
        timestamp_ms: 1_700_000_000_000,
        kind: RecordKind::Transaction,
    }
}

fn monitoring() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../monitoring")
}

fn have_prometheus() -> bool {
    let ok = Command::new("promtool").arg("--version").output().is_ok()
        && Command::new("prometheus").arg("--version").output().is_ok();
    if !ok {
        assert!(
            std::env::var_os("TIDEMARK_REQUIRE_PROMETHEUS").is_none(),
            "prometheus and promtool are required (apt-get install prometheus)"
        );
        eprintln!("skipped: prometheus/promtool not installed (apt-get install prometheus)");
    }
    ok
}

fn promtool(args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(monitoring())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_accepts_the_config_and_rules_and_every_alert_test_passes() {
    if !have_prometheus() {
        return;
    }
    promtool(&["check", "config", "prometheus.yml"]);
    promtool(&["check", "rules", "alerts.yml"]);
    promtool(&["test", "rules", "alerts_test.yml"]);
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn query(client: &reqwest::Client, prom: u16, expr: &str) -> usize {
    let v: serde_json::Value = client
        .get(format!("http://127.0.0.1:{prom}/api/v1/query"))
        .query(&[("query", expr)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "success", "{expr}: {v}");
    v["data"]["result"].as_array().map_or(0, Vec::len)
}

/// The catalogued metrics `/metrics` has no series of, once the process has started its loops
/// (its partitions assigned, a merge cycle done), or after 30 s.
async fn wait_for_every_series(client: &reqwest::Client, port: u16) -> Vec<&'static str> {
    let started = Instant::now();
    loop {
        let text = match client
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let missing: Vec<&'static str> = tidemark_core::metrics::catalogue::CATALOGUE
            .iter()
            .map(|m| m.name)
            .filter(|n| {
                !text.lines().any(|l| {
                    l.strip_prefix(n).is_some_and(|rest| {
                        rest.starts_with('{')
                            || rest.starts_with(' ')
                            || rest.starts_with("_bucket")
                            || rest.starts_with("_count")
                    })
                })
            })
            .collect();
        if missing.is_empty() || started.elapsed() > Duration::from_secs(30) {
            return missing;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_dashboard_and_alert_expression_finds_series_in_a_real_prometheus() {
    if !have_prometheus() {
        return;
    }
    // A running tidemark with data: Kafka → bronze → SQLite.
    let kafka = Kafka::start(&[(TOPIC, 2), (TXN_TOPIC, 1)]);
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = run_config(dir.path(), &kafka.bootstrap(), TOPIC, "mon", Some(port));
    // The connector's transaction topic too (one BEGIN in it), so the per-connector transaction
    // series exist and atomic cycles run.
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &format!("topics = [\"{TOPIC}\"]"),
        &format!("topics = [\"{TOPIC}\", \"{TXN_TOPIC}\"]"),
    );
    std::fs::write(&config, text).unwrap();
    kafka.produce(&[begin()]).await;
    let _tidemark = Killed(
        Command::new(tidemark_bin())
            .args([
                "--config",
                config.to_str().unwrap(),
                "--log-level",
                "error",
                "run",
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // Prometheus with the shipped config, pointed at it, scraping every second.
    let shipped = std::fs::read_to_string(monitoring().join("prometheus.yml")).unwrap();
    let prom_cfg = shipped
        .replace("tidemark:9464", &format!("127.0.0.1:{port}"))
        .replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace(
            "  - alerts.yml",
            &format!("  - {}", monitoring().join("alerts.yml").display()),
        );
    let prom_file = dir.path().join("prometheus.yml");
    std::fs::write(&prom_file, prom_cfg).unwrap();
    let prom = free_port();
    let _prometheus = Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", prom_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // Freshly started, before any change: every catalogued metric already has a series, so
    // panels and alerts show 0 rather than "No data" (dead letters included).
    let client = reqwest::Client::new();
    let missing = wait_for_every_series(&client, port).await;
    assert!(
        missing.is_empty(),
        "catalogued metrics without a series at start: {missing:?}"
    );

    // Changes flow while Prometheus scrapes, so rates have something to show.
    for chunk in generate(TOPIC, 2, 1500, true, 3).chunks(300) {
        kafka.produce(chunk).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let started = Instant::now();
    while query(&client, prom, "tidemark_merge_changes_total").await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "Prometheus saw no merge metrics"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;

    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(monitoring().join("grafana/dashboards/tidemark.json")).unwrap(),
    )
    .unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(t["expr"].as_str().unwrap().to_owned());
        }
    }
    assert!(exprs.len() >= 15, "the dashboard has its panels");
    let mut empty = Vec::new();
    for e in &exprs {
        if query(&client, prom, e).await == 0 {
            empty.push(e.clone());
        }
    }
    assert!(
        empty.is_empty(),
        "dashboard expressions without series: {empty:#?}"
    );

    // Alert rules hold thresholds (empty while healthy): every metric they use must exist.
    let rules = std::fs::read_to_string(monitoring().join("alerts.yml")).unwrap();
    let names: BTreeSet<String> = regex::Regex::new(r"tidemark_[a-z_]+")
        .unwrap()
        .find_iter(
            &rules
                .lines()
                .filter(|l| l.trim_start().starts_with("expr:"))
                .collect::<Vec<_>>()
                .join("\n"),
        )
        .map(|m| m.as_str().to_owned())
        .collect();
    assert!(names.len() >= 6);
    for n in &names {
        assert!(
            query(&client, prom, n).await > 0,
            "alert metric {n} has no series"
        );
    }
    // And every alert expression is valid PromQL on the server.
    for l in rules
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("expr:"))
    {
        query(&client, prom, l.trim()).await;
    }
}
