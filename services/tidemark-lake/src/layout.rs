//! Where things live under the bronze root:
//!
//! ```text
//! <root>/<table>/dt=<YYYY-MM-DD>/<topic>+<partition>+<start>-<end>+<writer>.parquet   data (hive style)
//! <root>/<table>/dt=<YYYY-MM-DD>/<topic>+<partition>+<start>-streamed+<writer>.parquet  data streamed as it filled
//! <root>/_log/<topic>/<partition>/<start, 20 digits>.json                            commit records
//! <root>/_log/<topic>/<partition>/_last.json                                         where the chain ends (a hint)
//! <root>/_compacted/<topic>/<partition>/<start, 20 digits>.json                      compaction records
//! <root>/_dlq/<topic>/<partition>/<start>-<end>+<writer>.jsonl                        dead letters
//! <root>/_manifest/<table>.parquet                                                   committed files, for engines
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
    /// The directory of a name as [`TableDir::name`] gives it.
    pub fn from_name(name: &str) -> TableDir {
        match name {
            "_transactions" => TableDir::Transactions,
            "_heartbeats" => TableDir::Heartbeats,
            "_schema_changes" => TableDir::SchemaChanges,
            "_messages" => TableDir::Messages,
            topic => TableDir::Topic(topic.to_owned()),
        }
    }

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

/// A path as commit records store it (already percent-encoded where the store needs it):
/// `Path::from` would encode it a second time (`a%20b` → `a%2520b`) and miss the object.
pub fn stored_path(stored: &str) -> Path {
    Path::parse(stored).unwrap_or_else(|_| Path::from(stored))
}

/// A directory's name as the topic it stands for (the store percent-encodes some characters).
pub fn topic_of_dir(name: &str) -> String {
    percent_encoding::percent_decode_str(name)
        .decode_utf8_lossy()
        .into_owned()
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
            file_topic(id.topic),
            id.partition,
            id.stem()
        ))
}

/// A data file written while its segment fills (ingest streams it through a multipart upload):
/// its range's end is not known when the upload starts, so the name says `streamed` instead.
pub fn streamed_file(
    root: &Path,
    table: &TableDir,
    dt: NaiveDate,
    (topic, partition, start): (&str, i32, i64),
    writer: &str,
) -> Path {
    root.child(table.name())
        .child(format!("dt={}", dt.format("%Y-%m-%d")))
        .child(format!(
            "{}+{partition}+{}-streamed+{writer}.parquet",
            file_topic(topic),
            offset_name(start),
        ))
}

/// The topic as a file name part: file names have at most 255 bytes (as stored: the object
/// store percent-encodes some characters, up to 3 bytes for each byte) and the rest of a data
/// file's name takes about 90, so a long topic keeps a prefix of at most 100 stored bytes and a
/// hash of the whole. Directories keep the full topic.
fn file_topic(topic: &str) -> std::borrow::Cow<'_, str> {
    const KEEP: usize = 100;
    let stored = |t: &str| object_store::path::PathPart::from(t).as_ref().len();
    if stored(topic) <= KEEP + 20 {
        return topic.into();
    }
    let mut cut = 0;
    for (i, c) in topic.char_indices() {
        if stored(&topic[..i + c.len_utf8()]) > KEEP {
            break;
        }
        cut = i + c.len_utf8();
    }
    let hash = xxhash_rust::xxh3::xxh3_64(topic.as_bytes());
    format!("{}~{hash:016x}", &topic[..cut]).into()
}

pub fn log_dir(root: &Path, topic: &str, partition: i32) -> Path {
    root.child("_log").child(topic).child(partition.to_string())
}

pub fn commit_record(root: &Path, topic: &str, partition: i32, start: i64) -> Path {
    log_dir(root, topic, partition).child(format!("{}.json", offset_name(start)))
}

/// The hint of where a partition's chain ends: the start of a recent record. Its name sorts
/// after every record's (`_` after digits) and is not a record name.
pub fn last_hint(root: &Path, topic: &str, partition: i32) -> Path {
    log_dir(root, topic, partition).child("_last.json")
}

/// A partition's compaction records (see `compact`): outside `_log`, so that listing the newest
/// records of a partition's chain never lists them.
pub fn compacted_dir(root: &Path, topic: &str, partition: i32) -> Path {
    root.child("_compacted")
        .child(topic)
        .child(partition.to_string())
}

pub fn compacted_record(root: &Path, topic: &str, partition: i32, start: i64) -> Path {
    compacted_dir(root, topic, partition).child(format!("{}.json", offset_name(start)))
}

/// Where the manifest of a table's committed files lives (see `manifest`).
pub fn manifest_dir(root: &Path) -> Path {
    root.child("_manifest")
}

pub fn manifest_file(root: &Path, table: &str) -> Path {
    manifest_dir(root).child(format!("{table}.parquet"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_file_names_fit_255_bytes_for_any_topic() {
        let id = |topic| FlushId {
            topic,
            partition: 2_147_483_647,
            start: i64::MAX,
            end: i64::MAX,
            writer: "0123456789abcdef0123456789abcdef01234567",
        };
        let dt = NaiveDate::from_ymd_opt(2026, 12, 2).unwrap();
        let long = "é".repeat(124) + "x"; // 249 bytes, the longest topic Kafka allows
        for topic in ["bank.public.customers", long.as_str()] {
            let path = data_file(
                &Path::from("b"),
                &TableDir::Topic(topic.into()),
                dt,
                &id(topic),
            );
            let name = path.filename().unwrap();
            assert!(name.len() <= 255, "{} bytes", name.len());
        }
        let short = data_file(
            &Path::from("b"),
            &TableDir::Topic("t".into()),
            dt,
            &id("bank.public.customers"),
        );
        assert!(
            short
                .filename()
                .unwrap()
                .starts_with("bank.public.customers+")
        );
        // Two long topics with one prefix stay apart.
        assert_ne!(
            file_topic(&("a".repeat(200) + "1")),
            file_topic(&("a".repeat(200) + "2"))
        );
    }
}
