//! Server plumbing shared by every Shoal role (controller, agent, data node): gRPC serving, and
//! metrics and health over HTTP.

pub mod http;
pub mod node_info;
pub mod serve;
pub mod signals;
