//! The Shoal data node. For now: it prepares its storage directories, serves its identity and
//! configuration, and reports itself to the controller leader by heartbeat. Chunk storage,
//! appends and queries build on this.

pub mod server;

pub use server::{DataNodeError, DataNodeOptions, run};
