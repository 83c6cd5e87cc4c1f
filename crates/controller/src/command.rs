//! Raft commands: the only way controller metadata changes.
//!
//! Encoded as JSON tagged by `cmd`, with `#[serde(default)]` on fields added later, so a log
//! written by version N is applied identically by N+1 (and the reverse for commands N knows).
//! A command a version does not know must not be proposed until the cluster version says every
//! controller understands it.

use std::fmt;

use serde::{Deserialize, Serialize};
use shoal_catalog::{DatabaseDef, PartitionKey, TableDef};
use shoal_common::config::NodeMode;
use shoal_common::users::{Role, UserRecord};

use crate::catalog::{NewChunk, ReplicaChange};
use crate::cluster_meta::NodeState;

/// A node declared in `cluster.nodes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclaredNode {
    pub alias: String,
    pub mode: NodeMode,
    pub machine: String,
    pub addr: String,
}

/// What a heartbeat reported, committed when it differs from what the metadata holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    pub alias: String,
    pub mode: NodeMode,
    pub addr: String,
    pub version: String,
    pub build_date: String,
    pub pid: u32,
    pub stopping: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Adds the nodes of `cluster.nodes` the metadata does not hold yet, in state UNKNOWN.
    DeclareNodes {
        nodes: Vec<DeclaredNode>,
        /// The cluster version of a brand-new cluster, applied only by the declaration that
        /// finds no node at all (the group's first); absent in what older leaders propose.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        new_cluster_version: Option<u32>,
    },
    /// A node reported itself with something new (first contact, version, address, pid, state).
    ReportNode {
        report: NodeReport,
        at_ms: u64,
    },
    /// The leader's liveness check changed a node's state (heartbeats stopped: DOWN).
    SetNodeState {
        alias: String,
        state: NodeState,
        at_ms: u64,
    },
    CreateDatabase {
        database: DatabaseDef,
    },
    CreateTable {
        db: String,
        table: TableDef,
    },
    DropTable {
        db: String,
        table: String,
        /// When (leader's clock): the name may not be reused for a while (see `catalog`).
        #[serde(default)]
        at_ms: u64,
    },
    DropDatabase {
        db: String,
        #[serde(default)]
        at_ms: u64,
    },
    /// Retention: the chunks of these partitions of a table are removed (data nodes then delete
    /// their replicas). Proposed only at cluster version
    /// [`shoal_common::version::DROP_PARTITION_CLUSTER_VERSION`] or later.
    DropPartitions {
        db: String,
        table: String,
        keys: Vec<PartitionKey>,
        at_ms: u64,
    },
    /// New partitions' chunks, placed by the leader.
    CreateChunks {
        chunks: Vec<NewChunk>,
    },
    /// A chunk's in-sync set changed (compare-and-set on its version).
    UpdateReplicas {
        change: ReplicaChange,
    },
    /// The rolling upgrade's record (compare-and-set on its revision); empty clears it.
    SetUpgrade {
        expected_revision: u64,
        state_json: String,
    },
    /// `shoal upgrade --finalize`: formats and features of the new version may be used.
    SetClusterVersion {
        cluster_version: u32,
    },
    /// Creates the users table from the leader's `cluster.users`; applied only while there is
    /// none. This and the user commands below are proposed only at cluster version
    /// [`shoal_common::version::MANAGED_USERS_CLUSTER_VERSION`] or later.
    SeedUsers {
        users: Vec<UserRecord>,
    },
    /// A new user (`generation` is set on apply); refused if the name is taken.
    AddUser {
        name: String,
        role: Role,
        hash: String,
    },
    /// Refused for the last admin.
    RemoveUser {
        name: String,
    },
    /// Raises the user's generation: tokens issued before stop working.
    SetPassword {
        name: String,
        hash: String,
    },
    /// Applies at once (each call checks the current role); refused if it would leave no admin.
    SetRole {
        name: String,
        role: Role,
    },
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::DeclareNodes { nodes, .. } => write!(f, "declare_nodes({})", nodes.len()),
            Command::ReportNode { report, .. } => write!(
                f,
                "report_node({} {} {})",
                report.alias, report.version, report.addr
            ),
            Command::SetNodeState { alias, state, .. } => {
                write!(f, "set_node_state({alias} {state:?})")
            }
            Command::CreateDatabase { database } => write!(f, "create_database({})", database.path),
            Command::CreateTable { db, table } => write!(f, "create_table({db} {})", table.name),
            Command::DropTable { db, table, .. } => write!(f, "drop_table({db} {table})"),
            Command::DropDatabase { db, .. } => write!(f, "drop_database({db})"),
            Command::DropPartitions {
                db, table, keys, ..
            } => {
                write!(f, "drop_partitions({db} {table} {})", keys.len())
            }
            Command::CreateChunks { chunks } => write!(f, "create_chunks({})", chunks.len()),
            Command::UpdateReplicas { change } => write!(
                f,
                "update_replicas(chunk {} v{} -{:?} +{:?}{})",
                change.chunk_id,
                change.expected_version,
                change.remove_in_sync,
                change.add_in_sync,
                if change.mark_written { " written" } else { "" }
            ),
            Command::SetUpgrade {
                expected_revision, ..
            } => write!(f, "set_upgrade(rev {expected_revision})"),
            Command::SetClusterVersion { cluster_version } => {
                write!(f, "set_cluster_version({cluster_version})")
            }
            // Never the hash: the log line must not carry it.
            Command::SeedUsers { users } => write!(f, "seed_users({})", users.len()),
            Command::AddUser { name, role, .. } => write!(f, "add_user({name} {role})"),
            Command::RemoveUser { name } => write!(f, "remove_user({name})"),
            Command::SetPassword { name, .. } => write!(f, "set_password({name})"),
            Command::SetRole { name, role } => write!(f, "set_role({name} {role})"),
        }
    }
}

impl Command {
    /// Whether applying it deletes rows (a DROP of a database, table or partitions).
    pub fn drops_data(&self) -> bool {
        matches!(
            self,
            Command::DropDatabase { .. }
                | Command::DropTable { .. }
                | Command::DropPartitions { .. }
        )
    }
}

/// Why a command changed nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rejection {
    #[default]
    Invalid,
    AlreadyExists,
    NotFound,
    /// A compare-and-set found another version than the caller saw.
    Conflict,
}

/// What applying a command answered.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResponse {
    /// Empty when applied; otherwise why the command changed nothing.
    #[serde(default)]
    pub rejected: String,
    #[serde(default)]
    pub rejection: Rejection,
}

impl CommandResponse {
    pub fn applied() -> Self {
        Self::default()
    }

    pub fn rejected(why: impl Into<String>) -> Self {
        Self::refused(Rejection::Invalid, why)
    }

    pub fn refused(rejection: Rejection, why: impl Into<String>) -> Self {
        Self {
            rejected: why.into(),
            rejection,
        }
    }

    /// A refusal as the status a caller gets.
    pub fn into_result(self) -> Result<(), tonic::Status> {
        if self.rejected.is_empty() {
            return Ok(());
        }
        Err(match self.rejection {
            Rejection::AlreadyExists => tonic::Status::already_exists(self.rejected),
            Rejection::NotFound => tonic::Status::not_found(self.rejected),
            Rejection::Invalid | Rejection::Conflict => {
                tonic::Status::invalid_argument(self.rejected)
            }
        })
    }
}
