//! A chunk scan as this node answers it, for `ScanChunk` and for the queries it coordinates
//! itself (`LocalScans`, no call to its own server): the same checks, the same rows. Reading,
//! filtering and encoding are blocking work of unbounded length (a selective filter may read
//! the whole chunk before a row passes): a blocking thread does it, a few items ahead of the
//! reader, and stops when the reader goes away.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use futures::StreamExt;
use shoal_proto::{PartialAggregate, ScanChunkRequest, ScanChunkResponse};
use shoal_query::{LocalReplicas, LocalRows};
use shoal_storage::{ChunkStore, SortKey};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::catalog_cache::is_in_sync;
use crate::error::storage_status;
use crate::metrics::ScanVia;
use crate::node::Node;
use crate::primary::{is_primary, wait_all_replicated};
use crate::scan_messages::{self, MESSAGE_BYTES, Rows};
use shoal_query::partial_aggregate;

/// Items (messages or batches) produced ahead of what the reader has taken.
const AHEAD: usize = 2;

/// How a scan may answer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// As the request asks, reading rows if need be.
    Any,
    /// Only an aggregate's states from the files' statistics, never reading rows.
    StatisticsOnly,
}

/// What a scan of `req` answers here: the rows' schema and the rows (`None`: this node placed
/// but never wrote the replica, so it holds no row; with [`Reading::StatisticsOnly`], also:
/// the statistics do not answer), or why this replica cannot serve it.
async fn rows(
    node: &Arc<Node>,
    req: &ScanChunkRequest,
    via: ScanVia,
    reading: Reading,
) -> Result<Option<(SchemaRef, Rows)>, Status> {
    let chunk = node
        .catalog
        .chunk_at_least(req.chunk_id, req.chunk_version)
        .await?;
    if !is_in_sync(&chunk, &node.alias) {
        return Err(Status::failed_precondition(format!(
            "the replica of chunk {} on {} is not in sync (version {})",
            chunk.id, node.alias, chunk.version
        )));
    }
    let Some(store) = node.replicas.get(chunk.id) else {
        if reading == Reading::Any {
            node.metrics.scanned(via);
        }
        return Ok(None);
    };
    // The primary holds records no other replica may have yet (writes not acknowledged,
    // which a failover could lose): it serves what it held when asked only once every
    // in-sync replica holds that too — a read never shows a row that can disappear. Every
    // record another replica holds came from a primary that has it, so with two replicas
    // only the primary can serve such a row.
    let last = if is_primary(node, &chunk) {
        let last = store.last_lsn();
        wait_all_replicated(node, &chunk, last).await?;
        last
    } else {
        u64::MAX
    };
    // The store reads only the columns the request needs and skips files and row groups
    // its filters rule out. A table dropping duplicates has them dropped before the
    // request's filters see the rows (a filter on another column must not pick an older
    // duplicate the table no longer holds): its chunk is merged, pruned only by the
    // conditions on its key (`ChunkStore::scan_stream`).
    let sort_key = node.sort_key_of(&chunk)?;
    let plan = scan_messages::plan(&store.schema(), req).map_err(Status::invalid_argument)?;
    if let Some(agg) = &req.aggregate
        && req.filters.is_empty()
        && partial_aggregate::may_use_statistics(agg)
        && let Some((schema, states)) = states_from_statistics(node, &store, last, &sort_key, agg)?
    {
        node.metrics.scanned(via);
        return Ok(Some((schema, counted(node, states, true, via))));
    }
    // Counted once: a statistics-only ask that gets no answer is followed by a reading scan.
    if reading == Reading::StatisticsOnly {
        return Ok(None);
    }
    node.metrics.scanned(via);
    let batches = store
        .scan_stream(last, &sort_key, plan.read())
        .map_err(storage_status)?;
    let read = batches.schema().clone();
    let batches = Box::new(batches.map(|b| b.map_err(|e| e.to_string())));
    let (schema, rows) =
        scan_messages::rows(&read, batches, plan).map_err(Status::invalid_argument)?;
    let (schema, rows) = match &req.aggregate {
        None => (schema, rows),
        // The aggregate runs where the rows are read: on the blocking thread pulling the answer.
        Some(aggregate) => {
            let runtime = tokio::runtime::Handle::current();
            let (states, batches) =
                partial_aggregate::states(&schema, rows, aggregate, &node.query_memory, runtime)
                    .map_err(|e| Status::invalid_argument(format!("cannot aggregate: {e}")))?;
            let batches: Rows = Box::new(batches.map(|b| b.map_err(|e| e.to_string())));
            (states, batches)
        }
    };
    let states = req.aggregate.is_some();
    Ok(Some((schema, counted(node, rows, states, via))))
}

