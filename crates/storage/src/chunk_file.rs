//! Chunk files (storage format 2): the flushed records of a replica as one immutable Parquet
//! file per flush run, under `f/`, named after the lsn range it holds
//! (`{first_lsn:020}-{last_lsn:020}.parquet`; `-<n>` is added before `.parquet` if a failed
//! flush of the same lsns left a file of that name, which is never replaced).
//!
//! Rows are sorted by the store's sort key (ascending, nulls first), stably: rows with equal keys
//! keep their lsn order. ZSTD pages, row groups of [`ROW_GROUP_ROWS`] rows, page-level
//! statistics, dictionary encoding for string and binary columns, delta encoding for integer
//! and temporal ones, the sort key as Parquet `sorting_columns`, and the key-value metadata
//! `shoal.format=2`, `shoal.first_lsn`, `shoal.last_lsn`, `shoal.rows`, `shoal.sort_key`. The
//! Arrow schema is embedded (the writer's `ARROW:schema`), so a reader gets the chunk's types
//! back (e.g. timestamps with their unit).
//!
//! A compaction writes the same format, batch by batch as its merge produces rows
//! ([`ChunkWriter`]), named after the union of its inputs' lsn ranges.
//!
//! A file is created whole: written to `name.tmp`, fsync'd, renamed, directory fsync'd. Files
//! are listed in the MANIFEST; one that is not (a flush or compaction that crashed before its
//! commit, or the inputs of one that crashed after it) is an orphan and deleted at open.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, UInt64Array};
use arrow::compute::{
    SortColumn, SortOptions, concat_batches, interleave_record_batch, lexsort_to_indices,
    take_record_batch,
};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::row::{OwnedRow, RowConverter, Rows, SortField};
use arrow::util::display::array_value_to_string;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::codec;
use crate::error::{StorageError, arrow_err, io_err};
use crate::fsutil::{self, TMP_SUFFIX};
use crate::manifest::{ColumnRange, FileMeta};
use crate::memory::{Charge, held_bytes};
use crate::meta::STORE_FORMAT_V2;
use crate::sort_key::{KeepFilter, SortKey};

/// Rows per Parquet row group.
pub(crate) const ROW_GROUP_ROWS: usize = 128 * 1024;
/// Rows per batch when a file is read back.
const READ_BATCH_ROWS: usize = 64 * 1024;
/// ZSTD level of the pages.
const ZSTD_LEVEL: i32 = 3;

/// The file name for records `first..=last`.
pub(crate) fn file_name(first: u64, last: u64) -> String {
    format!("{first:020}-{last:020}.parquet")
}

pub(crate) fn parquet_err(
    what: &'static str,
    path: &Path,
) -> impl FnOnce(parquet::errors::ParquetError) -> StorageError {
    let path = path.to_path_buf();
    move |e| StorageError::Corrupt {
        path,
        offset: 0,
        reason: format!("{what}: {e}"),
    }
}

/// Check that every sort key column is in the schema; returns their indices.
pub(crate) fn key_columns(
    dir: &Path,
    schema: &SchemaRef,
    sort_key: &[String],
) -> Result<Vec<usize>, StorageError> {
    sort_key
        .iter()
        .map(|name| {
            schema
                .index_of(name)
                .map_err(|_| StorageError::InvalidOptions {
                    dir: dir.to_path_buf(),
                    detail: format!("sort key column '{name}' is not in the chunk schema"),
                })
        })
        .collect()
}

/// The order of every sort key column: ascending, nulls first.
pub(crate) const KEY_ORDER: SortOptions = SortOptions {
    descending: false,
    nulls_first: true,
};

/// Encodes the columns `keys` of `schema` in Arrow's row format, where rows compare as the key
/// orders them; for `what` needs that (a merge, dropping duplicates), which fails with
/// [`StorageError::InvalidOptions`] for a column type the format lacks.
pub(crate) fn key_converter(
    dir: &Path,
    schema: &SchemaRef,
    keys: &[usize],
    what: &str,
) -> Result<RowConverter, StorageError> {
    let fields: Vec<SortField> = keys
        .iter()
        .map(|&i| SortField::new_with_options(schema.field(i).data_type().clone(), KEY_ORDER))
        .collect();
    if !RowConverter::supports_fields(&fields) {
        return Err(StorageError::InvalidOptions {
            dir: dir.to_path_buf(),
            detail: format!(
                "{what} compares keys in Arrow's row format, which lacks a sort key column's type"
            ),
        });
    }
    RowConverter::new(fields).map_err(arrow_err("sort key", dir))
}

