//! Record batch → Parquet file bytes: zstd, statistics for pruning, the Arrow schema embedded
//! (readers recover the exact types), row groups capped by bytes.

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
    let rows = batch.num_rows().max(1);
    let per_row = (batch.get_array_memory_size() / rows).max(1);
    let rows_per_group = (ROW_GROUP_BYTES / per_row).clamp(1024, 1 << 20);
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(zstd_level)?))
        .set_max_row_group_size(rows_per_group)
        .set_created_by(format!("tidemark {}", env!("CARGO_PKG_VERSION")))
        .build();
    let mut out = Vec::with_capacity(batch.get_array_memory_size() / 4);
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(props))?;
    // The schema's metadata (Debezium/Avro schema text, fingerprint) as plain key-value pairs,
    // so any Parquet reader sees it, not only Arrow ones.
    let schema = batch.schema();
    let mut kv: Vec<_> = schema.metadata().iter().collect();
    kv.sort(); // deterministic bytes: a retried flush writes the same file
    for (k, v) in kv {
        writer.append_key_value_metadata(KeyValue::new(k.clone(), v.clone()));
    }
    writer.write(batch)?;
    writer.close()?;
    Ok(Bytes::from(out))
}
