//! Hostile input against a running `tidemark run` (librdkafka's MockCluster, bronze on local
//! files, a SQLite warehouse): a corpus of bad records interleaved with good ones on a shared
//! topic, beside healthy tables and one table whose values the warehouse refuses. The process
//! never exits; every good record merges exactly once; every bad one is a dead letter with its
//! reason (or its table stops, alone); the healthy tables stay fresh; memory stays bounded.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use tidemark_e2e::kafka::Kafka;
use tidemark_e2e::process::Tidemark;
use tidemark_e2e::run_setup::free_port;
use tidemark_e2e::stream::{Record, RecordKind};
use tidemark_e2e::warehouse::rows;
use tidemark_warehouse::sql::conn::Pool;

const GOOD: [&str; 3] = [
    "shop.public.good_a",
    "shop.public.good_b",
    "shop.public.good_c",
];
const MIXED: &str = "shop.public.mixed";
const REFUSED: &str = "shop.public.refused";

const ID: &str = r#"{"type":"int64","optional":false,"field":"id"}"#;
const NAME: &str = r#"{"type":"string","optional":true,"field":"name"}"#;

/// A Debezium PostgreSQL envelope with the schema; `fields` are the row's field schemas.
fn envelope(fields: &str, op: &str, after: &str, lsn: i64) -> Vec<u8> {
    format!(
        r#"{{"schema":{{"type":"struct","name":"e.Envelope","fields":[
            {{"type":"struct","optional":true,"field":"before","name":"e.Value","fields":[{fields}]}},
            {{"type":"struct","optional":true,"field":"after","name":"e.Value","fields":[{fields}]}},
            {{"type":"struct","field":"source","name":"io.debezium.connector.postgresql.Source","fields":[
                {{"type":"string","field":"connector"}},{{"type":"int64","optional":true,"field":"lsn"}},
                {{"type":"int64","optional":true,"field":"ts_ms"}}]}},
            {{"type":"string","field":"op"}},{{"type":"int64","optional":true,"field":"ts_ms"}}]}},
          "payload":{{"before":null,"after":{after},
            "source":{{"connector":"postgresql","lsn":{lsn},"ts_ms":1700000000000}},"op":"{op}","ts_ms":1700000000000}}}}"#
    )
    .into_bytes()
}

fn key(id: i64) -> Vec<u8> {
    format!(
        r#"{{"schema":{{"type":"struct","name":"e.Key","fields":[{ID}]}},"payload":{{"id":{id}}}}}"#
    )
    .into_bytes()
}

fn record(topic: &str, key: Option<Vec<u8>>, value: Vec<u8>, kind: RecordKind) -> Record {
    Record {
        topic: topic.into(),
        partition: 0,
        key,
        value: Some(value),
        timestamp_ms: 1_700_000_000_000,
        kind,
    }
}

