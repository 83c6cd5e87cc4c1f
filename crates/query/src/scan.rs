//! `ChunkScanExec`: reads a table's chunks from the data nodes, one output partition per chunk,
//! each from one in-sync replica.

use std::fmt;
use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamReader;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use shoal_client::channel::Channels;
use shoal_proto::data_node_client::DataNodeClient;
use shoal_proto::{ChunkInfo, MAX_MESSAGE, ReplicaInfo, ScanChunkRequest, ScanChunkResponse, TopK};
use tonic::Streaming;

use crate::error::unavailable;
use crate::leaf::leaf_node;
use crate::local::{LocalReplicas, LocalRows, Replicas};
use crate::pushdown::Pushed;

/// How long a replica may take to start answering before the next one is tried: a paused or
/// partitioned node accepts the connection but never answers.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Once it answered, the longest a replica may go between two messages: above the time a
/// healthy one takes to read a large chunk's files before its first rows, so only a replica
/// that stopped sending while its connection stays alive (which keepalive does not catch) hits
/// it. The query then fails instead of hanging (F10).
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Clone)]
pub struct ChunkScanExec {
    /// `dfs://db.table`, for EXPLAIN and errors.
    table: String,
    /// Chunks of the table before pruning.
    total_chunks: usize,
    chunks: Vec<ChunkInfo>,
    /// The projected schema; columns are taken from the replicas' batches by name.
    schema: SchemaRef,
    /// Conditions replicas apply before sending rows (see `pushdown`).
    filters: Pushed,
    /// Rows each partition needs to produce at most.
    limit: Option<usize>,
    /// The order and limit a sort above takes the rows in, which replicas keep (see `top_k`).
    top_k: Option<TopK>,
    /// The table's `sortColumns`, by which its chunk files are sorted.
    sort_columns: Vec<String>,
    replicas: Replicas,
    properties: Arc<PlanProperties>,
}

impl ChunkScanExec {
    pub fn new(
        table: String,
        total_chunks: usize,
        chunks: Vec<ChunkInfo>,
        schema: SchemaRef,
        filters: Pushed,
        limit: Option<usize>,
        replicas: Replicas,
    ) -> Self {
        // At least one partition: a plan with zero partitions trips some operators.
        let partitions = chunks.len().max(1);
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self {
            table,
            total_chunks,
            chunks,
            schema,
            filters,
            limit,
            top_k: None,
            sort_columns: Vec::new(),
            replicas,
            properties: Arc::new(properties),
        }
    }

    /// The same scan of a table whose chunk files are sorted by `columns`.
    pub(crate) fn sorted_by(self, columns: Vec<String>) -> Self {
        Self {
            sort_columns: columns,
            ..self
        }
    }

    /// The columns the chunk files are sorted by (first to last).
    pub(crate) fn sort_columns(&self) -> &[String] {
        &self.sort_columns
    }

    /// The same scan, its replicas asked for only the rows that may be among `top`'s.
    pub(crate) fn with_top_k(self, top: TopK) -> Self {
        Self {
            top_k: Some(top),
            ..self
        }
    }

    /// The chunks read, one per output partition.
    pub(crate) fn chunks(&self) -> &[ChunkInfo] {
        &self.chunks
    }

    pub(crate) fn replicas(&self) -> &Replicas {
        &self.replicas
    }

    /// The conditions replicas apply.
    pub(crate) fn filters(&self) -> &Pushed {
        &self.filters
    }

    pub(crate) fn limit(&self) -> Option<usize> {
        self.limit
    }
}

impl fmt::Debug for ChunkScanExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChunkScanExec")
            .field("table", &self.table)
            .field("chunks", &self.chunks.len())
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl DisplayAs for ChunkScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "ChunkScanExec: table={} chunks={} of {}",
            self.table,
            self.chunks.len(),
            self.total_chunks
        )?;
        if !self.filters.sql.is_empty() {
            write!(f, " filters=[{}]", self.filters.sql.join(", "))?;
        }
        if let Some(limit) = self.limit {
            write!(f, " limit={limit}")?;
        }
        if let Some(top) = &self.top_k {
            let by: Vec<String> = top
                .columns
                .iter()
                .map(|c| {
                    let direction = if c.descending { "DESC" } else { "ASC" };
                    format!("{} {direction}", c.name)
                })
                .collect();
            write!(f, " top_k={} by [{}]", top.limit, by.join(", "))?;
        }
        Ok(())
    }
}

