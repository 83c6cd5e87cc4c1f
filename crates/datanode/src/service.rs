//! The `DataNode` gRPC service: appends (coordinated here), the replica side of replication,
//! and chunk reads for queries.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use shoal_common::users::Role;
use shoal_proto::auth::Principal;
use shoal_proto::data_node_server::DataNode;
use shoal_proto::{
    AppendRequest, AppendResponse, ApplyRecordsRequest, ChunkInfo, DrainRequest, DrainResponse,
    ListReplicasRequest, ListReplicasResponse, ReplicaPosition, ReplicaPositionRequest,
    ScanChunkRequest, ScanChunkResponse, SnapshotPart, WriteChunkRequest, WriteChunkResponse,
};
use shoal_storage::{AppendOutcome, Record};
use tonic::{Request, Response, Status, Streaming};

use crate::catalog_cache::is_in_sync;
use crate::error::storage_status;
use crate::node::Node;
use crate::replicas::position;

pub struct DataNodeService {
    node: Arc<Node>,
}

impl DataNodeService {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }

    /// The chunk as this node knows it, at least as new as the caller's; a caller with older
    /// metadata than ours is refused (ABORTED) so it cannot act on a superseded replica set.
    async fn chunk(&self, id: u64, version: u64) -> Result<ChunkInfo, Status> {
        let chunk = self.node.catalog.chunk_at_least(id, version).await?;
        if chunk.version > version {
            return Err(Status::aborted(format!(
                "chunk {id} is at version {}, the request was made at {version}",
                chunk.version
            )));
        }
        Ok(chunk)
    }

    /// A chunk for replication to this node. While draining, a replica out of sync refuses
    /// catch-up: it must not rejoin the in-sync set just before it stops.
    async fn replica_chunk(&self, id: u64, version: u64) -> Result<ChunkInfo, Status> {
        let chunk = self.chunk(id, version).await?;
        if self.node.is_draining() && !is_in_sync(&chunk, &self.node.alias) {
            return Err(self.node.draining_status());
        }
        Ok(chunk)
    }
}

/// Answer what a replication request put at its lsns, not the store's end: records this node
/// holds past them may be another primary's, and must not acknowledge the sender's. A duplicate
/// whose lsn is unknown does not show it holds the shipped lsn: a mismatch too (OUT_OF_RANGE,
/// which makes the primary compare checksums and rebuild a replica that diverged).
fn held_where_shipped(
    chunk_id: u64,
    wanted: &[u64],
    outcomes: &[AppendOutcome],
) -> Result<(), Status> {
    for (lsn, outcome) in wanted.iter().zip(outcomes) {
        if outcome.lsn() != Some(*lsn) {
            return Err(Status::out_of_range(format!(
                "chunk {chunk_id}: record for lsn {lsn} is {}",
                match outcome.lsn() {
                    Some(held) => format!("already held at lsn {held}"),
                    None => "a duplicate held at an unknown lsn".into(),
                }
            )));
        }
    }
    Ok(())
}

type ScanStream = Pin<Box<dyn Stream<Item = Result<ScanChunkResponse, Status>> + Send>>;

