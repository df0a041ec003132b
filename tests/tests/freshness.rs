//! Freshness on a quiet source: after its changes are merged, a table whose connector keeps
//! sending Debezium heartbeats stays fresh (`tidemark_freshness_seconds` follows the heartbeats),
//! while a table of a connector without heartbeats ages with its newest change — MockCluster →
//! `tidemark run` → bronze on files → SQLite.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tidemark_e2e::kafka::Kafka;
use tidemark_e2e::process::Tidemark;
use tidemark_e2e::run_setup::free_port;
use tidemark_e2e::stream::{Record, RecordKind, generate};

const WITH_HEARTBEATS: &str = "bank.public.accounts";
const WITHOUT: &str = "shop.public.accounts";
const HEARTBEATS: &str = "__debezium-heartbeat.bank";

fn config(dir: &std::path::Path, bootstrap: &str, port: u16) -> std::path::PathBuf {
    let path = dir.join("tidemark.toml");
    std::fs::write(
        &path,
        format!(
            "[kafka]\nbootstrap_servers = \"{bootstrap}\"\ngroup_id = \"fresh\"\n\
             topics = [\"{WITH_HEARTBEATS}\", \"{WITHOUT}\", \"{HEARTBEATS}\"]\n\
             [kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\
             [bronze]\nurl = \"file://{d}/bronze\"\nmax_records = 400\nmax_age_ms = 300\n\
             [warehouse]\nurl = \"sqlite://{d}/w.db\"\n[merge]\ninterval_ms = 100\n\
             [metrics]\nlisten = \"127.0.0.1:{port}\"\n\
             [[tables]]\nsource = \"{WITH_HEARTBEATS}\"\nkind = \"dimension\"\nkey = [\"id\"]\n\
             [[tables]]\nsource = \"{WITHOUT}\"\nname = \"shop_accounts\"\nkind = \"dimension\"\nkey = [\"id\"]\n",
            d = dir.display(),
        ),
    )
    .unwrap();
    path
}

/// A heartbeat as Debezium's JsonConverter writes it.
fn heartbeat(ts_ms: i64) -> Record {
    let value = serde_json::json!({
        "schema": {"type": "struct", "fields": [{"type": "int64", "optional": false, "field": "ts_ms"}],
                   "optional": false, "name": "io.debezium.connector.common.Heartbeat", "version": 1},
        "payload": {"ts_ms": ts_ms}
    });
    Record {
        topic: HEARTBEATS.into(),
        partition: 0,
        key: Some(br#"{"serverName":"bank"}"#.to_vec()),
        value: Some(value.to_string().into_bytes()),
        timestamp_ms: ts_ms,
        // Only tests that count changes read `kind`; a heartbeat is none.
        kind: RecordKind::Tombstone,
    }
}

/// `tidemark_freshness_seconds` per table.
async fn freshness(port: u16) -> BTreeMap<String, f64> {
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return BTreeMap::new();
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await;
    let mut body = String::new();
    let _ = s.read_to_string(&mut body).await;
    body.lines()
        .filter_map(|l| l.strip_prefix("tidemark_freshness_seconds{table=\""))
        .filter_map(|l| l.split_once("\"} "))
        .filter_map(|(t, v)| Some((t.to_owned(), v.trim().parse().ok()?)))
        .collect()
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.unwrap().as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_a_quiet_merged_table_fresh() {
    let kafka = Kafka::start(&[(WITH_HEARTBEATS, 2), (WITHOUT, 2), (HEARTBEATS, 1)]);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = config(dir.path(), &kafka.bootstrap(), port);
    let run = Tidemark::start(&cfg, &["--log-level", "warn", "run"]);
    // Changes from 2023: both tables are years behind once they are merged.
    let mut records = generate(WITH_HEARTBEATS, 2, 300, true, 3);
    records.extend(generate(WITHOUT, 2, 300, true, 4));
    records.retain(|r| !matches!(r.kind, RecordKind::Poison));
    kafka.produce(&records).await;

    // Then the sources go quiet; only `bank`'s connector sends heartbeats.
    let started = Instant::now();
    let mut seen = BTreeMap::new();
    while started.elapsed() < Duration::from_secs(60) {
        kafka.produce(&[heartbeat(now_ms())]).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        seen = freshness(port).await;
        if seen.get("accounts").is_some_and(|f| *f < 10.0)
            && started.elapsed() > Duration::from_secs(8)
        {
            break;
        }
    }
    run.terminate();
    let fresh = seen.get("accounts").copied();
    assert!(
        fresh.is_some_and(|f| f < 10.0),
        "a quiet table with heartbeats is {fresh:?} s behind: {seen:?}; bronze holds {:?}",
        std::fs::read_dir(dir.path().join("bronze/_log"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
    );
    let stale = seen.get("shop_accounts").copied();
    assert!(
        stale.is_some_and(|f| f > 86_400.0),
        "without heartbeats the table ages with its newest change (2023): {seen:?}"
    );
}
