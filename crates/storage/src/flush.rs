//! [`ChunkStore::flush`]: move the applied records up to an lsn from memory into chunk files,
//! and [`ChunkStore::truncate_wal`]: delete WAL segments whose records are all flushed.
//!
//! A flush runs off the async runtime and holds the view's lock only to copy batch handles and,
//! at the end, to swap them for the file; appends go on meanwhile. Steps, in this order:
//!
//! ```text
//! 1. freeze   commit thread: roll the WAL (fdatasync the last segment, start a new one at
//!             L + 1), last applied lsn L and the dedup state there; F = min(through, L)
//! 2. file     rows of the next run of records (flushed, R], R ≤ F, at most
//!             `flush_run_bytes` of batches, sorted into f/<first>-<last>.parquet
//!             (tmp, fsync, rename, fsync f/)
//! 3. MANIFEST flushed_lsn R, rows and checksum at R, files, dedup state (tmp, fsync, rename,
//!             fsync dir)                                            <- the commit point
//! 4. STORE    rewritten as format 2, the first time only (an older build now refuses the
//!             directory by version instead of replaying a WAL that may be truncated)
//! 5. memory   the records ≤ R leave the view; the file joins it
//!    (2 to 5 again for the next run, until R = F)
//! ```
//!
//! Runs bound a flush's working set whatever the replica holds: the run's sort keys and order
//! and the Parquet writer's row group, counted in the store's [`crate::MemoryGauge`] while
//! they are held.
//!
//! A crash (or error) after step 2 leaves an orphan file that no MANIFEST lists: open deletes
//! it and replays the WAL as before. After step 3 the new MANIFEST holds: open reads it, replays
//! only the WAL after F, and completes step 4 if STORE still says format 1 (a format-1 build
//! meeting that directory in between sees a complete WAL, since nothing is truncated before
//! step 4). After step 4 only memory is lost, which a reopen rebuilds. A failed flush leaves the
//! open store as it was; the next flush covers the same records again, in a file of another
//! name (a MANIFEST on disk may list the failed flush's file until the next one replaces it).

use crate::chunk_file;
use crate::error::{StorageError, io_err};
use crate::fsutil;
use crate::group_commit::{Frozen, Msg};
use crate::manifest::{self, FILES_DIR, FileMeta};
use crate::meta::{self, STORE_FORMAT_V2};
use crate::sort_key::SortKey;
use crate::store::{ChunkStore, Flushed, Shared, blocking};
use crate::types::FlushReport;
use crate::wal::{read, segment};
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

/// Where a flush, compaction or snapshot install can stop as if the process died there (a test
/// hook; no-op outside tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CrashPoint {
    /// The chunk file is in place; no MANIFEST lists it.
    File,
    /// The MANIFEST is committed; STORE still says format 1.
    Manifest,
    /// STORE says format 2; the records are still in memory.
    Store,
    /// Compaction: the merged file is in place; no MANIFEST lists it.
    MergedFile,
    /// Compaction: the MANIFEST lists the merged file; its inputs are still on disk.
    MergedManifest,
    /// Snapshot install: every file verified in the staging directory; no MANIFEST there.
    SnapshotStaged,
    /// Snapshot install: the staging directory's MANIFEST is written (committed).
    SnapshotCommitted,
    /// Snapshot install: the old store is moved aside; the copy is not in place yet.
    SnapshotMovedAside,
    /// Snapshot install: the copy is in place; the old store is still beside it.
    SnapshotSwapped,
}

/// Where a test asks a step to stop: the crash point, taken once.
#[cfg(test)]
pub(crate) type CrashHook = Option<CrashPoint>;
/// Outside tests nothing stops.
#[cfg(not(test))]
pub(crate) type CrashHook = ();

/// Fails with "injected crash" if the hook asks for a stop at `at` (clearing it).
#[cfg(test)]
pub(crate) fn crash_if(
    hook: &mut CrashHook,
    dir: &std::path::Path,
    at: CrashPoint,
) -> Result<(), StorageError> {
    if *hook == Some(at) {
        *hook = None;
        return Err(StorageError::Failed {
            dir: dir.to_path_buf(),
            reason: format!("injected crash after {at:?}"),
        });
    }
    Ok(())
}

#[cfg(not(test))]
pub(crate) fn crash_if(
    _: &mut CrashHook,
    _: &std::path::Path,
    _: CrashPoint,
) -> Result<(), StorageError> {
    Ok(())
}

/// [`crash_if`] with the store's hook.
#[cfg(test)]
pub(crate) fn crash_point(shared: &Shared, at: CrashPoint) -> Result<(), StorageError> {
    let mut hook = shared
        .crash_after
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    crash_if(&mut hook, &shared.dir, at)
}

