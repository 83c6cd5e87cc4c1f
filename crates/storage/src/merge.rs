//! The k-way merge of sorted inputs, shared by compaction (chunk files into one) and by scans
//! of a chunk that keeps only the first or last row of each key (its files and its in-memory
//! rows, which hold duplicates of each other until a compaction meets them).
//!
//! Every input is in key order and is read [`MERGE_BATCH_ROWS`] rows at a time; the merge
//! compares keys in Arrow's row format and produces batches in key order. Equal keys go earlier
//! input first, then in the input's own order: with inputs given in lsn order (files hold
//! disjoint lsn ranges, each sorted stably), equal keys come out in lsn order, which is what
//! one flush of all those records writes and what [`KeepFilter`] relies on. Memory: one batch
//! per input plus one output batch (counted in the store's memory gauge when compacting).

use std::cmp::Ordering;
use std::fs::File;
use std::path::Path;

use arrow::compute::{concat_batches, interleave_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::row::{Row, RowConverter, Rows};

use crate::chunk_file;
use crate::error::{StorageError, arrow_err};
use crate::memory::{Charge, held_bytes};
use crate::sort_key::{KeepFilter, SortKey};

/// Rows per batch read from each input and passed on.
pub(crate) const MERGE_BATCH_ROWS: usize = 8192;

/// An input's batches, in key order.
pub(crate) type Batches = Box<dyn Iterator<Item = Result<RecordBatch, StorageError>> + Send>;

/// An open chunk file's batches in the order of `columns`: streamed if the file is sorted by
/// them (`file_key`, from its MANIFEST entry), else read whole and sorted (equal keys then
/// keep the file's order).
pub(crate) fn sorted_file(
    file: File,
    path: &Path,
    schema: &SchemaRef,
    file_key: &[String],
    columns: &[String],
) -> Result<Batches, StorageError> {
    if file_key == columns {
        return Ok(Box::new(chunk_file::batches(
            file,
            path,
            schema,
            MERGE_BATCH_ROWS,
        )?));
    }
    let all = concat_batches(schema, &chunk_file::read_open(file, path, schema)?)
        .map_err(arrow_err("concatenate batches", path))?;
    sorted(path, schema, &all, columns)
}

/// `batch` as an input in the order of `columns`.
pub(crate) fn sorted(
    dir: &Path,
    schema: &SchemaRef,
    batch: &RecordBatch,
    columns: &[String],
) -> Result<Batches, StorageError> {
    let sorted = chunk_file::sort_by(dir, batch, schema, columns)?;
    Ok(Box::new(std::iter::once(Ok(sorted))))
}

/// Merge `inputs` (each in the order of `sort_key`, given in lsn order) into `sink`, passing
/// on only the rows `sort_key` keeps. `dir` names the store in errors. `held` counts the
/// batches the merge holds (each input's current one, and those its picked rows come from)
/// while it runs; a scan passes `None` (its memory is the query's, bounded by the query's pool).
pub(crate) fn merge(
    dir: &Path,
    schema: &SchemaRef,
    inputs: Vec<Batches>,
    sort_key: &SortKey,
    held: Option<&mut Charge>,
    sink: &mut impl FnMut(RecordBatch) -> Result<(), StorageError>,
) -> Result<(), StorageError> {
    let keys = chunk_file::key_columns(dir, schema, &sort_key.columns)?;
    let mut m = Merge {
        path: dir,
        conv: converter(dir, schema, &keys)?,
        keys: &keys,
        inputs: Vec::with_capacity(inputs.len()),
        sources: Vec::new(),
        picks: Vec::with_capacity(MERGE_BATCH_ROWS),
        keep: KeepFilter::new(dir, schema, sort_key)?,
        sink,
        held,
    };
    for rest in inputs {
        m.inputs.push(Input { rest, head: None });
        m.next_batch(m.inputs.len() - 1)?;
    }
    m.run()?;
    m.keep.finish(m.sink)
}

/// Encodes sort keys in Arrow's row format (byte-comparable); `None` for an empty key.
fn converter(
    dir: &Path,
    schema: &SchemaRef,
    keys: &[usize],
) -> Result<Option<RowConverter>, StorageError> {
    if keys.is_empty() {
        return Ok(None);
    }
    chunk_file::key_converter(dir, schema, keys, "merging").map(Some)
}

/// One input being merged.
struct Input {
    rest: Batches,
    /// `None` once every row was taken.
    head: Option<Head>,
}

/// An input's current batch: its keys, the next row, and the batch's index in `Merge::sources`.
struct Head {
    batch: RecordBatch,
    keys: Option<Rows>,
    at: usize,
    source: usize,
}

impl Head {
    fn key(&self) -> Option<Row<'_>> {
        self.keys.as_ref().map(|k| k.row(self.at))
    }
}

