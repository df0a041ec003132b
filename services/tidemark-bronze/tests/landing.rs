//! Segments land as Parquet plus a commit record; competing writers are fenced; schema and date
//! changes roll files. Uses real object stores (in-memory and local files) and real readers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{Array, Int64Array, RecordBatch, StringArray, StructArray};
use futures::TryStreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, local::LocalFileSystem};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tidemark_bronze::commit_log::{self, CommitRecord};
use tidemark_bronze::dead_letter::{self, DeadLetter};
use tidemark_bronze::segment::{FlushPolicy, RollReason, Segment};
use tidemark_bronze::writer::{BronzeWriter, Flushed};
use tidemark_core::event::{Decoded, RawRecord};
use tidemark_wire::decode::{Decoder, DecoderOptions};

const TOPIC: &str = "bank.public.accounts";

fn envelope(id: i64, op: &str, extra_column: bool) -> Vec<u8> {
    let extra_schema = if extra_column {
        r#",{"type":"string","optional":true,"field":"nickname"}"#
    } else {
        ""
    };
    let extra_value = if extra_column {
        r#","nickname":"nick""#
    } else {
        ""
    };
    let row = format!(
        r#"{{"type":"struct","optional":true,"name":"bank.public.accounts.Value","fields":[
          {{"type":"int64","field":"id"}},
          {{"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","parameters":{{"scale":"2","connect.decimal.precision":"12"}},"field":"balance"}},
          {{"type":"int64","optional":true,"name":"io.debezium.time.MicroTimestamp","field":"opened_at"}},
          {{"type":"string","optional":true,"field":"bio"}}{extra_schema}]"#
    );
    let after = if op == "d" {
        "null".to_owned()
    } else {
        format!(
            r#"{{"id":{id},"balance":"AeJA","opened_at":1529507596945104,"bio":"__debezium_unavailable_value"{extra_value}}}"#
        )
    };
    let before = if op == "c" {
        "null".to_owned()
    } else {
        format!(
            r#"{{"id":{id},"balance":null,"opened_at":null,"bio":"old"{}}}"#,
            if extra_column {
                r#","nickname":null"#
            } else {
                ""
            }
        )
    };
    format!(
        r#"{{"schema":{{"type":"struct","name":"bank.public.accounts.Envelope","fields":[{row},"field":"before"}},{row},"field":"after"}},
          {{"type":"struct","field":"source","fields":[{{"type":"string","field":"connector"}},{{"type":"int64","field":"ts_ms"}},{{"type":"int64","optional":true,"field":"lsn"}}]}},
          {{"type":"string","field":"op"}},{{"type":"int64","optional":true,"field":"ts_ms"}}]}},
          "payload":{{"before":{before},"after":{after},"source":{{"connector":"postgresql","ts_ms":1700000000000,"lsn":{}}},"op":"{op}","ts_ms":1700000000100}}}}"#,
        1000 + id
    )
    .into_bytes()
}

