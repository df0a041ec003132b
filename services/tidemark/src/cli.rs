//! The command line: a stable interface, scripts depend on it.

use std::path::PathBuf;
use tidemark_core::converter::WireFormat;
use tidemark_generator::Encoding;

use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand};

use crate::telemetry::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "tidemark",
    version,
    about = "Debezium CDC from Kafka to bronze Parquet and SCD2 warehouse tables"
)]
pub struct Cli {
    /// Configuration file (TOML); `TIDEMARK__SECTION__KEY` environment variables override it.
    #[arg(
        long,
        short,
        global = true,
        default_value = "tidemark.toml",
        env = "TIDEMARK_CONFIG"
    )]
    pub config: PathBuf,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "pretty")]
    pub log_format: LogFormat,
    /// Log filter (e.g. `info`, `tidemark=debug`); default: RUST_LOG or `info`.
    #[arg(long, global = true)]
    pub log_level: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Consume Debezium topics and land them as Parquet in bronze (exactly once).
    Ingest,
    /// Merge bronze into silver and SCD2 gold tables (until SIGTERM/SIGINT, or `--once`).
    Merge(MergeArgs),
    /// Ingest and merge in one process, until SIGTERM/SIGINT.
    Run,
    /// Rebuild silver and gold from bronze (side by side, in place, or from a point in time).
    Replay(ReplayArgs),
    /// Run the whole pipeline on embedded defaults with generated data (no config, nothing to
    /// install): an in-process Kafka, bronze on local files, a SQLite warehouse.
    Demo(DemoArgs),
    /// Produce the demo's banking change stream to a real Kafka (Debezium formats) at a rate.
    Generate(GenerateArgs),
    /// Look at records, bronze files, the commit log and lag.
    #[command(subcommand)]
    Inspect(InspectCommand),
    /// Dead letters.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Remove orphan bronze files (written, never committed: a crash between the two writes).
    Gc(GcArgs),
    /// Bring the manifests (`<bronze>/_manifest/<table>.parquet`: exactly the committed files,
    /// for DuckDB, Spark, Trino) up to the commit log now; `ingest` also does it every
    /// `bronze.manifest_interval_ms`.
    Manifest,
    /// Rewrite runs of small committed bronze files into large ones (one compaction record per
    /// run, atomic for every reader); `gc` removes the replaced files after its grace period.
    Compact(CompactArgs),
    /// Configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Merge everything bronze holds now, then exit.
    #[arg(long)]
    pub once: bool,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Topics to replay (repeat or comma-separate); default: every topic in bronze.
    #[arg(long, value_delimiter = ',')]
    pub tables: Vec<String>,
    /// Build into `silver_<suffix>`, `gold_<suffix>` (SQLite: `silver_<suffix>__…`) for a
    /// blue/green swap, leaving the live tables alone.
    #[arg(long)]
    pub target_suffix: Option<String>,
    /// Rebuild the tables that have bronze committed at or after this time (RFC 3339, e.g.
    /// 2026-11-01T00:00:00Z), and the facts of such dimensions; the others stay as they are.
    #[arg(long)]
    pub from: Option<String>,
    /// Drop and rebuild the live tables (required for a full replay without --target-suffix).
    #[arg(long)]
    pub in_place: bool,
}

