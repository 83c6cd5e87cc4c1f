//! Public value types of the store API.

use std::sync::Arc;
use std::time::Duration;

use arrow::record_batch::RecordBatch;

use crate::StorageError;
use crate::memory::MemoryGauge;

/// Called once, on the store's commit thread, when a WAL write or fdatasync fails and the store
/// becomes poisoned ([`StorageError::Failed`]), after the failed group was cut from the WAL.
/// A data node uses it to stop: only a reopen, in a fresh process, can be trusted again.
pub type FailureHook = Arc<dyn Fn(&StorageError) + Send + Sync>;

/// Told how long each fdatasync of a WAL segment took (a data node's latency histogram).
pub type SyncHook = Arc<dyn Fn(Duration) + Send + Sync>;

/// Options for [`crate::ChunkStore::create`] / [`crate::ChunkStore::open`].
#[derive(Clone)]
pub struct StoreOptions {
    /// `dataSync=1`: an append returns only after its record is fdatasync'd (shared with the
    /// other appends of its commit group). `false`: it returns once the record is written to the
    /// OS; a machine crash (not a process crash) can then lose acknowledged appends.
    pub data_sync: bool,
    /// Roll to a new WAL segment once the current one would exceed this many bytes. A single
    /// record larger than this gets a segment of its own.
    pub segment_bytes: u64,
    /// Told when a write failure poisons the store.
    pub on_failure: Option<FailureHook>,
    /// Told the duration of every fdatasync of a WAL segment.
    pub on_sync: Option<SyncHook>,
    /// The commit thread exits after this long with nothing to do, and starts again on the
    /// next write (an idle chunk holds no thread).
    pub commit_idle: Duration,
    /// Counts the batches of the records not yet flushed and each flush's working set; share
    /// one among the stores of a process to bound them together (a memory budget).
    pub memory: MemoryGauge,
    /// Most bytes (what their batches hold in memory) of records one chunk file of a flush
    /// takes; a flush of more writes several files, one after another, each committed on its
    /// own, so its working set stays about this size however much the replica holds.
    pub flush_run_bytes: u64,
}

impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreOptions")
            .field("data_sync", &self.data_sync)
            .field("segment_bytes", &self.segment_bytes)
            .field("on_failure", &self.on_failure.is_some())
            .field("on_sync", &self.on_sync.is_some())
            .field("commit_idle", &self.commit_idle)
            .field("memory", &self.memory)
            .field("flush_run_bytes", &self.flush_run_bytes)
            .finish()
    }
}

/// Default [`StoreOptions::commit_idle`].
pub const DEFAULT_COMMIT_IDLE: Duration = Duration::from_secs(10);

/// Default [`StoreOptions::flush_run_bytes`]: 32 MiB.
pub const DEFAULT_FLUSH_RUN_BYTES: u64 = 32 << 20;

/// Default segment size: 64 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            data_sync: true,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            on_failure: None,
            on_sync: None,
            commit_idle: DEFAULT_COMMIT_IDLE,
            memory: MemoryGauge::default(),
            flush_run_bytes: DEFAULT_FLUSH_RUN_BYTES,
        }
    }
}

/// What an append (or `apply_at`) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// The record was written (and synced when `data_sync`) at this lsn.
    Applied {
        /// The record's log sequence number.
        lsn: u64,
    },
    /// `(writer_id, seq)` was applied before; nothing changed. `lsn` is the original record's
    /// lsn; `None` would mean it is not known, which callers must not take as an
    /// acknowledgement (a seq older than the dedup window is an error, never a `Duplicate`).
    Duplicate {
        /// The lsn of the original record, if known.
        lsn: Option<u64>,
    },
}

impl AppendOutcome {
    /// The lsn of the record (new or original), if known.
    pub fn lsn(&self) -> Option<u64> {
        match *self {
            AppendOutcome::Applied { lsn } => Some(lsn),
            AppendOutcome::Duplicate { lsn } => lsn,
        }
    }
}

/// What [`crate::ChunkStore::open`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpenReport {
    /// Records replayed from the WAL: those after `flushed_lsn` (so `last_lsn` after open when
    /// nothing was flushed).
    pub records: u64,
    /// Bytes cut from the end of the last segment (a torn write); 0 normally.
    pub torn_tail_bytes: u64,
    /// WAL segment files found (before a first one is created for an empty store).
    pub segments: u64,
    /// Segments not read at all because every record in them is in a chunk file.
    pub skipped_segments: u64,
    /// The MANIFEST's flushed lsn (0 when nothing was flushed): records up to it are in chunk
    /// files and were not replayed.
    pub flushed_lsn: u64,
    /// Chunk files listed in the MANIFEST.
    pub files: u64,
    /// Files in `f/` that no MANIFEST lists (left by a flush that crashed), deleted.
    pub orphans_removed: u64,
}

/// What [`crate::ChunkStore::flush`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FlushReport {
    /// The flushed lsn now: every record up to it is in a chunk file and out of memory.
    pub flushed_lsn: u64,
    /// Records moved out of memory by this flush (0: nothing new to flush).
    pub records: u64,
    /// Rows written to the new chunk files.
    pub rows: u64,
    /// The new chunk files (`f/<name>`), in lsn order: one per run of
    /// [`StoreOptions::flush_run_bytes`]; none if the records held no rows.
    pub files: Vec<String>,
    /// Their size.
    pub file_bytes: u64,
    /// Whether this flush raised the STORE file from format 1 to 2.
    pub upgraded_store: bool,
}

/// What [`crate::ChunkStore::compact`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactReport {
    /// Files merged (0: none were due, nothing was written).
    pub inputs: u64,
    /// Their total size.
    pub input_bytes: u64,
    /// The merged file (`f/<name>`).
    pub file: Option<String>,
    /// Its size.
    pub file_bytes: u64,
    /// Rows in it.
    pub rows: u64,
    /// Its level (1 + the highest input level).
    pub level: u32,
    /// Chunk files the replica has now.
    pub files: u64,
}

/// One applied record, as returned by [`crate::ChunkStore::records_since`].
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The record's lsn.
    pub lsn: u64,
    /// The writer that appended it.
    pub writer_id: u64,
    /// The writer's sequence number.
    pub seq: u64,
    /// The rows (with the chunk's schema).
    pub batch: RecordBatch,
}

/// A consistent view of a replica's position, for comparing replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaPosition {
    /// Highest applied lsn (0 when empty).
    pub last_lsn: u64,
    /// Rows held.
    pub rows: u64,
    /// Content checksum after `last_lsn`.
    pub checksum: u64,
}
