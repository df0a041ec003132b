//! A merger's health as an operator sees it: `/readyz` turns 503 and says why while every merge
//! cycle fails (the warehouse refuses connections), and SIGTERM ends the process within 5 s in
//! that state. A real `tidemark merge` process against a real PostgreSQL.

use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::Connection;
use tidemark_e2e::bronze_fixture::{BronzeFixture, change};
use tidemark_e2e::process::Tidemark;
use tidemark_e2e::run_setup::free_port;

/// Polls `/readyz` until `want(status, body)` holds; returns the body.
async fn readyz_until(port: u16, within: Duration, want: impl Fn(u16, &str) -> bool) -> String {
    let until = Instant::now() + within;
    let mut last = String::new();
    while Instant::now() < until {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await {
            let status = r.status().as_u16();
            last = format!("{status}: {}", r.text().await.unwrap_or_default());
            if want(status, &last) {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("/readyz never matched; last answer {last}");
}

async fn admin(url: &str, sql: &str) {
    let (base, _) = url.rsplit_once('/').unwrap();
    let mut c = sqlx::PgConnection::connect(&format!("{base}/postgres"))
        .await
        .unwrap();
    sqlx::Executor::execute(&mut c, sql).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_says_why_merge_cycles_fail_and_sigterm_still_ends_the_merger() {
    let Some(url) = tidemark_e2e::postgres::fresh_database().await else {
        return;
    };
    let db = url.rsplit_once('/').unwrap().1.to_owned();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("bronze")).unwrap();
    let mut bronze = BronzeFixture::on_disk(&dir.path().join("bronze"));
    bronze
        .land(
            "bank.public.customers",
            0,
            &[change(
                "c",
                &json!(1),
                None,
                Some(json!({"id": 1, "name": "a"})),
                1_000,
                1_700_000_000_000,
            )],
        )
        .await;
    let port = free_port();
    let config = dir.path().join("m.toml");
    std::fs::write(
        &config,
        format!(
            "[bronze]\nurl = \"file://{}/bronze\"\n[warehouse]\nurl = \"{url}\"\n\
             [metrics]\nlisten = \"127.0.0.1:{port}\"\n[merge]\ninterval_ms = 200\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let merger = Tidemark::start(&config, &["merge"]);
    readyz_until(port, Duration::from_secs(60), |s, b| {
        s == 200 && b.contains("merge: ok")
    })
    .await;

    // The warehouse goes away: connections are cut and refused.
    admin(
        &url,
        &format!("ALTER DATABASE {db} ALLOW_CONNECTIONS false"),
    )
    .await;
    admin(
        &url,
        &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'"),
    )
    .await;
    let body = readyz_until(port, Duration::from_secs(60), |s, b| {
        s == 503 && b.contains("merge: the last")
    })
    .await;
    assert!(body.contains("warehouse:"), "{body}");

    let took = merger.terminate();
    admin(&url, &format!("ALTER DATABASE {db} ALLOW_CONNECTIONS true")).await;
    assert!(took < Duration::from_secs(5), "SIGTERM took {took:?}");
}
