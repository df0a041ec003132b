//! `tidemark replay`: rebuild tables from bronze, side by side or in place.

use std::path::Path;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};
use tidemark_warehouse::merger::CycleStats;
use tidemark_warehouse::replay::{Replay, ReplayRequest};

use super::merge::{exit_for, print_summary, runtime, serve};
use crate::cli::ReplayArgs;

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
