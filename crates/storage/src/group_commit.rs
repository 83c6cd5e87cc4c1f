//! Group commit: one thread owns the WAL's writable end and the dedup state (and exits while
//! the store is idle: see `commit_thread`).
//!
//! Callers validate and encode their batch on their own task, then queue a [`Request`] and await
//! its reply. The thread takes the first queued request plus everything else already queued (up
//! to [`MAX_GROUP_RECORDS`] / [`MAX_GROUP_BYTES`]), decides each one in queue order (duplicate,
//! lsn mismatch, or applied at the next lsn), writes all accepted frames with one `write`, issues
//! one `fdatasync` when `data_sync` is on, publishes the records to readers, and only then
//! replies. While it waits on the disk, new requests queue up and form the next group, so the
//! number of fsyncs per append falls as concurrency rises.
//!
//! If a write or fdatasync fails, every request of that group fails, the group's bytes are cut
//! from the WAL again (see [`WalWriter::cut_back`]), the store refuses all later writes
//! ([`StorageError::Failed`]) and tells its [`FailureHook`]: after a failed fsync the kernel may
//! have dropped the dirty pages, so only a reopen (which replays what is really on disk) knows
//! the truth.
//!
//! A seq below its writer's dedup window is refused ([`StorageError::OutsideDedupWindow`]),
//! never answered as a duplicate: whether it was applied is not known.
//!
//! Two more messages run on the thread, between groups, because they need its state: a flush's
//! [`Msg::Freeze`] (the last applied lsn and the dedup state there; the WAL is rolled first:
//! the last segment fdatasync'd, so the saved state never claims records a power loss could
//! still take, and a new segment started, so the frozen records end a segment that open skips
//! and `truncate_wal` deletes whole), and [`Msg::TruncateWal`] (segment deletion, which changes
//! what the writer accounts for), and [`Msg::CutTail`] (see `tail`).

use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, PoisonError};

use arrow::record_batch::RecordBatch;
use tokio::sync::oneshot;

use crate::dedup::DEDUP_WINDOW;
use crate::dedup::{Dedup, DedupSnapshot, Seen};
use crate::error::StorageError;
use crate::index::Entry;
use crate::store::Shared;
use crate::types::{AppendOutcome, FailureHook};
use crate::wal::record::{self, RecordHeader};
use crate::wal::writer::{FrameSpan, Mark, WalWriter};

/// Most requests committed together.
pub(crate) const MAX_GROUP_RECORDS: usize = 4096;
/// Stop adding requests to a group past this many IPC bytes.
pub(crate) const MAX_GROUP_BYTES: usize = 32 << 20;

/// How a request wants its lsn chosen.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Op {
    /// Next lsn.
    Append,
    /// Exactly this lsn (replication / recovery).
    ApplyAt(u64),
}

/// One queued append.
pub(crate) struct Request {
    pub op: Op,
    pub writer_id: u64,
    pub seq: u64,
    pub batch: RecordBatch,
    pub ipc: Vec<u8>,
    pub digest: u64,
    pub reply: oneshot::Sender<Result<AppendOutcome, StorageError>>,
}

/// What the commit thread receives.
pub(crate) enum Msg {
    /// An append or apply.
    Append(Request),
    /// A flush asks where the log ends and for the dedup state there.
    Freeze(oneshot::Sender<Result<Frozen, StorageError>>),
    /// Delete the sealed segments whose records are all ≤ this lsn; answers the first lsn the
    /// WAL still holds.
    TruncateWal(u64, oneshot::Sender<Result<u64, StorageError>>),
    /// Cut the records after this lsn (a diverged tail, see `tail`).
    CutTail(u64, oneshot::Sender<Result<(), StorageError>>),
}

/// Answer to [`Msg::Freeze`].
pub(crate) struct Frozen {
    /// The last applied lsn (every record up to it is durable and in the view).
    pub last_lsn: u64,
    /// The dedup state right after `last_lsn`.
    pub dedup: DedupSnapshot,
    /// Held until the flush that froze is done: the log's tail cannot be cut meanwhile.
    pub _in_flight: FlushInFlight,
}

/// Counts a flush between its freeze and its end in [`Shared::flushes_in_flight`].
pub(crate) struct FlushInFlight(Arc<Shared>);

