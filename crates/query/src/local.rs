//! How a query reaches a chunk's replicas: over gRPC (`ScanChunk`), or, for a replica the
//! coordinating data node holds itself, in-process through [`LocalReplicas`], which answers
//! the same request with the same checks but sends no call to its own server and encodes and
//! decodes no row.

use std::sync::Arc;

use arrow::array::RecordBatch;
use async_trait::async_trait;
use futures::stream::BoxStream;
use shoal_client::channel::Channels;
use shoal_proto::ScanChunkRequest;
use tokio::sync::watch;
use tonic::Status;

/// The rows of one chunk scan: what `ScanChunk` would send, as batches.
pub type LocalRows = BoxStream<'static, Result<RecordBatch, Status>>;

/// The replicas of the data node that coordinates a query.
#[async_trait]
pub trait LocalReplicas: Send + Sync {
    /// This node's alias, as the catalog's replicas name it.
    fn alias(&self) -> &str;

    /// The rows `ScanChunk` answers `req` with here (by name, like its messages), or its
    /// refusal.
    async fn scan(&self, req: ScanChunkRequest) -> Result<LocalRows, Status>;

    /// The partial aggregate states `req` asks for, if this node's replica answers them from
    /// its chunk files' statistics (see `partial_aggregate::from_statistics`); `None` when it
    /// would read rows, which the caller then aggregates itself, overlapping the reading.
    async fn states_from_statistics(
        &self,
        req: ScanChunkRequest,
    ) -> Result<Option<LocalRows>, Status>;
}

/// The ways to a replica: channels to every data node, and this node's own replicas when the
/// query runs on a data node.
#[derive(Clone)]
pub struct Replicas {
    pub channels: Channels,
    pub local: Option<Arc<dyn LocalReplicas>>,
    /// The cluster version as the heartbeats report it: what every data node understands.
    pub cluster_version: watch::Receiver<u32>,
}

impl Replicas {
    /// This node's own replicas, if `node` is this node.
    pub(crate) fn local(&self, node: &str) -> Option<&Arc<dyn LocalReplicas>> {
        self.local.as_ref().filter(|l| l.alias() == node)
    }
}
