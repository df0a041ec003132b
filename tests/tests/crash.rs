//! Crash safety of `tidemark ingest` as a real process: SIGKILL at random moments while events
//! are produced, and partitions moving between two ingesters of one group. Afterwards every
//! produced offset is in exactly one committed file (or a dead letter, or a counted tombstone),
//! with no gaps and no duplicates.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use tidemark_e2e::kafka::{Kafka, produce};
use tidemark_e2e::proof::{Produced, caught_up, produced, prove};
use tidemark_e2e::seeded::{Rng, seed};
use tidemark_e2e::stream::{Record, generate};

const TOPIC: &str = "bank.public.customers";
// Schemaless events (~0.8 KB): 12k over 4 partitions stays under MockCluster's 5 MB per
// partition even when the ingesters lag (it drops older data beyond that).

/// The `tidemark` binary next to this test binary (built by `cargo nextest run --workspace`).
fn tidemark_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("tidemark");
    assert!(
        bin.exists(),
        "{} not built: run the workspace tests (cargo nextest run --workspace)",
        bin.display()
    );
    bin
}

/// Small files: many commits, so kills land while committing.
const SMALL_FILES: &str = "max_records = 300\nmax_age_ms = 150\n";

fn write_config(dir: &std::path::Path, bootstrap: &str, group: &str) -> PathBuf {
    write_config_with(dir, bootstrap, group, SMALL_FILES)
}

fn write_config_with(
    dir: &std::path::Path,
    bootstrap: &str,
    group: &str,
    bronze_settings: &str,
) -> PathBuf {
    let bronze = dir.join("bronze");
    let path = dir.join("tidemark.toml");
    std::fs::write(
        &path,
        format!(
            "[kafka]\nbootstrap_servers = \"{bootstrap}\"\ngroup_id = \"{group}\"\ntopics = [\"{TOPIC}\"]\n[kafka.properties]\n\"session.timeout.ms\" = \"3000\"\n\"heartbeat.interval.ms\" = \"500\"\n[bronze]\nurl = \"file://{}\"\n{bronze_settings}[metrics]\nlisten = \"127.0.0.1:0\"\n",
            bronze.display()
        ),
    )
    .unwrap();
    path
}

