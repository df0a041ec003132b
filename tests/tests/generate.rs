//! `tidemark generate`: it holds its target rate, and what it reports is what a consumer finds,
//! against librdkafka's MockCluster (read back with rdkafka and tidemark's decoder) and against a
//! tansu broker (read back with kcat).

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tidemark_core::event::{Decoded, RawRecord};
use tidemark_core::value::Value;
use tidemark_e2e::kafka::Kafka;
use tidemark_e2e::merge_scenario::tidemark_bin;
use tidemark_e2e::run_setup::free_port;
use tidemark_generator::{Bank, BankOptions, avro_subjects};
use tidemark_wire::decode::{Decoder, DecoderOptions, WireFormat};
use tidemark_wire::registry::{RegistryClient, RegistrySettings};
use wiremock::matchers::{body_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TABLES: [&str; 3] = ["customers", "accounts", "transactions"];

/// What `generate` printed: rate, (table, kind) → records, (topic, partition) → next offset.
#[derive(Debug, Default)]
struct Report {
    records: u64,
    rate: f64,
    kinds: BTreeMap<(String, String), u64>,
    ends: BTreeMap<(String, i32), i64>,
}

fn parse(stdout: &str) -> Report {
    let mut r = Report::default();
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("generated ") {
            r.records = rest.split_whitespace().next().unwrap().parse().unwrap();
            let rate = rest.split(": ").nth(1).unwrap();
            r.rate = rate.split_whitespace().next().unwrap().parse().unwrap();
        } else if line.contains(" next offset ") {
            let (tp, end) = line.trim().split_once(" next offset ").unwrap();
            let (topic, p) = tp.trim_end_matches(']').split_once('[').unwrap();
            r.ends
                .insert((topic.into(), p.parse().unwrap()), end.parse().unwrap());
        } else if let Some(table) = TABLES.iter().find(|t| line.trim_start().starts_with(*t)) {
            for kv in line.split_whitespace().skip(1) {
                let (k, v) = kv.split_once('=').unwrap();
                r.kinds
                    .insert((table.to_string(), k.into()), v.parse().unwrap());
            }
        }
    }
    assert!(r.records > 0, "no report in:\n{stdout}");
    r
}

fn generate(args: &[&str]) -> Report {
    generate_and_say(args).0
}

