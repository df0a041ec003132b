//! Why a table stopped. A stop is a data problem only someone can fix (the table's other
//! cycles would bend its history); the kind says where the fix lies, the message what to do.

use std::fmt;
use std::ops::Deref;

/// Where the fix of a stopped table lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StopKind {
    /// Bronze cannot give the table's history: a gap in the chain, a damaged, missing or
    /// unreadable file, a column whose type changed within bronze.
    Bronze,
    /// The warehouse table cannot follow the events' types (a narrowing, an incompatible key).
    Schema,
    /// A table or column name the warehouse cannot hold.
    Name,
    /// A source column collides with a column tidemark adds.
    Column,
    /// Events without a key, and no `tables[].key` for them.
    Key,
    /// Another topic or role holds the warehouse table.
    Claim,
    /// The warehouse refused a value of the batch.
    Refused,
}

impl StopKind {
    /// A short, stable label (logs, metrics).
    pub fn as_str(self) -> &'static str {
        match self {
            StopKind::Bronze => "bronze",
            StopKind::Schema => "schema",
            StopKind::Name => "name",
            StopKind::Column => "column",
            StopKind::Key => "key",
            StopKind::Claim => "claim",
            StopKind::Refused => "refused",
        }
    }
}

/// Why a table stopped: its kind, and the message users read (it derefs to it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopReason {
    pub kind: StopKind,
    message: String,
}

impl StopReason {
    pub fn new(kind: StopKind, message: impl Into<String>) -> StopReason {
        StopReason {
            kind,
            message: message.into(),
        }
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same kind with the message put in context.
    pub(crate) fn map(self, f: impl FnOnce(String) -> String) -> StopReason {
        StopReason {
            kind: self.kind,
            message: f(self.message),
        }
    }
}

impl Deref for StopReason {
    type Target = str;

    fn deref(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
