//! `tidemark inspect decode FILE`: decode one record value and print the typed event, so users
//! can debug their connector settings.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use tidemark_core::config::Config;
use tidemark_core::event::RawRecord;
use tidemark_wire::decode::{Decoder, DecoderOptions, Placeholder, Routing, WireFormat};
use tidemark_wire::registry::{RegistryClient, RegistrySettings};

use crate::cli::DecodeArgs;

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    if path == Path::new("-") {
        std::io::stdin().read_to_end(&mut buf)?;
    } else {
        buf = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    }
    Ok(buf)
}

pub(super) fn run(config_path: &Path, args: &DecodeArgs) -> anyhow::Result<ExitCode> {
    // The config is optional here: decoding a file needs at most the registry URL.
    let config = Config::load(config_path, true).unwrap_or_default();
    let format = args.format.unwrap_or(config.kafka.format);
    let registry_url = args
        .schema_registry_url
        .clone()
        .or(config.kafka.schema_registry_url.clone());
    let registry = match (format, registry_url) {
        (WireFormat::Avro, Some(url)) => Some(RegistryClient::new(RegistrySettings::from_config(
            url,
            &config.kafka,
        ))?),
        (WireFormat::Avro, None) => anyhow::bail!(
            "Avro needs a Schema Registry: pass --schema-registry-url or set kafka.schema_registry_url"
        ),
        _ => None,
    };
    let placeholder = Placeholder::new(&config.kafka.unavailable_value_placeholder)
        .map_err(anyhow::Error::msg)?;
    let routing = Routing {
        heartbeat_prefix: config.kafka.heartbeat_topic_prefix.clone(),
    };
    let mut decoder = Decoder::new(
        DecoderOptions {
            format,
            placeholder,
            routing,
        },
        registry,
    );
    let value = read(&args.file)?;
    let key = args.key.as_deref().map(read).transpose()?;
    let trimmed: &[u8] = if format == WireFormat::Json {
        value.trim_ascii()
    } else {
        &value
    };
    // An empty file is a record with a null value (a tombstone).
    let record = RawRecord {
        topic: &args.topic,
        partition: 0,
        offset: 0,
        timestamp_ms: None,
        key: key.as_deref().map(|k| {
            if format == WireFormat::Json {
                k.trim_ascii()
            } else {
                k
            }
        }),
        value: (!trimmed.is_empty()).then_some(trimmed),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match runtime.block_on(decoder.decode(&record)) {
        Ok(decoded) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&tidemark_core::render::decoded(&decoded))?
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
