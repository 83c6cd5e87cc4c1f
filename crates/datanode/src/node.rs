//! What every part of the data node shares: who it is, the catalog cache, its replicas, its
//! channels to other nodes, and the replication links it runs as a primary.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use shoal_catalog::{KeepDuplicates, TableDef};
use shoal_client::channel::{AuthChannel, Channels};
use shoal_proto::data_node_client::DataNodeClient;
use shoal_proto::{ChunkInfo, MAX_MESSAGE};
use shoal_storage::{ChunkStore, Keep, SortKey};
use tonic::Status;

use crate::catalog_cache::CatalogCache;
use crate::flush_policy::MemoryBudget;
use crate::metrics::DataNodeMetrics;
use crate::replicas::LocalReplicas;
use crate::replication::Links;

pub struct Node {
    pub alias: String,
    pub catalog: CatalogCache,
    pub replicas: LocalReplicas,
    pub channels: Channels,
    pub links: Links,
    /// Set by `Drain` (before a planned stop): clients are told to go elsewhere.
    pub draining: tokio::sync::watch::Sender<bool>,
    /// The cluster version the controllers last answered a heartbeat with (0 before the first
    /// answer): what formats this node may write.
    pub cluster_version: tokio::sync::watch::Receiver<u32>,
    /// Rows in memory against `TSDBCacheEngineSize` (see `flush_policy`).
    pub memory: MemoryBudget,
    /// What one query, or a replica's partial aggregate of it, may hold.
    pub query_memory: shoal_query::QueryMemory,
    pub metrics: DataNodeMetrics,
}

impl Node {
    pub fn is_draining(&self) -> bool {
        *self.draining.borrow()
    }

    /// What a draining node answers clients: UNAVAILABLE, which every client takes as "try
    /// another site".
    pub fn draining_status(&self) -> Status {
        Status::unavailable(format!(
            "data node {} is draining before a restart; use another data node",
            self.alias
        ))
    }

    pub fn data_node(&self, addr: &str) -> Result<DataNodeClient<AuthChannel>, Status> {
        let ch = self
            .channels
            .get(addr)
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(DataNodeClient::new(ch).max_decoding_message_size(MAX_MESSAGE))
    }

    /// The schema of a chunk's rows, from the catalog.
    pub fn schema_of(&self, chunk: &ChunkInfo) -> Result<SchemaRef, Status> {
        self.catalog
            .table_of(chunk)
            .map(|t| t.schema())
            .ok_or_else(|| {
                Status::not_found(format!(
                    "table `{}` of `{}` does not exist",
                    chunk.table, chunk.db
                ))
            })
    }

    /// How a chunk's rows are sorted and which duplicates it keeps, from the catalog.
    pub fn sort_key_of(&self, chunk: &ChunkInfo) -> Result<SortKey, Status> {
        self.catalog
            .table_of(chunk)
            .map(|t| sort_key(&t))
            .ok_or_else(|| {
                Status::not_found(format!(
                    "table `{}` of `{}` does not exist",
                    chunk.table, chunk.db
                ))
            })
    }

    pub async fn store(&self, chunk: &ChunkInfo) -> Result<Arc<ChunkStore>, Status> {
        if let Some(s) = self.replicas.get(chunk.id) {
            return Ok(s);
        }
        let schema = self.schema_of(chunk)?;
        self.replicas
            .get_or_create(chunk, schema)
            .await
            .map_err(Status::internal)
    }
}

/// A table's sort key (`sortColumns`, then its time column) and `keepDuplicates`, as its
/// chunks' stores sort and deduplicate rows.
pub fn sort_key(table: &TableDef) -> SortKey {
    SortKey::new(table.sort_key()).keeping(match table.keep_duplicates {
        KeepDuplicates::All => Keep::All,
        KeepDuplicates::First => Keep::First,
        KeepDuplicates::Last => Keep::Last,
    })
}
