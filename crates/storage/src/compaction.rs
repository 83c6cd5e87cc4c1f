//! [`ChunkStore::compact`]: merge a replica's chunk files into fewer, larger sorted ones, so a
//! chunk written for long keeps a bounded number of files and a scan opens few.
//!
//! Which files ([`Compaction`]): the files form runs of one level in lsn order (a flush writes
//! level 0). `Tiered` merges a run of at least [`COMPACT_MIN_FILES`] files of level n into one
//! file of level n + 1, so a chunk holds fewer than `COMPACT_MIN_FILES` files per level and its
//! levels grow logarithmically; `All` merges every file (a cold chunk). One merge takes a
//! contiguous run (so lsn ranges stay disjoint and in order) of at most [`MAX_INPUTS`] files and
//! [`MAX_INPUT_BYTES`].
//!
//! The merge streams: every input is sorted by the key already and is read
//! [`MERGE_BATCH_ROWS`] rows at a time; a k-way merge on the keys in Arrow's row format writes
//! the output batch by batch. Equal keys go earlier input first (lower lsns), then in the
//! input's own order (lsn order), so the result is what one flush of all those records writes.
//! Memory: one batch per input plus one output row group. An input written with another sort
//! key is read whole and sorted first (equal keys then keep that file's order).
//!
//! Steps, in this order:
//!
//! ```text
//! 1. plan     under the flush lock: the inputs, from the committed MANIFEST
//! 2. file     without it (appends and flushes go on; compactions are serialized): the merged
//!             f/<first>-<last>.parquet (tmp, fsync, rename, fsync f/)
//! 3. MANIFEST under the flush lock: the inputs replaced by the new file   <- the commit point
//! 4. view     the new file list (a scan opens its files under the view's lock, so it has
//!             the inputs open or sees the new file)
//! 5. delete   the inputs (a scan holding one open reads on: Linux keeps an unlinked file
//!             while it is open), fsync f/
//! ```
//!
//! A crash after 2 leaves the merged file an orphan, after 3 the inputs: open deletes the files
//! no MANIFEST lists, so the store reopens as it was either way. A failed compaction leaves the
//! open store as it was.

use std::cmp::Ordering;
use std::fs::File;
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, PoisonError};

use arrow::compute::{concat_batches, interleave_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::row::{Row, RowConverter, Rows, SortField};

use crate::chunk_file::{self, ChunkWriter, KEY_ORDER};
use crate::error::{StorageError, arrow_err, io_err};
use crate::flush::{CrashPoint, crash_point};
use crate::fsutil;
use crate::manifest::{self, FILES_DIR, FileMeta};
use crate::store::{ChunkStore, Shared, blocking};
use crate::types::CompactReport;

/// A run of this many files of one level is merged ([`Compaction::Tiered`]).
pub const COMPACT_MIN_FILES: usize = 8;
/// Most files merged at once: the merge holds one batch of each.
const MAX_INPUTS: usize = 64;
/// Most Parquet bytes merged at once: bounds the work and rewrite of one compaction, and the
/// memory of inputs sorted by another key (read whole).
const MAX_INPUT_BYTES: u64 = 512 << 20;
/// Rows per batch read from each input and written out.
const MERGE_BATCH_ROWS: usize = 8192;

/// Which files [`ChunkStore::compact`] merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compaction {
    /// A run of at least [`COMPACT_MIN_FILES`] files of one level (lowest level first), into
    /// one file a level up. Nothing when no run is that long.
    Tiered,
    /// Every file into one, for a chunk no longer written. Nothing when it has one file.
    All,
}

/// One merge: `files[range]` into one file of `level`.
struct Plan {
    range: Range<usize>,
    level: u32,
}

fn plan(files: &[FileMeta], how: Compaction) -> Option<Plan> {
    match how {
        Compaction::All => window(files, 0..files.len()),
        Compaction::Tiered => {
            let mut runs: Vec<Range<usize>> = runs(files)
                .into_iter()
                .filter(|r| r.len() >= COMPACT_MIN_FILES)
                .collect();
            runs.sort_by_key(|r| files[r.start].level);
            runs.into_iter().find_map(|r| window(files, r))
        }
    }
}

/// The maximal runs of consecutive files of one level.
fn runs(files: &[FileMeta]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=files.len() {
        if i == files.len() || files[i].level != files[start].level {
            out.push(start..i);
            start = i;
        }
    }
    out
}

/// The first stretch of at least two files of `run` within [`MAX_INPUTS`] and
/// [`MAX_INPUT_BYTES`].
fn window(files: &[FileMeta], run: Range<usize>) -> Option<Plan> {
    for start in run.clone() {
        let (mut end, mut bytes) = (start, 0);
        while end < run.end
            && end - start < MAX_INPUTS
            && bytes + files[end].bytes <= MAX_INPUT_BYTES
        {
            bytes += files[end].bytes;
            end += 1;
        }
        if end - start >= 2 {
            let top = files[start..end].iter().map(|f| f.level).max().unwrap_or(0);
            return Some(Plan {
                range: start..end,
                level: top + 1,
            });
        }
    }
    None
}

