//! The `tidemark` command line. Each subcommand lives in `commands/`; the work itself is in the
//! library crates (`tidemark-core`, `tidemark-wire`, `tidemark-bronze`, `tidemark-warehouse`); `http` serves
//! `/metrics`, `/healthz` and `/readyz`.

pub mod cli;
pub mod commands;
pub mod demo;
pub mod http;
pub mod produce;
pub mod telemetry;
