//! Idempotency state: which `(writer_id, seq)` pairs this replica has applied.
//!
//! Per writer the store keeps the highest applied seq `hi` and a bitmap of the seqs in
//! `[hi - DEDUP_WINDOW, hi]`, so appends that arrive out of order within the window are applied
//! exactly once each. **A seq below `hi - DEDUP_WINDOW` is refused**
//! ([`Seen::OutsideWindow`], surfaced as `StorageError::OutsideDedupWindow`): whether it was
//! applied is not tracked, so it can be neither applied (it may be a duplicate) nor acknowledged
//! (it may never have been written). Writers must keep fewer than `DEDUP_WINDOW` seqs in flight.
//!
//! The state is not stored separately: every WAL record carries its `(writer_id, seq)`, and
//! replaying the WAL in lsn order rebuilds exactly the state the live store had, on this replica
//! and on any replica that applied the same records (invariant 2: remembered durably and
//! replicated with the data).
//!
//! Besides the windows, a map `(writer, seq) → lsn` (about 40 bytes per record) lets a
//! duplicate be answered with the lsn of the original; it is only used for that answer, never to
//! decide.

use std::collections::HashMap;

/// How many seqs below a writer's highest applied seq are tracked exactly.
pub const DEDUP_WINDOW: u64 = 4096;

/// Bits in each writer's ring (a power of two above `DEDUP_WINDOW + 1`).
const RING_BITS: u64 = 8192;
const RING_WORDS: usize = (RING_BITS / 64) as usize;

/// Answer of [`Dedup::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Never applied: apply it.
    New,
    /// Already applied; the lsn of the original if known.
    Applied(Option<u64>),
    /// Below the writer's window: whether it was applied is unknown.
    OutsideWindow {
        /// The writer's highest applied seq.
        highest: u64,
    },
}

struct WriterWindow {
    hi: u64,
    ring: Box<[u64; RING_WORDS]>,
}

impl WriterWindow {
    fn new(seq: u64) -> Self {
        let mut w = WriterWindow {
            hi: seq,
            ring: Box::new([0; RING_WORDS]),
        };
        w.set(seq);
        w
    }

    fn pos(seq: u64) -> (usize, u64) {
        let bit = seq % RING_BITS;
        ((bit / 64) as usize, 1u64 << (bit % 64))
    }

    fn get(&self, seq: u64) -> bool {
        let (w, m) = Self::pos(seq);
        self.ring[w] & m != 0
    }

    fn set(&mut self, seq: u64) {
        let (w, m) = Self::pos(seq);
        self.ring[w] |= m;
    }

    fn clear(&mut self, seq: u64) {
        let (w, m) = Self::pos(seq);
        self.ring[w] &= !m;
    }

    /// Lowest seq whose state is tracked exactly.
    fn lowest_tracked(&self) -> u64 {
        self.hi.saturating_sub(DEDUP_WINDOW)
    }

    fn insert(&mut self, seq: u64) {
        if seq > self.hi {
            if seq - self.hi >= RING_BITS {
                self.ring.fill(0);
            } else {
                for s in self.hi + 1..=seq {
                    self.clear(s);
                }
            }
            self.hi = seq;
        }
        self.set(seq);
    }
}

/// Applied `(writer, seq)` pairs of one replica.
#[derive(Default)]
pub(crate) struct Dedup {
    writers: HashMap<u64, WriterWindow>,
    lsns: HashMap<(u64, u64), u64>,
}

impl Dedup {
    /// Was `(writer, seq)` applied, and if it is below the window, what the window is.
    pub(crate) fn check(&self, writer: u64, seq: u64) -> Seen {
        let Some(w) = self.writers.get(&writer) else {
            return Seen::New;
        };
        if seq > w.hi {
            Seen::New
        } else if seq < w.lowest_tracked() {
            Seen::OutsideWindow { highest: w.hi }
        } else if w.get(seq) {
            Seen::Applied(self.lsns.get(&(writer, seq)).copied())
        } else {
            Seen::New
        }
    }

    /// Record that `(writer, seq)` was applied at `lsn`.
    pub(crate) fn insert(&mut self, writer: u64, seq: u64, lsn: u64) {
        self.writers
            .entry(writer)
            .and_modify(|w| w.insert(seq))
            .or_insert_with(|| WriterWindow::new(seq));
        self.lsns.insert((writer, seq), lsn);
    }

    /// Number of writers seen.
    pub(crate) fn writers(&self) -> usize {
        self.writers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_and_repeats() {
        let mut d = Dedup::default();
        assert_eq!(d.check(1, 1), Seen::New);
        d.insert(1, 1, 10);
        assert_eq!(d.check(1, 1), Seen::Applied(Some(10)));
        assert_eq!(d.check(1, 2), Seen::New);
        assert_eq!(d.check(2, 1), Seen::New, "writers are independent");
    }

    #[test]
    fn out_of_order_within_window_is_exact() {
        let mut d = Dedup::default();
        let mut lsn = 0;
        // Apply every even seq up to 4000 in descending order, then the odd ones.
        for seq in (0..=4000u64).rev().filter(|s| s % 2 == 0) {
            assert_eq!(d.check(7, seq), Seen::New);
            lsn += 1;
            d.insert(7, seq, lsn);
        }
        for seq in (1..4000u64).filter(|s| s % 2 == 1) {
            assert_eq!(d.check(7, seq), Seen::New, "seq {seq} must still be new");
            lsn += 1;
            d.insert(7, seq, lsn);
        }
        for seq in 0..=4000u64 {
            assert!(matches!(d.check(7, seq), Seen::Applied(Some(_))));
        }
    }

    #[test]
    fn older_than_window_is_refused_applied_or_not() {
        let mut d = Dedup::default();
        d.insert(1, 5, 1);
        d.insert(1, 10_000, 2);
        // Exactly at the window's lower edge: tracked, not applied.
        assert_eq!(d.check(1, 10_000 - DEDUP_WINDOW), Seen::New);
        // Below it, never applied or applied (seq 5): the answer is the same, "unknown".
        let outside = Seen::OutsideWindow { highest: 10_000 };
        assert_eq!(d.check(1, 10_000 - DEDUP_WINDOW - 1), outside);
        assert_eq!(d.check(1, 5), outside);
        assert_eq!(d.check(1, 0), outside);
        // Other writers have their own window.
        assert_eq!(d.check(2, 0), Seen::New);
    }

    #[test]
    fn ring_slots_are_cleared_when_hi_advances() {
        let mut d = Dedup::default();
        d.insert(1, 100, 1);
        d.insert(1, 4000, 2);
        d.insert(1, 8300, 3);
        // 100 + RING_BITS shares seq 100's ring slot and lies inside the window now.
        assert_eq!(d.check(1, 100 + RING_BITS), Seen::New);
        // A jump larger than the ring clears everything.
        d.insert(1, 8300 + 3 * RING_BITS, 4);
        assert_eq!(d.check(1, 8300 + 3 * RING_BITS - 1), Seen::New);
        assert_eq!(d.writers(), 1);
    }
}
