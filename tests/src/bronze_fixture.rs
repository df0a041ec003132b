//! Bronze written without Kafka: Debezium records (schemaless JSON payloads) decoded and landed
//! by the real bronze writer, one commit record per call, so merge tests control batches exactly.

use std::collections::HashMap;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::memory::InMemory;
use object_store::path::Path;
use serde_json::{Value as Json, json};
use tidemark_bronze::segment::Segment;
use tidemark_bronze::writer::{BronzeWriter, Flushed};
use tidemark_core::event::RawRecord;
use tidemark_wire::decode::{Decoder, DecoderOptions};

/// A Kafka record: key and value bytes (`None` value: a tombstone).
pub type Record = (Option<String>, Option<String>);

pub struct BronzeFixture {
    pub store: Arc<dyn ObjectStore>,
    pub root: Path,
    writer: BronzeWriter,
    decoder: Decoder,
    next: HashMap<(String, i32), i64>,
}

impl std::fmt::Debug for BronzeFixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BronzeFixture")
            .field("next", &self.next)
            .finish()
    }
}

impl Default for BronzeFixture {
    fn default() -> Self {
        Self::new()
    }
}

impl BronzeFixture {
    pub fn new() -> BronzeFixture {
        Self::with_store(Arc::new(InMemory::new()), Path::from("bronze"))
    }

    /// Bronze in a local directory (`file://<dir>` in a config).
    pub fn on_disk(dir: &std::path::Path) -> BronzeFixture {
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir).expect("bronze dir");
        Self::with_store(Arc::new(store), Path::default())
    }

    /// Bronze on any store (a real S3 server in the compaction tests).
    pub fn with_store(store: Arc<dyn ObjectStore>, root: Path) -> BronzeFixture {
        BronzeFixture {
            writer: BronzeWriter::new(store.clone(), root.clone(), 1),
            store,
            root,
            decoder: Decoder::new(DecoderOptions::default(), None),
            next: HashMap::new(),
        }
    }

    /// A merger of this bronze into `pool` under `config` (the live target).
    pub async fn merger(
        &self,
        pool: &tidemark_warehouse::sql::conn::Pool,
        config: &tidemark_core::config::Config,
    ) -> tidemark_warehouse::merger::Merger {
        tidemark_warehouse::merger::Merger::with(
            pool.clone(),
            self.store.clone(),
            self.root.clone(),
            config,
            tidemark_warehouse::merger::MergeOptions::from_config(config),
        )
        .await
        .expect("merger")
    }

    /// Lands `records` as the next offsets of a partition, in one commit.
    pub async fn land(&mut self, topic: &str, partition: i32, records: &[Record]) {
        let next = self.next.entry((topic.to_owned(), partition)).or_insert(0);
        let mut seg = Segment::new(topic, partition, *next);
        for (key, value) in records {
            let raw = RawRecord {
                topic,
                partition,
                offset: *next,
                timestamp_ms: Some(1_700_000_000_000),
                key: key.as_deref().map(str::as_bytes),
                value: value.as_deref().map(str::as_bytes),
            };
            let d = self
                .decoder
                .decode_cached(&raw)
                .expect("fixture records decode");
            if let Some(reason) = seg.must_roll_before(&d) {
                panic!("fixture batch would roll ({reason:?}); land it in two calls");
            }
            seg.push(d, value.as_ref().map_or(0, String::len));
            *next += 1;
        }
        match self.writer.flush(&seg).await.expect("flush") {
            Flushed::Committed(_) => {}
            other => panic!("fixture flush not committed: {other:?}"),
        }
    }
}

/// A Debezium PostgreSQL change record (payload only), keyed by `id`.
pub fn change(
    op: &str,
    id: &Json,
    before: Option<Json>,
    after: Option<Json>,
    lsn: u64,
    ts_ms: i64,
) -> Record {
    let value = json!({
        "before": before,
        "after": after,
        "source": {"connector": "postgresql", "ts_ms": ts_ms, "lsn": lsn, "db": "bank", "schema": "public"},
        "op": op,
        "ts_ms": ts_ms + 5,
    });
    (
        Some(json!({ "id": id }).to_string()),
        Some(value.to_string()),
    )
}

/// A truncate record (no key).
pub fn truncate(lsn: u64, ts_ms: i64) -> Record {
    let value = json!({
        "before": null, "after": null,
        "source": {"connector": "postgresql", "ts_ms": ts_ms, "lsn": lsn},
        "op": "t", "ts_ms": ts_ms,
    });
    (None, Some(value.to_string()))
}

/// A change record (payload only, keyed by `id`) with a caller-made `source` block, for the
/// orderings of other connectors and of snapshots.
pub fn change_with_source(
    op: &str,
    id: &Json,
    before: Option<Json>,
    after: Option<Json>,
    source: Json,
) -> Record {
    let ts_ms = source["ts_ms"].as_i64().unwrap_or(0);
    let value = json!({
        "before": before, "after": after, "source": source, "op": op, "ts_ms": ts_ms + 5,
    });
    (
        Some(json!({ "id": id }).to_string()),
        Some(value.to_string()),
    )
}

/// A PostgreSQL `source` block: `commit` is the last commit LSN of `sequence` (`None`: null, as
/// Debezium writes for snapshot reads and the first transaction after a snapshot).
pub fn pg_source(commit: Option<u64>, lsn: u64, ts_ms: i64, snapshot: bool) -> Json {
    let seq = json!([commit.map(|c| c.to_string()), lsn.to_string()]).to_string();
    json!({"connector": "postgresql", "ts_ms": ts_ms, "lsn": lsn, "sequence": seq,
           "snapshot": if snapshot { "true" } else { "false" }, "db": "bank", "schema": "public"})
}
