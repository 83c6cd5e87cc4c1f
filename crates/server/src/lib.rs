//! Server plumbing shared by every Shoal role (controller, agent, data node): gRPC serving, and
//! metrics and health over HTTP, both with TLS when the role's file enables it.

pub mod http;
pub mod node_info;
pub mod serve;
pub mod signals;
pub mod tls_listener;
