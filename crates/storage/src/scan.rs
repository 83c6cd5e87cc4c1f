//! Streamed reads of a chunk ([`ChunkStore::scan_stream`]): the chunk files one after another,
//! one Parquet batch at a time, then the in-memory batches, so a scan holds about one batch, not
//! the chunk. Only the columns asked for are decoded (Parquet's `ProjectionMask`), and a caller's
//! [`Prune`] skips what cannot hold a row it wants, in three steps: whole files by the per-column
//! min/max their MANIFEST entry keeps (the file is not even opened), then row groups by the
//! statistics in the file's footer, then, within those, the rows of pages by the page index
//! (files are sorted, so a page of a sort column spans a narrow range). The caller still
//! filters every row it gets: pruning only skips what cannot match. A scan of no column (a
//! count) of a table keeping every row opens no file: each file's MANIFEST entry has its row
//! count.
//!
//! A table that keeps only the first or last row of each key (`keepDuplicates`) is merged
//! ([`crate::merge`]) on a thread of its own and streamed through a channel of one batch, and
//! pruned only by the conditions on its key columns ([`Prune::only`]): which duplicate survives
//! depends on every row of the key, but the duplicates of a key agree on every key column, so
//! such a condition keeps all of a key's rows or none. A container it rules out holds only keys
//! no wanted row has; a key with a wanted row keeps every one of its rows, all in containers it
//! does not rule out, so the merge still meets every duplicate of it. A condition on another
//! column could skip the duplicate that should survive and let an older one through.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions, StringArray, UInt64Array};
use arrow::compute::{CastOptions, cast_with_options, concat_batches};
use arrow::datatypes::{DataType, FieldRef, SchemaRef};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::arrow::arrow_reader::{
    ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection, RowSelector,
};
use parquet::file::metadata::PageIndexPolicy;

use crate::chunk_file::{self, parquet_err};
use crate::error::{StorageError, arrow_err, io_err};
use crate::manifest::{FILES_DIR, FileMeta};
use crate::merge;
use crate::ordered::{Ordered, ReadOrder};
use crate::sort_key::SortKey;
use crate::store::{ChunkStore, Shared};

/// Rows per batch read from a chunk file.
const READ_BATCH_ROWS: usize = 64 * 1024;

/// Decides from statistics which containers (chunk files, or the row groups of one) may hold
/// a row the caller wants. Must be conservative: `false` only where no row can.
pub trait Prune: Send + Sync {
    /// One answer per container of `stats`.
    fn may_match(&self, stats: &ContainerStats) -> Vec<bool>;

    /// A pruning that reads only `columns` and rules out no more than this one (a subset of
    /// the conditions of a conjunction); `None` when there is none.
    fn only(&self, columns: &[String]) -> Option<Arc<dyn Prune>>;
}

/// Statistics of some containers: their row counts and, per column, each one's smallest and
/// largest non-null value (null where unknown) and null count.
pub struct ContainerStats {
    rows: UInt64Array,
    columns: HashMap<String, ColumnStats>,
}

/// One column's statistics over the containers.
pub struct ColumnStats {
    /// Smallest non-null value per container, typed as the column (null: unknown).
    pub min: ArrayRef,
    /// Largest non-null value per container (null: unknown).
    pub max: ArrayRef,
    /// Nulls per container (null: unknown).
    pub nulls: UInt64Array,
}

impl ContainerStats {
    /// Statistics of containers holding `rows` rows each, of the `columns` named.
    pub fn new(rows: UInt64Array, columns: HashMap<String, ColumnStats>) -> Self {
        Self { rows, columns }
    }

    /// How many containers.
    pub fn containers(&self) -> usize {
        self.rows.len()
    }

    /// Rows per container.
    pub fn rows(&self) -> &UInt64Array {
        &self.rows
    }

    /// The statistics of column `name`, if known.
    pub fn column(&self, name: &str) -> Option<&ColumnStats> {
        self.columns.get(name)
    }
}

