//! The latest state of one key from the changes of a batch: what `silver.<table>` gets, given
//! the position of the row it holds. Older and redelivered changes are dropped here (and again
//! by the upsert's position guard).

use std::collections::BTreeSet;

use crate::cell::{Cell, Values};
use crate::change::{Change, Op};

/// The row a batch leaves for one key.
#[derive(Debug, Clone, PartialEq)]
pub struct SilverRow {
    pub values: Values,
    /// Columns whose stored value stays (TOAST placeholders not resolved inside the batch).
    pub keep: BTreeSet<String>,
    /// Keep every stored value (a delete with no newer values in the batch).
    pub keep_all: bool,
    pub deleted: bool,
    /// The change that decided the row.
    pub last: Change,
}

/// Folds a key's changes (in [`Change::order`]) newer than `stored_pos` into one row.
pub fn fold<'a>(
    changes: impl IntoIterator<Item = &'a Change>,
    stored_pos: Option<&str>,
) -> Option<SilverRow> {
    let mut cur: Option<SilverRow> = None;
    for c in changes {
        if stored_pos.is_some_and(|s| c.pos.as_str() <= s) {
            continue;
        }
        if cur.as_ref().is_some_and(|r| r.last.pos == c.pos) {
            continue; // redelivered
        }
        match c.op {
            Op::Truncate => continue,
            Op::Delete => match &mut cur {
                Some(r) => {
                    r.deleted = true;
                    r.last = c.clone();
                }
                None => {
                    cur = Some(SilverRow {
                        values: c.image().map(|i| i.values.clone()).unwrap_or_default(),
                        keep: BTreeSet::new(),
                        keep_all: true,
                        deleted: true,
                        last: c.clone(),
                    })
                }
            },
            Op::Create | Op::Update | Op::Read => {
                let img = c.image().cloned().unwrap_or_default();
                let mut values = img.values;
                let mut keep = BTreeSet::new();
                for col in img.unavailable {
                    match &cur {
                        Some(r) if !r.keep_all && !r.keep.contains(&col) => {
                            values.insert(
                                col.clone(),
                                r.values.get(&col).cloned().unwrap_or(Cell::Null),
                            );
                        }
                        _ => {
                            keep.insert(col);
                        }
                    }
                }
                cur = Some(SilverRow {
                    values,
                    keep,
                    keep_all: false,
                    deleted: false,
                    last: c.clone(),
                });
            }
        }
    }
    cur
}
