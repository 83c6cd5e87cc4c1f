//! What the stores of a process hold in memory, counted where it is held: the batches of the
//! records not yet flushed (their buffers' real allocations, [`held_bytes`]) and the working
//! set of each flush in progress. One [`MemoryGauge`] is shared by every store opened with it
//! (a data node's memory budget reads it); each store adds to it as records are applied and
//! takes back what it frees ([`Charge`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{Array, ArrayData};
use arrow::record_batch::RecordBatch;
use tokio::sync::Notify;

/// Bytes held in memory by the stores sharing it. Cloning shares it.
#[derive(Clone, Default)]
pub struct MemoryGauge(Arc<Inner>);

#[derive(Default)]
struct Inner {
    bytes: AtomicU64,
    /// Told when bytes are given back (a flush step swapped records for a file).
    freed: Notify,
    /// Told when `bytes` crosses `mark` upwards.
    above_mark: Notify,
    mark: AtomicU64,
}

impl std::fmt::Debug for MemoryGauge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryGauge")
            .field("bytes", &self.bytes())
            .finish()
    }
}

impl MemoryGauge {
    /// Bytes held now.
    pub fn bytes(&self) -> u64 {
        self.0.bytes.load(Ordering::Relaxed)
    }

    /// Sets the level whose crossing [`MemoryGauge::above_mark`] reports (a flush policy's
    /// trigger).
    pub fn set_mark(&self, bytes: u64) {
        self.0.mark.store(bytes, Ordering::Relaxed);
    }

    /// Completes once bytes were given back after this call (register it before checking
    /// the level, as with [`Notify::notified`]).
    pub fn freed(&self) -> tokio::sync::futures::Notified<'_> {
        self.0.freed.notified()
    }

    /// Completes when the level has crossed the mark upwards since the last time it did
    /// (one stored wake-up, as [`Notify::notify_one`]).
    pub async fn above_mark(&self) {
        self.0.above_mark.notified().await;
    }

    /// A charge of `bytes` against the gauge, given back when dropped.
    pub fn charge(&self, bytes: u64) -> Charge {
        let mut c = Charge {
            gauge: self.clone(),
            bytes: 0,
        };
        c.add(bytes);
        c
    }

    fn add(&self, n: u64) {
        let before = self.0.bytes.fetch_add(n, Ordering::Relaxed);
        let mark = self.0.mark.load(Ordering::Relaxed);
        if before <= mark && before + n > mark {
            self.0.above_mark.notify_one();
        }
    }

    fn sub(&self, n: u64) {
        self.0.bytes.fetch_sub(n, Ordering::Relaxed);
        self.0.freed.notify_waiters();
    }
}

/// Bytes counted in a [`MemoryGauge`] for as long as this lives.
#[derive(Debug, Default)]
pub struct Charge {
    gauge: MemoryGauge,
    bytes: u64,
}

impl Charge {
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn add(&mut self, n: u64) {
        self.bytes += n;
        self.gauge.add(n);
    }

    /// Holds `n` from now on, adding or giving back the difference.
    pub fn set(&mut self, n: u64) {
        if n > self.bytes {
            self.add(n - self.bytes);
        } else {
            self.release(self.bytes - n);
        }
    }

    /// Gives back `n` (at most what it holds).
    pub fn release(&mut self, n: u64) {
        let n = n.min(self.bytes);
        self.bytes -= n;
        self.gauge.sub(n);
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.gauge.sub(self.bytes);
        }
    }
}

/// Bytes `batch` keeps allocated: the capacity of every distinct allocation its buffers (and
/// their children's, and null masks) point into, each counted once, plus the arrays' own
/// structs. A batch decoded from Arrow IPC holds one allocation, the message body, that all its
/// columns slice; a slice of a larger batch keeps the whole of it.
pub(crate) fn held_bytes(batch: &RecordBatch) -> u64 {
    let mut seen = HashSet::new();
    let mut bytes = 0;
    for col in batch.columns() {
        bytes += add_array(&col.to_data(), &mut seen);
    }
    bytes
}

fn add_array(data: &ArrayData, seen: &mut HashSet<usize>) -> u64 {
    let mut bytes = std::mem::size_of::<ArrayData>() as u64;
    let buffers = data
        .buffers()
        .iter()
        .chain(data.nulls().map(|n| n.buffer()));
    for b in buffers {
        if seen.insert(b.data_ptr().as_ptr() as usize) {
            bytes += b.capacity() as u64;
        }
    }
    for child in data.child_data() {
        bytes += add_array(child, seen);
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;
    use crate::store_tests::rows;

    #[test]
    fn a_decoded_batch_counts_its_message_body_once_and_a_slice_keeps_the_whole() {
        let b = rows(0..10_000);
        let ipc = codec::encode_batch(&b).unwrap();
        let decoded = codec::decode_batch(&ipc).unwrap();
        let held = held_bytes(&decoded);
        // One allocation, the body, shared by every column: about the IPC size, far below what
        // counting each buffer's allocation on its own gives.
        assert!(held <= ipc.len() as u64 + 4096, "{held} vs {}", ipc.len());
        assert!(held * 2 < decoded.get_array_memory_size() as u64);
        assert!(held_bytes(&decoded.slice(0, 10)) >= held - 1024);
    }

    #[tokio::test]
    async fn charges_count_until_dropped_and_crossing_the_mark_is_told() {
        let gauge = MemoryGauge::default();
        gauge.set_mark(100);
        let mut a = gauge.charge(60);
        let b = gauge.charge(60);
        assert_eq!(gauge.bytes(), 120);
        a.release(100);
        assert_eq!((a.bytes(), gauge.bytes()), (0, 60));
        drop(b);
        assert_eq!(gauge.bytes(), 0);
        // The crossing above stored a wake-up.
        gauge.above_mark().await;
    }
}
