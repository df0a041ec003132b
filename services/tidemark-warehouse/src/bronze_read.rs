//! Reads bronze back: the commit records of a partition from a position, and the changes in
//! their Parquet files with values in canonical [`Cell`] form and column types from the file's
//! Arrow schema (or inferred from schemaless JSON).

use std::collections::BTreeSet;
use std::sync::Arc;
use tidemark_lake::columns as col;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, DurationMicrosecondType, DurationMillisecondType,
    DurationNanosecondType, DurationSecondType, Float32Type, Float64Type, Int8Type, Int16Type,
    Int32Type, Int64Type, Time32MillisecondType, Time32SecondType, Time64MicrosecondType,
    Time64NanosecondType, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use arrow_array::{Array, ArrayRef, RecordBatch, StructArray};
use arrow_schema::{DataType, Field, TimeUnit};
use chrono::{DateTime, Datelike, NaiveDate, NaiveTime};
use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value as Json;
use tidemark_core::event::Source;
use tidemark_core::mapping::{ColType, UNAVAILABLE_FIELD};
use tidemark_core::value::duration_text;
use tidemark_lake::commit_log::{self, CommitLogError, CommitRecord};
use tidemark_lake::committed_file::{self, CommittedFileError};
use tidemark_lake::layout;

use crate::cell::{Cell, Values, canonical_decimal, canonical_json, infer};
use crate::change::{Change, Columns, Image, Op, position_key};

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("bronze commit log: {0}")]
    Log(#[from] CommitLogError),
    #[error("bronze object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("bronze file {path}: {source}")]
    Parquet {
        path: String,
        source: parquet::errors::ParquetError,
    },
    #[error("bronze file {path}: {problem}")]
    Shape { path: String, problem: String },
    /// A committed file whose bytes are not the ones its commit record names.
    #[error(transparent)]
    Damaged(CommittedFileError),
}

impl ReadError {
    /// Whether the error is in the data (a damaged, missing or unreadable committed file, a bad
    /// commit record) rather than in reaching the store: reading again will not help, so the
    /// table stops instead of the whole cycle failing.
    pub fn is_data(&self) -> bool {
        match self {
            ReadError::Store(e) => matches!(e, object_store::Error::NotFound { .. }),
            ReadError::Log(CommitLogError::Store(e)) => {
                matches!(e, object_store::Error::NotFound { .. })
            }
            ReadError::Log(_) => true,
            ReadError::Parquet { .. } | ReadError::Shape { .. } | ReadError::Damaged(_) => true,
        }
    }
}

/// The commit records of a partition whose ranges reach `from` or later, in order, at most
/// `max` of them. Lists only names after `from` (the names sort by offset).
pub async fn records_from(
    store: &dyn ObjectStore,
    root: &Path,
    topic: &str,
    partition: i32,
    from: i64,
    max: usize,
) -> Result<Vec<CommitRecord>, ReadError> {
    let mut starts = starts_from(store, root, topic, partition, from).await?;
    let mut listings = 1;
    while starts.is_empty() {
        match after_empty_listing(store, root, (topic, partition), from).await? {
            Some(held) => return Ok(held),
            // Records landed after the listing: list again, a few times at most under a busy
            // writer; an empty answer only leaves them to the next cycle.
            None if listings < 3 => {
                starts = starts_from(store, root, topic, partition, from).await?;
                listings += 1;
            }
            None => return Ok(Vec::new()),
        }
    }
    // A position inside a range (not left by this merger) needs the record that holds it.
    if starts.first() != Some(&from) {
        return from_whole_chain(store, root, (topic, partition), from, max).await;
    }
    let mut out: Vec<CommitRecord> = Vec::new();
    for start in starts.into_iter().take(max) {
        let path = layout::commit_record(root, topic, partition, start);
        let bytes = store.get(&path).await?.bytes().await?;
        let rec: CommitRecord = serde_json::from_slice(&bytes).map_err(|e| ReadError::Shape {
            path: path.to_string(),
            problem: e.to_string(),
        })?;
        if out.last().is_some_and(|prev| prev.end + 1 != rec.start) {
            // Records a compaction replaced are being removed by `gc`: the chain as resolved
            // holds the compaction record in their place.
            return from_whole_chain(store, root, (topic, partition), from, max).await;
        }
        out.push(rec);
    }
    Ok(out)
}