impl ChunkStore {
    /// Merge chunk files into one sorted by `sort_key` (the table's, as for
    /// [`ChunkStore::flush`]; an unknown column is [`StorageError::InvalidOptions`]), commit the
    /// MANIFEST, delete the inputs. `how` picks the files; a report with `inputs == 0` when
    /// none are due. Runs off the async runtime; appends and flushes go on meanwhile (a flush
    /// waits only for the commit), compactions are serialized. Position, rows, checksum,
    /// dedup answers and the scan's row multiset stay the same; scans in progress read on.
    pub async fn compact(
        &self,
        sort_key: &[String],
        how: Compaction,
    ) -> Result<CompactReport, StorageError> {
        let shared = self.shared_arc();
        let sort_key = sort_key.to_vec();
        blocking(self.dir(), move || compact(&shared, &sort_key, how)).await
    }

    /// Whether [`Compaction::Tiered`] has files to merge (for a compaction policy).
    pub fn compaction_due(&self) -> bool {
        plan(&self.view().files, Compaction::Tiered).is_some()
    }

    /// Chunk files the replica has.
    pub fn file_count(&self) -> usize {
        self.view().files.len()
    }
}

fn compact(
    shared: &Shared,
    sort_key: &[String],
    how: Compaction,
) -> Result<CompactReport, StorageError> {
    let _one = shared
        .compacting
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let files_dir = shared.dir.join(FILES_DIR);
    let keys = chunk_file::key_columns(&shared.dir, &shared.schema, sort_key)?;
    let (plan, inputs) = {
        let st = shared.flushed_if_open()?;
        let files = &st.manifest.files;
        let Some(plan) = plan(files, how) else {
            return Ok(CompactReport {
                files: files.len() as u64,
                ..CompactReport::default()
            });
        };
        let inputs = files[plan.range.clone()].to_vec();
        (plan, inputs)
    };
    let merged = merge(shared, &files_dir, &inputs, sort_key, &keys, plan.level)?;
    crash_point(shared, CrashPoint::MergedFile)?;
    let report = CompactReport {
        inputs: inputs.len() as u64,
        input_bytes: inputs.iter().map(|f| f.bytes).sum(),
        file: Some(merged.name.clone()),
        file_bytes: merged.bytes,
        rows: merged.rows,
        level: merged.level,
        files: 0,
    };
    let files = commit(shared, &plan, &inputs, merged)?;
    tracing::debug!(dir = %shared.dir.display(), inputs = report.inputs,
        input_bytes = report.input_bytes, bytes = report.file_bytes, level = report.level,
        files, "compacted chunk files");
    Ok(CompactReport {
        files: files as u64,
        ..report
    })
}

/// Steps 3-5: the MANIFEST lists `merged` instead of `inputs`, then the view, then the inputs
/// are deleted. Returns the number of files now.
fn commit(
    shared: &Shared,
    plan: &Plan,
    inputs: &[FileMeta],
    merged: FileMeta,
) -> Result<usize, StorageError> {
    let mut st = shared.flushed_if_open()?;
    let dir = &shared.dir;
    let mut m = st.manifest.clone();
    // Flushes only append files and compactions are serialized, so the inputs are where the
    // plan found them.
    if m.files.get(plan.range.clone()) != Some(inputs) {
        return Err(StorageError::Failed {
            dir: dir.clone(),
            reason: "compaction: the chunk files changed while they were merged".into(),
        });
    }
    m.files.drain(plan.range.clone());
    m.files.insert(plan.range.start, merged);
    let manifest_bytes = manifest::write(dir, &m)?;
    crash_point(shared, CrashPoint::MergedManifest)?;
    st.manifest = m;
    st.manifest_bytes = manifest_bytes;
    {
        let mut v = shared.view.write().unwrap_or_else(PoisonError::into_inner);
        v.files = Arc::new(st.manifest.files.clone());
        v.other_bytes = st.bytes();
    }
    let files_dir = dir.join(FILES_DIR);
    for f in inputs {
        let p = files_dir.join(&f.name);
        std::fs::remove_file(&p).map_err(io_err("remove", &p))?;
    }
    fsutil::sync_dir(&files_dir)?;
    Ok(st.manifest.files.len())
}

