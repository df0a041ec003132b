//! The typed configuration: one TOML file plus `TIDEMARK__SECTION__KEY` environment
//! overrides, unknown keys rejected, validated into errors that name the key and the fix before
//! anything starts. Defaults are defined once, here.

mod parse_errors;
mod secret;
mod validate;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format as _, Serialized, Toml};
use serde::{Deserialize, Serialize};

pub use secret::{Pem, Secret, is_secret_property, mask_url_password};
pub use validate::{ConfigError, ConfigErrors, is_valid_identifier, max_table_name_bytes};

use crate::converter::{DEFAULT_PLACEHOLDER, WireFormat};
use crate::mapping::ColType;

pub mod duration_ms;

/// The prefix of environment overrides: `TIDEMARK__KAFKA__GROUP_ID=x` sets `kafka.group_id`.
pub const ENV_PREFIX: &str = "TIDEMARK__";

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where change events come from.
    pub kafka: KafkaConfig,
    /// Where they land as Parquet.
    pub bronze: BronzeConfig,
    /// The SQL warehouse silver and gold are merged into.
    pub warehouse: WarehouseConfig,
    /// The micro-batch merger.
    pub merge: MergeConfig,
    /// Per-table settings; a table not listed still lands in bronze and silver.
    pub tables: Vec<TableConfig>,
    /// The metrics and health endpoint.
    pub metrics: MetricsConfig,
}

/// `[kafka]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list of brokers.
    pub bootstrap_servers: String,
    /// Consumer group of the ingesters.
    pub group_id: String,
    /// Topics to consume (Debezium names them `<topic.prefix>.<schema>.<table>`).
    pub topics: Vec<String>,
    /// A regular expression of topics to consume, instead of `topics`.
    pub topic_pattern: Option<String>,
    /// Wire format of keys and values: "json" (with or without schema envelope) or "avro".
    pub format: WireFormat,
    /// Confluent Schema Registry URL (required for format = "avro").
    pub schema_registry_url: Option<String>,
    /// Basic-auth user of the Schema Registry.
    pub schema_registry_username: Option<String>,
    /// Basic-auth password of the Schema Registry (a secret).
    pub schema_registry_password: Option<Secret>,
    /// Timeout of one Schema Registry request, ms.
    #[serde(deserialize_with = "duration_ms::deserialize")]
    pub schema_registry_timeout_ms: u64,
    /// CA bundle (PEM) the Schema Registry's certificate is checked against, on top of the
    /// system's trust store.
    pub schema_registry_ca: Option<Pem>,
    /// Client certificate (PEM) for mutual TLS with the Schema Registry.
    pub schema_registry_client_cert: Option<Pem>,
    /// The client certificate's private key (PEM).
    pub schema_registry_client_key: Option<Pem>,
    /// Debezium's `unavailable.value.placeholder` (unchanged TOASTed values); `hex:` allowed.
    pub unavailable_value_placeholder: String,
    /// Debezium's `topic.heartbeat.prefix`: topics starting with it carry heartbeats.
    pub heartbeat_topic_prefix: String,
    /// librdkafka properties passed as is (`security.protocol`, `sasl.*`, `ssl.*`, …); values
    /// may be `{ env = … }` or `{ file = … }`.
    #[serde(deserialize_with = "secret::deserialize_properties")]
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            bootstrap_servers: "localhost:9092".into(),
            group_id: "tidemark".into(),
            topics: Vec::new(),
            topic_pattern: None,
            format: WireFormat::Json,
            schema_registry_url: None,
            schema_registry_username: None,
            schema_registry_password: None,
            schema_registry_timeout_ms: 10_000,
            schema_registry_ca: None,
            schema_registry_client_cert: None,
            schema_registry_client_key: None,
            unavailable_value_placeholder: DEFAULT_PLACEHOLDER.into(),
            heartbeat_topic_prefix: "__debezium-heartbeat".into(),
            properties: BTreeMap::new(),
        }
    }
}