/// What the generated stream looks like.
#[derive(Debug, Clone, Args)]
pub struct StreamArgs {
    /// Debezium `topic.prefix`: topics are `<prefix>.public.{customers,accounts,transactions}`.
    #[arg(long, default_value = "bank")]
    pub topic_prefix: String,
    /// Customers in the initial snapshot (accounts: ~1.5 per customer).
    #[arg(long, default_value_t = 200)]
    pub customers: usize,
    /// Share of dimension changes delivered late (after newer changes of the same row), 0–1.
    #[arg(long, default_value_t = 0.01)]
    pub late_ratio: f64,
    /// Seed of the generator (the same seed gives the same stream).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Records to generate (snapshot included); default 20,000, or with --duration as many as the
    /// rate makes in that time.
    #[arg(long)]
    pub events: Option<u64>,
    /// Records per second (0: as fast as possible).
    #[arg(long, default_value_t = 4_000.0)]
    pub rate: f64,
    /// Stop generating after this many seconds, even if fewer records were produced.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Where bronze, the warehouse and the config go; default: ./tidemark-demo with --keep,
    /// a temporary directory without.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Keep the data directory to explore with sqlite3 or DuckDB (default: removed at the end).
    #[arg(long)]
    pub keep: bool,
    /// Address of /metrics during the run (falls back to a free port when taken).
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub metrics_listen: String,
    #[command(flatten)]
    pub stream: StreamArgs,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Brokers; default: the configured `kafka.bootstrap_servers` (`kafka.properties` apply too).
    #[arg(long)]
    pub bootstrap_servers: Option<String>,
    /// json: the schema envelope on (`schemas.enable=true`); json-schemaless: payload only;
    /// avro: Confluent Avro, schemas registered in the Schema Registry.
    #[arg(long, value_parser = one_of(&Encoding::ALL, Encoding::as_str), default_value = "json")]
    pub format: Encoding,
    /// Schema Registry for --format avro; default: the configured one.
    #[arg(long)]
    pub schema_registry_url: Option<String>,
    /// Target records per second (0: as fast as the broker takes them).
    #[arg(long, default_value_t = 1_000.0)]
    pub rate: f64,
    /// Stop after this many records (default: run until --duration or Ctrl-C).
    #[arg(long)]
    pub events: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Create missing topics with this many partitions first (brokers without auto-create).
    #[arg(long)]
    pub create_topics: Option<i32>,
    #[command(flatten)]
    pub stream: StreamArgs,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Only remove orphans older than this many seconds (a writer may be about to commit younger ones).
    #[arg(long, default_value_t = 3600)]
    pub older_than_secs: u64,
    /// Report what would be removed, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct CompactArgs {
    /// Size a compacted file grows to, in MiB (the sum of the files it replaces).
    #[arg(long, default_value_t = 128.0)]
    pub target_mb: f64,
    /// Only compact records committed at least this many seconds ago.
    #[arg(long, default_value_t = 3600)]
    pub older_than_secs: u64,
    /// Size of the parts a compacted file is uploaded in, MiB (S3 wants at least 5).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(5..=5120))]
    pub part_mb: u64,
}

#[derive(Debug, Subcommand)]
pub enum InspectCommand {
    /// Decode one record value stored in a file and print the typed event.
    Decode(DecodeArgs),
    /// Show the committed chain per topic-partition, gaps and lag.
    Bronze,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters.
    List,
    /// Put dead letters back for another attempt (not available yet).
    Requeue,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print it with secrets masked.
    Check,
}

#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// File holding the record value (`-` for stdin): JSON, or Confluent Avro bytes.
    pub file: PathBuf,
    /// Wire format; default: the configured `kafka.format`, else json.
    #[arg(long, value_parser = one_of(&WireFormat::ALL, WireFormat::as_str))]
    pub format: Option<WireFormat>,
    /// File holding the record key, decoded the same way.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Topic the record came from (routes heartbeats and names the table).
    #[arg(long, default_value = "inspect")]
    pub topic: String,
    /// Schema Registry URL for Avro; default: the configured one.
    #[arg(long)]
    pub schema_registry_url: Option<String>,
}

/// One of `all`, by its name: the names are listed in `--help` and in errors.
fn one_of<T: Copy + Send + Sync + 'static>(
    all: &'static [T],
    name: fn(T) -> &'static str,
) -> impl clap::builder::TypedValueParser<Value = T> {
    clap::builder::PossibleValuesParser::new(all.iter().map(|v| name(*v))).map(move |s| {
        *all.iter()
            .find(|v| name(**v) == s)
            .expect("the parser accepts only listed names")
    })
}
