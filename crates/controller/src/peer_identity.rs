//! Calls to another controller's `Identity` and `Admit` (the Raft transport service).

use std::time::Duration;

use shoal_client::channel::Channels;
use shoal_proto::raft_transport_client::RaftTransportClient;
use shoal_proto::{AdmitRequest, IdentityRequest, IdentityResponse};

/// A controller that is up answers in milliseconds.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// What a peer said about its store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerAnswer {
    /// It answered.
    Known(IdentityResponse),
    /// A controller older than 0.2 (UNIMPLEMENTED): it runs, so it is a member with state.
    Old,
    /// No answer (down, unreachable, not started yet).
    Unreachable(String),
}

impl PeerAnswer {
    /// Whether the peer holds Raft state, or may (an older build always does).
    pub fn holds_state(&self) -> bool {
        match self {
            PeerAnswer::Known(r) => r.holds_state || r.admitted,
            PeerAnswer::Old => true,
            PeerAnswer::Unreachable(_) => false,
        }
    }
}

fn client(
    channels: &Channels,
    addr: &str,
) -> Result<RaftTransportClient<shoal_client::channel::AuthChannel>, String> {
    channels
        .get(addr)
        .map(RaftTransportClient::new)
        .map_err(|e| e.to_string())
}

pub async fn ask(channels: &Channels, addr: &str) -> PeerAnswer {
    let mut c = match client(channels, addr) {
        Ok(c) => c,
        Err(e) => return PeerAnswer::Unreachable(e),
    };
    let mut req = tonic::Request::new(IdentityRequest {});
    req.set_timeout(CALL_TIMEOUT);
    match tokio::time::timeout(CALL_TIMEOUT, c.identity(req)).await {
        Ok(Ok(r)) => PeerAnswer::Known(r.into_inner()),
        Ok(Err(s)) if s.code() == tonic::Code::Unimplemented => PeerAnswer::Old,
        Ok(Err(s)) => PeerAnswer::Unreachable(format!("{}: {}", s.code(), s.message())),
        Err(_) => PeerAnswer::Unreachable(format!("no answer within {CALL_TIMEOUT:?}")),
    }
}

pub async fn admit(
    channels: &Channels,
    addr: &str,
    req: AdmitRequest,
) -> Result<IdentityResponse, String> {
    let mut c = client(channels, addr)?;
    let mut req = tonic::Request::new(req);
    req.set_timeout(CALL_TIMEOUT);
    match tokio::time::timeout(CALL_TIMEOUT, c.admit(req)).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(s)) => Err(format!("{}: {}", s.code(), s.message())),
        Err(_) => Err(format!("no answer within {CALL_TIMEOUT:?}")),
    }
}
