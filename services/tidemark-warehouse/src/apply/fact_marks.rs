//! The newest source time among each fact table's facts. A dimension version that starts after
//! it moves no fact, so re-pointing skips it without reading the fact table: facts wait for
//! their dimensions ([`crate::fact_hold`]), so most dimension changes are newer than every
//! fact. Kept in memory by the merger that holds the table's lease; read from the table once
//! when unknown (after a start or a lease that moved).

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::sql::conn::{Tx, ms_of};

#[derive(Debug, Default)]
pub(crate) struct FactMarks(Mutex<BTreeMap<String, i64>>);

impl FactMarks {
    /// The newest `_source_ts` (ms) of `table` (a fact table's warehouse name; `quoted`, its
    /// SQL name), read from the table when not known; `i64::MIN` when it has no facts.
    pub(crate) async fn newest(
        &self,
        tx: &mut Tx,
        table: &str,
        quoted: &str,
    ) -> Result<i64, sqlx::Error> {
        if let Some(ms) = self.lock().get(table) {
            return Ok(*ms);
        }
        let sql = format!(
            "SELECT {} FROM {quoted}",
            tx.text(&ms_of(tx.backend(), "max(_source_ts)"))
        );
        let ms = tx
            .fetch(&sql, &[])
            .await?
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next().flatten())
            .and_then(|v| v.parse().ok())
            .unwrap_or(i64::MIN);
        self.lock().insert(table.to_owned(), ms);
        Ok(ms)
    }

    /// Facts up to `ts_ms` were written to `table` (before their transaction commits: a mark
    /// too new only re-points more). An unknown mark stays unknown.
    pub(crate) fn raise(&self, table: &str, ts_ms: i64) {
        if let Some(ms) = self.lock().get_mut(table) {
            *ms = (*ms).max(ts_ms);
        }
    }

    /// Forgets `table`'s mark: another merger may write it.
    pub(crate) fn forget(&self, table: &str) {
        self.lock().remove(table);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, i64>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
