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
    /// When this controller last became leader; `None` while it is not leader.
    leader_since: Option<Instant>,
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

    /// Called on every leadership check; resets the history when leadership is gained or lost.
    pub fn set_leader(&self, is_leader: bool) {
        let mut inner = self.lock();
        match (is_leader, inner.leader_since) {
            (true, None) => {
                inner.leader_since = Some(Instant::now());
                inner.last_seen.clear();
            }
            (false, Some(_)) => inner.leader_since = None,
            _ => {}
        }
    }

    /// How long since `alias` was last heard from (or since this leader took office).
    pub fn silent_for(&self, alias: &str) -> Option<Duration> {
        let inner = self.lock();
        let since = inner.last_seen.get(alias).copied().or(inner.leader_since)?;
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
