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
//! Besides the windows, a map `seq → lsn` per writer lets a duplicate be answered with the lsn
//! of the original; it is only used for that answer, never to decide. It holds only the seqs
//! inside the window (`>= hi - DEDUP_WINDOW`): a seq below is refused before the map is asked,
//! so pruning it changes no answer and the state stays bounded by the number of writers.
//!
//! Once the records are flushed to chunk files (storage format 2) the WAL below the flushed
//! lsn is no longer replayed, so the state is saved with the flush ([`Dedup::snapshot`], kept in
//! the MANIFEST) and rebuilt from it ([`Dedup::restore`]) before the WAL tail is replayed.
//! Inserting a pair again is a no-op, so a snapshot taken at an lsn `L` above the flushed lsn `F`
//! followed by a replay of the records after `F` gives exactly the state at the end of the log.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

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
    /// `seq → lsn` for the applied seqs in `[lowest_tracked, hi]` (exactly the set ring bits).
    lsns: BTreeMap<u64, u64>,
}

impl WriterWindow {
    fn new(seq: u64) -> Self {
        let mut w = WriterWindow {
            hi: seq,
            ring: Box::new([0; RING_WORDS]),
            lsns: BTreeMap::new(),
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

    fn insert(&mut self, seq: u64, lsn: u64) {
        if seq < self.lowest_tracked() {
            // Only a replay can insert below the window (re-inserting a pair that a snapshot
            // already holds, or one the window has since moved past): nothing to remember.
            return;
        }
        if seq > self.hi {
            if seq - self.hi >= RING_BITS {
                self.ring.fill(0);
            } else {
                for s in self.hi + 1..=seq {
                    self.clear(s);
                }
            }
            self.hi = seq;
            let low = self.lowest_tracked();
            while let Some(entry) = self.lsns.first_entry() {
                if *entry.key() >= low {
                    break;
                }
                entry.remove();
            }
        }
        self.set(seq);
        self.lsns.entry(seq).or_insert(lsn);
    }
}

/// Applied `(writer, seq)` pairs of one replica.
#[derive(Default)]
pub(crate) struct Dedup {
    writers: HashMap<u64, WriterWindow>,
}

/// The dedup state of one replica as saved in the MANIFEST: per writer its highest seq and the
/// applied seqs of its window with their lsns, as runs where seq and lsn both step by one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DedupSnapshot {
    pub writers: Vec<WriterSnapshot>,
}

/// One writer in a [`DedupSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WriterSnapshot {
    pub writer: u64,
    pub hi: u64,
    /// `[first seq, its lsn, run length]`: seqs `seq..seq+len` applied at `lsn..lsn+len`.
    pub runs: Vec<[u64; 3]>,
}

