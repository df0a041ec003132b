//! `tidemark inspect bronze`, `tidemark dlq list`, `tidemark gc`: read-mostly views of a bronze
//! root through its commit log.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use tidemark_bronze::{admin, store};
use tidemark_core::config::Config;

fn open(
    config_path: &Path,
) -> anyhow::Result<(
    Config,
    std::sync::Arc<dyn object_store::ObjectStore>,
    object_store::path::Path,
)> {
    let config = Config::load(config_path, false)?;
    let (store, root) = store::open(&config.bronze)?;
    Ok((config, store, root))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

pub fn inspect(config_path: &Path) -> anyhow::Result<ExitCode> {
    let (config, store, root) = open(config_path)?;
    let summaries = runtime()?.block_on(admin::summarize(store.as_ref(), &root))?;
    println!("bronze {}", config.bronze.url);
    println!(
        "{:<40} {:>5} {:>12} {:>12} {:>7} {:>6} {:>10} {:>12} {:>6} {:>6}  gaps",
        "topic", "part", "first", "next", "commits", "files", "rows", "bytes", "dlq", "tomb"
    );
    let mut broken = false;
    for s in &summaries {
        broken |= !s.gaps.is_empty();
        println!(
            "{:<40} {:>5} {:>12} {:>12} {:>7} {:>6} {:>10} {:>12} {:>6} {:>6}  {}",
            s.topic,
            s.partition,
            s.first_offset,
            s.next_offset,
            s.commits,
            s.files,
            s.rows,
            s.bytes,
            s.dead_letters,
            s.skipped,
            if s.gaps.is_empty() {
                "none".to_owned()
            } else {
                format!("{:?}", s.gaps)
            }
        );
    }
    if summaries.is_empty() {
        println!("(nothing committed yet)");
    }
    Ok(if broken {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub fn dlq_list(config_path: &Path) -> anyhow::Result<ExitCode> {
    let (_, store, root) = open(config_path)?;
    let letters = runtime()?.block_on(admin::dead_letters(store.as_ref(), &root))?;
    for l in &letters {
        println!("{}", serde_json::to_string(l)?);
    }
    eprintln!("{} dead letter(s)", letters.len());
    Ok(ExitCode::SUCCESS)
}

pub fn gc(config_path: &Path, older_than: Duration, dry_run: bool) -> anyhow::Result<ExitCode> {
    let (_, store, root) = open(config_path)?;
    let report = runtime()?.block_on(admin::gc(store.as_ref(), &root, older_than, dry_run))?;
    for o in &report.orphans {
        println!("{} {o}", if dry_run { "would remove" } else { "removed" });
    }
    eprintln!(
        "{} referenced file(s), {} orphan(s) {}, {} orphan(s) younger than {older_than:?} kept",
        report.referenced,
        report.orphans.len(),
        if dry_run { "found" } else { "removed" },
        report.kept_young
    );
    Ok(ExitCode::SUCCESS)
}
