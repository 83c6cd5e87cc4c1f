//! Arrow encoding of batches and schemas, the schema check for appends, and the content digest
//! that feeds the replica checksum.

use std::io::Cursor;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use arrow::row::{RowConverter, SortField};
use xxhash_rust::xxh3::Xxh3;

/// Encode one batch as a complete Arrow IPC stream (schema message, batch, end-of-stream).
pub(crate) fn encode_batch(batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
    let mut w = StreamWriter::try_new(Vec::new(), batch.schema_ref())?;
    w.write(batch)?;
    w.finish()?;
    w.into_inner()
}

/// Decode an IPC stream that must hold exactly one batch.
pub(crate) fn decode_batch(bytes: &[u8]) -> Result<RecordBatch, ArrowError> {
    let mut r = StreamReader::try_new(Cursor::new(bytes), None)?;
    let batch = r
        .next()
        .ok_or_else(|| ArrowError::IpcError("IPC stream holds no record batch".into()))??;
    if r.next().is_some() {
        return Err(ArrowError::IpcError(
            "IPC stream holds more than one record batch".into(),
        ));
    }
    Ok(batch)
}

/// Encode a schema as an IPC stream with no batches.
pub(crate) fn encode_schema(schema: &Schema) -> Result<Vec<u8>, ArrowError> {
    let mut w = StreamWriter::try_new(Vec::new(), schema)?;
    w.finish()?;
    w.into_inner()
}

/// Decode a schema written by [`encode_schema`].
pub(crate) fn decode_schema(bytes: &[u8]) -> Result<SchemaRef, ArrowError> {
    Ok(StreamReader::try_new(Cursor::new(bytes), None)?.schema())
}

/// Check `batch` against the chunk schema and re-label it with the chunk's `SchemaRef`.
///
/// Column count, names (in order) and data types must match exactly. Field and schema metadata
/// are ignored. A column the chunk declares non-nullable must hold no nulls, whatever the
/// batch's own field says. On mismatch returns a message naming the columns.
pub(crate) fn conform(schema: &SchemaRef, batch: RecordBatch) -> Result<RecordBatch, String> {
    if std::sync::Arc::ptr_eq(schema, batch.schema_ref()) {
        return Ok(batch);
    }
    let want = schema.fields();
    let got = batch.schema_ref().fields();
    let mut problems = Vec::new();
    if want.len() != got.len() {
        problems.push(format!(
            "expected {} columns, got {}",
            want.len(),
            got.len()
        ));
    }
    for (i, (w, g)) in want.iter().zip(got.iter()).enumerate() {
        if w.name() != g.name() || w.data_type() != g.data_type() {
            problems.push(format!(
                "column {i}: expected '{}' {}, got '{}' {}",
                w.name(),
                w.data_type(),
                g.name(),
                g.data_type()
            ));
        }
    }
    if !problems.is_empty() {
        return Err(format!(
            "{}; expected columns [{}], got [{}]",
            problems.join("; "),
            describe(schema),
            describe(batch.schema_ref())
        ));
    }
    let opts = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(schema.clone(), batch.columns().to_vec(), &opts)
        .map_err(|e| e.to_string())
}

fn describe(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| {
            format!(
                "{}: {}{}",
                f.name(),
                f.data_type(),
                if f.is_nullable() { "" } else { " not null" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Digest of a batch's logical content (values and nulls, row by row), independent of how the
/// arrays happen to be laid out in memory (slices, padding, bytes under nulls). Two replicas that
/// got the same rows through different paths (client append, catch-up, re-encoded IPC) compute
/// the same digest. Uses Arrow's row format; for the rare types it does not support, falls back
/// to hashing the IPC bytes.
pub(crate) fn content_digest(batch: &RecordBatch, ipc: &[u8]) -> u64 {
    let fields: Vec<SortField> = batch
        .schema_ref()
        .fields()
        .iter()
        .map(|f| SortField::new(f.data_type().clone()))
        .collect();
    if !fields.is_empty()
        && RowConverter::supports_fields(&fields)
        && let Ok(conv) = RowConverter::new(fields)
        && let Ok(rows) = conv.convert_columns(batch.columns())
    {
        let mut h = Xxh3::new();
        h.update(b"shoal-rows-v1");
        h.update(&(batch.num_rows() as u64).to_le_bytes());
        for row in rows.iter() {
            let b = row.as_ref();
            h.update(&(b.len() as u64).to_le_bytes());
            h.update(b);
        }
        return h.digest();
    }
    let mut h = Xxh3::new();
    h.update(b"shoal-ipc-v1");
    h.update(ipc);
    h.digest()
}
