//! Record batches → Parquet file bytes, one batch at a time: zstd, statistics for pruning, the
//! Arrow schema embedded (readers recover the exact types), row groups capped by bytes.

use arrow_array::RecordBatch;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

/// Target in-memory size of one row group.
pub const ROW_GROUP_BYTES: usize = 32 * 1024 * 1024;

/// Encodes `batch` as one Parquet file.
pub fn to_parquet(batch: &RecordBatch, zstd_level: i32) -> Result<Bytes, ParquetError> {
    let mut file = ParquetFile::new(batch, zstd_level)?;
    file.write(batch)?;
    file.finish()
}

/// One Parquet file written batch by batch: a large file need not be one Arrow batch in memory.
pub struct ParquetFile {
    writer: ArrowWriter<Vec<u8>>,
}

impl std::fmt::Debug for ParquetFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetFile").finish_non_exhaustive()
    }
}

impl ParquetFile {
    /// A file with `first`'s schema (and its metadata); row groups sized from its rows.
    pub fn new(first: &RecordBatch, zstd_level: i32) -> Result<ParquetFile, ParquetError> {
        let rows = first.num_rows().max(1);
        let per_row = (first.get_array_memory_size() / rows).max(1);
        let rows_per_group = (ROW_GROUP_BYTES / per_row).clamp(1024, 1 << 20);
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(zstd_level)?))
            .set_max_row_group_size(rows_per_group)
            .set_created_by(format!("tidemark {}", env!("CARGO_PKG_VERSION")))
            .build();
        let out = Vec::with_capacity(first.get_array_memory_size() / 4);
        let mut writer = ArrowWriter::try_new(out, first.schema(), Some(props))?;
        // The schema's metadata (Debezium/Avro schema text, fingerprint) as plain key-value
        // pairs, so any Parquet reader sees it, not only Arrow ones.
        let schema = first.schema();
        let mut kv: Vec<_> = schema.metadata().iter().collect();
        kv.sort(); // deterministic bytes: a retried flush writes the same file
        for (k, v) in kv {
            writer.append_key_value_metadata(KeyValue::new(k.clone(), v.clone()));
        }
        Ok(ParquetFile { writer })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), ParquetError> {
        self.writer.write(batch)
    }

    /// Ends the row group in progress and hands over every byte written so far: a file that
    /// streams while many others do keeps no row group in memory between calls.
    pub fn take_row_groups(&mut self) -> Result<Vec<u8>, ParquetError> {
        self.writer.flush()?;
        Ok(std::mem::take(self.writer.inner_mut()))
    }

    /// Ends the row group in progress once it holds [`ROW_GROUP_BYTES`], and hands over the
    /// bytes written so far (whole row groups), so a large file streams out while only one row
    /// group is in memory. `finish` then returns the rest.
    pub fn take_written(&mut self) -> Result<Vec<u8>, ParquetError> {
        if self.writer.in_progress_size() >= ROW_GROUP_BYTES {
            self.writer.flush()?;
        }
        Ok(std::mem::take(self.writer.inner_mut()))
    }

    /// The file's bytes (`into_inner` writes the footer: calling `finish` first would write it
    /// twice).
    pub fn finish(self) -> Result<Bytes, ParquetError> {
        Ok(Bytes::from(self.writer.into_inner()?))
    }
}
