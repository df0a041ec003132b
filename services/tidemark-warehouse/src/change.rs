//! A change event as the merger sees it: read back from a bronze file, values in canonical
//! [`Cell`] form, ordered by source position.

use std::cmp::Ordering;
use std::collections::BTreeSet;

pub(crate) use tidemark_core::event::Op;
use tidemark_core::event::{Source, SourcePosition};
use tidemark_core::mapping::ColType;

use crate::cell::Values;

/// A row image: its values and the columns Debezium did not send (unchanged TOAST values).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Image {
    pub values: Values,
    pub unavailable: BTreeSet<String>,
}

/// One change of one source row.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub op: Op,
    /// The order key: source position where the connector gives one (see [`position_key`]).
    pub pos: SourcePos,
    /// Source commit time (ms since the epoch).
    pub ts_ms: i64,
    /// The Kafka record key's columns (empty when the record had no key).
    pub record_key: Values,
    pub before: Option<Image>,
    pub after: Option<Image>,
    /// The source transaction's id (Debezium's `transaction.id`), where the connector sends
    /// transaction metadata.
    pub txn: Option<String>,
}

impl Change {
    /// Position order, then Kafka order (for events at one position, e.g. a snapshot).
    pub fn order(&self, other: &Change) -> Ordering {
        (&self.pos, &self.topic, self.partition, self.offset).cmp(&(
            &other.pos,
            &other.topic,
            other.partition,
            other.offset,
        ))
    }

    /// The image that carries the row's values: `after`, or `before` for deletes.
    pub fn image(&self) -> Option<&Image> {
        match self.op {
            Op::Delete => self.before.as_ref().or(self.after.as_ref()),
            _ => self.after.as_ref().or(self.before.as_ref()),
        }
    }
}

/// The columns of a batch of changes of one table, in first-seen order, and the schemaless
/// columns seen only as null (their type is unknown: they are written where the table already
/// has them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Columns(pub Vec<(String, ColType)>, pub BTreeSet<String>);

impl Columns {
    /// Notes a schemaless column whose value is null.
    pub fn saw_null(&mut self, name: &str) {
        if self.get(name).is_none() {
            self.1.insert(name.to_owned());
        }
    }

    /// Columns seen only as null.
    pub fn null_only(&self) -> impl Iterator<Item = &String> {
        self.1.iter().filter(|n| self.get(n).is_none())
    }

    pub fn get(&self, name: &str) -> Option<ColType> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, t)| *t)
    }

    /// Adds a column or widens its type; `Err` names an incompatible change.
    pub fn absorb(&mut self, name: &str, ty: ColType) -> Result<(), (ColType, ColType)> {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            None => {
                self.0.push((name.to_owned(), ty));
                Ok(())
            }
            Some((_, old)) => match old.widen_to(ty) {
                Some(w) => {
                    *old = w;
                    Ok(())
                }
                None => Err((*old, ty)),
            },
        }
    }
}

/// A source position as a key that sorts in source commit order: made by [`position_key`] from
/// an event, or read back as the warehouse stored it (its text form is what SQL compares).
/// The empty key sorts first: it is the position of a fact's reference to a key
/// ([`SourcePos::reference`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourcePos(String);

impl SourcePos {
    /// The position of a reference entry and of an inferred member: before every change.
    pub fn reference() -> SourcePos {
        SourcePos(String::new())
    }

    /// A position key made before: as the warehouse stored it (by [`position_key`] when it was
    /// written), or a MySQL position mapped through its lineage segments.
    pub fn stored(text: String) -> SourcePos {
        SourcePos(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A position compares equal to its text (tests name positions by text).
impl PartialEq<&str> for SourcePos {
    fn eq(&self, text: &&str) -> bool {
        self.0 == *text
    }
}

/// Positions written by hand in unit tests; the pipeline makes them with [`position_key`].
#[cfg(test)]
impl From<&str> for SourcePos {
    fn from(text: &str) -> SourcePos {
        SourcePos(text.to_owned())
    }
}

impl std::fmt::Display for SourcePos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A sortable text of an event's position. Positions of one connector compare as their texts;
/// without a position the order falls back to commit time and Kafka coordinates (`~` sorts
/// after the others, so such events never compare as older than positioned ones).
pub(crate) fn position_key(source: &Source, ts_ms: i64, partition: i32, offset: i64) -> SourcePos {
    SourcePos(match source.position() {
        SourcePosition::Postgres { commit_lsn, lsn } => format!("pg:{commit_lsn:016x}:{lsn:016x}"),
        SourcePosition::MySql {
            file_seq, pos, row, ..
        } => {
            format!("my:{file_seq:016x}:{pos:016x}:{row:08x}")
        }
        SourcePosition::SqlServer {
            commit_lsn: c,
            change_lsn: l,
            serial,
        } => format!(
            "ms:{:08x}{:08x}{:04x}:{:08x}{:08x}{:04x}:{serial:016x}",
            c[0], c[1], c[2], l[0], l[1], l[2]
        ),
        SourcePosition::Oracle { commit_scn, scn } => format!("or:{commit_scn:032x}:{scn:032x}"),
        SourcePosition::Unknown => {
            format!("~:{:016x}:{partition:08x}:{offset:016x}", ts_ms.max(0))
        }
    })
}