impl ExecutionPlan for ChunkScanExec {
    fn name(&self) -> &str {
        "ChunkScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    leaf_node!();

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let schema = Arc::clone(&self.schema);
        let Some(chunk) = self.chunks.get(partition).cloned() else {
            return Ok(Box::pin(RecordBatchStreamAdapter::new(
                schema,
                stream::empty(),
            )));
        };
        // What every replica is asked, the chunk aside.
        let ask = ScanChunkRequest {
            columns: schema.fields().iter().map(|f| f.name().clone()).collect(),
            project: true,
            limit: self.limit.map_or(0, |l| l as u64),
            filters: self.filters.sql.clone(),
            top_k: self.top_k.clone(),
            ..ScanChunkRequest::default()
        };
        let batches = stream::once(open(chunk, self.replicas.clone(), ask, Arc::clone(&schema)))
            .map_ok(move |rows| match rows {
                Answer::Rows(rows) => rows,
                // Never asked for here: a request without an aggregate gets rows.
                Answer::RowsNotStates => stream::once(async {
                    Err(DataFusionError::Internal(
                        "a replica answered a row scan as if it had asked for aggregate states"
                            .into(),
                    ))
                })
                .boxed(),
            })
            .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&schema),
            at_most(batches, self.limit),
        )))
    }
}

/// The chunk's in-sync replicas: this node's own first (read in-process), else starting at a
/// different one per chunk to spread the reads.
fn read_order<'a>(chunk: &'a ChunkInfo, replicas: &Replicas) -> Vec<&'a ReplicaInfo> {
    let mut in_sync: Vec<&ReplicaInfo> = chunk.replicas.iter().filter(|r| r.in_sync).collect();
    let start = match in_sync
        .iter()
        .position(|r| replicas.local(&r.node).is_some())
    {
        Some(local) => local,
        None => (chunk.id % in_sync.len().max(1) as u64) as usize,
    };
    if !in_sync.is_empty() {
        in_sync.rotate_left(start);
    }
    in_sync
}

