//! The files users deploy with: docker-compose.yml parses (`docker-compose config`, Debian's
//! package), the connector config names the demo tables the tidemark config merges, the source
//! SQL runs on a real PostgreSQL, the compose tidemark config validates, and the Dockerfile builds
//! the binary the README builds with the pinned toolchain.

use std::path::{Path, PathBuf};
use std::process::Command;

use sqlx::{Connection, Executor};
use tidemark_core::config::Config;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn docker_compose_accepts_the_stack() {
    let Ok(out) = Command::new("docker-compose")
        .args(["-f", "docker-compose.yml", "config", "-q"])
        .current_dir(repo())
        .output()
    else {
        assert!(
            std::env::var_os("TIDEMARK_REQUIRE_COMPOSE").is_none(),
            "docker-compose is required (apt-get install docker-compose)"
        );
        eprintln!("skipped: docker-compose not installed");
        return;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let compose = read("docker-compose.yml");
    for published in compose.lines().filter(|l| l.contains("ports:")) {
        assert!(
            published.contains("127.0.0.1:"),
            "ports bound to localhost only: {published}"
        );
    }
    for image in compose
        .lines()
        .filter_map(|l| l.trim().strip_prefix("image: "))
    {
        assert!(
            image.contains(':') && !image.ends_with(":latest"),
            "pinned image: {image}"
        );
    }
}

#[test]
fn the_connector_feeds_the_tables_tidemark_merges() {
    let c: serde_json::Value =
        serde_json::from_str(&read("connectors/bank-postgres.json")).unwrap();
    let cfg = &c["config"];
    let prefix = cfg["topic.prefix"].as_str().unwrap();
    let tables: Vec<String> = cfg["table.include.list"]
        .as_str()
        .unwrap()
        .split(',')
        .map(|t| format!("{prefix}.{t}"))
        .collect();
    assert_eq!(
        tables,
        [
            "bank.public.customers",
            "bank.public.accounts",
            "bank.public.transactions"
        ]
    );

    // As the container runs it: secrets from the environment, validated by `config check`.
    let out = Command::new(tidemark_e2e::merge_scenario::tidemark_bin())
        .args(["--config", "deploy/tidemark.toml", "config", "check"])
        .current_dir(repo())
        .env("TIDEMARK_S3_SECRET", "x")
        .env("TIDEMARK_WAREHOUSE_PASSWORD", "y")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = read("deploy/tidemark.toml")
        .replace("{ env = \"TIDEMARK_S3_SECRET\" }", "\"x\"")
        .replace("{ env = \"TIDEMARK_WAREHOUSE_PASSWORD\" }", "\"y\"");
    let config = Config::from_toml_and_env(&text, std::iter::empty()).unwrap();
    let merged: Vec<&str> = config.tables.iter().map(|t| t.source.as_str()).collect();
    assert_eq!(merged, tables, "every captured table is configured");
    let pattern = regex::Regex::new(config.kafka.topic_pattern.as_deref().unwrap()).unwrap();
    assert!(tables.iter().all(|t| pattern.is_match(t)));
}

#[tokio::test]
async fn the_source_sql_runs_on_postgresql() {
    let Some(url) = tidemark_e2e::postgres::fresh_database().await else {
        return;
    };
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    conn.execute(read("schemas/source/bank.sql").as_str())
        .await
        .unwrap();
    let changes = read("schemas/source/changes.sql");
    for _ in 0..20 {
        conn.execute(changes.as_str()).await.unwrap();
    }
    let n: (i64,) = sqlx::query_as("SELECT count(*) FROM transactions")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(n.0, 20);
    let full: (String,) =
        sqlx::query_as("SELECT relreplident::text FROM pg_class WHERE relname = 'customers'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(full.0, "f", "REPLICA IDENTITY FULL");
}

#[test]
fn the_dockerfile_builds_what_the_readme_builds() {
    let docker = read("Dockerfile");
    let toolchain = read("rust-toolchain.toml");
    let version = toolchain
        .lines()
        .find_map(|l| l.trim().strip_prefix("channel = "))
        .unwrap()
        .trim_matches('"');
    let minor = version.rsplit_once('.').map_or(version, |(a, _)| a);
    assert!(
        docker.contains(&format!("FROM rust:{minor}-bookworm")),
        "toolchain {version}"
    );
    assert!(docker.contains("cargo build --release --locked -p tidemark"));
    assert!(docker.contains("target/release/tidemark /usr/local/bin/tidemark"));
    // librdkafka links OpenSSL, Cyrus SASL and libcurl: headers to build, libraries to run.
    let (build, runtime) = docker.split_once("FROM debian").unwrap();
    for dev in [
        "libssl-dev",
        "libsasl2-dev",
        "libcurl4-openssl-dev",
        "pkg-config",
    ] {
        assert!(build.contains(dev), "the build stage lacks {dev}");
    }
    for lib in ["libssl3", "libsasl2-2", "libcurl4", "ca-certificates"] {
        assert!(runtime.contains(lib), "the runtime stage lacks {lib}");
    }
    let readme = read("README.md");
    assert!(
        readme.contains("-p tidemark"),
        "the README builds the tidemark package"
    );
}

/// The `tidemark.toml` of the Kubernetes example's ConfigMap (a YAML block scalar).
fn manifest_config(manifest: &str) -> String {
    let start = manifest
        .find("tidemark.toml: |\n")
        .expect("a tidemark.toml block")
        + 17;
    manifest[start..]
        .lines()
        .take_while(|l| l.starts_with("    ") || l.is_empty())
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_kubernetes_example_probes_what_tidemark_serves_and_its_config_checks() {
    let manifest = read("deploy/kubernetes/tidemark.yaml");
    for probe in ["path: /healthz", "path: /readyz", "containerPort: 9464"] {
        assert!(manifest.contains(probe), "no `{probe}`");
    }
    assert!(manifest.contains("runAsUser: 10001"), "the image's user");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tidemark.toml");
    std::fs::write(&path, manifest_config(&manifest)).unwrap();
    let out = Command::new(tidemark_e2e::merge_scenario::tidemark_bin())
        .args(["--config", path.to_str().unwrap(), "config", "check"])
        .env("KAFKA_PASSWORD", "k-secret")
        .env("WAREHOUSE_PASSWORD", "w-secret")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        !shown.contains("k-secret") && !shown.contains("w-secret"),
        "{shown}"
    );
    assert!(
        shown.contains("listen = \"0.0.0.0:9464\""),
        "probes reach the pod: {shown}"
    );
}

#[test]
fn the_systemd_unit_verifies() {
    let unit = read("deploy/systemd/tidemark.service");
    assert!(
        unit.contains("ExecStart=/usr/local/bin/tidemark --config /etc/tidemark/tidemark.toml")
    );
    let Ok(_) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("skipped: systemd-analyze not installed");
        return;
    };
    // systemd-analyze wants the binary to exist: point the unit at the one under test.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tidemark.service");
    let bin = tidemark_e2e::merge_scenario::tidemark_bin();
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/tidemark", bin.to_str().unwrap()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && !said.contains("tidemark.service:"),
        "{said}"
    );
}