/// The report, and what `generate` said on stderr.
fn generate_and_say(args: &[&str]) -> (Report, String) {
    let out = Command::new(tidemark_bin())
        .arg("generate")
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "generate failed:\n{stdout}\n{stderr}");
    (parse(&stdout), stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_the_mock_cluster_the_report_is_what_a_consumer_reads() {
    let topics: Vec<String> = TABLES.iter().map(|t| format!("bank.public.{t}")).collect();
    let kafka = Kafka::start(&topics.iter().map(|t| (t.as_str(), 3)).collect::<Vec<_>>());
    let bootstrap = kafka.bootstrap();
    let report = tokio::task::spawn_blocking(move || {
        generate(&[
            "--bootstrap-servers",
            &bootstrap,
            "--events",
            "3000",
            "--rate",
            "1500",
            "--customers",
            "40",
        ])
    })
    .await
    .unwrap();
    assert!(report.records >= 3000);
    // The limiter holds the target (a loaded machine may fall short, never far above).
    assert!(
        report.rate <= 1500.0 * 1.1 && report.rate >= 1500.0 * 0.5,
        "sustained {} records/s for a target of 1500",
        report.rate
    );
    assert_eq!(
        report.ends.len(),
        9,
        "3 topics × 3 partitions: {:?}",
        report.ends
    );
    assert_eq!(report.ends.values().sum::<i64>() as u64, report.records);

    // Read every partition to its reported end and decode each record.
    let mut decoder = Decoder::new(DecoderOptions::default(), None);
    let kinds = read_back(&kafka.bootstrap(), &report, &mut decoder).await;
    assert_eq!(kinds, report.kinds);
}

/// One record read back: where it is, its kind, the row's `id` and the source LSN.
#[derive(Debug)]
struct ReadBack {
    table: String,
    partition: i32,
    offset: i64,
    kind: String,
    id: Option<i64>,
    lsn: Option<i64>,
}

/// Reads `report.records` records from the reported partitions and counts them by table and
/// kind as `decoder` decodes them.
async fn read_back(
    bootstrap: &str,
    report: &Report,
    decoder: &mut Decoder,
) -> BTreeMap<(String, String), u64> {
    let mut kinds: BTreeMap<(String, String), u64> = BTreeMap::new();
    for r in read_all(bootstrap, report, decoder).await {
        *kinds.entry((r.table, r.kind)).or_default() += 1;
    }
    kinds
}

/// Every record up to the reported ends, decoded.
async fn read_all(bootstrap: &str, report: &Report, decoder: &mut Decoder) -> Vec<ReadBack> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "generate-check")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for (topic, p) in report.ends.keys() {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut ends: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let total = report.ends.values().sum::<i64>() as usize;
    while out.len() < total {
        assert!(
            std::time::Instant::now() < deadline,
            "read {} of {total}",
            out.len()
        );
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.unwrap();
        let d = decoder
            .decode(&RawRecord {
                topic: m.topic(),
                partition: m.partition(),
                offset: m.offset(),
                timestamp_ms: m.timestamp().to_millis(),
                key: m.key(),
                value: m.payload(),
            })
            .await
            .unwrap_or_else(|e| panic!("{}[{}]@{}: {e}", m.topic(), m.partition(), m.offset()));
        let (kind, id, lsn) = match d {
            Decoded::Change(e) => {
                let row = e.after.as_ref().or(e.before.as_ref());
                let id = match row.and_then(|r| r.as_typed()).and_then(|t| t.get("id")) {
                    Some(Value::Int(i)) => Some(*i),
                    _ => None,
                };
                (e.op.code().to_owned(), id, e.source.lsn)
            }
            Decoded::Tombstone(_) => ("tombstone".into(), None, None),
            other => panic!("unexpected {other:?}"),
        };
        out.push(ReadBack {
            table: m.topic().rsplit('.').next().unwrap().to_owned(),
            partition: m.partition(),
            offset: m.offset(),
            kind,
            id,
            lsn,
        });
        let end = ends.entry((m.topic().into(), m.partition())).or_default();
        *end = (*end).max(m.offset() + 1);
    }
    assert_eq!(ends, report.ends);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_on_the_same_topics_continues_after_the_first() {
    let topics: Vec<String> = TABLES.iter().map(|t| format!("bank.public.{t}")).collect();
    let kafka = Kafka::start(&topics.iter().map(|t| (t.as_str(), 2)).collect::<Vec<_>>());
    let bootstrap = kafka.bootstrap();
    let run = |b: String| {
        tokio::task::spawn_blocking(move || {
            let args = ["--bootstrap-servers", &b, "--events", "1500", "--rate", "0"];
            generate_and_say(&[&args[..], &["--customers", "30"]].concat())
        })
    };
    let (first, first_err) = run(bootstrap.clone()).await.unwrap();
    assert!(!first_err.contains("continuing after"), "{first_err}");
    let (second, second_err) = run(bootstrap.clone()).await.unwrap();
    assert!(
        second_err.contains(&format!(
            "the topics already hold {} records",
            first.records
        )),
        "{second_err}"
    );
    let mut decoder = Decoder::new(DecoderOptions::default(), None);
    let all = read_all(&bootstrap, &second, &mut decoder).await;
    let in_first =
        |r: &ReadBack| r.offset < first.ends[&(format!("bank.public.{}", r.table), r.partition)];
    // The second run's new rows have ids the first never used (a customer who left may come
    // back under the same id within one run).
    let first_ids: std::collections::BTreeSet<(String, i64)> = all
        .iter()
        .filter(|r| in_first(r))
        .filter_map(|r| Some((r.table.clone(), r.id?)))
        .collect();
    let reused: Vec<_> = all
        .iter()
        .filter(|r| !in_first(r) && (r.kind == "r" || r.kind == "c"))
        .filter(|r| first_ids.contains(&(r.table.clone(), r.id.unwrap())))
        .collect();
    assert!(reused.is_empty(), "the second run re-created: {reused:?}");
    // The second run's changes come after every position of the first.
    let first_max = all
        .iter()
        .filter(|r| in_first(r))
        .filter_map(|r| r.lsn)
        .max()
        .unwrap();
    let second_min = all
        .iter()
        .filter(|r| !in_first(r))
        .filter_map(|r| r.lsn)
        .min()
        .unwrap();
    assert!(
        second_min > first_max,
        "second run starts at LSN {second_min}, first ended at {first_max}"
    );
    assert!(all.iter().any(|r| !in_first(r)) && second.records >= 1500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_records_decode_with_the_schemas_registered_in_the_registry() {
    let topics: Vec<String> = TABLES.iter().map(|t| format!("bank.public.{t}")).collect();
    let kafka = Kafka::start(&topics.iter().map(|t| (t.as_str(), 2)).collect::<Vec<_>>());
    // A registry that accepts exactly the schemas of schemas/avro/ and serves them by id.
    let registry = MockServer::start().await;
    let bank = Bank::new(BankOptions::default());
    for (i, s) in avro_subjects(&bank).iter().enumerate() {
        for (j, (suffix, schema)) in [("key", &s.key), ("value", &s.value)]
            .into_iter()
            .enumerate()
        {
            let id = 100 + 2 * i as u32 + j as u32;
            let text = schema.to_string();
            Mock::given(method("POST"))
                .and(path(format!("/subjects/{}-{suffix}/versions", s.topic)))
                .and(body_json(serde_json::json!({ "schema": text })))
                .respond_with(
                    ResponseTemplate::new(200).set_body_json(serde_json::json!({ "id": id })),
                )
                .expect(1)
                .mount(&registry)
                .await;
            Mock::given(method("GET"))
                .and(path(format!("/schemas/ids/{id}")))
                .respond_with(
                    ResponseTemplate::new(200).set_body_json(serde_json::json!({ "schema": text })),
                )
                .mount(&registry)
                .await;
        }
    }
    let bootstrap = kafka.bootstrap();
    let uri = registry.uri();
    let report = tokio::task::spawn_blocking(move || {
        generate(&[
            "--bootstrap-servers",
            &bootstrap,
            "--format",
            "avro",
            "--schema-registry-url",
            &uri,
            "--events",
            "1500",
            "--rate",
            "0",
            "--customers",
            "40",
        ])
    })
    .await
    .unwrap();
    let mut decoder = Decoder::new(
        DecoderOptions {
            format: WireFormat::Avro,
            ..Default::default()
        },
        Some(RegistryClient::new(RegistrySettings::new(registry.uri())).unwrap()),
    );
    let kinds = read_back(&kafka.bootstrap(), &report, &mut decoder).await;
    assert_eq!(kinds, report.kinds);
    registry.verify().await;
}

/// The librdkafka 2.12 that rdkafka-sys built (Debian's kcat links an older one that cannot
/// talk to tansu).
fn rdkafka_lib_dir() -> Option<std::path::PathBuf> {
    let build = tidemark_bin().parent()?.join("build");
    std::fs::read_dir(build)
        .ok()?
        .flatten()
        .map(|e| e.path().join("out/src"))
        .find(|d| d.join("librdkafka.so.1").exists())
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn against_tansu_the_report_is_what_kcat_reads() {
    let lib = rdkafka_lib_dir();
    if !have("tansu") || !have("kcat") || lib.is_none() {
        assert!(
            std::env::var_os("TIDEMARK_REQUIRE_TANSU").is_none(),
            "tansu, kcat and the rdkafka-sys librdkafka are required"
        );
        eprintln!("skipped: tansu or kcat not installed");
        return;
    }
    let port = free_port();
    let url = format!("tcp://127.0.0.1:{port}");
    let mut broker = Command::new("tansu")
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let bootstrap = format!("127.0.0.1:{port}");
    for _ in 0..100 {
        if std::net::TcpStream::connect(&bootstrap).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let report = generate(&[
        "--bootstrap-servers",
        &bootstrap,
        "--create-topics",
        "2",
        "--events",
        "4000",
        "--rate",
        "0",
        "--topic-prefix",
        "bank",
    ]);
    eprintln!("tansu: sustained {:.0} records/s", report.rate);
    // kcat reads each partition from the beginning up to the reported end.
    let mut tombstones = 0u64;
    for ((topic, partition), end) in &report.ends {
        let out = Command::new("kcat")
            .env("LD_LIBRARY_PATH", lib.as_ref().unwrap())
            .args([
                "-C",
                "-b",
                &bootstrap,
                "-t",
                topic,
                "-p",
                &partition.to_string(),
            ])
            .args(["-o", "beginning", "-c", &end.to_string(), "-e", "-q"])
            .args(["-X", "fetch.wait.max.ms=5", "-f", "%o %S\\n"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "kcat: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let offsets: Vec<i64> = text
            .lines()
            .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(
            offsets,
            (0..*end).collect::<Vec<_>>(),
            "{topic}[{partition}]"
        );
        tombstones += text.lines().filter(|l| l.ends_with(" -1")).count() as u64;
    }
    let reported_tombstones: u64 = report
        .kinds
        .iter()
        .filter(|((_, k), _)| k == "tombstone")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(tombstones, reported_tombstones);
    let _ = broker.kill();
    let _ = broker.wait();
}
