//! `tidemark demo`: the whole pipeline on embedded defaults. librdkafka's mock cluster stands in
//! for Kafka (a real protocol broker, in process), the banking generator plays Debezium, and the
//! real ingester and merger land bronze on local files and merge into SQLite, all under one data
//! directory. Ends with a summary read back from bronze and the warehouse.

mod summary;
mod text_table;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use rdkafka::mocking::MockCluster;
use tidemark_core::config::Config;
use tidemark_core::metrics::{self, catalogue};
use tidemark_generator::{RecordEncoder, Table, bank::tables_toml};
use tidemark_warehouse::merger::{MergeOptions, Merger};
use tokio::sync::watch;
use tracing::Instrument as _;

use crate::cli::DemoArgs;
use crate::commands::generate;
use crate::produce::{Produced, produce};

/// Partitions per demo topic.
const PARTITIONS: i32 = 3;
/// Records produced ahead of the consumer at most (~7 MB of JSON over 9 partitions).
const MAX_AHEAD: u64 = 2_000;
/// Marks a directory the demo made, so a rerun may clear it.
const MARKER: &str = ".tidemark-demo";
/// The mock cluster keeps about this many records per partition (librdkafka's limit); the
/// ingester keeps up, but a bound keeps a slow machine from losing records to it.
const MAX_EVENTS: u64 = 1_000_000;

/// The data directory: made fresh, removed at the end unless kept.
#[derive(Debug)]
struct DataDir {
    path: PathBuf,
    keep: bool,
}

