//! The latest state of one key from the changes of a batch: what `silver.<table>` gets, given
//! the row it holds. Older and redelivered changes do not replace the row (and the upsert's
//! position guard checks again), with one exception: a value the row carries from an older change
//! (a TOAST placeholder resolved to the value in force) is replaced by a late change that sits
//! between that older change and the row, so live merging and a replay agree.

use crate::change::SourcePos;
use std::collections::{BTreeMap, BTreeSet};

use crate::cell::{Cell, Values};
use crate::change::{Change, Op};

/// Columns whose value a row carries from an older change, with that change's position
/// (silver's and upsert facts' `_toast` column, as JSON). The key [`ALL_OTHERS`] stands for every
/// column not listed: a deleted row carries all its values from the change before the delete.
pub(crate) type Carried = BTreeMap<String, String>;

/// The [`Carried`] key of the columns not listed (no column has an empty name).
pub(crate) const ALL_OTHERS: &str = "";

/// `_toast` text of a [`Carried`] map (`None` when nothing is carried).
pub(crate) fn carried_text(c: &Carried) -> Option<String> {
    (!c.is_empty()).then(|| serde_json::to_string(c).expect("a string map serializes"))
}

/// A [`Carried`] map from `_toast` text (absent or unreadable: nothing carried).
pub(crate) fn carried_from(text: Option<&str>) -> Carried {
    text.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default()
}

/// What the warehouse holds for a key before the batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Stored {
    pub pos: SourcePos,
    pub carried: Carried,
}

/// Values of the stored row replaced by late changes: the value in force at the row's position.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Patch {
    /// The stored row's position (the update applies only while it is still there).
    pub pos: SourcePos,
    pub values: Values,
    pub carried: Carried,
}

/// The late changes of a key (older than `stored`) that hold the value in force for a column the
/// stored row carries: the newest such change per column.
pub(crate) fn patch<'a>(
    changes: impl IntoIterator<Item = &'a Change>,
    stored: &Stored,
) -> Option<Patch> {
    let mut best: BTreeMap<&str, (&str, &Cell)> = BTreeMap::new();
    let others = stored.carried.get(ALL_OTHERS);
    for c in changes {
        if c.pos >= stored.pos || c.op == Op::Truncate || c.op == Op::Delete {
            continue;
        }
        let Some(img) = c.image() else { continue };
        for (col, v) in &img.values {
            let Some(from) = stored.carried.get(col).or(others) else {
                continue;
            };
            if img.unavailable.contains(col) || c.pos.as_str() <= from.as_str() {
                continue;
            }
            if best
                .get(col.as_str())
                .is_none_or(|(p, _)| *p < c.pos.as_str())
            {
                best.insert(col, (c.pos.as_str(), v));
            }
        }
    }
    if best.is_empty() {
        return None;
    }
    let mut carried = stored.carried.clone();
    let mut values = Values::new();
    for (col, (pos, v)) in best {
        carried.insert(col.to_owned(), pos.to_owned());
        values.insert(col.to_owned(), v.clone());
    }
    Some(Patch {
        pos: stored.pos.clone(),
        values,
        carried,
    })
}

/// The row a batch leaves for one key.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SilverRow {
    pub values: Values,
    /// Columns whose stored value stays (TOAST placeholders not resolved inside the batch).
    pub keep: BTreeSet<String>,
    /// Keep every stored value (a delete with no newer values in the batch).
    pub keep_all: bool,
    pub deleted: bool,
    /// The change that decided the row.
    pub last: Change,
    /// Columns whose value comes from an older change than `last`, with its position.
    pub carried: Carried,
}

