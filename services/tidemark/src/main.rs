//! The `tidemark` binary: parse the command line, start logging, dispatch.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = tidemark::cli::Cli::parse();
    tidemark::telemetry::init(cli.log_format, cli.log_level.as_deref());
    tidemark::commands::run(cli)
}
