//! Outgoing Raft RPCs: openraft messages as JSON inside protobuf, over one lazily connected,
//! authenticated tonic channel per peer (reconnects on its own after a peer restarts).

use std::future::Future;
use std::io::Cursor;

use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::type_config::alias::{SnapshotOf, VoteOf};
use openraft::{AnyError, BasicNode, OptionalSend};
use serde::Serialize;
use serde::de::DeserializeOwned;
use shoal_client::channel::{AuthChannel, Channels};
use shoal_proto::raft_transport_client::RaftTransportClient;
use shoal_proto::{RaftMessage, SnapshotMessage};

use crate::raft_types::{NodeId, TypeConfig};

/// Creates one [`PeerConnection`] per target controller.
#[derive(Clone)]
pub struct Network {
    channels: Channels,
}

impl Network {
    pub fn new(channels: Channels) -> Self {
        Self { channels }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerConnection {
        let client = self
            .channels
            .get(&node.addr)
            .map(|c| {
                RaftTransportClient::new(c)
                    .max_encoding_message_size(crate::server::MAX_RAFT_MESSAGE)
                    .max_decoding_message_size(crate::server::MAX_RAFT_MESSAGE)
            })
            .map_err(|e| format!("controller {target}: {e}"));
        PeerConnection { target, client }
    }
}

pub struct PeerConnection {
    target: NodeId,
    client: Result<RaftTransportClient<AuthChannel>, String>,
}

impl PeerConnection {
    fn client(&self) -> Result<RaftTransportClient<AuthChannel>, RPCError<TypeConfig>> {
        self.client
            .clone()
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&AnyError::error(e))))
    }

    async fn unary<Req, Resp, F, Fut>(
        &self,
        req: &Req,
        option: &RPCOption,
        call: F,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        F: FnOnce(RaftTransportClient<AuthChannel>, tonic::Request<RaftMessage>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<RaftMessage>, tonic::Status>>,
    {
        let json = serde_json::to_vec(req).map_err(|e| network_error(&e))?;
        let mut request = tonic::Request::new(RaftMessage { json });
        request.set_timeout(option.hard_ttl());
        let resp = call(self.client()?, request)
            .await
            .map_err(|s| status_to_rpc_error(self.target, s))?;
        serde_json::from_slice(&resp.into_inner().json).map_err(|e| network_error(&e))
    }
}

impl RaftNetworkV2<TypeConfig> for PeerConnection {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary(&rpc, &option, |mut c, r| async move {
            c.append_entries(r).await
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary(&rpc, &option, |mut c, r| async move { c.vote(r).await })
            .await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary(&rpc, &option, |mut c, r| async move { c.pre_vote(r).await })
            .await
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary(&req, &option, |mut c, r| async move {
            c.transfer_leader(r).await
        })
        .await
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, Cursor<Vec<u8>>>,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let msg = SnapshotMessage {
            vote_json: serde_json::to_vec(&vote).map_err(|e| network_error(&e))?,
            meta_json: serde_json::to_vec(&snapshot.meta).map_err(|e| network_error(&e))?,
            data: snapshot.snapshot.into_inner(),
        };
        let mut request = tonic::Request::new(msg);
        request.set_timeout(option.hard_ttl());
        let resp = self
            .client()?
            .install_snapshot(request)
            .await
            .map_err(|s| status_to_rpc_error(self.target, s))?;
        Ok(serde_json::from_slice(&resp.into_inner().json).map_err(|e| network_error(&e))?)
    }
}

fn network_error(e: &(impl std::error::Error + 'static)) -> RPCError<TypeConfig> {
    RPCError::Network(NetworkError::new(e))
}

/// A peer that cannot be reached is `Unreachable` (openraft backs off); anything else is a
/// network error for this one RPC.
fn status_to_rpc_error(target: NodeId, s: tonic::Status) -> RPCError<TypeConfig> {
    let e = AnyError::error(format!(
        "controller {target}: {}: {}",
        s.code(),
        s.message()
    ));
    match s.code() {
        tonic::Code::Unavailable | tonic::Code::Cancelled => {
            RPCError::Unreachable(Unreachable::new(&e))
        }
        _ => RPCError::Network(NetworkError::new(&e)),
    }
}
