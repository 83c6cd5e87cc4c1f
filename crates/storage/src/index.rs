//! The in-memory view of the applied records: the chunk files flushed so far, the batches of the
//! records after them (for `scan`/`records_since`), counts, and the running checksum. Records
//! are added only by the group-commit thread, after a group is durable; a flush replaces the
//! records it wrote to a file by that file ([`View::swap_flushed`]), a compaction its input
//! files by the merged one.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::manifest::FileMeta;
use crate::memory::{Charge, MemoryGauge, held_bytes};
use crate::types::{Record, ReplicaPosition};

/// One applied record.
pub(crate) struct Entry {
    pub lsn: u64,
    pub writer_id: u64,
    pub seq: u64,
    pub batch: RecordBatch,
    /// Size of the record's Arrow IPC encoding (used to bound `records_since`).
    pub ipc_len: usize,
}

/// An applied record in memory, with what its batch keeps allocated.
struct Held {
    entry: Entry,
    bytes: u64,
}

/// Everything readers see.
#[derive(Default)]
pub(crate) struct View {
    /// Records 1..=base are in `files` (base is the flushed lsn; 0 before any flush).
    base: u64,
    /// The checksum right after `base`.
    base_checksum: u64,
    /// Rows of the records 1..=base.
    base_rows: u64,
    /// The chunk files, in lsn order (replaced whole by a flush or compaction).
    pub files: Arc<Vec<FileMeta>>,
    /// `(b, checksum at b)`, `b + 1` being the first lsn of the oldest WAL segment kept (see
    /// `Manifest::wal_base`); `None` if not known. Moved up (before segments are deleted) by
    /// `truncate_wal`.
    pub wal_base: Option<(u64, u64)>,
    /// The records base+1, base+2, ... in lsn order.
    entries: Vec<Held>,
    /// `chain[i]`: the checksum after entry i (so a replica's checksum at any lsn ≥ base is
    /// known).
    chain: Vec<u64>,
    rows: u64,
    checksum: u64,
    /// What the batches of `entries` keep allocated, counted in the store's gauge.
    held: Charge,
    /// Bytes of the WAL segments.
    pub wal_bytes: u64,
    /// Bytes of STORE, MANIFEST and the chunk files.
    pub other_bytes: u64,
}

/// Chain one record into the replica checksum:
/// `checksum' = xxh3_64(lsn ‖ writer_id ‖ seq ‖ content digest, seed = checksum)`, all u64 LE,
/// starting from 0 for an empty replica.
pub(crate) fn chain(checksum: u64, lsn: u64, writer_id: u64, seq: u64, digest: u64) -> u64 {
    let mut b = [0u8; 32];
    b[0..8].copy_from_slice(&lsn.to_le_bytes());
    b[8..16].copy_from_slice(&writer_id.to_le_bytes());
    b[16..24].copy_from_slice(&seq.to_le_bytes());
    b[24..32].copy_from_slice(&digest.to_le_bytes());
    xxh3_64_with_seed(&b, checksum)
}

impl View {
    /// A view whose records up to `base` are in `files` (from the MANIFEST at open), counting
    /// the records held in memory in `memory`.
    pub(crate) fn flushed(
        base: u64,
        rows: u64,
        checksum: u64,
        files: Vec<FileMeta>,
        memory: &MemoryGauge,
    ) -> Self {
        View {
            held: memory.charge(0),
            wal_base: (base == 0).then_some((0, 0)),
            base,
            base_checksum: checksum,
            base_rows: rows,
            files: Arc::new(files),
            rows,
            checksum,
            ..View::default()
        }
    }

    /// Add the next record (lsn must be `last_lsn() + 1`).
    pub(crate) fn push(&mut self, entry: Entry, digest: u64) {
        debug_assert_eq!(entry.lsn, self.last_lsn() + 1);
        self.checksum = chain(self.checksum, entry.lsn, entry.writer_id, entry.seq, digest);
        self.rows += entry.batch.num_rows() as u64;
        let bytes = held_bytes(&entry.batch);
        self.held.add(bytes);
        self.entries.push(Held { entry, bytes });
        self.chain.push(self.checksum);
    }

    pub(crate) fn last_lsn(&self) -> u64 {
        self.base + self.entries.len() as u64
    }

    /// The flushed lsn: records up to it are in chunk files.
    pub(crate) fn base(&self) -> u64 {
        self.base
    }

    /// Records held in memory (those after the flushed lsn).
    pub(crate) fn in_memory(&self) -> usize {
        self.entries.len()
    }

    /// What the batches of the records held in memory keep allocated.
    pub(crate) fn in_memory_bytes(&self) -> u64 {
        self.held.bytes()
    }

    /// The last lsn of the first run of in-memory records (from `base + 1`, at least one) whose
    /// batches hold at most `max_bytes`, not past `upto` (`upto` if it is ≤ `base`).
    pub(crate) fn run_end(&self, upto: u64, max_bytes: u64) -> u64 {
        let mut end = self.base;
        let mut bytes = 0;
        for h in &self.entries {
            if h.entry.lsn > upto || (end > self.base && bytes + h.bytes > max_bytes) {
                break;
            }
            bytes += h.bytes;
            end = h.entry.lsn;
        }
        end.max(upto.min(self.base))
    }

