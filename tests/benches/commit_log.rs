//! Start-up on a long commit log: `TIDEMARK_BENCH_RECORDS` (default 100,000) commit records in
//! one partition on a real S3 server (moto_server), then, timed: finding where the chain ends by
//! listing every record (before the end hint) and from the end hint (ingest's position on
//! assignment), and the merger's check of an idle partition, without and with the hint.
//! `cargo bench -p tidemark-e2e --bench commit_log`.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use object_store::ObjectStore;
use object_store::path::Path;
use tidemark_bronze::commit_log::{self, CommitRecord};
use tidemark_bronze::layout;
use tidemark_bronze::writer::BronzeWriter;
use tidemark_core::config::Config;
use tidemark_e2e::moto::Moto;

const TOPIC: &str = "bank.public.accounts";

fn record(i: i64) -> CommitRecord {
    CommitRecord {
        version: commit_log::FORMAT_VERSION,
        topic: TOPIC.into(),
        partition: 0,
        start: i * 10,
        end: i * 10 + 9,
        records: 10,
        rows: 0,
        skipped: 0,
        dead_letters: 0,
        files: vec![],
        dead_letter_file: None,
        writer: "bench".into(),
        committed_at: "2026-12-07T00:00:00Z".into(),
        compacts: 0,
        compacted_at: None,
    }
}

/// The median time of `runs` runs of `f`.
async fn median<F, Fut, T>(runs: usize, mut f: F) -> (Duration, T)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        last = Some(f().await);
        times.push(t.elapsed());
    }
    times.sort();
    (times[runs / 2], last.expect("runs > 0"))
}

async fn clear_hint(store: &dyn ObjectStore, root: &Path) {
    let _ = store.delete(&layout::last_hint(root, TOPIC, 0)).await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: i64 = std::env::var("TIDEMARK_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let moto = Moto::start().expect("moto_server is needed (pip install 'moto[server]')");
    let toml = format!(
        "[kafka]\nbootstrap_servers = \"127.0.0.1:9\"\ntopics = [\"{TOPIC}\"]\n{}",
        moto.bronze_toml("bronze")
    );
    let cfg = Config::from_toml_and_env(&toml, Vec::new()).expect("config");
    let (store, root) = tidemark_bronze::store::open(&cfg.bronze).expect("store");

    let t = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let (store, root) = (store.clone(), root.clone());
            async move { commit_log::create(store.as_ref(), &root, &record(i)).await }
        })
        .buffer_unordered(32)
        .for_each(|r| async move {
            r.expect("create");
        })
        .await;
    println!(
        "{n} commit records in one partition on moto_server, created in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let end = n * 10 - 1;

    clear_hint(store.as_ref(), &root).await;
    let (before, last) = median(3, || commit_log::find_last(store.as_ref(), &root, TOPIC, 0)).await;
    let last = last.expect("find_last");
    assert_eq!(last.record.map(|r| r.end), Some(end));
    println!(
        "chain end, listing every record (before):   {:>9.1} ms  ({} names listed)",
        before.as_secs_f64() * 1e3,
        last.listed
    );

    // Ingest's first lookup without a hint lists everything once and leaves a hint behind.
    let writer = BronzeWriter::new(store.clone(), root.clone(), 1);
    assert_eq!(writer.next_offset(TOPIC, 0).await.unwrap(), Some(end + 1));
    // What a running writer leaves: a hint at most HINT_EVERY records behind the end.
    let behind = (commit_log::HINT_EVERY as i64 - 1).min(n - 1);
    commit_log::write_hint(store.as_ref(), &root, TOPIC, 0, (n - 1 - behind) * 10)
        .await
        .unwrap();
    let (after, last) = median(5, || commit_log::find_last(store.as_ref(), &root, TOPIC, 0)).await;
    let last = last.expect("find_last");
    assert_eq!(last.record.map(|r| r.end), Some(end));
    println!(
        "chain end, from the end hint (after):       {:>9.1} ms  ({} names listed)  {:.0}× faster",
        after.as_secs_f64() * 1e3,
        last.listed,
        before.as_secs_f64() / after.as_secs_f64()
    );

    // The merger, caught up, looks for records from end + 1 every cycle.
    let idle = || async {
        tidemark_warehouse::bronze_read::records_from(store.as_ref(), &root, TOPIC, 0, end + 1, 100)
            .await
            .expect("records_from")
    };
    let (with_hint, recs) = median(5, idle).await;
    assert!(recs.is_empty());
    clear_hint(store.as_ref(), &root).await;
    let (without, _) = median(3, idle).await;
    println!(
        "merger's idle check, without / with the hint: {:>7.1} ms / {:.1} ms",
        without.as_secs_f64() * 1e3,
        with_hint.as_secs_f64() * 1e3
    );
}
