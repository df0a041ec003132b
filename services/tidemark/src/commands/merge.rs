//! `tidemark merge`, `run` and `replay`.

use std::path::Path;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};
use tidemark_core::config::Config;
use tidemark_warehouse::merger::{CycleStats, MergeOptions, Merger};
use tidemark_warehouse::replay::{Replay, ReplayRequest};
use tokio::sync::watch;
use tracing::Instrument as _;

use super::{health, shutdown_signal};
use crate::cli::ReplayArgs;
use crate::http::Readiness;

/// Serves the metrics endpoint with checks of the merger's peers (and Kafka for `run`).
async fn serve(config: &Config, merger: &Merger, kafka: bool) -> anyhow::Result<()> {
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

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn print_summary(what: &str, stats: &CycleStats) {
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
fn exit_for(stopped: usize) -> ExitCode {
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

pub(super) fn replay(config_path: &Path, args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config_path, false)?;
    if args.target_suffix.is_none() && args.from.is_none() && !args.in_place {
        anyhow::bail!(
            "a full replay replaces tables: pass --target-suffix NAME to build side by side (then swap), \
             or --in-place to drop and rebuild the live tables"
        );
    }
    let from = args
        .from
        .as_deref()
        .map(|t| {
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|t| t.to_utc())
                .map_err(|e| {
                    anyhow::anyhow!("--from `{t}`: {e} (use RFC 3339, e.g. 2026-11-01T00:00:00Z)")
                })
        })
        .transpose()?;
    let req = ReplayRequest {
        target_suffix: args.target_suffix.clone(),
        tables: args.tables.clone(),
        from,
    };
    runtime()?.block_on(async {
        let mut replay = Replay::prepare(&config, &req).await?;
        for note in &replay.notes {
            eprintln!("replay: {note}");
        }
        serve(&config, &replay.merger, false).await?;
        let bar = ProgressBar::new(replay.pending).with_style(
            ProgressStyle::with_template(
                "replay {bar:40} {pos}/{len} changes  {per_sec}  eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let stopped = replay
            .run(|s| {
                bar.inc(s.changes());
                print_summary(
                    "replay",
                    &CycleStats {
                        tables: Default::default(),
                        stopped: s.stopped.clone(),
                    },
                );
            })
            .await?;
        bar.finish();
        eprintln!(
            "replay done into {}",
            replay.merger.target().schemas().join(", ")
        );
        Ok(exit_for(stopped))
    })
}
