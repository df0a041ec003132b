//! `tidemark ingest`: land the configured topics in bronze until SIGTERM/SIGINT.

use std::path::Path;
use std::process::ExitCode;

use tracing::Instrument as _;

use super::shutdown_signal;
use crate::http::Readiness;

pub(super) fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config_path, false)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (store, root) = tidemark_bronze::store::open(&config.bronze)?;
        let ready = super::health::kafka(Readiness::default(), &config)?;
        let ready = super::health::store(ready, store, root);
        crate::http::serve(&config.metrics.listen, ready).await?;
        let stats = tidemark_bronze::service::run(&config, shutdown_signal())
            .instrument(tracing::info_span!("ingest"))
            .await?;
        eprintln!(
            "ingest stopped: {} records, {} commits, {} dead letters, {} fenced, {} flush retries",
            stats.records, stats.commits, stats.dead_letters, stats.fenced, stats.flush_retries
        );
        Ok(ExitCode::SUCCESS)
    })
}