/// `[bronze]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BronzeConfig {
    /// Root of the bronze layer: `file:///path`, `s3://bucket/prefix` or `memory://`.
    pub url: String,
    /// Roll a file after this many records.
    pub max_records: u64,
    /// Roll a file after this many bytes of buffered data.
    pub max_bytes: u64,
    /// Roll a file when its first record is this old, ms (the latency bound).
    #[serde(deserialize_with = "duration_ms::deserialize")]
    pub max_age_ms: u64,
    /// zstd level of the Parquet files (1 is ~27% faster than 3 for ~2% more bytes).
    pub zstd_level: i32,
    /// Bound on bytes buffered over all partitions; above it the largest is flushed early.
    pub max_buffered_bytes: u64,
    /// What the ingest process may take in memory (RSS): buffers, Parquet encoding in flight,
    /// librdkafka's prefetch. Over it, segments are written early and consuming waits.
    pub memory_budget_bytes: u64,
    /// How often ingest brings the manifests (`_manifest/<table>.parquet`, the committed files
    /// for engines) up to the commit log, ms; 0 turns it off (`tidemark manifest` still does).
    #[serde(deserialize_with = "duration_ms::deserialize")]
    pub manifest_interval_ms: u64,
    /// A segment that reaches its share of the memory budget streams its change events into
    /// its file (a multipart upload) instead of being written early: files reach `max_records`
    /// / `max_bytes` at bounded memory. Off: such segments are written early (smaller files).
    pub stream_files: bool,
    /// How often ingest compacts bronze (`tidemark compact` in the background), ms; 0 (the
    /// default) leaves it to `tidemark compact` run from cron. Turn it on in one ingester.
    #[serde(deserialize_with = "duration_ms::deserialize")]
    pub compact_interval_ms: u64,
    /// Size a compacted file grows to, bytes.
    pub compact_target_bytes: u64,
    /// Only records committed at least this long ago are compacted, ms.
    #[serde(deserialize_with = "duration_ms::deserialize")]
    pub compact_min_age_ms: u64,
    /// S3-compatible storage settings (used by `s3://` URLs).
    pub s3: S3Config,
}

impl Default for BronzeConfig {
    fn default() -> Self {
        BronzeConfig {
            url: "file://./tidemark-data/bronze".into(),
            max_records: 30_000,
            max_bytes: 64 * 1024 * 1024,
            max_age_ms: 5_000,
            zstd_level: 1,
            max_buffered_bytes: 256 * 1024 * 1024,
            memory_budget_bytes: 256 * 1024 * 1024,
            manifest_interval_ms: 10_000,
            stream_files: true,
            compact_interval_ms: 0,
            compact_target_bytes: 128 * 1024 * 1024,
            compact_min_age_ms: 3_600_000,
            s3: S3Config::default(),
        }
    }
}

/// The `…_ms` keys as the code takes them: every consumer of a duration goes through these.
impl BronzeConfig {
    pub fn max_age(&self) -> Duration {
        Duration::from_millis(self.max_age_ms)
    }

    pub fn manifest_interval(&self) -> Duration {
        Duration::from_millis(self.manifest_interval_ms)
    }

    /// Zero: background compaction is off.
    pub fn compact_interval(&self) -> Duration {
        Duration::from_millis(self.compact_interval_ms)
    }

    pub fn compact_min_age(&self) -> Duration {
        Duration::from_millis(self.compact_min_age_ms)
    }
}

impl S3Config {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

impl KafkaConfig {
    pub fn schema_registry_timeout(&self) -> Duration {
        Duration::from_millis(self.schema_registry_timeout_ms)
    }
}

/// `[bronze.s3]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// Endpoint of an S3-compatible server (MinIO, Ceph); unset for AWS.
    pub endpoint: Option<String>,
    /// Region.
    pub region: String,
    /// Allow `http://` endpoints (local MinIO).
    pub allow_http: bool,
    /// Virtual-hosted-style requests (`bucket.host`); off means path style, as MinIO wants.
    pub virtual_hosted_style: bool,
    /// Access key id; unset to use the AWS environment/instance credentials.
    pub access_key_id: Option<String>,
    /// Secret access key (a secret).
    pub secret_access_key: Option<Secret>,
    /// Timeout of one request, ms (failed requests are retried with backoff).
    #[serde(deserialize_with = "duration_ms::deserialize")]
    pub request_timeout_ms: u64,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: None,
            region: "us-east-1".into(),
            allow_http: false,
            virtual_hosted_style: false,
            access_key_id: None,
            secret_access_key: None,
            request_timeout_ms: 30_000,
        }
    }
}

