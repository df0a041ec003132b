//! `tidemark generate`: the demo's banking stream produced to a real Kafka at a target rate.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::FutureProducer;
use tidemark_generator::{Bank, BankOptions, Encoding, RecordEncoder, Table, avro_subjects};
use tidemark_wire::registry::{RegistryClient, RegistrySettings};

use super::shutdown_signal;
use crate::cli::{GenerateArgs, StreamArgs};
use crate::produce::{Limits, Produced, produce};

pub(crate) fn bank(args: &StreamArgs) -> anyhow::Result<Bank> {
    if !(0.0..=1.0).contains(&args.late_ratio) {
        anyhow::bail!("--late-ratio {} must be between 0 and 1", args.late_ratio);
    }
    if args.topic_prefix.is_empty() || args.topic_prefix.contains(char::is_whitespace) {
        anyhow::bail!("--topic-prefix must be a non-empty topic name without spaces");
    }
    Ok(Bank::new(BankOptions {
        topic_prefix: args.topic_prefix.clone(),
        customers: args.customers,
        late_ratio: args.late_ratio,
        seed: args.seed,
    }))
}

/// A producer for `bootstrap` with the configured librdkafka properties (security settings).
pub(crate) fn producer(
    bootstrap: &str,
    properties: &BTreeMap<String, String>,
) -> anyhow::Result<FutureProducer> {
    let mut cc = ClientConfig::new();
    for (k, v) in properties {
        // Consumer-only settings of the ingest config would only make librdkafka warn.
        if !k.starts_with("fetch.")
            && !k.starts_with("session.")
            && !k.starts_with("heartbeat.")
            && !k.starts_with("auto.")
            && !k.starts_with("group.")
        {
            cc.set(k, v);
        }
    }
    cc.set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000");
    cc.create()
        .map_err(|e| anyhow::anyhow!(tidemark_bronze::kafka::describe(&e)))
}

pub(crate) fn limits(
    events: Option<u64>,
    rate: f64,
    duration: Option<f64>,
) -> anyhow::Result<Limits> {
    if rate < 0.0 || !rate.is_finite() {
        anyhow::bail!("--rate {rate} must be 0 (unlimited) or more");
    }
    let duration = duration
        .map(|d| {
            Duration::try_from_secs_f64(d)
                .map_err(|_| anyhow::anyhow!("--duration {d} must be a number of seconds"))
        })
        .transpose()?;
    Ok(Limits {
        events,
        rate: (rate > 0.0).then_some(rate),
        duration,
    })
}

pub(crate) fn run(config_path: &Path, args: &GenerateArgs) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config_path, true)?;
    let bootstrap = args
        .bootstrap_servers
        .clone()
        .unwrap_or_else(|| config.kafka.bootstrap_servers.clone());
    let limits = limits(args.events, args.rate, args.duration)?;
    let mut bank = bank(&args.stream)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let producer = producer(&bootstrap, &config.kafka.properties)?;
            // Fail fast and clearly rather than after the delivery timeout.
            let probe = producer.clone();
            tokio::task::spawn_blocking(move || {
                rdkafka::producer::Producer::client(&probe)
                    .fetch_metadata(None, Duration::from_secs(10))
                    .map(|_| ())
            })
            .await?
            .map_err(|e| anyhow::anyhow!("cannot reach Kafka at {bootstrap}: {e}"))?;
            if let Some(partitions) = args.create_topics {
                create_topics(&bootstrap, &config.kafka.properties, &bank, partitions).await?;
            }
            continue_after_existing(&producer, &mut bank).await?;
            let encoder = match args.format {
                Encoding::Json => RecordEncoder::json(&bank, true),
                Encoding::JsonSchemaless => RecordEncoder::json(&bank, false),
                Encoding::Avro => {
                    let url = args
                        .schema_registry_url
                        .clone()
                        .or_else(|| config.kafka.schema_registry_url.clone())
                        .ok_or_else(|| {
                            anyhow::anyhow!(
                                "--format avro needs --schema-registry-url (or kafka.schema_registry_url)"
                            )
                        })?;
                    let settings = RegistrySettings::from_config(url, &config.kafka);
                    let registry = RegistryClient::new(settings)?;
                    let mut ids = BTreeMap::new();
                    for s in avro_subjects(&bank) {
                        let k = registry
                            .register(&format!("{}-key", s.topic), &s.key.to_string())
                            .await?;
                        let v = registry
                            .register(&format!("{}-value", s.topic), &s.value.to_string())
                            .await?;
                        ids.insert(s.topic, (k, v));
                    }
                    RecordEncoder::avro(&bank, &ids).map_err(anyhow::Error::msg)?
                }
            };
            eprintln!(
                "generate: producing to {bootstrap} ({}), target {}",
                Table::ALL.map(|t| bank.topic(t)).join(", "),
                limits
                    .rate
                    .map_or("as fast as possible".to_owned(), |r| format!("{r} records/s"))
            );
            let mut last = Instant::now();
            let report = produce(
                &producer,
                &mut bank,
                &encoder,
                limits,
                shutdown_signal(),
                |_| false,
                |p: &Produced| {
                    if last.elapsed() >= Duration::from_secs(5) {
                        eprintln!(
                            "generate: {:.0} s, {} records, {:.0} records/s",
                            p.elapsed.as_secs_f64(),
                            p.records,
                            p.records_per_sec()
                        );
                        last = Instant::now();
                    }
                },
            )
            .await?;
            print_report(&report, limits.rate);
            Ok(ExitCode::SUCCESS)
        })
}

