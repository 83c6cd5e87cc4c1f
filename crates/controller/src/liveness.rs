//! The leader's view of which nodes are alive: when it last heard from each one.
//!
//! Kept in memory only: a heartbeat is not a Raft write. The metadata changes (a Raft write) only
//! when a node's state changes, e.g. the leader marks it DOWN after `nodeHeartbeatTimeout`.
//! A new leader has no history, so it counts every node as heard from when it took office.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Liveness {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The term this controller leads and since when; `None` while it is not leader.
    leading: Option<(u64, Instant)>,
    last_seen: HashMap<String, Instant>,
}

impl Liveness {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn saw(&self, alias: &str) {
        self.lock()
            .last_seen
            .insert(alias.to_owned(), Instant::now());
    }

    /// Called on every leadership check with the term this controller leads (`None`: not
    /// leader). History from another term is dropped: heartbeats sent to an earlier
    /// leadership, even this controller's own, say nothing about now.
    pub fn set_leader_term(&self, term: Option<u64>) {
        let mut inner = self.lock();
        match (term, inner.leading) {
            (Some(t), Some((current, _))) if t == current => {}
            (Some(t), _) => {
                inner.leading = Some((t, Instant::now()));
                inner.last_seen.clear();
            }
            (None, _) => inner.leading = None,
        }
    }

    /// How long since `alias` was last heard from (or since this leader took office).
    pub fn silent_for(&self, alias: &str) -> Option<Duration> {
        let inner = self.lock();
        let since = inner
            .last_seen
            .get(alias)
            .copied()
            .or(inner.leading.map(|(_, at)| at))?;
        Some(since.elapsed())
    }

    /// Milliseconds since `alias`'s last heartbeat to this leader, if it sent one.
    pub fn last_heartbeat_ms_ago(&self, alias: &str) -> Option<u64> {
        let inner = self.lock();
        inner
            .last_seen
            .get(alias)
            .map(|t| u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_term_forgets_heartbeats_of_the_old_one() {
        let l = Liveness::default();
        assert_eq!(l.silent_for("n"), None, "not leader: no opinion");
        l.set_leader_term(Some(3));
        l.saw("n");
        assert!(l.last_heartbeat_ms_ago("n").is_some());
        l.set_leader_term(Some(3));
        assert!(
            l.last_heartbeat_ms_ago("n").is_some(),
            "same term keeps history"
        );
        l.set_leader_term(Some(5));
        assert_eq!(l.last_heartbeat_ms_ago("n"), None);
        assert!(
            l.silent_for("n").is_some(),
            "silence counts from taking office"
        );
        l.set_leader_term(None);
        assert_eq!(l.silent_for("n"), None);
    }
}
