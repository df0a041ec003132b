//! Ingest throughput against a broker that holds a backlog (tansu): see scripts/bench-ingest.sh.
//!
//! Modes (each its own process, so RSS is the ingester's alone):
//!   prefill <bootstrap> <topic> <partitions> <events> <schemaless|schema>
//!   drain   <bootstrap> <topic> <partitions> <events>       bare rdkafka consumer, the floor
//!   ingest  <bootstrap> <topic> <partitions> <events> <dir> tidemark ingest to local files

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use tidemark_core::config::Config;
use tidemark_core::event::{ChangeEvent, KafkaCoords, Op, Snapshot, Source};
use tidemark_core::schema::Schema;
use tidemark_core::value::{Row, TimeUnit, Timestamp, TypedRow, Value};
use tidemark_generator::bank::{self, Table};
use tidemark_wire::decode::Placeholder;
use tidemark_wire::encode::event_json;

// The allocator of the `tidemark` binary, so the benchmark measures what ships.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn arg(i: usize) -> String {
    std::env::args()
        .nth(i)
        .unwrap_or_else(|| panic!("missing argument {i}; see the file header"))
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// The demo's `customers` table, as the generator (and Debezium) describe it.
fn schema() -> Schema {
    bank::row_schema("bank", Table::Customers)
}

fn event(i: i64, s: &Schema) -> ChangeEvent {
    let st = s.as_struct().unwrap().clone();
    let values = vec![
        Value::Int(i),
        Value::String(format!("Firstname{} Lastname-{}", i % 977, i % 3271)),
        Value::String(format!("customer.{i}@example-mail.com")),
        Value::String(["Lisbon", "Porto", "Braga", "Faro"][(i % 4) as usize].into()),
        Value::String(["bronze", "silver", "gold"][(i % 3) as usize].into()),
        Value::String(["active", "dormant"][(i % 2) as usize].into()),
        Value::Timestamp(Timestamp::from_epoch(
            1_700_000_000_000 + i,
            TimeUnit::Millis,
        )),
    ];
    ChangeEvent {
        op: if i % 10 == 0 { Op::Create } else { Op::Update },
        key: None,
        before: None,
        after: Some(Row::Typed(TypedRow { schema: st, values })),
        source: Source {
            version: Some("3.1.0.Final".into()),
            connector: Some("postgresql".into()),
            name: Some("bench".into()),
            ts_ms: Some(1_700_000_000_000 + i),
            snapshot: Some(Snapshot::False),
            db: Some("bench".into()),
            sequence: Some(format!(
                "[\"{}\",\"{}\"]",
                24_000_000 + i * 64 - 8,
                24_000_000 + i * 64
            )),
            schema: Some("public".into()),
            table: Some("customers".into()),
            tx_id: Some(700 + i),
            lsn: Some(24_000_000 + i * 64),
            ..Default::default()
        },
        ts_ms: Some(1_700_000_000_100 + i),
        ts_us: None,
        ts_ns: None,
        transaction: None,
        kafka: KafkaCoords {
            topic: String::new(),
            partition: 0,
            offset: 0,
            timestamp_ms: None,
        },
        schema: None,
    }
}