/// What a replica started answering.
pub(crate) enum Answer {
    /// Batches of the schema asked for: rows, or partial aggregate states when asked for.
    Rows(BoxStream<'static, Result<RecordBatch>>),
    /// Asked for partial aggregate states, the replica (of a release before them) sends rows;
    /// the caller computes the states itself.
    RowsNotStates,
}

/// Whether the chunk is read from this node's own replica (in-process).
pub(crate) fn reads_locally(chunk: &ChunkInfo, replicas: &Replicas) -> bool {
    read_order(chunk, replicas)
        .first()
        .is_some_and(|r| replicas.local(&r.node).is_some())
}

/// Starts reading the chunk from the first in-sync replica that answers. Only the start fails
/// over: once rows have been passed on, another replica could not continue where this one
/// stopped (replicas need not return rows in the same order), so a later failure fails the query.
pub(crate) async fn open(
    chunk: ChunkInfo,
    replicas: Replicas,
    ask: ScanChunkRequest,
    schema: SchemaRef,
) -> Result<Answer> {
    let states = ask.aggregate.is_some();
    let mut tried = Vec::new();
    let req = ScanChunkRequest {
        chunk_id: chunk.id,
        chunk_version: chunk.version,
        ..ask
    };
    for replica in read_order(&chunk, &replicas) {
        let failed = failed(&chunk, &replica.node);
        let started = match replicas.local(&replica.node) {
            // This node's own replica runs this very code: it computes what it is asked.
            Some(local) => start_local(local.as_ref(), req.clone()).await.map(|rows| {
                Answer::Rows(fitted(rows.map_err(failed), Arc::clone(&schema), states))
            }),
            None => start_scan(&replicas.channels, &replica.addr, req.clone())
                .await
                .map(|(first, rest)| {
                    if states && !first.as_ref().is_some_and(|m| m.partial_aggregate) {
                        return Answer::RowsNotStates;
                    }
                    let rest = each_within(rest, MESSAGE_TIMEOUT);
                    let messages = stream::iter(first.map(Ok)).chain(rest).map_err(failed);
                    decoded(messages, Arc::clone(&schema), states)
                }),
        };
        match started {
            Ok(answer) => return Ok(answer),
            Err(e) => tried.push(format!("{} ({}): {e}", replica.node, replica.addr)),
        }
    }
    let replicas: Vec<String> = chunk
        .replicas
        .iter()
        .map(|r| format!("{}:{}", r.node, if r.in_sync { "in_sync" } else { "stale" }))
        .collect();
    Err(unavailable(if tried.is_empty() {
        format!(
            "chunk {} has no in-sync replica (replicas: {})",
            chunk.path,
            replicas.join(",")
        )
    } else {
        format!(
            "chunk {} could not be read from any in-sync replica; tried {}",
            chunk.path,
            tried.join("; ")
        )
    }))
}

/// `messages`, ended with DEADLINE_EXCEEDED when one takes longer than `within` to come.
fn each_within<S>(
    messages: S,
    within: Duration,
) -> impl futures::Stream<Item = Result<ScanChunkResponse, tonic::Status>>
where
    S: futures::Stream<Item = Result<ScanChunkResponse, tonic::Status>> + Unpin,
{
    stream::unfold(Some(messages), move |rest| async move {
        let mut rest = rest?;
        match tokio::time::timeout(within, rest.next()).await {
            Ok(Some(Ok(m))) => Some((Ok(m), Some(rest))),
            Ok(Some(Err(s))) => Some((Err(s), None)),
            Ok(None) => None,
            Err(_) => Some((
                Err(tonic::Status::deadline_exceeded(format!(
                    "no message for {within:?}"
                ))),
                None,
            )),
        }
    })
}

/// Calls ScanChunk and waits for its first message, so a replica that cannot serve the chunk
/// is found out before any row is passed on.
async fn start_scan(
    channels: &Channels,
    addr: &str,
    req: ScanChunkRequest,
) -> Result<(Option<ScanChunkResponse>, Streaming<ScanChunkResponse>), String> {
    let mut client = DataNodeClient::new(channels.get(addr).map_err(|e| e.to_string())?)
        .max_decoding_message_size(MAX_MESSAGE);
    let started = async {
        let mut rest = client.scan_chunk(req).await?.into_inner();
        let first = rest.message().await?;
        Ok::<_, tonic::Status>((first, rest))
    };
    match tokio::time::timeout(OPEN_TIMEOUT, started).await {
        Ok(Ok(started)) => Ok(started),
        Ok(Err(s)) => Err(format!("{}: {}", s.code(), s.message())),
        Err(_) => Err(format!("no answer within {OPEN_TIMEOUT:?}")),
    }
}

/// A replica's failure once it started answering: the query fails, naming chunk and replica.
fn failed(chunk: &ChunkInfo, node: &str) -> impl Fn(tonic::Status) -> DataFusionError + use<> {
    let (path, node) = (chunk.path.clone(), node.to_owned());
    move |s| {
        unavailable(format!(
            "chunk {path}: replica {node} failed while sending it: {}: {}",
            s.code(),
            s.message()
        ))
    }
}

/// Starts reading the chunk from this node's own replica, which refuses as `ScanChunk` would.
/// Each batch then costs the reader one yield to the scheduler: read in-process, the next
/// batch is nearly always ready, and a plan that never has to wait would keep its worker
/// thread for a whole chunk, starving what is queued behind it (HTTP/2 PINGs among them: a
/// client then drops the connection, a peer's liveness probe gives the node up).
async fn start_local(
    local: &dyn LocalReplicas,
    req: ScanChunkRequest,
) -> Result<LocalRows, String> {
    match tokio::time::timeout(OPEN_TIMEOUT, local.scan(req)).await {
        Ok(Ok(rows)) => Ok(rows
            .then(|b| async {
                tokio::task::yield_now().await;
                b
            })
            .boxed()),
        Ok(Err(s)) => Err(format!("{}: {}", s.code(), s.message())),
        Err(_) => Err(format!("no answer within {OPEN_TIMEOUT:?}")),
    }
}

/// A replica's batches as batches of `schema` (see [`fit`]).
pub(crate) fn fitted(
    rows: impl futures::Stream<Item = Result<RecordBatch>> + Send + 'static,
    schema: SchemaRef,
    states: bool,
) -> BoxStream<'static, Result<RecordBatch>> {
    rows.and_then(move |b| futures::future::ready(fit(&b, &schema, states)))
        .boxed()
}

