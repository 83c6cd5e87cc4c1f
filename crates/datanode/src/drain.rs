//! Leaving before a planned stop (a rolling upgrade): clients are sent elsewhere at once and
//! this node leaves the in-sync set of its chunks while it is still up, so when it stops no
//! append waits for it and no replica has to be found dead first.
//!
//! Per chunk, under the chunk's exclusive lock (appends this node leads as primary finish
//! first, none starts in between): "this node is out of sync" is committed through the
//! controller. The next in-sync replica is primary from that chunk version on; a primary
//! elsewhere that still ships at the old version is refused (ABORTED), refreshes, sees the
//! removal and releases its waiting appends (see `replication`). While draining, a replica
//! that is out of sync refuses catch-up, so it is not put back in sync before it stops.

use std::sync::Arc;

use futures::StreamExt;
use shoal_proto::{ChunkInfo, DrainResponse};
use tonic::Status;

use crate::catalog_cache::is_in_sync;
use crate::node::Node;
use crate::replication::remove_from_in_sync;

/// Attempts per chunk when another change to it commits first.
const ATTEMPTS: usize = 5;

/// Chunks left at once. Each leave is one Raft commit on the controllers, which batch
/// concurrent ones into one log append: one at a time, a node holding 667 chunks took 2.9 s
/// to leave them all (4.3 ms each), and that is the whole of its restart.
const LEAVE_PARALLELISM: usize = 32;

pub async fn drain(node: &Arc<Node>) -> Result<DrainResponse, Status> {
    node.draining.send_replace(true);
    tracing::info!("{}: draining", node.alias);
    node.catalog
        .refresh()
        .await
        .map_err(|e| Status::unavailable(format!("cannot read the catalog to drain: {e}")))?;
    let mut answer = DrainResponse::default();
    // Twice: a rejoin committed just before the flag was set, or a chunk placed here while
    // the controller still saw this node UP, shows in the second look.
    for pass in 0..2 {
        if pass == 1 {
            node.catalog.refresh().await.map_err(|e| {
                Status::unavailable(format!("cannot read the catalog to drain: {e}"))
            })?;
        }
        let ids: Vec<u64> = node.catalog.snapshot().chunks.keys().copied().collect();
        let (left, kept) = leave_each(node, ids, |_| false).await?;
        answer.chunks_left += u32::try_from(left).unwrap_or(u32::MAX);
        answer.chunks_kept = kept;
    }
    tracing::info!(
        "{}: drained: left {} chunks, kept {:?}",
        node.alias,
        answer.chunks_left,
        answer.chunks_kept
    );
    Ok(answer)
}

pub(crate) enum Left {
    Yes,
    NotInSync,
    /// This node is the chunk's last in-sync replica, or `stay` said so.
    Kept,
}

/// [`leave`] for each of `ids`, several at once; answers how many were left and which were
/// kept (sorted).
pub(crate) async fn leave_each(
    node: &Arc<Node>,
    ids: Vec<u64>,
    stay: impl Fn(&ChunkInfo) -> bool,
) -> Result<(usize, Vec<u64>), Status> {
    let stay = &stay;
    // Every leave runs to its end before a failure is answered: one dropped mid-commit would
    // leave its outcome unknown to this node's catalog.
    let outcomes: Vec<Result<(u64, Left), Status>> = futures::stream::iter(ids)
        .map(|id| async move { leave(node, id, stay).await.map(|l| (id, l)) })
        .buffer_unordered(LEAVE_PARALLELISM)
        .collect()
        .await;
    let outcomes = outcomes.into_iter().collect::<Result<Vec<_>, _>>()?;
    let left = outcomes
        .iter()
        .filter(|(_, l)| matches!(l, Left::Yes))
        .count();
    let mut kept: Vec<u64> = outcomes
        .into_iter()
        .filter_map(|(id, l)| matches!(l, Left::Kept).then_some(id))
        .collect();
    kept.sort_unstable();
    Ok((left, kept))
}

/// Commits "this node is out of sync" for chunk `id` with the chunk's appends paused, unless
/// no other replica is in sync or `stay(chunk)` holds.
pub(crate) async fn leave(
    node: &Arc<Node>,
    id: u64,
    stay: impl Fn(&ChunkInfo) -> bool,
) -> Result<Left, Status> {
    let lock = node.links.chunk_lock(id);
    let _appends_paused = lock.write().await;
    for _ in 0..ATTEMPTS {
        let Some(chunk) = node.catalog.chunk(id) else {
            return Ok(Left::NotInSync);
        };
        if !is_in_sync(&chunk, &node.alias) {
            return Ok(Left::NotInSync);
        }
        if stay(&chunk)
            || !chunk
                .replicas
                .iter()
                .any(|r| r.in_sync && r.node != node.alias)
        {
            return Ok(Left::Kept);
        }
        // A refusal refreshed the catalog: look again.
        if remove_from_in_sync(node, &chunk, &node.alias).await.is_ok() {
            return Ok(Left::Yes);
        }
    }
    Err(Status::aborted(format!(
        "chunk {id} kept changing; {} could not leave its in-sync set",
        node.alias
    )))
}