/// `[warehouse]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WarehouseConfig {
    /// `postgres://user@host/db` or `sqlite://path/to/file.db`; a password in the URL is masked
    /// when printed (prefer `password`).
    #[serde(serialize_with = "serialize_masked_url")]
    pub url: String,
    /// Warehouse password (a secret), instead of one in the URL.
    pub password: Option<Secret>,
    /// PostgreSQL TLS: `disable`, `allow`, `prefer` (the default), `require`, `verify-ca` or
    /// `verify-full`; overrides `sslmode` in the URL.
    pub ssl_mode: Option<String>,
    /// CA bundle (PEM) the server's certificate is checked against (`sslrootcert`).
    pub ssl_root_cert: Option<Pem>,
    /// Client certificate (PEM) for certificate authentication (`sslcert`).
    pub ssl_client_cert: Option<Pem>,
    /// The client certificate's private key (PEM, `sslkey`).
    pub ssl_client_key: Option<Pem>,
}

/// The values `warehouse.ssl_mode` (and libpq's `sslmode`) take.
pub const SSL_MODES: &[&str] = &[
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

impl Default for WarehouseConfig {
    fn default() -> Self {
        WarehouseConfig {
            url: "sqlite://./tidemark-data/warehouse.db".into(),
            password: None,
            ssl_mode: None,
            ssl_root_cert: None,
            ssl_client_cert: None,
            ssl_client_key: None,
        }
    }
}

fn serialize_masked_url<S: serde::Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&mask_url_password(url))
}

/// `[merge]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MergeConfig {
    /// Pause between micro-batches when there is nothing new, ms.
    #[serde(deserialize_with = "duration_ms::deserialize")]
    pub interval_ms: u64,
    /// At most this many changes of one table per merge transaction.
    pub max_batch_rows: usize,
    /// Also merge bronze topics that no `[[tables]]` entry names, into silver (false: only the
    /// configured tables; set it on every merger but one when several share a warehouse).
    pub unconfigured_topics: bool,
    /// How long a merger's hold on its tables lasts without renewal, ms: when several mergers
    /// share a warehouse, the tables of one that stops move to the others after this.
    #[serde(deserialize_with = "duration_ms::deserialize")]
    pub lease_ms: u64,
    /// How long a running merger may hold back a fact table's changes that are newer than what
    /// its dimensions have merged, ms (0: never): facts merged after their dimensions' changes
    /// need no re-pointing. Counted from when the facts landed in bronze.
    #[serde(deserialize_with = "duration_ms::deserialize")]
    pub fact_hold_ms: u64,
    /// "atomic": where the connector sends transaction metadata (a `<prefix>.transaction` topic
    /// in bronze), each cycle applies whole source transactions only, every table in one
    /// warehouse transaction, so readers only ever see source commit points. "off": each table
    /// in batches of its own.
    pub transactions: TransactionMode,
    /// How long a source transaction may hold changes back while its events or its END record
    /// are missing from bronze, ms; then it is applied as it is, with a warning and a metric.
    #[serde(deserialize_with = "duration_ms::deserialize")]
    pub transaction_timeout_ms: u64,
    /// The largest source transaction applied whole, in events of one table: a cycle reads past
    /// `max_batch_rows` up to this many to take a transaction in; a larger one is applied in
    /// pieces, with a warning and a metric.
    pub max_transaction_rows: usize,
}

/// `merge.transactions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TransactionMode {
    Atomic,
    Off,
}

impl Default for MergeConfig {
    fn default() -> Self {
        MergeConfig {
            interval_ms: 1_000,
            max_batch_rows: 50_000,
            unconfigured_topics: true,
            lease_ms: 10_000,
            fact_hold_ms: 1_000,
            transactions: TransactionMode::Atomic,
            transaction_timeout_ms: 30_000,
            max_transaction_rows: 1_000_000,
        }
    }
}

impl MergeConfig {
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }

    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms)
    }

    pub fn fact_hold(&self) -> Duration {
        Duration::from_millis(self.fact_hold_ms)
    }

    pub fn transaction_timeout(&self) -> Duration {
        Duration::from_millis(self.transaction_timeout_ms)
    }
}

/// What a table becomes in gold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TableKind {
    /// SCD Type 2 dimension `gold.dim_<name>`.
    Dimension,
    /// Fact table `gold.fact_<name>`.
    Fact,
}

