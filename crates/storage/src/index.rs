//! The in-memory view of the applied records: batches for `scan`/`records_since`, counts, and
//! the running checksum. Written only by the group-commit thread, after a group is durable.

use arrow::record_batch::RecordBatch;
use xxhash_rust::xxh3::xxh3_64_with_seed;

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

/// Everything readers see.
#[derive(Default)]
pub(crate) struct View {
    entries: Vec<Entry>,
    /// `chain[i]`: the checksum after entry i (so a replica's checksum at any lsn is known).
    chain: Vec<u64>,
    rows: u64,
    checksum: u64,
    pub bytes_on_disk: u64,
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
    /// Add the next record (lsn must be `last_lsn() + 1`).
    pub(crate) fn push(&mut self, entry: Entry, digest: u64) {
        debug_assert_eq!(entry.lsn, self.last_lsn() + 1);
        self.checksum = chain(self.checksum, entry.lsn, entry.writer_id, entry.seq, digest);
        self.rows += entry.batch.num_rows() as u64;
        self.entries.push(entry);
        self.chain.push(self.checksum);
    }

    pub(crate) fn last_lsn(&self) -> u64 {
        self.entries.last().map_or(0, |e| e.lsn)
    }

    pub(crate) fn position(&self) -> ReplicaPosition {
        ReplicaPosition {
            last_lsn: self.last_lsn(),
            rows: self.rows,
            checksum: self.checksum,
        }
    }

    /// The checksum after `lsn` (0 for lsn 0), or `None` past `last_lsn`.
    pub(crate) fn checksum_at(&self, lsn: u64) -> Option<u64> {
        match lsn {
            0 => Some(0),
            _ => self.chain.get(usize::try_from(lsn - 1).ok()?).copied(),
        }
    }

    /// Records with lsn > `after`, stopping once `max_bytes` of IPC size is reached (at least
    /// one record if there is any).
    pub(crate) fn since(&self, after: u64, max_bytes: usize) -> Vec<Record> {
        // lsns are dense from 1, so entry i has lsn i + 1.
        let start = usize::try_from(after).unwrap_or(usize::MAX);
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for e in self.entries.iter().skip(start) {
            if !out.is_empty() && bytes.saturating_add(e.ipc_len) > max_bytes {
                break;
            }
            bytes = bytes.saturating_add(e.ipc_len);
            out.push(Record {
                lsn: e.lsn,
                writer_id: e.writer_id,
                seq: e.seq,
                batch: e.batch.clone(),
            });
        }
        out
    }

    /// The batches of records with lsn ≤ `last`, in lsn order.
    pub(crate) fn batches_through(&self, last: u64) -> Vec<RecordBatch> {
        self.entries
            .iter()
            .take_while(|e| e.lsn <= last)
            .map(|e| e.batch.clone())
            .collect()
    }
}
