//! Telling a peer that is slow to answer from one that cannot answer at all.
//!
//! A paused or hung process (SIGSTOP, a suspended VM, a stuck runtime) keeps its sockets: the
//! kernel accepts connections and buffers requests, so a call to it neither fails nor answers
//! until its deadline. Deadlines must be long enough for a peer that is slow but working (a
//! primary waiting for its replicas, appends paused while a replica rejoins), so on their own
//! they stall every caller for their whole length.
//!
//! [`watched`] lets a call run to its own deadline as long as the peer shows it is alive: once
//! the call has been pending for [`SUSPECT_AFTER`], and then every [`PROBE_EVERY`], the peer's
//! gRPC health service is asked, with a [`PROBE_TIMEOUT`] deadline. It is answered by the peer's
//! runtime whatever the call waits for, so an answer (even NOT_SERVING) means "slow, keep
//! waiting", and so does any other call to that peer answered meanwhile (a busy peer is late to
//! answer a probe but still answers calls). Otherwise the call ends with DEADLINE_EXCEEDED — its
//! outcome is unknown, the peer may run it when it resumes — and the caller fails over as it
//! would after the deadline. Only idempotent calls may be watched: their callers re-send them.
//!
//! One probe per peer is in flight at a time, shared by every call waiting on it: a paused peer
//! then finds few cancelled requests on resuming (a server answers a flood of them with GOAWAY
//! ENHANCE_YOUR_CALM, failing every call on the connection).
//!
//! HTTP/2 keepalive on every channel ([`crate::channel`]) is the backstop for calls that are not
//! watched.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::Status;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::channel::{Channels, with_timeout};
use crate::error::{Failure, classify};

/// A call pending this long gets its peer probed. Healthy appends take a few ms to a few tens
/// of ms; probing a peer that is merely slow costs one small RPC.
pub const SUSPECT_AFTER: Duration = Duration::from_millis(150);
/// How long a peer has to answer a probe. A running process answers within milliseconds, but
/// on a 2-core machine at load 20 a healthy debug build was seen to take over 300 ms; with
/// [`SUSPECT_AFTER`] this still gives up on a paused peer 650 ms into a call, so a failover
/// stays under 1 s.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// While a call stays pending, its peer is probed again this often (a peer can stop answering
/// after an earlier probe succeeded).
pub const PROBE_EVERY: Duration = Duration::from_millis(500);

/// Runs `call` to `addr`, ending it with DEADLINE_EXCEEDED as soon as `addr` stops answering
/// (see the module docs).
pub async fn watched<T>(
    channels: &Channels,
    addr: &str,
    call: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    let peer = channels.peers().get(addr);
    let mut call = std::pin::pin!(call);
    let mut next_probe = Instant::now() + SUSPECT_AFTER;
    loop {
        tokio::select! {
            r = &mut call => return peer.note(r),
            _ = tokio::time::sleep_until(next_probe) => {}
        }
        next_probe = Instant::now() + PROBE_EVERY;
        tokio::select! {
            r = &mut call => return peer.note(r),
            alive = peer.probe(channels, addr) => if !alive {
                tracing::warn!("{addr} answered nothing within {PROBE_TIMEOUT:?}");
                return Err(Status::deadline_exceeded(format!(
                    "{addr} stopped answering (no answer within {PROBE_TIMEOUT:?}): paused or hung"
                )));
            }
        }
    }
}

/// What is known of each peer's liveness, by address (kept by [`Channels`]).
#[derive(Default)]
pub(crate) struct Peers(Mutex<HashMap<String, Arc<Peer>>>);

impl Peers {
    fn get(&self, addr: &str) -> Arc<Peer> {
        let mut peers = self.0.lock().unwrap_or_else(|p| p.into_inner());
        peers.entry(addr.to_owned()).or_default().clone()
    }
}

type Probe = Shared<BoxFuture<'static, bool>>;

