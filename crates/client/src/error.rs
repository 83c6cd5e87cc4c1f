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

/// What a failed call's status says about the call: the one classifier the clients and the data
/// nodes' coordinator decide retries by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The call did not run: no connection, no leader, a node draining. Re-send anywhere.
    NotRun,
    /// The node or the path to it failed mid-call: a deadline (also a peer found not answering,
    /// [`crate::liveness`]), a reset connection (a transport-caused `Unknown`), a GOAWAY (which
    /// surfaces as `Cancelled`). It may have run: re-send only what is idempotent.
    OutcomeUnknown,
    /// The node answered: another node would answer the same.
    Answered,
}

pub fn classify(status: &tonic::Status) -> Failure {
    use tonic::Code::*;
    match status.code() {
        Unavailable => Failure::NotRun,
        Cancelled | DeadlineExceeded | Unknown => Failure::OutcomeUnknown,
        // Made by this side's transport, not answered by the node: an h2 error on the connection
        // (a GOAWAY ENHANCE_YOUR_CALM surfaces as RESOURCE_EXHAUSTED, a protocol error as
        // INTERNAL). Statuses the node sends carry no source.
        _ if std::error::Error::source(status).is_some() => Failure::OutcomeUnknown,
        _ => Failure::Answered,
    }
}

#[cfg(test)]
mod tests {
    use tonic::Status;

    use super::*;

    #[test]
    fn transport_failures_are_not_answers() {
        assert_eq!(classify(&Status::unavailable("down")), Failure::NotRun);
        assert_eq!(
            classify(&Status::deadline_exceeded("late")),
            Failure::OutcomeUnknown
        );
        assert_eq!(
            classify(&Status::resource_exhausted("too big")),
            Failure::Answered
        );
        // What an h2 GOAWAY ENHANCE_YOUR_CALM looks like: made locally, with its cause.
        let mut goaway = Status::resource_exhausted("h2 protocol error");
        goaway.set_source(std::sync::Arc::new(std::io::Error::other("calm down")));
        assert_eq!(classify(&goaway), Failure::OutcomeUnknown);
    }
}