/// Records each table's topic already holds (the sum of its partitions' high watermarks);
/// a topic that does not exist yet holds none.
async fn existing_records(
    producer: &FutureProducer,
    bank: &Bank,
) -> anyhow::Result<BTreeMap<Table, i64>> {
    let producer = producer.clone();
    let topics: Vec<(Table, String)> = Table::ALL.iter().map(|t| (*t, bank.topic(*t))).collect();
    tokio::task::spawn_blocking(move || {
        let client = rdkafka::producer::Producer::client(&producer);
        let timeout = Duration::from_secs(10);
        let mut held = BTreeMap::new();
        for (table, topic) in topics {
            let meta = client.fetch_metadata(Some(&topic), timeout)?;
            let mut n = 0;
            for t in meta.topics().iter().filter(|t| t.error().is_none()) {
                for p in t.partitions() {
                    n += client.fetch_watermarks(&topic, p.id(), timeout)?.1.max(0);
                }
            }
            held.insert(table, n);
        }
        Ok::<_, rdkafka::error::KafkaError>(held)
    })
    .await?
    .map_err(|e| anyhow::anyhow!("cannot read the topics' offsets: {e}"))
}

/// A second run on the same topics continues after the first (new ids, later positions)
/// instead of replaying its ids and LSNs, and says so.
async fn continue_after_existing(producer: &FutureProducer, bank: &mut Bank) -> anyhow::Result<()> {
    let held = existing_records(producer, bank).await?;
    let total: i64 = held.values().sum();
    if total > 0 {
        bank.start_after(&held);
        let (customer, account, transaction, lsn) = bank.starts();
        eprintln!(
            "generate: the topics already hold {total} records: continuing after them with new \
             customers from id {customer}, accounts from {account}, transactions from \
             {transaction} and LSNs from {:X}/{:X} (a new --topic-prefix starts afresh)",
            lsn >> 32,
            lsn & 0xffff_ffff
        );
    }
    Ok(())
}

fn print_report(p: &Produced, target: Option<f64>) {
    println!(
        "generated {} records ({:.1} MB) in {:.2} s: {:.0} records/s ({}), {:.2} MB/s",
        p.records,
        p.bytes as f64 / 1e6,
        p.elapsed.as_secs_f64(),
        p.records_per_sec(),
        target.map_or("no target".to_owned(), |t| format!("target {t}")),
        p.mb_per_sec()
    );
    let mut tables: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for ((table, kind), n) in &p.by_kind {
        tables.entry(table).or_default().push(format!("{kind}={n}"));
    }
    for (table, kinds) in tables {
        println!("  {table:<14} {}", kinds.join(" "));
    }
    for ((topic, partition), end) in &p.ends {
        println!("  {topic}[{partition}] next offset {end}");
    }
}

async fn create_topics(
    bootstrap: &str,
    properties: &BTreeMap<String, String>,
    bank: &Bank,
    partitions: i32,
) -> anyhow::Result<()> {
    let mut cc = ClientConfig::new();
    for (k, v) in properties {
        if k.starts_with("security.") || k.starts_with("sasl.") || k.starts_with("ssl.") {
            cc.set(k, v);
        }
    }
    let admin: AdminClient<DefaultClientContext> = cc
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| anyhow::anyhow!(tidemark_bronze::kafka::describe(&e)))?;
    let names: Vec<String> = Table::ALL.iter().map(|t| bank.topic(*t)).collect();
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics(&topics, &opts).await? {
        match result {
            Ok(name) => eprintln!("generate: created topic {name} ({partitions} partitions)"),
            Err((name, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {
                eprintln!("generate: topic {name} exists")
            }
            Err((name, code)) => anyhow::bail!("creating topic {name}: {code}"),
        }
    }
    Ok(())
}