/// Sort `batch` by the columns `keys` (ascending, nulls first), stably: rows with equal keys
/// keep their order. The keys are encoded in Arrow's row format once, then the row numbers are
/// sorted by comparing those bytes (a stable merge sort).
pub(crate) fn sort(
    batch: &RecordBatch,
    keys: &[usize],
) -> Result<RecordBatch, arrow::error::ArrowError> {
    if keys.is_empty() || batch.num_rows() < 2 {
        return Ok(batch.clone());
    }
    let opts = KEY_ORDER;
    let fields: Vec<SortField> = keys
        .iter()
        .map(|&i| SortField::new_with_options(batch.schema().field(i).data_type().clone(), opts))
        .collect();
    if RowConverter::supports_fields(&fields) {
        let conv = RowConverter::new(fields)?;
        let cols: Vec<ArrayRef> = keys.iter().map(|&i| batch.column(i).clone()).collect();
        let rows = conv.convert_columns(&cols)?;
        let mut order: Vec<(&[u8], u64)> = (0..batch.num_rows())
            .map(|i| (rows.row(i).data(), i as u64))
            .collect();
        // Stable: rows with equal keys keep their order.
        order.sort_by(|a, b| a.0.cmp(b.0));
        take_record_batch(
            batch,
            &UInt64Array::from_iter_values(order.into_iter().map(|o| o.1)),
        )
    } else {
        // Types the row format lacks: lexicographic sort with the row number as last key.
        let mut cols: Vec<SortColumn> = keys
            .iter()
            .map(|&i| SortColumn {
                values: batch.column(i).clone(),
                options: Some(opts),
            })
            .collect();
        cols.push(SortColumn {
            values: Arc::new(UInt64Array::from_iter_values(0..batch.num_rows() as u64)),
            options: Some(opts),
        });
        take_record_batch(batch, &lexsort_to_indices(&cols, None)?)
    }
}

fn properties(schema: &SchemaRef, keys: &[usize], kv: Vec<KeyValue>) -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(ZSTD_LEVEL).unwrap_or_default(),
        ))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_key_value_metadata(Some(kv))
        .set_sorting_columns(Some(
            keys.iter()
                .map(|&i| SortingColumn {
                    column_idx: i as i32,
                    descending: false,
                    nulls_first: true,
                })
                .collect(),
        ));
    for f in schema.fields() {
        let col = ColumnPath::from(f.name().as_str());
        match f.data_type() {
            DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::Dictionary(_, _) => {
                b = b.set_column_dictionary_enabled(col, true);
            }
            DataType::Int32
            | DataType::Int64
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Date32
            | DataType::Date64
            | DataType::Timestamp(_, _)
            | DataType::Time32(_)
            | DataType::Time64(_) => {
                b = b
                    .set_column_dictionary_enabled(col.clone(), false)
                    .set_column_encoding(col, Encoding::DELTA_BINARY_PACKED);
            }
            _ => b = b.set_column_dictionary_enabled(col, false),
        }
    }
    b.build()
}

/// The smallest and largest non-null value of each column, over the batches added.
struct ColumnRanges {
    columns: Vec<ColumnTracker>,
}

struct ColumnTracker {
    name: String,
    /// `None` for a type Arrow's row format lacks (no range is kept).
    conv: Option<RowConverter>,
    min: Option<(OwnedRow, String)>,
    max: Option<(OwnedRow, String)>,
    nulls: u64,
}

impl ColumnRanges {
    fn new(schema: &SchemaRef) -> Self {
        let columns = schema
            .fields()
            .iter()
            .map(|f| ColumnTracker {
                name: f.name().clone(),
                conv: RowConverter::new(vec![SortField::new(f.data_type().clone())]).ok(),
                min: None,
                max: None,
                nulls: 0,
            })
            .collect();
        ColumnRanges { columns }
    }

