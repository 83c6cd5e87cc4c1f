//! The `cluster` schema: system tables computed from the cluster when a query names them.
//!
//! - `cluster.nodes`: node, mode, machine, address, state, version, build_date, raft_role
//!   (from the controller leader's ClusterStatus).
//! - `cluster.chunks`: one row per chunk: chunk_id, db, table_name, partition, path, state,
//!   version, replicas (`node1:in_sync,node4:stale`, controller order), rows and bytes (as
//!   reported by the first in-sync replica that answered ListReplicas; null if none did),
//!   checksums (`node1=<16 hex digits>,node4=?`: every replica's content checksum, `?` when its
//!   node did not answer; a node holding no store for it shows the empty one's, as it answers
//!   its primary). Equal checksums = identical replicas.
//! - `cluster.config`: node, name, value (every node's effective configuration, from its
//!   NodeInfo; nodes that do not answer are left out).
//! - `cluster.upgrade`: the rolling upgrade in progress or last run (the orchestrator's record),
//!   one row per machine in the plan's order: position, machine, nodes, state (`waiting`, the
//!   step it is at, `done`, `failed`), steps_done, last_step, last_step_started_ms,
//!   last_step_ended_ms, last_error, from_version, to_version, direction (`upgrade` /
//!   `rollback`), status (`running`, `paused`, `done`, `failed`, `finalized`), reason. Empty
//!   when no upgrade was ever recorded.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{Field, Schema};
use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::{DataFusionError, Result};
use futures::future::join_all;
use shoal_client::channel::Channels;
use shoal_client::controller::ControllerClient;
use shoal_client::node_info::config_of;
use shoal_client::upgrade_record::{MachinePlan, UpgradeState};
use shoal_proto::data_node_client::DataNodeClient;
use shoal_proto::{ChunkInfo, ListReplicasRequest, NodeStatus, ReplicaPosition};

use crate::error::unavailable;

pub const SCHEMA: &str = "cluster";
const TABLES: [&str; 4] = ["nodes", "chunks", "config", "upgrade"];

/// Per-node deadline: a dead node must not stall a status query.
const NODE_TIMEOUT: Duration = Duration::from_secs(3);

pub struct SystemSchema {
    controllers: ControllerClient,
    channels: Channels,
    /// The chunks of the catalog the query was planned with.
    chunks: Vec<ChunkInfo>,
}

impl fmt::Debug for SystemSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SystemSchema")
    }
}

impl SystemSchema {
    pub fn new(controllers: ControllerClient, channels: Channels, chunks: Vec<ChunkInfo>) -> Self {
        Self {
            controllers,
            channels,
            chunks,
        }
    }

    async fn nodes(&self) -> Result<RecordBatch> {
        let nodes = self.cluster_nodes().await?;
        let col = |f: fn(&NodeStatus) -> String| text(nodes.iter().map(f));
        batch(vec![
            ("node", col(|n| n.alias.clone())),
            ("mode", col(|n| n.mode().name().to_owned())),
            ("machine", col(|n| n.machine.clone())),
            ("address", col(|n| n.addr.clone())),
            ("state", col(|n| n.state().name().to_owned())),
            ("version", col(|n| n.version.clone())),
            ("build_date", col(|n| n.build_date.clone())),
            ("raft_role", col(|n| n.raft_role.clone())),
        ])
    }

