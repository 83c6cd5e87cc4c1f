//! `shoal status`: what runs where, at which version (the seed's `pnodeRun(version)`).

use serde::Serialize;
use shoal_proto::{ClusterStatusResponse, NodeStatus};

use crate::cli::StatusArgs;
use crate::output;
use crate::target::Target;

/// One node as `status --json` prints it.
#[derive(Serialize)]
pub struct NodeView {
    pub alias: String,
    pub mode: String,
    pub machine: String,
    pub addr: String,
    pub state: String,
    pub version: String,
    pub build_date: String,
    pub raft_role: String,
    /// Controllers: highest Raft log index the leader knows it holds.
    pub raft_matched_index: u64,
    /// Milliseconds since the leader last heard from the node; null if not in its term.
    pub last_heartbeat_ms_ago: Option<i64>,
    pub pid: u32,
}

#[derive(Serialize)]
pub struct ClusterView {
    pub leader: String,
    pub raft_term: u64,
    pub cluster_version: u32,
    pub nodes: Vec<NodeView>,
}

fn view(n: &NodeStatus) -> NodeView {
    NodeView {
        alias: n.alias.clone(),
        mode: n.mode().name().into(),
        machine: n.machine.clone(),
        addr: n.addr.clone(),
        state: n.state().name().into(),
        version: n.version.clone(),
        build_date: n.build_date.clone(),
        raft_role: n.raft_role.clone(),
        raft_matched_index: n.raft_matched_index,
        last_heartbeat_ms_ago: (n.last_heartbeat_ms_ago >= 0).then_some(n.last_heartbeat_ms_ago),
        pid: n.pid,
    }
}

/// Nodes sorted as an operator reads them: by machine, then controller / agent / data node.
pub fn cluster_view(s: &ClusterStatusResponse) -> ClusterView {
    let mut nodes: Vec<&NodeStatus> = s.nodes.iter().collect();
    nodes.sort_by_key(|n| (n.machine.clone(), n.mode, n.alias.clone()));
    ClusterView {
        leader: s.leader_alias.clone(),
        raft_term: s.raft_term,
        cluster_version: s.cluster_version,
        nodes: nodes.into_iter().map(view).collect(),
    }
}

pub fn render(v: &ClusterView) -> String {
    let rows = v
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.alias.clone(),
                n.mode.clone(),
                n.machine.clone(),
                n.addr.clone(),
                n.state.clone(),
                n.version.clone(),
                n.build_date.clone(),
                n.raft_role.clone(),
                n.last_heartbeat_ms_ago
                    .map_or("-".into(), |ms| format!("{ms} ms ago")),
            ]
        })
        .collect();
    let up = v.nodes.iter().filter(|n| n.state == "UP").count();
    format!(
        "{}\n{up}/{} nodes up; controller leader {} (term {}); cluster version {}",
        output::table(
            &[
                "ALIAS",
                "MODE",
                "MACHINE",
                "ADDRESS",
                "STATE",
                "VERSION",
                "BUILD DATE",
                "RAFT",
                "HEARTBEAT"
            ],
            rows
        ),
        v.nodes.len(),
        if v.leader.is_empty() {
            "unknown"
        } else {
            &v.leader
        },
        v.raft_term,
        v.cluster_version,
    )
}

pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let target = Target::resolve(&args.target)?;
    let status = target.controllers.cluster_status().await?;
    let v = cluster_view(&status);
    if args.json {
        println!("{}", output::json(&v)?);
    } else {
        println!("{}", render(&v));
    }
    Ok(())
}