/// The replica's messages decoded into batches of `schema`.
fn decoded(
    messages: impl futures::Stream<Item = Result<ScanChunkResponse>> + Send + 'static,
    schema: SchemaRef,
    states: bool,
) -> Answer {
    let batches = messages
        .map(move |m| {
            m.and_then(|m| {
                if m.partial_aggregate != states {
                    return Err(DataFusionError::Execution(
                        "a replica changed what it sends midway".into(),
                    ));
                }
                decode(&m.arrow_ipc, &schema, states)
            })
        })
        .map_ok(|batches| stream::iter(batches.into_iter().map(Ok)))
        .try_flatten()
        .boxed();
    Answer::Rows(batches)
}

/// `rows`, stopping after `limit` rows.
fn at_most(
    rows: impl futures::Stream<Item = Result<RecordBatch>> + Send + 'static,
    limit: Option<usize>,
) -> BoxStream<'static, Result<RecordBatch>> {
    rows.scan(limit.unwrap_or(usize::MAX), |left, batch| {
        let out = match batch {
            _ if *left == 0 => None,
            Ok(b) => {
                let n = b.num_rows().min(*left);
                *left -= n;
                Some(Ok(b.slice(0, n)))
            }
            Err(e) => Some(Err(e)),
        };
        futures::future::ready(out)
    })
    .boxed()
}

/// One ScanChunk message (an Arrow IPC stream) as batches of `schema`.
fn decode(ipc: &[u8], schema: &SchemaRef, states: bool) -> Result<Vec<RecordBatch>> {
    let reader = StreamReader::try_new(Cursor::new(ipc), None)?;
    reader
        .map(|batch| fit(&batch?, schema, states))
        .collect::<Result<_>>()
}

/// A replica's batch as a batch of `schema`: rows by column name (a replica of a release
/// before projection sends every column), partial states by position (the replica names them
/// after its own plan); either way a column of another type is an error, never a wrong answer.
fn fit(batch: &RecordBatch, schema: &SchemaRef, states: bool) -> Result<RecordBatch> {
    if !states {
        return project(batch, schema);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(Arc::clone(schema), batch.columns().to_vec(), &options)
        .map_err(|e| {
            DataFusionError::Execution(format!(
                "a replica's partial aggregate states do not match the plan's: {e}"
            ))
        })
}

/// Picks `schema`'s columns by name. The row count is carried explicitly so that a projection
/// with no column (`count(*)`) still counts rows.
pub(crate) fn project(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            batch.column_by_name(f.name()).cloned().ok_or_else(|| {
                DataFusionError::Execution(format!("a chunk's rows lack column {}", f.name()))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &options,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_replica_that_stops_sending_ends_the_scan_instead_of_holding_it() {
        let one = ScanChunkResponse::default();
        // One message, then nothing more, the stream never ending: a stuck replica.
        let stuck = stream::iter([Ok(one.clone())]).chain(stream::pending());
        let got: Vec<_> = each_within(stuck, Duration::from_millis(50))
            .collect()
            .await;
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].as_ref().unwrap(), &one);
        assert_eq!(
            got[1].as_ref().unwrap_err().code(),
            tonic::Code::DeadlineExceeded
        );
        // A stream that ends, and one that fails, pass through as they are.
        let ended: Vec<_> = each_within(stream::iter([Ok(one.clone())]), Duration::from_secs(5))
            .collect()
            .await;
        assert_eq!(ended.len(), 1);
        let failed: Vec<_> = each_within(
            stream::iter([Err(tonic::Status::unavailable("gone")), Ok(one)]),
            Duration::from_secs(5),
        )
        .collect()
        .await;
        assert_eq!(failed.len(), 1, "nothing after an error");
    }
}
