//! `tidemark ingest` end to end: librdkafka's MockCluster → ingest → bronze on local files, read
//! back by the exactly-once proof and by DuckDB.

use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use std::collections::BTreeMap;
use tidemark_core::config::Config;

use tidemark_core::event::Op;
use tidemark_e2e::kafka::Kafka;
use tidemark_e2e::proof::{caught_up, produced, prove};
use tidemark_e2e::stream::{Record, RecordKind, generate};

fn config(bootstrap: &str, bronze: &std::path::Path, topics: &[&str]) -> Config {
    let toml = format!(
        "[kafka]\nbootstrap_servers = \"{bootstrap}\"\ngroup_id = \"g-{}\"\ntopics = {:?}\n[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n[bronze]\nurl = \"file://{}\"\nmax_records = 2000\nmax_age_ms = 300\n",
        uuid::Uuid::new_v4().simple(),
        topics,
        bronze.display()
    );
    Config::from_toml_and_env(&toml, Vec::new()).unwrap()
}

/// Produces `records` in chunks, waiting for ingest to land each one: MockCluster keeps only
/// ~5 MB per partition, so the backlog must stay small.
async fn produce_in_step(
    kafka: &Kafka,
    store: &dyn ObjectStore,
    records: &[Record],
    chunk: usize,
) -> tidemark_e2e::proof::Produced {
    let mut deliveries: BTreeMap<(String, i32), Vec<(i64, usize)>> = BTreeMap::new();
    for (n, part) in records.chunks(chunk).enumerate() {
        for (k, v) in kafka.produce(part).await {
            deliveries
                .entry(k)
                .or_default()
                .extend(v.into_iter().map(|(o, i)| (o, i + n * chunk)));
        }
        let so_far = produced(&deliveries, records);
        let started = Instant::now();
        while !caught_up(store, &Path::default(), &so_far).await {
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "ingest did not catch up"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    produced(&deliveries, records)
}

fn count(records: &[Record], topic: &str, op: Op) -> usize {
    records
        .iter()
        .filter(|r| r.topic == topic && r.kind == RecordKind::Change(op))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_events_land_exactly_once_and_duckdb_reads_them() {
    let customers = "bank.public.customers";
    let accounts = "bank.public.accounts";
    let transactions = "bank.public.transactions";
    let kafka = Kafka::start(&[(customers, 4), (accounts, 4), (transactions, 4)]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        &kafka.bootstrap(),
        dir.path(),
        &[customers, accounts, transactions],
    );
    // Two tables with the schema envelope, one without; interleaved like a real connector.
    let streams = [
        generate(customers, 4, 30_000, true, 1),
        generate(accounts, 4, 40_000, false, 2),
        generate(transactions, 4, 30_000, true, 3),
    ];
    let mut records = Vec::with_capacity(100_000);
    let mut iters: Vec<_> = streams.iter().map(|s| s.iter()).collect();
    loop {
        let mut any = false;
        for it in &mut iters {
            if let Some(r) = it.next() {
                records.push(r.clone());
                any = true;
            }
        }
        if !any {
            break;
        }
    }
    assert_eq!(records.len(), 100_000);

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
    let produced = produce_in_step(&kafka, store.as_ref(), &records, 10_000).await;
    stop_tx.send(()).unwrap();
    let stats = ingest.await.unwrap().unwrap();
    let proof = prove(store.as_ref(), &Path::default(), &produced).await;
    assert_eq!(
        proof.rows + proof.dead_letters + proof.tombstones,
        records.len() as u64
    );
    assert!(proof.dead_letters > 0 && proof.tombstones > 0);
    assert_eq!(stats.dead_letters, proof.dead_letters);
    for op in [Op::Create, Op::Update, Op::Delete, Op::Read, Op::Truncate] {
        assert!(count(&records, customers, op) > 0, "{op:?} produced");
    }

    // A reader that is not ours: DuckDB over the hive-partitioned files.
    let expect = |t: &str| {
        [Op::Create, Op::Delete, Op::Read, Op::Truncate, Op::Update]
            .iter()
            .map(|op| format!("('{}', {})", op.code(), count(&records, t, *op)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let script = format!(
        r#"
import duckdb, sys
root = sys.argv[1]
con = duckdb.connect()
def ops(t):
    return con.execute(f"select op, count(*) from read_parquet('{{root}}/{{t}}/*/*.parquet', hive_partitioning=true) group by op order by op").fetchall()
assert ops('{customers}') == [{ec}], ops('{customers}')
assert ops('{transactions}') == [{et}], ops('{transactions}')
assert ops('{accounts}') == [{ea}], ops('{accounts}')
# Typed values: decimal and timestamp of a known version (id 7, first create: version 1).
bal, ts, dt = con.execute(f"select after.balance, after.updated_at, dt from read_parquet('{{root}}/{customers}/*/*.parquet', hive_partitioning=true) where op = 'c' and after.id = 7 and after.name = 'name-7-v1' limit 1").fetchone()
assert str(bal) == '70.07', bal
assert str(ts) == '2023-11-14 22:13:21', ts
assert str(dt) == '2023-11-15', dt
t = con.execute(f"select typeof(after.balance), typeof(after.updated_at), typeof(source.lsn) from read_parquet('{{root}}/{transactions}/*/*.parquet') limit 1").fetchone()
assert t == ('DECIMAL(12,2)', 'TIMESTAMP', 'BIGINT'), t
# Schemaless rows are JSON text.
n = con.execute(f"select count(*) from read_parquet('{{root}}/{accounts}/*/*.parquet') where op in ('c','u','r') and json_extract_string(after, '$.name') like 'name-%'").fetchone()[0]
assert n == {acc_rows}, n
print('ok')
"#,
        ec = expect(customers),
        et = expect(transactions),
        ea = expect(accounts),
        acc_rows = count(&records, accounts, Op::Create)
            + count(&records, accounts, Op::Update)
            + count(&records, accounts, Op::Read),
    );
    tidemark_e2e::readers::duckdb_script(&script, dir.path());
}

/// Under a memory budget segments are written before they grow past their share (here a
/// budget 1 MiB above the reserve: segments of at most 64 KiB), and everything still lands
/// exactly once. Without the budget the same run writes one file per partition, at shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_budget_writes_segments_early_and_lands_everything_once() {
    let topic = "bank.public.customers";
    let kafka = Kafka::start(&[(topic, 2)]);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&kafka.bootstrap(), dir.path(), &[topic]);
    cfg.bronze.max_records = 1_000_000;
    cfg.bronze.max_age_ms = 600_000;
    let records = generate(topic, 2, 3_000, false, 11);
    let deliveries = kafka.produce(&records).await;
    let seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut settings = tidemark_bronze::service::settings(&cfg);
    settings.memory_budget = Some(tidemark_bronze::ingest::MEMORY_RESERVE + (1 << 20));
    settings.progress = Some(seen.clone());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (store, root) = tidemark_bronze::store::open(&cfg.bronze).unwrap();
    let writer = tidemark_bronze::writer::BronzeWriter::new(store.clone(), root.clone(), 1);
    let run = tokio::spawn(tidemark_bronze::ingest::run(
        tidemark_bronze::service::consumer(&cfg).unwrap(),
        tidemark_bronze::service::decoder(&cfg).unwrap(),
        writer,
        settings,
        async {
            stop_rx.await.ok();
        },
    ));
    let started = Instant::now();
    while seen.load(std::sync::atomic::Ordering::Relaxed) < records.len() as u64 {
        assert!(started.elapsed() < Duration::from_secs(60), "not consumed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_tx.send(()).unwrap();
    run.await.unwrap().unwrap();
    let proof = prove(store.as_ref(), &root, &produced(&deliveries, &records)).await;
    assert_eq!(
        proof.rows + proof.dead_letters + proof.tombstones,
        records.len() as u64
    );
    assert!(
        proof.commits >= 8,
        "segments were written early under the budget: {proof:?}"
    );
}

/// `bronze.compact_interval_ms`: ingest compacts its small files in the background while it
/// lands more, and every offset still lands exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_compaction_makes_few_files_and_lands_everything_once() {
    use futures::TryStreamExt;
    let topic = "bank.public.customers";
    let kafka = Kafka::start(&[(topic, 2)]);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&kafka.bootstrap(), dir.path(), &[topic]);
    cfg.bronze.max_records = 20;
    cfg.bronze.compact_interval_ms = 300;
    cfg.bronze.compact_min_age_ms = 0;
    cfg.bronze.compact_target_bytes = 1 << 20;
    let (store, root) = tidemark_bronze::store::open(&cfg.bronze).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let cfg2 = cfg.clone();
    let run = tokio::spawn(async move {
        tidemark_bronze::service::run(&cfg2, async {
            stop_rx.await.ok();
        })
        .await
    });
    let records = generate(topic, 2, 3_000, false, 17);
    let produced = produce_in_step(&kafka, store.as_ref(), &records, 500).await;
    let compacted = root.child("_compacted");
    let started = Instant::now();
    loop {
        let n: Vec<_> = store.list(Some(&compacted)).try_collect().await.unwrap();
        if n.len() >= 3 && caught_up(store.as_ref(), &root, &produced).await {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no compaction");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop_tx.send(()).unwrap();
    run.await.unwrap().unwrap();
    let proof = prove(store.as_ref(), &root, &produced).await;
    assert_eq!(
        proof.rows + proof.dead_letters + proof.tombstones,
        records.len() as u64
    );
    // Flushes of at most 20 records; compaction records stand in for runs of them (records
    // with dead letters are left as they are).
    let plain = store
        .list(Some(&root.child("_log")))
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .iter()
        .filter(|m| {
            m.location
                .filename()
                .and_then(tidemark_bronze::layout::parse_commit_name)
                .is_some()
        })
        .count() as u64;
    assert!(
        proof.commits + 10 <= plain,
        "{plain} records landed, {} after compaction: {proof:?}",
        proof.commits
    );
}

/// A segment that reaches its share of the memory budget streams its change events into its
/// file (a multipart upload) instead of rolling: with no record, byte or age bound in reach, a
/// partition's events land in one large streamed file, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_past_its_memory_share_streams_one_large_file() {
    let topic = "bank.public.customers";
    let kafka = Kafka::start(&[(topic, 2)]);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&kafka.bootstrap(), dir.path(), &[topic]);
    cfg.bronze.max_records = 10_000_000;
    cfg.bronze.max_bytes = 1 << 30;
    cfg.bronze.max_age_ms = 600_000;
    let (store, root) = tidemark_bronze::store::open(&cfg.bronze).unwrap();
    let mut settings = tidemark_bronze::service::settings(&cfg);
    // Segments get 48 MiB: a segment's share is 3 MiB, an open file costs 15 MiB.
    settings.memory_budget = Some(tidemark_bronze::ingest::MEMORY_RESERVE + (48 << 20));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let writer = tidemark_bronze::writer::BronzeWriter::new(store.clone(), root.clone(), 1);
    let run = tokio::spawn(tidemark_bronze::ingest::run(
        tidemark_bronze::service::consumer(&cfg).unwrap(),
        tidemark_bronze::service::decoder(&cfg).unwrap(),
        writer,
        settings,
        async {
            stop_rx.await.ok();
        },
    ));
    let records: Vec<Record> = generate(topic, 2, 14_000, false, 23)
        .into_iter()
        .filter(|r| matches!(r.kind, RecordKind::Change(_)))
        .collect();
    let mut deliveries: BTreeMap<(String, i32), Vec<(i64, usize)>> = BTreeMap::new();
    for (n, part) in records.chunks(2_000).enumerate() {
        for (k, v) in kafka.produce(part).await {
            deliveries
                .entry(k)
                .or_default()
                .extend(v.into_iter().map(|(o, i)| (o, i + n * 2_000)));
        }
        // MockCluster keeps ~5 MB a partition: let ingest take each chunk in first.
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let produced = produced(&deliveries, &records);
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_tx.send(()).unwrap();
    run.await.unwrap().unwrap();
    let proof = prove(store.as_ref(), &root, &produced).await;
    assert_eq!(proof.rows, records.len() as u64, "{proof:?}");
    // Partition 0's segment reached its share first and streamed; the budget had no room for
    // a second open file, so partition 1's segment rolled at its share instead.
    let mut streamed = Vec::new();
    for p in 0..2 {
        let chain = tidemark_bronze::commit_log::read_chain(store.as_ref(), &root, topic, p)
            .await
            .unwrap();
        for (r, f) in chain
            .records
            .iter()
            .flat_map(|r| r.files.iter().map(move |f| (r, f)))
        {
            if f.path.contains("-streamed+") {
                streamed.push((p, chain.records.len(), f.rows, r.records));
            }
        }
    }
    assert!(
        !streamed.is_empty(),
        "a segment streamed its file: {proof:?}"
    );
    for (p, commits, rows, records) in streamed {
        assert_eq!(commits, 1, "partition {p}: one file for everything");
        assert_eq!(
            rows, records,
            "partition {p}: every record in the streamed file"
        );
    }
}
