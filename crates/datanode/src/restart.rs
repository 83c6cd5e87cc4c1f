//! Rejoining after a restart. A data node that starts again cannot vouch for its replicas: its
//! disk may have been replaced or wiped, a volume may be missing, or writes it acknowledged may
//! be gone (`dataSync=0` and a power loss). Taking such a replica as the truth would let it, as
//! primary, reset the replica that does hold the data (both copies lost). So before it serves,
//! the node leaves the in-sync set of every chunk another replica can vouch for; that replica
//! is the primary from then on and fills this one again (shipping only what it lacks, or
//! rebuilding it if it diverged) before putting it back — Kafka's rule that a restarted broker
//! is a follower until it caught up.
//!
//! It stays in sync where it is the last in-sync replica (nothing better exists), and where
//! every other in-sync replica is on a node that is not UP while its own copy reopened intact
//! (record, store and WAL as they were written): a cluster starting cold stays writable
//! instead of waiting for a machine that may never come back.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use shoal_proto::NodeState;
use tonic::Status;

use crate::catalog_cache::{is_in_sync, unavailable};
use crate::drain::leave_each;
use crate::node::Node;

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Returns once every chunk this node is in sync for was left or kept by the rule above;
/// retries while the controllers cannot be reached (nothing can be written then anyway).
pub async fn leave_in_sync_sets(node: &Arc<Node>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        match leave_once(node).await {
            Ok((left, kept)) => {
                tracing::info!(
                    "{}: restarted: out of sync for {left} chunks until their primaries fill \
                     them again; in sync for {} (last or only vouching replica): {kept:?}",
                    node.alias,
                    kept.len()
                );
                return;
            }
            Err(e) => {
                tracing::warn!(
                    "{}: cannot leave the in-sync sets yet: {}",
                    node.alias,
                    e.message()
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

async fn leave_once(node: &Arc<Node>) -> Result<(usize, Vec<u64>), Status> {
    node.catalog.refresh().await.map_err(unavailable)?;
    // Unknown liveness counts every other node as UP: the node then leaves, the safe side.
    let not_up: HashSet<String> = match node.catalog.controllers().cluster_status().await {
        Ok(status) => status
            .nodes
            .into_iter()
            .filter(|n| n.state() != NodeState::Up)
            .map(|n| n.alias)
            .collect(),
        Err(e) => {
            tracing::warn!("cluster status unknown ({e}); leaving every in-sync set it can");
            HashSet::new()
        }
    };
    let snapshot = node.catalog.snapshot();
    let ids: Vec<u64> = snapshot
        .chunks
        .values()
        .filter(|c| is_in_sync(c, &node.alias))
        .map(|c| c.id)
        .collect();
    let others_down = |c: &shoal_proto::ChunkInfo| {
        c.replicas
            .iter()
            .filter(|r| r.in_sync && r.node != node.alias)
            .all(|r| not_up.contains(&r.node))
    };
    leave_each(node, ids, |c| {
        node.replicas.reopened_intact(c.id) && others_down(c)
    })
    .await
}
