//! Confluent Schema Registry client: fetch a schema by id over HTTP, cached forever (ids are
//! immutable), with basic auth, TLS (an extra CA bundle, a client certificate), a request
//! timeout and bounded retries with backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;

use tidemark_core::config::{KafkaConfig, Pem, Secret};

/// Why a schema could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error(
        "schema id {id} is not in the Schema Registry at {url} (404): the record was written against another registry, or the subject was hard-deleted"
    )]
    SchemaNotFound { id: u32, url: String },
    #[error(
        "Schema Registry at {url} refused the credentials (HTTP {status}): check kafka.schema_registry_username / _password"
    )]
    Unauthorized { url: String, status: u16 },
    #[error(
        "Schema Registry at {url} answered HTTP {status} for schema id {id} after {attempts} attempts: {body}"
    )]
    Http {
        url: String,
        id: u32,
        status: u16,
        attempts: u32,
        body: String,
    },
    #[error(
        "Schema Registry at {url} unreachable for schema id {id} after {attempts} attempts: {reason}"
    )]
    Unavailable {
        url: String,
        id: u32,
        attempts: u32,
        reason: String,
    },
    #[error(
        "schema id {id} is a {schema_type} schema; tidemark decodes Avro only with format = \"avro\""
    )]
    NotAvro { id: u32, schema_type: String },
    #[error("Schema Registry answered an unreadable body for schema id {id}: {reason}")]
    BadResponse { id: u32, reason: String },
    #[error("Schema Registry at {url} did not register subject {subject}: {reason}")]
    Register {
        url: String,
        subject: String,
        reason: String,
    },
}

impl RegistryError {
    /// Whether retrying later may succeed (registry down or overloaded), as opposed to a
    /// record that will never decode.
    /// Whether the registry refused tidemark's credentials: no record can decode until someone
    /// fixes the config, so ingest stops with the error instead of retrying or dead-lettering.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, RegistryError::Unauthorized { .. })
    }

    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Unavailable { .. } => true,
            RegistryError::Http { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// How to reach the registry.
#[derive(Debug, Clone)]
pub struct RegistrySettings {
    pub url: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Per request.
    pub timeout: Duration,
    /// Attempts per lookup (1 = no retry).
    pub attempts: u32,
    /// First backoff; doubles per attempt.
    pub backoff: Duration,
    /// CA bundle trusted on top of the system's.
    pub ca: Option<Pem>,
    /// Client certificate and key for mutual TLS.
    pub identity: Option<(Pem, Pem)>,
}

/// A TLS setting reqwest refused (a PEM that holds no certificate or key).
#[derive(Debug, thiserror::Error)]
#[error("Schema Registry TLS: {what} ({origin}) is unusable: {reason}")]
pub struct RegistryTlsError {
    what: &'static str,
    origin: String,
    reason: String,
}

impl RegistrySettings {
    pub fn new(url: impl Into<String>) -> Self {
        RegistrySettings {
            url: url.into(),
            username: None,
            password: None,
            timeout: Duration::from_secs(10),
            attempts: 5,
            backoff: Duration::from_millis(200),
            ca: None,
            identity: None,
        }
    }

    /// What `[kafka]` says about the registry at `url`.
    pub fn from_config(url: impl Into<String>, k: &KafkaConfig) -> Self {
        RegistrySettings {
            username: k.schema_registry_username.clone(),
            password: k.schema_registry_password.clone(),
            timeout: k.schema_registry_timeout(),
            ca: k.schema_registry_ca.clone(),
            identity: k
                .schema_registry_client_cert
                .clone()
                .zip(k.schema_registry_client_key.clone()),
            ..RegistrySettings::new(url)
        }
    }
}

/// A failed request as users need it: reqwest's own message is only "error sending request",
/// the cause (refused connection, unknown certificate issuer, missing client certificate) is in
/// its sources. The URL is left out: it may carry userinfo.
fn request_error(e: reqwest::Error) -> String {
    use std::error::Error as _;
    let e = e.without_url();
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let msg = s.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        source = s.source();
    }
    out
}

fn tls_error(what: &'static str, pem: &Pem, e: reqwest::Error) -> RegistryTlsError {
    use std::error::Error as _;
    let reason = e.source().map_or_else(|| e.to_string(), |s| s.to_string());
    RegistryTlsError {
        what,
        origin: pem.origin().to_owned(),
        reason,
    }
}

/// A registry client with a shared cache of raw schema texts by id.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    settings: Arc<RegistrySettings>,
    http: reqwest::Client,
    cache: Arc<Mutex<HashMap<u32, Arc<str>>>>,
}

#[derive(Deserialize)]
struct SchemaResponse {
    schema: String,
    #[serde(rename = "schemaType")]
    schema_type: Option<String>,
}

