//! Crash safety of the merger: `tidemark merge` is killed with SIGKILL at random moments at least
//! ten times while it works through a bronze backlog, and restarted each time. The final tables
//! must equal an uninterrupted merge of the same bronze, and the ledger must hold every
//! partition's last offset + 1.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tidemark_core::config::Config;
use tidemark_e2e::bronze_fixture::BronzeFixture;
use tidemark_e2e::merge_scenario::{Rng, TABLES, config_file, fill, snapshot, tidemark_bin};
use tidemark_e2e::warehouse::{Which, fresh, rows, text};
use tidemark_warehouse::merger::{MergeOptions, Merger};
use tidemark_warehouse::sql::conn::Pool;
use tidemark_warehouse::sql::names::Target;

fn spawn_merge(config: &Path, once: bool) -> Child {
    let mut cmd = Command::new(tidemark_bin());
    // Tests run in parallel: an ephemeral metrics port each.
    cmd.env("TIDEMARK__METRICS__LISTEN", "127.0.0.1:0");
    cmd.args([
        "--config",
        config.to_str().unwrap(),
        "--log-level",
        "error",
        "merge",
    ]);
    if once {
        cmd.arg("--once");
    }
    cmd.stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn tidemark merge")
}

async fn crash_and_compare(which: Which) {
    let dir = tempfile::tempdir().unwrap();
    let bronze_dir = dir.path().join("bronze");
    std::fs::create_dir_all(&bronze_dir).unwrap();
    let mut bronze = BronzeFixture::on_disk(&bronze_dir);
    let seed = std::env::var("TIDEMARK_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let (n_c, n_f) = fill(&mut bronze, seed).await;
    eprintln!("bronze: {n_c} customer changes, {n_f} facts");

    let url = match which {
        Which::Sqlite => format!("sqlite://{}/warehouse.db", dir.path().display()),
        Which::Postgres => match tidemark_e2e::postgres::fresh_database().await {
            Some(u) => u,
            None => return,
        },
    };
    let config_path = config_file(dir.path(), &bronze_dir, &url);
    let pool = Pool::connect(&url, None).await.unwrap();
    let live = Target::new(pool.backend(), None).unwrap();
    // 0 until the first merger has created the ledger.
    let ledger_total = || async {
        let mut tx = pool.begin().await.unwrap();
        let sql = format!(
            "SELECT {} FROM {}",
            text(&pool, "sum(next_offset)"),
            live.ledger()
        );
        let r = tx.fetch(&sql, &[]).await.unwrap_or_default();
        tx.rollback().await.unwrap();
        r.first()
            .and_then(|r| r[0].as_deref().and_then(|v| v.parse::<i64>().ok()))
            .unwrap_or(0)
    };

    // A kill counts when that run made progress and work was left: it hit the merger mid-run.
    let mut rng = Rng(seed.wrapping_mul(31) | 1);
    let mut kills_mid_run = 0;
    let mut last = ledger_total().await;
    // On a loaded machine a run may not get past start-up before its kill: the window grows
    // after a run without progress.
    let mut floor = 150;
    for _ in 0..80 {
        if kills_mid_run >= 12 {
            break;
        }
        let mut child = spawn_merge(&config_path, false);
        tokio::time::sleep(Duration::from_millis(floor + rng.next(floor.max(150)))).await;
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        let now = ledger_total().await;
        if now >= n_c + n_f {
            break;
        }
        if now > last {
            kills_mid_run += 1;
            // Back to short runs once start-up gets through: a long window merges too much.
            floor = (floor / 2).max(40);
        } else {
            floor = (floor * 2).min(3000);
        }
        last = now;
    }
    assert!(
        kills_mid_run >= 10,
        "only {kills_mid_run} kills landed mid-run: grow the backlog"
    );
    let status = spawn_merge(&config_path, true).wait().unwrap();
    assert!(status.success());

    // The oracle: the same bronze merged without interruption into another target.
    let config = Config::from_toml_and_env(TABLES, std::iter::empty()).unwrap();
    let mut opts = MergeOptions::from_config(&config);
    opts.target_suffix = Some("clean".into());
    let mut clean = Merger::with(
        pool.clone(),
        bronze.store.clone(),
        bronze.root.clone(),
        &config,
        opts,
    )
    .await
    .unwrap();
    clean.catch_up().await.unwrap();
    let got = snapshot(&pool, &live).await;
    assert!(got.len() as i64 > n_f, "tables are filled");
    assert_eq!(
        got,
        snapshot(&pool, clean.target()).await,
        "crashed merge equals the clean one"
    );

    // The ledger holds each partition's last offset + 1.
    let ledger = rows(
        &pool,
        &format!(
            "SELECT topic, {}, {} FROM {} ORDER BY topic, part",
            text(&pool, "part"),
            text(&pool, "next_offset"),
            live.ledger()
        ),
    )
    .await;
    let mut want = Vec::new();
    for tidemark_core::event::TopicPartition {
        topic,
        partition: p,
    } in tidemark_bronze::commit_log::partitions(bronze.store.as_ref(), &bronze.root)
        .await
        .unwrap()
    {
        let chain =
            tidemark_bronze::commit_log::read_chain(bronze.store.as_ref(), &bronze.root, &topic, p)
                .await
                .unwrap();
        want.push(vec![
            Some(topic),
            Some(p.to_string()),
            chain.next_offset().map(|n| n.to_string()),
        ]);
    }
    assert_eq!(ledger, want);
    eprintln!("{kills_mid_run} kills mid-run; final tables equal the uninterrupted merge");
}

#[tokio::test(flavor = "multi_thread")]
async fn merge_survives_sigkill_sqlite() {
    crash_and_compare(Which::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn merge_survives_sigkill_postgres() {
    if fresh(Which::Postgres).await.is_some() {
        crash_and_compare(Which::Postgres).await;
    }
}
