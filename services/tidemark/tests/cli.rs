//! The command line as users run it: the real binary, real files.

use std::path::Path;
use std::process::{Command, Output};

fn tidemark(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidemark"))
        // Tests run in parallel: an ephemeral metrics port each.
        .env("TIDEMARK__METRICS__LISTEN", "127.0.0.1:0")
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn fixture(rel: &str) -> String {
    format!(
        "{}/../tidemark-wire/tests/fixtures/debezium/{rel}",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn later_subcommands_say_so_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = tidemark(&["dlq", "requeue"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not available yet"), "{err}");
}

#[test]
fn generate_without_a_reachable_kafka_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = tidemark(
        &[
            "generate",
            "--bootstrap-servers",
            "127.0.0.1:1",
            "--events",
            "10",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach Kafka at 127.0.0.1:1"), "{err}");
}

#[test]
fn a_full_replay_asks_where_to_build() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tidemark.toml"),
        format!(
            "[bronze]\nurl = \"file://{}/bronze\"\n[warehouse]\nurl = \"sqlite://{}/not/yet/there/w.db\"\n",
            dir.path().display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let out = tidemark(&["replay"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--target-suffix") && err.contains("--in-place"),
        "{err}"
    );
    let out = tidemark(&["merge", "--once"], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_subcommand_has_help() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in [
        "ingest", "merge", "run", "replay", "demo", "generate", "inspect", "dlq", "gc", "config",
    ] {
        let out = tidemark(&[cmd, "--help"], dir.path());
        assert!(out.status.success(), "{cmd} --help");
        assert!(!out.stdout.is_empty());
    }
}

#[test]
fn config_check_prints_the_effective_config_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tidemark.toml"),
        "[kafka]\ntopics = [\"bank.public.customers\"]\n[kafka.properties]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.username\" = \"dw\"\n\"sasl.password\" = \"hunter2\"\n[warehouse]\nurl = \"postgres://dw:topsecret@db/dw\"\n",
    )
    .unwrap();
    let out = tidemark(&["config", "check"], dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("bank.public.customers") && stdout.contains("max_records = 30000"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("hunter2") && !stdout.contains("topsecret"),
        "{stdout}"
    );
}

#[test]
fn config_check_names_bad_keys_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.toml"), "[bronze]\nurl = \"ftp://x\"\n").unwrap();
    let out = tidemark(&["--config", "bad.toml", "config", "check"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bronze.url") && err.contains("s3://bucket/prefix"),
        "{err}"
    );
    let out = tidemark(&["--config", "missing.toml", "config", "check"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"));
}

#[test]
fn inspect_decode_prints_typed_values() {
    let dir = tempfile::tempdir().unwrap();
    let out = tidemark(
        &[
            "inspect",
            "decode",
            &fixture("constructed/pg_logical_types_create_envelope.json"),
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["op"], "c");
    assert_eq!(v["after"]["price"], "1234.56");
    assert_eq!(v["after"]["ts6"], "2018-06-20T15:13:16.945104Z");
    assert_eq!(v["after"]["bio"]["$unavailable"], true);
    assert_eq!(v["source"]["lsn_text"], "0/16E9058");
    let out = tidemark(
        &[
            "inspect",
            "decode",
            "--topic",
            "__debezium-heartbeat.bank",
            &fixture("constructed/heartbeat_value_payload.json"),
        ],
        dir.path(),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kind"], "heartbeat");
}

#[test]
fn inspect_decode_reports_bad_records() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.json"), "{\"op\":\"c\",\"after\":").unwrap();
    let out = tidemark(&["inspect", "decode", "bad.json"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid JSON"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(dir.path().join("rec.avro"), [0u8, 0, 0, 0, 1, 2]).unwrap();
    let out = tidemark(
        &["inspect", "decode", "--format", "avro", "rec.avro"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Schema Registry"));
}

#[test]
fn bronze_admin_commands_read_an_empty_root() {
    let dir = tempfile::tempdir().unwrap();
    let bronze = dir.path().join("bronze");
    std::fs::write(
        dir.path().join("tidemark.toml"),
        format!("[bronze]\nurl = \"file://{}\"\n", bronze.display()),
    )
    .unwrap();
    let out = tidemark(&["inspect", "bronze"], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing committed yet"));
    let out = tidemark(&["dlq", "list"], dir.path());
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 dead letter(s)"));
    let out = tidemark(&["gc", "--dry-run", "--older-than-secs", "0"], dir.path());
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 orphan(s) found"));
}

#[test]
fn ingest_without_a_config_file_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = tidemark(&["ingest"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("tidemark.toml"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn ingest_stops_cleanly_on_sigterm_even_right_after_start() {
    let dir = tempfile::tempdir().unwrap();
    let bronze = dir.path().join("bronze");
    std::fs::write(
        dir.path().join("tidemark.toml"),
        format!("[kafka]\nbootstrap_servers = \"127.0.0.1:1\"\ntopics = [\"a.b.c\"]\n[bronze]\nurl = \"file://{}\"\n", bronze.display()),
    )
    .unwrap();
    for delay_ms in [50, 500] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tidemark"))
            // Tests run in parallel: an ephemeral metrics port each.
            .env("TIDEMARK__METRICS__LISTEN", "127.0.0.1:0")
            .args(["--log-level", "error", "ingest"])
            .current_dir(dir.path())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "after {delay_ms} ms: {status}");
    }
}

/// Files tidemark creates hold source data (a SQLite warehouse here): they are its user's only,
/// whatever the umask it was started with.
#[test]
fn files_tidemark_creates_are_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("bronze")).unwrap();
    std::fs::write(
        dir.path().join("tidemark.toml"),
        format!(
            "[bronze]\nurl = \"file://{0}/bronze\"\n[warehouse]\nurl = \"sqlite://{0}/w.db\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = tidemark(&["merge", "--once"], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = std::fs::metadata(dir.path().join("w.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "w.db has mode {mode:o}");
}

/// `tidemark … | head`: a reader that goes away ends the command quietly (status 141, as a
/// process killed by SIGPIPE), never with a panic message.
#[test]
fn a_closed_pipe_ends_output_quietly() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tidemark.toml"), "").unwrap();
    // The reader closes before anything is written.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["config", "check"])
        .current_dir(dir.path())
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(141), "{stderr}");
}