impl FlushInFlight {
    fn new(shared: &Arc<Shared>) -> Self {
        shared.flushes_in_flight.fetch_add(1, Ordering::SeqCst);
        FlushInFlight(shared.clone())
    }
}

impl Drop for FlushInFlight {
    fn drop(&mut self) {
        self.0.flushes_in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// State owned by the commit thread.
pub(crate) struct Committer {
    pub shared: Arc<Shared>,
    pub rx: Receiver<Msg>,
    pub dedup: Dedup,
    pub next_lsn: u64,
    pub wal: WalWriter,
    pub data_sync: bool,
    pub on_failure: Option<FailureHook>,
    pub failed: Option<String>,
}

impl Committer {
    /// Handle `first` and, if it is an append, everything else already queued with it as one
    /// group (up to the group limits). A control message met while gathering is handled right
    /// after the group, so it sees the group's records.
    pub(crate) fn handle(&mut self, first: Msg) {
        let first = match first {
            Msg::Append(r) => r,
            other => return self.control(other),
        };
        #[cfg(test)]
        let gate = self.shared.clone();
        #[cfg(test)]
        let _held = gate.gate.lock().unwrap_or_else(PoisonError::into_inner);
        let mut bytes = first.ipc.len();
        let mut group = vec![first];
        let mut next = None;
        while group.len() < MAX_GROUP_RECORDS && bytes < MAX_GROUP_BYTES {
            match self.rx.try_recv() {
                Ok(Msg::Append(r)) => {
                    bytes += r.ipc.len();
                    group.push(r);
                }
                Ok(other) => {
                    next = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        self.commit(group);
        if let Some(other) = next {
            self.control(other);
        }
    }

    fn control(&mut self, msg: Msg) {
        match msg {
            Msg::Append(_) => {}
            Msg::Freeze(reply) => {
                let _ = reply.send(self.freeze());
            }
            Msg::TruncateWal(through, reply) => {
                let _ = reply.send(self.truncate_wal(through));
            }
            Msg::CutTail(after, reply) => {
                let _ = reply.send(self.cut_tail(after));
            }
        }
    }

    fn freeze(&mut self) -> Result<Frozen, StorageError> {
        if let Some(reason) = &self.failed {
            return Err(self.failed_err(reason));
        }
        if let Err(e) = self.wal.roll(&self.shared.counters) {
            // As a failed group: the page cache can no longer be trusted.
            self.fail_store("rolling the WAL for a flush", &e);
            return Err(e);
        }
        self.shared
            .view
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .wal_bytes = self.wal.bytes_on_disk();
        Ok(Frozen {
            last_lsn: self.next_lsn - 1,
            dedup: self.dedup.snapshot(),
            _in_flight: FlushInFlight::new(&self.shared),
        })
    }

    fn truncate_wal(&mut self, through: u64) -> Result<u64, StorageError> {
        let first = self.wal.truncate_through(through)?;
        self.shared
            .view
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .wal_bytes = self.wal.bytes_on_disk();
        Ok(first)
    }

    /// `what` failed on the WAL: the store refuses every later write (only a reopen knows what
    /// the disk holds) and tells its hook.
    pub(crate) fn fail_store(&mut self, what: &str, error: &StorageError) {
        let reason = error.to_string();
        tracing::error!(dir = %self.shared.dir.display(), error = %reason,
            "{what} failed; store refuses further writes until reopened");
        if let Some(hook) = &self.on_failure {
            hook(&self.failed_err(&reason));
        }
        self.failed = Some(reason);
    }

    pub(crate) fn failed_err(&self, reason: &str) -> StorageError {
        StorageError::Failed {
            dir: self.shared.dir.clone(),
            reason: reason.to_string(),
        }
    }

    fn write(&mut self, buf: &[u8], spans: &[FrameSpan]) -> Result<(), StorageError> {
        self.wal
            .write_group(buf, spans, self.data_sync, &self.shared.counters)?;
        // The bytes are in the file, as when a disk fails the fdatasync after the write.
        #[cfg(test)]
        if self
            .shared
            .fail_next_sync
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(crate::error::io_err("fdatasync", &self.shared.dir)(
                std::io::Error::other("injected failure"),
            ));
        }
        Ok(())
    }

    /// The group written since `mark` failed: cut it, fail its requests, refuse every later
    /// write, and tell the hook.
    fn fail_group(
        &mut self,
        error: StorageError,
        mark: &Mark,
        requests: impl Iterator<Item = Request>,
    ) {
        let reason = match self.wal.cut_back(mark) {
            Ok(()) => error.to_string(),
            Err(cut) => format!(
                "{error}; cutting the failed group from the WAL failed too, so a reopen may \
                 replay it: {cut}"
            ),
        };
        tracing::error!(dir = %self.shared.dir.display(), error = %reason,
            "WAL write failed; store refuses further writes until reopened");
        // The hook first: a writer told of the failure finds the owner told already.
        if let Some(hook) = &self.on_failure {
            hook(&self.failed_err(&reason));
        }
        for r in requests {
            let _ = r.reply.send(Err(self.failed_err(&reason)));
        }
        self.failed = Some(reason);
    }

    fn commit(&mut self, group: Vec<Request>) {
        let shared = self.shared.clone();
        let counters = &shared.counters;
        counters.add_group();
        if let Some(reason) = &self.failed {
            for r in group {
                let _ = r.reply.send(Err(self.failed_err(reason)));
            }
            return;
        }
        let group_first = self.next_lsn;
        let mut buf = Vec::new();
        let mut spans = Vec::new();
        let mut accepted: Vec<(Request, u64)> = Vec::new();
        let mut deferred: Vec<(Request, Option<u64>)> = Vec::new();
        for req in group {
            match self.dedup.check(req.writer_id, req.seq) {
                Seen::OutsideWindow { highest } => {
                    let _ = req.reply.send(Err(StorageError::OutsideDedupWindow {
                        dir: self.shared.dir.clone(),
                        writer_id: req.writer_id,
                        seq: req.seq,
                        highest,
                        window: DEDUP_WINDOW,
                    }));
                }
                Seen::Applied(lsn) => {
                    counters.add_duplicate();
                    if lsn.is_some_and(|l| l >= group_first) {
                        // Its original is in this very group: answer once that is durable.
                        deferred.push((req, lsn));
                    } else {
                        let _ = req.reply.send(Ok(AppendOutcome::Duplicate { lsn }));
                    }
                }
                Seen::New => {
                    if let Op::ApplyAt(want) = req.op
                        && want != self.next_lsn
                    {
                        let _ = req.reply.send(Err(StorageError::LsnMismatch {
                            dir: self.shared.dir.clone(),
                            expected: self.next_lsn,
                            got: want,
                        }));
                        continue;
                    }
                    let lsn = self.next_lsn;
                    self.next_lsn += 1;
                    self.dedup.insert(req.writer_id, req.seq, lsn);
                    let start = buf.len();
                    let header = RecordHeader {
                        lsn,
                        writer_id: req.writer_id,
                        seq: req.seq,
                        digest: req.digest,
                    };
                    record::encode_frame(&mut buf, &header, &req.ipc);
                    spans.push(FrameSpan {
                        lsn,
                        start,
                        end: buf.len(),
                    });
                    accepted.push((req, lsn));
                }
            }
        }
        if accepted.is_empty() {
            return;
        }
        let mark = self.wal.mark();
        if let Err(e) = self.write(&buf, &spans) {
            let requests = accepted
                .into_iter()
                .map(|(r, _)| r)
                .chain(deferred.into_iter().map(|(r, _)| r));
            self.fail_group(e, &mark, requests);
            return;
        }
        counters.add_applied(accepted.len() as u64, buf.len() as u64);
        let mut replies = Vec::with_capacity(accepted.len());
        {
            let mut view = self
                .shared
                .view
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            for (req, lsn) in accepted {
                view.push(
                    Entry {
                        lsn,
                        writer_id: req.writer_id,
                        seq: req.seq,
                        batch: req.batch,
                        ipc_len: req.ipc.len(),
                    },
                    req.digest,
                );
                replies.push((req.reply, lsn));
            }
            view.wal_bytes = self.wal.bytes_on_disk();
        }
        for (reply, lsn) in replies {
            let _ = reply.send(Ok(AppendOutcome::Applied { lsn }));
        }
        for (r, lsn) in deferred {
            let _ = r.reply.send(Ok(AppendOutcome::Duplicate { lsn }));
        }
    }
}
