//! Opening the bronze object store from `[bronze]`: `file://`, `s3://` (MinIO, Ceph, AWS) or
//! `memory://`. Returns the store and the root path inside it.

use std::sync::Arc;

use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, RetryConfig};
use tidemark_core::config::BronzeConfig;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("bronze.url `{url}`: {reason}")]
    Url { url: String, reason: String },
    #[error("bronze store: {0}")]
    Store(#[from] object_store::Error),
}

/// The store and the bronze root inside it.
pub fn open(cfg: &BronzeConfig) -> Result<(Arc<dyn ObjectStore>, Path), StoreError> {
    let url = cfg.url.as_str();
    let bad = |reason: &str| StoreError::Url {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    if let Some(rest) = url.strip_prefix("file://") {
        let dir = std::path::Path::new(rest);
        std::fs::create_dir_all(dir)
            .map_err(|e| bad(&format!("cannot create the directory: {e}")))?;
        let store = LocalFileSystem::new_with_prefix(dir)?;
        return Ok((Arc::new(store), Path::default()));
    }
    if url.starts_with("memory://") {
        return Ok((Arc::new(InMemory::new()), Path::default()));
    }
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("names no bucket"));
        }
        let s3 = &cfg.s3;
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_region(&s3.region)
            .with_allow_http(s3.allow_http)
            .with_virtual_hosted_style_request(s3.virtual_hosted_style)
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(s3.request_timeout())
                    .with_allow_http(s3.allow_http),
            )
            // Few quick retries inside object_store; the ingest loop retries a failed flush itself.
            .with_retry(RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(10),
                ..Default::default()
            });
        if let Some(e) = &s3.endpoint {
            b = b.with_endpoint(e);
        }
        if let (Some(id), Some(secret)) = (&s3.access_key_id, &s3.secret_access_key) {
            b = b
                .with_access_key_id(id)
                .with_secret_access_key(secret.expose());
        }
        return Ok((Arc::new(b.build()?), Path::from(prefix.trim_matches('/'))));
    }
    Err(bad(
        "unsupported scheme: use file:///path, s3://bucket/prefix or memory://",
    ))
}
