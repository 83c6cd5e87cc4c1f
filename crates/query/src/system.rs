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
use shoal_proto::data_node_client::DataNodeClient;
use shoal_proto::node_info_client::NodeInfoClient;
use shoal_proto::{ChunkInfo, ListReplicasRequest, NodeInfoRequest, NodeStatus, ReplicaPosition};

use crate::error::unavailable;

pub const SCHEMA: &str = "cluster";
const TABLES: [&str; 3] = ["nodes", "chunks", "config"];

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
            ("mode", col(mode_name)),
            ("machine", col(|n| n.machine.clone())),
            ("address", col(|n| n.addr.clone())),
            (
                "state",
                col(|n| enum_name(n.state().as_str_name(), "NODE_STATE_")),
            ),
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
            let mut client = NodeInfoClient::new(self.channels.get(&n.addr).ok()?);
            let mut req = tonic::Request::new(NodeInfoRequest {});
            req.set_timeout(NODE_TIMEOUT);
            let info = client.node_info(req).await.ok()?.into_inner();
            Some((n.alias.clone(), info.config))
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

fn mode_name(n: &NodeStatus) -> String {
    shoal_common::config::NodeMode::try_from(n.mode())
        .map_or_else(|_| "?".into(), |m| m.as_str().into())
}

/// `NODE_STATE_UP` → `UP`.
fn enum_name(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix).unwrap_or(name).to_owned()
}
