//! Configuration: TOML + environment overrides, unknown keys rejected, validation errors that
//! name the key, secrets masked.

use tidemark_core::config::{Config, ConfigError, LoadError, TableKind};
use tidemark_core::converter::WireFormat;

fn load(toml: &str, env: &[(&str, &str)]) -> Result<Config, LoadError> {
    Config::from_toml_and_env(
        toml,
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    )
}

fn problems(toml: &str) -> Vec<ConfigError> {
    match load(toml, &[]) {
        Err(LoadError::Invalid(e)) => e.0,
        other => panic!("expected validation errors, got {other:?}"),
    }
}

fn keys(errs: &[ConfigError]) -> Vec<&str> {
    errs.iter().map(|e| e.key.as_str()).collect()
}

const EXAMPLE: &str = include_str!("../../../tidemark.example.toml");

#[test]
fn the_example_file_is_valid_and_complete() {
    let c = load(EXAMPLE, &[]).unwrap();
    assert_eq!(c.tables.len(), 3);
    assert_eq!(c.tables[0].warehouse_name(), "customers");
    assert_eq!(c.tables[2].kind, Some(TableKind::Fact));
    assert_eq!(
        c.tables[2].references.get("account_id").map(String::as_str),
        Some("bank.public.accounts")
    );
    // Every key of the effective config appears in the example (documented there).
    let shown = c.to_masked_toml();
    let documented: String = EXAMPLE
        .lines()
        .map(|l| l.trim_start_matches("# "))
        .collect::<Vec<_>>()
        .join("\n");
    for line in shown
        .lines()
        .filter(|l| l.contains(" = ") && !l.starts_with('#'))
    {
        let key = line.split(" = ").next().unwrap().trim().trim_matches('"');
        assert!(
            documented.contains(key),
            "key `{key}` is not documented in tidemark.example.toml"
        );
    }
}

#[test]
fn defaults_apply_to_an_empty_file() {
    let c = load("", &[]).unwrap();
    assert_eq!(c.kafka.bootstrap_servers, "localhost:9092");
    assert_eq!(c.bronze.max_records, 30_000);
    assert_eq!(c.bronze.max_age().as_millis(), 5_000);
    assert_eq!(c.kafka.format, WireFormat::Json);
}

#[test]
fn unknown_keys_are_rejected_by_name() {
    let e = load("[kafka]\nbootstrap_server = \"x:1\"\n", &[]).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, LoadError::Parse(_)));
    assert!(msg.contains("bootstrap_server"), "{msg}");
    let e = load("[[tables]]\nsource = \"a.b.c\"\nkinds = \"fact\"\n", &[]).unwrap_err();
    assert!(e.to_string().contains("kinds"), "{e}");
    let e = load("[bronze]\nmax_records = \"many\"\n", &[]).unwrap_err();
    assert!(e.to_string().contains("bronze.max_records"), "{e}");
}

fn parse_problems(toml: &str, env: &[(&str, &str)]) -> Vec<ConfigError> {
    match load(toml, env) {
        Err(LoadError::Parse(e)) => e.0,
        other => panic!("expected parse errors, got {other:?}"),
    }
}

#[test]
fn type_errors_of_every_section_are_reported_at_once_in_words_with_their_line() {
    let toml = "[kafka]\ntopics = [\"a.b.c\"]\n\n[bronze]\nmax_records = \"many\"\n\n[merge]\ninterval_ms = true\n\n[[tables]]\nsource = \"a.b.c\"\n\n[[tables]]\nsource = \"a.b.d\"\nkind = 5\n";
    let errs = parse_problems(toml, &[("TIDEMARK__METRICS__LISTEN", "[1, 2]")]);
    let shown: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    let find = |key: &str| {
        errs.iter()
            .find(|e| e.key == key)
            .unwrap_or_else(|| panic!("no error for {key}: {shown:#?}"))
    };
    let records = find("bronze.max_records");
    assert!(records.problem.contains("the text \"many\""), "{records}");
    assert!(
        records.problem.contains("a whole number") && records.problem.contains("line 5"),
        "{records}"
    );
    assert!(records.fix.contains("without quotes"), "{records}");
    let interval = find("merge.interval_ms");
    assert!(
        interval.problem.contains("is true") && interval.problem.contains("line 8"),
        "{interval}"
    );
    let kind = find("tables[1].kind");
    assert!(kind.problem.contains("line 15"), "{kind}");
    let listen = find("metrics.listen");
    assert!(
        listen
            .problem
            .contains("from the environment variable TIDEMARK__METRICS__LISTEN"),
        "{listen}"
    );
    for s in &shown {
        assert!(
            !s.contains("u64") && !s.contains("u32") && !s.contains("bool "),
            "{s}"
        );
        assert_eq!(
            s.matches('`').count(),
            2,
            "backticks only around the key: {s}"
        );
    }
}

