//! # shoal-storage: the durable store of one chunk replica
//!
//! A *chunk* is one partition of one table; a data node holds many chunk replicas. This crate
//! stores one replica's rows durably and answers what replication, recovery and queries need.
//! No networking. The entry point is [`ChunkStore`].
//!
//! ## Model
//! Every append carries `(writer_id, seq)` and one Arrow [`RecordBatch`] with the chunk's schema
//! (fixed at creation). Each applied append gets the next log sequence number (`lsn` 1, 2, 3…,
//! dense per replica). Replicas share lsns: the primary appends, the other replica
//! [`ChunkStore::apply_at`]s the same lsn, and a stale replica catches up with
//! [`ChunkStore::records_since`]. Replicas holding the same records have the same
//! [`ChunkStore::checksum`]. A replica that diverged (records after the prefix it shares with
//! its primary, never acknowledged) is cut back to that prefix by [`ChunkStore::cut_tail`]
//! while those records are not flushed yet.
//!
//! **Idempotency** (invariant 2): the `(writer_id, seq)` of each record is part of the record, so
//! what was applied is remembered durably and replicated with the data; re-applying a pair gives
//! [`AppendOutcome::Duplicate`] and changes nothing. Per writer the highest applied seq plus a
//! window of the [`DEDUP_WINDOW`] seqs below it are tracked exactly, so out-of-order arrival within
//! the window is applied exactly once. **A seq older than the window is refused**
//! ([`StorageError::OutsideDedupWindow`]), neither applied nor acknowledged: whether it was
//! applied is not tracked. Writers must keep fewer than `DEDUP_WINDOW` seqs in flight.
//!
//! ## On-disk format (a directory per replica)
//! ```text
//! <dir>/STORE                        marker + format version (1 or 2) + Arrow schema
//! <dir>/LOCK                         flock'd while a ChunkStore has the directory open
//! <dir>/00000000000000000001.wal     WAL segment, named after its first lsn
//! <dir>/00000000000000004711.wal     ... the last segment is the only one ever written to
//! <dir>/MANIFEST                     format 2 only: flushed lsn, chunk files, dedup state
//! <dir>/f/<first>-<last>.parquet     format 2 only: immutable chunk files (20-digit lsns),
//!                                    written by flushes and merged by compactions
//! ```
//! All integers are little endian. `docs/FORMAT.md` (in the repository) describes every file
//! byte by byte; in short:
//! - `STORE`: `[magic "SHOALCHK"][version u32][crc32 u32][len u32][schema as Arrow IPC stream]`.
//! - Segment: a 32-byte header `[magic "SHOALWAL"][version u32][0u32][first_lsn u64][0u32]
//!   [crc32 u32]`, then frames.
//! - Frame: `[len u32][crc32 of payload u32][payload]`; payload = `[record version u8][kind u8]
//!   [flags u16][lsn u64][writer_id u64][seq u64][content digest u64]` (36 bytes) followed by the
//!   Arrow IPC *stream* of the batch (schema message, one record batch, end-of-stream), so each
//!   record decodes on its own.
//! - `MANIFEST`: `[magic "SHOALMAN"][version u32][crc32 u32][len u32][JSON]`: flushed lsn `F`,
//!   rows and checksum at `F`, the chunk files (lsn range, rows, bytes, sort key, per-column
//!   min/max, level: 0 flushed, n > 0 compacted; absent = 0), the dedup state.
//! - Chunk file: Parquet, the rows of the records of its lsn range sorted by
//!   the sort key `flush` is given (stable; only the first or last row of each key when the
//!   key says so), ZSTD, 128k-row row groups, page statistics, `shoal.format=2` and the lsn
//!   range in its key-value metadata.
//!
//! **Format 1** (what [`ChunkStore::create`] writes, and all earlier releases read): every
//! record is in the WAL and in memory. **Format 2** starts with the first
//! [`ChunkStore::flush`]: records up to the flushed lsn `F` are in chunk files and out of memory,
//! the WAL is replayed only after `F`, and WAL segments wholly ≤ `F` may be deleted
//! ([`ChunkStore::truncate_wal`]). This build reads both; a store stays format 1 until a caller
//! flushes it.
//!
//! Versions: `STORE` formats 1 and 2, segment format 1, record format 1, manifest format 1 (see
//! [`STORE_FORMAT_VERSION`], [`SEGMENT_FORMAT_VERSION`], [`RECORD_FORMAT_VERSION`],
//! [`MANIFEST_FORMAT_VERSION`]). A higher or unknown version or record kind is refused with
//! [`StorageError::UnsupportedVersion`] naming the file; nothing is modified, so a format-1
//! build meeting a flushed store refuses it by name, never as "corrupt". New formats must only
//! be written once the cluster version is finalized (`shoal upgrade --finalize`), so a
//! rolled-back binary never meets them: a caller (the data node) must call `flush` only then.
//!
//! ## Durability assumptions and rules
//! - Files created whole (`STORE`, each new segment with its header, `MANIFEST`, chunk files)
//!   are written to `name.tmp`, fsync'd, renamed into place, and the directory is fsync'd.
//!   Leftover `*.tmp` files are deleted on open.
//! - Records are only appended to the last segment. With `data_sync` an append is acknowledged
//!   after `fdatasync` of its segment (which also persists the file size). The store relies on
//!   the usual POSIX/Linux contract: data written before a successful `fdatasync` survives a
//!   power loss; data after it may be partly written, in any order of pages.
//! - **Group commit**: one thread drains a queue of pending appends, writes them with one
//!   `write`, issues one `fdatasync`, then completes all of them. See [`StoreStats::fsyncs`].
//!   The thread exits after [`StoreOptions::commit_idle`] with nothing to do and the next write
//!   starts it again, so an idle replica holds no OS thread.
//! - A segment is **sealed** when the next one is created: it is fdatasync'd first (even with
//!   `data_sync = false`), so a sealed segment never has a torn tail and is never rewritten.
//! - Open replays the segments after the flushed lsn (all of them in format 1) and verifies each
//!   CRC and that lsns are dense; segments wholly ≤ the flushed lsn are not read, and records
//!   ≤ it are checked but not decoded. A short or
//!   CRC-bad record at the end of the **last** segment is a torn write: the file is truncated
//!   there, fsync'd, and the dropped bytes are reported in [`OpenReport::torn_tail_bytes`].
//!   Anything else — a bad record in a sealed segment, a bad record in the last segment that is
//!   followed by a CRC-valid record with a later lsn (found by scanning the rest of the file),
//!   an lsn gap, an undecodable batch — is [`StorageError::Corrupt`] naming the file and offset;
//!   nothing is silently skipped. A power loss can leave the pages of the last unsynced write
//!   persisted out of order, which looks like that second case although nothing acknowledged
//!   was lost; since the store cannot tell, it refuses, and the data node decides: if an in-sync
//!   peer holds the lsns, [`ChunkStore::open_discarding_damaged_tail`] cuts the last segment at
//!   the first bad record and the replica catches up from the peer.
//! - A failed `write`/`fdatasync` fails the whole group and poisons the store
//!   ([`StorageError::Failed`]) until it is reopened: after a failed fsync the page cache can no
//!   longer be trusted (on Linux, pages whose writeback failed may be marked clean and still be
//!   read back). The failed group's bytes are cut from the WAL at once (segments it created are
//!   deleted, the last segment truncated to where the group began, then fdatasync'd), and
//!   [`StoreOptions::on_failure`] is told. So a reopen in this boot never replays a record of
//!   a failed group (its pages may be in the cache only), nor does one after a power loss once
//!   the cut was fdatasync'd; with `data_sync`, everything before the group was fdatasync'd by
//!   earlier groups. Not guaranteed: if the cut itself fails (the disk is gone) the failure says
//!   so, and a reopen may find the group in the page cache; a crash before the cut leaves an
//!   ordinary unsynced tail (replayed only as far as it reached the disk); with `data_sync =
//!   false` acknowledged records were never fdatasync'd, and a writeback error on them is seen,
//!   if ever, only when a segment is sealed.
//! - Format 1: the WAL is the source of truth; the rows are also kept in memory (for `scan` and
//!   `records_since`). The `(writer, seq) → lsn` map holds only each writer's window (at most
//!   `DEDUP_WINDOW + 1` entries per writer).
//!
//! ## Flush: chunk files, MANIFEST, and the commit order (format 2)
//! [`ChunkStore::flush`]`(through)` moves the applied records up to `F = min(through, last
//! applied lsn)` out of memory, in this order (each step durable before the next):
//! 1. *freeze* on the commit thread, between two groups: the WAL is rolled (the last segment
//!    fdatasync'd, so the saved state never claims a record a power loss could still take, even
//!    with `data_sync = false`; and a new segment started at `L + 1`, so a flush of everything
//!    leaves the WAL at or below `F` in whole segments that open skips unread and
//!    [`ChunkStore::truncate_wal`] deletes); then the last applied lsn `L ≥ F` and the dedup
//!    state there;
//! 2. the chunk file for the next run of records after the previous flush, up to `F` and at
//!    most [`StoreOptions::flush_run_bytes`] of batches in memory, created whole under `f/`
//!    (`name.tmp`, fsync, rename, fsync `f/`); appends go on meanwhile;
//! 3. `MANIFEST` (whole, like `STORE`): **the commit point** of that run;
//! 4. `STORE` rewritten as format 2, the first time only;
//! 5. the run's records leave memory (the view's lock is held only for this swap); steps 2–5
//!    again for the next run, until `F`.
//!
//! A crash after 2 leaves a file no MANIFEST lists: open deletes it and replays as before.
//! After 3, open uses the new MANIFEST and, if `STORE` still says format 1, rewrites it as
//! format 2 before anything else (a format-1 build running in between sees a complete WAL,
//! since nothing is truncated before step 4). After 4 only memory is lost. A failed flush
//! leaves the open store as it was. Reopening after any of these gives the same position,
//! rows, checksum, dedup answers and scan (tested at each step).
//!
//! Open then costs the unflushed WAL tail plus the number of files, not everything stored: the
//! position continues from the MANIFEST's `(F, rows, checksum)`, dedup from its snapshot plus the
//! tail (re-inserting a pair the snapshot holds is a no-op, so a snapshot taken at `L > F` is
//! exact too).
//!
//! After a flush: [`ChunkStore::scan`] returns the chunk files' rows (sorted by the sort key
//! within a file) then the in-memory records; [`ChunkStore::records_since`] below `F` reads the
//! records back from the WAL segments on disk, and answers [`StorageError::BelowRetainedLog`]
//! once [`ChunkStore::truncate_wal`] deleted them (the caller copies the replica whole);
//! [`ChunkStore::checksum_at`] is known for lsn 0 and `F..=last_lsn` only (the 8-byte-per-record
//! chain below `F` goes with the records), `None` below, which replication takes for
//! "diverged". So a caller flushes only what every in-sync replica holds.
//! [`ChunkStore::checksum_at_retained`] also answers below `F` while the WAL holds the lsn: it
//! chains the checksum from the MANIFEST's `wal_base` (the checksum just before the oldest
//! segment kept, moved up by `truncate_wal` before it deletes) over the record headers on disk,
//! so a replica that is only behind is not taken for a diverged one.
//!
//! ## Snapshot: copying a replica whole (format 2)
//! A replica that cannot catch up record by record (behind the retained WAL, or diverged) is
//! replaced by a copy of its primary's committed flush state: [`ChunkStore::export_snapshot`]
//! (STORE, the chunk files as they are, a MANIFEST for the copy whose dedup state is cut back to
//! the flushed lsn), received by a [`SnapshotInstall`] into `<dir>.incoming` next to the store
//! (sizes and xxh3 checked; the staged MANIFEST is the commit point), swapped in by
//! [`ChunkStore::install_snapshot`] (renames). [`ChunkStore::open`] first finishes a committed
//! install or discards an uncommitted one ([`ChunkStore::finish_install`]), so after a crash the
//! replica is wholly the old one or wholly the copy. The copy continues at the flushed lsn with
//! an empty WAL; the records after it follow by `apply_at`.
//!
//! ## Compaction (format 2)
//! Every flush adds a file, so a chunk written for long would have ever more files, and every
//! scan would open them all. [`ChunkStore::compact`] merges a contiguous run of files (lsn
//! ranges stay disjoint and in order) into one, sorted by the sort key: with
//! [`Compaction::Tiered`] a run of [`COMPACT_MIN_FILES`] files of one level (flushes write
//! level 0) becomes one file a level up, so a chunk keeps fewer than that many files per level;
//! with [`Compaction::All`] (a cold chunk) every file becomes one. At most 64 files and 512 MiB
//! of Parquet per merge. The merge streams (a batch per input in memory) and keeps the order
//! one flush of those records would write: by key, equal keys in lsn order. Commit order, each
//! step durable before the next:
//! 1. the merged file under `f/` (`name.tmp`, fsync, rename, fsync `f/`), without the flush
//!    lock: appends and flushes go on (compactions are serialized);
//! 2. `MANIFEST` listing it instead of its inputs (under the flush lock): **the commit point**;
//! 3. the view's file list swapped, then the inputs deleted.
//!
//! A crash after 1 leaves the merged file an orphan, after 2 the inputs: open deletes files no
//! MANIFEST lists, so the store reopens the same either way (tested at both points). Position,
//! checksum, dedup and the rows a scan returns do not change. A scan opens its files under the
//! view's lock, so it has a compaction's inputs open before they can be deleted, and reads on
//! (Linux keeps an unlinked file while it is open). Closing a store stops a compaction at its
//! next batch.
//!
//! ## Keeping the first or last row of a key (`keepDuplicates`)
//! A [`SortKey`] carries, besides the columns, which rows equal on all of them the table
//! keeps ([`Keep`]: all, the first or the last written, DolphinDB's `keepDuplicates`). With
//! `First` or `Last` a flush writes only the first or last row of each key among the records
//! it flushes, and a compaction only the first or last among its inputs; "first" and "last"
//! are in lsn order (then row order within an append), which the stable sort and the merge's
//! tie-break (earlier file first) preserve. A key's rows can therefore sit in several files
//! and in memory until a compaction meets them all, so a scan of such a key
//! ([`ChunkStore::scan_stream`], [`ChunkStore::scan_keeping`]) merges the files and the
//! in-memory rows (pruned only by conditions on key columns) and keeps the first or last row
//! itself: a query gets the deduplicated answer whatever has been flushed or compacted. What is kept is a function of
//! the records alone (keeping the first of firsts is keeping the first), so replicas that
//! flushed at different lsns answer the same, and their checksums, which chain the records,
//! are equal as before. Dropped rows stay in the WAL until it is truncated, and
//! [`ReplicaPosition::rows`] keeps counting every row appended.
//!
//! ## Scans
//! [`ChunkStore::scan_stream`] streams a chunk: its files one Parquet batch at a time, then the
//! in-memory batches, only the columns asked for, skipping files (by their MANIFEST min/max) and
//! row groups (by their footer statistics) that the caller's [`Prune`] rules out; what it read
//! and skipped is counted in [`StoreStats`] (`scan_*`).
//!
//! [`RecordBatch`]: arrow::record_batch::RecordBatch