/// What a listing that found no record starting at or after `from` leaves: only the last record
/// can still hold `from` (a position inside a range), so an idle partition costs one listing,
/// not its whole log. `None` when the last record starts after `from`: it landed after the
/// listing, which is stale (taking it alone would skip the records before it).
async fn after_empty_listing(
    store: &dyn ObjectStore,
    root: &Path,
    (topic, partition): (&str, i32),
    from: i64,
) -> Result<Option<Vec<CommitRecord>>, ReadError> {
    Ok(
        match commit_log::last_record(store, root, topic, partition).await? {
            Some(r) if r.start > from => None,
            last => Some(last.filter(|r| r.end >= from).into_iter().collect()),
        },
    )
}

/// [`records_from`] through the whole resolved chain (compaction records in place of the
/// records they replace).
pub async fn from_whole_chain(
    store: &dyn ObjectStore,
    root: &Path,
    (topic, partition): (&str, i32),
    from: i64,
    max: usize,
) -> Result<Vec<CommitRecord>, ReadError> {
    let chain = commit_log::read_chain(store, root, topic, partition).await?;
    Ok(chain
        .records
        .into_iter()
        .filter(|r| r.end >= from)
        .take(max)
        .collect())
}

/// Start offsets of the commit records of a partition that start at `from` or later, sorted.
/// Lists only names after `from` (the names sort by offset).
pub async fn starts_from(
    store: &dyn ObjectStore,
    root: &Path,
    topic: &str,
    partition: i32,
    from: i64,
) -> Result<Vec<i64>, ReadError> {
    let dir = layout::log_dir(root, topic, partition);
    let after = layout::commit_record(root, topic, partition, from - 1);
    let mut starts: Vec<i64> = store
        .list_with_offset(Some(&dir), &after)
        .map_ok(|m| m.location.filename().and_then(layout::parse_commit_name))
        .try_collect::<Vec<_>>()
        .await?
        .into_iter()
        .flatten()
        .filter(|s| *s >= from)
        .collect();
    starts.sort_unstable();
    Ok(starts)
}

/// How to read images.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Debezium's placeholder for unchanged TOAST values, recognised in schemaless JSON.
    pub unavailable_placeholder: String,
}

/// The changes of one bronze file with offsets ≥ `from`, and its columns.
#[derive(Debug, Clone, Default)]
pub struct FileChanges {
    pub columns: Columns,
    pub key_columns: Columns,
    pub changes: Vec<Change>,
    /// Problems with single rows (kept out of `changes`), for the log.
    pub skipped: Vec<String>,
    /// MySQL changes (index into `changes`) with their positions: their order keys need the
    /// warehouse's lineage segments ([`crate::lineage`]), so the merger sets them.
    pub mysql: Vec<(usize, crate::lineage::MySqlPos)>,
}

/// Reads a committed file, checking its bytes against `checksum` (xxh3-64 hex, from its commit
/// record) where one is given.
pub async fn read_file(
    store: &dyn ObjectStore,
    path: &str,
    from: i64,
    opts: &ReadOptions,
    checksum: Option<&str>,
) -> Result<FileChanges, ReadError> {
    let mut out = FileChanges::default();
    for batch in file_batches(store, path, checksum).await? {
        read_batch(&batch, from, opts, &mut out).map_err(|problem| ReadError::Shape {
            path: path.to_owned(),
            problem,
        })?;
    }
    Ok(out)
}

