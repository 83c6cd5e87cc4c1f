//! Shoal's client library: talks to controllers (finding and following the Raft leader), agents
//! and data nodes over gRPC, authenticated with the cluster secret.

pub mod agent;
pub mod channel;
pub mod controller;
pub mod data;
pub mod error;
pub mod heartbeat;
pub mod liveness;
pub mod node_info;
pub mod record;
pub mod seed;
mod seq_spread;
pub mod upgrade_record;

pub use error::ClientError;
