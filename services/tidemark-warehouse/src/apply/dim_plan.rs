//! A dimension batch planned as values, without a database: which versions to close, insert,
//! update or remove, what goes into the change log and the key states, and from when facts
//! must be re-pointed.
//!
//! Two routes per key, with the same result ([`crate::history::extend`] is what
//! [`crate::history::history`] folds with):
//! - **continue**: every new change is newer than the key's last applied one; the history goes
//!   on from the current version and the key's state (its last known full row). The cost does
//!   not depend on how much history the key has.
//! - **recompute**: a late or redelivered change, a fact reference to a key without versions,
//!   or a key stored before key states existed: the key's whole log is read and its versions
//!   recomputed and diffed. (A reference to a key with versions does not come here: see
//!   `dim::extend_inferred`.)

use crate::change::SourcePos;
use std::collections::{BTreeMap, BTreeSet};

use super::DimStats;
use crate::cell::Values;
use crate::history::{EntryKind, Head, Latest, LogEntry, Version, extend, history};

/// One stored version's identity and state.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Stored {
    pub sk: i64,
    pub start_pos: SourcePos,
    pub version: i64,
    pub valid_from_ms: i64,
    pub valid_to_ms: Option<i64>,
    pub is_current: bool,
    pub is_deleted: bool,
    pub is_inferred: bool,
    pub row_hash: String,
}

impl Stored {
    fn same_as(&self, v: &Version) -> bool {
        self.version == v.version
            && self.valid_from_ms == v.valid_from_ms
            && self.valid_to_ms == v.valid_to_ms
            && self.is_current == v.is_current
            && self.is_deleted == v.is_deleted
            && self.is_inferred == v.is_inferred
            && self.row_hash == v.row_hash
    }

    /// Whether a fact's reference at `ts_ms` to the key whose earliest stored version this is
    /// finds a real version started by then, so it changes nothing. An inferred member ends
    /// where the key's first real version starts.
    pub(super) fn covers(&self, ts_ms: i64) -> bool {
        if self.is_inferred {
            self.valid_to_ms.is_some_and(|to| to <= ts_ms)
        } else {
            self.valid_from_ms <= ts_ms
        }
    }

    /// The version as newer changes continue from it.
    pub(super) fn head(&self) -> Head {
        Head {
            valid_from_ms: self.valid_from_ms,
            version: self.version,
            is_deleted: self.is_deleted,
            row_hash: self.row_hash.clone(),
        }
    }
}

/// Where a key's change log stands: its newest applied position and the last known full row.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct KeyState {
    pub pos: SourcePos,
    pub values: Values,
}

/// A version to write: `sk` is set for a stored version updated in place.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Row {
    pub sk: Option<i64>,
    pub key: String,
    pub version: Version,
}

/// Everything a dimension batch writes.
#[derive(Debug, Default)]
pub(super) struct Plan {
    pub stats: DimStats,
    pub rows: Vec<Row>,
    /// Current versions a newer one closes: `(sk, valid_to_ms)`.
    pub closes: Vec<(i64, i64)>,
    /// Surrogate keys of versions a late change made redundant.
    pub removed: Vec<i64>,
    /// Keys whose facts from a time on (ms; `i64::MIN` for all) may belong to another version.
    pub repoint: Vec<(String, i64)>,
    /// Change-log rows to write (a `Ref` row replaces the stored one); every state's position
    /// is among them or [`Plan::log_new`].
    pub log: Vec<(String, LogEntry)>,
    /// Change-log rows at positions the log cannot hold yet (appended without a conflict check).
    pub log_new: Vec<(String, LogEntry)>,
    /// Each key's state, stored on the log row of its position.
    pub states: Vec<(String, KeyState)>,
    /// Silver's rows.
    pub latest: BTreeMap<String, Latest>,
    /// Keys seen for the first time (no version, no log row): silver has no row for them.
    pub fresh: BTreeSet<String>,
}