impl DedupSnapshot {
    /// The state as of lsn `lsn` ≤ the lsn it was taken at, for a snapshot of the replica's
    /// files (whose records end at `lsn`): the pairs applied after `lsn` are dropped, and each
    /// writer's highest seq is the highest one left (a writer with none left is dropped).
    ///
    /// Pairs below a writer's window that were applied by `lsn` are not brought back (they
    /// were pruned), so this can know less than the state really was at `lsn`; it still
    /// answers every record after `lsn` exactly as the original state did when that record
    /// was applied: each such seq was inside its writer's window then, whose highest seq was
    /// at least the one left here, and it is not marked applied here. So replaying the records
    /// after `lsn` on top of it gives the state at the end of the log again.
    pub(crate) fn through(&self, lsn: u64) -> DedupSnapshot {
        let writers = self
            .writers
            .iter()
            .filter_map(|w| {
                let runs: Vec<[u64; 3]> = w
                    .runs
                    .iter()
                    .filter(|r| r[1] <= lsn)
                    .map(|&[seq, first, len]| [seq, first, len.min(lsn - first + 1)])
                    .collect();
                let hi = runs.iter().map(|r| r[0] + r[2] - 1).max()?;
                Some(WriterSnapshot {
                    writer: w.writer,
                    hi,
                    runs,
                })
            })
            .collect();
        DedupSnapshot { writers }
    }
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
            Seen::Applied(w.lsns.get(&seq).copied())
        } else {
            Seen::New
        }
    }

    /// Record that `(writer, seq)` was applied at `lsn`.
    pub(crate) fn insert(&mut self, writer: u64, seq: u64, lsn: u64) {
        self.writers
            .entry(writer)
            .or_insert_with(|| WriterWindow::new(seq))
            .insert(seq, lsn);
    }

    /// Number of writers seen.
    pub(crate) fn writers(&self) -> usize {
        self.writers.len()
    }

    #[cfg(test)]
    /// `(writer, seq) → lsn` entries held (bounded by `writers × (DEDUP_WINDOW + 1)`).
    pub(crate) fn lsn_entries(&self) -> usize {
        self.writers.values().map(|w| w.lsns.len()).sum()
    }

    /// The whole state, for the MANIFEST (writers sorted by id, so equal states save equally).
    pub(crate) fn snapshot(&self) -> DedupSnapshot {
        let mut writers: Vec<WriterSnapshot> = self
            .writers
            .iter()
            .map(|(&writer, w)| {
                let mut runs: Vec<[u64; 3]> = Vec::new();
                for (&seq, &lsn) in &w.lsns {
                    match runs.last_mut() {
                        Some(r) if r[0] + r[2] == seq && r[1] + r[2] == lsn => r[2] += 1,
                        _ => runs.push([seq, lsn, 1]),
                    }
                }
                WriterSnapshot {
                    writer,
                    hi: w.hi,
                    runs,
                }
            })
            .collect();
        writers.sort_by_key(|w| w.writer);
        DedupSnapshot { writers }
    }

    /// Rebuild the state saved by [`Dedup::snapshot`]. `Err` names what is inconsistent.
    pub(crate) fn restore(snap: &DedupSnapshot) -> Result<Self, String> {
        let mut d = Dedup::default();
        for ws in &snap.writers {
            let mut w = WriterWindow::new(ws.hi);
            w.clear(ws.hi);
            for &[seq, lsn, len] in &ws.runs {
                let last = seq
                    .checked_add(len)
                    .filter(|&end| len > 0 && end - 1 <= ws.hi && seq >= w.lowest_tracked())
                    .ok_or_else(|| {
                        format!("writer {}: run at seq {seq} outside its window", ws.writer)
                    })?;
                for (i, s) in (seq..last).enumerate() {
                    w.set(s);
                    w.lsns.insert(s, lsn + i as u64);
                }
            }
            if !w.get(ws.hi) {
                return Err(format!(
                    "writer {}: highest seq {} not applied",
                    ws.writer, ws.hi
                ));
            }
            d.writers.insert(ws.writer, w);
        }
        Ok(d)
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

    #[test]
    fn lsn_map_stays_bounded_under_100k_appends_of_one_writer() {
        let mut d = Dedup::default();
        for seq in 1..=100_000u64 {
            d.insert(1, seq, seq);
            assert!(d.lsn_entries() as u64 <= DEDUP_WINDOW + 1);
        }
        assert_eq!(d.lsn_entries() as u64, DEDUP_WINDOW + 1);
        // Answers are unchanged by the pruning: inside the window exact, below it refused.
        assert_eq!(
            d.check(1, 100_000 - DEDUP_WINDOW),
            Seen::Applied(Some(95_904))
        );
        assert_eq!(
            d.check(1, 100_000 - DEDUP_WINDOW - 1),
            Seen::OutsideWindow { highest: 100_000 }
        );
        // Two writers, out of order: each map is bounded by its own window.
        for seq in (1..=20_000u64).rev() {
            d.insert(2, seq, 200_000 + seq);
        }
        assert_eq!(d.lsn_entries() as u64, 2 * (DEDUP_WINDOW + 1));
    }

    #[test]
    fn a_snapshot_cut_at_an_earlier_lsn_replays_to_the_same_state() {
        let mut d = Dedup::default();
        let mut log = Vec::new();
        // Writer 1 far past its window, writer 2 out of order (locally shuffled seqs), writer 3
        // only after the cut; every pair is new where it is applied, as the store ensures.
        for lsn in 1..=12_000u64 {
            let (w, seq) = match lsn % 3 {
                0 => (1, lsn),
                1 => (2, (lsn ^ 0x1f) + 100),
                _ if lsn > 9_000 => (3, lsn),
                _ => (1, lsn),
            };
            assert_eq!(d.check(w, seq), Seen::New);
            d.insert(w, seq, lsn);
            log.push((w, seq, lsn));
        }
        let at_end = d.snapshot();
        let cut = 9_000;
        let mut r = Dedup::restore(&at_end.through(cut)).unwrap();
        for &(w, seq, lsn) in &log[cut as usize..] {
            assert_eq!(r.check(w, seq), Seen::New, "writer {w} seq {seq} lsn {lsn}");
            r.insert(w, seq, lsn);
        }
        assert!(r.snapshot() == at_end);
        assert!(at_end.through(12_000) == at_end);
        assert!(at_end.through(0).writers.is_empty());
    }

    #[test]
    fn snapshot_restore_answers_alike() {
        let mut d = Dedup::default();
        let mut lsn = 0;
        // Writer 1 in order, writer 2 with holes and out of order, interleaved.
        for seq in 1..=6000u64 {
            lsn += 1;
            d.insert(1, seq, lsn);
            if seq % 3 != 0 {
                lsn += 1;
                d.insert(2, 7000 - seq, lsn);
            }
        }
        d.insert(3, 42, lsn + 1);
        let snap = d.snapshot();
        let json = serde_json::to_vec(&snap).unwrap();
        let back: DedupSnapshot = serde_json::from_slice(&json).unwrap();
        let r = Dedup::restore(&back).unwrap();
        assert!(r.snapshot() == snap);
        for w in 1..=4u64 {
            for seq in 0..=7100u64 {
                assert_eq!(r.check(w, seq), d.check(w, seq), "writer {w} seq {seq}");
            }
        }
        // A replay of records the snapshot already holds changes nothing.
        let mut again = Dedup::restore(&snap).unwrap();
        again.insert(1, 6000, 1);
        again.insert(1, 10, 1);
        assert!(again.snapshot() == snap);
        let bad = DedupSnapshot {
            writers: vec![WriterSnapshot {
                writer: 1,
                hi: 10,
                runs: vec![[11, 1, 1]],
            }],
        };
        assert!(Dedup::restore(&bad).is_err());
    }
}