/// Folds a key's changes (in [`Change::order`]) newer than the stored row into one row.
pub(crate) fn fold<'a>(
    changes: impl IntoIterator<Item = &'a Change>,
    stored: Option<&Stored>,
) -> Option<SilverRow> {
    let mut cur: Option<SilverRow> = None;
    for c in changes {
        if stored.is_some_and(|s| c.pos <= s.pos) {
            continue;
        }
        if cur.as_ref().is_some_and(|r| r.last.pos == c.pos) {
            continue; // redelivered
        }
        match c.op {
            Op::Truncate => continue,
            // A deleted row keeps its last known values: every one of them is carried from the
            // change before the delete, so a late change in between can still replace it.
            Op::Delete => match &mut cur {
                Some(r) => {
                    for col in r.values.keys() {
                        if !r.carried.contains_key(col) {
                            r.carried.insert(col.clone(), r.last.pos.to_string());
                        }
                    }
                    r.deleted = true;
                    r.last = c.clone();
                }
                None => {
                    let mut carried = Carried::new();
                    if let Some(s) = stored {
                        carried = s.carried.clone();
                        carried
                            .entry(ALL_OTHERS.to_owned())
                            .or_insert_with(|| s.pos.to_string());
                    }
                    cur = Some(SilverRow {
                        values: c.image().map(|i| i.values.clone()).unwrap_or_default(),
                        keep: BTreeSet::new(),
                        keep_all: true,
                        deleted: true,
                        last: c.clone(),
                        carried,
                    })
                }
            },
            Op::Create | Op::Update | Op::Read => {
                let img = c.image().cloned().unwrap_or_default();
                let mut values = img.values;
                let mut keep = BTreeSet::new();
                let mut carried = Carried::new();
                for col in img.unavailable {
                    let from = match &cur {
                        Some(r) if !r.keep_all && !r.keep.contains(&col) => {
                            values.insert(
                                col.clone(),
                                r.values.get(&col).cloned().unwrap_or(Cell::Null),
                            );
                            Some(
                                r.carried
                                    .get(&col)
                                    .cloned()
                                    .unwrap_or_else(|| r.last.pos.to_string()),
                            )
                        }
                        Some(r) => {
                            keep.insert(col.clone());
                            // Unknown origin (no stored row): any older change may fill it.
                            let from = r.carried.get(&col).or(r.carried.get(ALL_OTHERS));
                            Some(from.cloned().unwrap_or_default())
                        }
                        None => {
                            keep.insert(col.clone());
                            Some(stored.map_or_else(String::new, |s| {
                                let from = s.carried.get(&col).or(s.carried.get(ALL_OTHERS));
                                from.cloned().unwrap_or_else(|| s.pos.to_string())
                            }))
                        }
                    };
                    if let Some(from) = from {
                        carried.insert(col, from);
                    }
                }
                cur = Some(SilverRow {
                    values,
                    keep,
                    keep_all: false,
                    deleted: false,
                    last: c.clone(),
                    carried,
                });
            }
        }
    }
    cur
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::Image;

    fn up(pos: &str, x: Option<i64>) -> Change {
        let mut img = Image::default();
        match x {
            Some(x) => {
                img.values.insert("x".into(), Cell::Int(x));
            }
            None => {
                img.unavailable.insert("x".into());
            }
        }
        img.values.insert("y".into(), Cell::Int(0));
        Change {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            op: Op::Update,
            pos: pos.into(),
            ts_ms: 0,
            record_key: Values::new(),
            before: None,
            after: Some(img),
            txn: None,
        }
    }

    #[test]
    fn a_placeholder_carries_the_value_and_where_it_came_from() {
        let stored = Stored {
            pos: "b".into(),
            carried: Carried::new(),
        };
        let row = fold([&up("c", None)], Some(&stored)).unwrap();
        assert!(row.keep.contains("x"));
        assert_eq!(row.carried.get("x").map(String::as_str), Some("b"));
        let row = fold([&up("c", Some(5)), &up("d", None)], Some(&stored)).unwrap();
        assert_eq!(row.values.get("x"), Some(&Cell::Int(5)));
        assert_eq!(row.carried.get("x").map(String::as_str), Some("c"));
    }

    #[test]
    fn a_late_change_between_the_source_and_the_row_patches_the_carried_value() {
        let stored = Stored {
            pos: "d".into(),
            carried: [("x".to_owned(), "a".to_owned())].into(),
        };
        // "b" and "c" fall between: the newest wins; "e" is newer (not late); "0" is older.
        let late = [
            up("b", Some(1)),
            up("c", Some(2)),
            up("0", Some(9)),
            up("e", Some(3)),
        ];
        let p = patch(late.iter(), &stored).unwrap();
        assert_eq!(p.values.get("x"), Some(&Cell::Int(2)));
        assert_eq!(p.carried.get("x").map(String::as_str), Some("c"));
        assert!(patch([&up("0", Some(9))], &stored).is_none());
        assert!(
            patch([&up("c", None)], &stored).is_none(),
            "a placeholder again"
        );
    }
}
