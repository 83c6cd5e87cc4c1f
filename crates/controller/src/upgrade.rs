//! What the controllers do for a rolling upgrade: hand over leadership before the leader's
//! machine stops, keep the orchestrator's record (so a new orchestrator resumes), and raise
//! the cluster version once every node runs the new release.

use std::collections::BTreeMap;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use shoal_common::version;
use shoal_proto::{
    SetClusterVersionRequest, SetUpgradeRequest, TransferLeadershipRequest,
    TransferLeadershipResponse, UpgradeRecord,
};
use tonic::Status;

use crate::cluster_meta::NodeState;
use crate::command::{Command, Rejection};
use crate::controller_service::ControllerCore;
use crate::peer_identity::{self, PeerAnswer};
use crate::raft_types::NodeId;

/// How long a new leader may take to be elected after the hand-over.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn transfer_leadership(
    core: &ControllerCore,
    req: TransferLeadershipRequest,
) -> Result<TransferLeadershipResponse, Status> {
    core.ensure_lease().await?;
    let metrics = core.raft.metrics().borrow_watched().clone();
    let cannot_lead = cannot_lead(core, &metrics).await;
    // The asks take up to seconds: still the leader, with a fresh lease, before handing over.
    core.ensure_lease().await?;
    let to = if req.to_alias.is_empty() {
        // The most caught-up other voter: it wins the election without waiting to catch up.
        // Replication also reaches learners (a controller joining or re-admitted), which
        // cannot lead.
        let voters: Vec<u64> = metrics
            .membership_config
            .membership()
            .voter_ids()
            .filter(|v| !cannot_lead.contains_key(v))
            .collect();
        metrics
            .replication
            .as_ref()
            .and_then(|r| {
                r.iter()
                    .filter(|(id, _)| **id != metrics.id && voters.contains(id))
                    .max_by_key(|(_, matched)| matched.as_ref().map_or(0, |l| l.index))
                    .map(|(id, _)| *id)
            })
            .ok_or_else(|| Status::failed_precondition("no other controller to lead"))?
    } else {
        core.topology.controller_id(&req.to_alias).ok_or_else(|| {
            Status::invalid_argument(format!("`{}` is not a controller", req.to_alias))
        })?
    };
    if let Some(why) = cannot_lead.get(&to) {
        return Err(Status::failed_precondition(format!(
            "controller `{}` {why}; it cannot lead",
            core.topology.controller_alias(to).unwrap_or_default()
        )));
    }
    if to == metrics.id {
        return Ok(TransferLeadershipResponse {
            leader_alias: req.to_alias,
        });
    }
    core.raft
        .trigger()
        .transfer_leader(to)
        .await
        .map_err(|e| Status::internal(format!("leadership transfer: {e}")))?;
    let mut rx = core.raft.metrics();
    let elected = tokio::time::timeout(TRANSFER_TIMEOUT, async {
        loop {
            let leader = rx.borrow_watched().current_leader;
            if leader.is_some_and(|l| l != metrics.id) {
                return leader;
            }
            if rx.changed().await.is_err() {
                return None;
            }
        }
    })
    .await;
    match elected {
        Ok(Some(id)) => Ok(TransferLeadershipResponse {
            leader_alias: core.topology.controller_alias(id).unwrap_or_default(),
        }),
        // Not UNAVAILABLE: the hand-over did start, so the outcome is unknown.
        _ => Err(Status::deadline_exceeded(format!(
            "no new leader within {TRANSFER_TIMEOUT:?} after handing over leadership"
        ))),
    }
}

/// The other voters that cannot take leadership now, and why: those that answer that they lost
/// their store and are not admitted yet (they refuse votes) and those that do not answer.
/// Asked at the call, not cached: another leader may have admitted one since this controller
/// last led. A controller of a release before `Identity` (UNIMPLEMENTED) holds its state.
async fn cannot_lead(
    core: &ControllerCore,
    metrics: &openraft::RaftMetrics<crate::raft_types::TypeConfig>,
) -> BTreeMap<NodeId, String> {
    let voters: Vec<NodeId> = metrics
        .membership_config
        .membership()
        .voter_ids()
        .filter(|v| *v != metrics.id)
        .collect();
    let asks = core
        .topology
        .controllers()
        .filter(|(id, _)| voters.contains(id))
        .map(
            |(id, (_, addr))| async move { (id, peer_identity::ask(&core.channels, &addr).await) },
        );
    futures::future::join_all(asks)
        .await
        .into_iter()
        .filter_map(|(id, answer)| match answer {
            PeerAnswer::Known(r) if !r.admitted => Some((
                id,
                "lost its metadata store and has not been re-admitted yet".to_owned(),
            )),
            PeerAnswer::Unreachable(e) => Some((id, format!("does not answer ({e})"))),
            PeerAnswer::Known(_) | PeerAnswer::Old => None,
        })
        .collect()
}

pub async fn get_upgrade(core: &ControllerCore) -> Result<UpgradeRecord, Status> {
    core.ensure_leader()?;
    core.read_index().await?;
    Ok(core.read(|m| UpgradeRecord {
        revision: m.upgrade.revision,
        state_json: m.upgrade.state_json.clone(),
    }))
}

pub async fn set_upgrade(
    core: &ControllerCore,
    req: SetUpgradeRequest,
) -> Result<UpgradeRecord, Status> {
    core.ensure_leader()?;
    let resp = core
        .write(Command::SetUpgrade {
            expected_revision: req.expected_revision,
            state_json: req.state_json,
        })
        .await?;
    match (resp.rejected.is_empty(), resp.rejection) {
        (true, _) => get_upgrade(core).await,
        (false, Rejection::Conflict) => Err(Status::aborted(resp.rejected)),
        (false, _) => Err(Status::invalid_argument(resp.rejected)),
    }
}

/// Refused unless every declared node is UP on `require_version`: a node still on the old
/// release may not understand what the new cluster version enables.
pub async fn set_cluster_version(
    core: &ControllerCore,
    req: SetClusterVersionRequest,
) -> Result<(), Status> {
    core.ensure_leader()?;
    core.read_index().await?;
    // Every node runs this leader's release (checked below), so the leader knows what all of
    // them can run at.
    if req.cluster_version > version::CLUSTER_VERSION {
        return Err(Status::failed_precondition(format!(
            "cannot raise the cluster version to {}: release {} runs at {} at most",
            req.cluster_version,
            version::version(),
            version::CLUSTER_VERSION
        )));
    }
    let behind: Vec<String> = core.read(|m| {
        m.nodes
            .values()
            .filter(|n| n.state != NodeState::Up || n.version != req.require_version)
            .map(|n| format!("{} ({:?}, {})", n.alias, n.state, n.version))
            .collect()
    });
    if !behind.is_empty() {
        return Err(Status::failed_precondition(format!(
            "cannot finalize: every node must be UP on {}; not yet: {}",
            req.require_version,
            behind.join(", ")
        )));
    }
    let resp = core
        .write(Command::SetClusterVersion {
            cluster_version: req.cluster_version,
        })
        .await?;
    if resp.rejected.is_empty() {
        Ok(())
    } else {
        Err(Status::failed_precondition(resp.rejected))
    }
}
