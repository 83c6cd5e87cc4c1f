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

/// A failed call's message with the errors under it: a transport error's message is just
/// "transport error", the reason (refused, reset, a protocol error) is in its sources.
pub(crate) fn described(status: &tonic::Status) -> String {
    shoal_common::error_text::with_sources(
        status.message().to_owned(),
        std::error::Error::source(status),
    )
}

/// How a TLS server's answer to a plaintext HTTP/2 client fails it: the TLS alert read as an
/// oversized frame, or the connection dropped while the client still writes (which of them
/// depends on timing). A server that is down refuses the connection instead.
const DROPPED_BY_TLS: [&str; 4] = [
    "frame with invalid size",
    "connection closed",
    "broken pipe",
    "Connection reset",
];

/// What a failed connection suggests when it looks like one side speaks TLS and the other
/// does not (the last error after every retry, so not a node restarting).
pub(crate) fn tls_hint(error: &str, client_tls: bool) -> Option<&'static str> {
    if client_tls {
        error.contains("InvalidContentType").then_some(
            "the server may not use TLS (enableSSL=0): leave out --tls-ca and $SHOAL_TLS_CA",
        )
    } else {
        DROPPED_BY_TLS.iter().any(|d| error.contains(d)).then_some(
            "the server may require TLS (enableSSL=1): give its CA with --tls-ca FILE or \
                 $SHOAL_TLS_CA; --dir finds DIR/tls/ca.pem",
        )
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

    #[test]
    fn a_protocol_mismatch_suggests_tls_or_no_tls_and_nothing_else_does() {
        let plain_to_tls = [
            "a:1: h2 protocol error: http2 error: transport error: connection error detected: frame with invalid size",
            "a:1: operation was canceled: transport error: connection closed",
            "a:1: transport error: connection error: stream closed because of a broken pipe",
        ];
        for e in plain_to_tls {
            assert!(tls_hint(e, false).unwrap().contains("--tls-ca FILE"), "{e}");
            assert_eq!(tls_hint(e, true), None, "{e}");
        }
        let tls_to_plain =
            "a:1: received corrupt message of type InvalidContentType: transport error";
        assert!(
            tls_hint(tls_to_plain, true)
                .unwrap()
                .contains("may not use TLS")
        );
        assert_eq!(tls_hint(tls_to_plain, false), None);
        let down = "a:1: tcp connect error: transport error: Connection refused (os error 111)";
        assert_eq!(tls_hint(down, false), None);
        assert_eq!(tls_hint(down, true), None);
    }
}
