//! Keeps each writer's appends in flight within a span of seqs, so none can fall below the
//! data nodes' dedup window (4096 seqs below the writer's highest applied seq), where an append
//! is refused because whether it was applied is no longer known.
//!
//! Counting appends in flight is not enough: one append retrying for a minute while others
//! complete would let the writer move on by any number of seqs. So an append of `seq` waits
//! until `seq` is less than `oldest + span`, `oldest` being the writer's lowest seq in flight.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use tokio::sync::Notify;

/// Each writer's seqs in flight (with a count: the same seq may be sent twice at once).
pub(crate) struct SeqSpread {
    span: u64,
    in_flight: Mutex<HashMap<u64, BTreeMap<u64, usize>>>,
    left: Notify,
}

/// One append in flight; leaving it (drop) lets waiting appends of the writer go.
pub(crate) struct Slot<'a> {
    spread: &'a SeqSpread,
    writer: u64,
    seq: u64,
}

impl SeqSpread {
    pub(crate) fn new(span: u64) -> Self {
        Self {
            span,
            in_flight: Mutex::default(),
            left: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, BTreeMap<u64, usize>>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until `seq` is within the span above the writer's oldest seq in flight. A seq
    /// below that oldest one (a caller re-sending an old seq) goes at once: it does not widen
    /// the span of what is in flight above it.
    pub(crate) async fn enter(&self, writer: u64, seq: u64) -> Slot<'_> {
        loop {
            // Registered before looking, so a slot left in between still wakes us.
            let left = self.left.notified();
            tokio::pin!(left);
            left.as_mut().enable();
            {
                let mut all = self.lock();
                let seqs = all.entry(writer).or_default();
                let fits = seqs
                    .first_key_value()
                    .is_none_or(|(&oldest, _)| seq < oldest.saturating_add(self.span));
                if fits {
                    *seqs.entry(seq).or_default() += 1;
                    return Slot {
                        spread: self,
                        writer,
                        seq,
                    };
                }
            }
            left.await;
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut all = self.spread.lock();
        if let Some(seqs) = all.get_mut(&self.writer) {
            if let Some(n) = seqs.get_mut(&self.seq) {
                *n -= 1;
                if *n == 0 {
                    seqs.remove(&self.seq);
                }
            }
            if seqs.is_empty() {
                all.remove(&self.writer);
            }
        }
        drop(all);
        self.spread.left.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    #[tokio::test]
    async fn a_seq_waits_until_it_is_within_the_span_of_the_oldest_in_flight() {
        let spread = SeqSpread::new(4);
        let s1 = spread.enter(7, 1).await;
        let s2 = spread.enter(7, 2).await;
        let _s4 = spread.enter(7, 4).await;
        // Seq 5 is 4 above the oldest (1): it waits, whatever the count in flight.
        let mut s5 = Box::pin(spread.enter(7, 5));
        assert!(s5.as_mut().now_or_never().is_none());
        // Other writers and old seqs are not held up.
        drop(spread.enter(8, 100).await);
        drop(spread.enter(7, 0).await);
        // Seq 2 finishing does not help: seq 1 is still the oldest.
        drop(s2);
        assert!(s5.as_mut().now_or_never().is_none());
        drop(s1);
        let _s5 = s5.await;
        // The same seq twice at once (a caller's retry) is counted twice.
        let a = spread.enter(7, 3).await;
        let b = spread.enter(7, 3).await;
        drop(a);
        let mut s7 = Box::pin(spread.enter(7, 7));
        assert!(s7.as_mut().now_or_never().is_none(), "3 is still in flight");
        drop(b);
        s7.await;
    }
}
