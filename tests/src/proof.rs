//! The exactly-once proof: every produced offset is a row of exactly one committed file, or a
//! dead letter, or a counted tombstone; the commit chain has no gaps; nothing else landed.

use std::collections::{BTreeMap, HashMap};

use arrow_array::{Array, Int64Array, StringArray};
use object_store::ObjectStore;
use object_store::path::Path;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tidemark_bronze::commit_log;
use tidemark_bronze::dead_letter;

use crate::stream::RecordKind;

/// (topic, partition) → (offset, what was produced).
pub type Produced = BTreeMap<(String, i32), Vec<(i64, RecordKind)>>;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Proof {
    pub rows: u64,
    pub dead_letters: u64,
    pub tombstones: u64,
    pub commits: u64,
    pub files: u64,
}

async fn get(store: &dyn ObjectStore, path: &str) -> bytes::Bytes {
    store
        .get(&Path::from(path))
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .bytes()
        .await
        .unwrap()
}

/// Panics with the first violation; returns totals.
pub async fn prove(store: &dyn ObjectStore, root: &Path, produced: &Produced) -> Proof {
    let mut proof = Proof::default();
    for ((topic, partition), offsets) in produced {
        let chain = commit_log::read_chain(store, root, topic, *partition)
            .await
            .unwrap();
        assert!(
            chain.is_gap_free(),
            "{topic}[{partition}]: chain breaks {:?}",
            chain.breaks
        );
        let (first, last) = (offsets.first().unwrap().0, offsets.last().unwrap().0);
        assert!(
            chain.first_offset().is_some_and(|f| f <= first),
            "{topic}[{partition}]: chain starts at {:?} after {first}",
            chain.first_offset()
        );
        assert!(
            chain.next_offset().is_some_and(|n| n > last),
            "{topic}[{partition}]: chain ends at {:?}, produced up to {last}",
            chain.next_offset()
        );
        let mut seen: HashMap<i64, (&'static str, String)> = HashMap::new();
        let mut skipped = 0;
        for rec in &chain.records {
            proof.commits += 1;
            skipped += rec.skipped;
            for f in &rec.files {
                proof.files += 1;
                let bytes = get(store, &f.path).await;
                assert_eq!(
                    bytes.len() as u64,
                    f.bytes,
                    "{}: size differs from its commit record",
                    f.path
                );
                let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                    .unwrap()
                    .build()
                    .unwrap();
                for batch in reader {
                    let batch = batch.unwrap();
                    let offs = batch
                        .column_by_name("_kafka_offset")
                        .unwrap()
                        .as_any()
                        .downcast_ref::<Int64Array>()
                        .unwrap();
                    let ops = batch
                        .column_by_name("op")
                        .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned());
                    for i in 0..offs.len() {
                        let o = offs.value(i);
                        assert!(
                            o >= rec.start && o <= rec.end,
                            "{topic}[{partition}]@{o} outside its record [{}, {}]",
                            rec.start,
                            rec.end
                        );
                        let op = ops
                            .as_ref()
                            .map(|a| a.value(i).to_owned())
                            .unwrap_or_default();
                        if let Some(prev) = seen.insert(o, ("row", op)) {
                            panic!("{topic}[{partition}]@{o} landed twice (also as {})", prev.0);
                        }
                    }
                }
            }
            if let Some(dl) = &rec.dead_letter_file {
                for l in dead_letter::from_jsonl(&get(store, dl).await).unwrap() {
                    assert_eq!(
                        (l.topic.as_str(), l.partition),
                        (topic.as_str(), *partition)
                    );
                    if let Some(prev) = seen.insert(l.offset, ("dead letter", l.reason)) {
                        panic!(
                            "{topic}[{partition}]@{} dead-lettered and also {}",
                            l.offset, prev.0
                        );
                    }
                }
            }
        }
        let mut tombstones = 0;
        for (o, kind) in offsets {
            let got = seen.remove(o);
            match (kind, got) {
                (RecordKind::Change(op), Some(("row", landed_op))) => {
                    assert_eq!(landed_op, op.code(), "{topic}[{partition}]@{o}: op");
                    proof.rows += 1;
                }
                (RecordKind::Poison, Some(("dead letter", _))) => proof.dead_letters += 1,
                (RecordKind::Tombstone, None) => tombstones += 1,
                (kind, got) => {
                    panic!("{topic}[{partition}]@{o}: produced {kind:?}, landed as {got:?}")
                }
            }
        }
        assert!(
            seen.is_empty(),
            "{topic}[{partition}]: landed offsets never produced: {:?}",
            seen.keys().collect::<Vec<_>>()
        );
        assert_eq!(
            skipped, tombstones,
            "{topic}[{partition}]: tombstones counted by commit records"
        );
        proof.tombstones += tombstones;
    }
    proof
}

/// Whether every produced offset is covered by the commit log yet.
pub async fn caught_up(store: &dyn ObjectStore, root: &Path, produced: &Produced) -> bool {
    for ((topic, partition), offsets) in produced {
        let last = offsets.last().unwrap().0;
        match commit_log::next_offset(store, root, topic, *partition).await {
            Ok(Some(n)) if n > last => {}
            _ => return false,
        }
    }
    true
}

/// Merges delivery reports with what each record was.
pub fn produced(
    deliveries: &BTreeMap<(String, i32), Vec<(i64, usize)>>,
    records: &[crate::stream::Record],
) -> Produced {
    deliveries
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.iter().map(|(o, i)| (*o, records[*i].kind)).collect(),
            )
        })
        .collect()
}
