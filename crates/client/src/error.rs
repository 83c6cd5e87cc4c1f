//! Errors a caller can act on.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No controller answered as leader within the deadline.
    #[error("no controller leader reachable at {sites} within {waited:?}; last error: {last}")]
    NoLeader {
        sites: String,
        waited: Duration,
        last: String,
    },
    /// The server refused the cluster secret.
    #[error("{addr}: authentication failed: {message}")]
    Unauthenticated { addr: String, message: String },
    /// The server answered with an error that retrying elsewhere would not fix.
    #[error("{addr}: {code}: {message}")]
    Rpc {
        addr: String,
        code: tonic::Code,
        message: String,
    },
    #[error("unusable cluster secret: {0}")]
    BadSecret(String),
    #[error("invalid address `{addr}`: {message}")]
    BadAddress { addr: String, message: String },
    #[error("{0}")]
    BadInput(String),
    /// No site completed the call before the deadline.
    #[error("{what}: no data node answered within {waited:?}; last error: {last}")]
    Unavailable {
        what: String,
        waited: Duration,
        last: String,
    },
}

impl ClientError {
    pub(crate) fn from_status(addr: &str, s: tonic::Status) -> Self {
        if s.code() == tonic::Code::Unauthenticated {
            return Self::Unauthenticated {
                addr: addr.to_owned(),
                message: s.message().to_owned(),
            };
        }
        Self::Rpc {
            addr: addr.to_owned(),
            code: s.code(),
            message: s.message().to_owned(),
        }
    }
}

/// Errors that mean "this node cannot answer now, another may": the node is down, restarting,
/// closing its connections (a GOAWAY surfaces as `Cancelled`), or too slow.
pub(crate) fn is_retryable_elsewhere(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::Unavailable | tonic::Code::Cancelled | tonic::Code::DeadlineExceeded
    )
}
