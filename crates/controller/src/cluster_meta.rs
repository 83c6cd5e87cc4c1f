//! The replicated cluster metadata (the Raft state machine's contents) and how commands change it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shoal_common::config::NodeMode;

use crate::catalog::Catalog;
use crate::command::{Command, CommandResponse, DeclaredNode, NodeReport, Rejection};
use crate::raft_types::TypeConfig;
use crate::user_table::UserTable;

/// The cluster version of metadata that never set one: the first release's. Every controller
/// starts its state machine here, whatever its own release, so replaying the same log gives
/// the same version everywhere; a new group's first declaration then sets the release's
/// [`shoal_common::version::CLUSTER_VERSION`], and only an explicit finalize raises it later.
pub const INITIAL_CLUSTER_VERSION: u32 = 1;

/// A node's liveness as the controller leader sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Declared in `cluster.nodes`, never heard from.
    #[default]
    Unknown,
    Up,
    /// No heartbeat for longer than `nodeHeartbeatTimeout`.
    Down,
    /// Said it is shutting down and still sends heartbeats.
    Stopping,
}

impl NodeState {
    /// Up, or stopping but still heard from: a node whose silence the leader watches.
    pub fn is_live(self) -> bool {
        matches!(self, NodeState::Up | NodeState::Stopping)
    }
}

/// One node (controller, agent or data node) as the metadata records it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub alias: String,
    pub mode: Option<NodeMode>,
    pub machine: String,
    pub addr: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub build_date: String,
    #[serde(default)]
    pub pid: u32,
    #[serde(default)]
    pub state: NodeState,
    /// When `state` last changed (ms since the Unix epoch, leader's clock).
    #[serde(default)]
    pub state_since_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMeta {
    #[serde(default = "initial_cluster_version")]
    pub cluster_version: u32,
    /// Every node by alias.
    #[serde(default)]
    pub nodes: BTreeMap<String, NodeRecord>,
    /// Databases, tables and chunks.
    #[serde(default)]
    pub catalog: Catalog,
    /// The rolling upgrade in progress or last finished (the orchestrator's record).
    #[serde(default)]
    pub upgrade: UpgradeRecord,
    /// Users, from cluster version 2 (empty, revision 0, before).
    #[serde(default)]
    pub users: UserTable,
}

/// Opaque to the controller: the orchestrator owns its format (it carries its own version).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeRecord {
    pub revision: u64,
    pub state_json: String,
}

fn initial_cluster_version() -> u32 {
    INITIAL_CLUSTER_VERSION
}

impl Default for ClusterMeta {
    fn default() -> Self {
        Self {
            cluster_version: INITIAL_CLUSTER_VERSION,
            nodes: BTreeMap::new(),
            catalog: Catalog::default(),
            upgrade: UpgradeRecord::default(),
            users: UserTable::default(),
        }
    }
}

impl ClusterMeta {
    /// True when committing `report` would change nothing: heartbeats are not Raft writes unless
    /// something about the node changed.
    /// Data nodes that are UP: where replicas may be placed.
    pub fn up_data_nodes(&self) -> impl Iterator<Item = &NodeRecord> {
        self.nodes
            .values()
            .filter(|n| n.mode == Some(NodeMode::DataNode) && n.state == NodeState::Up)
    }

    pub fn report_is_current(&self, report: &NodeReport) -> bool {
        let want_state = if report.stopping {
            NodeState::Stopping
        } else {
            NodeState::Up
        };
        self.nodes.get(&report.alias).is_some_and(|n| {
            n.state == want_state
                && n.addr == report.addr
                && n.version == report.version
                && n.build_date == report.build_date
                && n.pid == report.pid
        })
    }

    /// The declared nodes missing from the metadata.
    pub fn undeclared(&self, nodes: &[DeclaredNode]) -> Vec<DeclaredNode> {
        nodes
            .iter()
            .filter(|n| !self.nodes.contains_key(&n.alias))
            .cloned()
            .collect()
    }