struct Peer {
    /// The probe in flight and when it started.
    probe: Mutex<Option<(Instant, Probe)>>,
    /// Counts the peer's answers to watched calls.
    answers: watch::Sender<u64>,
}

impl Default for Peer {
    fn default() -> Self {
        Self {
            probe: Mutex::default(),
            answers: watch::channel(0).0,
        }
    }
}

impl Peer {
    /// Passes a call's result through, counting it if the peer answered it.
    fn note<T>(&self, r: Result<T, Status>) -> Result<T, Status> {
        if r.as_ref()
            .err()
            .is_none_or(|s| classify(s) == Failure::Answered)
        {
            self.answers.send_modify(|n| *n += 1);
        }
        r
    }

    /// Whether the peer answers within [`PROBE_TIMEOUT`]: the probe in flight if it started
    /// recently enough (an older one may not have been polled since, and would time out at
    /// once), else a new one.
    fn probe(&self, channels: &Channels, addr: &str) -> Probe {
        let mut slot = self.probe.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((started, p)) = slot.as_ref()
            && p.peek().is_none()
            && started.elapsed() < PROBE_TIMEOUT
        {
            return p.clone();
        }
        let mut answered = self.answers.subscribe();
        let health = health_answers(channels, addr);
        let probe = async move {
            tokio::select! {
                alive = health => alive,
                Ok(()) = answered.changed() => true,
            }
        }
        .boxed()
        .shared();
        *slot = Some((Instant::now(), probe.clone()));
        probe
    }
}

/// Whether the process at `addr` answers a health check within [`PROBE_TIMEOUT`].
fn health_answers(channels: &Channels, addr: &str) -> BoxFuture<'static, bool> {
    let channel = channels.get(addr);
    async move {
        let Ok(channel) = channel else {
            return false;
        };
        let probe = with_timeout(PROBE_TIMEOUT, HealthCheckRequest::default());
        match HealthClient::new(channel).check(probe).await {
            Ok(_) => true,
            // A refusal, too, comes from a running process.
            Err(s) => classify(&s) == Failure::Answered,
        }
    }
    .boxed()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use tokio::net::TcpListener;
    use tokio::time::Instant;
    use tonic::Code;
    use tonic::transport::server::TcpIncoming;

    use super::*;

    /// A socket that accepts connections (the kernel does, into the backlog) and never answers:
    /// what a paused process looks like from outside.
    async fn silent_peer() -> (TcpListener, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        (listener, addr)
    }

    /// A running process that serves only gRPC health.
    async fn answering_peer() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (_reporter, health) = tonic_health::server::health_reporter();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(health)
                .serve_with_incoming(TcpIncoming::from(listener)),
        );
        addr
    }

    #[tokio::test]
    async fn a_call_to_a_peer_that_answers_nothing_is_given_up_within_a_second() {
        let (_listener, addr) = silent_peer().await;
        let channels = Channels::new("secret").unwrap();
        let started = Instant::now();
        let r: Result<(), Status> = watched(&channels, &addr, std::future::pending()).await;
        assert_eq!(r.unwrap_err().code(), Code::DeadlineExceeded);
        let took = started.elapsed();
        assert!(took >= SUSPECT_AFTER + PROBE_TIMEOUT, "{took:?}");
        assert!(took < Duration::from_secs(1), "{took:?}");
    }

    #[tokio::test]
    async fn a_slow_call_to_a_peer_that_answers_is_waited_for() {
        let addr = answering_peer().await;
        let channels = Channels::new("secret").unwrap();
        // Long enough for three probes.
        let slow = Duration::from_millis(1500);
        let call = async {
            tokio::time::sleep(slow).await;
            Ok::<_, Status>(7)
        };
        let started = Instant::now();
        assert_eq!(watched(&channels, &addr, call).await.unwrap(), 7);
        assert!(started.elapsed() >= slow);
    }
}
