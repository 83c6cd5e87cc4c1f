//! The leader admits controllers: those joining a group just formed, and those whose store was
//! lost (finding F7). Every second it asks each declared controller's `Identity`, then:
//!
//! ```text
//!   voter, not admitted ──RemoveVoters (kept as learner)──▶ learner, not admitted
//!   not a member ──────────────AddNodes────────────────────▶ learner, not admitted
//!   learner, not admitted ──matched ≥ leader's last index──▶ Admit RPC ─▶ learner, admitted
//!   learner, admitted ─────────AddVoterIds─────────────────▶ voter, admitted
//! ```
//!
//! A controller that is not admitted refuses every vote (`crate::admission`), so until it is
//! demoted it counts as a voter that never votes: a 3-voter group then elects a leader only if
//! both others agree, and commits only with two of three acknowledgements (its own among them:
//! it holds what it acknowledges, since the restart). The demotion needs the other two voters;
//! the window lasts from its restart until then (about a second, longer if another controller
//! is down, which leaves the group without a quorum of voters that vote anyway). A controller
//! that does not answer, or answers UNIMPLEMENTED (a build before 0.2, during a rolling
//! upgrade), is left as it is.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use openraft::ChangeMembers;
use openraft::Instant as _;
use openraft::async_runtime::WatchReceiver;
use shoal_client::channel::Channels;
use shoal_proto::AdmitRequest;
use tokio::sync::watch;

use crate::admission::Admission;
use crate::controller_service::ControllerCore;
use crate::peer_identity::{self, PeerAnswer};
use crate::raft_types::NodeId;

const TICK: Duration = Duration::from_secs(1);
const WARN_EVERY: Duration = Duration::from_secs(30);
/// How long a learner may take to catch up before the leader looks again at the next tick.
const CATCH_UP: Duration = Duration::from_secs(30);

/// What the leader does with one declared controller. Pure, tested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Nothing,
    /// A voter whose store was lost: make it a learner first.
    Demote,
    /// Not in the membership: add it as a learner.
    AddLearner,
    /// A learner not admitted: wait until it caught up, then admit it.
    CatchUpAndAdmit,
    /// An admitted learner: make it a voter.
    Promote,
}

pub fn step(is_voter: bool, is_learner: bool, answer: &PeerAnswer) -> Step {
    let admitted = match answer {
        PeerAnswer::Known(r) => r.admitted,
        // Unknown: leave it as it is.
        PeerAnswer::Old | PeerAnswer::Unreachable(_) => return Step::Nothing,
    };
    match (is_voter, is_learner, admitted) {
        (true, _, true) => Step::Nothing,
        (true, _, false) => Step::Demote,
        (false, false, _) => Step::AddLearner,
        (false, true, false) => Step::CatchUpAndAdmit,
        (false, true, true) => Step::Promote,
    }
}

