//! Validation of a parsed [`Config`]: every problem names its key and says how to fix it.

use std::collections::HashSet;
use std::fmt;

use super::{Config, SSL_MODES, TableKind};
use crate::converter::{Placeholder, WireFormat};

/// One problem in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The dotted key, e.g. `kafka.topics` or `tables[2].references.account_id`.
    pub key: String,
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {} ({})", self.key, self.problem, self.fix)
    }
}

/// All problems found, so users fix them in one go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration ({} problem(s)):", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The longest warehouse name of a table of `kind`: PostgreSQL truncates identifiers past 63
/// bytes (two names could become one), and the merger prefixes names with `fact_` (facts) or
/// `changes_` (a dimension's change log).
pub fn max_table_name_bytes(kind: Option<TableKind>) -> usize {
    crate::ident::MAX_IDENTIFIER_BYTES - table_prefix_bytes(kind)
}

fn table_prefix_bytes(kind: Option<TableKind>) -> usize {
    match kind {
        None => 0,
        Some(TableKind::Fact) => "fact_".len(),
        Some(TableKind::Dimension) => "changes_".len(),
    }
}

/// Warehouse table names follow [`crate::ident::check_identifier`] with the longest prefix the
/// merger adds to a table of `kind`.
pub fn is_valid_identifier(name: &str, kind: Option<TableKind>) -> bool {
    crate::ident::check_identifier(name, table_prefix_bytes(kind)).is_ok()
}

/// librdkafka properties tidemark sets itself.
const OWNED_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "kafka.bootstrap_servers"),
    ("group.id", "kafka.group_id"),
    (
        "enable.auto.commit",
        "nothing: tidemark commits offsets itself",
    ),
    (
        "enable.auto.offset.store",
        "nothing: tidemark stores offsets itself",
    ),
];

