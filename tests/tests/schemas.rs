//! `schemas/`: the generator's row schemas are the one definition of the bank. The Avro
//! schemas of the demo topics are the ones `tidemark generate` registers, the demo's source SQL
//! has the generator's tables and types, and the reference warehouse DDL is what the merger
//! builds from the demo stream.

use std::path::{Path, PathBuf};
use std::process::Command;

use sqlx::{Connection, Executor};
use tidemark_e2e::merge_scenario::{run_demo, tidemark_bin};
use tidemark_generator::{Bank, BankOptions, avro_subjects};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// With `TIDEMARK_BLESS=1`, rewrites the files instead of comparing.
#[test]
fn the_avro_schemas_are_the_ones_generate_registers() {
    let bank = Bank::new(BankOptions::default());
    let dir = repo().join("schemas/avro");
    let bless = std::env::var_os("TIDEMARK_BLESS").is_some();
    let mut expected = Vec::new();
    for s in avro_subjects(&bank) {
        for (suffix, schema) in [("key", &s.key), ("value", &s.value)] {
            let name = format!("{}-{suffix}.avsc", s.topic);
            let text = serde_json::to_string_pretty(schema).unwrap() + "\n";
            // Valid Avro, by the reference implementation's Rust port.
            apache_avro::Schema::parse_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            let path = dir.join(&name);
            if bless {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &text).unwrap();
            }
            let have = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e} (TIDEMARK_BLESS=1 writes it)", path.display()));
            assert_eq!(
                have, text,
                "{name} differs from the generator's (TIDEMARK_BLESS=1 rewrites it)"
            );
            expected.push(name);
        }
    }
    let mut present: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    present.sort();
    expected.sort();
    assert_eq!(present, expected, "no stale schema files");
}

/// Columns (type, nullability) and indexes (names aside) of silver and gold.
async fn shape(url: &str) -> Vec<String> {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let mut out: Vec<String> = sqlx::query_scalar(
        "SELECT table_schema || '.' || table_name || '.' || column_name || ' ' || \
         CASE WHEN data_type = 'numeric' THEN 'numeric(' || numeric_precision || ',' || numeric_scale || ')' \
         ELSE data_type END || ' nullable=' || is_nullable || ' identity=' || is_identity \
         FROM information_schema.columns WHERE table_schema IN ('silver', 'gold') \
         ORDER BY table_schema, table_name, ordinal_position",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let mut indexes: Vec<String> = sqlx::query_scalar(
        "SELECT regexp_replace(indexdef, 'INDEX \\S+ ON', 'INDEX ON') FROM pg_indexes \
         WHERE schemaname IN ('silver', 'gold')",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    indexes.sort();
    out.extend(indexes);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_warehouse_ddl_is_what_the_merger_builds() {
    let Some(built) = tidemark_e2e::postgres::fresh_database().await else {
        return;
    };
    let reference = tidemark_e2e::postgres::fresh_database().await.unwrap();

    // The demo's stream into bronze, then merged into PostgreSQL with the demo's tables.
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("demo");
    let out = run_demo(&data, &["--events", "3000", "--keep"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let demo_config = std::fs::read_to_string(data.join("tidemark.toml")).unwrap();
    let tables = &demo_config[demo_config.find("[[tables]]").unwrap()..];
    let config = tmp.path().join("pg.toml");
    std::fs::write(
        &config,
        format!(
            "[bronze]\nurl = \"file://{}/bronze\"\n[warehouse]\nurl = \"{built}\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n{tables}",
            data.display()
        ),
    )
    .unwrap();
    let out = Command::new(tidemark_bin())
        .args(["--config"])
        .arg(&config)
        .args(["merge", "--once"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut conn = sqlx::PgConnection::connect(&reference).await.unwrap();
    let ddl = std::fs::read_to_string(repo().join("schemas/warehouse/postgres.sql")).unwrap();
    conn.execute(ddl.as_str()).await.unwrap();
    let (want, have) = (shape(&reference).await, shape(&built).await);
    assert!(want.len() > 60, "{want:?}");
    for (w, h) in want.iter().zip(&have) {
        assert_eq!(
            w, h,
            "schemas/warehouse/postgres.sql (left) vs the merger (right)"
        );
    }
    assert_eq!(want.len(), have.len(), "{want:#?}\n{have:#?}");
}

/// The connector's type of a source column (PostgreSQL, Debezium's defaults), as the
/// generator's schema must name it.
fn debezium_type(data_type: &str, precision: Option<i32>, scale: Option<i32>) -> String {
    match data_type {
        "bigint" => "int64".into(),
        "text" | "character" | "character varying" => "string".into(),
        "numeric" => format!(
            "bytes org.apache.kafka.connect.data.Decimal({},{})",
            precision.unwrap_or(0),
            scale.unwrap_or(0)
        ),
        "timestamp with time zone" => "string io.debezium.time.ZonedTimestamp".into(),
        other => panic!("source column type {other}: add its Debezium type here"),
    }
}

/// The generator's row schemas are the one definition of the bank: the demo's source SQL
/// (what Debezium captures in the stack) has the same tables, columns, order and types.
#[tokio::test]
async fn the_source_sql_has_the_generators_tables() {
    let Some(url) = tidemark_e2e::postgres::fresh_database().await else {
        return;
    };
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let sql = std::fs::read_to_string(repo().join("schemas/source/bank.sql")).unwrap();
    conn.execute(sql.as_str()).await.unwrap();
    for table in tidemark_generator::Table::ALL {
        let rows: Vec<(String, String, Option<i32>, Option<i32>)> = sqlx::query_as(
            "SELECT column_name::text, data_type::text, numeric_precision, numeric_scale \
             FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1 \
             ORDER BY ordinal_position",
        )
        .bind(table.name())
        .fetch_all(&mut conn)
        .await
        .unwrap();
        let source: Vec<(String, String)> = rows
            .into_iter()
            .map(|(c, t, p, s)| (c, debezium_type(&t, p, s)))
            .collect();
        let schema = tidemark_generator::bank::row_schema("bank", table);
        let generated: Vec<(String, String)> = schema
            .as_struct()
            .unwrap()
            .fields
            .iter()
            .map(|f| {
                let s = &f.schema;
                let name = s
                    .name
                    .as_deref()
                    .map(|n| format!(" {n}"))
                    .unwrap_or_default();
                let decimal = match s.logical {
                    tidemark_core::schema::Logical::Decimal { scale, precision } => {
                        format!("({},{scale})", precision.unwrap_or(0))
                    }
                    _ => String::new(),
                };
                (f.name.clone(), format!("{}{name}{decimal}", s.kind.name()))
            })
            .collect();
        assert_eq!(source, generated, "{}", table.name());
    }
}