    fn add(&mut self, batch: &RecordBatch) {
        for (c, col) in self.columns.iter_mut().zip(batch.columns()) {
            c.nulls += col.null_count() as u64;
            let Some(rows) = c
                .conv
                .as_ref()
                .and_then(|conv| conv.convert_columns(std::slice::from_ref(col)).ok())
            else {
                continue;
            };
            let (mut lo, mut hi): (Option<usize>, Option<usize>) = (None, None);
            for i in (0..col.len()).filter(|&i| col.is_valid(i)) {
                if lo.is_none_or(|l| rows.row(i) < rows.row(l)) {
                    lo = Some(i);
                }
                if hi.is_none_or(|h| rows.row(i) > rows.row(h)) {
                    hi = Some(i);
                }
            }
            if let Some(i) = lo
                && c.min.as_ref().is_none_or(|(m, _)| rows.row(i) < m.row())
            {
                c.min = array_value_to_string(col, i)
                    .ok()
                    .map(|s| (rows.row(i).owned(), s));
            }
            if let Some(i) = hi
                && c.max.as_ref().is_none_or(|(m, _)| rows.row(i) > m.row())
            {
                c.max = array_value_to_string(col, i)
                    .ok()
                    .map(|s| (rows.row(i).owned(), s));
            }
        }
    }

    fn finish(self) -> Vec<ColumnRange> {
        self.columns
            .into_iter()
            .map(|c| ColumnRange {
                name: c.name,
                min: c.min.map(|m| m.1),
                max: c.max.map(|m| m.1),
                nulls: c.nulls,
            })
            .collect()
    }
}

/// A chunk file being written: rows go in already sorted, batch by batch; [`ChunkWriter::finish`]
/// makes it durable under its final name.
pub(crate) struct ChunkWriter {
    name: String,
    tmp: PathBuf,
    dst: PathBuf,
    writer: ArrowWriter<File>,
    ranges: ColumnRanges,
    rows: u64,
    first: u64,
    last: u64,
    level: u32,
    sort_key: Vec<String>,
}

impl ChunkWriter {
    /// Start the file for records `first..=last` (a compacted one: `level` > 0) in `files_dir`.
    pub(crate) fn create(
        files_dir: &Path,
        schema: &SchemaRef,
        sort_key: &SortKey,
        (first, last): (u64, u64),
        level: u32,
    ) -> Result<Self, StorageError> {
        let keys = key_columns(files_dir, schema, &sort_key.columns)?;
        // A file of that name exists only if an earlier flush or compaction of the same lsns
        // failed after its MANIFEST was written (that MANIFEST may be the one on disk): never
        // replace it.
        let mut name = file_name(first, last);
        let mut retry = 0;
        while files_dir.join(&name).exists() {
            retry += 1;
            name = format!("{first:020}-{last:020}-{retry}.parquet");
        }
        let tmp = files_dir.join(format!("{name}{TMP_SUFFIX}"));
        let dst = files_dir.join(&name);
        let mut kv = vec![
            KeyValue::new("shoal.format".into(), STORE_FORMAT_V2.to_string()),
            KeyValue::new("shoal.first_lsn".into(), first.to_string()),
            KeyValue::new("shoal.last_lsn".into(), last.to_string()),
            KeyValue::new("shoal.sort_key".into(), sort_key.columns.join(",")),
        ];
        // Only when rows were dropped, so files of tables keeping every row stay as before.
        if sort_key.drops_duplicates() {
            kv.push(KeyValue::new(
                "shoal.keep_duplicates".into(),
                sort_key.keep.name().to_owned(),
            ));
        }
        let f = File::create(&tmp).map_err(io_err("create", &tmp))?;
        let writer = ArrowWriter::try_new(f, schema.clone(), Some(properties(schema, &keys, kv)))
            .map_err(parquet_err("start chunk file", &tmp))?;
        Ok(ChunkWriter {
            name,
            tmp,
            dst,
            writer,
            ranges: ColumnRanges::new(schema),
            rows: 0,
            first,
            last,
            level,
            sort_key: sort_key.columns.clone(),
        })
    }

    /// Append rows that sort after (or equal to) every row written so far.
    pub(crate) fn write(&mut self, batch: &RecordBatch) -> Result<(), StorageError> {
        self.ranges.add(batch);
        self.rows += batch.num_rows() as u64;
        self.writer
            .write(batch)
            .map_err(parquet_err("write chunk file", &self.tmp))
    }

