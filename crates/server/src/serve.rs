//! Building, binding and serving a role's gRPC services (TLS when configured) with a bounded
//! graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use shoal_common::tls::ServerTls;
use tokio::net::TcpListener;
use tonic::transport::server::{Router, TcpIncoming};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

/// In-flight calls get this long after shutdown starts; tonic alone would wait forever.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A TLS handshake not finished in this long is dropped (a stalled client holds no slot).
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The gRPC server every role adds its services to: with `tls`, every connection is TLS (a
/// plaintext client fails its handshake) and, with `sslMutualAuth`, must present a
/// certificate signed by the cluster's CA.
pub fn builder(tls: Option<&ServerTls>) -> Result<Server, tonic::transport::Error> {
    let server = Server::builder();
    let Some(tls) = tls else {
        return Ok(server);
    };
    let mut config = ServerTlsConfig::new()
        .identity(Identity::from_pem(
            &tls.identity.cert_pem,
            &tls.identity.key_pem,
        ))
        .timeout(TLS_HANDSHAKE_TIMEOUT);
    if tls.mutual {
        config = config.client_ca_root(Certificate::from_pem(&tls.ca_pem));
    }
    server.tls_config(config)
}

/// Binds `addr` now, so a port conflict is reported before the role says it is up.
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let sock: SocketAddr = addr.parse().map_err(|e| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("`{addr}`: {e}"))
    })?;
    TcpListener::bind(sock)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains for at most
/// [`SHUTDOWN_GRACE`].
pub async fn serve(
    router: Router,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = router.serve_with_incoming_shutdown(incoming(listener), async move {
        let _ = stop_rx.await;
    });
    tokio::pin!(server);
    tokio::select! {
        r = &mut server => return r,
        _ = shutdown => {}
    }
    let _ = stop_tx.send(());
    match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
        Ok(r) => r,
        Err(_) => {
            tracing::warn!("in-flight calls did not finish within {SHUTDOWN_GRACE:?}; closing");
            Ok(())
        }
    }
}

/// The connections `listener` accepts, with Nagle's algorithm off: a gRPC answer is written in
/// pieces (headers, message, trailers), and holding a small last piece back until the client's
/// delayed ACK (40 ms on Linux) came added 40 to 90 ms to every small call, which was most of
/// what a query cost.
fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    #[tokio::test]
    async fn accepted_connections_send_small_writes_at_once() {
        let listener = bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut accepted = incoming(listener);
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let conn = accepted.next().await.unwrap().unwrap();
        assert!(conn.nodelay().unwrap());
    }
}