fn decode(
    d: &mut Decoder,
    topic: &str,
    offset: i64,
    ts: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Result<Decoded, tidemark_wire::decode::DecodeError> {
    d.decode_cached(&RawRecord {
        topic,
        partition: 2,
        offset,
        timestamp_ms: Some(ts),
        key,
        value,
    })
}

const TS: i64 = 1_700_000_000_000; // 2023-11-14

/// 100 changes, 3 tombstones and 2 poison records from offset 10.
fn segment(start: i64) -> Segment {
    segment_of(TOPIC, start)
}

fn segment_of(topic: &str, start: i64) -> Segment {
    let mut d = Decoder::new(DecoderOptions::default(), None);
    let mut seg = Segment::new(topic, 2, start);
    for (offset, i) in (start..).zip(0..105) {
        let raw: Option<Vec<u8>> = match i {
            20 | 50 | 80 => None,
            33 => Some(b"{not json".to_vec()),
            66 => Some(br#"{"op":"c","source":{"connector":"x"},"after":{"id":1},"schema":{"type":"struct","fields":[{"type":"struct","field":"after","fields":[{"type":"bytes","name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"2"},"field":"id"}]}]},"payload":{"op":"c","source":{"connector":"x"},"after":{"id":"%%%"}}}"#.to_vec()),
            _ => Some(envelope(i, ["c", "u", "d"][(i % 3) as usize], false)),
        };
        let key = format!("{{\"id\":{i}}}").into_bytes();
        match decode(&mut d, topic, offset, TS + i, Some(&key), raw.as_deref()) {
            Ok(dec) => {
                assert_eq!(seg.must_roll_before(&dec), None);
                seg.push(dec, raw.as_ref().map_or(0, Vec::len));
            }
            Err(e) => seg.push_dead_letter(DeadLetter::new(&e, Some(&key), raw.as_deref()), 10),
        }
    }
    seg
}

async fn read_parquet(store: &dyn ObjectStore, path: &str) -> RecordBatch {
    let bytes = store
        .get(&Path::from(path))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
    let kv = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned()
        .unwrap_or_default();
    let schema_text = kv
        .iter()
        .find(|k| k.key == "tidemark.schema")
        .and_then(|k| k.value.clone());
    if path.contains("bank.public.accounts") {
        assert!(
            schema_text
                .unwrap()
                .contains("bank.public.accounts.Envelope"),
            "the Debezium schema is in the file metadata"
        );
    }
    let reader = builder.build().unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    arrow_select_concat(&batches)
}

fn arrow_select_concat(batches: &[RecordBatch]) -> RecordBatch {
    assert_eq!(batches.len(), 1, "small files are one batch");
    batches[0].clone()
}

#[tokio::test]
async fn a_segment_lands_as_parquet_and_a_commit_record_that_accounts_for_every_offset() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let root = Path::from("lake/bronze");
    let writer = BronzeWriter::new(store.clone(), root.clone(), 1);
    assert_eq!(writer.next_offset(TOPIC, 2).await.unwrap(), None);
    let seg = segment(10);
    let Flushed::Committed(rec) = writer.flush(&seg).await.unwrap() else {
        panic!("fenced")
    };
    assert_eq!((rec.start, rec.end), (10, 114));
    assert_eq!(rec.records, 105);
    assert_eq!((rec.rows, rec.skipped, rec.dead_letters), (100, 3, 2));
    assert_eq!(rec.rows + rec.skipped + rec.dead_letters, rec.records);
    assert_eq!(writer.next_offset(TOPIC, 2).await.unwrap(), Some(115));

    let file = &rec.files[0];
    assert!(
        file.path
            .starts_with("lake/bronze/bank.public.accounts/dt=2023-11-14/"),
        "{}",
        file.path
    );
    let batch = read_parquet(store.as_ref(), &file.path).await;
    assert_eq!(batch.num_rows(), 100);
    let offsets = batch
        .column_by_name("_kafka_offset")
        .unwrap()
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    let landed: Vec<i64> = offsets.values().to_vec();
    assert!(
        !landed.contains(&30) && !landed.contains(&43) && !landed.contains(&76),
        "tombstone/poison offsets are not rows"
    );
    // Typed columns and the TOAST list.
    let after = batch
        .column_by_name("after")
        .unwrap()
        .as_any()
        .downcast_ref::<StructArray>()
        .unwrap();
    assert_eq!(
        after
            .column_by_name("balance")
            .unwrap()
            .data_type()
            .to_string(),
        "Decimal128(12, 2)"
    );
    let unavailable = after.column_by_name("__unavailable").unwrap();
    assert!(unavailable.is_valid(0));
    let ops = batch
        .column_by_name("op")
        .unwrap()
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    assert_eq!(ops.value(0), "c");

    // Dead letters with raw bytes and reasons.
    let dl = store
        .get(&Path::from(rec.dead_letter_file.clone().unwrap()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let letters = dead_letter::from_jsonl(&dl).unwrap();
    assert_eq!(
        letters
            .iter()
            .map(|l| (l.offset, l.reason.as_str()))
            .collect::<Vec<_>>(),
        vec![(43, "invalid_json"), (76, "bad_field")]
    );
    assert_eq!(letters[0].value_bytes().unwrap(), b"{not json");

    // The next segment continues the chain.
    let next = segment(115);
    writer.flush(&next).await.unwrap();
    let chain = commit_log::read_chain(store.as_ref(), &root, TOPIC, 2)
        .await
        .unwrap();
    assert!(chain.is_gap_free());
    assert_eq!(chain.records.len(), 2);
    assert_eq!(chain.next_offset(), Some(220));
    assert_eq!(
        commit_log::partitions(store.as_ref(), &root).await.unwrap(),
        vec![(TOPIC.to_owned(), 2)]
    );
}

#[tokio::test]
async fn a_zombie_writer_is_fenced_and_leaves_nothing_visible() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let root = Path::from("bronze");
    let owner = BronzeWriter::new(store.clone(), root.clone(), 1);
    let zombie = BronzeWriter::new(store.clone(), root.clone(), 1);
    // Both read the same position; the new owner commits first.
    let Flushed::Committed(won) = owner.flush(&segment(0)).await.unwrap() else {
        panic!()
    };
    let mut shorter = segment(0);
    shorter.end = Some(50); // the zombie's view of the range differs
    match zombie.flush(&shorter).await.unwrap() {
        Flushed::Fenced { winner } => assert_eq!(*winner, *won),
        other => panic!("zombie committed: {other:?}"),
    }
    let files: Vec<String> = store
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    let mut expected: Vec<String> = won.files.iter().map(|f| f.path.clone()).collect();
    expected.push(won.dead_letter_file.clone().unwrap());
    expected.push("bronze/_log/bank.public.accounts/2/00000000000000000000.json".into());
    let mut files_sorted = files.clone();
    files_sorted.sort();
    expected.sort();
    assert_eq!(
        files_sorted, expected,
        "only the owner's files and record remain"
    );
    // Retrying our own committed flush (lost response) is recognised as ours, not fenced.
    assert!(matches!(
        owner.flush(&segment(0)).await.unwrap(),
        Flushed::Committed(_)
    ));
    let chain: Vec<CommitRecord> = commit_log::read_chain(store.as_ref(), &root, TOPIC, 2)
        .await
        .unwrap()
        .records;
    assert_eq!(chain.len(), 1);
}

#[test]
fn a_new_column_or_a_new_date_rolls_the_file() {
    let mut d = Decoder::new(DecoderOptions::default(), None);
    let mut seg = Segment::new(TOPIC, 2, 0);
    seg.push(
        decode(&mut d, TOPIC, 0, TS, None, Some(&envelope(1, "c", false))).unwrap(),
        100,
    );
    let same = decode(&mut d, TOPIC, 1, TS, None, Some(&envelope(2, "u", false))).unwrap();
    assert_eq!(seg.must_roll_before(&same), None);
    let widened = decode(&mut d, TOPIC, 2, TS, None, Some(&envelope(3, "c", true))).unwrap();
    assert_eq!(seg.must_roll_before(&widened), Some(RollReason::Schema));
    let next_day = decode(
        &mut d,
        TOPIC,
        3,
        TS + 86_400_000,
        None,
        Some(&envelope(4, "c", false)),
    )
    .unwrap();
    assert_eq!(seg.must_roll_before(&next_day), Some(RollReason::Date));
    // Tombstones never roll.
    let tomb = decode(&mut d, TOPIC, 4, TS + 86_400_000, Some(b"{\"id\":1}"), None).unwrap();
    assert_eq!(seg.must_roll_before(&tomb), None);
}

#[test]
fn count_bytes_and_age_bounds() {
    let policy = FlushPolicy {
        max_records: 3,
        max_bytes: 1_000,
        max_age: Duration::from_millis(50),
    };
    let mut d = Decoder::new(DecoderOptions::default(), None);
    let mut seg = Segment::new(TOPIC, 2, 0);
    let now = Instant::now();
    assert_eq!(seg.due(&policy, now), None);
    seg.push(
        decode(&mut d, TOPIC, 0, TS, None, Some(&envelope(1, "c", false))).unwrap(),
        10,
    );
    assert_eq!(seg.due(&policy, Instant::now()), None);
    assert_eq!(
        seg.due(&policy, Instant::now() + Duration::from_millis(60)),
        Some(RollReason::Age)
    );
    seg.push(
        decode(&mut d, TOPIC, 1, TS, None, Some(&envelope(1, "u", false))).unwrap(),
        2_000,
    );
    assert_eq!(seg.due(&policy, Instant::now()), Some(RollReason::Bytes));
    seg.push(
        decode(&mut d, TOPIC, 2, TS, None, Some(&envelope(1, "u", false))).unwrap(),
        1,
    );
    assert_eq!(seg.due(&policy, Instant::now()), Some(RollReason::Records));
    assert_eq!(seg.successor().start, 3);
}

/// A reader that is not ours reads the hive-partitioned files with typed values.
#[tokio::test]
async fn pyarrow_reads_the_landed_files_with_typed_values() {
    let have = std::process::Command::new("python3")
        .args(["-c", "import pyarrow, duckdb"])
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        assert!(
            std::env::var_os("TIDEMARK_REQUIRE_PY_READERS").is_none(),
            "pyarrow/duckdb missing but required"
        );
        eprintln!("skipped: python3 with pyarrow and duckdb not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let writer = BronzeWriter::new(store, Path::default(), 1);
    writer.flush(&segment(0)).await.unwrap();
    let script = r#"
import sys, duckdb
root = sys.argv[1]
con = duckdb.connect()
rows = con.execute(f"select op, count(*) from read_parquet('{root}/bank.public.accounts/*/*.parquet', hive_partitioning=true) group by op order by op").fetchall()
print(rows)
assert rows == [('c', 33), ('d', 32), ('u', 35)], rows
bal, ts, dt, unavailable = con.execute(f"select after.balance, after.opened_at, dt, after.__unavailable from read_parquet('{root}/bank.public.accounts/*/*.parquet', hive_partitioning=true) where op = 'c' order by _kafka_offset limit 1").fetchone()
assert str(bal) == '1234.56', bal
assert str(ts) == '2018-06-20 15:13:16.945104', ts
assert str(dt) == '2023-11-14', dt
assert unavailable == ['bio'], unavailable
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn transactions_heartbeats_and_schema_changes_land_in_their_own_tables() {
    let fixtures = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tidemark-wire/tests/fixtures/debezium/"
    );
    let read = |rel: &str| std::fs::read(format!("{fixtures}{rel}")).unwrap();
    let mut d = Decoder::new(DecoderOptions::default(), None);
    let mut seg = Segment::new("bank.transaction", 0, 0);
    for (o, rel) in [
        "other/tx_pg_doc_begin.json",
        "other/tx_pg_doc_end.json",
        "constructed/heartbeat_value_envelope.json",
        "mysql/mysql_doc_schema_change_value_payload.json",
    ]
    .iter()
    .enumerate()
    {
        let v = read(rel);
        let rec = RawRecord {
            topic: "bank.transaction",
            partition: 0,
            offset: o as i64,
            timestamp_ms: Some(TS),
            key: None,
            value: Some(&v),
        };
        seg.push(d.decode_cached(&rec).unwrap(), v.len());
    }
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let writer = BronzeWriter::new(store.clone(), Path::from("b"), 1);
    let Flushed::Committed(rec) = writer.flush(&seg).await.unwrap() else {
        panic!()
    };
    let tables: Vec<(&str, u64)> = rec
        .files
        .iter()
        .map(|f| (f.table.as_str(), f.rows))
        .collect();
    assert_eq!(
        tables,
        vec![
            ("_transactions", 2),
            ("_heartbeats", 1),
            ("_schema_changes", 1)
        ]
    );
    let tx = read_parquet(store.as_ref(), &rec.files[0].path).await;
    let status = tx
        .column_by_name("status")
        .unwrap()
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    assert_eq!((status.value(0), status.value(1)), ("BEGIN", "END"));
    assert!(
        rec.files[0]
            .path
            .starts_with("b/_transactions/dt=2023-11-14/")
    );
}

/// A topic whose name the store percent-encodes is listed under its own name, and its files and
/// dead letters are read back (once encoded, never twice), on both kinds of store.
#[tokio::test]
async fn topics_the_store_encodes_are_listed_and_read_back() {
    let topic = "odd#topic%with{braces}";
    let dir = tempfile::tempdir().unwrap();
    let stores: [Arc<dyn ObjectStore>; 2] = [
        Arc::new(InMemory::new()),
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap()),
    ];
    for store in stores {
        let root = Path::from("bronze");
        let writer = BronzeWriter::new(store.clone(), root.clone(), 1);
        writer.flush(&segment_of(topic, 0)).await.unwrap();
        let parts = commit_log::partitions(store.as_ref(), &root).await.unwrap();
        assert_eq!(parts, vec![(topic.to_owned(), 2)]);
        let chain = commit_log::read_chain(store.as_ref(), &root, topic, 2)
            .await
            .unwrap();
        assert_eq!(chain.records.len(), 1);
        for f in &chain.records[0].files {
            store
                .get(&tidemark_bronze::layout::stored_path(&f.path))
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", f.path));
        }
        let letters = tidemark_bronze::admin::dead_letters(store.as_ref(), &root)
            .await
            .unwrap();
        assert_eq!(letters.len(), 2);
    }
}

/// A segment larger than one Arrow chunk of a flush lands as one file with every row once, in
/// offset order.
#[tokio::test]
async fn a_segment_of_many_chunks_lands_as_one_file_with_every_row() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let root = Path::from("lake/bronze");
    let writer = BronzeWriter::new(store.clone(), root.clone(), 1);
    let mut d = Decoder::new(DecoderOptions::default(), None);
    let mut seg = Segment::new(TOPIC, 2, 0);
    for i in 0..20_000 {
        let raw = envelope(i, "c", false);
        let key = format!("{{\"id\":{i}}}").into_bytes();
        let dec = decode(&mut d, TOPIC, i, TS, Some(&key), Some(&raw)).unwrap();
        seg.push(dec, raw.len());
    }
    let Flushed::Committed(rec) = writer.flush(&seg).await.unwrap() else {
        panic!("fenced")
    };
    assert_eq!((rec.files.len(), rec.rows), (1, 20_000));
    let file = &rec.files[0];
    assert_eq!((file.min_offset, file.max_offset), (0, 19_999));
    let bytes = store
        .get(&Path::from(file.path.as_str()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let mut offsets = Vec::new();
    for b in ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .build()
        .unwrap()
    {
        let b = b.unwrap();
        let col = b.column_by_name("_kafka_offset").unwrap();
        let col = col.as_any().downcast_ref::<Int64Array>().unwrap();
        offsets.extend(col.values().iter().copied());
    }
    assert_eq!(offsets, (0..20_000).collect::<Vec<i64>>());
}