fn good(topic: &str, id: i64) -> Record {
    let after = format!(r#"{{"id":{id},"name":"n{id}"}}"#);
    record(
        topic,
        Some(key(id)),
        envelope(&format!("{ID},{NAME}"), "c", &after, 1000 + id),
        RecordKind::Change(tidemark_core::event::Op::Create),
    )
}

/// A bad record: what it is, its key and its value.
type Bad = (&'static str, Option<Vec<u8>>, Vec<u8>);

/// The bad records, each with what it is. Ids from 1000 up: none may reach the warehouse.
fn corpus() -> Vec<Bad> {
    let with = |extra: &str, after: &str, id: i64| {
        envelope(&format!("{ID},{extra}"), "c", after, 5000 + id)
    };
    let vsd = r#"{"type":"struct","optional":true,"name":"io.debezium.data.VariableScaleDecimal","field":"x","fields":[{"type":"int32","field":"scale"},{"type":"bytes","field":"value"}]}"#;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    vec![
        (
            "VariableScaleDecimal of scale 10^8",
            Some(key(1001)),
            with(vsd, r#"{"id":1001,"x":{"scale":100000000,"value":"AQ=="}}"#, 1001),
        ),
        (
            "Decimal schema of scale 10^9",
            Some(key(1002)),
            with(
                r#"{"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"1000000000"},"field":"x"}"#,
                r#"{"id":1002,"x":"AQ=="}"#,
                1002,
            ),
        ),
        (
            "PostgreSQL time of 100:00:00",
            Some(key(1003)),
            with(
                r#"{"type":"int64","optional":true,"name":"io.debezium.time.MicroTime","field":"x"}"#,
                r#"{"id":1003,"x":360000000000}"#,
                1003,
            ),
        ),
        (
            "date of 2^31-1 days",
            Some(key(1004)),
            with(
                r#"{"type":"int32","optional":true,"name":"io.debezium.time.Date","field":"x"}"#,
                r#"{"id":1004,"x":2147483647}"#,
                1004,
            ),
        ),
        (
            "update with after: null",
            Some(key(1005)),
            envelope(&format!("{ID},{NAME}"), "u", "null", 5005),
        ),
        (
            "null in a required field",
            Some(key(1006)),
            with(
                r#"{"type":"string","optional":false,"field":"x"}"#,
                r#"{"id":1006,"x":null}"#,
                1006,
            ),
        ),
        (
            "key with a member its schema lacks",
            Some(
                format!(r#"{{"schema":{{"type":"struct","name":"e.Key","fields":[{ID}]}},"payload":{{"id":1007,"tenant":9}}}}"#)
                    .into_bytes(),
            ),
            envelope(&format!("{ID},{NAME}"), "c", r#"{"id":1007,"name":"x"}"#, 5007),
        ),
        ("truncated JSON", Some(key(1008)), b"{\"schema\":{\"type\":".to_vec()),
        (
            "unknown op",
            Some(key(1009)),
            envelope(&format!("{ID},{NAME}"), "x", r#"{"id":1009,"name":"x"}"#, 5009),
        ),
        ("bytes that are not UTF-8", Some(key(1010)), vec![0xff, 0xfe, 0x00, 0x7b]),
        ("JSON nested 100,000 deep", Some(key(1011)), deep.into_bytes()),
        (
            "integer beyond int64",
            Some(key(1012)),
            envelope(
                &format!("{ID},{NAME}"),
                "c",
                r#"{"id":99999999999999999999999,"name":"x"}"#,
                5012,
            ),
        ),
    ]
}

/// A value a SQLite warehouse refuses: two columns that differ only in case.
fn refused(id: i64) -> Record {
    let fields = format!(
        r#"{ID},{{"type":"string","optional":true,"field":"Name"}},{{"type":"string","optional":true,"field":"name"}}"#
    );
    let after = format!(r#"{{"id":{id},"Name":"A","name":"a"}}"#);
    record(
        REFUSED,
        Some(key(id)),
        envelope(&fields, "c", &after, 9000 + id),
        RecordKind::Change(tidemark_core::event::Op::Create),
    )
}

fn config(dir: &std::path::Path, bootstrap: &str, port: u16) -> std::path::PathBuf {
    let topics: Vec<String> = GOOD
        .iter()
        .chain(&[MIXED, REFUSED])
        .map(|t| format!("\"{t}\""))
        .collect();
    let path = dir.join("tidemark.toml");
    std::fs::write(
        &path,
        format!(
            "[kafka]\nbootstrap_servers = \"{bootstrap}\"\ngroup_id = \"hostile\"\ntopics = [{}]\n\
             [kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\
             [bronze]\nurl = \"file://{d}/bronze\"\nmax_records = 50\nmax_age_ms = 300\n\
             [warehouse]\nurl = \"sqlite://{d}/w.db\"\n[merge]\ninterval_ms = 100\n\
             [metrics]\nlisten = \"127.0.0.1:{port}\"\n",
            topics.join(", "),
            d = dir.display(),
        ),
    )
    .unwrap();
    path
}

/// The ledger's next offset per topic (partition 0).
async fn ledger(db: &std::path::Path) -> BTreeMap<String, i64> {
    if !db.exists() {
        return BTreeMap::new();
    }
    let Ok(pool) = Pool::connect(&format!("sqlite://{}", db.display()), None).await else {
        return BTreeMap::new();
    };
    // Before the merger's first cycle there is no ledger yet.
    let mut tx = pool.begin().await.unwrap();
    let got = tx
        .fetch(
            "SELECT topic, CAST(next_offset AS TEXT) FROM tidemark__ledger WHERE part = 0",
            &[],
        )
        .await
        .unwrap_or_default();
    tx.rollback().await.unwrap();
    pool.close().await;
    got.into_iter()
        .filter_map(|r| Some((r[0].clone()?, r[1].as_deref()?.parse().ok()?)))
        .collect()
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_records_never_stop_the_pipeline() {
    let topics: Vec<(&str, i32)> = GOOD
        .iter()
        .chain(&[MIXED, REFUSED])
        .map(|t| (*t, 1))
        .collect();
    let kafka = Kafka::start(&topics);
    let bad = corpus();
    let mut records = Vec::new();
    let mut expect_mixed = BTreeSet::new();
    for (i, (_, k, v)) in bad.iter().enumerate() {
        let id = i as i64 * 2 + 1;
        records.push(good(MIXED, id));
        expect_mixed.insert(id);
        records.push(record(MIXED, k.clone(), v.clone(), RecordKind::Poison));
    }
    // Valid, if large: a decimal of scale 16,383 (PostgreSQL's limit) lands and merges.
    let big = envelope(
        &format!(
            r#"{ID},{{"type":"struct","optional":true,"name":"io.debezium.data.VariableScaleDecimal","field":"x","fields":[{{"type":"int32","field":"scale"}},{{"type":"bytes","field":"value"}}]}}"#
        ),
        "c",
        r#"{"id":500,"x":{"scale":16383,"value":"AQ=="}}"#,
        7000,
    );
    records.push(record(
        MIXED,
        Some(key(500)),
        big,
        RecordKind::Change(tidemark_core::event::Op::Create),
    ));
    expect_mixed.insert(500);
    for t in GOOD {
        records.extend((1..=30).map(|id| good(t, id)));
    }
    records.extend((1..=3).map(refused));
    let delivered = kafka.produce(&records).await;
    let ends: BTreeMap<String, i64> = delivered
        .iter()
        .map(|((t, _), v)| (t.clone(), v.iter().map(|(o, _)| *o).max().unwrap() + 1))
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let port = free_port();
    let config = config(dir.path(), &kafka.bootstrap(), port);
    let mut run = Tidemark::start(&config, &["--log-level", "info", "run"]);

    let started = Instant::now();
    loop {
        assert!(
            run.child.try_wait().unwrap().is_none(),
            "tidemark run exited:\n{}",
            run.log.lock().unwrap()
        );
        let got = ledger(&db).await;
        let caught_up = ends
            .iter()
            .filter(|(t, _)| t.as_str() != REFUSED)
            .all(|(t, end)| got.get(t) == Some(end));
        if caught_up {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "not caught up: ledger {got:?}, ends {ends:?}\n{}",
            run.log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let rss_mib = peak_rss_kib(run.child.id()) / 1024;
    let took = run.terminate();
    assert!(took < Duration::from_secs(5), "SIGTERM took {took:?}");

    let pool = Pool::connect(&format!("sqlite://{}", db.display()), None)
        .await
        .unwrap();
    let ids = |table: &'static str| {
        let pool = &pool;
        async move {
            rows(
                pool,
                &format!("SELECT CAST(id AS TEXT) FROM silver__{table}"),
            )
            .await
            .iter()
            .filter_map(|r| r[0].as_deref()?.parse::<i64>().ok())
            .collect::<BTreeSet<i64>>()
        }
    };
    for t in ["good_a", "good_b", "good_c"] {
        assert_eq!(ids(t).await, (1..=30).collect(), "{t}");
    }
    assert_eq!(
        ids("mixed").await,
        expect_mixed,
        "only the good records of the mixed topic"
    );
    let stopped = metrics.lines().any(|l| {
        l.starts_with("tidemark_table_stopped{") && l.contains("refused") && l.ends_with(" 1")
    });
    assert!(stopped, "the refused table is stopped:\n{metrics}");

    let store =
        object_store::local::LocalFileSystem::new_with_prefix(dir.path().join("bronze")).unwrap();
    let letters =
        tidemark_bronze::admin::dead_letters(&store, &object_store::path::Path::default())
            .await
            .unwrap();
    let mixed_offsets = &delivered[&(MIXED.to_owned(), 0)];
    let bad_offsets: BTreeSet<i64> = mixed_offsets
        .iter()
        .filter(|(_, i)| records[*i].kind == RecordKind::Poison)
        .map(|(o, _)| *o)
        .collect();
    let lettered: BTreeSet<i64> = letters.iter().map(|l| l.offset).collect();
    for (what, _, _) in &bad {
        eprintln!("  tried: {what}");
    }
    for l in &letters {
        assert!(!l.reason.is_empty(), "{l:?}");
        eprintln!("  dead letter @{}: {} ({})", l.offset, l.reason, l.error);
    }
    assert_eq!(
        lettered, bad_offsets,
        "every bad record is a dead letter, and only those"
    );
    eprintln!(
        "hostile corpus: {} tried, {} dead-lettered, {} good records applied, 1 table stopped; \
         peak RSS {rss_mib} MiB",
        bad.len(),
        letters.len(),
        expect_mixed.len() + 90
    );
    assert!(rss_mib < 512, "peak RSS {rss_mib} MiB");
}
