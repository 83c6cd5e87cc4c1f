//! Appends to a table through any data node, failing over between them.
//!
//! Every append carries the writer's `(writer_id, seq)`; the data nodes apply a given pair at
//! most once, so re-sending it after an unknown outcome (the node died, the connection reset,
//! the deadline passed, the node was draining) is safe. Together: exactly once.
//!
//! The data nodes remember a writer's seqs exactly only within a window below its highest
//! applied seq; an older seq is refused (FAILED_PRECONDITION, `shoal_proto::Reason::
//! SeqOutsideDedupWindow`): nothing written, and whether it was applied before is unknown.
//! This client keeps each writer's appends in flight within [`MAX_SEQ_SPREAD`] seqs, well inside
//! the window, so a writer that starts its appends in increasing seq order never meets that
//! refusal; a seq re-sent long after the writer moved on can.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use shoal_proto::data_node_client::DataNodeClient;
use shoal_proto::{AppendRequest, AppendResponse};

use crate::ClientError;
use crate::channel::Channels;
use crate::error::{Failure, classify};
use crate::liveness::watched;
use crate::seq_spread::SeqSpread;

/// How far above a writer's oldest seq in flight a new append may start (it waits otherwise): a
/// quarter of the data nodes' dedup window (4096).
pub const MAX_SEQ_SPREAD: u64 = 1024;

/// Per-attempt deadline; longer than a data node's own deadline for one chunk's write, so the
/// node that knows the outcome answers first.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after every site failed once, before going round again.
const ROUND_PAUSE: Duration = Duration::from_millis(100);

pub struct DataClient {
    sites: Vec<String>,
    channels: Channels,
    current: AtomicUsize,
    spread: SeqSpread,
    /// How long one append keeps trying.
    pub deadline: Duration,
}

/// What a successful append reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    pub rows: u64,
    /// Applied before (this was a retry of an append that had reached the cluster).
    pub duplicate: bool,
    /// Attempts that failed over to another site first.
    pub retries: u32,
    /// Those attempts, each as `site after <time>: <code>: <message>` (what a slow append
    /// waited on).
    pub failures: Vec<String>,
    /// The site that acknowledged it: an index into [`DataClient::sites`].
    pub site: usize,
}

impl DataClient {
    /// `sites`: data node addresses (`host:port`); any will coordinate.
    pub fn new(sites: Vec<String>, channels: Channels) -> Self {
        Self {
            sites,
            channels,
            current: AtomicUsize::new(0),
            spread: SeqSpread::new(MAX_SEQ_SPREAD),
            deadline: Duration::from_secs(60),
        }
    }

    /// The data node addresses, in the order they are tried.
    pub fn sites(&self) -> &[String] {
        &self.sites
    }

    /// Appends `batch` as `(writer_id, seq)`, re-sending it to other data nodes while the
    /// outcome is unknown, until [`DataClient::deadline`]. Waits first while `seq` is
    /// [`MAX_SEQ_SPREAD`] or more above the writer's oldest append in flight.
    pub async fn append(
        &self,
        db: &str,
        table: &str,
        writer_id: u64,
        seq: u64,
        batch: &RecordBatch,
    ) -> Result<Appended, ClientError> {
        let _in_flight = self.spread.enter(writer_id, seq).await;
        let arrow_ipc =
            shoal_catalog::rows::encode_ipc(batch.schema_ref(), std::slice::from_ref(batch))
                .map_err(|e| ClientError::BadInput(format!("cannot encode rows: {e}")))?;
        let req = AppendRequest {
            db: db.to_owned(),
            table: table.to_owned(),
            writer_id,
            seq,
            arrow_ipc,
        };
        let started = Instant::now();
        let mut failures: Vec<String> = Vec::new();
        while started.elapsed() < self.deadline {
            for _ in 0..self.sites.len() {
                let i = self.current.load(Ordering::Relaxed) % self.sites.len();
                let addr = &self.sites[i];
                let mut client = DataNodeClient::new(self.channels.get(addr)?);
                let Some(left) = self.deadline.checked_sub(started.elapsed()) else {
                    break;
                };
                let attempt = Instant::now();
                let mut r = tonic::Request::new(req.clone());
                // Never past the append's deadline: an attempt cut short has an unknown
                // outcome, which is what running out of time reports anyway.
                r.set_timeout(ATTEMPT_TIMEOUT.min(left));
                // A coordinator that stops answering is left at once for the next site.
                let status = match watched(&self.channels, addr, client.append(r)).await {
                    Ok(resp) => {
                        let AppendResponse { rows, duplicate } = resp.into_inner();
                        return Ok(Appended {
                            rows,
                            duplicate,
                            retries: u32::try_from(failures.len()).unwrap_or(u32::MAX),
                            failures,
                            site: i,
                        });
                    }
                    Err(s) => s,
                };
                if !worth_another_site(&status) {
                    return Err(ClientError::from_status(addr, status));
                }
                let failure = format!(
                    "{addr} after {} ms: {}: {}",
                    attempt.elapsed().as_millis(),
                    status.code(),
                    status.message()
                );
                tracing::debug!("append ({writer_id}, {seq}) failed over: {failure}");
                failures.push(failure);
                let _ =
                    self.current
                        .compare_exchange(i, i + 1, Ordering::Relaxed, Ordering::Relaxed);
            }
            tokio::time::sleep(ROUND_PAUSE).await;
        }
        Err(ClientError::Unavailable {
            what: format!("append ({writer_id}, {seq})"),
            waited: started.elapsed(),
            last: failures.pop().unwrap_or_else(|| "no site tried".to_owned()),
        })
    }
}

/// The node (or the path to it) failed, not the request: re-send elsewhere (appends are
/// idempotent). ABORTED is a data node's "the replica set changed under this write, try again".
fn worth_another_site(status: &tonic::Status) -> bool {
    classify(status) != Failure::Answered || status.code() == tonic::Code::Aborted
}
