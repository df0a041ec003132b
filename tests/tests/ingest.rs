//! `tidemark ingest` end to end: librdkafka's MockCluster → ingest → bronze on local files, read
//! back by the exactly-once proof and by DuckDB.

use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use tidemark_core::config::Config;
use tidemark_e2e::kafka::Kafka;
use tidemark_e2e::proof::{caught_up, produced, prove};
use tidemark_e2e::stream::generate;

fn config(bootstrap: &str, bronze: &std::path::Path, topics: &[&str]) -> Config {
    let toml = format!(
        "[kafka]\nbootstrap_servers = \"{bootstrap}\"\ngroup_id = \"g-{}\"\ntopics = {:?}\n[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n[bronze]\nurl = \"file://{}\"\nmax_records = 2000\nmax_age_ms = 300\n",
        uuid::Uuid::new_v4().simple(),
        topics,
        bronze.display()
    );
    Config::from_toml_and_env(&toml, Vec::new()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_produced_offset_lands_exactly_once_and_duckdb_reads_it() {
    let customers = "bank.public.customers";
    let accounts = "bank.public.accounts";
    let kafka = Kafka::start(&[(customers, 4), (accounts, 4)]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&kafka.bootstrap(), dir.path(), &[customers, accounts]);
    // With-schema events are ~3.5 KB: 4k over 4 partitions stays under MockCluster's 5 MB.
    let mut records = generate(customers, 4, 4_000, true, 1);
    records.extend(generate(accounts, 4, 6_000, false, 2));
    let deliveries = kafka.produce(&records).await;
    let produced = produced(&deliveries, &records);

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let cfg2 = cfg.clone();
    let ingest = tokio::spawn(async move {
        tidemark_bronze::service::run(&cfg2, async {
            stop_rx.await.ok();
        })
        .await
    });
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let started = Instant::now();
    while !caught_up(store.as_ref(), &Path::default(), &produced).await {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "ingest did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop_tx.send(()).unwrap();
    let stats = ingest.await.unwrap().unwrap();
    let proof = prove(store.as_ref(), &Path::default(), &produced).await;
    assert_eq!(
        proof.rows + proof.dead_letters + proof.tombstones,
        records.len() as u64
    );
    assert!(proof.dead_letters > 0 && proof.tombstones > 0);
    assert_eq!(stats.dead_letters, proof.dead_letters);

    // A reader that is not ours: DuckDB over the hive-partitioned files.
    let have = std::process::Command::new("python3")
        .args(["-c", "import duckdb"])
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        assert!(
            std::env::var_os("TIDEMARK_REQUIRE_PY_READERS").is_none(),
            "duckdb required"
        );
        return;
    }
    let expected_c = records
        .iter()
        .filter(|r| {
            r.topic == customers
                && matches!(
                    r.kind,
                    tidemark_e2e::stream::Kind2::Change(tidemark_core::event::Op::Create)
                )
        })
        .count();
    let script = format!(
        r#"
import duckdb, sys
root = sys.argv[1]
con = duckdb.connect()
n = con.execute(f"select count(*) from read_parquet('{{root}}/{customers}/*/*.parquet', hive_partitioning=true) where op = 'c'").fetchone()[0]
assert n == {expected_c}, n
bal, dt = con.execute(f"select after.balance, dt from read_parquet('{{root}}/{customers}/*/*.parquet', hive_partitioning=true) where op = 'c' and after.id = 7 order by _kafka_offset limit 1").fetchone()
assert str(bal) == '70.07', bal
assert str(dt) == '2023-11-15', dt
j = con.execute(f"select json_extract(after, '$.name') from read_parquet('{{root}}/{accounts}/*/*.parquet') where op = 'c' limit 1").fetchone()[0]
assert j.startswith('"name-'), j
print('ok', n)
"#
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script, dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
