//! SCD2 history of one dimension key, computed from its whole change log: the versions are a
//! function of the set of changes (not of their arrival order), so late events splice into
//! place, redelivered events change nothing and a replay gives the same history.

use crate::cell::{Cell, Values, row_hash};
use crate::change::SourcePos;
use crate::change::{Image, Op};

/// What a change-log entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryKind {
    /// Create, update or snapshot read: the row's values.
    Upsert,
    /// Delete: the `before` image (often only the key).
    Delete,
    /// A fact referenced the key at `ts_ms` (the earliest such time is kept).
    Ref,
}

/// One entry of a key's change log.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LogEntry {
    pub pos: SourcePos,
    pub ts_ms: i64,
    pub kind: EntryKind,
    /// The change's op (`Read` for a `Ref`).
    pub op: Op,
    /// Kafka coordinates of the change (in the table's topic).
    pub partition: i32,
    pub offset: i64,
    pub image: Image,
}

impl LogEntry {
    /// What the log's `kind` column holds: the op code, or `ref`.
    pub(crate) fn kind_code(&self) -> &'static str {
        match self.kind {
            EntryKind::Ref => "ref",
            _ => self.op.code(),
        }
    }

    /// Kind and op from the `kind` column.
    pub(crate) fn parse_kind(code: &str) -> (EntryKind, Op) {
        match code {
            "ref" => (EntryKind::Ref, Op::Read),
            "d" => (EntryKind::Delete, Op::Delete),
            other => (
                EntryKind::Upsert,
                Op::from_code(other).unwrap_or(Op::Update),
            ),
        }
    }
}

/// The row a key's newest change leaves: silver's row for a dimension.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Latest {
    /// Every column, TOAST placeholders resolved; the last known values for a delete.
    pub values: Values,
    pub deleted: bool,
    pub pos: SourcePos,
    pub ts_ms: i64,
    pub op: Op,
    pub partition: i32,
    pub offset: i64,
}

/// The versions of a key and its latest row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct History {
    pub versions: Vec<Version>,
    pub latest: Option<Latest>,
    /// The last known full row after the newest change: what a newer change continues from.
    pub state: Values,
}

/// One row of `gold.dim_<table>` for a key.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Version {
    /// Position of the change that opened it (`""` for an inferred member).
    pub start_pos: SourcePos,
    pub valid_from_ms: i64,
    /// Exclusive; `None` while current.
    pub valid_to_ms: Option<i64>,
    /// 1, 2, … (0 for an inferred member).
    pub version: i64,
    pub is_current: bool,
    pub is_deleted: bool,
    pub is_inferred: bool,
    pub row_hash: String,
    /// Tracked columns.
    pub values: Values,
}

/// The newest (real, current) version of a key, as far as newer changes need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub valid_from_ms: i64,
    pub version: i64,
    pub is_deleted: bool,
    pub row_hash: String,
}

/// The versions of a key from all its log entries (any order; one entry per position).
/// `tracked` says which columns make versions.
pub(crate) fn history(entries: &[LogEntry], tracked: &dyn Fn(&str) -> bool) -> History {
    let mut changes: Vec<&LogEntry> = entries
        .iter()
        .filter(|e| e.kind != EntryKind::Ref)
        .collect();
    changes.sort_by(|a, b| a.pos.cmp(&b.pos));
    let first_ref = entries
        .iter()
        .filter(|e| e.kind == EntryKind::Ref)
        .map(|e| e.ts_ms)
        .min();
    let mut state = Values::new();
    let (mut out, latest) = extend(None, &mut state, &changes, tracked);
    // A fact saw the key before its first known version: an inferred member covers that time,
    // completed with the first version's values once it exists.
    if let Some(ref_ts) = first_ref
        && out.first().is_none_or(|v| ref_ts < v.valid_from_ms)
    {
        let first = out.first();
        out.insert(
            0,
            Version {
                start_pos: SourcePos::reference(),
                valid_from_ms: ref_ts,
                valid_to_ms: first.map(|v| v.valid_from_ms),
                version: 0,
                is_current: first.is_none(),
                is_deleted: false,
                is_inferred: true,
                row_hash: first.map(|v| v.row_hash.clone()).unwrap_or_default(),
                values: first.map(|v| v.values.clone()).unwrap_or_default(),
            },
        );
    }
    History {
        versions: out,
        latest,
        state,
    }
}