#[cfg(not(test))]
pub(crate) fn crash_point(_: &Shared, _: CrashPoint) -> Result<(), StorageError> {
    Ok(())
}

impl ChunkStore {
    /// Flush the applied records up to `through` (`u64::MAX`: all applied so far) that are not
    /// flushed yet into chunk files (one per run of
    /// [`StoreOptions::flush_run_bytes`](crate::StoreOptions::flush_run_bytes)), commit the
    /// MANIFEST after each, raise STORE to format 2 the first time, and drop those records from
    /// memory. Appends go on meanwhile. Returns what it did;
    /// nothing when there is nothing new. Flushes are serialized.
    ///
    /// **Format 2 is written by the first flush**: call it only once the cluster version allows
    /// it (after `shoal upgrade --finalize`), so a rolled-back binary never meets it. Flush only
    /// records every in-sync replica holds: [`ChunkStore::checksum_at`] answers `None` below the
    /// flushed lsn, and [`ChunkStore::scan`] may show every record of a chunk file.
    ///
    /// The file's rows are sorted by `sort_key` (the table's `sortColumns`, then its time
    /// column), ascending, equal keys in lsn order; no column: lsn order. With
    /// [`Keep::First`](crate::Keep::First) or [`Keep::Last`](crate::Keep::Last) only the first
    /// or last row of each key among the flushed records is written (earlier files may still
    /// hold the key: [`ChunkStore::scan_keeping`] and compactions settle that). The caller
    /// passes the key because it is the table's, which a store reopened at start does not
    /// know. An unknown column name is [`StorageError::InvalidOptions`] and nothing is written.
    pub async fn flush(
        &self,
        through: u64,
        sort_key: &SortKey,
    ) -> Result<FlushReport, StorageError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Msg::Freeze(tx))?;
        let frozen = rx.await.map_err(|_| StorageError::Closed {
            dir: self.dir().to_path_buf(),
        })??;
        let shared = self.shared_arc();
        let sort_key = sort_key.clone();
        blocking(self.dir(), move || {
            flush_frozen(&shared, through, &sort_key, frozen)
        })
        .await
    }

    /// Delete the WAL segments whose records all have lsn ≤ `min(through, flushed_lsn())`
    /// (never the segment being written). Call it once every replica that may still catch up
    /// record by record holds `through`: below what is left, [`ChunkStore::records_since`]
    /// answers [`StorageError::BelowRetainedLog`]. Returns the first lsn the WAL still holds.
    ///
    /// The MANIFEST is rewritten first with the checksum at the new start of the WAL (chained
    /// over the headers of the records deleted), so [`ChunkStore::checksum_at_retained`] keeps
    /// answering for what is left.
    pub async fn truncate_wal(&self, through: u64) -> Result<u64, StorageError> {
        let shared = self.shared_arc();
        let cut = blocking(self.dir(), move || advance_wal_base(&shared, through)).await?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Msg::TruncateWal(cut, tx))?;
        rx.await.map_err(|_| StorageError::Closed {
            dir: self.dir().to_path_buf(),
        })?
    }
}

/// Before segments are deleted: the lsn up to which they will be (the end of the last sealed
/// segment wholly ≤ `min(through, flushed lsn)`, 0 for none), with the MANIFEST's and the
/// view's `wal_base` moved there.
fn advance_wal_base(shared: &Arc<Shared>, through: u64) -> Result<u64, StorageError> {
    let mut st = shared.flushed_if_open()?;
    let dir = &shared.dir;
    // The view's flushed lsn moves only after STORE says format 2, so nothing is truncated
    // that a format-1 build would need.
    let (bound, wal_base) = {
        let v = shared.view.read().unwrap_or_else(PoisonError::into_inner);
        (through.min(v.base()), v.wal_base)
    };
    let segs = segment::list(dir)?;
    let cut = segs
        .windows(2)
        .map(|w| w[1].0 - 1)
        .take_while(|&end| end <= bound)
        .last();
    let Some(cut) = cut else {
        return Ok(0);
    };
    let moved = match wal_base {
        Some((b, c)) if b < cut => read::chain_through(dir, b, c, cut)?.map(|c| (cut, c)),
        Some((b, c)) => Some((b, c)),
        None => None,
    };
    if moved != wal_base && st.manifest_bytes > 0 {
        let mut m = st.manifest.clone();
        m.wal_base = moved.map(|(b, c)| [b, c]);
        st.manifest_bytes = manifest::write(dir, &m)?;
        st.manifest = m;
        let mut v = shared.view.write().unwrap_or_else(PoisonError::into_inner);
        v.wal_base = moved;
        v.other_bytes = st.bytes();
    }
    Ok(cut)
}