impl Config {
    /// Checks everything that can be checked without connecting anywhere.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errs = Vec::new();
        let mut err = |key: &str, problem: String, fix: &str| {
            errs.push(ConfigError {
                key: key.to_owned(),
                problem,
                fix: fix.to_owned(),
            })
        };
        let k = &self.kafka;
        if k.bootstrap_servers.trim().is_empty() {
            err(
                "kafka.bootstrap_servers",
                "is empty".into(),
                "set it to host:port[,host:port]",
            );
        }
        if k.group_id.trim().is_empty() {
            err(
                "kafka.group_id",
                "is empty".into(),
                "set a consumer group name, e.g. \"tidemark\"",
            );
        }
        match (&k.topics.is_empty(), &k.topic_pattern) {
            (false, Some(_)) => err(
                "kafka.topic_pattern",
                "is set together with kafka.topics".into(),
                "keep one of `topics` (a list) or `topic_pattern` (a regex)",
            ),
            (true, Some(p)) => {
                if let Err(e) = regex::Regex::new(p) {
                    err(
                        "kafka.topic_pattern",
                        format!("is not a valid regex: {e}"),
                        "fix the expression",
                    );
                }
            }
            _ => {}
        }
        for (i, t) in k.topics.iter().enumerate() {
            if t.trim().is_empty() {
                err(
                    &format!("kafka.topics[{i}]"),
                    "is empty".into(),
                    "remove it or name a topic",
                );
            }
        }
        if k.format == WireFormat::Avro && k.schema_registry_url.is_none() {
            err(
                "kafka.schema_registry_url",
                "is required when kafka.format = \"avro\"".into(),
                "set it to the Schema Registry URL, e.g. http://localhost:8081",
            );
        }
        if let Some(u) = &k.schema_registry_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            err(
                "kafka.schema_registry_url",
                format!("`{u}` is not an http(s) URL"),
                "use http://host:port or https://host",
            );
        }
        if k.schema_registry_password.is_some() && k.schema_registry_username.is_none() {
            err(
                "kafka.schema_registry_username",
                "is missing while a password is set".into(),
                "set the basic-auth user too",
            );
        }
        if k.schema_registry_client_cert.is_some() != k.schema_registry_client_key.is_some() {
            err(
                "kafka.schema_registry_client_cert",
                "and schema_registry_client_key must be set together".into(),
                "set both for mutual TLS, or neither",
            );
        }
        let tls_set = k.schema_registry_ca.is_some() || k.schema_registry_client_cert.is_some();
        if tls_set
            && k.schema_registry_url
                .as_deref()
                .is_some_and(|u| !u.starts_with("https://"))
        {
            err(
                "kafka.schema_registry_url",
                "is not https:// while TLS settings are given".into(),
                "use the registry's https:// URL",
            );
        }
        if k.schema_registry_timeout_ms == 0 {
            err(
                "kafka.schema_registry_timeout_ms",
                "is 0".into(),
                "use a timeout in ms, e.g. 10000",
            );
        }
        if let Err(e) = Placeholder::new(&k.unavailable_value_placeholder) {
            err(
                "kafka.unavailable_value_placeholder",
                e,
                "use the connector's unavailable.value.placeholder",
            );
        }
        for (prop, instead) in OWNED_PROPERTIES {
            if k.properties.contains_key(*prop) {
                err(
                    &format!("kafka.properties.\"{prop}\""),
                    "is managed by tidemark".into(),
                    &format!("set {instead}"),
                );
            }
        }

        let b = &self.bronze;
        let scheme_ok = ["file://", "s3://", "memory://"]
            .iter()
            .any(|s| b.url.starts_with(s));
        if !scheme_ok {
            err(
                "bronze.url",
                format!("`{}` has an unsupported scheme", b.url),
                "use file:///path, s3://bucket/prefix or memory://",
            );
        }
        if b.url.starts_with("s3://")
            && b.url["s3://".len()..]
                .split('/')
                .next()
                .unwrap_or("")
                .is_empty()
        {
            err(
                "bronze.url",
                "names no bucket".into(),
                "use s3://bucket/prefix",
            );
        }
        if b.max_records == 0 {
            err(
                "bronze.max_records",
                "is 0".into(),
                "use a positive count, e.g. 100000",
            );
        }
        if b.max_bytes < 1024 {
            err(
                "bronze.max_bytes",
                format!("{} is too small", b.max_bytes),
                "use at least 1024, e.g. 67108864",
            );
        }
        if b.max_buffered_bytes < b.max_bytes {
            err(
                "bronze.max_buffered_bytes",
                format!(
                    "{} is below bronze.max_bytes ({})",
                    b.max_buffered_bytes, b.max_bytes
                ),
                "use at least max_bytes, e.g. 4 × max_bytes",
            );
        }
        if b.memory_budget_bytes < 128 << 20 {
            err(
                "bronze.memory_budget_bytes",
                format!("{} is below 128 MiB", b.memory_budget_bytes),
                "ingest needs 64 MiB at rest (librdkafka, runtime) and room for segments: use at least 134217728, e.g. 268435456",
            );
        }
        if b.compact_interval_ms > 0 && b.compact_target_bytes < 1 << 20 {
            err(
                "bronze.compact_target_bytes",
                format!("{} is below 1 MiB", b.compact_target_bytes),
                "use the size engines read best, e.g. 134217728 (128 MiB)",
            );
        }
        if b.max_age_ms == 0 {
            err(
                "bronze.max_age_ms",
                "is 0".into(),
                "use the latency bound in ms, e.g. 5000",
            );
        }
        if !(1..=22).contains(&b.zstd_level) {
            err(
                "bronze.zstd_level",
                format!("{} is outside 1..=22", b.zstd_level),
                "use 1 (fast) to 22 (small)",
            );
        }
        if let Some(e) = &b.s3.endpoint
            && e.starts_with("http://")
            && !b.s3.allow_http
        {
            err(
                "bronze.s3.allow_http",
                "is false but the endpoint is http://".into(),
                "set allow_http = true or use https",
            );
        }
        if b.s3.request_timeout_ms == 0 {
            err(
                "bronze.s3.request_timeout_ms",
                "is 0".into(),
                "use a timeout in ms, e.g. 30000",
            );
        }
        if b.s3.secret_access_key.is_some() != b.s3.access_key_id.is_some() {
            err(
                "bronze.s3.access_key_id",
                "and secret_access_key must be set together".into(),
                "set both, or neither to use the AWS environment",
            );
        }

        let w = &self.warehouse.url;
        if !["postgres://", "postgresql://", "sqlite://", "sqlite:"]
            .iter()
            .any(|s| w.starts_with(s))
        {
            err(
                "warehouse.url",
                format!(
                    "`{}` has an unsupported scheme",
                    super::mask_url_password(w)
                ),
                "use postgres://user@host/db or sqlite://path/file.db",
            );
        }
        self.validate_warehouse_tls(&mut err);
        if self.merge.interval_ms == 0 {
            err(
                "merge.interval_ms",
                "is 0".into(),
                "use a pause in ms, e.g. 1000",
            );
        }
        if self.merge.lease_ms < 1_000 {
            err(
                "merge.lease_ms",
                format!("is {} ms", self.merge.lease_ms),
                "use at least 1000 (10000 by default): a merger renews its leases every cycle",
            );
        }
        if self.merge.max_transaction_rows < self.merge.max_batch_rows {
            err(
                "merge.max_transaction_rows",
                format!(
                    "is {}, below merge.max_batch_rows ({})",
                    self.merge.max_transaction_rows, self.merge.max_batch_rows
                ),
                "use at least merge.max_batch_rows (1000000 by default)",
            );
        }
        if self.metrics.listen.parse::<std::net::SocketAddr>().is_err() {
            err(
                "metrics.listen",
                format!("`{}` is not ip:port", self.metrics.listen),
                "use e.g. 127.0.0.1:9464 or 0.0.0.0:9464",
            );
        }

        let mut sources = HashSet::new();
        let mut names = HashSet::new();
        let dimensions: HashSet<&str> = self
            .tables
            .iter()
            .filter(|t| t.kind == Some(TableKind::Dimension))
            .map(|t| t.source.as_str())
            .collect();
        for (i, t) in self.tables.iter().enumerate() {
            let at = |k: &str| format!("tables[{i}].{k}");
            if t.source.trim().is_empty() {
                err(
                    &at("source"),
                    "is empty".into(),
                    "name the table's Kafka topic",
                );
            } else if !sources.insert(t.source.as_str()) {
                err(
                    &at("source"),
                    format!("`{}` is configured twice", t.source),
                    "merge the two [[tables]] entries",
                );
            }
            let name = t.warehouse_name();
            if !is_valid_identifier(name, t.kind) {
                err(
                    &at("name"),
                    format!("`{name}` is not a valid warehouse name"),
                    &format!(
                        "use at most {} bytes without control characters (63 with the prefix the \
                         merger adds); set `name` to override the topic's last segment",
                        max_table_name_bytes(t.kind)
                    ),
                );
            } else if !names.insert(name.to_owned()) {
                err(
                    &at("name"),
                    format!("`{name}` is used by two tables"),
                    "give one of them another `name`",
                );
            }
            for (list, cols) in [("key", &t.key), ("ignore_columns", &t.ignore_columns)] {
                for c in cols {
                    if c.trim().is_empty() {
                        err(&at(list), "holds an empty column name".into(), "remove it");
                    }
                }
            }
            if t.kind != Some(TableKind::Fact) && (!t.references.is_empty() || t.upsert) {
                err(
                    &at("kind"),
                    "references/upsert are set but kind is not \"fact\"".into(),
                    "set kind = \"fact\" or remove them",
                );
            }
            if t.kind == Some(TableKind::Fact) && t.upsert && t.key.is_empty() {
                err(
                    &at("key"),
                    "is empty but upsert = true".into(),
                    "name the fact's key columns",
                );
            }
            for (col, target) in &t.references {
                if !dimensions.contains(target.as_str()) {
                    err(
                        &format!("tables[{i}].references.{col}"),
                        format!("`{target}` is not a configured dimension"),
                        &format!(
                            "add [[tables]] with source = \"{target}\" and kind = \"dimension\""
                        ),
                    );
                }
            }
            for (col, ty) in &t.columns {
                if let Err(e) = ty.parsed() {
                    err(
                        &format!("tables[{i}].columns.{col}"),
                        format!("`{}` is not a supported column type", ty.text()),
                        &e.replace("unknown column type", "known types"),
                    );
                }
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errs))
        }
    }

    fn validate_warehouse_tls(&self, err: &mut impl FnMut(&str, String, &str)) {
        let w = &self.warehouse;
        let tls_set = w.ssl_mode.is_some()
            || w.ssl_root_cert.is_some()
            || w.ssl_client_cert.is_some()
            || w.ssl_client_key.is_some();
        if tls_set && w.url.starts_with("sqlite:") {
            err(
                "warehouse.ssl_mode",
                "TLS settings are given for a SQLite warehouse".into(),
                "remove them: they apply to PostgreSQL only",
            );
        }
        if let Some(m) = &w.ssl_mode
            && !SSL_MODES.contains(&m.as_str())
        {
            err(
                "warehouse.ssl_mode",
                format!("`{m}` is not a TLS mode"),
                &format!("use one of {}", SSL_MODES.join(", ")),
            );
        }
        if w.ssl_client_cert.is_some() != w.ssl_client_key.is_some() {
            err(
                "warehouse.ssl_client_cert",
                "and ssl_client_key must be set together".into(),
                "set both for certificate authentication, or neither",
            );
        }
    }
}