/// The record batches of a committed bronze file, its bytes checked against the commit
/// record's `checksum` first.
pub async fn file_batches(
    store: &dyn ObjectStore,
    path: &str,
    checksum: Option<&str>,
) -> Result<Vec<RecordBatch>, ReadError> {
    let bytes = committed_file::read(store, path, checksum)
        .await
        .map_err(|e| match e {
            CommittedFileError::Store(e) => ReadError::Store(e),
            damaged => ReadError::Damaged(damaged),
        })?;
    let perr = |source| ReadError::Parquet {
        path: path.to_owned(),
        source,
    };
    ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(perr)?
        .build()
        .map_err(perr)?
        .map(|b| b.map_err(|e| perr(e.into())))
        .collect()
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, String> {
    batch
        .column_by_name(name)
        .ok_or_else(|| format!("no column `{name}`"))
}

/// A column of the type bronze writes it with; another type is a read error naming it (a file
/// written by something else, or damaged), never a panic.
fn typed<'a, T: 'a>(
    batch: &'a RecordBatch,
    name: &str,
    want: &str,
    cast: impl FnOnce(&'a ArrayRef) -> Option<T>,
) -> Result<T, String> {
    let a = column(batch, name)?;
    cast(a).ok_or_else(|| format!("column `{name}` is {}, not {want}", a.data_type()))
}

fn text<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a arrow_array::StringArray, String> {
    typed(batch, name, "Utf8", |a| a.as_string_opt::<i32>())
}

/// `key`, `before` and `after`: a struct of typed values, or JSON text (schemaless).
fn image_column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, String> {
    let a = column(batch, name)?;
    match a.data_type() {
        DataType::Struct(_) | DataType::Utf8 | DataType::Null => Ok(a),
        other => Err(format!("column `{name}` is {other}, not a struct or Utf8")),
    }
}

fn read_batch(
    batch: &RecordBatch,
    from: i64,
    opts: &ReadOptions,
    out: &mut FileChanges,
) -> Result<(), String> {
    let topic = text(batch, col::KAFKA_TOPIC)?;
    let partition = typed(batch, col::KAFKA_PARTITION, "Int32", |a| {
        a.as_primitive_opt::<Int32Type>()
    })?;
    let offset = typed(batch, col::KAFKA_OFFSET, "Int64", |a| {
        a.as_primitive_opt::<Int64Type>()
    })?;
    let op = text(batch, col::OP)?;
    let ts = typed(batch, col::TS_MS, "Int64", |a| {
        a.as_primitive_opt::<Int64Type>()
    })?;
    let source = typed(batch, col::SOURCE, "a struct", |a| a.as_struct_opt())?;
    check_source(source)?;
    let key = image_column(batch, col::KEY)?;
    let before = image_column(batch, col::BEFORE)?;
    let after = image_column(batch, col::AFTER)?;
    let kafka_ts = typed(batch, col::KAFKA_TIMESTAMP, "Timestamp(ms)", |a| {
        a.as_primitive_opt::<TimestampMillisecondType>()
    })?;
    let txn_ids = transaction_ids(batch);

    if let DataType::Struct(fields) = after.data_type() {
        for f in fields.iter().filter(|f| f.name() != UNAVAILABLE_FIELD) {
            out.columns
                .absorb(f.name(), ColType::from_arrow(f))
                .map_err(|(a, b)| format!("column `{}` is {a} and {b}", f.name()))?;
        }
    }
    if let DataType::Struct(fields) = key.data_type() {
        for f in fields.iter() {
            let _ = out.key_columns.absorb(f.name(), ColType::from_arrow(f));
        }
    }

    for row in 0..batch.num_rows() {
        let off = offset.value(row);
        if off < from {
            continue;
        }
        let Some(op) = Op::from_code(op.value(row)) else {
            out.skipped
                .push(format!("offset {off}: unknown op `{}`", op.value(row)));
            continue;
        };
        let src = source_at(source, row);
        let ts_ms = src
            .ts_ms
            .or((!ts.is_null(row)).then(|| ts.value(row)))
            .or_else(|| (!kafka_ts.is_null(row)).then(|| kafka_ts.value(row)))
            .unwrap_or(0);
        let part = partition.value(row);
        let record_key = match key.data_type() {
            DataType::Struct(_) if key.is_valid(row) => struct_values(key.as_struct(), row).values,
            DataType::Utf8 if key.is_valid(row) => {
                json_values(
                    key.as_string::<i32>().value(row),
                    opts,
                    &mut Columns::default(),
                )
                .values
            }
            _ => Values::new(),
        };
        let mut image = |a: &ArrayRef| -> Option<Image> {
            if !a.is_valid(row) {
                return None;
            }
            Some(match a.data_type() {
                DataType::Struct(_) => struct_values(a.as_struct(), row),
                // Checked by `image_column`: Utf8 (a valid value is never of type Null).
                _ => json_values(a.as_string::<i32>().value(row), opts, &mut out.columns),
            })
        };
        let before = image(before);
        let after = image(after);
        if let Some(p) = mysql_pos(&src, topic.value(row), ts_ms) {
            out.mysql.push((out.changes.len(), p));
        }
        out.changes.push(Change {
            topic: topic.value(row).to_owned(),
            partition: part,
            offset: off,
            op,
            pos: position_key(&src, ts_ms, part, off),
            ts_ms,
            record_key,
            before,
            after,
            txn: txn_ids
                .filter(|(block, ids)| block.is_valid(row) && ids.is_valid(row))
                .map(|(_, ids)| ids.value(row).to_owned()),
        });
    }
    Ok(())
}

/// The `transaction.id` column, where the file has one (files landed before transaction
/// metadata was kept have none).
fn transaction_ids(batch: &RecordBatch) -> Option<(&StructArray, &arrow_array::StringArray)> {
    let block = batch.column_by_name(col::TRANSACTION)?.as_struct_opt()?;
    let ids = block.column_by_name("id")?.as_string_opt::<i32>()?;
    Some((block, ids))
}

/// A MySQL change's position for ordering across server lineages.
fn mysql_pos(src: &Source, topic: &str, ts_ms: i64) -> Option<crate::lineage::MySqlPos> {
    let tidemark_core::event::SourcePosition::MySql {
        gtid,
        server_id,
        file_seq,
        pos,
        row,
    } = src.position()
    else {
        return None;
    };
    let lineage = match (gtid, server_id) {
        (Some(g), _) => g.source,
        (None, 0) => crate::lineage::SNAPSHOT.to_owned(),
        (None, id) => format!("server-{id}"),
    };
    // Segments are kept per topic: each topic's changes are read in Kafka order, partition by
    // partition, so what one topic learns of a restart never reorders another's.
    let source = topic.to_owned();
    Some(crate::lineage::MySqlPos {
        source,
        lineage,
        coords: (file_seq, pos, row),
        ts_ms,
    })
}

/// The `source` fields read as integers and as text.
const SOURCE_INTS: [&str; 6] = ["ts_ms", "lsn", "server_id", "pos", "row", "event_serial_no"];
const SOURCE_TEXTS: [&str; 7] = [
    "sequence",
    "gtid",
    "file",
    "change_lsn",
    "commit_lsn",
    "scn",
    "commit_scn",
];

/// The `source` fields the reader uses have the types bronze writes them with.
fn check_source(source: &StructArray) -> Result<(), String> {
    let want = |names: &[&str], t: DataType| {
        for n in names {
            if let Some(a) = source.column_by_name(n)
                && a.data_type() != &t
            {
                return Err(format!("column `source.{n}` is {}, not {t}", a.data_type()));
            }
        }
        Ok(())
    };
    want(&SOURCE_INTS, DataType::Int64)?;
    want(&SOURCE_TEXTS, DataType::Utf8)
}

/// A row's `source` block ([`check_source`] has checked its types).
fn source_at(source: &StructArray, row: usize) -> Source {
    let int = |name: &str| {
        source
            .column_by_name(name)
            .and_then(|a| a.as_primitive_opt::<Int64Type>())
            .and_then(|a| a.is_valid(row).then(|| a.value(row)))
    };
    let text = |name: &str| {
        source
            .column_by_name(name)
            .and_then(|a| a.as_string_opt::<i32>())
            .and_then(|a| a.is_valid(row).then(|| a.value(row).to_owned()))
    };
    Source {
        ts_ms: int("ts_ms"),
        lsn: int("lsn"),
        sequence: text("sequence"),
        server_id: int("server_id"),
        gtid: text("gtid"),
        file: text("file"),
        pos: int("pos"),
        row: int("row"),
        change_lsn: text("change_lsn"),
        commit_lsn: text("commit_lsn"),
        event_serial_no: int("event_serial_no"),
        scn: text("scn"),
        commit_scn: text("commit_scn"),
        ..Source::default()
    }
}

fn struct_values(st: &StructArray, row: usize) -> Image {
    let mut img = Image::default();
    for (f, a) in st.fields().iter().zip(st.columns()) {
        if f.name() == UNAVAILABLE_FIELD {
            // Mistyped, it says nothing is unavailable.
            let list = a.as_list_opt::<i32>().filter(|_| a.is_valid(row));
            if let Some(list) = list.map(|l| l.value(row))
                && let Some(names) = list.as_string_opt::<i32>()
            {
                img.unavailable = (0..names.len())
                    .filter(|i| names.is_valid(*i))
                    .map(|i| names.value(i).to_owned())
                    .collect::<BTreeSet<_>>();
            }
            continue;
        }
        img.values.insert(f.name().clone(), cell_at(a, f, row));
    }
    for name in &img.unavailable {
        img.values.remove(name);
    }
    img
}

/// A schemaless image: its columns' types are inferred and widened into `columns`.
fn json_values(text: &str, opts: &ReadOptions, columns: &mut Columns) -> Image {
    let mut img = Image::default();
    let Ok(Json::Object(map)) = serde_json::from_str::<Json>(text) else {
        return img;
    };
    for (name, v) in &map {
        if v.as_str() == Some(opts.unavailable_placeholder.as_str()) {
            img.unavailable.insert(name.clone());
            continue;
        }
        let (cell, ty) = infer(v);
        if let Some(ty) = ty {
            // An incompatible mix (a number then a string) widens to text.
            if columns.absorb(name, ty).is_err()
                && let Some((_, t)) = columns.0.iter_mut().find(|(n, _)| n == name)
            {
                *t = ColType::Text;
            }
        } else {
            // A null says nothing of the type: the column is created by the first batch that
            // has a value (it reads NULL until then).
            columns.saw_null(name);
        }
        img.values.insert(name.clone(), cell);
    }
    img
}

/// A time of day; `24:00:00` (PostgreSQL's end of day) stays itself. Decoding refuses other
/// values past midnight, so nothing is wrapped.
fn naive_time(nanos: i64) -> String {
    if nanos == 86_400 * 1_000_000_000 {
        return "24:00:00.000000".into();
    }
    let secs = nanos.div_euclid(1_000_000_000);
    let sub = nanos.rem_euclid(1_000_000_000);
    u32::try_from(secs)
        .ok()
        .and_then(|s| NaiveTime::from_num_seconds_from_midnight_opt(s, sub as u32))
        .map(|t| t.format("%H:%M:%S%.6f").to_string())
        .unwrap_or_else(|| duration_text(nanos))
}

fn timestamp_text(v: i64, unit: TimeUnit, tz: bool) -> String {
    match v {
        i64::MIN => return "-infinity".into(),
        i64::MAX => return "infinity".into(),
        _ => {}
    }
    let (secs, nanos) = match unit {
        TimeUnit::Second => (v, 0),
        TimeUnit::Millisecond => (v.div_euclid(1000), v.rem_euclid(1000) * 1_000_000),
        TimeUnit::Microsecond => (v.div_euclid(1_000_000), v.rem_euclid(1_000_000) * 1000),
        TimeUnit::Nanosecond => (v.div_euclid(1_000_000_000), v.rem_euclid(1_000_000_000)),
    };
    match DateTime::from_timestamp(secs, nanos as u32) {
        Some(d) if (0..=9999).contains(&d.year()) && nanos < 1_000_000_000 => {
            fixed_width_text(&d.naive_utc(), tz)
        }
        Some(d) if tz => d.format("%Y-%m-%d %H:%M:%S%.6f+00:00").to_string(),
        Some(d) => d.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
        None => String::new(),
    }
}

/// `YYYY-MM-DD HH:MM:SS.ffffff[+00:00]` written digit by digit: what `format` gives for years
/// 0–9999, without parsing a format string per value (every staged row has timestamps).
fn fixed_width_text(d: &chrono::NaiveDateTime, tz: bool) -> String {
    use chrono::Timelike;
    fn digits(out: &mut String, v: u32, width: u32) {
        for i in (0..width).rev() {
            out.push(char::from(b'0' + (v / 10u32.pow(i) % 10) as u8));
        }
    }
    let mut out = String::with_capacity(32);
    digits(&mut out, d.year() as u32, 4);
    out.push('-');
    digits(&mut out, d.month(), 2);
    out.push('-');
    digits(&mut out, d.day(), 2);
    out.push(' ');
    digits(&mut out, d.hour(), 2);
    out.push(':');
    digits(&mut out, d.minute(), 2);
    out.push(':');
    digits(&mut out, d.second(), 2);
    out.push('.');
    digits(&mut out, d.nanosecond() / 1000, 6);
    if tz {
        out.push_str("+00:00");
    }
    out
}

/// A timestamp in milliseconds as the warehouse's `timestamptz` text.
pub fn ts_ms_text(ms: i64) -> String {
    timestamp_text(ms, TimeUnit::Millisecond, true)
}

fn decimal_text(v: i128, scale: i8) -> String {
    if scale <= 0 {
        let mut s = v.to_string();
        if v != 0 {
            s.extend(std::iter::repeat_n('0', usize::from(scale.unsigned_abs())));
        }
        return s;
    }
    let digits = v.unsigned_abs().to_string();
    let scale = usize::from(scale.unsigned_abs());
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{}{int}.{frac}", if v < 0 { "-" } else { "" })
}

/// One value of an Arrow array as a cell.
pub fn cell_at(a: &ArrayRef, field: &Field, row: usize) -> Cell {
    if a.is_null(row) {
        return Cell::Null;
    }
    let ty = ColType::from_arrow(field);
    match a.data_type() {
        DataType::Boolean => Cell::Bool(a.as_boolean().value(row)),
        DataType::Int8 => Cell::Int(i64::from(a.as_primitive::<Int8Type>().value(row))),
        DataType::Int16 => Cell::Int(i64::from(a.as_primitive::<Int16Type>().value(row))),
        DataType::Int32 => Cell::Int(i64::from(a.as_primitive::<Int32Type>().value(row))),
        DataType::Int64 => Cell::Int(a.as_primitive::<Int64Type>().value(row)),
        DataType::Float32 => Cell::Float(f64::from(a.as_primitive::<Float32Type>().value(row))),
        DataType::Float64 => Cell::Float(a.as_primitive::<Float64Type>().value(row)),
        DataType::Utf8 => {
            let s = a.as_string::<i32>().value(row);
            Cell::Text(match ty {
                ColType::Json => canonical_json(s),
                ColType::Uuid => s.to_ascii_lowercase(),
                ColType::Numeric | ColType::Decimal { .. } => canonical_decimal(s),
                _ => s.to_owned(),
            })
        }
        DataType::LargeUtf8 => Cell::Text(a.as_string::<i64>().value(row).to_owned()),
        DataType::Binary => Cell::Bytes(a.as_binary::<i32>().value(row).to_vec()),
        DataType::LargeBinary => Cell::Bytes(a.as_binary::<i64>().value(row).to_vec()),
        DataType::Decimal128(_, s) => Cell::Text(canonical_decimal(&decimal_text(
            a.as_primitive::<Decimal128Type>().value(row),
            *s,
        ))),
        DataType::Date32 => {
            let days = a.as_primitive::<Date32Type>().value(row);
            Cell::Text(
                NaiveDate::from_epoch_days(days)
                    .map(|d| d.format("%Y-%m-%d").to_string())
                    .unwrap_or_default(),
            )
        }
        DataType::Time32(TimeUnit::Second) => Cell::Text(naive_time(
            i64::from(a.as_primitive::<Time32SecondType>().value(row)) * 1_000_000_000,
        )),
        DataType::Time32(_) => Cell::Text(naive_time(
            i64::from(a.as_primitive::<Time32MillisecondType>().value(row)) * 1_000_000,
        )),
        DataType::Time64(TimeUnit::Microsecond) => Cell::Text(naive_time(
            a.as_primitive::<Time64MicrosecondType>().value(row) * 1000,
        )),
        DataType::Time64(_) => Cell::Text(naive_time(
            a.as_primitive::<Time64NanosecondType>().value(row),
        )),
        DataType::Duration(unit) => {
            let nanos = match unit {
                TimeUnit::Second => a
                    .as_primitive::<DurationSecondType>()
                    .value(row)
                    .saturating_mul(1_000_000_000),
                TimeUnit::Millisecond => a
                    .as_primitive::<DurationMillisecondType>()
                    .value(row)
                    .saturating_mul(1_000_000),
                TimeUnit::Microsecond => a
                    .as_primitive::<DurationMicrosecondType>()
                    .value(row)
                    .saturating_mul(1_000),
                TimeUnit::Nanosecond => a.as_primitive::<DurationNanosecondType>().value(row),
            };
            Cell::Text(duration_text(nanos))
        }
        DataType::Timestamp(unit, tz) => {
            let v = match unit {
                TimeUnit::Second => a.as_primitive::<TimestampSecondType>().value(row),
                TimeUnit::Millisecond => a.as_primitive::<TimestampMillisecondType>().value(row),
                TimeUnit::Microsecond => a.as_primitive::<TimestampMicrosecondType>().value(row),
                TimeUnit::Nanosecond => a.as_primitive::<TimestampNanosecondType>().value(row),
            };
            Cell::Text(timestamp_text(v, *unit, tz.is_some()))
        }
        _ => Cell::Text(json_at(a, row).to_string()),
    }
}

/// Nested values (lists, structs, maps) as JSON.
fn json_at(a: &ArrayRef, row: usize) -> Json {
    if a.is_null(row) {
        return Json::Null;
    }
    match a.data_type() {
        DataType::List(f) => {
            let items = a.as_list::<i32>().value(row);
            Json::Array((0..items.len()).map(|i| leaf_json(&items, f, i)).collect())
        }
        DataType::LargeList(f) => {
            let items = a.as_list::<i64>().value(row);
            Json::Array((0..items.len()).map(|i| leaf_json(&items, f, i)).collect())
        }
        DataType::Struct(fields) => {
            let st = a.as_struct();
            Json::Object(
                fields
                    .iter()
                    .zip(st.columns())
                    .map(|(f, c)| (f.name().clone(), leaf_json(c, f, row)))
                    .collect(),
            )
        }
        DataType::Map(_, _) => {
            let entries = a.as_map().value(row);
            let (k, v) = (entries.column(0), entries.column(1));
            let (kf, vf) = (entries.fields()[0].clone(), entries.fields()[1].clone());
            Json::Object(
                (0..entries.len())
                    .map(|i| {
                        let key = match cell_at(k, &kf, i) {
                            Cell::Text(t) => t,
                            c => c.to_text(),
                        };
                        (key, leaf_json(v, &vf, i))
                    })
                    .collect(),
            )
        }
        _ => Json::Null,
    }
}

fn leaf_json(a: &ArrayRef, f: &Arc<Field>, i: usize) -> Json {
    match a.data_type() {
        DataType::List(_) | DataType::LargeList(_) | DataType::Struct(_) | DataType::Map(..) => {
            json_at(a, i)
        }
        _ => match cell_at(a, f, i) {
            Cell::Text(t) if ColType::from_arrow(f) == ColType::Json => {
                serde_json::from_str(&t).unwrap_or(Json::String(t))
            }
            c => match c {
                Cell::Null => Json::Null,
                Cell::Bool(b) => Json::Bool(b),
                Cell::Int(i) => Json::from(i),
                Cell::Float(x) => serde_json::Number::from_f64(x).map_or(Json::Null, Json::Number),
                Cell::Text(t) => Json::String(t),
                Cell::Bytes(b) => Json::String(c_b64(&b)),
            },
        },
    }
}

fn c_b64(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn commit(start: i64, end: i64) -> CommitRecord {
        tidemark_lake::testing::record("t", 0, start, end, vec![])
    }

    #[tokio::test]
    async fn records_that_land_after_an_empty_listing_are_not_skipped() {
        let (store, root) = (InMemory::new(), Path::from("bronze"));
        for (start, end) in [(0, 5), (6, 6), (7, 9)] {
            commit_log::create(&store, &root, &commit(start, end))
                .await
                .unwrap();
        }
        // A listing from 6 taken before 6..=6 and 7..=9 landed found nothing: the newest
        // record now starts after 6, so it alone would skip offset 6.
        let held = after_empty_listing(&store, &root, ("t", 0), 6)
            .await
            .unwrap();
        assert_eq!(held, None, "a stale listing is listed again");
        let held = after_empty_listing(&store, &root, ("t", 0), 8)
            .await
            .unwrap();
        assert_eq!(
            held.map(|r| r.len()),
            Some(1),
            "8 is inside the last record"
        );
        let read = records_from(&store, &root, "t", 0, 6, 10).await.unwrap();
        let ranges: Vec<_> = read.iter().map(|r| (r.start, r.end)).collect();
        assert_eq!(ranges, [(6, 6), (7, 9)]);
        assert!(
            after_empty_listing(&store, &root, ("t", 0), 10)
                .await
                .unwrap()
                .is_some_and(|r| r.is_empty())
        );
    }

    #[test]
    fn decimals_render_exactly() {
        assert_eq!(decimal_text(12345, 2), "123.45");
        assert_eq!(decimal_text(-5, 3), "-0.005");
        assert_eq!(decimal_text(7, 0), "7");
        assert_eq!(decimal_text(7, -2), "700");
    }

    #[test]
    fn times_of_day_keep_the_end_of_day() {
        assert_eq!(naive_time(86_400 * 1_000_000_000), "24:00:00.000000");
        assert_eq!(naive_time(45_296_500_000_000), "12:34:56.500000");
    }

    #[test]
    fn timestamps_render_for_both_backends() {
        assert_eq!(
            ts_ms_text(1_700_000_000_123),
            "2023-11-14 22:13:20.123000+00:00"
        );
        assert_eq!(
            timestamp_text(-1, TimeUnit::Microsecond, false),
            "1969-12-31 23:59:59.999999"
        );
        assert_eq!(
            timestamp_text(i64::MAX, TimeUnit::Microsecond, true),
            "infinity"
        );
    }

    #[test]
    fn fixed_width_timestamps_match_the_formatted_ones() {
        for v in [
            0i64,
            1,
            -1,
            1_700_000_000_123_456,
            253_402_300_799_999_999,
            -62_135_596_800_000_000,
        ] {
            for tz in [false, true] {
                let d = DateTime::from_timestamp(
                    v.div_euclid(1_000_000),
                    (v.rem_euclid(1_000_000) * 1000) as u32,
                )
                .unwrap();
                let want = if tz {
                    d.format("%Y-%m-%d %H:%M:%S%.6f+00:00").to_string()
                } else {
                    d.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string()
                };
                assert_eq!(timestamp_text(v, TimeUnit::Microsecond, tz), want, "{v}");
            }
        }
    }
}
