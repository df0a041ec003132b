//! `tidemark run`: ingest and merge in one process, from librdkafka's MockCluster to bronze on
//! local files to a SQLite warehouse; SIGTERM flushes, merges what was flushed and exits 0.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tidemark_e2e::kafka::Kafka;
use tidemark_e2e::merge_scenario::tidemark_bin;
use tidemark_e2e::run_setup::run_config;
use tidemark_e2e::stream::{RecordKind, generate};
use tidemark_e2e::warehouse::rows;
use tidemark_warehouse::sql::conn::Pool;

const TOPIC: &str = "bank.public.accounts";

#[tokio::test(flavor = "multi_thread")]
async fn run_ingests_and_merges_until_sigterm() {
    let kafka = Kafka::start(&[(TOPIC, 2)]);
    let records = generate(TOPIC, 2, 2000, true, 5);
    let delivered = kafka.produce(&records).await;
    let ends: Vec<(i32, i64)> = delivered
        .iter()
        .map(|((_, p), v)| (*p, v.iter().map(|(o, _)| *o).max().unwrap() + 1))
        .collect();
    let ids: BTreeSet<i64> = records
        .iter()
        .filter(|r| matches!(r.kind, RecordKind::Change(_)))
        .filter_map(|r| {
            let k: serde_json::Value = serde_json::from_slice(r.key.as_ref()?).ok()?;
            k["payload"]["id"].as_i64()
        })
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let config = run_config(dir.path(), &kafka.bootstrap(), TOPIC, "run", None);
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

    // Wait until the ledger reaches the end of both partitions.
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "run did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        if !db.exists() {
            continue;
        }
        let Ok(pool) = Pool::connect(&format!("sqlite://{}", db.display()), None).await else {
            continue;
        };
        let mut tx = pool.begin().await.unwrap();
        let got = tx
            .fetch("SELECT CAST(part AS TEXT), CAST(next_offset AS TEXT) FROM tidemark__ledger ORDER BY part", &[])
            .await
            .unwrap_or_default();
        tx.rollback().await.unwrap();
        pool.close().await;
        let got: Vec<(i32, i64)> = got
            .iter()
            .filter_map(|r| {
                Some((
                    r[0].as_deref()?.parse().ok()?,
                    r[1].as_deref()?.parse().ok()?,
                ))
            })
            .collect();
        if got == ends {
            break;
        }
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");

    let pool = Pool::connect(&format!("sqlite://{}", db.display()), None)
        .await
        .unwrap();
    let silver = rows(
        &pool,
        "SELECT CAST(id AS TEXT) FROM silver__accounts ORDER BY id",
    )
    .await;
    let silver: BTreeSet<i64> = silver
        .iter()
        .filter_map(|r| r[0].as_deref()?.parse().ok())
        .collect();
    assert_eq!(silver, ids, "every key changed in Kafka has its silver row");
    let versions = rows(
        &pool,
        "SELECT CAST(count(*) AS TEXT) FROM gold__dim_accounts",
    )
    .await;
    let versions: usize = versions[0][0].as_deref().unwrap().parse().unwrap();
    assert!(
        versions >= ids.len(),
        "{versions} versions for {} keys",
        ids.len()
    );
}