/// A key's new entries in position order, each position once (a change delivered twice in one
/// batch counts as redelivered).
pub(super) fn sorted_new(mut entries: Vec<LogEntry>, stats: &mut DimStats) -> Vec<LogEntry> {
    entries.sort_by(|a, b| {
        (a.kind == EntryKind::Ref)
            .cmp(&(b.kind == EntryKind::Ref))
            .then_with(|| a.pos.cmp(&b.pos))
    });
    let before = entries.len();
    entries.dedup_by(|b, a| a.kind != EntryKind::Ref && b.kind != EntryKind::Ref && a.pos == b.pos);
    stats.redelivered += (before - entries.len()) as u64;
    entries
}

/// Whether a key's new entries can continue its history from `current` and `state`.
pub(super) fn can_continue(
    new: &[LogEntry],
    current: Option<&Stored>,
    state: Option<&KeyState>,
) -> bool {
    if new.iter().any(|e| e.kind == EntryKind::Ref) {
        return false;
    }
    match (current, state) {
        (None, None) => true,
        // A state older than the current version was left by a merger that did not keep
        // states: recompute.
        (Some(c), Some(s)) => {
            !c.is_inferred && s.pos >= c.start_pos && new.first().is_some_and(|e| e.pos > s.pos)
        }
        _ => false,
    }
}

impl Plan {
    /// Continues a key's history with `new` (sorted, all newer than `state`; see
    /// [`can_continue`]). `logs_new`: the log holds none of the key's new positions (they are
    /// newer than its newest row, or it has none).
    pub(super) fn continue_key(
        &mut self,
        key: &str,
        current: Option<&Stored>,
        state: Option<KeyState>,
        new: Vec<LogEntry>,
        tracked: &dyn Fn(&str) -> bool,
        logs_new: bool,
    ) {
        if current.is_none() && state.is_none() && logs_new {
            self.fresh.insert(key.to_owned());
        }
        let mut values = state.map(|s| s.values).unwrap_or_default();
        let head = current.map(Stored::head);
        let refs: Vec<&LogEntry> = new.iter().collect();
        let (versions, latest) = extend(head.as_ref(), &mut values, &refs, tracked);
        if let (Some(c), Some(first)) = (current, versions.first()) {
            self.closes.push((c.sk, first.valid_from_ms));
            self.stats.updated += 1;
            self.repoint.push((key.to_owned(), first.valid_from_ms));
        }
        self.stats.opened += versions.len() as u64;
        self.rows.extend(versions.into_iter().map(|version| Row {
            sk: None,
            key: key.to_owned(),
            version,
        }));
        if let Some(l) = latest {
            self.states.push((
                key.to_owned(),
                KeyState {
                    pos: l.pos.clone(),
                    values,
                },
            ));
            self.latest.insert(key.to_owned(), l);
        }
        let log = if logs_new {
            &mut self.log_new
        } else {
            &mut self.log
        };
        log.extend(new.into_iter().map(|e| (key.to_owned(), e)));
    }

