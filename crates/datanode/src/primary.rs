//! A chunk's share of an append, at the chunk's primary: the local write assigns the lsn, then
//! the append waits until every other in-sync replica holds it (or was taken out of the
//! in-sync set through the controller). Only then is it acknowledged.

use std::sync::Arc;

use futures::future::try_join_all;
use shoal_proto::{ChunkInfo, UpdateReplicasRequest, WriteChunkRequest, WriteChunkResponse};
use shoal_storage::AppendOutcome;
use tonic::Status;

use crate::catalog_cache::primary;
use crate::error::storage_status;
use crate::node::Node;
use crate::replication::wait_replicated;

pub async fn write_chunk(
    node: &Arc<Node>,
    req: WriteChunkRequest,
) -> Result<WriteChunkResponse, Status> {
    node.memory.admit(&node.alias).await?;
    node.catalog.ensure_fresh().await?;
    let chunk = node
        .catalog
        .chunk_at_least(req.chunk_id, req.chunk_version)
        .await?;
    ensure_primary(node, &chunk)?;
    let lock = node.links.chunk_lock(chunk.id);
    let appends_allowed = lock.read().await;
    // A rejoin may have changed the in-sync set while we waited for the lock.
    let chunk = node
        .catalog
        .chunk(req.chunk_id)
        .ok_or_else(|| Status::not_found(format!("chunk {} was dropped", req.chunk_id)))?;
    ensure_primary(node, &chunk)?;
    let store = node.store(&chunk).await?;
    let batch = shoal_catalog::rows::decode_ipc(&req.arrow_ipc)
        .map_err(|e| Status::invalid_argument(format!("undecodable Arrow IPC: {e}")))?;
    let outcome = store
        .append(req.writer_id, req.seq, batch)
        .await
        .map_err(storage_status)?;
    // A duplicate's original may not have reached the other replicas yet: wait for it too.
    // Without its lsn there is nothing to wait for, so nothing to acknowledge.
    let Some(lsn) = outcome.lsn() else {
        return Err(Status::internal(format!(
            "chunk {}: ({}, {}) is a duplicate whose lsn is unknown; not acknowledged",
            chunk.id, req.writer_id, req.seq
        )));
    };
    wait_all_replicated(node, &chunk, lsn).await?;
    ensure_not_dropped(node, chunk.id).await?;
    drop(appends_allowed);
    if chunk.current_state() == shoal_proto::ChunkState::Constructing {
        tokio::spawn(mark_written(node.clone(), chunk));
    }
    Ok(WriteChunkResponse {
        lsn,
        duplicate: matches!(outcome, AppendOutcome::Duplicate { .. }),
    })
}

/// Waits until every other replica in sync at `chunk.version` holds `lsn`, or was taken out of
/// the in-sync set after that version: what acknowledges an append, and what makes a record
/// safe to read at the primary.
pub async fn wait_all_replicated(
    node: &Arc<Node>,
    chunk: &ChunkInfo,
    lsn: u64,
) -> Result<(), Status> {
    let waits = chunk
        .replicas
        .iter()
        .filter(|r| r.in_sync && r.node != node.alias)
        .map(|r| node.links.link(node, chunk.id, &r.node))
        .collect::<Vec<_>>();
    try_join_all(waits.iter().map(|l| wait_replicated(l, lsn, chunk.version))).await?;
    Ok(())
}

/// The table (or partition) may have been dropped while the append waited for locks, the disk
/// and the replicas: it is acknowledged only if a catalog younger than the lease still holds
/// the chunk. A DROP answers only after the lease, so no append is acknowledged for a dropped
/// table after its DROP returned (F9). The record stays in a chunk that is being deleted: a
/// definite failure, not an unknown outcome.
async fn ensure_not_dropped(node: &Node, id: u64) -> Result<(), Status> {
    node.catalog.ensure_fresh().await?;
    match node.catalog.chunk(id) {
        Some(_) => Ok(()),
        None => Err(Status::not_found(format!(
            "chunk {id} was dropped while the append was in flight; it is not acknowledged"
        ))),
    }
}

pub fn is_primary(node: &Node, chunk: &ChunkInfo) -> bool {
    primary(chunk).is_some_and(|p| p.node == node.alias)
}

fn ensure_primary(node: &Node, chunk: &ChunkInfo) -> Result<(), Status> {
    match primary(chunk) {
        Some(p) if p.node == node.alias => Ok(()),
        Some(p) => Err(Status::failed_precondition(format!(
            "{} is not the primary of chunk {} at version {}; {} is",
            node.alias, chunk.id, chunk.version, p.node
        ))),
        None => Err(Status::failed_precondition(format!(
            "chunk {} has no replica in sync",
            chunk.id
        ))),
    }
}

/// CONSTRUCTING ends with the first acknowledged write.
async fn mark_written(node: Arc<Node>, chunk: ChunkInfo) {
    let change = UpdateReplicasRequest {
        mark_written: true,
        ..Default::default()
    };
    // An error: another append marked it first (the version moved on), nothing to do.
    if let Err(e) = node.catalog.change_replicas(&chunk, change).await {
        tracing::debug!("chunk {}: mark written: {e}", chunk.id);
    }
}
