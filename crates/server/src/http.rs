//! Metrics and health over HTTP, on every role, on the port `httpPort` names (by default the
//! node's own port + [`HTTP_PORT_OFFSET`]):
//!
//! - `/metrics`: Prometheus' text format, from the role's [`Registry`], always with
//!   `shoal_build_info{role, alias, version, build_date} 1`;
//! - `/health`: 200 while the process answers at all;
//! - `/ready`: 200 once the role serves, 503 with the reason while it is starting, draining or
//!   recovering (what a load balancer or an orchestrator waits on).
//!
//! Read-only: nothing served here changes state, so, like any Prometheus target, it asks for no
//! login. With `enableSSL=1` they are served over TLS like the gRPC port (and, with
//! `sslMutualAuth=1`, only to clients presenting a certificate of the cluster's CA).

use std::sync::Arc;

pub use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use shoal_common::tls::ServerTls;
use tokio::sync::watch;

use crate::tls_listener::TlsListener;

/// The default HTTP port is the node's gRPC port plus this (8922 → 9922).
pub const HTTP_PORT_OFFSET: u16 = 1000;

/// Whether the role serves; the reason when it does not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    NotReady(String),
}

/// A role's registry, with its build info already in it. Every metric name gets the `shoal_`
/// prefix.
pub fn registry(role: &str, alias: &str) -> Registry {
    let mut registry = Registry::with_prefix("shoal");
    let info = Family::<Vec<(String, String)>, Gauge>::default();
    info.get_or_create(&vec![
        ("role".into(), role.into()),
        ("alias".into(), alias.into()),
        ("version".into(), shoal_common::version::version().into()),
        (
            "build_date".into(),
            shoal_common::version::build_date().into(),
        ),
    ])
    .set(1);
    registry.register(
        "build_info",
        "The release this process runs (always 1)",
        info,
    );
    registry
}

#[derive(Clone)]
struct Endpoints {
    registry: Arc<Registry>,
    ready: watch::Receiver<Readiness>,
}

/// Binds the endpoints of a node whose gRPC address is `grpc_addr` now (a port conflict is
/// reported before the role says it is up) and serves them, and the role's own `routes`
/// beside them (the controllers' console), until `stop` turns true; over TLS with `tls`.
pub async fn spawn(
    grpc_addr: &str,
    http_port: u16,
    registry: Registry,
    ready: watch::Receiver<Readiness>,
    mut stop: watch::Receiver<bool>,
    routes: Router,
    tls: Option<&ServerTls>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let addr = http_addr(grpc_addr, http_port)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let listener = crate::serve::bind(&addr).await?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!("HTTP endpoints on {scheme}://{addr} (/metrics, /health, /ready)");
    let app = app(Arc::new(registry), ready, routes);
    let listener = match tls {
        Some(tls) => Either::Tls(TlsListener::new(listener, tls.http_config())?),
        None => Either::Plain(listener),
    };
    Ok(tokio::spawn(async move {
        let mut stopped = stop.clone();
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        let served = async move {
            match listener {
                Either::Tls(l) => axum::serve(l, app).with_graceful_shutdown(shutdown).await,
                Either::Plain(l) => axum::serve(l, app).with_graceful_shutdown(shutdown).await,
            }
        };
        tokio::pin!(served);
        // axum waits for every open connection once stopped; a scraper cut off mid-request
        // must not hold the role's shutdown (or an agent's re-execution) forever.
        let outcome = tokio::select! {
            r = &mut served => Some(r),
            _ = async {
                let _ = stopped.wait_for(|s| *s).await;
                tokio::time::sleep(crate::serve::SHUTDOWN_GRACE).await;
            } => None,
        };
        match outcome {
            Some(Err(e)) => tracing::warn!("HTTP endpoints on {addr}: {e}"),
            Some(Ok(())) => {}
            None => tracing::warn!(
                "HTTP connections still open {:?} after stopping; closing",
                crate::serve::SHUTDOWN_GRACE
            ),
        }
    }))
}

enum Either {
    Plain(tokio::net::TcpListener),
    Tls(TlsListener),
}

/// The endpoints, and `routes` beside them.
fn app(registry: Arc<Registry>, ready: watch::Receiver<Readiness>, routes: Router) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(readiness))
        .with_state(Endpoints { registry, ready })
        .merge(routes)
}

async fn metrics(State(e): State<Endpoints>) -> impl IntoResponse {
    let mut body = String::new();
    match encode(&mut body, &e.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(err) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("cannot encode the metrics: {err}\n"),
        ),
    }
}

async fn readiness(State(e): State<Endpoints>) -> impl IntoResponse {
    match &*e.ready.borrow() {
        Readiness::Ready => (StatusCode::OK, "ready\n".to_owned()),
        Readiness::NotReady(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

/// `host:port` of the HTTP endpoints of a node whose gRPC address is `grpc_addr`, when its
/// configuration names no port (`http_port` 0).
pub fn http_addr(grpc_addr: &str, http_port: u16) -> Result<String, String> {
    let (host, port) = grpc_addr
        .rsplit_once(':')
        .ok_or_else(|| format!("`{grpc_addr}` has no port"))?;
    let port = if http_port != 0 {
        http_port
    } else {
        port.parse::<u16>()
            .ok()
            .and_then(|p| p.checked_add(HTTP_PORT_OFFSET))
            .ok_or_else(|| {
                format!(
                    "`{grpc_addr}`: no default HTTP port (its port + {HTTP_PORT_OFFSET}); set httpPort"
                )
            })?
    };
    Ok(format!("{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_http_port_is_the_configured_one_or_the_grpc_port_plus_the_offset() {
        assert_eq!(
            http_addr("127.0.0.1:8922", 0).as_deref(),
            Ok("127.0.0.1:9922")
        );
        assert_eq!(
            http_addr("10.0.0.5:8920", 7000).as_deref(),
            Ok("10.0.0.5:7000")
        );
        assert!(
            http_addr("127.0.0.1:65000", 0)
                .unwrap_err()
                .contains("set httpPort")
        );
        assert!(http_addr("nowhere", 0).is_err());
    }

    #[test]
    fn the_registry_holds_the_build_info() {
        let mut out = String::new();
        encode(&mut out, &registry("datanode", "node1")).unwrap();
        assert!(out.contains("shoal_build_info{"), "{out}");
        assert!(out.contains(r#"alias="node1""#), "{out}");
        assert!(
            out.contains(&format!(
                r#"version="{}""#,
                shoal_common::version::version()
            )),
            "{out}"
        );
    }
}
