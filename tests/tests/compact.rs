//! Crash safety of compaction: `tidemark compact` and `tidemark gc` as real processes on a real
//! S3 server (moto_server: multipart uploads, conditional creates), SIGKILLed at random moments.
//! After every kill, bronze read through the commit log holds every landed offset exactly once;
//! at the end, the compacted files are large, the replaced ones gone, and DuckDB reading the
//! files the manifest names finds every offset exactly once.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use object_store::path::Path;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::json;
use tidemark_bronze::commit_log;
use tidemark_core::config::Config;
use tidemark_e2e::bronze_fixture::{BronzeFixture, change};
use tidemark_e2e::moto::Moto;
use tidemark_e2e::seeded::{Rng, seed};
use tidemark_e2e::warehouse::{Which, fresh, versions};

const TOPIC: &str = "bank.public.customers";
const PARTITIONS: i32 = 2;
const COMMITS: i64 = 300;
const PER_COMMIT: i64 = 20;

fn tidemark_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("tidemark");
    assert!(bin.exists(), "{} not built", bin.display());
    bin
}

fn tidemark(config: &std::path::Path, args: &[&str]) -> Command {
    let mut c = Command::new(tidemark_bin());
    c.args(["--config", config.to_str().unwrap(), "--log-level", "warn"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    c
}

/// Kills the child when the test fails midway.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A create of row `id`, in commit `c`.
fn created(id: i64, c: i64, after: serde_json::Value) -> tidemark_e2e::bronze_fixture::Record {
    change(
        "c",
        &json!(id),
        None,
        Some(after),
        1000 + c as u64,
        1_700_000_000_000,
    )
}

/// Lands `COMMITS` commits of `PER_COMMIT` changes per partition: many small files.
async fn land(store: Arc<dyn ObjectStore>, root: Path) {
    let mut fixture = BronzeFixture::with_store(store, root);
    for p in 0..PARTITIONS {
        for c in 0..COMMITS {
            let records: Vec<_> = (0..PER_COMMIT)
                .map(|i| {
                    let id = c * PER_COMMIT + i;
                    created(id, c, json!({"id": id, "name": format!("customer {id}")}))
                })
                .collect();
            fixture.land(TOPIC, p, &records).await;
        }
    }
}

/// What the chain of each partition holds, checked: gap-free from 0, and every offset in
/// exactly one file. Returns (records, files) per partition.
async fn exactly_once(store: &dyn ObjectStore, root: &Path) -> BTreeMap<i32, (usize, usize)> {
    exactly_once_in(store, root, (TOPIC, PARTITIONS), COMMITS * PER_COMMIT).await
}

async fn exactly_once_in(
    store: &dyn ObjectStore,
    root: &Path,
    (topic, partitions): (&str, i32),
    offsets_each: i64,
) -> BTreeMap<i32, (usize, usize)> {
    let mut out = BTreeMap::new();
    for p in 0..partitions {
        let chain = commit_log::read_chain(store, root, topic, p).await.unwrap();
        assert!(chain.is_gap_free(), "partition {p}: {:?}", chain.breaks);
        assert_eq!(chain.first_offset(), Some(0));
        assert_eq!(chain.next_offset(), Some(offsets_each));
        let files: Vec<_> = chain.records.iter().flat_map(|r| &r.files).collect();
        let mut offsets: Vec<i64> = futures::stream::iter(files.iter().map(|f| f.path.clone()))
            .map(|path| async move {
                let bytes = store
                    .get(&tidemark_bronze::layout::stored_path(&path))
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap();
                let mut offsets = Vec::new();
                for b in ParquetRecordBatchReaderBuilder::try_new(bytes)
                    .unwrap()
                    .build()
                    .unwrap()
                {
                    let b = b.unwrap();
                    let col = b.column_by_name("_kafka_offset").unwrap();
                    offsets.extend(col.as_primitive::<Int64Type>().values().iter().copied());
                }
                offsets
            })
            .buffered(16)
            .concat()
            .await;
        offsets.sort_unstable();
        assert_eq!(
            offsets,
            (0..offsets_each).collect::<Vec<_>>(),
            "partition {p}: every offset exactly once"
        );
        out.insert(p, (chain.records.len(), files.len()));
    }
    out
}

/// moto_server with a `tidemark.toml` pointing at it; `None` (skipped) without moto_server
/// unless CI requires it.
fn s3_bronze(dir: &std::path::Path) -> Option<(Moto, PathBuf, Arc<dyn ObjectStore>, Path)> {
    let Some(server) = Moto::start() else {
        assert!(
            std::env::var_os("TIDEMARK_REQUIRE_S3").is_none(),
            "moto_server required"
        );
        eprintln!("skipped: moto_server not installed (pip install 'moto[server]')");
        return None;
    };
    let toml = format!(
        "[kafka]\nbootstrap_servers = \"127.0.0.1:9\"\ntopics = [\"{TOPIC}\"]\n{}",
        server.bronze_toml("bronze")
    );
    let config = dir.join("tidemark.toml");
    std::fs::write(&config, &toml).unwrap();
    let cfg = Config::from_toml_and_env(&toml, Vec::new()).unwrap();
    let (store, root) = tidemark_bronze::store::open(&cfg.bronze).unwrap();
    Some((server, config, store, root))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_compaction_and_gc_never_loses_or_doubles_an_offset() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_server, config, store, root)) = s3_bronze(dir.path()) else {
        return;
    };
    land(store.clone(), root.clone()).await;
    let landed = exactly_once(store.as_ref(), &root).await;

    // Small targets: many runs, so kills land between and inside them.
    let compact = ["compact", "--older-than-secs", "0", "--target-mb", "0.15"];
    let gc = ["gc", "--older-than-secs", "0"];
    let mut rng = Rng(seed("compaction crash test"));
    let (mut kills, mut kills_while_working) = (0, 0);
    for round in 0..16 {
        let args: &[&str] = if round % 4 == 3 { &gc } else { &compact };
        let mut child = Guard(tidemark(&config, args).spawn().unwrap());
        std::thread::sleep(Duration::from_millis(200 + rng.next_u64() % 1200));
        if child.0.try_wait().unwrap().is_none() {
            kills_while_working += 1;
        }
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        kills += 1;
        exactly_once(store.as_ref(), &root).await;
    }
    eprintln!("{kills} kills, {kills_while_working} of a process still working");
    assert!(
        kills_while_working >= 10,
        "only {kills_while_working} kills hit a process at work"
    );

    // Then to the end, undisturbed.
    for args in [&compact[..], &gc[..], &["manifest"][..]] {
        let status = tidemark(&config, args).status().unwrap();
        assert!(status.success(), "tidemark {args:?}: {status}");
    }
    let compacted = exactly_once(store.as_ref(), &root).await;
    for p in 0..PARTITIONS {
        let (before, after) = (landed[&p], compacted[&p]);
        assert!(
            after.1 * 5 < before.1,
            "partition {p}: {before:?} → {after:?} (records, files)"
        );
        let chain = commit_log::read_chain(store.as_ref(), &root, TOPIC, p)
            .await
            .unwrap();
        assert!(
            chain.superseded.is_empty(),
            "gc removed the replaced records"
        );
    }
    // Nothing but committed files and their records is left.
    let listed: Vec<_> = store.list(Some(&root)).try_collect().await.unwrap();
    let parquet = listed
        .iter()
        .filter(|m| {
            m.location.as_ref().ends_with(".parquet") && !m.location.as_ref().contains("_manifest")
        })
        .count();
    assert_eq!(parquet, compacted.values().map(|c| c.1).sum::<usize>());
    let rows = PARTITIONS as i64 * COMMITS * PER_COMMIT;
    read_through_the_manifest(store.as_ref(), &root, listed, rows).await;
}

