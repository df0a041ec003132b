//! `tidemark config check`: validate and print the effective configuration, secrets masked.

use std::path::Path;
use std::process::ExitCode;

use tidemark_core::config::LoadError;

pub(super) fn run(path: &Path) -> anyhow::Result<ExitCode> {
    match super::load_config(path, false) {
        Ok(config) => {
            println!("# {}: valid", path.display());
            print!("{}", config.to_masked_toml());
            Ok(ExitCode::SUCCESS)
        }
        Err(LoadError::Invalid(errors)) => {
            eprint!("{}: {errors}", path.display());
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
