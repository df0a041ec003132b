//! The `tidemark` binary: parse the command line, start logging, dispatch.

use std::process::ExitCode;

use clap::Parser;

// glibc's allocator cost ~20% of ingest CPU (many short-lived decoded values) and fragmented
// memory; mimalloc is faster here and returns memory sooner.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    tidemark_core::allocator::configure();
    // Bronze on local disk, dead letters (raw record bytes) and a SQLite warehouse hold source
    // data: files and directories tidemark creates are its user's only (0600/0700).
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    quiet_on_broken_pipe();
    let cli = tidemark::cli::Cli::parse();
    // The demo draws progress bars: only warnings unless asked for more.
    let quiet = matches!(cli.command, tidemark::cli::Command::Demo(_))
        && std::env::var_os("RUST_LOG").is_none();
    let level = cli.log_level.as_deref().or(quiet.then_some("warn"));
    tidemark::telemetry::init(cli.log_format, level);
    tidemark::commands::run(cli)
}

/// `tidemark … | head`: when the reader goes away, stop quietly with the status a process killed
/// by SIGPIPE has (141), as coreutils do, instead of a panic message and 101.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if text.contains("failed printing to stdout") && text.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}