/// DuckDB over the files the manifest names (bronze copied from the S3 server to a directory:
/// DuckDB's S3 support is an extension this machine cannot download).
async fn read_through_the_manifest(
    store: &dyn ObjectStore,
    root: &Path,
    listed: Vec<object_store::ObjectMeta>,
    rows: i64,
) {
    let local = tempfile::tempdir().unwrap();
    for m in listed {
        let rel = m.location.prefix_match(root).unwrap();
        let rel: Vec<String> = rel.map(|p| p.as_ref().to_owned()).collect();
        let path = rel
            .iter()
            .fold(local.path().to_path_buf(), |d, p| d.join(p));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let bytes = store.get(&m.location).await.unwrap().bytes().await.unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    let script = format!(
        r#"
import duckdb, sys
root = sys.argv[1]
con = duckdb.connect()
con.execute(f"SET VARIABLE files = (SELECT list('{{root}}/' || path) FROM read_parquet('{{root}}/_manifest/{TOPIC}.parquet'))")
n, d = con.execute("select count(*), count(distinct (_kafka_partition, _kafka_offset)) from read_parquet(getvariable('files'), hive_partitioning = true)").fetchone()
assert (n, d) == ({rows}, {rows}), (n, d)
print('manifest', n)
"#
    );
    tidemark_e2e::readers::duckdb_script(&script, local.path());
}

/// `commits` commits of an update to each of 5 customers (tier `t<commit>`), from `from`.
fn updates(from: i64, commits: i64) -> Vec<Vec<tidemark_e2e::bronze_fixture::Record>> {
    (from..from + commits)
        .map(|c| {
            (1..=5)
                .map(|id| {
                    let row = json!({"id": id, "tier": format!("t{c}")});
                    let op = if c == 0 { "c" } else { "u" };
                    change(
                        op,
                        &json!(id),
                        None,
                        Some(row),
                        1000 + c as u64,
                        1_700_000_000_000 + c * 1000,
                    )
                })
                .collect()
        })
        .collect()
}

/// The merger's ledger position lies inside a compacted range whose replaced records `gc` has
/// already removed: it reads the compacted file from that offset, and silver and gold end as
/// they do from the bronze that was never compacted.
async fn a_merger_goes_on_through_a_compacted_and_collected_chain(which: Which) {
    let config = Config::from_toml_and_env(
        "[[tables]]\nsource = \"bank.public.customers\"\nkind = \"dimension\"\nkey = [\"id\"]\n",
        std::iter::empty(),
    )
    .unwrap();
    let (Some((compacted_pool, _)), Some((plain_pool, _))) =
        (fresh(which).await, fresh(which).await)
    else {
        return;
    };
    let mut compacted = BronzeFixture::new();
    let mut plain = BronzeFixture::new();
    for batch in updates(0, 3) {
        compacted.land(TOPIC, 0, &batch).await;
        plain.land(TOPIC, 0, &batch).await;
    }
    let mut m = compacted.merger(&compacted_pool, &config).await;
    m.catch_up().await.unwrap();
    for batch in updates(3, 5) {
        compacted.land(TOPIC, 0, &batch).await;
        plain.land(TOPIC, 0, &batch).await;
    }
    let opts = tidemark_bronze::compact::Options {
        min_age: Duration::ZERO,
        ..Default::default()
    };
    let (store, root) = (compacted.store.as_ref(), &compacted.root);
    let done = tidemark_bronze::compact::compact(store, root, &opts)
        .await
        .unwrap();
    assert_eq!(done[0].records, 7, "every record but the newest");
    tidemark_bronze::admin::gc(store, root, Duration::ZERO, false)
        .await
        .unwrap();
    let chain = commit_log::read_chain(store, root, TOPIC, 0).await.unwrap();
    assert_eq!(chain.records.len(), 2);
    assert!(chain.superseded.is_empty());

    // The ledger stands at offset 15, inside the compacted range 0..=34.
    m.catch_up().await.unwrap();
    let mut p = plain.merger(&plain_pool, &config).await;
    p.catch_up().await.unwrap();
    for id in 1..=5 {
        let got = versions(&compacted_pool, "customers", id, "tier").await;
        assert_eq!(got.len(), 8, "{got:?}");
        assert_eq!(got, versions(&plain_pool, "customers", id, "tier").await);
    }
}
#[tokio::test]
async fn merger_through_compaction_sqlite() {
    a_merger_goes_on_through_a_compacted_and_collected_chain(Which::Sqlite).await;
}

#[tokio::test]
async fn merger_through_compaction_postgres() {
    a_merger_goes_on_through_a_compacted_and_collected_chain(Which::Postgres).await;
}

/// A compacted file of several multipart parts (5 MiB each), its upload SIGKILLed midway again
/// and again: readers never see a partial file (an unfinished upload is no object), every
/// offset stays in exactly one committed file, and the last attempt completes the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_upload_of_a_large_compacted_file_leaves_no_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let Some((server, config, store, root)) = s3_bronze(dir.path()) else {
        return;
    };
    // ~1 KB of incompressible text per row: 20 commits of 1,000 rows make ~20 MB of Parquet.
    let (commits, rows) = (20i64, 1_000i64);
    let mut rng = Rng(seed("compaction crash test"));
    let mut fixture = BronzeFixture::with_store(store.clone(), root.clone());
    for c in 0..commits {
        let records: Vec<_> = (0..rows)
            .map(|i| {
                let id = c * rows + i;
                let noise: String = (0..64)
                    .map(|_| format!("{:016x}", rng.next_u64()))
                    .collect();
                created(id, c, json!({"id": id, "noise": noise}))
            })
            .collect();
        fixture.land(TOPIC, 0, &records).await;
    }
    let landed = exactly_once_in(store.as_ref(), &root, (TOPIC, 1), commits * rows).await;
    let compact = [
        "compact",
        "--older-than-secs",
        "0",
        "--target-mb",
        "64",
        "--part-mb",
        "5",
    ];
    let (mut kills, mut finished) = (0, false);
    while !finished {
        let mut child = Guard(tidemark(&config, &compact).spawn().unwrap());
        // Each attempt starts the upload again; later attempts get longer, until one ends.
        std::thread::sleep(Duration::from_millis(30 + 40 * kills + rng.next_u64() % 40));
        match child.0.try_wait().unwrap() {
            Some(status) => {
                assert!(status.success(), "{status}");
                finished = true;
            }
            None => {
                child.0.kill().unwrap();
                child.0.wait().unwrap();
                kills += 1;
            }
        }
        exactly_once_in(store.as_ref(), &root, (TOPIC, 1), commits * rows).await;
        assert!(kills < 40, "compaction never finished between kills");
    }
    // Kills that hit an upload leave it unfinished on the server (an S3 lifecycle rule aborts
    // such uploads): never an object a reader could list.
    let uploads = Command::new("curl")
        .args([
            "-sf",
            &format!("http://127.0.0.1:{}/lake?uploads", server.port),
        ])
        .output()
        .unwrap();
    let unfinished = String::from_utf8_lossy(&uploads.stdout)
        .matches("<Upload>")
        .count();
    eprintln!(
        "{kills} kills mid-compaction before one finished; {unfinished} uploads left unfinished"
    );
    assert!(unfinished >= 1, "no kill hit an upload");
    assert!(kills >= 5, "only {kills} kills hit the compaction");
    let chain = commit_log::read_chain(store.as_ref(), &root, TOPIC, 0)
        .await
        .unwrap();
    let big = &chain.records[0].files[0];
    assert!(
        big.bytes > 5 << 20,
        "one file of several parts: {} bytes",
        big.bytes
    );
    assert_eq!(chain.records.len(), 2, "{:?} before", landed);
    let status = tidemark(&config, &["manifest"]).status().unwrap();
    assert!(status.success(), "tidemark manifest: {status}");
    let listed: Vec<_> = store.list(Some(&root)).try_collect().await.unwrap();
    read_through_the_manifest(store.as_ref(), &root, listed, commits * rows).await;
}
