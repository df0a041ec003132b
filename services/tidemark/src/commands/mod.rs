//! Subcommand dispatch. Exit codes: 0 ok, 1 failure, 2 not available in this version.

mod bronze_admin;
mod config_check;
pub(crate) mod generate;
mod health;
mod ingest;
mod inspect_decode;
mod merge;
mod replay;
mod run;

use std::path::Path;
use std::process::ExitCode;

use tidemark_core::config::{Config, ConfigError, ConfigErrors, LoadError};
use tidemark_wire::registry::{RegistryClient, RegistrySettings};

use crate::cli::{Cli, Command, ConfigCommand, DlqCommand, InspectCommand};

/// Exit status of a subcommand that a later version provides.
pub const NOT_AVAILABLE: u8 = 2;

pub fn run(cli: Cli) -> ExitCode {
    let result = match &cli.command {
        Command::Config(ConfigCommand::Check) => config_check::run(&cli.config),
        Command::Inspect(InspectCommand::Decode(args)) => inspect_decode::run(&cli.config, args),
        Command::Ingest => ingest::run(&cli.config),
        Command::Merge(args) => merge::merge(&cli.config, args.once),
        Command::Run => run::run(&cli.config),
        Command::Replay(args) => replay::replay(&cli.config, args),
        Command::Demo(args) => {
            warn_demo_ignores_config(&cli.config);
            crate::demo::run(args)
        }
        Command::Generate(args) => generate::run(&cli.config, args),
        Command::Gc(args) => bronze_admin::gc(
            &cli.config,
            std::time::Duration::from_secs(args.older_than_secs),
            args.dry_run,
        ),
        Command::Manifest => bronze_admin::manifest(&cli.config),
        Command::Compact(args) => bronze_admin::compact(&cli.config, args),
        Command::Inspect(InspectCommand::Bronze) => bronze_admin::inspect(&cli.config),
        Command::Dlq(DlqCommand::List) => bronze_admin::dlq_list(&cli.config),
        Command::Dlq(DlqCommand::Requeue) => not_available("dlq requeue", "a later version"),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The demo runs on embedded defaults: a config the user named is not silently ignored.
fn warn_demo_ignores_config(path: &Path) {
    let named = std::env::var_os("TIDEMARK_CONFIG").is_some() || path != Path::new("tidemark.toml");
    if named {
        eprintln!(
            "note: `demo` ignores --config/TIDEMARK_CONFIG ({}): it runs on embedded defaults and \
             writes its own config to <data dir>/tidemark.toml; use `tidemark run` for yours",
            path.display()
        );
    }
}

/// Loads and validates the configuration, then checks what only this binary can tell: the
/// Kafka properties against the librdkafka it links, and the Schema Registry's TLS material.
pub fn load_config(path: &Path, optional: bool) -> Result<Config, LoadError> {
    let config = Config::load(path, optional)?;
    let mut errs = tidemark_bronze::kafka_check::check_properties(&config.kafka.properties);
    if let Some(url) = &config.kafka.schema_registry_url
        && let Err(e) = RegistryClient::new(RegistrySettings::from_config(url, &config.kafka))
    {
        errs.push(ConfigError {
            key: "kafka.schema_registry_ca".into(),
            problem: e.to_string(),
            fix: "give PEM certificates and an unencrypted PEM private key".into(),
        });
    }
    if errs.is_empty() {
        Ok(config)
    } else {
        Err(LoadError::Invalid(ConfigErrors(errs)))
    }
}

/// An error and its causes on one line, each said once: many errors quote their source in
/// their own message (sqlx's configuration errors do, twice), so a cause already in the text is
/// skipped.
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let msg = cause.to_string();
        if msg.is_empty() || out.contains(&msg) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&msg);
    }
    out
}

/// Completes on SIGINT or SIGTERM. The handlers are installed when this is called (inside the
/// runtime), not when the future is first polled, so a signal during start-up is not lost to
/// the default action.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate()).ok();
    let int = signal(SignalKind::interrupt()).ok();
    async move {
        tokio::select! {
            () = recv(term) => {}
            () = recv(int) => {}
        }
        tracing::info!("shutdown requested");
    }
}

async fn recv(signal: Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(mut s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

fn not_available(command: &str, part: &str) -> anyhow::Result<ExitCode> {
    eprintln!(
        "`tidemark {command}` is not available yet in this version: it arrives with {part}. \
         Available now: `tidemark demo`, `generate`, `ingest`, `merge`, `run`, `replay`, `inspect bronze`, `inspect decode`, `dlq list`, `gc`, `manifest`, `config check`."
    );
    Ok(ExitCode::from(NOT_AVAILABLE))
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[test]
    fn error_chain_says_each_cause_once() {
        let inner = std::io::Error::other("certificate verify failed");
        let e = anyhow::Error::new(inner)
            .context("error with configuration: certificate verify failed");
        let e = e.context("warehouse");
        assert_eq!(
            error_chain(&e),
            "warehouse: error with configuration: certificate verify failed"
        );
    }
}