    /// Merges `new` into the key's whole `log`, recomputes its versions and diffs them with
    /// the `stored` ones (by start position).
    pub(super) fn recompute_key(
        &mut self,
        key: &str,
        mut log: Vec<LogEntry>,
        mut stored: BTreeMap<SourcePos, Stored>,
        new: Vec<LogEntry>,
        tracked: &dyn Fn(&str) -> bool,
    ) {
        if !self.merge_into_log(key, &mut log, new) {
            return;
        }
        let h = history(&log, tracked);
        if let Some(l) = h.latest {
            // The state lives on the log row of its position: an older newest row is written
            // again to carry it.
            let written = self.log.iter().rev().take_while(|(k, _)| k == key);
            if !written.into_iter().any(|(_, e)| e.pos == l.pos)
                && let Some(e) = log
                    .iter()
                    .find(|e| e.pos == l.pos && e.kind != EntryKind::Ref)
            {
                self.log.push((key.to_owned(), e.clone()));
            }
            self.states.push((
                key.to_owned(),
                KeyState {
                    pos: l.pos.clone(),
                    values: h.state,
                },
            ));
            self.latest.insert(key.to_owned(), l);
        }
        let computed = h.versions;
        let earliest_new = computed.first().map(|v| v.start_pos.clone());
        let earliest_old = stored.keys().next().cloned();
        let mut from: Option<i64> = None;
        let mut moved = |ms: i64| from = Some(from.map_or(ms, |f| f.min(ms)));
        for v in &computed {
            let sk = match stored.remove(&v.start_pos) {
                Some(s) if s.same_as(v) => continue,
                Some(s) => {
                    self.stats.updated += 1;
                    moved(s.valid_from_ms);
                    Some(s.sk)
                }
                None => {
                    self.stats.opened += 1;
                    self.stats.inferred += u64::from(v.is_inferred);
                    None
                }
            };
            moved(v.valid_from_ms);
            self.rows.push(Row {
                sk,
                key: key.to_owned(),
                version: v.clone(),
            });
        }
        for s in stored.into_values() {
            self.stats.removed += 1;
            moved(s.valid_from_ms);
            self.removed.push(s.sk);
        }
        if let Some(mut f) = from {
            // A change to the earliest row moves facts that predate every version.
            if earliest_new != earliest_old
                || computed.first().is_some_and(|v| v.valid_from_ms >= f)
            {
                f = i64::MIN;
            }
            self.repoint.push((key.to_owned(), f));
        }
    }

