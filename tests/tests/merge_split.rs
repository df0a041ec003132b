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

fn merge_once(config: &Path) -> std::process::Child {
    Command::new(tidemark_bin())
        .args([
            "--config",
            config.to_str().unwrap(),
            "--log-level",
            "warn",
            "merge",
            "--once",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn done(child: std::process::Child) -> Output {
    child.wait_with_output().unwrap()
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
