//! Appends from clients: any data node coordinates. The rows are fitted to the table, split by
//! partition, and each share is written through its chunk's primary, all with the client's
//! `(writer_id, seq)`, so a retried append is applied at most once in every chunk.
//!
//! A primary that cannot be reached (connection refused, reset, deadline, no answer to a health
//! probe while the write is pending) is taken out of its chunk's in-sync set through the
//! controller — compare-and-set on the chunk version — and the share is written through the
//! next in-sync replica. A refusal that says "not the primary" or
//! "stale version" refreshes the chunk and tries again. With no replica left in sync the append
//! fails with UNAVAILABLE and that chunk got nothing. A seq older than the writer's dedup window
//! is refused (FAILED_PRECONDITION, [`Reason::SeqOutsideDedupWindow`]) at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use futures::future::try_join_all;
use shoal_catalog::rows;
use shoal_client::error::{Failure, classify};
use shoal_client::liveness::watched;
use shoal_proto::{AppendRequest, AppendResponse, ChunkInfo, Reason, WriteChunkRequest};
use tonic::{Code, Status};

use crate::catalog_cache::{primary, unavailable};
use crate::node::Node;
use crate::replication::remove_from_in_sync;

/// How long one chunk's share may take, failovers included.
const WRITE_DEADLINE: Duration = Duration::from_secs(24);
/// Deadline of one call to a primary that keeps answering health probes: longer than a healthy
/// primary can take (a rejoin's pause, then the wait for its replicas). A primary that stops
/// answering is given up on within a second ([`watched`]).
const PRIMARY_CALL_TIMEOUT: Duration = Duration::from_secs(17);
const RETRY_PAUSE: Duration = Duration::from_millis(50);

pub async fn append(node: &Arc<Node>, req: AppendRequest) -> Result<AppendResponse, Status> {
    let timer = node.metrics.append();
    let answer = decode_and_append(node, req).await;
    timer.answered(answer.as_ref().map(|a| a.duplicate));
    answer
}

async fn decode_and_append(node: &Arc<Node>, req: AppendRequest) -> Result<AppendResponse, Status> {
    // The table first: an unknown table is NOT_FOUND whatever the rows are.
    node.catalog.table(&req.db, &req.table).await?;
    let batch = rows::decode_ipc(&req.arrow_ipc)
        .map_err(|e| Status::invalid_argument(format!("undecodable Arrow IPC: {e}")))?;
    append_batch(node, &req.db, &req.table, req.writer_id, req.seq, &batch).await
}

/// [`append`] of a decoded batch (Flight SQL ingest comes this way).
pub async fn append_batch(
    node: &Arc<Node>,
    db: &str,
    table_name: &str,
    writer_id: u64,
    seq: u64,
    batch: &RecordBatch,
) -> Result<AppendResponse, Status> {
    node.catalog.ensure_fresh().await?;
    let (scheme, table) = node.catalog.table(db, table_name).await?;
    let batch = rows::fit(&table, batch).map_err(Status::invalid_argument)?;
    let rows_in = batch.num_rows() as u64;
    if rows_in == 0 {
        return Ok(AppendResponse::default());
    }
    let parts =
        rows::split_by_partition(&scheme, &table, &batch).map_err(Status::invalid_argument)?;
    let chunks = chunks_for(node, db, table_name, &parts).await?;
    let writes = parts.iter().zip(chunks).map(|((_, rows), chunk_id)| {
        let ipc = rows::encode_ipc(rows.schema_ref(), std::slice::from_ref(rows));
        async move {
            let ipc = ipc.map_err(|e| Status::internal(format!("encode rows: {e}")))?;
            write_share(node, chunk_id, writer_id, seq, ipc).await
        }
    });
    let results = try_join_all(writes).await?;
    Ok(AppendResponse {
        rows: rows_in,
        duplicate: results.iter().all(|dup| *dup),
    })
}

/// The chunk id of each partition, creating (through the controller) the missing chunks.
async fn chunks_for(
    node: &Node,
    db: &str,
    table: &str,
    parts: &[(shoal_catalog::PartitionKey, RecordBatch)],
) -> Result<Vec<u64>, Status> {
    let keys: Vec<String> = parts.iter().map(|(k, _)| k.to_string()).collect();
    let known: Vec<Option<ChunkInfo>> = keys
        .iter()
        .map(|k| node.catalog.chunk_for(db, table, k))
        .collect();
    if known.iter().all(Option::is_some) {
        return Ok(known.into_iter().flatten().map(|c| c.id).collect());
    }
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let created = node
        .catalog
        .controllers()
        .ensure_chunks(db, table, &refs)
        .await
        .map_err(|e| match e {
            shoal_client::ClientError::Rpc { code, message, .. } => Status::new(code, message),
            e => unavailable(e),
        })?;
    for c in &created {
        node.catalog.update_chunk(c.clone());
    }
    keys.iter()
        .map(|k| {
            created
                .iter()
                .find(|c| &c.partition_key == k)
                .map(|c| c.id)
                .ok_or_else(|| Status::internal(format!("controller returned no chunk for {k}")))
        })
        .collect()
}

