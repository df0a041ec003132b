//! The `tidemark` command line. Each subcommand lives in `commands/`; the work itself is in the
//! library crates (`tidemark-core`, and later bronze and warehouse crates).

pub mod cli;
pub mod commands;
pub mod telemetry;