#[test]
fn unknown_keys_and_syntax_errors_give_the_line_and_a_fix() {
    let errs = parse_problems("[kafka]\n\nbootstrap_server = \"x:1\"\n", &[]);
    let e = &errs[0];
    assert_eq!(e.key, "kafka.bootstrap_server");
    assert!(
        e.problem.contains("line 3") && e.fix.contains("bootstrap_servers"),
        "{e}"
    );
    let errs = parse_problems("[kafka]\ntopics = [\"a\"\n[bronze]\nurl = file://x\n", &[]);
    assert!(!errs.is_empty());
    assert!(
        errs.iter().all(|e| e.problem.contains("not valid TOML")),
        "{errs:?}"
    );
    assert!(errs.iter().any(|e| e.key.starts_with("line ")), "{errs:?}");
}

#[test]
fn environment_overrides_the_file() {
    let c = load(
        "[kafka]\ngroup_id = \"from-file\"\n",
        &[
            ("TIDEMARK__KAFKA__GROUP_ID", "from-env"),
            ("TIDEMARK__BRONZE__S3__REGION", "eu-west-1"),
            ("TIDEMARK__BRONZE__MAX_RECORDS", "500"),
            ("TIDEMARK__KAFKA__TOPICS", "[\"a.b.c\", \"a.b.d\"]"),
            ("TIDEMARK__BRONZE__S3__ALLOW_HTTP", "true"),
            ("OTHER__KAFKA__GROUP_ID", "ignored"),
        ],
    )
    .unwrap();
    assert_eq!(c.kafka.group_id, "from-env");
    assert_eq!(c.bronze.s3.region, "eu-west-1");
    assert_eq!(c.bronze.max_records, 500);
    assert_eq!(c.kafka.topics, vec!["a.b.c", "a.b.d"]);
    assert!(c.bronze.s3.allow_http);
    let e = load("", &[("TIDEMARK__KAFKA__NOPE", "1")]).unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
}

#[test]
fn validation_names_every_bad_key_and_the_fix() {
    let errs = problems(
        r#"
[kafka]
topics = ["a.b.c"]
topic_pattern = "("
format = "avro"
[kafka.properties]
"group.id" = "x"
[bronze]
url = "ftp://x"
max_records = 0
zstd_level = 40
[warehouse]
url = "mysql://x"
[metrics]
listen = "nowhere"
[[tables]]
source = "bank.public.transactions"
kind = "fact"
references = { account_id = "bank.public.accounts" }
[[tables]]
source = "bank.public.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
[[tables]]
source = "bank.public.transactions"
columns = { x = "money" }
"#,
    );
    let k = keys(&errs);
    for expected in [
        "kafka.topic_pattern",
        "kafka.schema_registry_url",
        "kafka.properties.\"group.id\"",
        "bronze.url",
        "bronze.max_records",
        "bronze.zstd_level",
        "warehouse.url",
        "metrics.listen",
        "tables[0].references.account_id",
        "tables[1].name",
        "tables[2].source",
        "tables[2].columns.x",
    ] {
        assert!(k.contains(&expected), "missing {expected} in {k:?}");
    }
    let r = errs
        .iter()
        .find(|e| e.key == "tables[0].references.account_id")
        .unwrap();
    assert!(r.fix.contains("kind = \"dimension\""), "{r}");
    assert!(errs.iter().all(|e| !e.fix.is_empty()));
}

#[test]
fn secrets_come_from_env_or_file_and_are_masked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s3key");
    std::fs::write(&file, "from-a-file\n").unwrap();
    // A variable every process has (setting one would need unsafe code, which is forbidden).
    let var = "PATH";
    let from_env = std::env::var(var).unwrap();
    let toml = format!(
        r#"
[kafka]
format = "avro"
schema_registry_url = "https://sr.example.com"
schema_registry_username = "u"
schema_registry_password = {{ env = "{var}" }}
[kafka.properties]
"sasl.password" = "plain-secret"
"security.protocol" = "SASL_SSL"
[bronze.s3]
access_key_id = "AK"
secret_access_key = {{ file = "{}" }}
[warehouse]
url = "postgres://dw:pg-secret@db/dw"
"#,
        file.display()
    );
    let c = load(&toml, &[]).unwrap();
    assert_eq!(
        c.kafka.schema_registry_password.as_ref().unwrap().expose(),
        from_env
    );
    assert_eq!(
        c.bronze.s3.secret_access_key.as_ref().unwrap().expose(),
        "from-a-file"
    );
    let shown = c.to_masked_toml();
    for secret in [
        from_env.as_str(),
        "from-a-file",
        "plain-secret",
        "pg-secret",
    ] {
        assert!(!shown.contains(secret), "{secret} leaked:\n{shown}");
    }
    assert!(shown.contains("SASL_SSL"));
    assert!(!format!("{c:?}").contains("from-a-file"));
    let e = load("[kafka]\nschema_registry_password = { env = \"TIDEMARK_TEST_UNSET_VAR\" }\nschema_registry_username = \"u\"\n", &[]).unwrap_err();
    assert!(e.to_string().contains("TIDEMARK_TEST_UNSET_VAR"), "{e}");
}