/// `agg`'s states over the chunk up to lsn `last` without reading its files' rows: each
/// file's from its statistics, those of the rows still in memory computed over them; `None`
/// when the statistics do not answer it exactly (see `partial_aggregate::from_statistics`).
fn states_from_statistics(
    node: &Arc<Node>,
    store: &ChunkStore,
    last: u64,
    sort_key: &SortKey,
    agg: &PartialAggregate,
) -> Result<Option<(SchemaRef, Rows)>, Status> {
    let summary = store
        .summary(last, &partial_aggregate::columns(agg))
        .map_err(storage_status)?;
    let schema = summary.memory.schema().clone();
    let memory: Rows = Box::new(summary.memory.map(|b| b.map_err(|e| e.to_string())));
    let runtime = tokio::runtime::Handle::current();
    let (out, in_memory) =
        partial_aggregate::states(&schema, memory, agg, &node.query_memory, runtime)
            .map_err(|e| Status::invalid_argument(format!("cannot aggregate: {e}")))?;
    let key = sort_key
        .drops_duplicates()
        .then_some(sort_key.columns.as_slice());
    let Some(files) = partial_aggregate::from_statistics(agg, &summary.files, key, &out) else {
        return Ok(None);
    };
    let in_memory = in_memory.map(|b| b.map_err(|e| e.to_string()));
    Ok(Some((
        out,
        Box::new(std::iter::once(Ok(files)).chain(in_memory)),
    )))
}

/// `rows`, counted in the node's metrics as they are taken.
fn counted(node: &Arc<Node>, rows: Rows, states: bool, via: ScanVia) -> Rows {
    let node = Arc::clone(node);
    Box::new(rows.inspect(move |b| {
        if let Ok(b) = b {
            node.metrics.answered_rows(states, via, b.num_rows());
        }
    }))
}

/// `ScanChunk`'s answer: the rows as Arrow IPC messages of about [`MESSAGE_BYTES`].
pub(crate) async fn messages(
    node: &Arc<Node>,
    req: &ScanChunkRequest,
) -> Result<ReceiverStream<Result<ScanChunkResponse, Status>>, Status> {
    // A replica that holds no row answers no message: the reader then takes it as rows,
    // computes the (empty) states itself, and gets the same answer.
    let Some((schema, rows)) = rows(node, req, ScanVia::Grpc, Reading::Any).await? else {
        return Ok(produced(std::iter::empty()));
    };
    let (node, partial_aggregate) = (Arc::clone(node), req.aggregate.is_some());
    let messages = scan_messages::messages(schema, rows, MESSAGE_BYTES).map(move |m| {
        m.map(|arrow_ipc| {
            node.metrics.sent_bytes(partial_aggregate, arrow_ipc.len());
            ScanChunkResponse {
                arrow_ipc,
                partial_aggregate,
            }
        })
        .map_err(Status::internal)
    });
    Ok(produced(messages))
}

/// `items` produced on a blocking thread, [`AHEAD`] at most ahead of the reader.
fn produced<T: Send + 'static>(
    items: impl Iterator<Item = Result<T, Status>> + Send + 'static,
) -> ReceiverStream<Result<T, Status>> {
    let (tx, rx) = tokio::sync::mpsc::channel(AHEAD);
    tokio::task::spawn_blocking(move || {
        for item in items {
            if tx.blocking_send(item).is_err() {
                break;
            }
        }
    });
    ReceiverStream::new(rx)
}

/// This node's replicas, read in-process by the queries it coordinates.
pub struct LocalScans(pub Arc<Node>);

#[async_trait]
impl LocalReplicas for LocalScans {
    fn alias(&self) -> &str {
        &self.0.alias
    }

    async fn scan(&self, req: ScanChunkRequest) -> Result<LocalRows, Status> {
        let Some((_, rows)) = rows(&self.0, &req, ScanVia::Local, Reading::Any).await? else {
            return Ok(futures::stream::empty().boxed());
        };
        Ok(produced(rows.map(|b| b.map_err(Status::internal))).boxed())
    }

    async fn states_from_statistics(
        &self,
        req: ScanChunkRequest,
    ) -> Result<Option<LocalRows>, Status> {
        let answer = rows(&self.0, &req, ScanVia::Local, Reading::StatisticsOnly).await?;
        Ok(answer.map(|(_, states)| produced(states.map(|b| b.map_err(Status::internal))).boxed()))
    }
}