/// Flushes the records up to `min(through, frozen.last_lsn)` in runs of
/// [`StoreOptions::flush_run_bytes`](crate::StoreOptions::flush_run_bytes),
/// each a file and a MANIFEST commit (steps 2 to 5 of the module docs), stopping early if the
/// store is closed meanwhile.
fn flush_frozen(
    shared: &Arc<Shared>,
    through: u64,
    sort_key: &SortKey,
    frozen: Frozen,
) -> Result<FlushReport, StorageError> {
    let mut st = shared.flushed_if_open()?;
    chunk_file::key_columns(&shared.dir, &shared.schema, &sort_key.columns)?;
    let upto = through.min(frozen.last_lsn);
    let format_before = st.store_version;
    let mut report = FlushReport {
        flushed_lsn: 0,
        records: 0,
        rows: 0,
        files: Vec::new(),
        file_bytes: 0,
        upgraded_store: false,
    };
    loop {
        let (base, end) = {
            let v = shared.view.read().unwrap_or_else(PoisonError::into_inner);
            (v.base(), v.run_end(upto, shared.flush_run_bytes))
        };
        report.flushed_lsn = base;
        if end <= base || shared.closed.load(Ordering::Acquire) {
            report.upgraded_store =
                format_before < STORE_FORMAT_V2 && st.store_version >= STORE_FORMAT_V2;
            return Ok(report);
        }
        let run = flush_run(shared, &mut st, end, sort_key, &frozen)?;
        report.records += end - base;
        report.rows += run.as_ref().map_or(0, |f| f.rows);
        report.file_bytes += run.as_ref().map_or(0, |f| f.bytes);
        report.files.extend(run.map(|f| f.name));
    }
}

/// Flushes the in-memory records up to `upto` into one file; answers it (`None`: they held
/// no rows).
fn flush_run(
    shared: &Arc<Shared>,
    st: &mut Flushed,
    upto: u64,
    sort_key: &SortKey,
    frozen: &Frozen,
) -> Result<Option<FileMeta>, StorageError> {
    let dir = &shared.dir;
    let (base, batches, bytes, rows, checksum, wal_base) = {
        let v = shared.view.read().unwrap_or_else(PoisonError::into_inner);
        let (rows, checksum) = v.at(upto).ok_or_else(|| StorageError::Failed {
            dir: dir.clone(),
            reason: format!("flush: lsn {upto} is not in the view"),
        })?;
        (
            v.base(),
            v.batches_between(upto),
            v.bytes_through(upto),
            rows,
            checksum,
            v.wal_base,
        )
    };
    let files_dir = dir.join(FILES_DIR);
    if !files_dir.exists() {
        std::fs::create_dir_all(&files_dir).map_err(io_err("create directory", &files_dir))?;
        fsutil::sync_dir(dir)?;
    }
    // The batches are counted already (the view holds them until the swap); what the file's
    // writing holds besides them is counted while it runs.
    let mut working = shared.memory.charge(0);
    let file = chunk_file::write(
        &files_dir,
        &shared.schema,
        sort_key,
        &batches,
        (base + 1, upto),
        &mut working,
    )?;
    drop(working);
    drop(batches);
    crash_point(shared, CrashPoint::File)?;

    let mut m = st.manifest.clone();
    m.format = STORE_FORMAT_V2;
    m.flushed_lsn = upto;
    m.rows = rows;
    m.checksum = checksum;
    m.files.extend(file.clone());
    m.dedup_lsn = frozen.last_lsn;
    m.dedup = frozen.dedup.clone();
    m.wal_base = wal_base.map(|(b, c)| [b, c]);
    let manifest_bytes = manifest::write(dir, &m)?;
    crash_point(shared, CrashPoint::Manifest)?;

    if st.store_version < STORE_FORMAT_V2 {
        st.store_bytes = meta::write_store_file(dir, &shared.schema, STORE_FORMAT_V2)?;
        st.store_version = STORE_FORMAT_V2;
        tracing::info!(dir = %dir.display(), "chunk store raised to format 2 by its first flush");
    }
    st.manifest = m;
    st.manifest_bytes = manifest_bytes;
    crash_point(shared, CrashPoint::Store)?;

    {
        let mut v = shared.view.write().unwrap_or_else(PoisonError::into_inner);
        v.swap_flushed(upto, file.clone());
        v.other_bytes = st.bytes();
    }
    tracing::debug!(dir = %dir.display(), flushed_lsn = upto, records = upto - base,
        held_bytes = bytes,
        rows = file.as_ref().map_or(0, |f| f.rows),
        bytes = file.as_ref().map_or(0, |f| f.bytes), "flushed chunk file");
    Ok(file)
}
