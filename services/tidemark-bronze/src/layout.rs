//! Where things live under the bronze root (DESIGN §3):
//!
//! ```text
//! <root>/<table>/dt=<YYYY-MM-DD>/<topic>+<partition>+<start>-<end>+<writer>.parquet   data (hive style)
//! <root>/_log/<topic>/<partition>/<start, 20 digits>.json                            commit records
//! <root>/_dlq/<topic>/<partition>/<start>-<end>+<writer>.jsonl                        dead letters
//! ```
//! `<table>` is the topic for row changes, and `_transactions`, `_heartbeats`,
//! `_schema_changes`, `_messages` for the other record kinds.

use chrono::NaiveDate;
use object_store::path::Path;

/// The directory ("table") a record kind lands in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TableDir {
    /// Row changes of a topic.
    Topic(String),
    Transactions,
    Heartbeats,
    SchemaChanges,
    Messages,
}

impl TableDir {
    pub fn name(&self) -> &str {
        match self {
            TableDir::Topic(t) => t,
            TableDir::Transactions => "_transactions",
            TableDir::Heartbeats => "_heartbeats",
            TableDir::SchemaChanges => "_schema_changes",
            TableDir::Messages => "_messages",
        }
    }
}

/// Commit record names sort by start offset: 20 digits hold any i64.
pub fn offset_name(offset: i64) -> String {
    format!("{offset:020}")
}

/// Names one flush of one partition: its range and the writer that made it.
#[derive(Debug, Clone, Copy)]
pub struct FlushId<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub start: i64,
    pub end: i64,
    pub writer: &'a str,
}

impl FlushId<'_> {
    fn stem(&self) -> String {
        format!(
            "{}-{}+{}",
            offset_name(self.start),
            offset_name(self.end),
            self.writer
        )
    }
}

pub fn data_file(root: &Path, table: &TableDir, dt: NaiveDate, id: &FlushId<'_>) -> Path {
    root.child(table.name())
        .child(format!("dt={}", dt.format("%Y-%m-%d")))
        .child(format!(
            "{}+{}+{}.parquet",
            id.topic,
            id.partition,
            id.stem()
        ))
}

pub fn log_dir(root: &Path, topic: &str, partition: i32) -> Path {
    root.child("_log").child(topic).child(partition.to_string())
}

pub fn commit_record(root: &Path, topic: &str, partition: i32, start: i64) -> Path {
    log_dir(root, topic, partition).child(format!("{}.json", offset_name(start)))
}

pub fn dead_letter_file(root: &Path, id: &FlushId<'_>) -> Path {
    root.child("_dlq")
        .child(id.topic)
        .child(id.partition.to_string())
        .child(format!("{}.jsonl", id.stem()))
}

/// The start offset of a commit record from its file name.
pub fn parse_commit_name(name: &str) -> Option<i64> {
    name.strip_suffix(".json")?.parse().ok()
}
