//! openraft's type configuration for the controller group.

use std::io::Cursor;

use crate::cluster_meta::ClusterMeta;
use crate::command::{Command, CommandResponse};

openraft::declare_raft_types!(
    /// Controllers are numbered 1.. in the order `cluster.nodes` lists them; a node's address is
    /// its controller RPC address (`host:port`).
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
);

/// Snapshots are the serialized metadata, small enough to hold in memory.
pub type SnapshotData = Cursor<Vec<u8>>;
pub type LogStore = shoal_raft_store::LogStore<TypeConfig>;
pub type StateMachine = shoal_raft_store::StateMachineStore<TypeConfig, ClusterMeta>;
pub type Raft = openraft::Raft<TypeConfig, StateMachine>;
pub type NodeId = u64;