#[test]
fn kafka_properties_take_numbers_booleans_and_secrets_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kafka-password");
    std::fs::write(&file, "scram-from-file\n").unwrap();
    let toml = format!(
        r#"
[kafka.properties]
"security.protocol" = "SASL_SSL"
"sasl.password" = {{ file = "{}" }}
"fetch.min.bytes" = 1
"enable.ssl.certificate.verification" = true
"#,
        file.display()
    );
    let c = load(&toml, &[]).unwrap();
    let p = &c.kafka.properties;
    assert_eq!(p["sasl.password"], "scram-from-file");
    assert_eq!(p["fetch.min.bytes"], "1");
    assert_eq!(p["enable.ssl.certificate.verification"], "true");
    assert!(!c.to_masked_toml().contains("scram-from-file"));
    let e = load(
        "[kafka.properties]\n\"sasl.password\" = { file = \"/nonexistent/pw\" }\n",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("sasl.password") && e.contains("/nonexistent/pw"),
        "{e}"
    );
}

const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";

#[test]
fn certificates_come_from_paths_files_or_inline_and_print_only_their_origin() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, format!("{PEM}\n")).unwrap();
    let key = dir.path().join("client.key");
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nSECRETKEY\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let toml = format!(
        r#"
[kafka]
schema_registry_url = "https://sr.example.com"
schema_registry_ca = "{ca}"
schema_registry_client_cert = """{PEM}"""
schema_registry_client_key = {{ file = "{key}" }}
[warehouse]
url = "postgres://dw@db/dw"
ssl_mode = "verify-full"
ssl_root_cert = {{ file = "{ca}" }}
"#,
        ca = ca.display(),
        key = key.display(),
    );
    let c = load(&toml, &[]).unwrap();
    assert_eq!(c.kafka.schema_registry_ca.as_ref().unwrap().text(), PEM);
    assert_eq!(
        c.kafka
            .schema_registry_client_cert
            .as_ref()
            .unwrap()
            .origin(),
        "inline"
    );
    assert_eq!(
        c.warehouse.ssl_root_cert.as_ref().unwrap().origin(),
        format!("file {}", ca.display())
    );
    let shown = format!("{}\n{c:?}", c.to_masked_toml());
    assert!(
        !shown.contains("SECRETKEY") && !shown.contains("MIIB"),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("file {}", key.display())),
        "{shown}"
    );

    std::fs::write(&ca, "not a certificate").unwrap();
    let e = load(
        &format!(
            "[warehouse]\nurl = \"postgres://db/dw\"\nssl_root_cert = \"{}\"\n",
            ca.display()
        ),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("ssl_root_cert") && e.contains("no PEM block"),
        "{e}"
    );
}

#[test]
fn tls_settings_are_validated() {
    let errs = problems(
        r#"
[kafka]
schema_registry_url = "http://sr:8081"
schema_registry_client_cert = """-----BEGIN CERTIFICATE-----
x
-----END CERTIFICATE-----"""
[warehouse]
url = "sqlite://dw.db"
ssl_mode = "verify_full"
"#,
    );
    assert_eq!(
        keys(&errs),
        [
            "kafka.schema_registry_client_cert",
            "kafka.schema_registry_url",
            "warehouse.ssl_mode",
            "warehouse.ssl_mode",
        ]
    );
    assert!(errs[3].fix.contains("verify-full"), "{errs:?}");
}

#[test]
fn durations_take_milliseconds_or_human_forms() {
    let c = load(
        "[merge]\ninterval_ms = \"2s\"\nlease_ms = \"1m\"\ntransaction_timeout_ms = 45000\n\
         [bronze]\nmax_age_ms = \"250ms\"\n",
        &[
            ("TIDEMARK__MERGE__FACT_HOLD_MS", "1.5s"),
            ("TIDEMARK__KAFKA__SCHEMA_REGISTRY_TIMEOUT_MS", "3000"),
        ],
    )
    .unwrap();
    assert_eq!(c.merge.interval_ms, 2000);
    assert_eq!(c.merge.lease_ms, 60_000);
    assert_eq!(c.merge.transaction_timeout_ms, 45_000);
    assert_eq!(c.merge.fact_hold_ms, 1500);
    assert_eq!(c.bronze.max_age_ms, 250);
    assert_eq!(c.kafka.schema_registry_timeout_ms, 3000);
    let e = load("[merge]\ninterval_ms = \"5 parsecs\"\n", &[]).unwrap_err();
    assert!(
        e.to_string().contains("5 parsecs") && e.to_string().contains("interval_ms"),
        "{e}"
    );
}
