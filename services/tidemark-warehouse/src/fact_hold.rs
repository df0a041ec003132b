//! Facts wait for their dimensions. A fact merged before the dimension change of its own
//! source transaction points at the version before it and must be re-pointed later (a lookup
//! and an update per fact). Bronze files of different topics land independently, so a fact
//! table's bronze often runs a second ahead of its dimensions'. A fact table's batch therefore
//! stops, per partition, at its first change that runs ahead of a referenced dimension:
//! - while the dimension is behind its bronze: newer than what the dimension has merged;
//! - once it has caught up, in a running merger: also landed less than `merge.fact_hold_ms`
//!   ago (the dimension's part of the same transactions may still be on its way);
//! - `merge --once`, replays and stopped dimensions hold nothing back past what is in bronze.
//!
//! Holding back only moves when a fact is merged, never what it points at: re-pointing still
//! corrects any fact merged before its dimension's change.

use crate::bronze_fetch::{PartFile, PartRead};
use crate::change::Change;

/// What one referenced dimension lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limit {
    /// Changes at or before this source time (ms) are merged: the dimension has merged that far.
    pub ts_ms: i64,
    /// Changes in files that landed at or before this time (ms) are merged: they waited long
    /// enough. `i64::MIN`: none (the dimension is behind).
    pub landed_ms: i64,
}

impl Limit {
    /// A file without a readable landing time counts as landed long ago: it never waits for
    /// a dimension that is not behind.
    fn admits(&self, c: &Change, landed_ms: Option<i64>) -> bool {
        c.ts_ms <= self.ts_ms
            || (self.landed_ms > i64::MIN && landed_ms.is_none_or(|l| l <= self.landed_ms))
    }
}

/// Cuts each partition's read before its first change some limit does not admit: that
/// partition's batch ends there (the ledger moves to the change's offset) and the rest is read
/// again next cycle. Returns how many changes of the read were held back.
pub(crate) fn hold_back(parts: &mut [PartRead], limits: &[Limit]) -> usize {
    if limits.is_empty() {
        return 0;
    }
    let mut held = 0;
    for part in parts.iter_mut() {
        let Some((file, at)) = first_held(&part.files, limits) else {
            continue;
        };
        let before: usize = part.files[..file]
            .iter()
            .map(|f| f.changes.changes.len())
            .sum();
        held += part.keep_first(before + at);
    }
    held
}

/// `(file, change)` of the first change some limit holds back.
fn first_held(files: &[PartFile], limits: &[Limit]) -> Option<(usize, usize)> {
    files.iter().enumerate().find_map(|(i, f)| {
        f.changes
            .changes
            .iter()
            .position(|c| !limits.iter().all(|l| l.admits(c, f.landed_ms)))
            .map(|at| (i, at))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bronze_read::FileChanges;
    use crate::change::Op;

    fn change(offset: i64, ts_ms: i64) -> Change {
        Change {
            topic: "facts".into(),
            partition: 0,
            offset,
            op: Op::Create,
            pos: crate::change::SourcePos::stored(format!("{offset:08}")),
            ts_ms,
            record_key: Default::default(),
            before: None,
            after: None,
            txn: None,
        }
    }

    /// Files of changes at `(offset, ts)`, landed at `landed`.
    fn part(files: &[(i64, &[(i64, i64)])]) -> PartRead {
        let files: Vec<PartFile> = files
            .iter()
            .map(|(landed, changes)| PartFile {
                path: format!("f{landed}"),
                landed_ms: Some(*landed),
                changes: FileChanges {
                    changes: changes.iter().map(|(o, t)| change(*o, *t)).collect(),
                    ..FileChanges::default()
                },
            })
            .collect();
        let next = files
            .last()
            .and_then(|f| f.changes.changes.last())
            .map(|c| c.offset + 1);
        PartRead {
            partition: 0,
            expected: Some(10),
            committed_at_ms: None,
            files,
            next,
            problem: None,
            more: false,
        }
    }

    fn offsets(p: &PartRead) -> Vec<i64> {
        p.files
            .iter()
            .flat_map(|f| f.changes.changes.iter().map(|c| c.offset))
            .collect()
    }

    #[test]
    fn facts_newer_than_a_dimension_that_is_behind_wait() {
        let mut parts = [part(&[(1, &[(10, 100), (11, 200)]), (2, &[(12, 300)])])];
        let behind = Limit {
            ts_ms: 150,
            landed_ms: i64::MIN,
        };
        assert_eq!(
            hold_back(&mut parts, &[behind]),
            2,
            "both changes after the first wait"
        );
        assert_eq!(offsets(&parts[0]), [10]);
        assert_eq!(
            parts[0].next,
            Some(11),
            "the ledger stops at the held change"
        );
        assert_eq!(parts[0].files.len(), 1);
    }

    #[test]
    fn facts_that_waited_long_enough_go_through() {
        let mut parts = [part(&[(1, &[(10, 100), (11, 200)]), (5, &[(12, 300)])])];
        let caught_up = Limit {
            ts_ms: 150,
            landed_ms: 3,
        };
        assert!(0 < hold_back(&mut parts, &[caught_up]));
        assert_eq!(
            offsets(&parts[0]),
            [10, 11],
            "the first file landed long enough ago"
        );
        assert_eq!(parts[0].next, Some(12));
    }

    #[test]
    fn a_file_without_a_landing_time_waits_only_for_a_dimension_that_is_behind() {
        let mut parts = [part(&[(1, &[(10, 100), (11, 200)])])];
        parts[0].files[0].landed_ms = None;
        let caught_up = Limit {
            ts_ms: 150,
            landed_ms: 0,
        };
        assert_eq!(0, hold_back(&mut parts, &[caught_up]));
        let behind = Limit {
            ts_ms: 150,
            landed_ms: i64::MIN,
        };
        assert!(0 < hold_back(&mut parts, &[behind]));
        assert_eq!(offsets(&parts[0]), [10]);
    }

    #[test]
    fn every_dimension_must_admit_a_fact() {
        let mut parts = [part(&[(1, &[(10, 100), (11, 200)])])];
        let a = Limit {
            ts_ms: 500,
            landed_ms: i64::MIN,
        };
        let b = Limit {
            ts_ms: 100,
            landed_ms: i64::MIN,
        };
        assert!(0 < hold_back(&mut parts, &[a, b]));
        assert_eq!(offsets(&parts[0]), [10]);
    }

    #[test]
    fn a_partition_held_at_its_first_change_does_not_move() {
        let mut parts = [part(&[(1, &[(10, 300)])])];
        let behind = Limit {
            ts_ms: 100,
            landed_ms: i64::MIN,
        };
        assert!(0 < hold_back(&mut parts, &[behind]));
        assert!(parts[0].files.is_empty());
        assert_eq!(
            parts[0].next, None,
            "the ledger already stands at offset 10"
        );
    }

    #[test]
    fn nothing_is_held_without_limits_or_when_all_is_admitted() {
        let mut parts = [part(&[(1, &[(10, 100), (11, 200)])])];
        assert_eq!(0, hold_back(&mut parts, &[]));
        let far = Limit {
            ts_ms: 1_000,
            landed_ms: i64::MIN,
        };
        assert_eq!(0, hold_back(&mut parts, &[far]));
        assert_eq!(offsets(&parts[0]), [10, 11]);
        assert_eq!(parts[0].next, Some(12));
    }
}