    async fn chunks(&self) -> Result<RecordBatch> {
        let positions = self.replica_positions().await;
        // A node that answered without the chunk holds none of it (a replica placed there
        // whose primary had nothing to send yet): empty, as it answers its primary too.
        let empty = |chunk: u64| ReplicaPosition {
            chunk_id: chunk,
            ..Default::default()
        };
        let position = |node: &str, chunk: u64| {
            positions
                .get(node)
                .map(|p| p.get(&chunk).cloned().unwrap_or_else(|| empty(chunk)))
        };
        let c = &self.chunks;
        // Rows and bytes from a replica that holds a store: one with none may be in sync on an
        // empty chunk, or be the replica a peer has not filled yet.
        let in_sync_position = |chunk: &ChunkInfo| {
            chunk
                .replicas
                .iter()
                .filter(|r| r.in_sync)
                .find_map(|r| positions.get(&r.node)?.get(&chunk.id).cloned())
        };
        let replicas = c.iter().map(|chunk| {
            chunk
                .replicas
                .iter()
                .map(|r| format!("{}:{}", r.node, if r.in_sync { "in_sync" } else { "stale" }))
                .collect::<Vec<_>>()
                .join(",")
        });
        let checksums = c.iter().map(|chunk| {
            chunk
                .replicas
                .iter()
                .map(|r| match position(&r.node, chunk.id) {
                    Some(p) => format!("{}={:016x}", r.node, p.checksum),
                    None => format!("{}=?", r.node),
                })
                .collect::<Vec<_>>()
                .join(",")
        });
        batch(vec![
            (
                "chunk_id",
                Arc::new(UInt64Array::from_iter_values(c.iter().map(|c| c.id))),
            ),
            ("db", text(c.iter().map(|c| c.db.clone()))),
            ("table_name", text(c.iter().map(|c| c.table.clone()))),
            ("partition", text(c.iter().map(|c| c.partition_key.clone()))),
            ("path", text(c.iter().map(|c| c.path.clone()))),
            ("state", text(c.iter().map(|c| c.state.clone()))),
            (
                "version",
                Arc::new(UInt64Array::from_iter_values(c.iter().map(|c| c.version))),
            ),
            ("replicas", text(replicas)),
            (
                "rows",
                Arc::new(
                    c.iter()
                        .map(|c| in_sync_position(c).map(|p| p.rows))
                        .collect::<UInt64Array>(),
                ),
            ),
            (
                "bytes",
                Arc::new(
                    c.iter()
                        .map(|c| in_sync_position(c).map(|p| p.bytes))
                        .collect::<UInt64Array>(),
                ),
            ),
            ("checksums", text(checksums)),
        ])
    }

    async fn config(&self) -> Result<RecordBatch> {
        let nodes = self.cluster_nodes().await?;
        let answers = join_all(nodes.iter().map(|n| async move {
            let config = config_of(&self.channels, &n.addr, NODE_TIMEOUT)
                .await
                .ok()?;
            Some((n.alias.clone(), config))
        }))
        .await;
        let rows: Vec<(String, String, String)> = answers
            .into_iter()
            .flatten()
            .flat_map(|(node, config)| {
                config
                    .into_iter()
                    .map(move |e| (node.clone(), e.name, e.value))
            })
            .collect();
        batch(vec![
            ("node", text(rows.iter().map(|r| r.0.clone()))),
            ("name", text(rows.iter().map(|r| r.1.clone()))),
            ("value", text(rows.iter().map(|r| r.2.clone()))),
        ])
    }

    async fn upgrade(&self) -> Result<RecordBatch> {
        let record = self
            .controllers
            .get_upgrade()
            .await
            .map_err(|e| unavailable(format!("upgrade record: {e}")))?;
        let rows: Vec<UpgradeRow> = match UpgradeState::parse(&record.state_json) {
            Some(st) => (st.machines.iter().enumerate())
                .map(|(i, m)| UpgradeRow::of(&st, i, m))
                .collect(),
            None => Vec::new(),
        };
        let col = |f: fn(&UpgradeRow) -> String| text(rows.iter().map(f));
        let num = |f: fn(&UpgradeRow) -> Option<u64>| -> ArrayRef {
            Arc::new(rows.iter().map(f).collect::<UInt64Array>())
        };
        batch(vec![
            ("position", num(|r| Some(r.position))),
            ("machine", col(|r| r.machine.clone())),
            ("nodes", col(|r| r.nodes.clone())),
            ("state", col(|r| r.state.clone())),
            ("steps_done", col(|r| r.steps_done.clone())),
            ("last_step", col(|r| r.last_step.clone())),
            ("last_step_started_ms", num(|r| r.last_started_ms)),
            ("last_step_ended_ms", num(|r| r.last_ended_ms)),
            ("last_error", col(|r| r.last_error.clone())),
            ("from_version", col(|r| r.from_version.clone())),
            ("to_version", col(|r| r.to_version.clone())),
            ("direction", col(|r| r.direction.clone())),
            ("status", col(|r| r.status.clone())),
            ("reason", col(|r| r.reason.clone())),
        ])
    }

