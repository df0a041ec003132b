//! Several `tidemark merge` processes on one PostgreSQL: with disjoint table sets they build what
//! one merger builds; with the same tables, nothing is applied twice (one waits on the ledger and
//! says why). Real processes, local-file bronze.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::json;
use tidemark_e2e::bronze_fixture::{BronzeFixture, change};
use tidemark_e2e::merge_scenario::{TABLES, fill, snapshot, tidemark_bin};
use tidemark_e2e::warehouse::rows;
use tidemark_warehouse::sql::conn::Pool;
use tidemark_warehouse::sql::names::Target;

fn config(
    dir: &Path,
    name: &str,
    bronze: &Path,
    url: &str,
    tables: &str,
    unconfigured: bool,
) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "[bronze]\nurl = \"file://{}\"\n[warehouse]\nurl = \"{url}\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n\
             [merge]\nmax_batch_rows = 200\nunconfigured_topics = {unconfigured}\n{tables}",
            bronze.display()
        ),
    )
    .unwrap();
    path
}

/// `tidemark merge` on `config` with `args` (`--once`, or nothing to keep merging).
fn merge_with(
    config: &Path,
    args: &[&str],
    out: fn() -> std::process::Stdio,
) -> std::process::Child {
    Command::new(tidemark_bin())
        .args([
            "--config",
            config.to_str().unwrap(),
            "--log-level",
            "warn",
            "merge",
        ])
        .args(args)
        .stdout(out())
        .stderr(out())
        .spawn()
        .unwrap()
}

fn merge_once(config: &Path) -> std::process::Child {
    merge_with(config, &["--once"], std::process::Stdio::piped)
}

fn done(child: std::process::Child) -> Output {
    child.wait_with_output().unwrap()
}

/// Whether every table [`state`] reads exists yet.
async fn built(url: &str) -> bool {
    let pool = Pool::connect(url, None).await.unwrap();
    let r = rows(
        &pool,
        "SELECT count(*)::text FROM unnest(ARRAY['silver.customers', 'gold.dim_customers', \
         'gold.fact_transactions', 'silver.branches']) AS t(name) WHERE to_regclass(name) IS NULL",
    )
    .await;
    pool.close().await;
    r[0][0].as_deref() == Some("0")
}

/// Everything a merger builds here: the scenario's tables and the branches (silver only).
async fn state(url: &str) -> Vec<Vec<Option<String>>> {
    let pool = Pool::connect(url, None).await.unwrap();
    let t = Target::new(pool.backend(), None).unwrap();
    let mut out = snapshot(&pool, &t).await;
    out.extend(
        rows(
            &pool,
            "SELECT id::text, name, _source_pos FROM silver.branches ORDER BY id",
        )
        .await,
    );
    pool.close().await;
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn merge_processes_split_tables_and_never_apply_twice() {
    let Some(single) = tidemark_e2e::postgres::fresh_database().await else {
        return;
    };
    let split = tidemark_e2e::postgres::fresh_database().await.unwrap();
    let same = tidemark_e2e::postgres::fresh_database().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bronze_dir = dir.path().join("bronze");
    std::fs::create_dir_all(&bronze_dir).unwrap();
    let mut bronze = BronzeFixture::on_disk(&bronze_dir);
    fill(&mut bronze, 5).await;
    for p in 0..2 {
        let recs: Vec<_> = (0..40)
            .map(|i| {
                let id = p * 100 + i;
                change(
                    "c",
                    &json!(id),
                    None,
                    Some(json!({"id": id, "name": format!("b{id}")})),
                    100 + id as u64,
                    1000,
                )
            })
            .collect();
        bronze.land("bank.public.branches", p, &recs).await;
    }
    let branches = "[[tables]]\nsource = \"bank.public.branches\"\nkey = [\"id\"]\n";
    let one = config(
        dir.path(),
        "one",
        &bronze_dir,
        &single,
        &format!("{TABLES}{branches}"),
        false,
    );
    let out = done(merge_once(&one));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = state(&single).await;
    assert!(want.len() > 1000, "the scenario builds tables");

    // Disjoint: a dimension with its fact in one process, the rest in the other, at once.
    let a = config(dir.path(), "a", &bronze_dir, &split, TABLES, false);
    let b = config(dir.path(), "b", &bronze_dir, &split, branches, false);
    let (pa, pb) = (merge_once(&a), merge_once(&b));
    for (name, out) in [("a", done(pa)), ("b", done(pb))] {
        assert!(
            out.status.success(),
            "merger {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        state(&split).await,
        want,
        "two disjoint mergers build what one builds"
    );

    // The same tables in two processes at once: whatever each applies, nothing twice.
    let c = config(
        dir.path(),
        "c",
        &bronze_dir,
        &same,
        &format!("{TABLES}{branches}"),
        false,
    );
    let (p1, p2) = (merge_once(&c), merge_once(&c));
    let outs = [done(p1), done(p2)];
    for out in &outs {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || err.contains("another merger"),
            "a merger that lost the race says why: {err}"
        );
    }
    // Whatever was left by a merger that gave up is applied by a third run.
    let out = done(merge_once(&c));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        state(&same).await,
        want,
        "overlapping mergers never apply twice"
    );
}