    /// Adds the new entries that change something to `log` (and to the plan's log rows);
    /// returns whether any did.
    fn merge_into_log(&mut self, key: &str, log: &mut Vec<LogEntry>, new: Vec<LogEntry>) -> bool {
        let mut touched = false;
        for e in new {
            if e.kind == EntryKind::Ref {
                match log.iter_mut().find(|x| x.kind == EntryKind::Ref) {
                    Some(x) if x.ts_ms <= e.ts_ms => continue,
                    Some(x) => x.ts_ms = e.ts_ms,
                    None => log.push(e.clone()),
                }
            } else if log
                .iter()
                .any(|x| x.pos == e.pos && x.kind != EntryKind::Ref)
            {
                self.stats.redelivered += 1;
                continue;
            } else {
                if log
                    .iter()
                    .any(|x| x.kind != EntryKind::Ref && x.pos > e.pos)
                {
                    self.stats.late += 1;
                }
                log.push(e.clone());
            }
            touched = true;
            self.log.push((key.to_owned(), e));
        }
        touched
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cell::Cell;

    fn up(pos: &str, ts: i64, x: i64) -> LogEntry {
        LogEntry::update(pos, ts, [("x", Cell::Int(x))])
    }

    #[test]
    fn a_reference_is_covered_once_a_real_version_started() {
        let real = Stored {
            sk: 1,
            start_pos: "a".into(),
            version: 1,
            valid_from_ms: 100,
            valid_to_ms: None,
            is_current: true,
            is_deleted: false,
            is_inferred: false,
            row_hash: String::new(),
        };
        assert!(real.covers(100) && real.covers(150));
        assert!(
            !real.covers(99),
            "older than the first version: an inferred member"
        );
        let member = Stored {
            is_inferred: true,
            version: 0,
            valid_from_ms: 50,
            valid_to_ms: Some(100),
            ..real.clone()
        };
        assert!(member.covers(100), "the first real version started");
        assert!(!member.covers(99) && !member.covers(10));
        let alone = Stored {
            valid_to_ms: None,
            ..member
        };
        assert!(!alone.covers(1_000), "no real version yet");
    }

    fn all(_: &str) -> bool {
        true
    }

    fn stored(v: &Version, sk: i64) -> Stored {
        Stored {
            sk,
            start_pos: v.start_pos.clone(),
            version: v.version,
            valid_from_ms: v.valid_from_ms,
            valid_to_ms: v.valid_to_ms,
            is_current: v.is_current,
            is_deleted: v.is_deleted,
            is_inferred: v.is_inferred,
            row_hash: v.row_hash.clone(),
        }
    }

    #[test]
    fn a_newer_change_closes_the_current_version_and_opens_one() {
        let old = history(&[up("a", 10, 1)], &all);
        let current = stored(&old.versions[0], 7);
        let state = KeyState {
            pos: "a".into(),
            values: old.state,
        };
        let new = vec![up("b", 20, 2), up("c", 30, 2)];
        assert!(can_continue(&new, Some(&current), Some(&state)));
        let mut plan = Plan::default();
        plan.continue_key("k", Some(&current), Some(state), new, &all, true);
        assert_eq!(plan.closes, vec![(7, 20)]);
        assert_eq!(
            plan.rows.len(),
            1,
            "the unchanged second change opens nothing"
        );
        let v = &plan.rows[0].version;
        assert_eq!((v.version, v.valid_from_ms, v.is_current), (2, 20, true));
        assert_eq!(plan.repoint, vec![("k".to_owned(), 20)]);
        assert_eq!(plan.states[0].1.pos, "c");
        assert_eq!(
            plan.log_new.len(),
            2,
            "both are newer than the key's newest log row"
        );
        assert!(plan.log.is_empty());
    }

    #[test]
    fn late_redelivered_and_referenced_keys_are_recomputed() {
        let old = history(&[up("b", 10, 1)], &all);
        let current = stored(&old.versions[0], 1);
        let state = KeyState {
            pos: "b".into(),
            values: old.state,
        };
        assert!(!can_continue(
            &[up("a", 5, 3)],
            Some(&current),
            Some(&state)
        ));
        assert!(!can_continue(
            &[up("b", 10, 1)],
            Some(&current),
            Some(&state)
        ));
        assert!(
            !can_continue(&[up("c", 20, 3)], Some(&current), None),
            "stored before key states"
        );
        assert!(can_continue(&[up("c", 20, 3)], None, None), "a new key");
        let mut r = up("", 1, 0);
        r.kind = EntryKind::Ref;
        assert!(!can_continue(&[r], None, None));
    }

    /// A key stored with changes at `a` and `c`, recomputed with a late change at `b`.
    fn late_change_between_two_versions() -> Plan {
        let log = vec![up("a", 10, 1), up("c", 30, 2)];
        let old = history(&log, &all);
        let stored: BTreeMap<SourcePos, Stored> = old
            .versions
            .iter()
            .enumerate()
            .map(|(i, v)| (v.start_pos.clone(), stored(v, i as i64 + 1)))
            .collect();
        let mut plan = Plan::default();
        plan.recompute_key("k", log, stored, vec![up("b", 20, 5)], &all);
        plan
    }

    #[test]
    fn a_late_change_splices_into_the_stored_versions() {
        let plan = late_change_between_two_versions();
        assert_eq!(plan.stats.late, 1);
        assert_eq!(plan.stats.opened, 1);
        // The first version changed (it ends earlier): facts before it may point at it too.
        assert_eq!(plan.repoint, vec![("k".to_owned(), i64::MIN)]);
        assert!(plan.closes.is_empty());
    }

    #[test]
    fn a_late_change_rewrites_the_newest_log_row_with_the_state() {
        let plan = late_change_between_two_versions();
        let logged: Vec<&str> = plan.log.iter().map(|(_, e)| e.pos.as_str()).collect();
        assert_eq!(logged, ["b", "c"], "the state's row is written again");
        assert_eq!(plan.states[0].1.pos, "c");
    }

    #[test]
    fn a_change_twice_in_one_batch_counts_once() {
        let mut stats = DimStats::default();
        let new = sorted_new(
            vec![up("b", 20, 2), up("a", 10, 1), up("b", 20, 2)],
            &mut stats,
        );
        assert_eq!(
            new.iter().map(|e| e.pos.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(stats.redelivered, 1);
    }
}