/// `[[tables]]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// The Kafka topic of the table.
    pub source: String,
    /// Warehouse name; default: the topic's last segment.
    pub name: Option<String>,
    /// "dimension" or "fact"; unset: bronze and silver only.
    pub kind: Option<TableKind>,
    /// Business key columns; default: the Kafka record key's columns.
    #[serde(default)]
    pub key: Vec<String>,
    /// Columns whose changes alone make no new dimension version.
    #[serde(default)]
    pub ignore_columns: Vec<String>,
    /// Fact column → dimension topic it references.
    #[serde(default)]
    pub references: BTreeMap<String, String>,
    /// Declared column types for schemaless JSON (`balance = "numeric(12,2)"`), parsed once
    /// when the file is read; `validate` refuses any that did not parse.
    #[serde(default)]
    pub columns: BTreeMap<String, DeclaredType>,
    /// Facts: upsert one row per key instead of one row per event.
    #[serde(default)]
    pub upsert: bool,
}

/// A declared column type as written (`"numeric(12,2)"`) and as parsed. Reading never fails
/// on it, so `validate` reports a bad type together with every other problem of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredType {
    text: String,
    parsed: Result<ColType, String>,
}

impl DeclaredType {
    pub fn new(text: &str) -> DeclaredType {
        DeclaredType {
            text: text.to_owned(),
            parsed: ColType::parse(text).map_err(|e| e.to_string()),
        }
    }

    /// The type, or why the text is not one.
    pub fn parsed(&self) -> Result<ColType, &str> {
        self.parsed.as_ref().copied().map_err(String::as_str)
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

impl Serialize for DeclaredType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for DeclaredType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<DeclaredType, D::Error> {
        String::deserialize(d).map(|t| DeclaredType::new(&t))
    }
}

impl TableConfig {
    /// The declared column types. A config that passed `validate` has every one parsed; one
    /// built otherwise keeps only those that parse.
    pub fn declared_types(&self) -> BTreeMap<String, ColType> {
        self.columns
            .iter()
            .filter_map(|(c, t)| Some((c.clone(), t.parsed().ok()?)))
            .collect()
    }

    /// The warehouse name: configured, or the topic's last segment.
    pub fn warehouse_name(&self) -> &str {
        self.name
            .as_deref()
            .unwrap_or_else(|| self.source.rsplit('.').next().unwrap_or(&self.source))
    }
}

/// `[metrics]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: "127.0.0.1:9464".into(),
        }
    }
}

/// Loading failed: the file, a key's type, or validation.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The file is not valid TOML, or a value has the wrong type or an unknown key.
    #[error("{0}")]
    Parse(ConfigErrors),
    #[error("{0}")]
    Invalid(ConfigErrors),
}

impl Config {
    /// Loads `path` (which must exist unless `optional`) plus environment overrides, then
    /// validates.
    pub fn load(path: &Path, optional: bool) -> Result<Config, LoadError> {
        if !optional && !path.exists() {
            return Err(LoadError::Read {
                path: path.display().to_string(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            });
        }
        let text = if path.exists() {
            std::fs::read_to_string(path).map_err(|source| LoadError::Read {
                path: path.display().to_string(),
                source,
            })?
        } else {
            String::new()
        };
        Config::from_toml_and_env(&text, std::env::vars())
    }

    /// Builds from TOML text and environment variables (injected for tests).
    pub fn from_toml_and_env(
        toml_text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, LoadError> {
        let overrides: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        let syntax = parse_errors::syntax_errors(toml_text);
        if !syntax.is_empty() {
            return Err(LoadError::Parse(ConfigErrors(syntax)));
        }
        let mut fig =
            Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(toml_text));
        // Overrides are applied explicitly (not by figment's Env) so tests can inject them.
        let mut env = Vec::new();
        for (k, v) in overrides {
            let key = k[ENV_PREFIX.len()..]
                .to_ascii_lowercase()
                .replace("__", ".");
            let value: figment::value::Value = v
                .parse::<figment::value::Value>()
                .unwrap_or_else(|_| figment::value::Value::from(v.clone()));
            fig = fig.merge(Serialized::default(&key, value));
            env.push((k, key));
        }
        let origins = parse_errors::Origins {
            text: toml_text,
            env: &env,
        };
        let config =
            parse_errors::extract(&fig, &origins).map_err(|e| LoadError::Parse(ConfigErrors(e)))?;
        config.validate().map_err(LoadError::Invalid)?;
        Ok(config)
    }

    /// The effective configuration as TOML, secrets masked.
    pub fn to_masked_toml(&self) -> String {
        let mut shown = self.clone();
        if let Some(u) = &mut shown.kafka.schema_registry_url {
            *u = mask_url_password(u);
        }
        for (k, v) in shown.kafka.properties.iter_mut() {
            if is_secret_property(k) {
                *v = "***".into();
            }
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }
}
