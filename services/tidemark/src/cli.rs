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
    /// Merge bronze into silver and SCD2 gold tables.
    Merge,
    /// Ingest and merge in one process.
    Run,
    /// Rebuild silver and gold from bronze.
    Replay,
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