    fn declare(&mut self, nodes: &[DeclaredNode], new_cluster: Option<u32>) -> CommandResponse {
        if self.nodes.is_empty()
            && let Some(v) = new_cluster
        {
            self.cluster_version = self.cluster_version.max(v);
        }
        for n in nodes {
            self.nodes
                .entry(n.alias.clone())
                .or_insert_with(|| NodeRecord {
                    alias: n.alias.clone(),
                    mode: Some(n.mode),
                    machine: n.machine.clone(),
                    addr: n.addr.clone(),
                    ..NodeRecord::default()
                });
        }
        CommandResponse::applied()
    }

    fn report(&mut self, r: &NodeReport, at_ms: u64) -> CommandResponse {
        let Some(node) = self.nodes.get_mut(&r.alias) else {
            return CommandResponse::rejected(format!(
                "node `{}` is not in cluster.nodes",
                r.alias
            ));
        };
        if node.mode != Some(r.mode) {
            return CommandResponse::rejected(format!(
                "node `{}` is declared as {:?}, reported as {}",
                r.alias, node.mode, r.mode
            ));
        }
        let state = if r.stopping {
            NodeState::Stopping
        } else {
            NodeState::Up
        };
        if node.state != state {
            node.state = state;
            node.state_since_ms = at_ms;
        }
        node.addr = r.addr.clone();
        node.version = r.version.clone();
        node.build_date = r.build_date.clone();
        node.pid = r.pid;
        CommandResponse::applied()
    }

    fn set_state(&mut self, alias: &str, state: NodeState, at_ms: u64) -> CommandResponse {
        match self.nodes.get_mut(alias) {
            Some(node) if node.state != state => {
                node.state = state;
                node.state_since_ms = at_ms;
                CommandResponse::applied()
            }
            Some(_) => CommandResponse::applied(),
            None => CommandResponse::rejected(format!("unknown node `{alias}`")),
        }
    }
}

impl shoal_raft_store::MetaState<TypeConfig> for ClusterMeta {
    fn apply(&mut self, cmd: &Command) -> CommandResponse {
        match cmd {
            Command::DeclareNodes {
                nodes,
                new_cluster_version,
            } => self.declare(nodes, *new_cluster_version),
            Command::ReportNode { report, at_ms } => self.report(report, *at_ms),
            Command::SetNodeState {
                alias,
                state,
                at_ms,
            } => self.set_state(alias, *state, *at_ms),
            Command::CreateDatabase { database } => self.catalog.create_database(database),
            Command::CreateTable { db, table } => self.catalog.create_table(db, table),
            Command::DropTable { db, table, at_ms } => self.catalog.drop_table(db, table, *at_ms),
            Command::DropDatabase { db, at_ms } => self.catalog.drop_database(db, *at_ms),
            Command::DropPartitions {
                db,
                table,
                keys,
                at_ms,
            } => self.catalog.drop_partitions(db, table, keys, *at_ms),
            Command::CreateChunks { chunks } => self.catalog.create_chunks(chunks),
            Command::UpdateReplicas { change } => self.catalog.update_replicas(change),
            Command::SetUpgrade {
                expected_revision,
                state_json,
            } => {
                if *expected_revision != self.upgrade.revision {
                    return CommandResponse::refused(
                        Rejection::Conflict,
                        format!(
                            "the upgrade record is at revision {}, not {expected_revision}: \
                             another orchestrator changed it",
                            self.upgrade.revision
                        ),
                    );
                }
                self.upgrade = UpgradeRecord {
                    revision: expected_revision + 1,
                    state_json: state_json.clone(),
                };
                CommandResponse::applied()
            }
            Command::SetClusterVersion { cluster_version } => {
                if *cluster_version < self.cluster_version {
                    return CommandResponse::rejected(format!(
                        "the cluster version is {}; it is never lowered",
                        self.cluster_version
                    ));
                }
                self.cluster_version = *cluster_version;
                CommandResponse::applied()
            }
            Command::SeedUsers { users } => self.users.seed(users),
            Command::AddUser { name, role, hash } => self.users.add(name, *role, hash),
            Command::RemoveUser { name } => self.users.remove(name),
            Command::SetPassword { name, hash } => self.users.set_password(name, hash),
            Command::SetRole { name, role } => self.users.set_role(name, *role),
        }
    }
}