pub async fn run(
    core: ControllerCore,
    admission: std::sync::Arc<Admission>,
    channels: Channels,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(TICK);
    // When each controller's last failed step was logged: a step blocked for long (another
    // controller down) is logged every `WARN_EVERY`, not every tick.
    let mut warned: HashMap<NodeId, Instant> = HashMap::new();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        if core.ensure_leader().is_err() {
            continue;
        }
        tokio::select! {
            () = tick(&core, &admission, &channels, &mut warned) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

async fn tick(
    core: &ControllerCore,
    admission: &Admission,
    channels: &Channels,
    warned: &mut HashMap<NodeId, Instant>,
) {
    let me = admission.id();
    // Every answer first: a demotion needs to know who else is up right now.
    let mut answers = Vec::new();
    for (id, (alias, addr)) in core.topology.controllers() {
        if id != me {
            let answer = peer_identity::ask(channels, &addr).await;
            answers.push((id, alias, addr, answer));
        }
    }
    let answering: BTreeSet<NodeId> = answers
        .iter()
        .filter(|(_, _, _, a)| !matches!(a, PeerAnswer::Unreachable(_)))
        .map(|(id, ..)| *id)
        .chain([me])
        .collect();
    for (id, alias, addr, answer) in answers {
        let membership = core
            .raft
            .metrics()
            .borrow_watched()
            .membership_config
            .clone();
        let m = membership.membership();
        let is_voter = m.voter_ids().any(|v| v == id);
        let is_learner = !is_voter && m.get_node(&id).is_some();
        let next = step(is_voter, is_learner, &answer);
        let result = match next {
            Step::Nothing => Ok(()),
            Step::Demote => {
                let voters: Vec<NodeId> = m.voter_ids().collect();
                let up: BTreeSet<NodeId> = acked_recently(core)
                    .intersection(&answering)
                    .copied()
                    .collect();
                match demotion_blocker(id, &voters, &up) {
                    Some(why) => Err(format!("its store was lost; not made a learner yet: {why}")),
                    None => demote(core, id, &alias).await,
                }
            }
            Step::AddLearner => add_learner(core, id, &alias, &addr).await,
            Step::CatchUpAndAdmit => {
                catch_up_and_admit(core, admission, channels, id, &alias, &addr).await
            }
            Step::Promote => promote(core, admission, id, &alias, &answer).await,
        };
        match result {
            Err(e) if warned.get(&id).is_none_or(|t| t.elapsed() >= WARN_EVERY) => {
                warned.insert(id, Instant::now());
                tracing::warn!("admitting controller {alias}: {e}");
            }
            Err(_) => {}
            Ok(()) => {
                warned.remove(&id);
            }
        }
        if core.ensure_leader().is_err() {
            return;
        }
    }
}

/// Why voter `id` cannot be made a learner now, if it cannot: the change goes through a joint
/// configuration that needs a majority of the voters without it, so those must be up (this
/// leader and the controllers in `acked`: they acknowledged it within the last second and
/// answered `Identity` in this round; a controller that fails in between still stalls writes
/// until it returns). Started without them, it would stall every
/// metadata write until they return; left as it is, the group keeps committing with the
/// controller's acknowledgements (it holds what it acknowledges since its restart) and it
/// still never votes. Pure, tested.
pub fn demotion_blocker(id: NodeId, voters: &[NodeId], acked: &BTreeSet<NodeId>) -> Option<String> {
    let rest: Vec<NodeId> = voters.iter().copied().filter(|v| *v != id).collect();
    if rest.is_empty() {
        return Some("it is the only voter".into());
    }
    let answering = rest.iter().filter(|v| acked.contains(v)).count();
    let needed = rest.len() / 2 + 1;
    (answering < needed).then(|| {
        format!(
            "{answering} of the {} other voters answer, {needed} needed for the change",
            rest.len()
        )
    })
}

/// A voter that acknowledged the leader within this is taken to be up for a demotion (its
/// heartbeats come every `raftHeartbeatInterval`, 200 ms by default).
const DEMOTION_ACK_WINDOW: Duration = Duration::from_secs(1);

/// This leader and the controllers that acknowledged it within [`DEMOTION_ACK_WINDOW`].
fn acked_recently(core: &ControllerCore) -> BTreeSet<NodeId> {
    let m = core.raft.metrics();
    let m = m.borrow_watched();
    let mut acked: BTreeSet<NodeId> = m
        .heartbeat
        .as_ref()
        .map(|h| {
            h.iter()
                .filter(|(_, t)| {
                    t.as_ref()
                        .is_some_and(|t| t.elapsed() < DEMOTION_ACK_WINDOW)
                })
                .map(|(id, _)| *id)
                .collect()
        })
        .unwrap_or_default();
    acked.insert(m.id);
    acked
}

async fn demote(core: &ControllerCore, id: NodeId, alias: &str) -> Result<(), String> {
    tracing::warn!(
        "controller {alias} (raft id {id}) answers that its metadata store is new: its disk was \
         lost or replaced, and it no longer holds the votes and entries it acknowledged. Making \
         it a learner; it becomes a voter again once it has caught up"
    );
    core.raft
        .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), true)
        .await
        .map_err(|e| format!("demote to learner: {e}"))?;
    tracing::info!("controller {alias} (raft id {id}) is a learner");
    Ok(())
}

async fn add_learner(
    core: &ControllerCore,
    id: NodeId,
    alias: &str,
    addr: &str,
) -> Result<(), String> {
    core.raft
        .add_learner(id, openraft::BasicNode::new(addr), false)
        .await
        .map_err(|e| format!("add as learner: {e}"))?;
    tracing::info!("controller {alias} (raft id {id}) added as a learner");
    Ok(())
}

