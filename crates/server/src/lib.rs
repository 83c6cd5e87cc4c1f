//! gRPC server plumbing shared by every Shoal role (controller, agent, data node).

pub mod node_info;
pub mod serve;
pub mod signals;
