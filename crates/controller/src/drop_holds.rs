//! How long a dropped name stays unavailable, timed on this controller's own clock.
//!
//! Data nodes route and acknowledge writes by a catalog up to `CATALOG_LEASE` old, so a dropped
//! database, table or partition is not given to a new one until [`NAME_REUSE_GRACE`] after the
//! drop: a write meant for the new one never lands in the old. The replicated catalog lists the
//! names dropped recently (`Catalog::dropped_at_ms`), but the times there are the proposing
//! leader's wall clock, which another controller's may differ from by seconds and which can
//! jump. So each controller times the hold itself, on `CLOCK_BOOTTIME`, from when it first saw
//! the name in its applied state: every leader-duties tick looks (also on followers), and so
//! does every check. A restarted controller holds every listed name anew. A hold can only come
//! out longer than the drop needs, never shorter.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use shoal_common::clock::BootInstant;

/// Longer than a data node's catalog lease (3 s) and the 4 s a DROP waits before answering.
pub const NAME_REUSE_GRACE: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct DropHolds {
    first_seen: Mutex<HashMap<String, BootInstant>>,
}

impl DropHolds {
    /// Notes the listed names not seen before; forgets names no longer listed once their hold
    /// is over.
    pub fn observe<T>(&self, listed: &BTreeMap<String, T>) {
        let mut seen = self
            .first_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        seen.retain(|name, at| listed.contains_key(name) || at.elapsed() < NAME_REUSE_GRACE);
        for name in listed.keys() {
            seen.entry(name.clone()).or_insert_with(BootInstant::now);
        }
    }

    /// Time left before `name` may be given to something new (after [`DropHolds::observe`]).
    pub fn wait(&self, name: &str) -> Option<Duration> {
        let seen = self
            .first_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let at = seen.get(name)?;
        NAME_REUSE_GRACE
            .checked_sub(at.elapsed())
            .filter(|d| !d.is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_held_from_when_it_is_first_seen_whatever_the_listed_time() {
        let holds = DropHolds::default();
        assert_eq!(holds.wait("dfs://db.t"), None);
        // Listed with a time far in the past (another leader's clock): held all the same.
        let listed = BTreeMap::from([("dfs://db.t".to_owned(), 0u64)]);
        holds.observe(&listed);
        let wait = holds.wait("dfs://db.t").expect("held");
        assert!(wait > NAME_REUSE_GRACE - Duration::from_secs(1), "{wait:?}");
        // Seen again later: the hold does not restart.
        std::thread::sleep(Duration::from_millis(50));
        holds.observe(&listed);
        assert!(holds.wait("dfs://db.t").expect("held") < wait);
        // No longer listed, but its hold is not over: still held.
        holds.observe(&BTreeMap::<String, u64>::new());
        assert!(holds.wait("dfs://db.t").is_some());
        assert_eq!(holds.wait("dfs://db.other"), None);
    }
}