/// What a scan reads besides its lsn bound.
#[derive(Clone, Default)]
pub struct ScanOptions {
    /// The columns to read, by name (answered in the chunk schema's order); `None`: all.
    pub columns: Option<Vec<String>>,
    /// Skips files and row groups no wanted row can be in (for tables dropping duplicates,
    /// only [`Prune::only`] their key columns, see the module docs).
    pub prune: Option<Arc<dyn Prune>>,
    /// Reads the best rows first and stops once nothing left can beat the caller's top k
    /// (see [`crate::ordered`]); ignored by tables dropping duplicates (merged in key order),
    /// when the column is not read or not ranked.
    pub order: Option<ReadOrder>,
}

/// Batches of a scan, read as they are asked for (blocking: iterate off the async runtime).
/// An error ends the scan.
pub struct ScanBatches {
    schema: SchemaRef,
    inner: Box<dyn Iterator<Item = Result<RecordBatch, StorageError>> + Send>,
}

impl ScanBatches {
    pub(crate) fn new(
        schema: SchemaRef,
        inner: impl Iterator<Item = Result<RecordBatch, StorageError>> + Send + 'static,
    ) -> Self {
        Self {
            schema,
            inner: Box::new(inner),
        }
    }

    /// The schema of every batch: the chunk's, reduced to the columns read.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }
}

impl Iterator for ScanBatches {
    type Item = Result<RecordBatch, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next()
    }
}

/// The chunk files a scan opened (with the key each is sorted by) and the in-memory batches it
/// saw, taken together under the view's lock.
pub(crate) struct ScanSnapshot {
    files: Vec<(PathBuf, File, Vec<String>)>,
    mem: Vec<RecordBatch>,
}

impl ChunkStore {
    /// The rows of records up to lsn `last` (`u64::MAX`: all) that a table with `sort_key`
    /// holds, streamed (see the module docs): first the chunk files' rows (sorted by the sort
    /// key within each file), then one batch per in-memory record in lsn order; with
    /// `keepDuplicates` FIRST or LAST, the rows the key keeps, merged in key order. Only
    /// `opts.columns`; files and row groups `opts.prune` rules out are skipped (with FIRST or
    /// LAST, those its conditions on key columns rule out). A chunk file is
    /// read once it holds any record ≤ `last`, so below the flushed lsn the answer may include
    /// rows of records up to the end of that file.
    ///
    /// The files are opened here, under the view's lock: a compaction deletes its inputs only
    /// after swapping them out of the view, so every file listed is there, and stays readable
    /// once open, however long the caller takes to read.
    pub fn scan_stream(
        &self,
        last: u64,
        sort_key: &SortKey,
        opts: ScanOptions,
    ) -> Result<ScanBatches, StorageError> {
        let shared = self.shared_arc();
        let (indices, schema) = read_columns(&shared, opts.columns.as_deref())?;
        if sort_key.drops_duplicates() {
            let prune = opts.prune.and_then(|p| p.only(&sort_key.columns));
            let fields: Vec<FieldRef> = shared.schema.fields().iter().cloned().collect();
            let snapshot =
                self.snapshot(last, |files| prune_files(prune.as_ref(), files, &fields))?;
            let merge = Merged {
                shared,
                snapshot,
                key: sort_key.clone(),
                prune,
                indices,
                schema: schema.clone(),
            };
            let inner = merge.start()?;
            return Ok(ScanBatches { schema, inner });
        }
        if indices.is_empty() && opts.prune.is_none() {
            return Ok(self.row_counts(last, schema));
        }
        let fields: Vec<FieldRef> = schema.fields().iter().cloned().collect();
        let prune = opts.prune;
        let order = opts.order.filter(|o| {
            schema
                .field_with_name(&o.column)
                .is_ok_and(|f| ReadOrder::ranks(f.data_type()))
        });
        if let Some(order) = order {
            // Each kept file's best rank, from the same MANIFEST entries.
            let mut best = Vec::new();
            let snapshot = self.snapshot(last, |files| {
                let kept = prune_files(prune.as_ref(), files, &fields);
                let all = order.best(&file_stats(files, &fields));
                best = (0..files.len())
                    .filter(|i| kept.get(*i).copied().unwrap_or(true))
                    .map(|i| all[i])
                    .collect();
                kept
            })?;
            let files = snapshot
                .files
                .into_iter()
                .zip(best)
                .map(|((path, file, _), best)| (path, file, best))
                .collect();
            let reader = Ordered::new(
                shared,
                schema.clone(),
                indices,
                prune,
                order,
                files,
                snapshot.mem,
            );
            return Ok(ScanBatches::new(schema, reader));
        }
        let snapshot = self.snapshot(last, |files| prune_files(prune.as_ref(), files, &fields))?;
        let files = snapshot
            .files
            .into_iter()
            .map(|(path, file, _)| (path, file));
        let reader = Reader {
            shared,
            schema: schema.clone(),
            indices,
            prune,
            files: Box::new(files),
            current: None,
            mem: snapshot.mem.into_iter(),
        };
        Ok(ScanBatches {
            schema,
            inner: Box::new(reader),
        })
    }

