//! `tidemark run`: ingest and merge in one process.

use std::path::Path;
use std::process::ExitCode;

use tidemark_warehouse::merger::{MergeOptions, Merger};
use tokio::sync::watch;
use tracing::Instrument as _;

use super::merge::{exit_for, print_summary, runtime, serve};
use super::shutdown_signal;

/// Ingest and merge side by side; on SIGTERM/SIGINT ingest flushes and leaves the group, then
/// the merger applies what was flushed and the process exits.
pub(super) fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config_path, false)?;
    runtime()?.block_on(async {
        let signal = shutdown_signal();
        let mut merger = Merger::open(&config, MergeOptions::from_config(&config)).await?;
        serve(&config, &merger, true).await?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let wait = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|v| *v).await;
        };
        let ingest = {
            let config = config.clone();
            let rx = stop_rx.clone();
            tokio::spawn(
                async move { tidemark_bronze::service::run(&config, wait(rx)).await }
                    .instrument(tracing::info_span!("ingest")),
            )
        };
        {
            let merging = merger
                .run(wait(stop_rx))
                .instrument(tracing::info_span!("merge"));
            tokio::pin!(merging);
            tokio::select! {
                () = signal => {}
                r = &mut merging => { r?; }
            }
            let _ = stop_tx.send(true);
            let _ = merging.await;
        }
        let stats = ingest.await??;
        eprintln!(
            "ingest stopped: {} records, {} commits, {} dead letters",
            stats.records, stats.commits, stats.dead_letters
        );
        let last = merger.catch_up().await?;
        print_summary("final merge", &last);
        Ok(exit_for(merger.stopped().len()))
    })
}
