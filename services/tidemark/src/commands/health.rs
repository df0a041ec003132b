//! Readiness checks of the peers a command uses.

use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::path::Path;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tidemark_core::config::Config;
use tidemark_warehouse::sql::conn::Pool;

use crate::http::Readiness;

/// Kafka answers a metadata request.
pub(super) fn kafka(r: Readiness, config: &Config) -> anyhow::Result<Readiness> {
    let mut c = rdkafka::ClientConfig::new();
    c.set("bootstrap.servers", &config.kafka.bootstrap_servers);
    for (k, v) in &config.kafka.properties {
        c.set(k, v);
    }
    let consumer: Arc<BaseConsumer> = Arc::new(
        c.create()
            .map_err(|e| anyhow::anyhow!(tidemark_bronze::kafka::describe(&e)))?,
    );
    Ok(r.with("kafka", move || {
        let consumer = consumer.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                consumer
                    .fetch_metadata(None, Duration::from_secs(3))
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())?
        }
    }))
}

/// The bronze store lists its root.
pub(super) fn store(r: Readiness, store: Arc<dyn ObjectStore>, root: Path) -> Readiness {
    r.with("object_store", move || {
        let (store, root) = (store.clone(), root.clone());
        async move {
            store
                .list_with_delimiter(Some(&root))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    })
}

/// The warehouse answers a query.
pub(super) fn warehouse(r: Readiness, pool: Pool) -> Readiness {
    r.with("warehouse", move || {
        let pool = pool.clone();
        async move { pool.ping().await.map_err(|e| e.to_string()) }
    })
}