impl DataDir {
    fn prepare(args: &DemoArgs) -> anyhow::Result<DataDir> {
        let path = match &args.data_dir {
            Some(p) => p.clone(),
            None if args.keep => PathBuf::from("tidemark-demo"),
            None => std::env::temp_dir().join(format!("tidemark-demo-{}", std::process::id())),
        };
        if path.exists() {
            let empty = std::fs::read_dir(&path)?.next().is_none();
            if !empty && !path.join(MARKER).exists() {
                anyhow::bail!(
                    "{} exists and was not made by `tidemark demo`: choose another --data-dir",
                    path.display()
                );
            }
            if !empty {
                eprintln!(
                    "note: replacing the previous demo in {} (give --data-dir to keep both)",
                    path.display()
                );
            }
            std::fs::remove_dir_all(&path)?;
        }
        std::fs::create_dir_all(&path)?;
        std::fs::write(
            path.join(MARKER),
            "made by `tidemark demo`; safe to delete\n",
        )?;
        let path = std::fs::canonicalize(&path)?;
        Ok(DataDir {
            path,
            keep: args.keep,
        })
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The demo's configuration, also written to `<dir>/tidemark.toml` so the user can run
/// `merge`, `replay` or `inspect bronze` against the kept data afterwards.
fn config(bootstrap: &str, dir: &Path, prefix: &str, metrics: &str) -> anyhow::Result<Config> {
    let topics: Vec<String> = Table::ALL
        .iter()
        .map(|t| format!("\"{prefix}.public.{}\"", t.name()))
        .collect();
    let text = format!(
        r#"# Written by `tidemark demo` (the mock Kafka is gone after the run; bronze and the
# warehouse stay with --keep).
[kafka]
bootstrap_servers = "{bootstrap}"
group_id = "tidemark-demo"
topics = [{topics}]

[kafka.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
"fetch.wait.max.ms" = "50"

[bronze]
url = "file://{dir}/bronze"
max_age_ms = 1000

[warehouse]
url = "sqlite://{dir}/warehouse.db"

[merge]
interval_ms = 250
max_batch_rows = 20000

[metrics]
listen = "{metrics}"

{tables}"#,
        topics = topics.join(", "),
        dir = dir.display(),
        tables = tables_toml(prefix),
    );
    std::fs::write(dir.join("tidemark.toml"), &text)?;
    Ok(Config::from_toml_and_env(&text, std::iter::empty())?)
}

/// Records the demo generates: `--events`, else what `--rate` makes in `--duration` (so a minute
/// at 500/s lasts a minute), else 20,000.
fn events(args: &DemoArgs) -> anyhow::Result<u64> {
    let n = match (args.events, args.duration) {
        (Some(n), _) => n,
        (None, Some(secs)) if args.rate > 0.0 => ((secs * args.rate).ceil() as u64).min(MAX_EVENTS),
        (None, Some(_)) => MAX_EVENTS,
        (None, None) => 20_000,
    };
    if n == 0 || n > MAX_EVENTS {
        anyhow::bail!("--events must be between 1 and {MAX_EVENTS} (the in-process Kafka's bound)");
    }
    Ok(n)
}

pub fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let events = events(args)?;
    let limits = generate::limits(Some(events), args.rate, args.duration)?;
    // A short run is not all snapshot: about one customer per 25 records.
    let mut stream = args.stream.clone();
    stream.customers = stream.customers.min((events as usize / 25).max(5));
    let bank = generate::bank(&stream)?;
    let dir = DataDir::prepare(args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let code = rt.block_on(demo(args, &dir.path, bank, limits))?;
    if dir.keep {
        print_explore(&dir.path, &args.stream.topic_prefix);
    }
    Ok(code)
}

/// Progress bars for the three stages.
struct Bars {
    produced: ProgressBar,
    landed: ProgressBar,
    merged: ProgressBar,
}

impl Bars {
    fn new(total: u64) -> (MultiProgress, Bars) {
        let multi = MultiProgress::new();
        let style = |what: &str| {
            ProgressStyle::with_template(&format!(
                "{{prefix:>8}} {{bar:36}} {{pos:>8}}/{{len}} {what} {{per_sec}}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar())
        };
        let bar = |prefix: &'static str, what: &str| {
            let b = multi.add(ProgressBar::new(total).with_style(style(what)));
            b.set_prefix(prefix);
            b
        };
        let bars = Bars {
            produced: bar("kafka", "records produced"),
            landed: bar("bronze", "records landed"),
            merged: bar("merge", "changes merged"),
        };
        (multi, bars)
    }
}

async fn demo(
    args: &DemoArgs,
    dir: &Path,
    mut bank: tidemark_generator::Bank,
    limits: crate::produce::Limits,
) -> anyhow::Result<ExitCode> {
    let cluster = MockCluster::new(1)?;
    let prefix = bank.options().topic_prefix.clone();
    for t in Table::ALL {
        cluster.create_topic(&bank.topic(t), PARTITIONS, 1)?;
    }
    let bootstrap = cluster.bootstrap_servers();
    let metrics_addr = match crate::http::serve(&args.metrics_listen, Default::default()).await {
        Ok(a) => a,
        Err(_) => crate::http::serve("127.0.0.1:0", Default::default()).await?,
    };
    let config = config(&bootstrap, dir, &prefix, &metrics_addr.to_string())?;
    println!(
        "tidemark demo: data in {}\n  metrics at http://{metrics_addr}/metrics while it runs\n  \
         Kafka: in-process mock broker, topics {prefix}.public.{{customers,accounts,transactions}} × {PARTITIONS} partitions\n  \
         generating {} records{}",
        dir.display(),
        limits.events.unwrap_or(0),
        limits
            .rate
            .map_or(" as fast as possible".to_owned(), |r| format!(
                " at {r} records/s"
            )),
    );

    let mut merger = Merger::open(&config, MergeOptions::from_config(&config)).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut ingest = {
        let config = config.clone();
        let mut rx = stop_rx.clone();
        tokio::spawn(
            async move {
                tidemark_bronze::service::run(&config, async move {
                    let _ = rx.wait_for(|v| *v).await;
                })
                .await
            }
            .instrument(tracing::info_span!("ingest")),
        )
    };

    let produced_now = Arc::new(AtomicU64::new(0));
    let producing = {
        let producer = generate::producer(&bootstrap, &Default::default())?;
        let encoder = RecordEncoder::json(&bank, true);
        let counter = produced_now.clone();
        tokio::spawn(async move {
            produce(
                &producer,
                &mut bank,
                &encoder,
                limits,
                std::future::pending(),
                // The mock broker keeps ~5 MB per partition: stay close to the consumer.
                |sent| sent > metrics::counter_total(catalogue::RECORDS_CONSUMED) + MAX_AHEAD,
                |p: &Produced| counter.store(p.records, Ordering::Relaxed),
            )
            .await
        })
    };

    let (_multi, bars) = Bars::new(limits.events.unwrap_or(0));
    let mut producing = Some(producing);
    let mut produced: Option<Produced> = None;
    let mut merged = 0u64;
    let mut last_move = (Instant::now(), (0, 0, 0));
    let interval = config.merge.interval();
    loop {
        let cycle = merger.cycle().await?;
        merged += cycle.changes();
        for (table, why) in &cycle.stopped {
            bars.merged
                .println(format!("merge: {table} STOPPED: {why}"));
        }
        let landed = metrics::counter_total(catalogue::RECORDS_LANDED)
            + metrics::counter_total(catalogue::DEAD_LETTERS);
        let sent = produced_now.load(Ordering::Relaxed);
        bars.produced.set_position(sent);
        bars.landed.set_position(landed);
        bars.merged.set_position(merged);
        if producing.as_ref().is_some_and(|p| p.is_finished())
            && let Some(task) = producing.take()
        {
            let p = task.await??;
            let changes: u64 = p
                .by_kind
                .iter()
                .filter(|((_, k), _)| k != "tombstone")
                .map(|(_, n)| n)
                .sum();
            bars.produced.set_length(p.records);
            bars.produced.set_position(p.records);
            bars.landed.set_length(p.records);
            bars.merged.set_length(changes);
            produced = Some(p);
        }
        if ingest.is_finished() {
            (&mut ingest).await??;
            anyhow::bail!("ingest stopped before the run was over");
        }
        if let Some(p) = &produced
            && landed >= p.records
            && cycle.is_idle()
        {
            break;
        }
        if (sent, landed, merged) != last_move.1 {
            last_move = (Instant::now(), (sent, landed, merged));
        } else if last_move.0.elapsed() > Duration::from_secs(60) {
            anyhow::bail!(
                "the demo made no progress for 60 s ({sent} produced, {landed} landed, {merged} merged); \
                 rerun with --log-level info to see why"
            );
        }
        if cycle.is_idle() {
            tokio::time::sleep(interval).await;
        }
    }
    let _ = stop_tx.send(true);
    ingest.await??;
    let last = merger.catch_up().await?;
    merged += last.changes();
    bars.merged.set_position(merged);
    for b in [&bars.produced, &bars.landed, &bars.merged] {
        b.finish();
    }
    let produced = produced.unwrap_or_default();
    let s = summary::gather(&config, &merger, produced).await?;
    print!("{}", s.render(&config.bronze.url, &config.warehouse.url));
    if !merger.stopped().is_empty() {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_explore(dir: &Path, prefix: &str) {
    let d = dir.display();
    println!(
        "\nThe data stays in {d}. To explore it:\n  \
         sqlite3 {d}/warehouse.db '.tables'\n  \
         sqlite3 -header -column {d}/warehouse.db 'SELECT * FROM gold__dim_customers WHERE id = 1 ORDER BY version'\n  \
         duckdb -c \"SELECT op, count(*) FROM read_parquet('{d}/bronze/{prefix}.public.accounts/*/*.parquet', hive_partitioning = true) GROUP BY op\"\n  \
         tidemark --config {d}/tidemark.toml inspect bronze\n  \
         tidemark --config {d}/tidemark.toml replay --target-suffix again"
    );
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use crate::cli::{Cli, Command};

    fn events_of(args: &[&str]) -> u64 {
        let cli = Cli::parse_from(["tidemark", "demo"].iter().chain(args));
        let Command::Demo(d) = cli.command else {
            panic!("not the demo")
        };
        super::events(&d).unwrap()
    }

    #[test]
    fn a_duration_sets_how_many_records_the_rate_makes() {
        assert_eq!(events_of(&[]), 20_000);
        assert_eq!(events_of(&["--duration", "60", "--rate", "500"]), 30_000);
        assert_eq!(events_of(&["--duration", "60", "--events", "100"]), 100);
        assert_eq!(
            events_of(&["--duration", "5", "--rate", "0"]),
            super::MAX_EVENTS
        );
    }
}