    /// A scan of no column and nothing to prune by (a count) of a table keeping every row:
    /// each chunk file's rows as its MANIFEST entry counts them, then each in-memory record's,
    /// as batches of no column. The same files and records as a reading scan, none opened.
    fn row_counts(&self, last: u64, schema: SchemaRef) -> ScanBatches {
        let v = self.view();
        let files = v
            .files
            .iter()
            .filter(|f| f.first_lsn <= last)
            .map(|f| f.rows);
        let mem = v.batches_through(last);
        let rows: Vec<u64> = files
            .chain(mem.iter().map(|b| b.num_rows() as u64))
            .collect();
        drop(v);
        let (dir, out) = (self.shared_arc().dir.clone(), schema.clone());
        let inner = rows.into_iter().map(move |n| {
            let options = RecordBatchOptions::new().with_row_count(Some(n as usize));
            RecordBatch::try_new_with_options(out.clone(), Vec::new(), &options)
                .map_err(arrow_err("count rows", &dir))
        });
        ScanBatches {
            schema,
            inner: Box::new(inner),
        }
    }

    /// The chunk files holding records ≤ `last` that `keep` (given their MANIFEST entries;
    /// an answer too short keeps the rest) does not rule out, opened, and the in-memory
    /// batches ≤ `last`.
    pub(crate) fn snapshot(
        &self,
        last: u64,
        keep: impl FnOnce(&[&FileMeta]) -> Vec<bool>,
    ) -> Result<ScanSnapshot, StorageError> {
        let shared = self.shared_arc();
        let dir = shared.dir.join(FILES_DIR);
        let v = self.view();
        let listed: Vec<&FileMeta> = v.files.iter().filter(|f| f.first_lsn <= last).collect();
        let kept = keep(&listed);
        let pruned = kept.iter().filter(|k| !**k).count();
        shared.counters.add_files_pruned(pruned as u64);
        let files = listed
            .into_iter()
            .enumerate()
            .filter(|(i, _)| kept.get(*i).copied().unwrap_or(true))
            .map(|(_, f)| {
                let path = dir.join(&f.name);
                File::open(&path)
                    .map(|h| (path.clone(), h, f.sort_key.clone()))
                    .map_err(io_err("open", &path))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ScanSnapshot {
            files,
            mem: v.batches_through(last),
        })
    }
}

/// The indices and schema of `columns` (all when `None`) in the chunk's order.
pub(crate) fn read_columns(
    shared: &Shared,
    columns: Option<&[String]>,
) -> Result<(Vec<usize>, SchemaRef), StorageError> {
    let Some(names) = columns else {
        let all = (0..shared.schema.fields().len()).collect();
        return Ok((all, shared.schema.clone()));
    };
    let mut indices = names
        .iter()
        .map(|name| {
            shared
                .schema
                .index_of(name)
                .map_err(|_| StorageError::NoSuchColumn {
                    dir: shared.dir.clone(),
                    column: name.clone(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    indices.sort_unstable();
    indices.dedup();
    let schema = shared
        .schema
        .project(&indices)
        .map_err(arrow_err("project schema", &shared.dir))?;
    Ok((indices, Arc::new(schema)))
}

/// Which of `files` `prune` keeps, by their MANIFEST statistics of `fields` (all: empty).
fn prune_files(
    prune: Option<&Arc<dyn Prune>>,
    files: &[&FileMeta],
    fields: &[FieldRef],
) -> Vec<bool> {
    prune.map_or_else(Vec::new, |p| p.may_match(&file_stats(files, fields)))
}

/// `batch` (with the chunk's schema) reduced to the columns `indices`, labelled `schema`.
pub(crate) fn project(
    dir: &Path,
    batch: &RecordBatch,
    indices: &[usize],
    schema: &SchemaRef,
) -> Result<RecordBatch, StorageError> {
    if indices.len() == batch.num_columns() {
        return Ok(batch.clone());
    }
    let columns = indices.iter().map(|&i| batch.column(i).clone()).collect();
    // The row count is explicit so that a batch of no column still counts rows.
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options)
        .map_err(arrow_err("project rows", dir))
}

/// A file's batches.
pub(crate) type Batches = Box<dyn Iterator<Item = Result<RecordBatch, StorageError>> + Send>;

/// The unmerged scan: files in lsn order, then the in-memory batches.
struct Reader {
    shared: Arc<Shared>,
    schema: SchemaRef,
    indices: Vec<usize>,
    prune: Option<Arc<dyn Prune>>,
    files: Box<dyn Iterator<Item = (PathBuf, File)> + Send>,
    current: Option<Batches>,
    mem: std::vec::IntoIter<RecordBatch>,
}

impl Iterator for Reader {
    type Item = Result<RecordBatch, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(batch) = self.current.as_mut().and_then(Iterator::next) {
                if batch.is_err() {
                    self.stop();
                }
                return Some(batch);
            }
            self.current = None;
            let Some((path, file)) = self.files.next() else {
                let batch = self.mem.next()?;
                return Some(project(
                    &self.shared.dir,
                    &batch,
                    &self.indices,
                    &self.schema,
                ));
            };
            match open_file(
                &self.shared,
                &path,
                file,
                &self.schema,
                self.prune.as_deref(),
            ) {
                Ok(batches) => self.current = batches,
                Err(e) => {
                    self.stop();
                    return Some(Err(e));
                }
            }
        }
    }
}

impl Reader {
    /// Nothing more is read after an error.
    fn stop(&mut self) {
        self.current = None;
        self.files = Box::new(std::iter::empty());
        self.mem = Vec::new().into_iter();
    }
}

/// The batches of the row groups of the chunk file `file` that `prune` keeps, only the columns
/// of `schema` (by name); `None` when it keeps none.
fn open_file(
    shared: &Arc<Shared>,
    path: &Path,
    file: File,
    schema: &SchemaRef,
    prune: Option<&dyn Prune>,
) -> Result<Option<Batches>, StorageError> {
    // The page index (page statistics and offsets) is worth loading only to prune with; a
    // file without one is read as before.
    let policy = match prune {
        Some(_) => PageIndexPolicy::Optional,
        None => PageIndexPolicy::Skip,
    };
    let options = ArrowReaderOptions::new().with_page_index_policy(policy);
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(file, options)
        .map_err(parquet_err("open", path))?;
    let groups = builder.metadata().num_row_groups();
    let kept: Vec<usize> = match prune {
        Some(p) => {
            let answers = p.may_match(&row_group_stats(&builder, schema));
            (0..groups)
                .filter(|&g| answers.get(g).copied().unwrap_or(true))
                .collect()
        }
        None => (0..groups).collect(),
    };
    let pages = prune.and_then(|p| page_selection(&builder, schema, p, &kept));
    let counters = &shared.counters;
    counters.add_row_groups(kept.len() as u64, (groups - kept.len()) as u64);
    if kept.is_empty() || pages.as_ref().is_some_and(|s| !s.selects_any()) {
        counters.add_files_pruned(1);
        return Ok(None);
    }
    read_groups(shared, path, builder, schema, kept, |b| match pages {
        Some(rows) => b.with_row_selection(rows),
        None => b,
    })
    .map(Some)
}

/// The rows of row groups `groups` to decode, by the page index: pages whose statistics rule
/// out every row `prune` wants are skipped. The pages of different columns start at different
/// rows, so each column with conditions of its own ([`Prune::only`]) selects the rows of the
/// pages it keeps, and the rows read are those every column keeps. `None` when no page is
/// ruled out (or the file has no page index).
fn page_selection(
    builder: &ParquetRecordBatchReaderBuilder<File>,
    schema: &SchemaRef,
    prune: &dyn Prune,
    groups: &[usize],
) -> Option<RowSelection> {
    let meta = builder.metadata();
    let (Some(index), Some(offsets)) = (meta.column_index(), meta.offset_index()) else {
        return None;
    };
    let mut selection: Option<RowSelection> = None;
    for field in schema.fields() {
        let Some(column_prune) = prune.only(std::slice::from_ref(field.name())) else {
            continue;
        };
        let Ok(conv) =
            StatisticsConverter::try_new(field.name(), builder.schema(), builder.parquet_schema())
        else {
            continue;
        };
        // A missing null count is unknown, not zero: `IS NULL` must not prune on it.
        let conv = conv.with_missing_null_counts_as_zero(false);
        let (Ok(min), Ok(max), Ok(nulls), Ok(Some(rows))) = (
            conv.data_page_mins(index, offsets, groups),
            conv.data_page_maxes(index, offsets, groups),
            conv.data_page_null_counts(index, offsets, groups),
            conv.data_page_row_counts(offsets, meta.row_groups(), groups),
        ) else {
            continue;
        };
        let stats = ColumnStats { min, max, nulls };
        let columns = HashMap::from([(field.name().clone(), stats)]);
        let keep = column_prune.may_match(&ContainerStats::new(rows.clone(), columns));
        // An answer too short keeps the rest.
        let keep = |page: usize| keep.get(page).copied().unwrap_or(true);
        if (0..rows.len()).all(keep) {
            continue;
        }
        let pages = rows.values().iter().enumerate().map(|(page, &n)| {
            if keep(page) {
                RowSelector::select(n as usize)
            } else {
                RowSelector::skip(n as usize)
            }
        });
        let column = RowSelection::from(pages.collect::<Vec<_>>());
        selection = Some(match selection {
            Some(s) => s.intersection(&column),
            None => column,
        });
    }
    selection
}

/// The batches of row groups `groups` of the chunk file at `path` (`builder` opened on it),
/// only the columns of `schema` (by name), read as `configure` further says (a row filter).
pub(crate) fn read_groups(
    shared: &Arc<Shared>,
    path: &Path,
    builder: ParquetRecordBatchReaderBuilder<File>,
    schema: &SchemaRef,
    groups: Vec<usize>,
    configure: impl FnOnce(
        ParquetRecordBatchReaderBuilder<File>,
    ) -> ParquetRecordBatchReaderBuilder<File>,
) -> Result<Batches, StorageError> {
    let file_schema = builder.schema().clone();
    let roots = schema
        .fields()
        .iter()
        .map(|f| file_schema.index_of(f.name()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(arrow_err("find columns in chunk file", path))?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let builder = builder
        .with_projection(mask)
        .with_row_groups(groups)
        .with_batch_size(READ_BATCH_ROWS);
    let reader = configure(builder)
        .build()
        .map_err(parquet_err("read chunk file", path))?;
    let (path, schema, shared) = (path.to_path_buf(), schema.clone(), shared.clone());
    Ok(Box::new(reader.map(move |b| {
        let b = b.map_err(arrow_err("read chunk file", &path))?;
        shared.counters.add_file_rows_read(b.num_rows() as u64);
        chunk_file::conform_read(&schema, b, &path)
    })))
}

/// The row groups' statistics of the columns of `schema`, from the file's footer.
pub(crate) fn row_group_stats(
    builder: &ParquetRecordBatchReaderBuilder<File>,
    schema: &SchemaRef,
) -> ContainerStats {
    let groups = builder.metadata().row_groups();
    let rows = UInt64Array::from_iter_values(groups.iter().map(|g| g.num_rows() as u64));
    let mut columns = HashMap::new();
    for field in schema.fields() {
        let Ok(conv) =
            StatisticsConverter::try_new(field.name(), builder.schema(), builder.parquet_schema())
        else {
            continue;
        };
        // A missing null count is unknown, not zero: `IS NULL` must not prune on it.
        let conv = conv.with_missing_null_counts_as_zero(false);
        let (Ok(min), Ok(max), Ok(nulls)) = (
            conv.row_group_mins(groups.iter()),
            conv.row_group_maxes(groups.iter()),
            conv.row_group_null_counts(groups.iter()),
        ) else {
            continue;
        };
        columns.insert(field.name().clone(), ColumnStats { min, max, nulls });
    }
    ContainerStats { rows, columns }
}

/// The files' statistics of `fields`, from their MANIFEST entries. The MANIFEST keeps values as
/// Arrow displays them; only types whose text parses back to the same value are used.
pub(crate) fn file_stats(files: &[&FileMeta], fields: &[FieldRef]) -> ContainerStats {
    let rows = UInt64Array::from_iter_values(files.iter().map(|f| f.rows));
    let mut columns = HashMap::new();
    let cast = CastOptions {
        safe: true,
        ..CastOptions::default()
    };
    for field in fields.iter().filter(|f| text_round_trips(f.data_type())) {
        let range = |f: &FileMeta| f.columns.iter().find(|c| c.name == *field.name()).cloned();
        let ranges: Vec<_> = files.iter().map(|f| range(f)).collect();
        let text = |pick: fn(&crate::manifest::ColumnRange) -> Option<String>| {
            StringArray::from_iter(ranges.iter().map(|r| r.as_ref().and_then(pick)))
        };
        let (Ok(min), Ok(max)) = (
            cast_with_options(&text(|r| r.min.clone()), field.data_type(), &cast),
            cast_with_options(&text(|r| r.max.clone()), field.data_type(), &cast),
        ) else {
            continue;
        };
        let nulls = UInt64Array::from_iter(ranges.iter().map(|r| r.as_ref().map(|r| r.nulls)));
        columns.insert(field.name().clone(), ColumnStats { min, max, nulls });
    }
    ContainerStats { rows, columns }
}

/// Types whose displayed value parses back to itself (not floats, whose text may round).
fn text_round_trips(t: &DataType) -> bool {
    t.is_integer() || t.is_string() || matches!(t, DataType::Date32 | DataType::Timestamp(_, _))
}

/// The merged scan of a table dropping duplicates (see the module docs).
struct Merged {
    shared: Arc<Shared>,
    snapshot: ScanSnapshot,
    key: SortKey,
    /// Reads only key columns.
    prune: Option<Arc<dyn Prune>>,
    indices: Vec<usize>,
    schema: SchemaRef,
}

impl Merged {
    /// Produces the rows on a thread of its own, one batch ahead; it stops at its next batch
    /// once the reader is dropped.
    fn start(self) -> Result<Batches, StorageError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let dir = self.shared.dir.clone();
        std::thread::Builder::new()
            .name("shoal-scan-merge".into())
            .spawn(move || {
                let shared = &self.shared;
                let mut sink = |b: RecordBatch| {
                    let rows = project(&shared.dir, &b, &self.indices, &self.schema);
                    tx.send(rows).map_err(|_| StorageError::Closed {
                        dir: shared.dir.clone(),
                    })
                };
                let merged =
                    self.snapshot
                        .merge(shared, &self.key, self.prune.as_deref(), &mut sink);
                if let Err(e) = merged {
                    let _ = tx.send(Err(e));
                }
            })
            .map_err(io_err("start a scan thread", &dir))?;
        Ok(Box::new(rx.into_iter()))
    }
}

impl ScanSnapshot {
    /// Passes to `sink` the rows `sort_key` keeps, merged from the files (in lsn order) and then
    /// the in-memory rows (the highest lsns), in key order; the row groups of files sorted by
    /// the key that `prune` (key columns only) rules out are skipped. Blocking.
    fn merge(
        self,
        shared: &Arc<Shared>,
        sort_key: &SortKey,
        prune: Option<&dyn Prune>,
        sink: &mut impl FnMut(RecordBatch) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let (dir, schema) = (&shared.dir, &shared.schema);
        let columns = &sort_key.columns;
        let mut inputs = Vec::new();
        for (path, file, file_key) in self.files {
            if file_key != *columns {
                // Written before the table's key was known (read whole and sorted).
                inputs.push(merge::sorted_file(file, &path, schema, &file_key, columns)?);
            } else if let Some(batches) = open_file(shared, &path, file, schema, prune)? {
                inputs.push(batches);
            }
        }
        let mem =
            concat_batches(schema, &self.mem).map_err(arrow_err("concatenate batches", dir))?;
        if mem.num_rows() > 0 {
            inputs.push(merge::sorted(dir, schema, &mem, columns)?);
        }
        merge::merge(dir, schema, inputs, sort_key, None, sink)
    }
}
