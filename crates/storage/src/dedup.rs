//! Idempotency state: which `(writer_id, seq)` pairs this replica has applied.
//!
//! Per writer the store keeps the highest applied seq `hi` and a bitmap of the seqs in
//! `[hi - DEDUP_WINDOW, hi]`, so appends that arrive out of order within the window are applied
//! exactly once each. **A seq below `hi - DEDUP_WINDOW` is answered `Duplicate` without being
//! applied** (treated as already applied): a retry that old is from a writer that has since moved
//! on by more than the window, so it must have been applied, or been given up on by the writer
//! long ago. Writers must keep at most `DEDUP_WINDOW` seqs in flight.
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
    /// Already applied (or older than the window); the lsn if known.
    Applied(Option<u64>),
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

    fn is_applied(&self, seq: u64) -> bool {
        if seq > self.hi {
            false
        } else if seq < self.hi.saturating_sub(DEDUP_WINDOW) {
            true
        } else {
            self.get(seq)
        }
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
    /// Was `(writer, seq)` applied (per the window rule)?
    pub(crate) fn check(&self, writer: u64, seq: u64) -> Seen {
        match self.writers.get(&writer) {
            Some(w) if w.is_applied(seq) => Seen::Applied(self.lsns.get(&(writer, seq)).copied()),
            _ => Seen::New,
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
    fn older_than_window_is_treated_as_applied() {
        let mut d = Dedup::default();
        d.insert(1, 10_000, 1);
        // Exactly at the window's lower edge: tracked, not applied.
        assert_eq!(d.check(1, 10_000 - DEDUP_WINDOW), Seen::New);
        // Below it: assumed applied, lsn unknown.
        assert_eq!(d.check(1, 10_000 - DEDUP_WINDOW - 1), Seen::Applied(None));
        assert_eq!(d.check(1, 0), Seen::Applied(None));
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