impl RegistryClient {
    pub fn new(settings: RegistrySettings) -> Result<RegistryClient, RegistryTlsError> {
        let mut builder = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout);
        if let Some(ca) = &settings.ca {
            let certs = reqwest::Certificate::from_pem_bundle(ca.text().as_bytes())
                .map_err(|e| tls_error("schema_registry_ca", ca, e))?;
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        if let Some((cert, key)) = &settings.identity {
            let pem = format!("{}\n{}\n", cert.text(), key.text());
            let id = reqwest::Identity::from_pem(pem.as_bytes())
                .map_err(|e| tls_error("schema_registry_client_cert/key", cert, e))?;
            builder = builder.identity(id);
        }
        let http = builder.build().map_err(|e| RegistryTlsError {
            what: "client",
            origin: "the TLS settings".into(),
            reason: e.to_string(),
        })?;
        Ok(RegistryClient {
            settings: Arc::new(settings),
            http,
            cache: Arc::default(),
        })
    }

    /// The Avro schema text registered under `id`.
    pub async fn schema_text(&self, id: u32) -> Result<Arc<str>, RegistryError> {
        if let Some(s) = self.cache.lock().expect("cache lock").get(&id) {
            return Ok(s.clone());
        }
        let text: Arc<str> = self.fetch(id).await?.into();
        self.cache
            .lock()
            .expect("cache lock")
            .insert(id, text.clone());
        Ok(text)
    }

    /// Registers an Avro schema under `subject` (`<topic>-key`/`<topic>-value`) and returns
    /// its id; registering the same schema again returns the same id.
    pub async fn register(&self, subject: &str, schema_text: &str) -> Result<u32, RegistryError> {
        let s = &self.settings;
        let fail = |reason: String| RegistryError::Register {
            url: tidemark_core::config::mask_url_password(&s.url),
            subject: subject.to_owned(),
            reason,
        };
        let url = format!(
            "{}/subjects/{subject}/versions",
            s.url.trim_end_matches('/')
        );
        let mut req = self
            .http
            .post(&url)
            .header("Content-Type", "application/vnd.schemaregistry.v1+json")
            .json(&serde_json::json!({ "schema": schema_text }));
        if let Some(user) = &s.username {
            req = req.basic_auth(user, s.password.as_ref().map(|p| p.expose()));
        }
        let resp = req.send().await.map_err(|e| fail(request_error(e)))?;
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        if status != 200 {
            return Err(fail(format!(
                "HTTP {status}: {}",
                body.chars().take(200).collect::<String>()
            )));
        }
        #[derive(Deserialize)]
        struct Registered {
            id: u32,
        }
        let r: Registered = serde_json::from_str(&body).map_err(|e| fail(e.to_string()))?;
        Ok(r.id)
    }

    async fn fetch(&self, id: u32) -> Result<String, RegistryError> {
        let s = &self.settings;
        let base = s.url.trim_end_matches('/');
        let url = format!("{base}/schemas/ids/{id}");
        let mut backoff = s.backoff;
        let attempts = s.attempts.max(1);
        let mut last: Option<RegistryError> = None;
        for attempt in 1..=attempts {
            if attempt > 1 {
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2);
            }
            let mut req = self
                .http
                .get(&url)
                .header("Accept", "application/vnd.schemaregistry.v1+json");
            if let Some(user) = &s.username {
                req = req.basic_auth(user, s.password.as_ref().map(|p| p.expose()));
            }
            match req.send().await {
                Err(e) => {
                    let reason = request_error(e);
                    tracing::warn!(registry = %tidemark_core::config::mask_url_password(&s.url), id, attempt, error = %reason, "schema registry request failed");
                    last = Some(RegistryError::Unavailable {
                        url: tidemark_core::config::mask_url_password(&s.url),
                        id,
                        attempts: attempt,
                        reason,
                    });
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let body = resp.text().await.unwrap_or_default();
                    match status {
                        200 => return parse_body(id, &body),
                        404 => {
                            return Err(RegistryError::SchemaNotFound {
                                id,
                                url: tidemark_core::config::mask_url_password(&s.url),
                            });
                        }
                        401 | 403 => {
                            return Err(RegistryError::Unauthorized {
                                url: tidemark_core::config::mask_url_password(&s.url),
                                status,
                            });
                        }
                        _ => {
                            let err = RegistryError::Http {
                                url: tidemark_core::config::mask_url_password(&s.url),
                                id,
                                status,
                                attempts: attempt,
                                body: body.chars().take(200).collect(),
                            };
                            if !err.is_transient() {
                                return Err(err);
                            }
                            tracing::warn!(registry = %tidemark_core::config::mask_url_password(&s.url), id, attempt, status, "schema registry error, retrying");
                            last = Some(err);
                        }
                    }
                }
            }
        }
        Err(last.expect("at least one attempt"))
    }
}

fn parse_body(id: u32, body: &str) -> Result<String, RegistryError> {
    let resp: SchemaResponse =
        serde_json::from_str(body).map_err(|e| RegistryError::BadResponse {
            id,
            reason: e.to_string(),
        })?;
    match resp.schema_type.as_deref() {
        None | Some("AVRO") => Ok(resp.schema),
        Some(other) => Err(RegistryError::NotAvro {
            id,
            schema_type: other.to_owned(),
        }),
    }
}