    async fn cluster_nodes(&self) -> Result<Vec<NodeStatus>> {
        let status = self
            .controllers
            .cluster_status()
            .await
            .map_err(|e| unavailable(format!("cluster status: {e}")))?;
        Ok(status.nodes)
    }

    /// Every replica position each data node holding a chunk reports, by node alias and chunk
    /// id. Nodes that do not answer are missing.
    async fn replica_positions(&self) -> HashMap<String, HashMap<u64, ReplicaPosition>> {
        let nodes: BTreeMap<&str, &str> = self
            .chunks
            .iter()
            .flat_map(|c| &c.replicas)
            .map(|r| (r.node.as_str(), r.addr.as_str()))
            .collect();
        let answers = join_all(nodes.into_iter().map(|(node, addr)| async move {
            let mut client = DataNodeClient::new(self.channels.get(addr).ok()?);
            let mut req = tonic::Request::new(ListReplicasRequest {});
            req.set_timeout(NODE_TIMEOUT);
            let resp = client.list_replicas(req).await.ok()?.into_inner();
            let positions = resp.replicas.into_iter().map(|p| (p.chunk_id, p)).collect();
            Some((node.to_owned(), positions))
        }))
        .await;
        answers.into_iter().flatten().collect()
    }
}

#[async_trait]
impl SchemaProvider for SystemSchema {
    fn table_names(&self) -> Vec<String> {
        TABLES.iter().map(|t| (*t).to_owned()).collect()
    }

    /// Computed on each reference, so every query sees the cluster as it is.
    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let batch = match name {
            "nodes" => self.nodes().await?,
            "chunks" => self.chunks().await?,
            "config" => self.config().await?,
            "upgrade" => self.upgrade().await?,
            _ => return Ok(None),
        };
        let table = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
        Ok(Some(Arc::new(table)))
    }

    /// Answered without computing the table (information_schema lists tables this way).
    async fn table_type(&self, name: &str) -> Result<Option<TableType>> {
        Ok(self.table_exist(name).then_some(TableType::View))
    }

    fn table_exist(&self, name: &str) -> bool {
        TABLES.contains(&name)
    }
}

/// One machine of the upgrade record, as `cluster.upgrade` shows it.
struct UpgradeRow {
    position: u64,
    machine: String,
    nodes: String,
    state: String,
    steps_done: String,
    last_step: String,
    last_started_ms: Option<u64>,
    last_ended_ms: Option<u64>,
    last_error: String,
    from_version: String,
    to_version: String,
    direction: String,
    status: String,
    reason: String,
}

impl UpgradeRow {
    fn of(st: &UpgradeState, i: usize, m: &MachinePlan) -> Self {
        let last = st.steps.iter().rev().find(|s| s.machine == m.machine);
        let (status, reason) = st.status.name_and_reason();
        let current = st.current().map(|(c, step)| (c.machine.as_str(), step));
        let state = if m.finished() {
            "done".to_owned()
        } else if last.is_some_and(|l| !l.error.is_empty()) {
            "failed".to_owned()
        } else {
            match current {
                Some((c, Some(step))) if c == m.machine => step.name().to_owned(),
                _ => "waiting".to_owned(),
            }
        };
        UpgradeRow {
            position: i as u64 + 1,
            machine: m.machine.clone(),
            nodes: m.nodes().collect::<Vec<_>>().join(","),
            state,
            steps_done: m
                .done
                .iter()
                .map(|s| s.name())
                .collect::<Vec<_>>()
                .join(","),
            last_step: last.map_or(String::new(), |l| l.step.name().to_owned()),
            last_started_ms: last.map(|l| l.started_ms),
            last_ended_ms: last.map(|l| l.ended_ms),
            last_error: last.map_or(String::new(), |l| l.error.clone()),
            from_version: st.from_version.clone(),
            to_version: st.to_version.clone(),
            direction: if st.rolling_back {
                "rollback"
            } else {
                "upgrade"
            }
            .to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
        }
    }
}

fn text(values: impl Iterator<Item = String>) -> ArrayRef {
    Arc::new(values.map(Some).collect::<StringArray>())
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> Result<RecordBatch> {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, a)| Field::new(*name, a.data_type().clone(), true))
        .collect();
    let arrays = columns.into_iter().map(|(_, a)| a).collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(DataFusionError::from)
}
