//! Whether the cluster can lose one machine now (the brief's invariant 5): checked before the
//! orchestrator drains a machine and again right before it stops its nodes, on every pass
//! (also after `--resume`, a canary or a `--pause`). Anything missing pauses the upgrade.
//!
//! The cluster can lose machine M when:
//! - every controller answers: the leader (Raft role leader or follower, i.e. it acknowledged
//!   the leader within the last 3 s) and the orchestrator itself, within [`ANSWER_TIMEOUT`] (a
//!   controller frozen or cut off a moment ago is still a follower to the leader); and those
//!   not on M are a Raft quorum;
//! - every node not on M is UP and heard from within [`FRESH_HEARTBEAT`];
//! - every chunk is COMPLETE and has an in-sync replica on another machine. Once M is drained
//!   its replicas are out of sync by design, so before the stop only the second half holds.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use shoal_proto::node_info_client::NodeInfoClient;
use shoal_proto::{
    ClusterStatusResponse, GetCatalogResponse, NodeInfoRequest, NodeMode, NodeState, RaftRole,
};

use super::machine::not_complete;
use super::state::MachinePlan;
use crate::target::Target;

/// A node's last heartbeat must be at most this old (the default `nodeHeartbeatTimeout`;
/// nodes send one every 200-500 ms).
const FRESH_HEARTBEAT: Duration = Duration::from_secs(3);

/// How long a check waits for what is missing before it gives up: long enough for what a new
/// leader has not seen yet (heartbeats, follower acknowledgements), short enough that a real
/// loss pauses the upgrade promptly.
const SETTLE: Duration = Duration::from_secs(5);

const POLL: Duration = Duration::from_millis(200);

/// How long a controller gets to answer the orchestrator's own call.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);

/// Where the machine stands when it is checked.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Moment {
    /// Before it is drained: every chunk must be COMPLETE.
    BeforeDrain,
    /// Drained, about to be stopped: its own replicas left the in-sync sets.
    BeforeStop,
}

/// What keeps the cluster from losing the machine, one line per reason; empty when it can.
/// `no_answer`: controllers that did not answer the orchestrator's own call.
pub fn missing(
    machine: &MachinePlan,
    status: &ClusterStatusResponse,
    catalog: &GetCatalogResponse,
    no_answer: &[String],
    moment: Moment,
) -> Vec<String> {
    let mut missing = Vec::new();
    let on_machine = |alias: &str| machine.nodes().any(|a| a == alias);

    let controllers: Vec<_> = status
        .nodes
        .iter()
        .filter(|n| n.mode() == NodeMode::Controller)
        .collect();
    let silent: Vec<&str> = controllers
        .iter()
        .filter(|c| {
            !matches!(c.current_role(), RaftRole::Leader | RaftRole::Follower)
                || no_answer.contains(&c.alias)
        })
        .map(|c| c.alias.as_str())
        .collect();
    for c in controllers
        .iter()
        .filter(|c| silent.contains(&c.alias.as_str()))
    {
        missing.push(format!(
            "controller {} on {} does not answer",
            c.alias, c.machine
        ));
    }
    let left = controllers
        .iter()
        .filter(|c| !on_machine(&c.alias) && !silent.contains(&c.alias.as_str()))
        .count();
    let quorum = controllers.len() / 2 + 1;
    if left < quorum {
        missing.push(format!(
            "stopping {} would leave {left} of {} controllers (a quorum is {quorum})",
            machine.machine,
            controllers.len()
        ));
    }

    let fresh_ms = i64::try_from(FRESH_HEARTBEAT.as_millis()).unwrap_or(i64::MAX);
    // A silent controller is named once, above.
    for n in status
        .nodes
        .iter()
        .filter(|n| !on_machine(&n.alias) && !silent.contains(&n.alias.as_str()))
    {
        if n.state() != NodeState::Up {
            missing.push(format!(
                "{} on {} is {}",
                n.alias,
                n.machine,
                n.state().name()
            ));
        } else if !(0..=fresh_ms).contains(&n.last_heartbeat_ms_ago) {
            missing.push(format!(
                "{} on {} has not been heard from for {}",
                n.alias,
                n.machine,
                if n.last_heartbeat_ms_ago < 0 {
                    "this leader's whole term".to_owned()
                } else {
                    format!("{} ms", n.last_heartbeat_ms_ago)
                }
            ));
        }
    }

    let machine_of: HashMap<&str, &str> = status
        .nodes
        .iter()
        .map(|n| (n.alias.as_str(), n.machine.as_str()))
        .collect();
    let mut not_complete_chunks = Vec::new();
    let mut only_here = Vec::new();
    for chunk in &catalog.chunks {
        if moment == Moment::BeforeDrain && not_complete(chunk) {
            not_complete_chunks.push(format!("{} ({})", chunk.path, chunk.state));
        }
        let elsewhere = chunk.replicas.iter().any(|r| {
            r.in_sync
                && machine_of
                    .get(r.node.as_str())
                    .is_some_and(|m| *m != machine.machine)
        });
        if !elsewhere {
            only_here.push(chunk.path.clone());
        }
    }
    if !not_complete_chunks.is_empty() {
        missing.push(format!(
            "chunks not COMPLETE: {}",
            abbreviate(&not_complete_chunks)
        ));
    }
    if !only_here.is_empty() {
        missing.push(format!(
            "chunks with no in-sync replica outside {}: {}",
            machine.machine,
            abbreviate(&only_here)
        ));
    }
    missing
}