/// Writes one chunk's share through its primary, failing over; answers whether it was a
/// duplicate.
async fn write_share(
    node: &Arc<Node>,
    chunk_id: u64,
    writer_id: u64,
    seq: u64,
    arrow_ipc: Vec<u8>,
) -> Result<bool, Status> {
    let started = Instant::now();
    let mut last = Status::unavailable("not tried");
    // An earlier attempt of this request may have applied the rows before it failed; a later
    // attempt finding them is this request's own retry, not a duplicate of the client's.
    let mut may_have_applied = false;
    while started.elapsed() < WRITE_DEADLINE {
        let chunk = node.catalog.chunk_at_least(chunk_id, 0).await?;
        let Some(p) = primary(&chunk).cloned() else {
            return Err(Status::unavailable(format!(
                "chunk {} ({}) has no replica in sync",
                chunk.id, chunk.path
            )));
        };
        let req = WriteChunkRequest {
            chunk_id,
            chunk_version: chunk.version,
            writer_id,
            seq,
            arrow_ipc: arrow_ipc.clone(),
        };
        let result = if p.node == node.alias {
            crate::primary::write_chunk(node, req).await
        } else {
            let mut r = tonic::Request::new(req);
            let left = WRITE_DEADLINE.saturating_sub(started.elapsed());
            r.set_timeout(PRIMARY_CALL_TIMEOUT.min(left));
            match node.data_node(&p.addr) {
                // A primary that stops answering is deposed at once; a slow one is waited for.
                Ok(mut c) => watched(&node.channels, &p.addr, c.write_chunk(r))
                    .await
                    .map(|r| r.into_inner()),
                Err(e) => Err(e),
            }
        };
        let status = match result {
            Ok(resp) => return Ok(resp.duplicate && !may_have_applied),
            // Refused for the request itself, not for the primary's state: the same answer
            // would come again.
            Err(s) if Reason::of(&s) == Some(Reason::SeqOutsideDedupWindow) => return Err(s),
            // The primary is healthy but its memory is full until flushes catch up: the client
            // retries later (no failover, nothing was written).
            Err(s) if Reason::of(&s) == Some(Reason::MemoryFull) => {
                return Err(Status::unavailable(s.message().to_owned()));
            }
            Err(s) => s,
        };
        // Refused before the local append (stale metadata) versus after it or unknown.
        may_have_applied |= !matches!(status.code(), Code::FailedPrecondition | Code::NotFound);
        match status.code() {
            // The primary changed or our metadata is old: look again, at once if the chunk
            // moved on (a primary hand-over: the next attempt goes to the new primary).
            Code::FailedPrecondition | Code::Aborted | Code::NotFound => {
                let _ = node.catalog.refresh_past(chunk_id, chunk.version).await;
                if node
                    .catalog
                    .chunk(chunk_id)
                    .is_some_and(|c| c.version > chunk.version)
                {
                    last = status;
                    continue;
                }
            }
            // The primary is unreachable: the next in-sync replica takes over.
            _ if classify(&status) != Failure::Answered && p.node != node.alias => {
                tracing::warn!(
                    "chunk {chunk_id}: primary {} unreachable ({}); failing over",
                    p.node,
                    status.message()
                );
                fail_over(node, &chunk, &p.node).await;
            }
            _ => return Err(status),
        }
        last = status;
        tokio::time::sleep(RETRY_PAUSE).await;
    }
    let path = node
        .catalog
        .chunk(chunk_id)
        .map(|c| c.path)
        .unwrap_or_default();
    Err(Status::unavailable(format!(
        "chunk {chunk_id} ({path}): no in-sync replica acknowledged the write within \
         {WRITE_DEADLINE:?}; last error: {}",
        last.message()
    )))
}

/// Takes an unreachable primary out of the in-sync set, unless it is the last one (then the
/// caller keeps trying it until its deadline: it may be restarting).
async fn fail_over(node: &Node, chunk: &ChunkInfo, primary: &str) {
    if chunk.replicas.iter().filter(|r| r.in_sync).count() <= 1 {
        return;
    }
    // The writes that found the primary gone together (one shared probe) wait for the first
    // one's change instead of each proposing its own, bound to be refused.
    let lock = node.links.failover_lock(chunk.id);
    let _one_at_a_time = lock.lock().await;
    if node
        .catalog
        .chunk(chunk.id)
        .is_none_or(|c| c.version > chunk.version)
    {
        return;
    }
    // Refused: someone else changed the chunk first; the refreshed catalog shows what.
    let _ = remove_from_in_sync(node, chunk, primary).await;
}
