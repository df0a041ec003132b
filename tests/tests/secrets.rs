//! Secrets never reach the output: `config check` and trace-level logs of the real binary are
//! searched for a password in a URL query (`?password=`, which sqlx accepts), in URL userinfo
//! (the Schema Registry), and in a librdkafka property whose value its config errors echo.

use std::process::Command;

use tidemark_e2e::merge_scenario::tidemark_bin;

const IN_QUERY: &str = "QuerySecret-7f3a";
const IN_USERINFO: &str = "UserinfoSecret-91c2";
const IN_PROPERTY: &str = "PropertySecret-c44e";

/// A config with a secret in each place; `protocol` is the Kafka `security.protocol`.
fn config(dir: &std::path::Path, protocol: &str) -> std::path::PathBuf {
    let path = dir.join("t.toml");
    std::fs::write(
        &path,
        format!(
            r#"[kafka]
bootstrap_servers = "127.0.0.1:1"
topics = ["bank.public.customers"]
schema_registry_url = "http://reg:{IN_USERINFO}@127.0.0.1:1/"
schema_registry_timeout_ms = 200
[kafka.properties]
"security.protocol" = "{protocol}"
"ssl.key.password" = "{IN_PROPERTY}"
[warehouse]
url = "postgres://dw@127.0.0.1:1/dw?sslmode=disable&password={IN_QUERY}"
[bronze]
url = "file://{}/bronze"
[metrics]
listen = "127.0.0.1:0"
"#,
            dir.display()
        ),
    )
    .unwrap();
    path
}

/// Everything a run printed, stdout and stderr.
fn run(config: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(tidemark_bin())
        .arg("--config")
        .arg(config)
        .args(["--log-level", "trace"])
        .args(args)
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn assert_clean(what: &str, output: &str) {
    for secret in [IN_QUERY, IN_USERINFO, IN_PROPERTY] {
        assert!(
            !output.contains(secret),
            "{what} printed a secret ({secret}):\n{}",
            output
                .lines()
                .filter(|l| l.contains(secret))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[test]
fn config_check_masks_every_secret() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path(), "SSL");
    let out = run(&c, &["config", "check"]);
    assert!(out.contains("password=***"), "{out}");
    assert!(out.contains("reg:***@"), "{out}");
    assert_clean("config check", &out);
}

#[test]
fn trace_logs_of_failing_peers_hold_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    // The property is refused (plaintext ignores it): the error names the key, never the value.
    let c = config(dir.path(), "PLAINTEXT");
    let ingest = run(&c, &["ingest"]);
    assert!(ingest.contains("ssl.key.password"), "{ingest}");
    assert_clean("ingest", &ingest);
    // The warehouse is unreachable.
    let merge = run(&c, &["merge", "--once"]);
    assert_clean("merge", &merge);
    // The registry is unreachable: every retry is logged.
    let record = dir.path().join("record.avro");
    std::fs::write(&record, [0u8, 0, 0, 0, 1, 2, 3]).unwrap();
    let decode = run(
        &c,
        &[
            "inspect",
            "decode",
            "--format",
            "avro",
            record.to_str().unwrap(),
        ],
    );
    assert!(decode.contains("127.0.0.1:1"), "{decode}");
    assert_clean("inspect decode", &decode);
}