/// Waits until learner `id` holds every entry this leader held when called; answers that index.
async fn wait_caught_up(core: &ControllerCore, id: NodeId) -> Result<u64, String> {
    let target = {
        let m = core.raft.metrics();
        let m = m.borrow_watched();
        m.last_log_index.unwrap_or(0)
    };
    let started = Instant::now();
    loop {
        let matched = {
            let m = core.raft.metrics();
            let m = m.borrow_watched();
            m.replication
                .as_ref()
                .and_then(|r| r.get(&id).cloned().flatten())
                .map(|l| l.index)
        };
        if matched.is_some_and(|i| i >= target) {
            break;
        }
        if started.elapsed() > CATCH_UP || core.ensure_leader().is_err() {
            return Err(format!(
                "not caught up within {CATCH_UP:?} (holds up to {matched:?}, leader at {target})"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(target)
}

async fn catch_up_and_admit(
    core: &ControllerCore,
    admission: &Admission,
    channels: &Channels,
    id: NodeId,
    alias: &str,
    addr: &str,
) -> Result<(), String> {
    let started = Instant::now();
    let target = wait_caught_up(core, id).await?;
    let resp = peer_identity::admit(
        channels,
        addr,
        AdmitRequest {
            raft_id: id,
            cluster_id: admission.cluster_id(),
            caught_up_to: target,
            leader_id: admission.id(),
        },
    )
    .await
    .map_err(|e| format!("admit: {e}"))?;
    if !resp.admitted {
        return Err("it did not record its admission".into());
    }
    tracing::info!(
        "controller {alias} (raft id {id}) caught up to log index {target} in {:?} and is admitted",
        started.elapsed()
    );
    make_voter(core, id, alias).await
}

/// An admitted learner (its promotion was cut short, say by a leader change): a voter once it
/// holds what this leader holds, if it belongs to this group.
async fn promote(
    core: &ControllerCore,
    admission: &Admission,
    id: NodeId,
    alias: &str,
    answer: &PeerAnswer,
) -> Result<(), String> {
    if let PeerAnswer::Known(r) = answer {
        let ours = admission.cluster_id();
        if !r.cluster_id.is_empty() && !ours.is_empty() && r.cluster_id != ours {
            return Err(format!(
                "it belongs to controller group {}, this is {ours}; not making it a voter",
                r.cluster_id
            ));
        }
    }
    wait_caught_up(core, id).await?;
    make_voter(core, id, alias).await
}

async fn make_voter(core: &ControllerCore, id: NodeId, alias: &str) -> Result<(), String> {
    core.raft
        .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), true)
        .await
        .map_err(|e| format!("make voter: {e}"))?;
    tracing::info!("controller {alias} (raft id {id}) is a voter");
    Ok(())
}

#[cfg(test)]
mod tests {
    use shoal_proto::IdentityResponse;

    use super::*;

    fn said(admitted: bool) -> PeerAnswer {
        PeerAnswer::Known(IdentityResponse {
            admitted,
            holds_state: true,
            ..Default::default()
        })
    }

    #[test]
    fn a_voter_that_lost_its_store_is_demoted_caught_up_admitted_and_promoted() {
        assert_eq!(step(true, false, &said(false)), Step::Demote);
        assert_eq!(step(false, true, &said(false)), Step::CatchUpAndAdmit);
        assert_eq!(step(false, true, &said(true)), Step::Promote);
        assert_eq!(step(true, false, &said(true)), Step::Nothing);
    }

    #[test]
    fn a_voter_is_demoted_only_while_a_majority_of_the_others_answers() {
        let acked = |ids: &[NodeId]| ids.iter().copied().collect::<BTreeSet<_>>();
        // Leader 1 and controller 3 answer: 2 of {1, 3}.
        assert_eq!(demotion_blocker(2, &[1, 2, 3], &acked(&[1, 3])), None);
        // Controller 3 down: a joint config would need it.
        assert!(demotion_blocker(2, &[1, 2, 3], &acked(&[1])).is_some());
        assert!(demotion_blocker(1, &[1], &acked(&[1])).is_some());
        // Five voters: 3 of the other 4 needed.
        assert!(demotion_blocker(5, &[1, 2, 3, 4, 5], &acked(&[1, 2])).is_some());
        assert_eq!(
            demotion_blocker(5, &[1, 2, 3, 4, 5], &acked(&[1, 2, 3])),
            None
        );
    }

    #[test]
    fn a_controller_joining_a_new_group_is_added_as_a_learner_first() {
        assert_eq!(step(false, false, &said(false)), Step::AddLearner);
        // Even one that says it is admitted: it votes only as a voter of this group.
        assert_eq!(step(false, false, &said(true)), Step::AddLearner);
    }

    #[test]
    fn a_controller_that_does_not_answer_or_predates_identity_is_left_alone() {
        for answer in [PeerAnswer::Old, PeerAnswer::Unreachable("down".into())] {
            for (voter, learner) in [(true, false), (false, true), (false, false)] {
                assert_eq!(step(voter, learner, &answer), Step::Nothing);
            }
        }
    }
}
