//! What the leader does on its own, on a fixed tick: seed the metadata with the nodes of
//! `cluster.nodes`, mark nodes DOWN whose heartbeats stopped, and re-create replicas of nodes
//! down longer than `dfsRecoveryWaitTime` elsewhere (`re_replication`).

use std::time::Duration;

use shoal_common::version;
use tokio::sync::watch;

use crate::cluster_meta::NodeState;
use crate::command::Command;
use crate::controller_service::{ControllerCore, now_ms};

/// How often the leader looks for silent nodes; bounds how late a DOWN is noticed.
const TICK: Duration = Duration::from_millis(250);

pub async fn run(
    core: ControllerCore,
    heartbeat_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        // On followers too: a leader elected later has timed each drop since it applied it.
        core.read(|m| core.drop_holds.observe(&m.catalog.dropped_at_ms));
        if core.ensure_leader().is_err() {
            continue;
        }
        let result = tokio::select! {
            r = tick(&core, heartbeat_timeout) => r,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        if let Err(e) = result {
            tracing::debug!("leader duties: {}", e.message());
        }
    }
}

async fn tick(core: &ControllerCore, heartbeat_timeout: Duration) -> Result<(), tonic::Status> {
    let missing = core.read(|m| m.undeclared(core.topology.declared()));
    if !missing.is_empty() {
        tracing::info!("declaring {} nodes from cluster.nodes", missing.len());
        // The first declaration of a new group also sets the cluster version this release
        // runs at: nothing older has ever read this cluster's files.
        let new_cluster_version = core
            .read(|m| m.nodes.is_empty())
            .then_some(version::CLUSTER_VERSION);
        core.write(Command::DeclareNodes {
            nodes: missing,
            new_cluster_version,
        })
        .await?;
    }
    // A failed seed is tried again next tick; it must not hold up failure detection below.
    if let Err(e) = crate::user_admin::ensure_seeded(core).await {
        tracing::warn!("seeding the users table: {}", e.message());
    }
    let live: Vec<String> = core.read(|m| {
        m.nodes
            .values()
            .filter(|n| n.state.is_live())
            .map(|n| n.alias.clone())
            .collect()
    });
    for alias in live {
        let silent = |core: &ControllerCore| {
            core.liveness
                .silent_for(&alias)
                .is_some_and(|d| d > heartbeat_timeout)
        };
        if !silent(core) {
            continue;
        }
        // Decide and commit under the lock heartbeats take: a heartbeat that arrived since the
        // first look wins, and one arriving during the write sees DOWN and reports UP again.
        let _guard = core.liveness_writes.lock().await;
        let still_live = core.read(|m| m.nodes.get(&alias).is_some_and(|n| n.state.is_live()));
        if !silent(core) || !still_live {
            continue;
        }
        tracing::warn!("node {alias}: no heartbeat for {heartbeat_timeout:?}, marking it down");
        core.write(Command::SetNodeState {
            alias,
            state: NodeState::Down,
            at_ms: now_ms(),
        })
        .await?;
    }
    crate::re_replication::tick(core).await
}