fn prefill() {
    let (bootstrap, topic, partitions, events, form) = (
        arg(2),
        arg(3),
        arg(4).parse::<i32>().unwrap(),
        arg(5).parse::<i64>().unwrap(),
        arg(6),
    );
    let with_schema = form == "schema";
    let s = schema();
    let ph = Placeholder::default();
    // The broker does not auto-create topics: create it through the admin API.
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let created = rt
        .block_on(admin.create_topics(
            &[NewTopic::new(
                &topic,
                partitions,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new(),
        ))
        .unwrap();
    println!("create topic {topic}: {created:?}");
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("compression.type", "none")
        .create()
        .unwrap();
    let started = Instant::now();
    let mut bytes = 0usize;
    for i in 0..events {
        let value = event_json(&event(i, &s), &s, with_schema, &ph);
        let key = format!("{{\"id\":{i}}}");
        bytes += value.len() + key.len();
        let mut rec = BaseRecord::to(&topic)
            .key(&key)
            .payload(&value)
            .partition((i % i64::from(partitions)) as i32);
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((_, r)) => {
                    rec = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120)).unwrap();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "prefill: {events} events, {:.0} B/event, {:.0} events/s",
        bytes as f64 / events as f64,
        events as f64 / secs
    );
}

fn drain() {
    let (bootstrap, topic, partitions, events) = (
        arg(2),
        arg(3),
        arg(4).parse::<i32>().unwrap(),
        arg(5).parse::<u64>().unwrap(),
    );
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", format!("drain-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "5")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(&topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let (mut n, mut bytes) = (0u64, 0usize);
    let started = Instant::now();
    while n < events {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            n += 1;
            bytes += m.payload().map_or(0, <[u8]>::len) + m.key().map_or(0, <[u8]>::len);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "raw drain: {n} events in {secs:.2} s: {:.0} events/s, {:.1} MB/s",
        n as f64 / secs,
        bytes as f64 / secs / 1e6
    );
}

fn ingest() {
    let (bootstrap, topic, partitions, events, dir) = (
        arg(2),
        arg(3),
        arg(4).parse::<i32>().unwrap(),
        arg(5).parse::<i64>().unwrap(),
        arg(6),
    );
    // TIDEMARK_BENCH_KAFKA_PROPS="k=v,k=v" adds librdkafka properties (experiments).
    let extra: String = std::env::var("TIDEMARK_BENCH_KAFKA_PROPS")
        .unwrap_or_default()
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| format!("\"{k}\" = \"{v}\"\n"))
        .collect();
    let toml = format!(
        "[kafka]\nbootstrap_servers = \"{bootstrap}\"\ngroup_id = \"ingest-{}\"\ntopics = [\"{topic}\"]\n[kafka.properties]\n\"fetch.wait.max.ms\" = \"5\"\n{extra}[bronze]\nurl = \"file://{dir}\"\n",
        std::process::id()
    );
    // TIDEMARK__… environment variables tune the run (e.g. TIDEMARK__BRONZE__MAX_RECORDS).
    let cfg = Config::from_toml_and_env(&toml, std::env::vars()).unwrap();
    // TIDEMARK_BENCH_METRICS=off measures ingest without recording metrics.
    let metrics_on = std::env::var("TIDEMARK_BENCH_METRICS").as_deref() != Ok("off");
    tidemark_core::metrics::set_enabled(metrics_on);
    let per_partition = events / i64::from(partitions);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (store, root) = tidemark_bronze::store::open(&cfg.bronze).unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let cfg2 = cfg.clone();
        let started = Instant::now();
        // Stop as soon as every record is taken in: shutdown then flushes and commits all that
        // is buffered, so the time covers landing everything without idling on the age bound.
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut settings = tidemark_bronze::service::settings(&cfg2);
        settings.progress = Some(seen.clone());
        let consumer = tidemark_bronze::service::consumer(&cfg2).unwrap();
        let decoder = tidemark_bronze::service::decoder(&cfg2).unwrap();
        let writer = tidemark_bronze::writer::BronzeWriter::new(store.clone(), root.clone(), cfg2.bronze.zstd_level);
        let task = tokio::spawn(tidemark_bronze::ingest::run(consumer, decoder, writer, settings, async { stop_rx.await.ok(); }));
        while seen.load(std::sync::atomic::Ordering::Relaxed) < events as u64 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop_tx.send(()).unwrap();
        let stats = task.await.unwrap().unwrap();
        // Every partition's chain covers what was produced to it (the prefill spreads events
        // evenly): the proof that it all landed.
        for p in 0..partitions {
            let next = tidemark_bronze::commit_log::next_offset(store.as_ref(), &root, &topic, p).await.unwrap().unwrap_or(0);
            assert!(next >= per_partition, "partition {p} landed up to {next} of {per_partition}");
        }
        let done = Instant::now();
        // From the first record (the group join is not ingest work) to the last commit.
        let secs = done.duration_since(stats.first_record_at.unwrap_or(started)).as_secs_f64();
        let landed: u64 = tidemark_bronze::admin::summarize(store.as_ref(), &root).await.unwrap().iter().map(|s| s.bytes).sum();
        println!(
            "tidemark ingest (metrics {}): {} records in {secs:.2} s: {:.0} events/s, {:.1} MB/s, parquet {:.1} MB, peak RSS {:.0} MiB",
            if metrics_on { "on" } else { "off" },
            stats.records,
            stats.records as f64 / secs,
            stats.bytes as f64 / secs / 1e6,
            landed as f64 / 1e6,
            peak_rss_mib()
        );
    });
}

fn main() {
    tidemark_core::allocator::configure();
    // `cargo bench` passes --bench; the mode is the first other argument.
    let mode = std::env::args().nth(1).unwrap_or_default();
    match mode.as_str() {
        "prefill" => prefill(),
        "drain" => drain(),
        "ingest" => ingest(),
        _ => eprintln!(
            "usage: see scripts/bench-ingest.sh (modes: prefill, drain, ingest); nothing to do"
        ),
    }
}
