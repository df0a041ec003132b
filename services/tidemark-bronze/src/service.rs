//! `tidemark ingest` from a [`Config`]: opens the store, the registry client, the consumer, and
//! runs the loop until shutdown.

use std::future::Future;

use rdkafka::consumer::Consumer;
use tidemark_core::config::Config;
use tidemark_wire::decode::{Decoder, DecoderOptions, Placeholder, Routing};
use tidemark_wire::registry::{RegistryClient, RegistrySettings};

use crate::ingest::{self, IngestSettings, IngestStats};
use crate::kafka::{IngestConsumer, IngestContext, consumer_config};
use crate::segment::FlushPolicy;
use crate::store;
use crate::writer::BronzeWriter;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("kafka: {}", crate::kafka::describe(.0))]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("schema registry client: {0}")]
    Registry(String),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Ingest(#[from] ingest::IngestError),
}

/// The decoder the config describes.
pub fn decoder(cfg: &Config) -> Result<Decoder, ServiceError> {
    let k = &cfg.kafka;
    let registry = match &k.schema_registry_url {
        Some(url) => {
            let s = RegistrySettings::from_config(url.clone(), k);
            Some(RegistryClient::new(s).map_err(|e| ServiceError::Registry(e.to_string()))?)
        }
        None => None,
    };
    let placeholder =
        Placeholder::new(&k.unavailable_value_placeholder).map_err(ServiceError::Config)?;
    let opts = DecoderOptions {
        format: k.format,
        placeholder,
        routing: Routing {
            heartbeat_prefix: k.heartbeat_topic_prefix.clone(),
        },
    };
    Ok(Decoder::new(opts, registry))
}

/// A subscribed consumer for the config's topics or pattern.
pub fn consumer(cfg: &Config) -> Result<IngestConsumer, ServiceError> {
    let k = &cfg.kafka;
    // librdkafka's prefetch takes a share of the memory budget (what users set wins): its
    // queue and one fetch response, each at most a sixteenth.
    let share = (cfg.bronze.memory_budget_bytes / 16).max(1 << 20);
    let mut properties = std::collections::BTreeMap::from([
        (
            "queued.max.messages.kbytes".to_owned(),
            (share / 1024).min(16_384).to_string(),
        ),
        (
            "fetch.max.bytes".to_owned(),
            share.min(52_428_800).to_string(),
        ),
    ]);
    properties.extend(k.properties.clone());
    let consumer: IngestConsumer = consumer_config(&k.bootstrap_servers, &k.group_id, &properties)
        .create_with_context(IngestContext::default())?;
    let topics: Vec<String> = match &k.topic_pattern {
        // librdkafka treats a subscription starting with ^ as a regex.
        Some(p) if p.starts_with('^') => vec![p.clone()],
        Some(p) => vec![format!("^{p}")],
        None => k.topics.clone(),
    };
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&refs)?;
    Ok(consumer)
}

pub fn settings(cfg: &Config) -> IngestSettings {
    let mut s = IngestSettings::new(FlushPolicy {
        max_records: cfg.bronze.max_records,
        max_bytes: cfg.bronze.max_bytes,
        max_age: cfg.bronze.max_age(),
    });
    s.max_buffered_bytes = cfg.bronze.max_buffered_bytes;
    s.memory_budget = Some(cfg.bronze.memory_budget_bytes);
    s.stream_files = cfg.bronze.stream_files;
    s
}

/// Brings the manifests up to the commit log; a failure is logged and retried next time (the
/// manifests stay consistent, only behind).
async fn refresh_manifests(
    kept: &mut crate::manifest::Manifests,
    store: &dyn object_store::ObjectStore,
    root: &object_store::path::Path,
) {
    match kept.refresh(store, root).await {
        Ok(done) => tracing::debug!(
            records = done.records,
            files = done.files_added,
            "manifests refreshed"
        ),
        Err(e) => {
            tidemark_core::metrics::ingest_error(
                tidemark_core::metrics::labels::IngestFault::ObjectStore,
            );
            tracing::warn!(error = %e, "could not refresh the bronze manifests; retrying later");
        }
    }
}

/// Compacts every partition of the bronze root (`bronze.compact_interval_ms`); a failure is
/// logged and tried again next time (a compaction cut short leaves only orphans).
async fn compact_all(
    store: &dyn object_store::ObjectStore,
    root: &object_store::path::Path,
    opts: &crate::compact::Options,
) {
    match crate::compact::compact(store, root, opts).await {
        Ok(done) => {
            let runs: usize = done.iter().map(|d| d.runs).sum();
            if runs > 0 {
                tracing::info!(runs, "bronze compacted");
            }
        }
        Err(e) => {
            tidemark_core::metrics::ingest_error(
                tidemark_core::metrics::labels::IngestFault::ObjectStore,
            );
            tracing::warn!(error = %e, "could not compact bronze; retrying later");
        }
    }
}

/// The background compaction of `bronze.compact_interval_ms`, if on.
fn spawn_compaction(
    cfg: &Config,
    store: &std::sync::Arc<dyn object_store::ObjectStore>,
    root: &object_store::path::Path,
) -> Option<tokio::task::JoinHandle<()>> {
    let every = cfg.bronze.compact_interval();
    if every.is_zero() {
        return None;
    }
    let opts = crate::compact::Options {
        target_bytes: cfg.bronze.compact_target_bytes,
        min_age: cfg.bronze.compact_min_age(),
        zstd_level: cfg.bronze.zstd_level,
        part_bytes: crate::compact::PART_BYTES,
    };
    let (store, root) = (store.clone(), root.clone());
    Some(tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            compact_all(store.as_ref(), &root, &opts).await;
        }
    }))
}

/// Runs ingest until `shutdown` completes.
pub async fn run(
    cfg: &Config,
    shutdown: impl Future<Output = ()>,
) -> Result<IngestStats, ServiceError> {
    let (store, root) = store::open(&cfg.bronze)?;
    let writer = BronzeWriter::new(store.clone(), root.clone(), cfg.bronze.zstd_level);
    let consumer = consumer(cfg)?;
    tracing::info!(bronze = %cfg.bronze.url, group = %cfg.kafka.group_id, "ingest started");
    let every = cfg.bronze.manifest_interval();
    let manifests = (!every.is_zero()).then(|| {
        let (store, root) = (store.clone(), root.clone());
        tokio::spawn(async move {
            let mut kept = crate::manifest::Manifests::default();
            loop {
                tokio::time::sleep(every).await;
                refresh_manifests(&mut kept, store.as_ref(), &root).await;
            }
        })
    });
    // Stopped with ingest: a compaction cut short is like a crash of `tidemark compact`.
    let compaction = spawn_compaction(cfg, &store, &root);
    let stats = ingest::run(consumer, decoder(cfg)?, writer, settings(cfg), shutdown).await;
    if let Some(task) = compaction {
        task.abort();
    }
    if let Some(task) = manifests {
        task.abort();
        // What the last flushes committed is in the manifests when ingest stops.
        let mut fresh = crate::manifest::Manifests::default();
        refresh_manifests(&mut fresh, store.as_ref(), &root).await;
    }
    let stats = stats?;
    tracing::info!(
        records = stats.records,
        bytes = stats.bytes,
        commits = stats.commits,
        dead_letters = stats.dead_letters,
        fenced = stats.fenced,
        flush_retries = stats.flush_retries,
        "ingest stopped"
    );
    Ok(stats)
}