#[cfg(test)]
mod tests {
    use shoal_raft_store::MetaState;

    use super::*;

    fn declared(alias: &str) -> DeclaredNode {
        DeclaredNode {
            alias: alias.into(),
            mode: NodeMode::DataNode,
            machine: "127.0.0.1".into(),
            addr: "127.0.0.1:8922".into(),
        }
    }

    fn report(alias: &str, version: &str) -> NodeReport {
        NodeReport {
            alias: alias.into(),
            mode: NodeMode::DataNode,
            addr: "127.0.0.1:8922".into(),
            version: version.into(),
            build_date: "2026.11.24".into(),
            pid: 7,
            stopping: false,
        }
    }

    #[test]
    fn report_of_undeclared_node_is_rejected_and_changes_nothing() {
        let mut meta = ClusterMeta::default();
        let resp = meta.apply(&Command::ReportNode {
            report: report("ghost", "1"),
            at_ms: 1,
        });
        assert!(resp.rejected.contains("ghost"));
        assert!(meta.nodes.is_empty());
    }

    #[test]
    fn a_repeated_heartbeat_needs_no_write_but_a_new_version_does() {
        let mut meta = ClusterMeta::default();
        meta.apply(&Command::DeclareNodes {
            nodes: vec![declared("node1")],
            new_cluster_version: None,
        });
        assert_eq!(meta.nodes["node1"].state, NodeState::Unknown);
        let r = report("node1", "0.1.0");
        assert!(!meta.report_is_current(&r));
        meta.apply(&Command::ReportNode {
            report: r.clone(),
            at_ms: 5,
        });
        assert!(meta.report_is_current(&r));
        assert_eq!(meta.nodes["node1"].state, NodeState::Up);
        assert!(!meta.report_is_current(&report("node1", "0.2.0")));
    }

    #[test]
    fn only_a_new_groups_first_declaration_sets_the_cluster_version() {
        let declare = |alias: &str| Command::DeclareNodes {
            nodes: vec![declared(alias)],
            new_cluster_version: Some(7),
        };
        let mut new = ClusterMeta::default();
        new.apply(&declare("node1"));
        assert_eq!(new.cluster_version, 7);

        // A group that already knows nodes (upgraded from an older release, or adding a node
        // to cluster.nodes) keeps its version: only `--finalize` raises it.
        let mut upgraded = ClusterMeta::default();
        upgraded.apply(&Command::DeclareNodes {
            nodes: vec![declared("node1")],
            new_cluster_version: None,
        });
        upgraded.apply(&declare("node2"));
        assert_eq!(upgraded.cluster_version, INITIAL_CLUSTER_VERSION);

        // What an older leader proposed (no field) still decodes, and sets nothing.
        let old: Command = serde_json::from_str(r#"{"cmd":"declare_nodes","nodes":[]}"#).unwrap();
        assert_eq!(
            old,
            Command::DeclareNodes {
                nodes: vec![],
                new_cluster_version: None
            }
        );
    }

    #[test]
    fn metadata_written_by_an_older_version_still_loads() {
        // A record without the fields added later (version, pid, state...) keeps loading.
        let json = r#"{"nodes":{"n":{"alias":"n","mode":"datanode","machine":"m","addr":"a"}}}"#;
        let meta: ClusterMeta = serde_json::from_str(json).expect("old format loads");
        assert_eq!(meta.cluster_version, INITIAL_CLUSTER_VERSION);
        assert_eq!(meta.nodes["n"].state, NodeState::Unknown);
    }
}