    /// What the batches of the in-memory records `base+1..=upto` keep allocated.
    pub(crate) fn bytes_through(&self, upto: u64) -> u64 {
        self.entries
            .iter()
            .take_while(|h| h.entry.lsn <= upto)
            .map(|h| h.bytes)
            .sum()
    }

    pub(crate) fn position(&self) -> ReplicaPosition {
        ReplicaPosition {
            last_lsn: self.last_lsn(),
            rows: self.rows,
            checksum: self.checksum,
        }
    }

    /// The checksum after `lsn`: known for lsn 0 (0) and for every lsn from the flushed lsn to
    /// `last_lsn`; `None` below the flushed lsn (the chain there was dropped with the records)
    /// and past `last_lsn`.
    pub(crate) fn checksum_at(&self, lsn: u64) -> Option<u64> {
        if lsn == 0 {
            return Some(0);
        }
        match lsn.checked_sub(self.base)? {
            0 => Some(self.base_checksum),
            i => self.chain.get(usize::try_from(i - 1).ok()?).copied(),
        }
    }

    /// `(rows, checksum)` right after `lsn`, for `base <= lsn <= last_lsn`.
    pub(crate) fn at(&self, lsn: u64) -> Option<(u64, u64)> {
        let n = usize::try_from(lsn.checked_sub(self.base)?).ok()?;
        let entries = self.entries.get(..n)?;
        let rows = self.base_rows
            + entries
                .iter()
                .map(|h| h.entry.batch.num_rows() as u64)
                .sum::<u64>();
        Some((rows, self.checksum_at(lsn)?))
    }

    /// Records with lsn > `after` (≥ the flushed lsn), stopping once `max_bytes` of IPC size is
    /// reached (at least one record if there is any, unless `bytes` already counts some).
    pub(crate) fn since(
        &self,
        after: u64,
        max_bytes: usize,
        out: &mut Vec<Record>,
        bytes: &mut usize,
    ) {
        // lsns are dense, so entry i has lsn base + 1 + i.
        let start = usize::try_from(after.saturating_sub(self.base)).unwrap_or(usize::MAX);
        for e in self.entries.iter().skip(start).map(|h| &h.entry) {
            if !out.is_empty() && bytes.saturating_add(e.ipc_len) > max_bytes {
                break;
            }
            *bytes = bytes.saturating_add(e.ipc_len);
            out.push(Record {
                lsn: e.lsn,
                writer_id: e.writer_id,
                seq: e.seq,
                batch: e.batch.clone(),
            });
        }
    }

    /// The batches of in-memory records with lsn ≤ `last`, in lsn order.
    pub(crate) fn batches_through(&self, last: u64) -> Vec<RecordBatch> {
        self.entries
            .iter()
            .take_while(|h| h.entry.lsn <= last)
            .map(|h| h.entry.batch.clone())
            .collect()
    }

    /// The batches of the in-memory records `base+1..=upto` (what a flush writes).
    pub(crate) fn batches_between(&self, upto: u64) -> Vec<RecordBatch> {
        let n = usize::try_from(upto.saturating_sub(self.base)).unwrap_or(usize::MAX);
        self.entries
            .iter()
            .take(n)
            .map(|h| h.entry.batch.clone())
            .collect()
    }

    /// After a flush through `upto` committed: the records up to it are in `file` (if they had
    /// rows), so they leave memory.
    pub(crate) fn swap_flushed(&mut self, upto: u64, file: Option<FileMeta>) {
        let Some(n) = upto
            .checked_sub(self.base)
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n <= self.entries.len())
        else {
            return;
        };
        if n == 0 {
            return;
        }
        let dropped_rows: u64 = self.entries[..n]
            .iter()
            .map(|h| h.entry.batch.num_rows() as u64)
            .sum();
        let dropped_bytes: u64 = self.entries[..n].iter().map(|h| h.bytes).sum();
        self.base_checksum = self.chain[n - 1];
        self.base_rows += dropped_rows;
        self.base = upto;
        self.entries.drain(..n);
        self.chain.drain(..n);
        self.entries.shrink_to_fit();
        self.chain.shrink_to_fit();
        // Given back once the batches are gone, so a held append let in by it finds the room.
        self.held.release(dropped_bytes);
        if let Some(f) = file {
            let mut files = self.files.as_ref().clone();
            files.push(f);
            self.files = Arc::new(files);
        }
    }

    /// Drop the in-memory records after `lsn` (`base ≤ lsn`): the view is as it was right after
    /// `lsn` was applied.
    pub(crate) fn truncate_after(&mut self, lsn: u64) {
        let keep = usize::try_from(lsn.saturating_sub(self.base))
            .unwrap_or(usize::MAX)
            .min(self.entries.len());
        let dropped = self.entries.split_off(keep);
        self.chain.truncate(keep);
        self.rows -= dropped
            .iter()
            .map(|h| h.entry.batch.num_rows() as u64)
            .sum::<u64>();
        self.checksum = self.chain.last().copied().unwrap_or(self.base_checksum);
        let bytes = dropped.iter().map(|h| h.bytes).sum();
        drop(dropped);
        self.held.release(bytes);
    }

    /// Bytes of the store's files.
    pub(crate) fn bytes_on_disk(&self) -> u64 {
        self.wal_bytes + self.other_bytes
    }
}
