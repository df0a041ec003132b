//! Commit records for tests of bronze readers, here and in the crates that read bronze
//! (feature `testing`): one constructor instead of one per test module.

use crate::commit_log::{CommitRecord, FORMAT_VERSION, FileEntry};

/// A record of `topic`/`partition` committing `[start, end]` with `files` (rows: their sum),
/// written by `w` at a fixed time.
pub fn record(
    topic: &str,
    partition: i32,
    start: i64,
    end: i64,
    files: Vec<FileEntry>,
) -> CommitRecord {
    CommitRecord {
        version: FORMAT_VERSION,
        topic: topic.into(),
        partition,
        start,
        end,
        records: (end - start + 1) as u64,
        rows: files.iter().map(|f| f.rows).sum(),
        skipped: 0,
        dead_letters: 0,
        files,
        dead_letter_file: None,
        writer: "w".into(),
        committed_at: "2026-12-07T00:00:00Z".into(),
        compacts: 0,
        compacted_at: None,
    }
}

/// An entry for a file of `table` holding offsets `[min, max]`, one row each.
pub fn file(path: String, table: &str, min: i64, max: i64, bytes: u64) -> FileEntry {
    FileEntry {
        path,
        table: table.into(),
        rows: (max - min + 1) as u64,
        bytes,
        schema_fingerprint: None,
        checksum: "0".into(),
        min_offset: min,
        max_offset: max,
    }
}
