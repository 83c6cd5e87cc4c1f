//! One lazily connected, authenticated channel per address, reused across calls; TLS when the
//! cluster is ([`Channels::with_tls`]). Every gRPC connection Shoal makes is built by
//! [`connect_lazy`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_common::tls::ClientTls;
use shoal_proto::auth::ClientAuth;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::ClientError;
use crate::liveness::Peers;

/// A channel that adds the cluster secret to every call.
pub type AuthChannel = InterceptedService<Channel, ClientAuth>;

const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// HTTP/2 PINGs on every connection, idle too: a peer that stops acknowledging them (paused,
/// hung, its machine gone without a reset) gets its connection closed, failing the calls on it
/// (the backstop for calls not [`crate::liveness::watched`]), and an idle dead connection is
/// replaced before the next call waits on it. The peer's connection task acknowledges PINGs
/// whatever its handlers do, so only a process that does not run misses them; the timeout
/// leaves a loaded machine seconds of slack.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Caches channels, and what is known of each peer's liveness, by address. Cloning shares the
/// cache.
#[derive(Clone)]
pub struct Channels {
    auth: ClientAuth,
    tls: Option<ClientTls>,
    cache: Arc<Mutex<HashMap<String, Channel>>>,
    peers: Arc<Peers>,
}

impl Channels {
    pub fn new(secret: &str) -> Result<Self, ClientError> {
        let auth =
            ClientAuth::new(secret).map_err(|s| ClientError::BadSecret(s.message().to_owned()))?;
        Ok(Self {
            auth,
            tls: None,
            cache: Arc::default(),
            peers: Arc::default(),
        })
    }

    /// Send a user's basic credentials instead of the secret (for the controllers'
    /// `UserAdmin`, which checks them itself).
    pub fn as_user(user: &str, password: &str) -> Result<Self, ClientError> {
        let auth = ClientAuth::basic(user, password)
            .map_err(|s| ClientError::BadSecret(s.message().to_owned()))?;
        Ok(Self {
            auth,
            tls: None,
            cache: Arc::default(),
            peers: Arc::default(),
        })
    }

    /// Connect with TLS (`Some`), trusting its CA and presenting its certificate if it has one.
    #[must_use]
    pub fn with_tls(mut self, tls: Option<ClientTls>) -> Self {
        self.tls = tls;
        self.cache = Arc::default();
        self
    }

    /// The TLS settings channels are made with.
    pub fn tls(&self) -> Option<&ClientTls> {
        self.tls.as_ref()
    }

    /// The channel to `addr` (`host:port`), created on first use; connects lazily and
    /// reconnects by itself after the peer restarts.
    pub fn get(&self, addr: &str) -> Result<AuthChannel, ClientError> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let channel = match cache.get(addr) {
            Some(c) => c.clone(),
            None => {
                let c = connect_lazy(addr, self.tls.as_ref())?;
                cache.insert(addr.to_owned(), c.clone());
                c
            }
        };
        Ok(InterceptedService::new(channel, self.auth.clone()))
    }

    pub(crate) fn peers(&self) -> &Peers {
        &self.peers
    }
}

/// A channel to `addr` (`host:port`) that connects on first use and reconnects by itself after
/// the peer restarts; over TLS with `tls` (the server's certificate must be signed by its CA
/// and name the host of `addr`).
pub fn connect_lazy(addr: &str, tls: Option<&ClientTls>) -> Result<Channel, ClientError> {
    let bad = |e: tonic::transport::Error| ClientError::BadAddress {
        addr: addr.to_owned(),
        message: e.to_string(),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
        .map_err(bad)?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    if let Some(tls) = tls {
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
        if let Some(id) = &tls.identity {
            config = config.identity(Identity::from_pem(&id.cert_pem, &id.key_pem));
        }
        endpoint = endpoint.tls_config(config).map_err(bad)?;
    }
    Ok(endpoint.connect_lazy())
}

/// A request that fails with `DeadlineExceeded` if not answered within `timeout`.
pub(crate) fn with_timeout<T>(timeout: Duration, msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.set_timeout(timeout);
    req
}