/// At most a few names, then a count: a cluster may have thousands of chunks.
fn abbreviate(items: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut text = items[..items.len().min(SHOWN)].join(", ");
    if items.len() > SHOWN {
        text.push_str(&format!(" and {} more", items.len() - SHOWN));
    }
    text
}

/// Waits up to [`SETTLE`] until the cluster can lose `machine`; else what is missing, joined
/// with "; ". A controller group that does not answer at all is what is missing then.
pub async fn wait_can_lose(
    target: &Target,
    machine: &MachinePlan,
    moment: Moment,
) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let why = match check(target, machine, moment).await {
            Ok(m) if m.is_empty() => return Ok(()),
            Ok(m) => m.join("; "),
            Err(e) => format!("the controllers do not answer ({e})"),
        };
        if started.elapsed() >= SETTLE {
            return Err(why);
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn check(
    target: &Target,
    machine: &MachinePlan,
    moment: Moment,
) -> Result<Vec<String>, shoal_client::ClientError> {
    let status = target.controllers.cluster_status().await?;
    let catalog = target.controllers.get_catalog().await?;
    let no_answer = not_answering(target, &status).await;
    Ok(missing(machine, &status, &catalog, &no_answer, moment))
}

/// The controllers that do not answer a `NodeInfo` call within [`ANSWER_TIMEOUT`].
async fn not_answering(target: &Target, status: &ClusterStatusResponse) -> Vec<String> {
    let calls = status
        .nodes
        .iter()
        .filter(|n| n.mode() == NodeMode::Controller)
        .map(|n| async move {
            let Ok(channel) = target.channels.get(&n.addr) else {
                return Some(n.alias.clone());
            };
            let mut req = tonic::Request::new(NodeInfoRequest {});
            req.set_timeout(ANSWER_TIMEOUT);
            let answered =
                tokio::time::timeout(ANSWER_TIMEOUT, NodeInfoClient::new(channel).node_info(req))
                    .await;
            (!matches!(answered, Ok(Ok(_)))).then(|| n.alias.clone())
        });
    futures::future::join_all(calls)
        .await
        .into_iter()
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use shoal_proto::{ChunkInfo, NodeStatus, ReplicaInfo};

    use super::*;

    /// Three machines 127.0.0.1-3, each with controller cN, data node dN and agent aN, all UP
    /// and fresh; c3 leads.
    fn healthy() -> ClusterStatusResponse {
        let mut nodes = Vec::new();
        for i in 1..=3 {
            let machine = format!("127.0.0.{i}");
            for (prefix, mode) in [
                ("c", NodeMode::Controller),
                ("d", NodeMode::Datanode),
                ("a", NodeMode::Agent),
            ] {
                nodes.push(NodeStatus {
                    alias: format!("{prefix}{i}"),
                    mode: mode.into(),
                    machine: machine.clone(),
                    state: NodeState::Up.into(),
                    raft_role: match (mode, i) {
                        (NodeMode::Controller, 3) => "leader".into(),
                        (NodeMode::Controller, _) => "follower".into(),
                        _ => String::new(),
                    },
                    last_heartbeat_ms_ago: 150,
                    ..Default::default()
                });
            }
        }
        ClusterStatusResponse {
            nodes,
            leader_alias: "c3".into(),
            ..Default::default()
        }
    }

    fn chunk(path: &str, replicas: &[(&str, bool)]) -> ChunkInfo {
        ChunkInfo {
            path: path.into(),
            state: if replicas.iter().all(|r| r.1) {
                "COMPLETE"
            } else {
                "RECOVERING"
            }
            .into(),
            replicas: replicas
                .iter()
                .map(|(node, in_sync)| ReplicaInfo {
                    node: (*node).into(),
                    in_sync: *in_sync,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn catalog(chunks: Vec<ChunkInfo>) -> GetCatalogResponse {
        GetCatalogResponse {
            chunks,
            ..Default::default()
        }
    }

    fn plan(i: u32) -> MachinePlan {
        MachinePlan {
            machine: format!("127.0.0.{i}"),
            agent_addr: String::new(),
            datanodes: vec![(format!("d{i}"), String::new())],
            controllers: vec![format!("c{i}")],
            done: Vec::new(),
        }
    }

    fn node<'a>(s: &'a mut ClusterStatusResponse, alias: &str) -> &'a mut NodeStatus {
        s.nodes.iter_mut().find(|n| n.alias == alias).unwrap()
    }

    #[test]
    fn a_healthy_cluster_can_lose_any_machine() {
        let cat = catalog(vec![chunk("/s/1", &[("d1", true), ("d2", true)])]);
        for i in 1..=3 {
            assert!(
                missing(&plan(i), &healthy(), &cat, &[], Moment::BeforeDrain).is_empty(),
                "machine {i}"
            );
        }
    }

    #[test]
    fn a_silent_controller_elsewhere_leaves_no_quorum_and_is_named_once() {
        let mut s = healthy();
        node(&mut s, "c3").raft_role = "unreachable".into();
        node(&mut s, "c3").state = NodeState::Down.into();
        node(&mut s, "c1").raft_role = "leader".into();
        let m = missing(&plan(2), &s, &catalog(vec![]), &[], Moment::BeforeDrain);
        assert_eq!(
            m,
            vec![
                "controller c3 on 127.0.0.3 does not answer".to_owned(),
                "stopping 127.0.0.2 would leave 1 of 3 controllers (a quorum is 2)".to_owned(),
            ]
        );
        // Frozen a moment ago: still a follower to the leader, but it does not answer us.
        let m = missing(
            &plan(2),
            &healthy(),
            &catalog(vec![]),
            &["c1".to_owned()],
            Moment::BeforeStop,
        );
        assert_eq!(
            m,
            vec![
                "controller c1 on 127.0.0.1 does not answer".to_owned(),
                "stopping 127.0.0.2 would leave 1 of 3 controllers (a quorum is 2)".to_owned(),
            ]
        );
        // Its own controller silent: the others still make a quorum, but it is named.
        let m = missing(&plan(3), &s, &catalog(vec![]), &[], Moment::BeforeDrain);
        assert_eq!(
            m,
            vec!["controller c3 on 127.0.0.3 does not answer".to_owned()]
        );
    }

    #[test]
    fn other_nodes_must_be_up_and_freshly_heard_from_but_not_the_machines_own() {
        let mut s = healthy();
        node(&mut s, "d1").state = NodeState::Down.into();
        node(&mut s, "a3").last_heartbeat_ms_ago = 4_000;
        node(&mut s, "d3").last_heartbeat_ms_ago = -1;
        let m = missing(&plan(2), &s, &catalog(vec![]), &[], Moment::BeforeDrain);
        assert_eq!(
            m,
            vec![
                "d1 on 127.0.0.1 is DOWN".to_owned(),
                "d3 on 127.0.0.3 has not been heard from for this leader's whole term".to_owned(),
                "a3 on 127.0.0.3 has not been heard from for 4000 ms".to_owned(),
            ]
        );
        node(&mut s, "d1").state = NodeState::Up.into();
        node(&mut s, "a3").last_heartbeat_ms_ago = 0;
        node(&mut s, "d3").last_heartbeat_ms_ago = 10;
        node(&mut s, "d2").state = NodeState::Stopping.into();
        assert!(missing(&plan(2), &s, &catalog(vec![]), &[], Moment::BeforeDrain).is_empty());
    }

    #[test]
    fn chunks_must_be_complete_before_the_drain_and_in_sync_elsewhere_before_the_stop() {
        let s = healthy();
        let recovering = catalog(vec![chunk("/s/1", &[("d1", true), ("d2", false)])]);
        assert_eq!(
            missing(&plan(3), &s, &recovering, &[], Moment::BeforeDrain),
            vec!["chunks not COMPLETE: /s/1 (RECOVERING)".to_owned()]
        );
        // Machine 2 drained: its replica left the in-sync set, d1's remains.
        assert!(missing(&plan(2), &s, &recovering, &[], Moment::BeforeStop).is_empty());
        // Stopping machine 1 would leave /s/1 with no in-sync replica.
        assert_eq!(
            missing(&plan(1), &s, &recovering, &[], Moment::BeforeStop),
            vec!["chunks with no in-sync replica outside 127.0.0.1: /s/1".to_owned()]
        );
    }

    #[test]
    fn long_lists_are_cut_short() {
        let items: Vec<String> = (0..8).map(|i| i.to_string()).collect();
        assert_eq!(abbreviate(&items), "0, 1, 2, 3, 4 and 3 more");
        assert_eq!(abbreviate(&items[..2]), "0, 1");
    }
}
