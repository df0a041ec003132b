//! `tidemark inspect bronze`, `tidemark dlq list`, `tidemark gc`, `tidemark manifest`,
//! `tidemark compact`: views and upkeep of a bronze root through its commit log.

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

pub(super) fn inspect(config_path: &Path) -> anyhow::Result<ExitCode> {
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
    for s in summaries
        .iter()
        .filter(|s| s.compactions > 0 || s.awaiting_gc > 0)
    {
        println!(
            "compaction: {}/{}: {} compaction record(s) stand for {} record(s); {} replaced \
             record(s) left for `tidemark gc`",
            s.topic, s.partition, s.compactions, s.compacted_records, s.awaiting_gc
        );
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

pub(super) fn dlq_list(config_path: &Path) -> anyhow::Result<ExitCode> {
    let (_, store, root) = open(config_path)?;
    let letters = runtime()?.block_on(admin::dead_letters(store.as_ref(), &root))?;
    for l in &letters {
        println!("{}", serde_json::to_string(l)?);
    }
    eprintln!("{} dead letter(s)", letters.len());
    Ok(ExitCode::SUCCESS)
}

pub(super) fn manifest(config_path: &Path) -> anyhow::Result<ExitCode> {
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

pub(super) fn compact(
    config_path: &Path,
    args: &crate::cli::CompactArgs,
) -> anyhow::Result<ExitCode> {
    use tidemark_bronze::compact;
    let (config, store, root) = open(config_path)?;
    let opts = compact::Options {
        // Saturating float-to-int: a negative or NaN size compacts nothing.
        target_bytes: (args.target_mb * 1024.0 * 1024.0) as u64,
        min_age: Duration::from_secs(args.older_than_secs),
        zstd_level: config.bronze.zstd_level,
        part_bytes: usize::try_from(args.part_mb << 20).unwrap_or(usize::MAX),
    };
    let rt = runtime()?;
    let done = rt.block_on(compact::compact(store.as_ref(), &root, &opts))?;
    for d in done.iter().filter(|d| d.runs > 0 || d.lost_race) {
        println!(
            "{}/{}: {} record(s) in {} run(s), {} file(s) of {} bytes -> {} file(s) of {} bytes{}",
            d.topic,
            d.partition,
            d.records,
            d.runs,
            d.files_before,
            d.bytes_before,
            d.files_after,
            d.bytes_after,
            if d.lost_race {
                " (another compactor got there first; stopped)"
            } else {
                ""
            }
        );
    }
    // Readers of the manifests see the compacted files now, not at ingest's next refresh.
    rt.block_on(tidemark_bronze::manifest::refresh(store.as_ref(), &root))?;
    eprintln!(
        "{} run(s) compacted; `tidemark gc` removes the replaced files after its grace period",
        done.iter().map(|d| d.runs).sum::<usize>()
    );
    Ok(ExitCode::SUCCESS)
}

pub(super) fn gc(
    config_path: &Path,
    older_than: Duration,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    let (_, store, root) = open(config_path)?;
    let rt = runtime()?;
    if !dry_run {
        // Manifests must not name the replaced files about to go.
        rt.block_on(tidemark_bronze::manifest::refresh(store.as_ref(), &root))?;
    }
    let report = rt.block_on(admin::gc(store.as_ref(), &root, older_than, dry_run))?;
    for r in &report.superseded {
        let verb = if dry_run { "would remove" } else { "removed" };
        println!("{verb} {r} (replaced by a compaction)");
    }
    for o in &report.orphans {
        println!("{} {o}", if dry_run { "would remove" } else { "removed" });
    }
    eprintln!(
        "{} referenced file(s), {} orphan(s) {}, {} orphan(s) younger than {} s kept, {} \
         replaced record(s) {}, {} kept (compacted less than {} s ago)",
        report.referenced,
        report.orphans.len(),
        if dry_run { "found" } else { "removed" },
        report.kept_young,
        older_than.as_secs(),
        report.superseded.len(),
        if dry_run { "found" } else { "removed" },
        report.superseded_young,
        older_than.as_secs()
    );
    Ok(ExitCode::SUCCESS)
}
