//! `tidemark merge`, and what `run` and `replay` share with it: the metrics endpoint, the
//! runtime, the per-table summary and the exit status.

use std::path::Path;
use std::process::ExitCode;

use tidemark_core::config::Config;
use tidemark_warehouse::merger::{CycleStats, MergeOptions, Merger};
use tracing::Instrument as _;

use super::{health, shutdown_signal};
use crate::http::Readiness;

/// Serves the metrics endpoint with checks of the merger's peers (and Kafka for `run`).
pub(super) async fn serve(config: &Config, merger: &Merger, kafka: bool) -> anyhow::Result<()> {
    let mut ready = Readiness::default();
    if kafka {
        ready = health::kafka(ready, config)?;
    }
    let (store, root) = tidemark_bronze::store::open(&config.bronze)?;
    ready = health::store(ready, store, root);
    ready = health::warehouse(ready, merger.pool().clone());
    crate::http::serve(&config.metrics.listen, ready).await?;
    Ok(())
}

pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

pub(super) fn print_summary(what: &str, stats: &CycleStats) {
    for (table, a) in &stats.tables {
        eprintln!(
            "{what}: {table}: {} changes, {} silver rows, {} versions opened, {} updated, {} late, {} redelivered, {} facts",
            a.changes,
            a.silver_rows,
            a.dim.opened,
            a.dim.updated,
            a.dim.late,
            a.dim.redelivered,
            a.facts
        );
    }
    for (table, why) in &stats.stopped {
        eprintln!("{what}: {table} STOPPED: {why}");
    }
}

/// Exit 1 when a table stopped, so scripts notice.
pub(super) fn exit_for(stopped: usize) -> ExitCode {
    if stopped == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

pub(super) fn merge(config_path: &Path, once: bool) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config_path, false)?;
    runtime()?.block_on(async {
        let shutdown = shutdown_signal();
        let mut merger = Merger::open(&config, MergeOptions::from_config(&config)).await?;
        tracing::info!(warehouse = %tidemark_core::config::mask_url_password(&config.warehouse.url), "merge started");
        serve(&config, &merger, false).await?;
        if once {
            let stats = merger.catch_up().await?;
            print_summary("merge", &stats);
            return Ok(exit_for(merger.stopped().len()));
        }
        merger
            .run(shutdown)
            .instrument(tracing::info_span!("merge"))
            .await?;
        tracing::info!("merge stopped");
        Ok(exit_for(merger.stopped().len()))
    })
}