mod chunk_file;
mod codec;
mod commit_thread;
mod compaction;
mod dedup;
mod error;
mod flush;
mod fsutil;
mod group_commit;
mod index;
mod manifest;
mod memory;
mod merge;
mod meta;
mod ordered;
mod scan;
mod snapshot;
mod sort_key;
mod stats;
mod store;
mod summary;
mod tail;
mod types;
mod wal;

#[cfg(test)]
mod store_tests;

pub use compaction::{COMPACT_MIN_FILES, Compaction};
pub use dedup::DEDUP_WINDOW;
pub use error::StorageError;
pub use manifest::{FILES_DIR, MANIFEST_FILE, MANIFEST_FORMAT_VERSION};
pub use memory::{Charge, MemoryGauge};
pub use meta::{LOCK_FILE, STORE_FILE, STORE_FORMAT_V1, STORE_FORMAT_V2, STORE_FORMAT_VERSION};
pub use ordered::{Bar, ReadOrder};
pub use scan::{ColumnStats, ContainerStats, Prune, ScanBatches, ScanOptions};
pub use snapshot::{
    SNAPSHOT_PART_BYTES, SnapshotExport, SnapshotFile, SnapshotInstall, StagedSnapshot,
};
pub use sort_key::{Keep, SortKey};
pub use stats::StoreStats;
pub use store::ChunkStore;
pub use summary::Summary;
pub use types::{
    AppendOutcome, CompactReport, DEFAULT_COMMIT_IDLE, DEFAULT_FLUSH_RUN_BYTES,
    DEFAULT_SEGMENT_BYTES, FailureHook, FlushReport, OpenReport, Record, ReplicaPosition,
    StoreOptions, SyncHook,
};
pub use wal::record::RECORD_FORMAT_VERSION;
pub use wal::segment::SEGMENT_FORMAT_VERSION;
