//! The newest Debezium heartbeat of a heartbeat partition in bronze (see [`crate::freshness`]).

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use object_store::ObjectStore;
use object_store::path::Path;
use tidemark_lake::commit_log::{self, CommitRecord};
use tidemark_lake::layout::TableDir;

use crate::bronze_read::{ReadError, file_batches, records_from, starts_from};
use crate::freshness::Heartbeat;

/// The newest heartbeat committed at or after offset `from` (the whole log's newest when `from`
/// is `None`), with the offset to look from next time; `None` when nothing new was committed.
pub(crate) async fn newest_after(
    store: &dyn ObjectStore,
    root: &Path,
    topic: &str,
    partition: i32,
    from: Option<i64>,
) -> Result<Option<(i64, Option<Heartbeat>)>, ReadError> {
    let last = match from {
        None => commit_log::last_record(store, root, topic, partition).await?,
        Some(f) => match starts_from(store, root, topic, partition, f).await?.last() {
            // Only the newest record matters; its start is aligned, so it alone is read.
            Some(last) => records_from(store, root, topic, partition, *last, 1)
                .await?
                .pop(),
            None => None,
        },
    };
    let Some(rec) = last else { return Ok(None) };
    Ok(Some((rec.end + 1, heartbeat_of(store, &rec).await?)))
}

/// The newest source time among a commit record's heartbeat rows, and when it landed.
async fn heartbeat_of(
    store: &dyn ObjectStore,
    rec: &CommitRecord,
) -> Result<Option<Heartbeat>, ReadError> {
    let Some(landed_ms) = rec.committed_at_ms() else {
        return Ok(None);
    };
    let mut newest: Option<i64> = None;
    let dir = TableDir::Heartbeats.name();
    for f in rec.files.iter().filter(|f| f.table == dir) {
        for batch in file_batches(store, &f.path, Some(&f.checksum)).await? {
            let ts = batch
                .column_by_name(tidemark_lake::columns::TS_MS)
                .and_then(|c| c.as_primitive_opt::<Int64Type>());
            let Some(ts) = ts else { continue };
            newest = newest.max(ts.iter().flatten().max());
        }
    }
    Ok(newest.map(|ts_ms| Heartbeat { ts_ms, landed_ms }))
}
