//! `dfsRecoveryWaitTime`, as DolphinDB means it: once a data node has been down that long, each
//! of its replicas that is out of sync is re-created on another data node (chosen like a new
//! chunk's replicas: UP, least loaded, on another machine than the chunk's other replicas when
//! `dfsReplicaReliabilityLevel` asks for it). The new replica starts empty and out of sync; the
//! chunk's primary fills it and puts it into the in-sync set, as it does for any stale replica.
//! Zero (the default) never moves a replica: the node's return is awaited.

use std::collections::BTreeMap;

use shoal_common::config::ReliabilityLevel;

use crate::catalog::{ChunkMeta, ReplicaChange, ReplicaMove};
use crate::cluster_meta::{ClusterMeta, NodeState};
use crate::command::Command;
use crate::controller_service::{ControllerCore, now_ms};
use crate::placement::{Candidate, place};

/// One leader tick: moves every replica that has waited long enough.
pub async fn tick(core: &ControllerCore) -> Result<(), tonic::Status> {
    let wait = core.placement.recovery_wait;
    if wait.is_zero() {
        return Ok(());
    }
    let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
    let moves = core.read(|m| due_moves(m, now_ms(), wait_ms, core.placement.level));
    for change in moves {
        let m = change.move_replica.clone();
        let resp = core.write(Command::UpdateReplicas { change }).await?;
        if let Some(m) = m {
            if resp.rejected.is_empty() {
                tracing::warn!("re-creating the replica on {} on {}", m.from, m.to);
            } else {
                tracing::debug!("replica move {} -> {}: {}", m.from, m.to, resp.rejected);
            }
        }
    }
    Ok(())
}

/// The moves due now: replicas out of sync on data nodes DOWN for at least `wait_ms`.
fn due_moves(
    m: &ClusterMeta,
    now: u64,
    wait_ms: u64,
    level: ReliabilityLevel,
) -> Vec<ReplicaChange> {
    let dead = |alias: &str| {
        m.nodes.get(alias).is_some_and(|n| {
            n.state == NodeState::Down && now.saturating_sub(n.state_since_ms) >= wait_ms
        })
    };
    let mut load = m.catalog.replicas_per_node();
    let mut moves = Vec::new();
    for chunk in m.catalog.chunks.values() {
        let Some(from) = chunk.replicas.iter().find(|r| !r.in_sync && dead(&r.node)) else {
            continue;
        };
        let Some(to) = target(m, chunk, &load, level) else {
            continue; // nowhere to go now; looked at again next tick
        };
        *load.entry(to.clone()).or_default() += 1;
        moves.push(ReplicaChange {
            chunk_id: chunk.id,
            expected_version: chunk.version,
            remove_in_sync: vec![],
            add_in_sync: vec![],
            mark_written: false,
            move_replica: Some(ReplicaMove {
                from: from.node.clone(),
                to,
            }),
        });
    }
    moves
}

/// An UP data node holding no replica of the chunk, on a machine the chunk's other replicas do
/// not use when the reliability level says so.
fn target(
    m: &ClusterMeta,
    chunk: &ChunkMeta,
    load: &BTreeMap<String, usize>,
    level: ReliabilityLevel,
) -> Option<String> {
    let machine_of = |alias: &str| m.nodes.get(alias).map(|n| n.machine.as_str());
    let kept_machines: Vec<&str> = chunk
        .replicas
        .iter()
        .filter(|r| r.in_sync)
        .filter_map(|r| machine_of(&r.node))
        .collect();
    let candidates: Vec<Candidate<'_>> = m
        .up_data_nodes()
        .filter(|n| chunk.replicas.iter().all(|r| r.node != n.alias))
        .filter(|n| {
            level != ReliabilityLevel::MustDiffer || !kept_machines.contains(&n.machine.as_str())
        })
        .map(|n| Candidate {
            alias: &n.alias,
            machine: &n.machine,
            load: load.get(n.alias.as_str()).copied().unwrap_or(0),
        })
        .collect();
    // Prefer a machine the chunk does not use yet (level 2), then the least loaded.
    let fresh: Vec<Candidate<'_>> = candidates
        .iter()
        .filter(|c| !kept_machines.contains(&c.machine))
        .cloned()
        .collect();
    let pool = if fresh.is_empty() {
        &candidates
    } else {
        &fresh
    };
    place(pool, 1, ReliabilityLevel::SameMachineAllowed)
        .ok()
        .and_then(|mut v| v.pop())
}

#[cfg(test)]
mod tests {
    use shoal_common::config::NodeMode;

    use super::*;
    use crate::catalog::ReplicaMeta;
    use crate::cluster_meta::NodeRecord;
    use shoal_catalog::PartitionKey;

    fn meta() -> ClusterMeta {
        let mut m = ClusterMeta::default();
        for (alias, machine) in [("dn1", "a"), ("dn2", "b"), ("dn3", "c"), ("dn4", "a")] {
            m.nodes.insert(
                alias.into(),
                NodeRecord {
                    alias: alias.into(),
                    mode: Some(NodeMode::DataNode),
                    machine: machine.into(),
                    state: NodeState::Up,
                    ..NodeRecord::default()
                },
            );
        }
        m.catalog.next_chunk_id = 1;
        m.catalog.chunks.insert(
            1,
            ChunkMeta {
                id: 1,
                db: "dfs://stock".into(),
                table: "stock".into(),
                key: PartitionKey::Date(0),
                replicas: vec![
                    ReplicaMeta {
                        node: "dn1".into(),
                        in_sync: true,
                    },
                    ReplicaMeta {
                        node: "dn2".into(),
                        in_sync: false,
                    },
                ],
                state: crate::catalog::ChunkState::Recovering,
                version: 7,
            },
        );
        m
    }

    #[test]
    fn a_replica_moves_only_after_its_node_was_down_for_the_wait_and_to_another_machine() {
        let mut m = meta();
        let down = m.nodes.get_mut("dn2").unwrap();
        down.state = NodeState::Down;
        down.state_since_ms = 1_000;
        assert!(due_moves(&m, 5_000, 30_000, ReliabilityLevel::MustDiffer).is_empty());
        let moves = due_moves(&m, 31_000, 30_000, ReliabilityLevel::MustDiffer);
        assert_eq!(moves.len(), 1);
        assert_eq!(moves[0].expected_version, 7);
        // dn4 shares machine `a` with the in-sync replica on dn1: dn3 it is.
        assert_eq!(
            moves[0].move_replica,
            Some(ReplicaMove {
                from: "dn2".into(),
                to: "dn3".into()
            })
        );
        // With dn3 down too there is nowhere to go under level 1.
        m.nodes.get_mut("dn3").unwrap().state = NodeState::Down;
        assert!(due_moves(&m, 31_000, 30_000, ReliabilityLevel::MustDiffer).is_empty());
        // A node that is up again keeps its replica.
        m.nodes.get_mut("dn2").unwrap().state = NodeState::Up;
        assert!(due_moves(&m, 99_000, 30_000, ReliabilityLevel::DifferWhenPossible).is_empty());
    }
}
