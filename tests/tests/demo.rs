//! `tidemark demo`: a short run's printed summary matches what bronze and the warehouse hold,
//! counted here independently (the Parquet files of every commit record, SQL on the SQLite file).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use arrow_array::{Array, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tidemark_e2e::merge_scenario::{run_demo, tidemark_bin};
use tidemark_e2e::warehouse::rows;
use tidemark_warehouse::sql::conn::Pool;

/// The lines of the summary section that starts with `header`, split on whitespace (the
/// column header line first), up to the next blank line.
fn section(out: &str, header: &str) -> Vec<Vec<String>> {
    let mut lines = out.lines().skip_while(|l| !l.starts_with(header)).skip(1);
    let mut rows = Vec::new();
    for l in lines.by_ref() {
        if l.trim().is_empty() {
            break;
        }
        rows.push(l.split_whitespace().map(str::to_owned).collect());
    }
    assert!(!rows.is_empty(), "no section `{header}` in:\n{out}");
    rows
}

/// (topic, op) → rows, from every file the commit log references; tombstones from the records.
fn bronze_ops(root: &Path) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    let log = root.join("_log");
    for topic in std::fs::read_dir(&log).unwrap() {
        let topic = topic.unwrap().path();
        for part in std::fs::read_dir(&topic).unwrap() {
            for rec in std::fs::read_dir(part.unwrap().path()).unwrap() {
                let rec: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(rec.unwrap().path()).unwrap()).unwrap();
                let t = rec["topic"].as_str().unwrap().to_owned();
                *out.entry((t.clone(), "tombstone".into())).or_default() +=
                    rec["skipped"].as_u64().unwrap();
                for f in rec["files"].as_array().unwrap() {
                    let path = root.join(f["path"].as_str().unwrap());
                    let file = std::fs::File::open(&path).unwrap();
                    for batch in ParquetRecordBatchReaderBuilder::try_new(file)
                        .unwrap()
                        .build()
                        .unwrap()
                    {
                        let batch = batch.unwrap();
                        let ops = batch
                            .column_by_name("op")
                            .unwrap()
                            .as_any()
                            .downcast_ref::<StringArray>()
                            .unwrap()
                            .clone();
                        for i in 0..ops.len() {
                            *out.entry((t.clone(), ops.value(i).to_owned())).or_default() += 1;
                        }
                    }
                }
            }
        }
    }
    out
}