#[tonic::async_trait]
impl DataNode for DataNodeService {
    async fn append(
        &self,
        req: Request<AppendRequest>,
    ) -> Result<Response<AppendResponse>, Status> {
        Principal::of(&req).require(Role::Writer)?;
        if self.node.is_draining() {
            return Err(self.node.draining_status());
        }
        crate::coordinator::append(&self.node, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn write_chunk(
        &self,
        req: Request<WriteChunkRequest>,
    ) -> Result<Response<WriteChunkResponse>, Status> {
        Principal::of(&req).require_cluster()?;
        crate::primary::write_chunk(&self.node, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn apply_records(
        &self,
        req: Request<ApplyRecordsRequest>,
    ) -> Result<Response<ReplicaPosition>, Status> {
        Principal::of(&req).require_cluster()?;
        let req = req.into_inner();
        let chunk = self.replica_chunk(req.chunk_id, req.chunk_version).await?;
        let store = self.node.store(&chunk).await?;
        // Out of sync, this is catch-up: recovery, not the steady replication of appends.
        let catching_up = !is_in_sync(&chunk, &self.node.alias);
        let ipc_bytes: usize = req.records.iter().map(|r| r.arrow_ipc.len()).sum();
        let records = req
            .records
            .into_iter()
            .map(|r| {
                let batch = shoal_catalog::rows::decode_ipc(&r.arrow_ipc).map_err(|e| {
                    Status::invalid_argument(format!("record {}: undecodable: {e}", r.lsn))
                })?;
                Ok(Record {
                    lsn: r.lsn,
                    writer_id: r.writer_id,
                    seq: r.seq,
                    batch,
                })
            })
            .collect::<Result<Vec<_>, Status>>()?;
        let wanted: Vec<u64> = records.iter().map(|r| r.lsn).collect();
        let outcomes = store.apply_records(records).await.map_err(storage_status)?;
        held_where_shipped(chunk.id, &wanted, &outcomes)?;
        if catching_up {
            self.node.metrics.recovered("records", ipc_bytes as u64);
        }
        let mut answer = position(chunk.id, &store);
        if let Some(last) = wanted.last() {
            answer.last_lsn = *last;
        }
        Ok(Response::new(answer))
    }

    async fn get_replica_position(
        &self,
        req: Request<ReplicaPositionRequest>,
    ) -> Result<Response<ReplicaPosition>, Status> {
        Principal::of(&req).require_cluster()?;
        let req = req.into_inner();
        let chunk = self.replica_chunk(req.chunk_id, req.chunk_version).await?;
        let changes = if req.reset {
            Some("reset")
        } else {
            req.cut_after.map(|_| "cut back")
        };
        if let Some(what) = changes
            && is_in_sync(&chunk, &self.node.alias)
        {
            return Err(Status::failed_precondition(format!(
                "chunk {}: refusing to {what} a replica that is in sync at version {}",
                chunk.id, chunk.version
            )));
        }
        if req.reset {
            let schema = self.node.schema_of(&chunk)?;
            let store = self
                .node
                .replicas
                .reset(&chunk, schema)
                .await
                .map_err(Status::internal)?;
            self.node.metrics.repaired("reset");
            return Ok(Response::new(position(chunk.id, &store)));
        }
        if let Some(after) = req.cut_after
            && let Some(dropped) = self
                .node
                .replicas
                .cut_tail(chunk.id, after)
                .await
                .map_err(storage_status)?
            && dropped > 0
        {
            self.node.metrics.repaired("cut");
        }
        let Some(store) = self.node.replicas.get(chunk.id) else {
            return Ok(Response::new(ReplicaPosition {
                chunk_id: chunk.id,
                ..Default::default()
            }));
        };
        let mut at = position(chunk.id, &store);
        if let Some(lsn) = req.checksum_at {
            at.checksum_at_lsn = store
                .checksum_at_retained(lsn)
                .await
                .map_err(storage_status)?;
        }
        Ok(Response::new(at))
    }

    type ScanChunkStream = ScanStream;

    async fn scan_chunk(
        &self,
        req: Request<ScanChunkRequest>,
    ) -> Result<Response<ScanStream>, Status> {
        Principal::of(&req).require_cluster()?;
        let messages = crate::chunk_scan::messages(&self.node, &req.into_inner()).await?;
        Ok(Response::new(Box::pin(messages)))
    }

    async fn install_snapshot(
        &self,
        req: Request<Streaming<SnapshotPart>>,
    ) -> Result<Response<ReplicaPosition>, Status> {
        Principal::of(&req).require_cluster()?;
        let mut parts = req.into_inner();
        let Some(shoal_proto::snapshot_part::Part::Begin(begin)) =
            parts.message().await?.and_then(|p| p.part)
        else {
            return Err(Status::invalid_argument(
                "a snapshot stream starts with its begin message",
            ));
        };
        let chunk = self
            .replica_chunk(begin.chunk_id, begin.chunk_version)
            .await?;
        // As for a reset: an in-sync replica may hold acknowledged records the copy lacks.
        if is_in_sync(&chunk, &self.node.alias) {
            return Err(Status::failed_precondition(format!(
                "chunk {}: refusing to replace a replica that is in sync at version {}",
                chunk.id, chunk.version
            )));
        }
        crate::snapshot::receive(&self.node, &chunk, begin, parts)
            .await
            .map(Response::new)
    }

    async fn list_replicas(
        &self,
        req: Request<ListReplicasRequest>,
    ) -> Result<Response<ListReplicasResponse>, Status> {
        Principal::of(&req).require_cluster()?;
        Ok(Response::new(ListReplicasResponse {
            node: self.node.alias.clone(),
            replicas: self.node.replicas.positions(),
        }))
    }

    async fn drain(&self, req: Request<DrainRequest>) -> Result<Response<DrainResponse>, Status> {
        Principal::of(&req).require_cluster()?;
        crate::drain::drain(&self.node).await.map(Response::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_acknowledges_only_records_held_at_the_shipped_lsns() {
        let applied = AppendOutcome::Applied { lsn: 5 };
        let dup = |lsn| AppendOutcome::Duplicate { lsn };
        assert!(held_where_shipped(1, &[5, 6], &[applied, dup(Some(6))]).is_ok());
        let elsewhere = held_where_shipped(1, &[5, 6], &[applied, dup(Some(3))]).unwrap_err();
        assert_eq!(elsewhere.code(), tonic::Code::OutOfRange);
        assert!(
            elsewhere
                .message()
                .contains("lsn 6 is already held at lsn 3")
        );
        let unknown = held_where_shipped(1, &[5, 6], &[applied, dup(None)]).unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::OutOfRange);
        assert!(
            unknown.message().contains("unknown lsn"),
            "{}",
            unknown.message()
        );
    }
}
