//! Every example in the README runs as written against the demo's data: its TOML passes
//! `tidemark config check`; its SQL runs on SQLite (the demo's warehouse), on PostgreSQL (the
//! demo's bronze merged into it) and in DuckDB (over the demo's bronze); its `tidemark`,
//! `sqlite3` and `duckdb` shell lines run with their flags. Lines that need what no test has
//! (a Docker engine, a live Kafka for `generate`, cargo itself) are listed and left out by rule,
//! not one by one, so a new example is run by default.

use std::path::{Path, PathBuf};
use std::process::Command;

use tidemark_e2e::merge_scenario::{run_demo, tidemark_bin};
use tidemark_e2e::readers::duckdb_script;
use tidemark_e2e::warehouse::rows;
use tidemark_warehouse::sql::conn::Pool;

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap()
}

/// The fenced blocks of `lang`, dedented (blocks inside list items are indented).
fn blocks(text: &str, lang: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<(usize, Vec<String>)> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        match &mut current {
            None if trimmed == format!("```{lang}") => current = Some((indent, Vec::new())),
            Some((_, lines)) if trimmed == "```" => {
                out.push(lines.join("\n"));
                current = None;
            }
            Some((indent, lines)) => lines.push(line.get(*indent..).unwrap_or("").to_owned()),
            None => {}
        }
    }
    out
}

/// SQL statements of a block, comments dropped.
fn statements(block: &str) -> Vec<String> {
    let text: String = block
        .lines()
        .map(|l| l.split("--").next().unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    text.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Shell lines (continuations joined, trailing comments dropped).
fn shell_lines(block: &str) -> Vec<String> {
    let joined = block.replace("\\\n", " ");
    joined
        .lines()
        .map(|l| match l.find("  #") {
            Some(i) => l[..i].trim().to_owned(),
            None => l.trim().to_owned(),
        })
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

fn demo_data() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("tidemark-demo");
    let out = run_demo(&data, &["--keep", "--events", "4000"]);
    assert!(
        out.status.success(),
        "demo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (dir, data)
}

#[test]
fn every_toml_example_passes_config_check() {
    let dir = tempfile::tempdir().unwrap();
    let examples = blocks(&readme(), "toml");
    assert!(examples.len() >= 2, "the quick start and TLS examples");
    for (i, toml) in examples.iter().enumerate() {
        let path = dir.path().join(format!("example-{i}.toml"));
        std::fs::write(&path, toml).unwrap();
        let out = Command::new(tidemark_bin())
            .args(["--config", path.to_str().unwrap(), "config", "check"])
            // The secrets the examples take from the environment.
            .env("WAREHOUSE_PASSWORD", "w")
            .env("KAFKA_API_SECRET", "k")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "README toml example {i} fails `config check`:\n{toml}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_sql_example_runs_on_the_demos_data() {
    let (_dir, data) = demo_data();
    let text = readme();
    let all: Vec<String> = blocks(&text, "sql")
        .iter()
        .flat_map(|b| statements(b))
        .collect();
    let (mut sqlite, mut postgres, mut duckdb) = (vec![], vec![], vec![]);
    for s in all {
        if s.contains("read_parquet") {
            duckdb.push(s.replace("lake/bronze", &data.join("bronze").display().to_string()));
        } else if s.contains("gold__") || s.contains("silver__") {
            sqlite.push(s);
        } else {
            postgres.push(s);
        }
    }
    assert!(!sqlite.is_empty() && !postgres.is_empty() && !duckdb.is_empty());

    let pool = Pool::connect(&format!("sqlite://{}/warehouse.db", data.display()), None)
        .await
        .unwrap();
    for s in &sqlite {
        rows(&pool, s).await;
    }

    let script = format!(
        "import duckdb\nfor q in {:?}:\n    duckdb.sql(q).fetchall()\n",
        duckdb
    );
    duckdb_script(&script, &data);

    // PostgreSQL: the demo's bronze merged into a fresh database with the demo's tables.
    let Some(url) = tidemark_e2e::postgres::fresh_database().await else {
        return;
    };
    let demo_config = std::fs::read_to_string(data.join("tidemark.toml")).unwrap();
    let config: String = demo_config
        .lines()
        .map(|l| {
            if l.starts_with("url = \"sqlite") {
                format!("url = \"{url}\"")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let pg_config = data.join("pg.toml");
    std::fs::write(&pg_config, config).unwrap();
    let out = Command::new(tidemark_bin())
        .args(["--config", pg_config.to_str().unwrap(), "merge", "--once"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "merge into PostgreSQL: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pool = Pool::connect(&url, None).await.unwrap();
    for s in &postgres {
        rows(
            &pool,
            &format!("SELECT count(*)::text FROM ({s}) AS example"),
        )
        .await;
    }
}

/// Why a shell line is not run, or `None` to run it.
fn left_out(line: &str) -> Option<&'static str> {
    let first = line.split_whitespace().next().unwrap_or("");
    match first {
        "cargo" | "./scripts/test.sh" | "./scripts/bench-ingest.sh" => Some("runs cargo"),
        "docker" | "open" | "psql" => Some("needs the Docker stack"),
        "tidemark" if line.starts_with("tidemark generate") => Some("needs a live Kafka"),
        "tidemark" | "sqlite3" | "duckdb" => None,
        _ => Some("not a tidemark, sqlite3 or duckdb command"),
    }
}

#[test]
fn every_shell_example_runs_with_its_flags() {
    let (dir, data) = demo_data();
    // The tools as the README names them: the binary under test, and `duckdb` through Python's
    // duckdb (the CLI is not packaged for Debian).
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(tidemark_bin(), bin.join("tidemark")).unwrap();
    let duck = bin.join("duckdb");
    std::fs::write(
        &duck,
        "#!/bin/sh\n[ \"$1\" = -c ] || exit 2\nexec python3 -c 'import duckdb,sys; print(duckdb.sql(sys.argv[1]))' \"$2\"\n",
    )
    .unwrap();
    Command::new("chmod").arg("+x").arg(&duck).status().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());

    let mut ran = 0;
    // A block with `[optional]` arguments is a synopsis, not commands.
    let runnable = blocks(&readme(), "sh")
        .into_iter()
        .filter(|b| !b.contains(" ["));
    for line in runnable.flat_map(|b| shell_lines(&b)) {
        if let Some(why) = left_out(&line) {
            eprintln!("left out ({why}): {line}");
            continue;
        }
        let mut cmd = line.clone();
        if cmd.starts_with("tidemark demo") {
            // A full demo is a test of its own: here the flags must parse, so `--help` ends it
            // after parsing; the data directory the README names is this test's.
            cmd.push_str(" --help");
        }
        let out = Command::new("sh")
            .args(["-c", &cmd])
            .current_dir(data.parent().unwrap())
            .env("PATH", &path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "README shell example failed: {line}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ran += 1;
    }
    assert!(ran >= 8, "only {ran} shell examples ran");
}