/// The versions `changes` open after `head`: `changes` are sorted by position and all newer
/// than the change `head` and `state` (the last known full row, updated in place) came from.
/// The new versions are numbered after `head`, their validity chained, the last one current;
/// `head` itself closes at the first one's `valid_from_ms`. [`history`] is this from nothing,
/// so continuing a key's history gives the versions recomputing it would.
pub(crate) fn extend(
    head: Option<&Head>,
    state: &mut Values,
    changes: &[&LogEntry],
    tracked: &dyn Fn(&str) -> bool,
) -> (Vec<Version>, Option<Latest>) {
    let mut out: Vec<Version> = Vec::new();
    let mut last = head.map(|h| (h.row_hash.clone(), h.is_deleted, h.valid_from_ms));
    // A delete's row (the state before it); an upsert's row becomes the state itself.
    let mut deleted_row: Option<Values> = None;
    for e in changes {
        let deleted = e.kind == EntryKind::Delete;
        if deleted {
            let v = if state.is_empty() {
                e.image.values.clone()
            } else {
                state.clone()
            };
            deleted_row = Some(v);
        } else {
            *state = resolve(&e.image, state);
            deleted_row = None;
        }
        let full = deleted_row.as_ref().unwrap_or(state);
        let hash = row_hash(full.iter().filter(|(k, _)| tracked(k)));
        if let Some((h, d, _)) = &last
            && *h == hash
            && *d == deleted
        {
            continue;
        }
        let valid_from_ms = last.as_ref().map_or(e.ts_ms, |(_, _, f)| e.ts_ms.max(*f));
        last = Some((hash.clone(), deleted, valid_from_ms));
        out.push(Version {
            start_pos: e.pos.clone(),
            valid_from_ms,
            valid_to_ms: None,
            version: 0,
            is_current: false,
            is_deleted: deleted,
            is_inferred: false,
            row_hash: hash,
            values: full
                .iter()
                .filter(|(k, _)| tracked(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        });
    }
    let latest = changes.last().map(|e| Latest {
        values: deleted_row.unwrap_or_else(|| state.clone()),
        deleted: e.kind == EntryKind::Delete,
        pos: e.pos.clone(),
        ts_ms: e.ts_ms,
        op: e.op,
        partition: e.partition,
        offset: e.offset,
    });
    let first = head.map_or(1, |h| h.version + 1);
    for i in 0..out.len() {
        out[i].version = first + i as i64;
        out[i].valid_to_ms = out.get(i + 1).map(|n| n.valid_from_ms);
        out[i].is_current = i + 1 == out.len();
    }
    (out, latest)
}

/// An image with its unavailable (TOAST) columns taken from the last known row.
pub(crate) fn resolve(image: &Image, state: &Values) -> Values {
    let mut v = image.values.clone();
    for c in &image.unavailable {
        v.insert(c.clone(), state.get(c).cloned().unwrap_or(Cell::Null));
    }
    v
}

#[cfg(test)]
impl LogEntry {
    /// An update at `pos`/`ts_ms` whose after image holds `values` (for tests).
    pub(crate) fn update<const N: usize>(
        pos: &str,
        ts_ms: i64,
        values: [(&str, Cell); N],
    ) -> LogEntry {
        LogEntry {
            pos: pos.into(),
            ts_ms,
            kind: EntryKind::Upsert,
            op: Op::Update,
            partition: 0,
            offset: 0,
            image: Image {
                values: values.into_iter().map(|(c, v)| (c.to_owned(), v)).collect(),
                unavailable: Default::default(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(pos: &str, ts: i64, x: i64, note: &str) -> LogEntry {
        LogEntry::update(
            pos,
            ts,
            [("x", Cell::Int(x)), ("note", Cell::Text(note.into()))],
        )
    }

    fn tracked(c: &str) -> bool {
        c != "note"
    }

    #[test]
    fn a_late_change_splits_the_version_it_falls_in() {
        let mut log = vec![up("a", 10, 1, ""), up("c", 30, 1, "n"), up("d", 40, 2, "")];
        let before = history(&log, &tracked).versions;
        assert_eq!(before.len(), 2);
        log.push(up("b", 20, 5, ""));
        let after = history(&log, &tracked).versions;
        let spans: Vec<_> = after
            .iter()
            .map(|v| (v.valid_from_ms, v.valid_to_ms, v.version))
            .collect();
        // x: 1 @10, 5 @20, back to 1 @30 (the absorbed event now opens a version), 2 @40.
        assert_eq!(
            spans,
            vec![
                (10, Some(20), 1),
                (20, Some(30), 2),
                (30, Some(40), 3),
                (40, None, 4)
            ]
        );
        assert!(after[3].is_current && !after[2].is_current);
    }

    #[test]
    fn ignored_columns_make_no_version_and_order_does_not_matter() {
        let log = vec![up("b", 20, 1, "changed"), up("a", 10, 1, "")];
        let v = history(&log, &tracked).versions;
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].valid_from_ms, 10);
    }

    #[test]
    fn delete_then_reinsert() {
        let del = LogEntry {
            pos: "b".into(),
            ts_ms: 20,
            kind: EntryKind::Delete,
            op: Op::Delete,
            partition: 0,
            offset: 0,
            image: Image::default(),
        };
        let v = history(&[up("a", 10, 1, ""), del, up("c", 30, 1, "")], &tracked).versions;
        let flags: Vec<_> = v.iter().map(|v| (v.is_deleted, v.is_current)).collect();
        assert_eq!(flags, vec![(false, false), (true, false), (false, true)]);
        assert_eq!(
            v[1].values.get("x"),
            Some(&Cell::Int(1)),
            "last known values"
        );
    }

    #[test]
    fn toast_placeholder_keeps_the_previous_value() {
        let mut second = up("b", 20, 2, "");
        second.image.values.remove("x");
        second.image.unavailable.insert("x".into());
        let v = history(&[up("a", 10, 7, ""), second], &tracked).versions;
        assert_eq!(v.len(), 1, "x unchanged → no new version");
        assert_eq!(v[0].values.get("x"), Some(&Cell::Int(7)));
    }

    #[test]
    fn inferred_member_is_completed_by_the_first_version() {
        let r = LogEntry {
            pos: SourcePos::reference(),
            ts_ms: 5,
            kind: EntryKind::Ref,
            op: Op::Read,
            partition: 0,
            offset: 0,
            image: Image::default(),
        };
        let only = history(std::slice::from_ref(&r), &tracked).versions;
        assert!(only[0].is_inferred && only[0].is_current && only[0].values.is_empty());
        let v = history(&[r, up("a", 10, 3, "")], &tracked).versions;
        assert_eq!(v.len(), 2);
        assert!(v[0].is_inferred && !v[0].is_current);
        assert_eq!(v[0].values.get("x"), Some(&Cell::Int(3)));
        assert_eq!((v[0].valid_from_ms, v[0].valid_to_ms), (5, Some(10)));
    }

    /// A random log of one key: upserts and deletes, some with a placeholder for `x`.
    fn arb_log() -> impl proptest::strategy::Strategy<Value = Vec<LogEntry>> {
        use proptest::prelude::*;
        proptest::collection::vec((0u8..4, 0i64..3, 0i64..40, 0u8..3), 1..24).prop_map(|steps| {
            steps
                .into_iter()
                .enumerate()
                .map(|(i, (what, x, dt, note))| {
                    let mut e = up(
                        &format!("{i:04}"),
                        100 + i as i64 * 10 - dt,
                        x,
                        &"ab"[..note as usize % 2],
                    );
                    match what {
                        0 => {
                            e.kind = EntryKind::Delete;
                            e.op = Op::Delete;
                        }
                        1 => {
                            e.image.values.remove("x");
                            e.image.unavailable.insert("x".into());
                        }
                        _ => {}
                    }
                    e
                })
                .collect()
        })
    }

    proptest::proptest! {
        /// The incremental path's rule: continuing a history from its newest version and state
        /// gives exactly the versions and latest row that recomputing the whole log gives.
        #[test]
        fn continuing_equals_recomputing(log in arb_log(), cut in 0usize..24) {
            let cut = cut.min(log.len());
            let whole = history(&log, &tracked);
            let before = history(&log[..cut], &tracked);
            let head = before.versions.last().map(|v| Head {
                valid_from_ms: v.valid_from_ms,
                version: v.version,
                is_deleted: v.is_deleted,
                row_hash: v.row_hash.clone(),
            });
            let mut state = before.state.clone();
            let rest: Vec<&LogEntry> = log[cut..].iter().collect();
            let (new, latest) = extend(head.as_ref(), &mut state, &rest, &tracked);
            let mut versions = before.versions.clone();
            if let (Some(last), Some(first)) = (versions.last_mut(), new.first()) {
                last.valid_to_ms = Some(first.valid_from_ms);
                last.is_current = false;
            }
            versions.extend(new);
            proptest::prop_assert_eq!(&versions, &whole.versions);
            proptest::prop_assert_eq!(latest.or(before.latest), whole.latest);
            proptest::prop_assert_eq!(state, whole.state);
        }
    }
}