    /// Bytes the Parquet writer holds for the row group in progress.
    pub(crate) fn buffered_bytes(&self) -> u64 {
        self.writer.memory_size() as u64
    }

    /// Close the file, fsync it, rename it into place and fsync the directory.
    pub(crate) fn finish(mut self) -> Result<FileMeta, StorageError> {
        self.writer
            .append_key_value_metadata(KeyValue::new("shoal.rows".into(), self.rows.to_string()));
        self.writer
            .close()
            .map_err(parquet_err("finish chunk file", &self.tmp))?;
        File::open(&self.tmp)
            .and_then(|f| f.sync_all())
            .map_err(io_err("fsync", &self.tmp))?;
        std::fs::rename(&self.tmp, &self.dst).map_err(io_err("rename into place", &self.dst))?;
        if let Some(dir) = self.dst.parent() {
            fsutil::sync_dir(dir)?;
        }
        let bytes = std::fs::metadata(&self.dst)
            .map_err(io_err("stat", &self.dst))?
            .len();
        Ok(FileMeta {
            name: self.name,
            first_lsn: self.first,
            last_lsn: self.last,
            rows: self.rows,
            bytes,
            sort_key: self.sort_key,
            columns: self.ranges.finish(),
            level: self.level,
        })
    }
}

/// Write the rows of `batches` (records `first..=last`, in lsn order) as one sorted level-0
/// chunk file in `files_dir`, durably, only the rows `sort_key` keeps. `None` if they hold no
/// rows (nothing is written).
///
/// No sorted copy of all the rows is made: their keys are encoded in Arrow's row format, the
/// `(batch, row)` pairs sorted by them, and the file written [`WRITE_BATCH_ROWS`] rows at a
/// time gathered from `batches`. That working set (keys, order, the writer's row group in
/// progress) is counted in `working` while it is held.
pub(crate) fn write(
    files_dir: &Path,
    schema: &SchemaRef,
    sort_key: &SortKey,
    batches: &[RecordBatch],
    (first, last): (u64, u64),
    working: &mut Charge,
) -> Result<Option<FileMeta>, StorageError> {
    if batches.iter().all(|b| b.num_rows() == 0) {
        return Ok(None);
    }
    let keys = key_columns(files_dir, schema, &sort_key.columns)?;
    let order = key_order(files_dir, batches, &keys)?;
    match &order {
        KeyOrder::Lsn => {}
        KeyOrder::Pairs(_, key_bytes) => working.add(*key_bytes),
        KeyOrder::Sorted(all) => working.add(held_bytes(all)),
    }
    let mut w = ChunkWriter::create(files_dir, schema, sort_key, (first, last), 0)?;
    let mut keep = KeepFilter::new(files_dir, schema, sort_key)?;
    let held = working.bytes();
    let mut sink = |b: RecordBatch| {
        w.write(&b)?;
        working.set(held + w.buffered_bytes());
        Ok(())
    };
    match order {
        KeyOrder::Lsn => {
            for b in batches {
                keep.push(b, &mut sink)?;
            }
        }
        KeyOrder::Pairs(order, _) => {
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            let mut pairs = Vec::with_capacity(WRITE_BATCH_ROWS);
            for piece in order.chunks(WRITE_BATCH_ROWS) {
                pairs.clear();
                pairs.extend(piece.iter().map(|&(b, r)| (b as usize, r as usize)));
                let b = interleave_record_batch(&refs, &pairs)
                    .map_err(arrow_err("gather sorted rows", files_dir))?;
                keep.push(&b, &mut sink)?;
            }
        }
        KeyOrder::Sorted(all) => keep.push(&all, &mut sink)?,
    }
    keep.finish(&mut sink)?;
    w.finish().map(Some)
}

/// Rows per batch a flush gathers and writes.
const WRITE_BATCH_ROWS: usize = 64 * 1024;

/// How a flush's rows are put in key order.
enum KeyOrder {
    /// No sort key: the batches as they are.
    Lsn,
    /// `(batch, row)` in key order, and the bytes the sort held (keys and order).
    Pairs(Vec<(u32, u32)>, u64),
    /// A key type Arrow's row format lacks: all rows sorted into one batch.
    Sorted(RecordBatch),
}