fn spawn(config: &std::path::Path) -> Child {
    Command::new(tidemark_bin())
        // Tests run in parallel: an ephemeral metrics port each.
        .env("TIDEMARK__METRICS__LISTEN", "127.0.0.1:0")
        .args([
            "--config",
            config.to_str().unwrap(),
            "--log-level",
            &std::env::var("TIDEMARK_CRASH_LOG").unwrap_or_else(|_| "warn".into()),
            "ingest",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn kill(child: &mut Child, signal: &str) {
    Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
}

fn count_files(dir: &std::path::Path) -> usize {
    match std::fs::read_dir(dir) {
        Err(_) => 0,
        Ok(entries) => entries
            .flatten()
            .map(|e| {
                if e.path().is_dir() {
                    count_files(&e.path())
                } else {
                    1
                }
            })
            .sum(),
    }
}

/// Produces `records` in `rounds` slices; after each slice `disturb` kills/restarts ingesters
/// (blocking), so every ingester generation finds new data while it is being killed.
async fn produce_while(
    kafka: &Kafka,
    records: &[Record],
    rounds: usize,
    mut disturb: impl FnMut(usize),
) -> Produced {
    let per = records.len().div_ceil(rounds);
    let mut deliveries: BTreeMap<(String, i32), Vec<(i64, usize)>> = BTreeMap::new();
    for (round, chunk) in records.chunks(per).enumerate() {
        for (k, v) in produce(&kafka.producer, chunk).await {
            deliveries
                .entry(k)
                .or_default()
                .extend(v.into_iter().map(|(o, i)| (o, i + round * per)));
        }
        disturb(round);
    }
    produced(&deliveries, records)
}

/// Kills the child when a test fails midway, so no ingester outlives its test.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_caught_up(store: &dyn ObjectStore, produced: &Produced, limit: Duration) {
    let started = Instant::now();
    while !caught_up(store, &Path::default(), produced).await {
        assert!(
            started.elapsed() < limit,
            "ingest did not catch up within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_and_duplicates_nothing() {
    let mut rng = Rng(seed("crash test"));
    let kafka = Kafka::start(&[(TOPIC, 4)]);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &kafka.bootstrap(),
        &format!("crash-{}", rng.next_u64()),
    );
    let records = generate(TOPIC, 4, 12_000, false, rng.next_u64());
    let mut child = Guard(spawn(&config));
    let (mut kills, mut kills_while_committing, mut commits_seen) = (0, 0, 0);
    let log = dir.path().join("bronze/_log");
    let produced = produce_while(&kafka, &records, 12, |_| {
        // A member joins ~5 s after start (session timeout of the killed one + join): kill
        // before, during and after it consumes the new slice.
        std::thread::sleep(rng.millis(5_000, 9_000));
        kill(&mut child.0, "-KILL");
        child.0.wait().unwrap();
        kills += 1;
        let commits = count_files(&log);
        if commits > commits_seen {
            kills_while_committing += 1;
        }
        commits_seen = commits;
        child = Guard(spawn(&config));
    })
    .await;
    assert!(kills >= 10, "{kills} kills");
    assert!(
        kills_while_committing >= 5,
        "only {kills_while_committing} kills hit an ingester that was committing"
    );
    let (store, proof) = stop_and_prove(child, dir.path(), &produced, records.len()).await;
    eprintln!("{kills} kills: {proof:?}");
    read_through_the_manifest(store.as_ref(), &dir.path().join("bronze")).await;
}

/// Waits until the last ingester has landed everything produced, stops it with SIGTERM (it must
/// exit cleanly) and proves every produced offset landed exactly once.
async fn stop_and_prove(
    mut child: Guard,
    dir: &std::path::Path,
    produced: &Produced,
    records: usize,
) -> (Arc<dyn ObjectStore>, tidemark_e2e::proof::Proof) {
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.join("bronze")).unwrap());
    wait_caught_up(store.as_ref(), produced, Duration::from_secs(120)).await;
    // The last generation may have just started; give it time to install its signal handlers.
    tokio::time::sleep(Duration::from_millis(500)).await;
    kill(&mut child.0, "-TERM");
    let status = child.0.wait().unwrap();
    assert!(status.success(), "graceful stop after SIGTERM: {status}");
    let proof = prove(store.as_ref(), &Path::default(), produced).await;
    assert_eq!(
        proof.rows + proof.dead_letters + proof.tombstones,
        records as u64
    );
    (store, proof)
}

/// The documented reader path (DuckDB over the files the manifest names) holds every landed
/// offset exactly once, where a glob over the table's directory also reads an orphan (a file
/// no commit record names, as a crash between a data file and its commit record leaves).
async fn read_through_the_manifest(store: &dyn ObjectStore, bronze: &std::path::Path) {
    let mut rows = 0;
    for p in 0..4 {
        let chain = tidemark_bronze::commit_log::read_chain(store, &Path::default(), TOPIC, p)
            .await
            .unwrap();
        rows += chain
            .records
            .iter()
            .flat_map(|r| &r.files)
            .filter(|f| f.table == TOPIC)
            .map(|f| f.rows)
            .sum::<u64>();
    }
    let committed = tidemark_bronze::manifest::read(store, &Path::default(), TOPIC)
        .await
        .unwrap()
        .expect("ingest leaves a manifest when it stops");
    let file = &committed.entries[0].path;
    let orphan = bronze.join(file.replace(".parquet", "+orphan.parquet"));
    std::fs::copy(bronze.join(file), orphan).unwrap();
    let script = format!(
        r#"
import duckdb, sys
root = sys.argv[1]
con = duckdb.connect()
con.execute(f"SET VARIABLE files = (SELECT list('{{root}}/' || path) FROM read_parquet('{{root}}/_manifest/{TOPIC}.parquet'))")
n, d = con.execute("select count(*), count(distinct (_kafka_partition, _kafka_offset)) from read_parquet(getvariable('files'), hive_partitioning = true)").fetchone()
assert (n, d) == ({rows}, {rows}), (n, d)
g = con.execute(f"select count(*) from read_parquet('{{root}}/{TOPIC}/*/*.parquet')").fetchone()[0]
assert g > {rows}, g
print('manifest', n, 'glob', g)
"#
    );
    tidemark_e2e::readers::duckdb_script(&script, bronze);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_moving_between_two_ingesters_land_exactly_once() {
    let mut rng = Rng(seed("crash test"));
    let kafka = Kafka::start(&[(TOPIC, 4)]);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &kafka.bootstrap(),
        &format!("pair-{}", rng.next_u64()),
    );
    let records = generate(TOPIC, 4, 12_000, false, rng.next_u64());
    let mut steady = Guard(spawn(&config));
    let mut mover = Guard(spawn(&config));
    let produced = produce_while(&kafka, &records, 10, |round| {
        std::thread::sleep(rng.millis(2_000, 5_000));
        // Alternate a clean stop and a kill of the second member, then bring it back.
        kill(&mut mover.0, if round % 2 == 0 { "-TERM" } else { "-KILL" });
        mover.0.wait().unwrap();
        std::thread::sleep(rng.millis(100, 1_500));
        mover = Guard(spawn(&config));
    })
    .await;
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path().join("bronze")).unwrap());
    wait_caught_up(store.as_ref(), &produced, Duration::from_secs(120)).await;
    // The mover may have just started; give it time to install its signal handlers.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for c in [&mut steady, &mut mover] {
        kill(&mut c.0, "-TERM");
        assert!(c.0.wait().unwrap().success());
    }
    let proof = prove(store.as_ref(), &Path::default(), &produced).await;
    assert_eq!(
        proof.rows + proof.dead_letters + proof.tombstones,
        records.len() as u64
    );
    eprintln!("{proof:?}");
}