/// The k-way merge: `picks` are the `(source, row)` of the output rows not passed on yet.
struct Merge<'a, S> {
    path: &'a Path,
    conv: Option<RowConverter>,
    keys: &'a [usize],
    inputs: Vec<Input>,
    sources: Vec<RecordBatch>,
    picks: Vec<(usize, usize)>,
    keep: KeepFilter,
    sink: &'a mut S,
    held: Option<&'a mut Charge>,
}

impl<S: FnMut(RecordBatch) -> Result<(), StorageError>> Merge<'_, S> {
    /// Whether input `a`'s next row goes before input `b`'s: by key, then the earlier input
    /// (lower lsns) first. An input with no rows left goes last.
    fn before(&self, a: usize, b: usize) -> bool {
        match (&self.inputs[a].head, &self.inputs[b].head) {
            (Some(x), Some(y)) => match x.key().cmp(&y.key()) {
                Ordering::Less => true,
                Ordering::Greater => false,
                Ordering::Equal => a < b,
            },
            (x, _) => x.is_some(),
        }
    }

    /// The input whose next row goes first among `candidates`.
    fn first(&self, candidates: impl Iterator<Item = usize>) -> Option<usize> {
        candidates
            .filter(|&i| self.inputs[i].head.is_some())
            .reduce(|a, b| if self.before(a, b) { a } else { b })
    }

    fn run(&mut self) -> Result<(), StorageError> {
        let n = self.inputs.len();
        while let Some(m) = self.first(0..n) {
            // Rows of `m` go out until the runner-up's next row comes first.
            let runner_up = self.first((0..n).filter(|&i| i != m));
            while let Some(h) = self.inputs[m].head.as_mut() {
                self.picks.push((h.source, h.at));
                h.at += 1;
                if h.at == h.batch.num_rows() {
                    self.next_batch(m)?;
                }
                if self.picks.len() == MERGE_BATCH_ROWS {
                    self.emit()?;
                }
                if runner_up.is_some_and(|r| !self.before(m, r)) {
                    break;
                }
            }
        }
        self.emit()
    }

    /// Move input `i` to its next non-empty batch (none at its end).
    fn next_batch(&mut self, i: usize) -> Result<(), StorageError> {
        let input = &mut self.inputs[i];
        input.head = None;
        for batch in input.rest.by_ref() {
            let batch = batch?;
            if batch.num_rows() == 0 {
                continue;
            }
            let keys = match &self.conv {
                Some(conv) => {
                    let cols: Vec<_> = self.keys.iter().map(|&k| batch.column(k).clone()).collect();
                    Some(
                        conv.convert_columns(&cols)
                            .map_err(arrow_err("encode sort keys", self.path))?,
                    )
                }
                None => None,
            };
            self.sources.push(batch.clone());
            input.head = Some(Head {
                batch,
                keys,
                at: 0,
                source: self.sources.len() - 1,
            });
            break;
        }
        self.count_held();
        Ok(())
    }

    /// Sets `held` to what `sources` keep allocated (heads' key encodings are small beside it).
    fn count_held(&mut self) {
        if let Some(held) = self.held.as_deref_mut() {
            held.set(self.sources.iter().map(held_bytes).sum());
        }
    }

    /// Pass on the picked rows, then keep only the batches still being read.
    fn emit(&mut self) -> Result<(), StorageError> {
        if self.picks.is_empty() {
            return Ok(());
        }
        let sources: Vec<&RecordBatch> = self.sources.iter().collect();
        let batch = interleave_record_batch(&sources, &self.picks)
            .map_err(arrow_err("merge rows", self.path))?;
        self.keep.push(&batch, self.sink)?;
        self.picks.clear();
        self.sources.clear();
        for h in self.inputs.iter_mut().filter_map(|i| i.head.as_mut()) {
            self.sources.push(h.batch.clone());
            h.source = self.sources.len() - 1;
        }
        self.count_held();
        Ok(())
    }
}
