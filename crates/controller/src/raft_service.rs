//! Incoming Raft RPCs: decodes the JSON payloads and hands them to the local Raft node.
//! A controller that is not admitted (`crate::admission`) refuses votes, pre-votes and
//! leadership transfers: its store was new, so it cannot know what it voted for or
//! acknowledged before.

use std::io::Cursor;
use std::sync::Arc;

use openraft::Snapshot;
use openraft::async_runtime::WatchReceiver;
use serde::Serialize;
use serde::de::DeserializeOwned;
use shoal_proto::raft_transport_server::RaftTransport;
use shoal_proto::{AdmitRequest, IdentityRequest, IdentityResponse, RaftMessage, SnapshotMessage};
use tonic::{Request, Response, Status};

use crate::admission::Admission;
use crate::raft_types::{Raft, TypeConfig};

pub struct RaftService {
    raft: Raft,
    admission: Arc<Admission>,
}

impl RaftService {
    pub fn new(raft: Raft, admission: Arc<Admission>) -> Self {
        Self { raft, admission }
    }

    /// Refuses `what` (from `rpc`'s candidate) unless this controller is admitted.
    fn require_admitted(&self, what: &str, candidate: Option<u64>) -> Result<(), Status> {
        if self.admission.is_admitted() {
            return Ok(());
        }
        let from = candidate.map_or_else(String::new, |c| format!(" from controller {c}"));
        tracing::warn!(
            "refused a {what}{from}: this controller's metadata store is new and it has not been \
             admitted (re-admission: learner, caught up, then voter)"
        );
        Err(Status::failed_precondition(format!(
            "controller {} refuses a {what}: its metadata store is new and it has not been \
             admitted yet",
            self.admission.id()
        )))
    }
}

fn candidate(rpc: &openraft::raft::VoteRequest<TypeConfig>) -> Option<u64> {
    Some(rpc.vote.leader_id.node_id)
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
        self.require_admitted("vote request", candidate(&rpc))?;
        encode(&self.raft.vote(rpc).await.map_err(unavailable)?)
    }

    async fn pre_vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc = decode(&req.into_inner().json)?;
        self.require_admitted("pre-vote request", candidate(&rpc))?;
        encode(&self.raft.pre_vote(rpc).await.map_err(unavailable)?)
    }

    async fn transfer_leader(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let rpc = decode(&req.into_inner().json)?;
        self.require_admitted("leadership transfer", None)?;
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

    async fn identity(
        &self,
        _req: Request<IdentityRequest>,
    ) -> Result<Response<IdentityResponse>, Status> {
        Ok(Response::new(self.admission.answer(&self.raft).await))
    }

    async fn admit(
        &self,
        req: Request<AdmitRequest>,
    ) -> Result<Response<IdentityResponse>, Status> {
        let req = req.into_inner();
        if req.raft_id != self.admission.id() {
            return Err(Status::invalid_argument(format!(
                "admit: this is controller {}, not {}",
                self.admission.id(),
                req.raft_id
            )));
        }
        if !self.admission.is_admitted() {
            let last = self
                .raft
                .metrics()
                .borrow_watched()
                .last_log_index
                .unwrap_or(0);
            if last < req.caught_up_to {
                return Err(Status::failed_precondition(format!(
                    "admit: this controller holds log entries up to {last}, not {}",
                    req.caught_up_to
                )));
            }
            self.admission
                .admit(&self.raft, &req.cluster_id)
                .await
                .map_err(|e| Status::unavailable(format!("admit: {e}")))?;
            tracing::info!(
                "admitted by leader {} after catching up to log index {}: this controller \
                 votes again",
                req.leader_id,
                req.caught_up_to
            );
        }
        Ok(Response::new(self.admission.answer(&self.raft).await))
    }
}