/// `tidemark merge` running continuously on `config`.
fn merge_running(config: &Path) -> std::process::Child {
    merge_with(config, &[], std::process::Stdio::null)
}

fn signal(child: &std::process::Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

/// Unexpired leases: group → holder's process id.
async fn live_leases(url: &str) -> std::collections::BTreeMap<String, u32> {
    let pool = Pool::connect(url, None).await.unwrap();
    // Not there until a merger has bootstrapped the warehouse.
    let made = rows(&pool, "SELECT to_regclass('tidemark.leases')::text").await;
    if made[0][0].is_none() {
        pool.close().await;
        return Default::default();
    }
    let out = rows(
        &pool,
        "SELECT grp, holder FROM tidemark.leases \
         WHERE expires_ms > (extract(epoch from clock_timestamp()) * 1000)::bigint",
    )
    .await
    .into_iter()
    .filter_map(|r| {
        let pid = r[1].as_deref()?.split('/').nth(1)?.parse().ok()?;
        Some((r[0].clone()?, pid))
    })
    .collect();
    pool.close().await;
    out
}

async fn ledger_text(url: &str) -> Vec<Vec<Option<String>>> {
    let pool = Pool::connect(url, None).await.unwrap();
    let out = rows(
        &pool,
        "SELECT topic, part::text, next_offset::text, updated_at FROM tidemark.ledger ORDER BY 1, 2",
    )
    .await;
    pool.close().await;
    out
}

async fn wait_for<F: std::future::Future<Output = bool>>(
    what: &str,
    limit: std::time::Duration,
    mut check: impl FnMut() -> F,
) -> std::time::Duration {
    let t = std::time::Instant::now();
    while !check().await {
        assert!(t.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    t.elapsed()
}

#[tokio::test(flavor = "multi_thread")]
async fn three_mergers_share_the_tables_through_leases() {
    let Some(single) = tidemark_e2e::postgres::fresh_database().await else {
        return;
    };
    let shared = tidemark_e2e::postgres::fresh_database().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bronze_dir = dir.path().join("bronze");
    std::fs::create_dir_all(&bronze_dir).unwrap();
    let mut bronze = BronzeFixture::on_disk(&bronze_dir);
    fill(&mut bronze, 7).await;
    let mut tables = TABLES.to_owned();
    tables.push_str("[[tables]]\nsource = \"bank.public.branches\"\nkey = [\"id\"]\n");
    for p in 0..2 {
        let recs: Vec<_> = (0..300)
            .map(|i| {
                let id = p * 1000 + i;
                let row = json!({"id": id, "name": format!("b{id}")});
                change("c", &json!(id), None, Some(row), 100 + id as u64, 1000)
            })
            .collect();
        bronze.land("bank.public.branches", p, &recs).await;
    }
    let one = config(dir.path(), "one", &bronze_dir, &single, &tables, false);
    let out = done(merge_once(&one));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = state(&single).await;

    // Small batches and a short lease, so the run is long enough to kill and stop mergers in.
    let path = dir.path().join("shared.toml");
    let text = std::fs::read_to_string(config(
        dir.path(),
        "x",
        &bronze_dir,
        &shared,
        &tables,
        false,
    ))
    .unwrap()
    .replace(
        "max_batch_rows = 200",
        "max_batch_rows = 40\ninterval_ms = 100\nlease_ms = 3000",
    );
    std::fs::write(&path, text).unwrap();
    let mut mergers: Vec<_> = (0..3).map(|_| merge_running(&path)).collect();
    let pids: Vec<u32> = mergers.iter().map(|c| c.id()).collect();
    // Two groups (customers with transactions, branches) for three mergers: two hold one each.
    wait_for(
        "the groups are spread",
        std::time::Duration::from_secs(30),
        || async {
            let l = live_leases(&shared).await;
            l.len() == 2 && l.values().collect::<std::collections::BTreeSet<_>>().len() == 2
        },
    )
    .await;
    let held = live_leases(&shared).await;
    // Kill one holder, stop the other; the third (idle so far) must take both groups.
    let holders: Vec<usize> = (0..3)
        .filter(|i| held.values().any(|p| *p == pids[*i]))
        .collect();
    let (killed, stopped) = (holders[0], holders[1]);
    let survivor = (0..3).find(|i| !holders.contains(i)).unwrap();
    signal(&mergers[killed], "-KILL");
    mergers[killed].wait().unwrap();
    signal(&mergers[stopped], "-STOP");
    let moved = wait_for(
        "the survivor holds every group",
        std::time::Duration::from_secs(20),
        || async {
            let l = live_leases(&shared).await;
            l.len() == 2 && l.values().all(|p| *p == pids[survivor])
        },
    )
    .await;
    eprintln!("groups moved to the survivor in {moved:?} (lease 3 s)");
    assert!(
        moved < std::time::Duration::from_secs(15),
        "within the lease and a cycle: {moved:?}"
    );
    wait_for(
        "the survivor finishes the tables",
        std::time::Duration::from_secs(180),
        // A table appears with its first batch: until the survivor has made them all, wait.
        || async { built(&shared).await && state(&shared).await == want },
    )
    .await;

    // The stopped merger resumes: its leases are gone, it writes nothing.
    let ledger = ledger_text(&shared).await;
    signal(&mergers[stopped], "-CONT");
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    assert_eq!(
        ledger_text(&shared).await,
        ledger,
        "the resumed merger applies nothing"
    );
    assert_eq!(
        state(&shared).await,
        want,
        "every table merged exactly once"
    );
    for (i, m) in mergers.iter_mut().enumerate() {
        if i != killed {
            let _ = m.kill();
            let _ = m.wait();
        }
    }
}

/// A merger paused in the middle of a `COPY` keeps its session busy (the server waits for its
/// data), so the server never ends it and its uncommitted rows would hold up the merger that
/// takes its tables over: taking over its lease ends its sessions.
#[tokio::test(flavor = "multi_thread")]
async fn taking_over_a_lease_ends_the_paused_holders_sessions() {
    use std::str::FromStr as _;
    use tidemark_warehouse::sql::leases::{Leases, session_name};
    let Some(url) = tidemark_e2e::postgres::fresh_database().await else {
        return;
    };
    let pool = Pool::connect(&url, None).await.unwrap();
    let target = Target::new(pool.backend(), None).unwrap();
    let mut tx = pool.begin().await.unwrap();
    tidemark_warehouse::sql::schema::bootstrap(&mut tx, &target)
        .await
        .unwrap();
    let holder = "elsewhere/4242/0badf00d";
    tx.exec("CREATE TABLE scratch (x integer)", &[])
        .await
        .unwrap();
    tx.exec(
        &format!(
            "INSERT INTO {} (grp, holder, token, expires_ms) VALUES ('g', '{holder}', 1, 0)",
            target.leases()
        ),
        &[],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    // The paused holder: a session named as its merger names them, stuck in a COPY.
    let opts = sqlx::postgres::PgConnectOptions::from_str(&url)
        .unwrap()
        .application_name(&session_name(holder));
    let mut paused = <sqlx::PgConnection as sqlx::Connection>::connect_with(&opts)
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut paused).await.unwrap();
    let mut copy = paused
        .copy_in_raw("COPY scratch (x) FROM STDIN")
        .await
        .unwrap();
    copy.send(b"1\n".as_slice()).await.unwrap();
    let sessions = || {
        let pool = pool.clone();
        async move {
            rows(
                &pool,
                &format!(
                    "SELECT count(*)::text FROM pg_stat_activity WHERE application_name = '{}'",
                    session_name(holder)
                ),
            )
            .await[0][0]
                .clone()
                .unwrap()
        }
    };
    assert_eq!(sessions().await, "1");

    let mut leases = Leases::new(std::time::Duration::from_secs(3));
    leases
        .settle(&pool, &target, &["g".to_owned()].into())
        .await
        .unwrap();
    assert!(leases.holds("g"), "the expired lease is taken over");
    wait_for(
        "the paused holder's session ends",
        std::time::Duration::from_secs(10),
        || async { sessions().await == "0" },
    )
    .await;
    drop(copy);
}
