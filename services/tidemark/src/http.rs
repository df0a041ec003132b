//! The HTTP endpoint of long-running subcommands: `/metrics` (Prometheus text), `/healthz`
//! (alive: 503 with the cause once the process cannot go on by itself) and `/readyz` (Kafka,
//! object store and warehouse reachable, as the command uses them, and the process's loops
//! making progress: the last merge cycle worked, the ingest loop turns).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
/// One readiness check.
pub type Check = Box<dyn Fn() -> CheckFuture + Send + Sync>;

/// Named checks run by `/readyz`, each bounded by a timeout.
#[derive(Default)]
pub struct Readiness {
    checks: Vec<(&'static str, Check)>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.checks.iter().map(|(n, _)| *n).collect();
        f.debug_struct("Readiness").field("checks", &names).finish()
    }
}

impl Readiness {
    pub fn with<F, Fut>(mut self, name: &'static str, check: F) -> Readiness
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.checks
            .push((name, Box::new(move || Box::pin(check()) as CheckFuture)));
        self
    }

    async fn report(&self) -> (bool, String) {
        let mut ok = true;
        let mut lines = String::new();
        for (name, check) in &self.checks {
            let r = tokio::time::timeout(Duration::from_secs(5), check())
                .await
                .unwrap_or_else(|_| Err("timed out after 5 s".into()));
            ok &= line(&mut lines, name, r);
        }
        // The process's own loops: reachable peers are not enough if every cycle fails.
        for (name, r) in tidemark_core::health::loops() {
            ok &= line(&mut lines, name, r);
        }
        (ok, lines)
    }
}

/// Appends `name`'s line to the report; whether it was ok.
fn line(lines: &mut String, name: &str, r: Result<(), String>) -> bool {
    match r {
        Ok(()) => {
            lines.push_str(&format!("{name}: ok\n"));
            true
        }
        Err(e) => {
            lines.push_str(&format!("{name}: {e}\n"));
            false
        }
    }
}

async fn healthz() -> impl IntoResponse {
    match tidemark_core::health::liveness() {
        Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
        Err(cause) => (StatusCode::SERVICE_UNAVAILABLE, format!("{cause}\n")),
    }
}

async fn metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        tidemark_core::metrics::global().render(),
    )
}

async fn readyz(State(r): State<Arc<Readiness>>) -> impl IntoResponse {
    let (ok, text) = r.report().await;
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, text)
}

/// Binds `listen` and serves in the background for the life of the process.
pub async fn serve(listen: &str, readiness: Readiness) -> anyhow::Result<SocketAddr> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Arc::new(readiness));
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        anyhow::anyhow!(
            "metrics.listen {listen}: {e}; processes on one host need one address each \
                 (set metrics.listen, or TIDEMARK__METRICS__LISTEN=127.0.0.1:9465)"
        )
    })?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics endpoint stopped");
        }
    });
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    Ok(addr)
}
