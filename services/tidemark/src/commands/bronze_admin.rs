//! `tidemark inspect bronze`, `tidemark dlq list`, `tidemark gc`, `tidemark manifest`: read-mostly views of a bronze
//! root through its commit log.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use tidemark_bronze::{admin, store};
use tidemark_core::config::{Config, TransactionMode};
use tidemark_warehouse::txn_read;

fn open(
    config_path: &Path,
) -> anyhow::Result<(
    Config,
    std::sync::Arc<dyn object_store::ObjectStore>,
    object_store::path::Path,
)> {
    let config = super::load_config(config_path, false)?;
    let (store, root) = store::open(&config.bronze)?;
    Ok((config, store, root))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Kafka lag per partition (high watermark − next offset to land); `Err` when Kafka does not
/// answer (the first failure stops asking: each attempt waits for a timeout).
fn kafka_lags(config: &Config, parts: &[(&str, i32, i64)]) -> Result<Vec<i64>, String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let mut c = rdkafka::ClientConfig::new();
    c.set("bootstrap.servers", &config.kafka.bootstrap_servers);
    for (k, v) in &config.kafka.properties {
        c.set(k, v);
    }
    let consumer: BaseConsumer = c
        .create()
        .map_err(|e| tidemark_bronze::kafka::describe(&e))?;
    parts
        .iter()
        .map(|(topic, p, next)| {
            consumer
                .fetch_watermarks(topic, *p, Duration::from_secs(3))
                .map(|(_, high)| (high - next).max(0))
                .map_err(|e| e.to_string())
        })
        .collect()
}

pub fn inspect(config_path: &Path) -> anyhow::Result<ExitCode> {
    let (config, store, root) = open(config_path)?;
    let summaries = runtime()?.block_on(admin::summarize(store.as_ref(), &root))?;
    println!("bronze {}", config.bronze.url);
    let parts: Vec<(&str, i32, i64)> = summaries
        .iter()
        .map(|s| (s.topic.as_str(), s.partition, s.next_offset))
        .collect();
    let lags = if parts.is_empty() {
        Ok(Vec::new())
    } else {
        kafka_lags(&config, &parts)
    };
    println!(
        "{:<40} {:>5} {:>12} {:>12} {:>10} {:>7} {:>6} {:>10} {:>12} {:>6} {:>6} {:>6}  gaps",
        "topic",
        "part",
        "first",
        "next",
        "lag",
        "commits",
        "files",
        "rows",
        "bytes",
        "dlq",
        "tomb",
        "holes"
    );
    let mut broken = false;
    for (i, s) in summaries.iter().enumerate() {
        broken |= !s.gaps.is_empty();
        let lag = lags
            .as_ref()
            .ok()
            .and_then(|l| l.get(i))
            .map_or("?".to_owned(), i64::to_string);
        println!(
            "{:<40} {:>5} {:>12} {:>12} {:>10} {:>7} {:>6} {:>10} {:>12} {:>6} {:>6} {:>6}  {}",
            s.topic,
            s.partition,
            s.first_offset,
            s.next_offset,
            lag,
            s.commits,
            s.files,
            s.rows,
            s.bytes,
            s.dead_letters,
            s.skipped,
            s.holes,
            if s.gaps.is_empty() {
                "none".to_owned()
            } else {
                s.gaps
                    .iter()
                    .map(|(from, to)| format!("{from}..{to}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
    }
    if summaries.is_empty() {
        println!("(nothing committed yet)");
    }
    if let Err(e) = &lags {
        println!(
            "Kafka lag unavailable ({}): {e}",
            config.kafka.bootstrap_servers
        );
    }
    transactions_hint(&config, &summaries);
    Ok(if broken {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Which connectors' tables merge as whole source transactions, and how to turn it on for the
/// others.
fn transactions_hint(config: &Config, summaries: &[admin::PartitionSummary]) {
    if config.merge.transactions != TransactionMode::Atomic || summaries.is_empty() {
        return;
    }
    let topics = summaries.iter().map(|s| s.topic.as_str());
    let mut txn_topics: Vec<&str> = topics
        .clone()
        .filter(|t| txn_read::prefix_of(t).is_some())
        .collect();
    txn_topics.dedup();
    for t in txn_topics {
        println!(
            "transactions: {t} is in bronze: its connector's tables merge whole source transactions"
        );
        if summaries.iter().any(|s| s.topic == t && s.partition != 0) {
            println!(
                "transactions: {t} has more than one partition: END records are read from \
                 partition 0 only, others wait for merge.transaction_timeout_ms; create it with \
                 one partition"
            );
        }
    }
    for prefix in txn_read::without_metadata(topics) {
        println!(
            "transactions: no {prefix}.transaction in bronze: changes of connector `{prefix}` are not \
             held to source transactions, so readers can see half of one. Set \
             provide.transaction.metadata=true on the connector and add {prefix}.transaction to \
             kafka.topics."
        );
    }
}

pub fn dlq_list(config_path: &Path) -> anyhow::Result<ExitCode> {
    let (_, store, root) = open(config_path)?;
    let letters = runtime()?.block_on(admin::dead_letters(store.as_ref(), &root))?;
    for l in &letters {
        println!("{}", serde_json::to_string(l)?);
    }
    eprintln!("{} dead letter(s)", letters.len());
    Ok(ExitCode::SUCCESS)
}

pub fn manifest(config_path: &Path) -> anyhow::Result<ExitCode> {
    let (_, store, root) = open(config_path)?;
    let done = runtime()?.block_on(tidemark_bronze::manifest::refresh(store.as_ref(), &root))?;
    eprintln!(
        "{} new commit record(s) read, {} file(s) added, {} manifest(s) written under {}",
        done.records,
        done.files_added,
        done.manifests_written,
        tidemark_bronze::layout::manifest_dir(&root)
    );
    Ok(ExitCode::SUCCESS)
}

pub fn gc(config_path: &Path, older_than: Duration, dry_run: bool) -> anyhow::Result<ExitCode> {
    let (_, store, root) = open(config_path)?;
    let report = runtime()?.block_on(admin::gc(store.as_ref(), &root, older_than, dry_run))?;
    for o in &report.orphans {
        println!("{} {o}", if dry_run { "would remove" } else { "removed" });
    }
    eprintln!(
        "{} referenced file(s), {} orphan(s) {}, {} orphan(s) younger than {} s kept",
        report.referenced,
        report.orphans.len(),
        if dry_run { "found" } else { "removed" },
        report.kept_young,
        older_than.as_secs()
    );
    Ok(ExitCode::SUCCESS)
}
