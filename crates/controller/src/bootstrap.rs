//! Forming the controller group, once: only controller 1 (the first of cluster.nodes) does it,
//! only with a new store, and only when every other declared controller answers that its store
//! is new too ("the whole cluster's controller directories are fresh").
//!
//! A controller 1 with a new store is either the first start of a cluster or a lost disk; a
//! peer holding Raft state (or running a build before 0.2, which always does) tells them
//! apart. Then controller 1 does not form a group: it waits, not admitted, for the leader to
//! re-admit it (`crate::readmission`). While a peer does not answer, it waits too: it cannot
//! know. The group is formed with controller 1 as its only voter; the leader then adds the
//! others as learners and makes them voters once caught up, the same path a controller that
//! lost its store takes back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::BasicNode;
use shoal_client::channel::Channels;
use tokio::sync::watch;

use crate::admission::Admission;
use crate::peer_identity::{self, PeerAnswer};
use crate::raft_types::{NodeId, Raft};
use crate::topology::Topology;

/// How often controller 1 asks its peers again while it cannot decide.
const RETRY: Duration = Duration::from_millis(500);
/// How often "still waiting" is logged.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// What controller 1 with a new store does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every peer answered that its store is new: a new cluster; form the group.
    Form,
    /// A peer holds Raft state: the cluster exists and this store was lost. Never form a
    /// group; wait to be re-admitted.
    Rejoin { holder: String },
    /// Some peers did not answer and none holds state (yet): ask again.
    Wait { silent: Vec<String> },
}

/// The rule, given each peer's alias and answer. Pure, tested.
pub fn decide(peers: &[(String, PeerAnswer)]) -> Decision {
    if let Some((alias, _)) = peers.iter().find(|(_, a)| a.holds_state()) {
        return Decision::Rejoin {
            holder: alias.clone(),
        };
    }
    let silent: Vec<String> = peers
        .iter()
        .filter(|(_, a)| matches!(a, PeerAnswer::Unreachable(_)))
        .map(|(alias, _)| alias.clone())
        .collect();
    if silent.is_empty() {
        Decision::Form
    } else {
        Decision::Wait { silent }
    }
}

/// Controller 1 with a new store: asks its peers until it can decide, then forms the group or
/// leaves it to the leader. Returns early if a leader reaches it first (it then holds state).
pub async fn run(
    raft: Raft,
    admission: Arc<Admission>,
    topology: Arc<Topology>,
    channels: Channels,
    mut shutdown: watch::Receiver<bool>,
) {
    let me = admission.id();
    let mut last_log: Option<Instant> = None;
    loop {
        if raft.is_initialized().await.unwrap_or(true) {
            tracing::info!(
                "controller group: this controller received Raft state from a leader; waiting to be re-admitted"
            );
            return;
        }
        let mut peers = Vec::new();
        for (id, (alias, addr)) in topology.controllers() {
            if id != me {
                peers.push((alias, peer_identity::ask(&channels, &addr).await));
            }
        }
        match decide(&peers) {
            Decision::Form => {
                form(&raft, &admission, me, &topology).await;
                return;
            }
            Decision::Rejoin { holder } => {
                tracing::warn!(
                    "controller group: this controller's metadata store is new but {holder} holds \
                     Raft state, so the group exists and this store was lost or replaced; not \
                     forming a new group. Waiting for the leader to re-admit this controller \
                     (learner, caught up, then voter); it does not vote until then"
                );
                return;
            }
            Decision::Wait { silent } => {
                if last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                    last_log = Some(Instant::now());
                    tracing::info!(
                        "controller group: not formed yet; waiting for {} to answer (the group is \
                         formed only when every controller of cluster.nodes answers with a new \
                         store)",
                        silent.join(", ")
                    );
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

async fn form(raft: &Raft, admission: &Admission, me: NodeId, topology: &Topology) {
    let cluster_id = new_cluster_id();
    // Admitted on disk first: a crash before `initialize` leaves an admitted store without
    // state, which forms the group again at the next start (`admission::start_kind`).
    if let Err(e) = admission.admit(raft, &cluster_id).await {
        tracing::error!("controller group: cannot record the new group: {e}");
        return;
    }
    let members: BTreeMap<NodeId, BasicNode> = topology
        .raft_members()
        .into_iter()
        .filter(|(id, _)| *id == me)
        .collect();
    tracing::info!(
        "controller group: every controller answered with a new store; forming group {cluster_id} \
         with this controller as its first voter (the leader adds the others)"
    );
    if let Err(e) = raft.initialize(members).await {
        tracing::warn!("initialize: {e}");
    }
}

/// 128 random bits, hex.
fn new_cluster_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    use shoal_proto::IdentityResponse;

    use super::*;

    fn known(holds_state: bool, admitted: bool) -> PeerAnswer {
        PeerAnswer::Known(IdentityResponse {
            holds_state,
            admitted,
            ..Default::default()
        })
    }

    fn peers(answers: Vec<PeerAnswer>) -> Vec<(String, PeerAnswer)> {
        answers
            .into_iter()
            .enumerate()
            .map(|(i, a)| (format!("ctl{}", i + 2), a))
            .collect()
    }

    #[test]
    fn a_group_is_formed_only_when_every_peer_answers_with_a_new_store() {
        assert_eq!(
            decide(&peers(vec![known(false, false), known(false, false)])),
            Decision::Form
        );
        // A single controller has no peer to ask.
        assert_eq!(decide(&[]), Decision::Form);
    }

    #[test]
    fn a_peer_holding_state_means_this_store_was_lost() {
        for holder in [known(true, true), known(true, false), known(false, true)] {
            assert_eq!(
                decide(&peers(vec![
                    PeerAnswer::Unreachable("down".into()),
                    holder.clone()
                ])),
                Decision::Rejoin {
                    holder: "ctl3".into()
                },
                "{holder:?}"
            );
        }
        // A build before 0.2 answers UNIMPLEMENTED: it runs, so it holds state.
        assert_eq!(
            decide(&peers(vec![known(false, false), PeerAnswer::Old])),
            Decision::Rejoin {
                holder: "ctl3".into()
            }
        );
    }

    #[test]
    fn a_silent_peer_blocks_the_decision() {
        assert_eq!(
            decide(&peers(vec![
                known(false, false),
                PeerAnswer::Unreachable("connection refused".into())
            ])),
            Decision::Wait {
                silent: vec!["ctl3".into()]
            }
        );
        assert_eq!(
            decide(&peers(vec![
                PeerAnswer::Unreachable("a".into()),
                PeerAnswer::Unreachable("b".into())
            ])),
            Decision::Wait {
                silent: vec!["ctl2".into(), "ctl3".into()]
            }
        );
    }
}