/// The order of the rows of `batches` by the columns `keys`, stably (equal keys keep their lsn
/// order).
fn key_order(
    dir: &Path,
    batches: &[RecordBatch],
    keys: &[usize],
) -> Result<KeyOrder, StorageError> {
    let Some(schema) = batches.first().map(RecordBatch::schema) else {
        return Ok(KeyOrder::Lsn);
    };
    if keys.is_empty() {
        return Ok(KeyOrder::Lsn);
    }
    let Ok(conv) = key_converter(dir, &schema, keys, "sorting a flush") else {
        let all =
            concat_batches(&schema, batches).map_err(arrow_err("concatenate batches", dir))?;
        return sort(&all, keys)
            .map(KeyOrder::Sorted)
            .map_err(arrow_err("sort rows", dir));
    };
    let rows = batches
        .iter()
        .map(|b| {
            let cols: Vec<ArrayRef> = keys.iter().map(|&i| b.column(i).clone()).collect();
            conv.convert_columns(&cols)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(arrow_err("sort key", dir))?;
    let too_big = |_| StorageError::Failed {
        dir: dir.to_path_buf(),
        reason: "a flush holds more than 2^32 batches or rows in one".into(),
    };
    let mut order = Vec::with_capacity(rows.iter().map(Rows::num_rows).sum());
    for (b, r) in rows.iter().enumerate() {
        let b = u32::try_from(b).map_err(too_big)?;
        for i in 0..r.num_rows() {
            order.push((b, u32::try_from(i).map_err(too_big)?));
        }
    }
    // Stable: rows with equal keys keep their order.
    order.sort_by(|&(ab, ar), &(bb, br)| {
        rows[ab as usize]
            .row(ar as usize)
            .cmp(&rows[bb as usize].row(br as usize))
    });
    let key_bytes = rows.iter().map(|r| r.size() as u64).sum::<u64>()
        + (order.capacity() * std::mem::size_of::<(u32, u32)>()) as u64;
    Ok(KeyOrder::Pairs(order, key_bytes))
}

/// `batch` sorted by the columns named `columns` (see [`sort`]).
pub(crate) fn sort_by(
    dir: &Path,
    batch: &RecordBatch,
    schema: &SchemaRef,
    columns: &[String],
) -> Result<RecordBatch, StorageError> {
    let keys = key_columns(dir, schema, columns)?;
    sort(batch, &keys).map_err(arrow_err("sort rows", dir))
}

/// The batches of an open chunk file, with the chunk's schema, `batch_rows` rows at a time.
pub(crate) fn batches(
    file: File,
    path: &Path,
    schema: &SchemaRef,
    batch_rows: usize,
) -> Result<impl Iterator<Item = Result<RecordBatch, StorageError>> + Send + use<>, StorageError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(parquet_err("open chunk file", path))?
        .with_batch_size(batch_rows)
        .build()
        .map_err(parquet_err("read chunk file", path))?;
    let (path, schema) = (path.to_path_buf(), schema.clone());
    Ok(reader.map(move |b| {
        let b = b.map_err(arrow_err("read chunk file", &path))?;
        conform_read(&schema, b, &path)
    }))
}

/// `batch`, read from the chunk file `path`, labelled `schema` once it is checked to match.
pub(crate) fn conform_read(
    schema: &SchemaRef,
    batch: RecordBatch,
    path: &Path,
) -> Result<RecordBatch, StorageError> {
    codec::conform(schema, batch).map_err(|d| StorageError::Corrupt {
        path: path.to_path_buf(),
        offset: 0,
        reason: format!("chunk file rows do not match the store schema: {d}"),
    })
}

/// Read an open chunk file whole.
pub(crate) fn read_open(
    file: File,
    path: &Path,
    schema: &SchemaRef,
) -> Result<Vec<RecordBatch>, StorageError> {
    batches(file, path, schema, READ_BATCH_ROWS)?.collect()
}

/// Read a chunk file back as batches with the chunk's schema.
#[cfg(test)]
pub(crate) fn read(path: &Path, schema: &SchemaRef) -> Result<Vec<RecordBatch>, StorageError> {
    let f = File::open(path).map_err(io_err("open", path))?;
    read_open(f, path, schema)
}