async fn count(pool: &Pool, sql: &str) -> u64 {
    rows(pool, sql).await[0][0]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_summary_matches_bronze_and_the_warehouse() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("demo");
    let out = Command::new(tidemark_bin())
        .args([
            "demo", "--events", "6000", "--rate", "0", "--seed", "9", "--keep",
        ])
        .args(["--metrics-listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Bronze: every op count and tombstone count per table as printed.
    let ops = bronze_ops(&data.join("bronze"));
    let bronze = section(&stdout, "Bronze:");
    assert_eq!(
        bronze[0],
        [
            "table",
            "r",
            "c",
            "u",
            "d",
            "t",
            "tombstone",
            "files",
            "bytes"
        ]
    );
    let mut printed_total = 0;
    for row in &bronze[1..] {
        if row[0] == "dead" {
            assert_eq!(row, &["dead", "letters:", "0"]);
            continue;
        }
        for (i, op) in ["r", "c", "u", "d", "t", "tombstone"].iter().enumerate() {
            let n: u64 = row[1 + i].parse().unwrap();
            let have = ops
                .get(&(row[0].clone(), op.to_string()))
                .copied()
                .unwrap_or(0);
            assert_eq!(n, have, "{} {op}", row[0]);
            printed_total += n;
        }
    }
    assert_eq!(printed_total, ops.values().sum::<u64>());
    // …and that is everything produced.
    let produced: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Kafka: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(produced >= 6000);
    assert_eq!(printed_total, produced);
    for (table, op) in [
        ("customers", "d"),
        ("accounts", "u"),
        ("customers", "tombstone"),
    ] {
        assert!(
            ops[&(format!("bank.public.{table}"), op.to_owned())] > 0,
            "{table} {op}"
        );
    }

    // Warehouse: rows per layer and table.
    let pool = Pool::connect(&format!("sqlite://{}/warehouse.db", data.display()), None)
        .await
        .unwrap();
    let layers = section(&stdout, "Warehouse:");
    assert_eq!(layers.len(), 1 + 6, "3 silver, 2 dimensions, 1 fact");
    for row in &layers[1..] {
        let table = format!("\"{}__{}\"", row[0], row[1]);
        let n = count(
            &pool,
            &format!("SELECT CAST(count(*) AS TEXT) FROM {table}"),
        )
        .await;
        assert_eq!(row[2].parse::<u64>().unwrap(), n, "{table}");
        assert!(n > 0, "{table} is empty");
    }
    // Silver holds one row per key ever seen; facts one row per transaction created.
    let silver_tx = count(
        &pool,
        "SELECT CAST(count(*) AS TEXT) FROM \"silver__transactions\"",
    )
    .await;
    assert_eq!(
        silver_tx,
        ops[&("bank.public.transactions".into(), "c".into())]
    );

    // Dimensions: keys and versions; a customer's history has consecutive versions.
    let dims = section(&stdout, "Dimensions");
    for row in &dims[1..] {
        let table = format!("\"gold__{}\"", row[0]);
        let keys = count(
            &pool,
            &format!("SELECT CAST(count(DISTINCT id) AS TEXT) FROM {table}"),
        )
        .await;
        let versions = count(
            &pool,
            &format!("SELECT CAST(count(*) AS TEXT) FROM {table}"),
        )
        .await;
        assert_eq!(row[1].parse::<u64>().unwrap(), keys, "{table} keys");
        assert_eq!(row[2].parse::<u64>().unwrap(), versions, "{table} versions");
        assert!(
            versions > keys,
            "{table}: history has more versions than keys"
        );
    }
    let history = section(&stdout, "A customer's history");
    let shown: Vec<&Vec<String>> = history
        .iter()
        .filter(|r| r[0].parse::<i64>().is_ok() && r.len() > 5)
        .collect();
    assert!(shown.len() >= 2, "{history:?}");
    for (i, r) in shown.iter().enumerate() {
        assert_eq!(r[1], (i + 1).to_string(), "versions in order: {r:?}");
    }
    assert!(stdout.contains("Transactions with the account version valid when they happened"));
    assert!(stdout.contains("The data stays in"));
}

#[test]
fn without_keep_the_data_directory_is_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("gone");
    let out = run_demo(&data, &["--events", "300"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!data.exists());
    // A directory the demo did not make is refused, not wiped.
    std::fs::create_dir_all(tmp.path().join("mine")).unwrap();
    std::fs::write(tmp.path().join("mine/notes.txt"), "keep me").unwrap();
    let out = Command::new(tidemark_bin())
        .args(["demo", "--events", "300", "--data-dir"])
        .arg(tmp.path().join("mine"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("was not made by `tidemark demo`"));
    assert!(tmp.path().join("mine/notes.txt").exists());
}

#[test]
fn a_second_keep_says_it_replaces_the_first_and_a_named_config_is_reported_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("kept");
    let first = run_demo(&data, &["--events", "300", "--keep"]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let err = String::from_utf8_lossy(&first.stderr);
    assert!(
        !err.contains("replacing") && !err.contains("ignores --config"),
        "{err}"
    );
    let second = Command::new(tidemark_bin())
        .args([
            "--config",
            "mine.toml",
            "demo",
            "--events",
            "300",
            "--keep",
            "--rate",
            "0",
        ])
        .args(["--metrics-listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("replacing the previous demo in"), "{err}");
    assert!(
        err.contains("`demo` ignores --config/TIDEMARK_CONFIG (mine.toml)"),
        "{err}"
    );
    assert!(data.join("tidemark.toml").exists());
}