/// Large files streamed as segments fill (a segment past its share of a 128 MiB budget writes
/// its change events into a multipart upload), ingest SIGKILLed at random moments: an upload
/// cut short is never a file of bronze, and every offset lands exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_streaming_large_files_loses_and_duplicates_nothing() {
    let mut rng = Rng(seed("streaming crash test"));
    let kafka = Kafka::start(&[(TOPIC, 2)]);
    let dir = tempfile::tempdir().unwrap();
    // Segments get 32 MiB: one streams past 2 MiB and rolls at 4,400 records.
    let config = write_config_with(
        dir.path(),
        &kafka.bootstrap(),
        &format!("crash-{}", rng.next_u64()),
        "max_records = 4400\nmax_bytes = 268435456\nmax_age_ms = 60000\nmemory_budget_bytes = 134217728\n",
    );
    let records = generate(TOPIC, 2, 9_000, false, rng.next_u64());
    let mut child = Guard(spawn(&config));
    let mut kills = 0;
    let produced = produce_while(&kafka, &records, 10, |_| {
        std::thread::sleep(rng.millis(4_000, 8_000));
        kill(&mut child.0, "-KILL");
        child.0.wait().unwrap();
        kills += 1;
        child = Guard(spawn(&config));
    })
    .await;
    assert!(kills >= 10, "{kills} kills");
    let (store, proof) = stop_and_prove(child, dir.path(), &produced, records.len()).await;
    let mut streamed = 0;
    for p in 0..2 {
        let chain =
            tidemark_bronze::commit_log::read_chain(store.as_ref(), &Path::default(), TOPIC, p)
                .await
                .unwrap();
        streamed += chain
            .records
            .iter()
            .flat_map(|r| &r.files)
            .filter(|f| f.path.contains("-streamed+"))
            .count();
    }
    // A local store stages an upload in `<file>#<n>` until it completes: one left is an upload
    // a kill cut short.
    let cut_short = count_matching(&dir.path().join("bronze"), ".parquet#");
    eprintln!(
        "{kills} kills, {streamed} streamed files committed, {cut_short} uploads cut short: {proof:?}"
    );
    assert!(streamed >= 1, "files were streamed: {proof:?}");
    read_through_the_manifest(store.as_ref(), &dir.path().join("bronze")).await;
}

fn count_matching(dir: &std::path::Path, needle: &str) -> usize {
    match std::fs::read_dir(dir) {
        Err(_) => 0,
        Ok(entries) => entries
            .flatten()
            .map(|e| {
                if e.path().is_dir() {
                    count_matching(&e.path(), needle)
                } else {
                    usize::from(e.file_name().to_string_lossy().contains(needle))
                }
            })
            .sum(),
    }
}
