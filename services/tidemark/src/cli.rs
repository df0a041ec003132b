//! The command line (DESIGN §7): a stable interface, scripts depend on it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    /// Run the whole pipeline on embedded defaults with generated data.
    Demo,
    /// Produce generated Debezium change events to Kafka.
    Generate,
    /// Look at records, bronze files, the commit log and lag.
    #[command(subcommand)]
    Inspect(InspectCommand),
    /// Dead letters.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Remove orphan bronze files (written, never committed: a crash between the two writes).
    Gc(GcArgs),
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
    /// Re-apply history from the first bronze range committed at or after this time
    /// (RFC 3339, e.g. 2026-11-01T00:00:00Z) instead of rebuilding from scratch.
    #[arg(long)]
    pub from: Option<String>,
    /// Drop and rebuild the live tables (required for a full replay without --target-suffix).
    #[arg(long)]
    pub in_place: bool,
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

/// Wire format for `inspect decode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WireFormat {
    Json,
    Avro,
}

#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// File holding the record value (`-` for stdin): JSON, or Confluent Avro bytes.
    pub file: PathBuf,
    /// Wire format; default: the configured `kafka.format`, else json.
    #[arg(long, value_enum)]
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