/// Step 2: the rows of `inputs` merged into one new file of `level`.
fn merge(
    shared: &Shared,
    files_dir: &Path,
    inputs: &[FileMeta],
    sort_key: &[String],
    keys: &[usize],
    level: u32,
) -> Result<FileMeta, StorageError> {
    let schema = &shared.schema;
    let lsns = (
        inputs.first().map_or(0, |f| f.first_lsn),
        inputs.last().map_or(0, |f| f.last_lsn),
    );
    let mut m = Merge {
        shared,
        path: files_dir,
        conv: converter(files_dir, schema, keys)?,
        keys,
        inputs: Vec::with_capacity(inputs.len()),
        sources: Vec::new(),
        picks: Vec::with_capacity(MERGE_BATCH_ROWS),
        out: ChunkWriter::create(files_dir, schema, sort_key, lsns, level)?,
    };
    for f in inputs {
        let rest = open_input(&files_dir.join(&f.name), schema, f, sort_key, keys)?;
        m.inputs.push(Input { rest, head: None });
        m.next_batch(m.inputs.len() - 1)?;
    }
    m.run()?;
    m.out.finish()
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
    let fields: Vec<SortField> = keys
        .iter()
        .map(|&i| SortField::new_with_options(schema.field(i).data_type().clone(), KEY_ORDER))
        .collect();
    if !RowConverter::supports_fields(&fields) {
        return Err(StorageError::InvalidOptions {
            dir: dir.to_path_buf(),
            detail: "compaction merges on Arrow's row format, which lacks a sort key column's type"
                .into(),
        });
    }
    RowConverter::new(fields)
        .map(Some)
        .map_err(arrow_err("sort key", dir))
}

type Batches = Box<dyn Iterator<Item = Result<RecordBatch, StorageError>> + Send>;

/// An input's batches in key order: streamed if the file is sorted by `sort_key`, else read
/// whole and sorted.
fn open_input(
    path: &Path,
    schema: &SchemaRef,
    meta: &FileMeta,
    sort_key: &[String],
    keys: &[usize],
) -> Result<Batches, StorageError> {
    let file = File::open(path).map_err(io_err("open", path))?;
    if meta.sort_key == sort_key {
        return Ok(Box::new(chunk_file::batches(
            file,
            path,
            schema,
            MERGE_BATCH_ROWS,
        )?));
    }
    let all = concat_batches(schema, &chunk_file::read_open(file, path, schema)?)
        .map_err(arrow_err("concatenate batches", path))?;
    let sorted = chunk_file::sort(&all, keys).map_err(arrow_err("sort rows", path))?;
    Ok(Box::new(std::iter::once(Ok(sorted))))
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

/// The k-way merge: `picks` are the `(source, row)` of the output rows not written yet.
struct Merge<'a> {
    shared: &'a Shared,
    path: &'a Path,
    conv: Option<RowConverter>,
    keys: &'a [usize],
    inputs: Vec<Input>,
    sources: Vec<RecordBatch>,
    picks: Vec<(usize, usize)>,
    out: ChunkWriter,
}

impl Merge<'_> {
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
        Ok(())
    }

    /// Write the picked rows, then keep only the batches still being read. Stops the merge
    /// once the store is closing, so closing waits a batch, not a whole compaction.
    fn emit(&mut self) -> Result<(), StorageError> {
        self.shared.check_open()?;
        if self.picks.is_empty() {
            return Ok(());
        }
        let sources: Vec<&RecordBatch> = self.sources.iter().collect();
        let batch = interleave_record_batch(&sources, &self.picks)
            .map_err(arrow_err("merge rows", self.path))?;
        self.out.write(&batch)?;
        self.picks.clear();
        self.sources.clear();
        for h in self.inputs.iter_mut().filter_map(|i| i.head.as_mut()) {
            self.sources.push(h.batch.clone());
            h.source = self.sources.len() - 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(level: u32, bytes: u64) -> FileMeta {
        FileMeta {
            name: String::new(),
            first_lsn: 0,
            last_lsn: 0,
            rows: 1,
            bytes,
            sort_key: Vec::new(),
            columns: Vec::new(),
            level,
        }
    }

    fn planned(levels: &[u32], how: Compaction) -> Option<(Range<usize>, u32)> {
        let files: Vec<FileMeta> = levels.iter().map(|&l| file(l, 1000)).collect();
        plan(&files, how).map(|p| (p.range, p.level))
    }

    #[test]
    fn runs_of_eight_files_of_one_level_are_merged_a_level_up_lowest_first() {
        use Compaction::{All, Tiered};
        assert_eq!(planned(&[0; 7], Tiered), None);
        assert_eq!(planned(&[0; 8], Tiered), Some((0..8, 1)));
        assert_eq!(
            planned(&[1, 1, 0, 0, 0, 0, 0, 0, 0, 0], Tiered),
            Some((2..10, 1))
        );
        let mut levels = vec![1; 8];
        levels.extend([0; 3]);
        assert_eq!(planned(&levels, Tiered), Some((0..8, 2)));
        assert_eq!(planned(&[0; 100], Tiered), Some((0..MAX_INPUTS, 1)));
        assert_eq!(planned(&[2], All), None);
        assert_eq!(planned(&[2, 0, 0], All), Some((0..3, 3)));
        // Too big together: the first stretch that fits.
        let files = vec![file(0, MAX_INPUT_BYTES), file(0, 10), file(0, 10)];
        assert_eq!(plan(&files, All).map(|p| p.range), Some(1..3));
        let files = vec![file(0, MAX_INPUT_BYTES); 9];
        assert!(plan(&files, Tiered).is_none());
    }
}
