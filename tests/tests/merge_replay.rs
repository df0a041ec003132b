//! Replay rebuilds what live merging built: into fresh schemas (`--target-suffix`), in place for
//! one table (facts that point at it are re-resolved), and from a point in time (the tables with
//! bronze after it are rebuilt: equal to a full replay). Runs the real `tidemark` binary on
//! local-file bronze, into a SQLite warehouse file and a PostgreSQL database.

use std::path::Path;
use std::process::Command;

use tidemark_e2e::bronze_fixture::BronzeFixture;
use tidemark_e2e::merge_scenario::{config_file, fill, snapshot, tidemark_bin};
use tidemark_e2e::warehouse::rows;
use tidemark_warehouse::sql::conn::Pool;
use tidemark_warehouse::sql::names::Target;

fn tidemark(config: &Path, args: &[&str]) {
    let out = Command::new(tidemark_bin())
        // Tests run in parallel: an ephemeral metrics port each.
        .env("TIDEMARK__METRICS__LISTEN", "127.0.0.1:0")
        .args(["--config", config.to_str().unwrap(), "--log-level", "error"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tidemark {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Equal snapshots, or a short report of the first differences.
fn same(got: &[Vec<Option<String>>], want: &[Vec<Option<String>>], what: &str) {
    if got == want {
        return;
    }
    let diffs: Vec<String> = got
        .iter()
        .zip(want)
        .filter(|(g, w)| g != w)
        .take(5)
        .map(|(g, w)| format!("got {g:?}\nwant {w:?}"))
        .collect();
    panic!(
        "{what}: {} vs {} rows; first differences:\n{}",
        got.len(),
        want.len(),
        diffs.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_equals_live_merging_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/warehouse.db", dir.path().display());
    replay_equals_live_merging(dir.path(), &url).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_equals_live_merging_postgres() {
    let Some(url) = tidemark_e2e::postgres::fresh_database().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    replay_equals_live_merging(dir.path(), &url).await;
}

async fn replay_equals_live_merging(dir: &Path, url: &str) {
    let bronze_dir = dir.join("bronze");
    std::fs::create_dir_all(&bronze_dir).unwrap();
    let mut bronze = BronzeFixture::on_disk(&bronze_dir);
    fill(&mut bronze, 11).await;
    let config = config_file(dir, &bronze_dir, url);

    tidemark(&config, &["merge", "--once"]);
    let pool = Pool::connect(url, None).await.unwrap();
    let live = Target::new(pool.backend(), None).unwrap();
    let built = snapshot(&pool, &live).await;
    assert!(built.len() > 1000, "the scenario builds tables");
    let ledger = |t: &Target| {
        format!(
            "SELECT topic, CAST(part AS TEXT), CAST(next_offset AS TEXT) FROM {} ORDER BY 1, 2",
            t.ledger()
        )
    };
    let live_ledger = rows(&pool, &ledger(&live)).await;
    pool.close().await;

    // Side by side, into fresh schemas.
    tidemark(&config, &["replay", "--target-suffix", "blue"]);
    let pool = Pool::connect(url, None).await.unwrap();
    let blue = Target::new(pool.backend(), Some("blue".into())).unwrap();
    same(
        &snapshot(&pool, &blue).await,
        &built,
        "replay into fresh schemas",
    );
    assert_eq!(rows(&pool, &ledger(&blue)).await, live_ledger);
    pool.close().await;

    // One dimension in place: facts pointing at it follow the new surrogate keys.
    tidemark(
        &config,
        &["replay", "--in-place", "--tables", "bank.public.customers"],
    );
    let pool = Pool::connect(url, None).await.unwrap();
    same(&snapshot(&pool, &live).await, &built, "in-place replay");
    pool.close().await;
    // History after a point: rebuilt, not re-applied over what is there (damage is repaired).
    let pool = Pool::connect(url, None).await.unwrap();
    damage(&pool, &live).await;
    let damaged = snapshot(&pool, &live).await;
    assert_ne!(damaged, built);
    pool.close().await;
    let future = "2999-01-01T00:00:00Z";
    tidemark(&config, &["replay", "--from", future]);
    let pool = Pool::connect(url, None).await.unwrap();
    same(
        &snapshot(&pool, &live).await,
        &damaged,
        "--from after every range: no table",
    );
    pool.close().await;
    tidemark(&config, &["replay", "--from", "2000-01-01T00:00:00Z"]);
    let pool = Pool::connect(url, None).await.unwrap();
    same(&snapshot(&pool, &live).await, &built, "--from replay");
    assert_eq!(rows(&pool, &ledger(&live)).await, live_ledger);
}

/// Changes silver and gold behind the merger's back.
async fn damage(pool: &Pool, t: &Target) {
    let mut tx = pool.begin().await.unwrap();
    for sql in [
        format!("UPDATE {} SET tier = 'damaged'", t.silver("customers")),
        format!("DELETE FROM {} WHERE version = 2", t.dim("customers")),
    ] {
        tx.exec(&sql, &[]).await.unwrap();
    }
    tx.commit().await.unwrap();
}
