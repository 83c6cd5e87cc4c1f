//! Incoming Raft RPCs: decodes the JSON payloads and hands them to the local Raft node.

use std::io::Cursor;

use openraft::Snapshot;
use serde::Serialize;
use serde::de::DeserializeOwned;
use shoal_proto::raft_transport_server::RaftTransport;
use shoal_proto::{RaftMessage, SnapshotMessage};
use tonic::{Request, Response, Status};

use crate::raft_types::Raft;

pub struct RaftService {
    raft: Raft,
}

impl RaftService {
    pub fn new(raft: Raft) -> Self {
        Self { raft }
    }
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Status> {
    serde_json::from_slice(bytes)
        .map_err(|e| Status::invalid_argument(format!("bad raft message: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Result<Response<RaftMessage>, Status> {
    let json = serde_json::to_vec(value).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(RaftMessage { json }))
}

/// A local Raft failure (shutting down, fatal storage error) tells the peer to try later.
fn unavailable(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("raft: {e}"))
}

#[tonic::async_trait]
impl RaftTransport for RaftService {
    async fn append_entries(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let rpc = decode(&req.into_inner().json)?;
        encode(&self.raft.append_entries(rpc).await.map_err(unavailable)?)
    }

    async fn vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc = decode(&req.into_inner().json)?;
        encode(&self.raft.vote(rpc).await.map_err(unavailable)?)
    }

    async fn pre_vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc = decode(&req.into_inner().json)?;
        encode(&self.raft.pre_vote(rpc).await.map_err(unavailable)?)
    }

    async fn transfer_leader(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let rpc = decode(&req.into_inner().json)?;
        encode(
            &self
                .raft
                .handle_transfer_leader(rpc)
                .await
                .map_err(unavailable)?,
        )
    }

    async fn install_snapshot(
        &self,
        req: Request<SnapshotMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let msg = req.into_inner();
        let vote = decode(&msg.vote_json)?;
        let meta = decode(&msg.meta_json)?;
        let snapshot = Snapshot {
            meta,
            snapshot: Cursor::new(msg.data),
        };
        encode(
            &self
                .raft
                .install_full_snapshot(vote, snapshot)
                .await
                .map_err(unavailable)?,
        )
    }
}
