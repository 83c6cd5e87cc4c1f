//! Whether this controller may vote: the guard against controller amnesia (finding F7).
//!
//! Raft is safe only if a voter never forgets a vote it granted or an entry it acknowledged. A
//! controller whose `dfsMetaDir` was lost comes back with neither; if it voted, a lagging
//! controller could win an election without entries that had committed, and overwrite them.
//! So a controller votes, campaigns and accepts leadership only once it is *admitted*:
//!
//! ```text
//!   new store (first start, or lost disk)          store with Raft state, written before 0.2
//!          │  record {admitted: false}                      │  record {admitted: true}
//!          ▼                                                ▼
//!   NOT ADMITTED ── controller 1 forms the group ──────▶ ADMITTED ◀─ store of a member
//!    no vote, no                (crate::bootstrap)         votes,
//!    election,     ── a leader added it as a learner,      campaigns
//!    takes entries    found it caught up, sent Admit ──▶
//!                      (crate::readmission)
//! ```
//!
//! The record lives in `raft.redb` beside the Raft state (`shoal_raft_store::IdentityStore`)
//! and is written before the Raft node starts, so a store that has since received entries
//! from a leader is still known not to be admitted after a restart.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use openraft::async_runtime::WatchReceiver;
use shoal_proto::IdentityResponse;
use shoal_raft_store::identity::IDENTITY_VERSION;
use shoal_raft_store::{Identity, IdentityStore};

use crate::ControllerError;
use crate::raft_types::{NodeId, Raft};

/// This controller's admission state, shared by the Raft RPC service (which refuses votes
/// while it is not admitted) and the tasks that admit it.
pub struct Admission {
    id: NodeId,
    store: IdentityStore,
    admitted: AtomicBool,
    cluster_id: Mutex<String>,
    /// Serializes writes of the record.
    write: tokio::sync::Mutex<()>,
}

/// What the store held when the controller started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Admitted before: a member restarting with its store.
    Member,
    /// Raft state without a record: written by a build before 0.2, by a member. Admitted now.
    Legacy,
    /// Nothing of Raft's, or state received since it was new and never admitted: a first start
    /// or a lost store. It must not vote until admitted.
    NotAdmitted,
}

/// Decides how a store starts, from its record and whether it holds Raft state. Pure, tested.
pub fn start_kind(record: Option<&Identity>, holds_raft_state: bool) -> Start {
    match (record, holds_raft_state) {
        // Admitted but empty: only a crash between controller 1's record and its
        // `initialize`; it forms the group again like any new store.
        (Some(r), true) if r.admitted => Start::Member,
        (Some(_), _) => Start::NotAdmitted,
        (None, true) => Start::Legacy,
        (None, false) => Start::NotAdmitted,
    }
}

impl Admission {
    /// Reads (and, for a new or pre-0.2 store, writes) the record. Blocking file IO: call it at
    /// start, before the Raft node answers anything.
    pub fn open(id: NodeId, store: IdentityStore) -> Result<(Arc<Self>, Start), ControllerError> {
        let record = store.read()?;
        let holds = store.holds_raft_state()?;
        let start = start_kind(record.as_ref(), holds);
        let cluster_id = record.as_ref().map(|r| r.cluster_id.clone());
        let admitted = start != Start::NotAdmitted;
        let wanted = Identity {
            version: IDENTITY_VERSION,
            node_id: id,
            cluster_id: cluster_id.clone().unwrap_or_default(),
            admitted,
        };
        if record.as_ref() != Some(&wanted) {
            store.write(&wanted)?;
        }
        Ok((
            Arc::new(Self {
                id,
                store,
                admitted: AtomicBool::new(admitted),
                cluster_id: Mutex::new(cluster_id.unwrap_or_default()),
                write: tokio::sync::Mutex::new(()),
            }),
            start,
        ))
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn is_admitted(&self) -> bool {
        self.admitted.load(Ordering::SeqCst)
    }

    pub fn cluster_id(&self) -> String {
        self.cluster_id
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    /// Records durably that this controller is admitted to `cluster_id`, then lets it vote and
    /// campaign. The record is on disk before the first vote it grants.
    pub async fn admit(&self, raft: &Raft, cluster_id: &str) -> Result<(), ControllerError> {
        let _w = self.write.lock().await;
        let record = Identity {
            version: IDENTITY_VERSION,
            node_id: self.id,
            cluster_id: cluster_id.to_owned(),
            admitted: true,
        };
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.write(&record))
            .await
            .map_err(|e| ControllerError::Raft(format!("identity write task: {e}")))??;
        if let Ok(mut c) = self.cluster_id.lock() {
            cluster_id.clone_into(&mut c);
        }
        self.admitted.store(true, Ordering::SeqCst);
        raft.runtime_config().elect(true);
        Ok(())
    }

    /// What the `Identity` RPC answers.
    pub async fn answer(&self, raft: &Raft) -> IdentityResponse {
        let store = self.store.clone();
        let holds_state = tokio::task::spawn_blocking(move || store.holds_raft_state())
            .await
            .ok()
            .and_then(Result::ok)
            // Unknown: say "holds state", the answer that never lets a group be formed again.
            .unwrap_or(true);
        let metrics = raft.metrics();
        let last_log_index = metrics.borrow_watched().last_log_index.unwrap_or(0);
        IdentityResponse {
            raft_id: self.id,
            holds_state,
            admitted: self.is_admitted(),
            cluster_id: self.cluster_id(),
            last_log_index,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(admitted: bool) -> Identity {
        Identity {
            version: IDENTITY_VERSION,
            node_id: 1,
            cluster_id: "c".into(),
            admitted,
        }
    }

    #[test]
    fn only_a_store_with_state_that_was_admitted_or_predates_the_record_may_vote() {
        assert_eq!(start_kind(Some(&record(true)), true), Start::Member);
        // Raft state from before 0.2: a member's store.
        assert_eq!(start_kind(None, true), Start::Legacy);
        // A new store: first start or a lost disk.
        assert_eq!(start_kind(None, false), Start::NotAdmitted);
        // Entries received since the store was new, never admitted: still not.
        assert_eq!(start_kind(Some(&record(false)), true), Start::NotAdmitted);
        assert_eq!(start_kind(Some(&record(false)), false), Start::NotAdmitted);
        // Controller 1 crashed between its record and `initialize`: forms the group again.
        assert_eq!(start_kind(Some(&record(true)), false), Start::NotAdmitted);
    }
}
