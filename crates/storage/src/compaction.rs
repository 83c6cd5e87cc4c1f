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
//! The merge streams ([`crate::merge`]): one batch per input in memory, the output written
//! batch by batch; equal keys come out in lsn order, so the result is what one flush of all
//! those records writes, with the same rows kept when the table keeps only the first or last
//! of each key ([`crate::SortKey::keep`]). An input written with another sort key is read
//! whole and sorted first (equal keys then keep that file's order). The batches the merge
//! holds and the output's row group in progress count in the store's memory gauge, so a node's
//! memory budget sees a compaction as it sees a flush; an input read whole is counted once it
//! is sorted, not while it is read and sorted (up to about twice its size for a moment).
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

use std::fs::File;
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, PoisonError};

use crate::chunk_file::{self, ChunkWriter};
use crate::error::{StorageError, io_err};
use crate::flush::{CrashPoint, crash_point};
use crate::fsutil;
use crate::manifest::{self, FILES_DIR, FileMeta};
use crate::merge;
use crate::sort_key::SortKey;
use crate::store::{ChunkStore, Shared, blocking};
use crate::types::CompactReport;

/// A run of this many files of one level is merged ([`Compaction::Tiered`]).
pub const COMPACT_MIN_FILES: usize = 8;
/// Most files merged at once: the merge holds one batch of each.
const MAX_INPUTS: usize = 64;
/// Most Parquet bytes merged at once: bounds the work and rewrite of one compaction, and the
/// memory of inputs sorted by another key (read whole).
const MAX_INPUT_BYTES: u64 = 512 << 20;

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
        sort_key: &SortKey,
        how: Compaction,
    ) -> Result<CompactReport, StorageError> {
        let shared = self.shared_arc();
        let sort_key = sort_key.clone();
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
    sort_key: &SortKey,
    how: Compaction,
) -> Result<CompactReport, StorageError> {
    let _one = shared
        .compacting
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let files_dir = shared.dir.join(FILES_DIR);
    chunk_file::key_columns(&shared.dir, &shared.schema, &sort_key.columns)?;
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
    let merged = merge_into_file(shared, &files_dir, &inputs, sort_key, plan.level)?;
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

/// Step 2: the rows of `inputs` merged into one new file of `level`, only those `sort_key`
/// keeps.
fn merge_into_file(
    shared: &Shared,
    files_dir: &Path,
    inputs: &[FileMeta],
    sort_key: &SortKey,
    level: u32,
) -> Result<FileMeta, StorageError> {
    let schema = &shared.schema;
    let lsns = (
        inputs.first().map_or(0, |f| f.first_lsn),
        inputs.last().map_or(0, |f| f.last_lsn),
    );
    let mut out = ChunkWriter::create(files_dir, schema, sort_key, lsns, level)?;
    let sources = inputs
        .iter()
        .map(|f| {
            let path = files_dir.join(&f.name);
            let file = File::open(&path).map_err(io_err("open", &path))?;
            merge::sorted_file(file, &path, schema, &f.sort_key, &sort_key.columns)
        })
        .collect::<Result<Vec<_>, _>>()?;
    // The merge's batches and the writer's row group in progress count against the node's
    // memory budget, as a flush's working set does.
    let (mut reading, mut writing) = (shared.memory.charge(0), shared.memory.charge(0));
    merge::merge(
        files_dir,
        schema,
        sources,
        sort_key,
        Some(&mut reading),
        &mut |batch| {
            // Closing the store stops the merge here, so closing waits a batch, not a whole
            // compaction.
            shared.check_open()?;
            out.write(&batch)?;
            writing.set(out.buffered_bytes());
            Ok(())
        },
    )?;
    drop(reading);
    out.finish()
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
