//! [`ChunkStore`]: the public API tying the WAL, dedup state, group commit and index together.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use tokio::sync::oneshot;

use crate::codec;
use crate::commit_thread::CommitThread;
use crate::dedup::Dedup;
use crate::error::{StorageError, arrow_err, io_err};
use crate::fsutil;
use crate::group_commit::{Committer, Msg, Op, Request};
use crate::index::{Entry, View};
use crate::manifest::{self, FILES_DIR, Manifest};
use crate::memory::MemoryGauge;
use crate::meta::{self, LOCK_FILE, STORE_FILE, STORE_FORMAT_V1, STORE_FORMAT_V2};
use crate::scan::ScanOptions;
use crate::sort_key::SortKey;
use crate::stats::{Counters, StoreStats};
use crate::types::{AppendOutcome, OpenReport, Record, ReplicaPosition, StoreOptions};
use crate::wal::record::{self, FRAME_PREFIX_LEN, MAX_PAYLOAD};
use crate::wal::replay::{self, TailPolicy};
use crate::wal::{segment, writer::WalWriter};

/// Where the commit thread answers one queued record.
type Reply = oneshot::Receiver<Result<AppendOutcome, StorageError>>;

/// State shared between the API and the commit thread.
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub schema: SchemaRef,
    pub view: RwLock<View>,
    /// Where the view's records and a flush's working set are counted.
    pub memory: MemoryGauge,
    /// [`StoreOptions::flush_run_bytes`].
    pub flush_run_bytes: u64,
    pub counters: Counters,
    /// What the last committed flush or compaction wrote; held for a whole flush (one at a
    /// time) and for a compaction's plan and commit.
    pub flushed: Mutex<Flushed>,
    /// Held for a whole compaction (one at a time).
    pub compacting: Mutex<()>,
    /// Flushes between their freeze and their end (see `tail`).
    pub flushes_in_flight: std::sync::atomic::AtomicU64,
    /// Set when the store is closed or dropped, which then waits for a flush or compaction in
    /// progress: one still on its way writes nothing (a compaction stops at its next batch),
    /// so nothing touches the directory once its lock is released.
    pub closed: std::sync::atomic::AtomicBool,
    /// Test hook: the flush step after which the next flush stops as if the process died.
    #[cfg(test)]
    pub crash_after: Mutex<Option<crate::flush::CrashPoint>>,
    /// Test hook: the commit thread takes this lock before forming each group.
    #[cfg(test)]
    pub gate: std::sync::Mutex<()>,
    /// Test hook: fail the next group after its bytes were written, as a failed fdatasync.
    #[cfg(test)]
    pub fail_next_sync: std::sync::atomic::AtomicBool,
    /// Test hook: requests queued so far.
    #[cfg(test)]
    pub queued: std::sync::atomic::AtomicU64,
}

/// The committed flush state (what the MANIFEST and STORE say).
pub(crate) struct Flushed {
    pub manifest: Manifest,
    pub store_version: u32,
    pub store_bytes: u64,
    pub manifest_bytes: u64,
}

impl Shared {
    /// The flush state, held against other flushes and compaction commits; refused once the
    /// store is closed (nothing may be written after its directory lock is released).
    pub(crate) fn flushed_if_open(&self) -> Result<MutexGuard<'_, Flushed>, StorageError> {
        let st = self.flushed.lock().unwrap_or_else(PoisonError::into_inner);
        self.check_open()?;
        Ok(st)
    }

    pub(crate) fn check_open(&self) -> Result<(), StorageError> {
        if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StorageError::Closed {
                dir: self.dir.clone(),
            });
        }
        Ok(())
    }
}

impl Flushed {
    /// Bytes of STORE, MANIFEST and the chunk files.
    pub(crate) fn bytes(&self) -> u64 {
        self.store_bytes
            + self.manifest_bytes
            + self.manifest.files.iter().map(|f| f.bytes).sum::<u64>()
    }
}

/// The durable store of one chunk replica (see the crate docs).
///
/// All methods take `&self`; share it with `Arc<ChunkStore>`. Dropping it waits for a flush in
/// progress, stops the commit thread (after the group in progress) and releases the directory
/// lock; [`ChunkStore::close`] does the same without blocking the async runtime.
pub struct ChunkStore {
    shared: Arc<Shared>,
    queue: Option<Sender<Msg>>,
    commit: CommitThread,
    // Held (flock) for the store's lifetime; declared last so it is released last.
    _lock: File,
}

impl std::fmt::Debug for ChunkStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkStore")
            .field("dir", &self.shared.dir)
            .field("position", &self.position())
            .finish_non_exhaustive()
    }
}

fn validate(dir: &Path, opts: &StoreOptions) -> Result<(), StorageError> {
    if opts.segment_bytes == 0 {
        return Err(StorageError::InvalidOptions {
            dir: dir.to_path_buf(),
            detail: "segment_bytes must be > 0".into(),
        });
    }
    Ok(())
}

fn lock(dir: &Path) -> Result<File, StorageError> {
    let path = dir.join(LOCK_FILE);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_err("open lock file", &path))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(TryLockError::WouldBlock) => Err(StorageError::Locked {
            dir: dir.to_path_buf(),
        }),
        Err(TryLockError::Error(e)) => Err(io_err("lock", &path)(e)),
    }
}

/// Every chunk file the manifest lists is there, with its size (O(files) `stat`s).
fn check_files(dir: &Path, m: &Manifest) -> Result<(), StorageError> {
    for f in &m.files {
        let path = dir.join(FILES_DIR).join(&f.name);
        let len = match std::fs::metadata(&path) {
            Ok(md) => md.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StorageError::Corrupt {
                    path,
                    offset: 0,
                    reason: "chunk file listed in MANIFEST is missing".into(),
                });
            }
            Err(e) => return Err(io_err("stat", &path)(e)),
        };
        if len != f.bytes {
            return Err(StorageError::Corrupt {
                path,
                offset: 0,
                reason: format!("chunk file is {len} bytes, MANIFEST says {}", f.bytes),
            });
        }
    }
    Ok(())
}

/// Delete the files in `f/` that the manifest does not list (and leftover temporary files).
fn remove_orphans(dir: &Path, m: Option<&Manifest>) -> Result<u64, StorageError> {
    let files = dir.join(FILES_DIR);
    let entries = match std::fs::read_dir(&files) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err("list directory", &files)(e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(io_err("list directory", &files))?;
        let name = entry.file_name();
        let listed = m.is_some_and(|m| m.files.iter().any(|f| name.to_str() == Some(&f.name)));
        if !listed {
            let path = entry.path();
            tracing::info!(file = %path.display(), "removing chunk file no MANIFEST lists");
            std::fs::remove_file(&path).map_err(io_err("remove", &path))?;
            removed += 1;
        }
    }
    if removed > 0 {
        fsutil::sync_dir(&files)?;
    }
    Ok(removed)
}

pub(crate) async fn blocking<T: Send + 'static>(
    dir: &Path,
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| StorageError::Closed {
            dir: dir.to_path_buf(),
        })?
}

impl ChunkStore {
    /// Create a new, empty store in `dir` (created if missing) for rows of `schema`, in format 1.
    /// Refuses a directory that already holds a store, a MANIFEST or WAL segments. A snapshot
    /// install left next to `dir` is abandoned (deleted): the new store replaces it.
    pub async fn create(
        dir: &Path,
        schema: SchemaRef,
        opts: StoreOptions,
    ) -> Result<Self, StorageError> {
        let d = dir.to_path_buf();
        blocking(dir, move || {
            validate(&d, &opts)?;
            crate::snapshot::discard_before_create(&d)?;
            std::fs::create_dir_all(&d).map_err(io_err("create directory", &d))?;
            let already = || StorageError::AlreadyExists { dir: d.clone() };
            if d.join(STORE_FILE).exists() {
                return Err(already());
            }
            let lock = lock(&d)?;
            if d.join(STORE_FILE).exists()
                || d.join(manifest::MANIFEST_FILE).exists()
                || !segment::list(&d)?.is_empty()
            {
                return Err(already());
            }
            meta::write_store_file(&d, &schema, STORE_FORMAT_V1)?;
            // Keep the caller's Arc so batches built from it skip the schema comparison.
            let (store, _) = Self::open_locked(&d, opts, lock, Some(schema), TailPolicy::Strict)?;
            Ok(store)
        })
        .await
    }

    /// Open an existing store: complete or discard a snapshot install a crash interrupted (see
    /// [`ChunkStore::finish_install`]), read STORE (format 1 or 2) and the MANIFEST if any, delete
    /// chunk files no MANIFEST lists, replay and verify the WAL after the flushed lsn (skipping
    /// segments wholly below it), truncate a torn tail, rebuild the dedup state (from the
    /// MANIFEST's snapshot, then the tail), index and checksum. Cost: the unflushed WAL tail
    /// plus the number of files, not everything stored.
    pub async fn open(dir: &Path, opts: StoreOptions) -> Result<(Self, OpenReport), StorageError> {
        Self::open_with(dir, opts, TailPolicy::Strict).await
    }

    /// Like [`ChunkStore::open`], but a bad record in the **last** segment is cut off together
    /// with everything after it, even when valid records follow (which `open` refuses as
    /// [`StorageError::Corrupt`], since they may have been acknowledged). Use only when an
    /// in-sync peer will refill the dropped lsns (`records_since` / `apply_at`), e.g. after a
    /// power loss with `data_sync = false`. Damage in sealed segments is still an error.
    pub async fn open_discarding_damaged_tail(
        dir: &Path,
        opts: StoreOptions,
    ) -> Result<(Self, OpenReport), StorageError> {
        Self::open_with(dir, opts, TailPolicy::TruncateAtFirstBadRecord).await
    }

    async fn open_with(
        dir: &Path,
        opts: StoreOptions,
        policy: TailPolicy,
    ) -> Result<(Self, OpenReport), StorageError> {
        let d = dir.to_path_buf();
        blocking(dir, move || {
            validate(&d, &opts)?;
            crate::snapshot::recover(&d)?;
            // Check for STORE before taking the lock so a non-store directory is left untouched.
            if !d.join(STORE_FILE).exists() {
                return Err(StorageError::NotFound { dir: d });
            }
            let lock = lock(&d)?;
            Self::open_locked(&d, opts, lock, None, policy)
        })
        .await
    }

    fn open_locked(
        dir: &Path,
        opts: StoreOptions,
        lock: File,
        created_with: Option<SchemaRef>,
        policy: TailPolicy,
    ) -> Result<(Self, OpenReport), StorageError> {
        let (stored, mut store_version) = meta::read_store_file(dir)?;
        let schema = created_with.unwrap_or(stored);
        let store_path = dir.join(STORE_FILE);
        let mut store_bytes = std::fs::metadata(&store_path)
            .map_err(io_err("stat", &store_path))?
            .len();
        fsutil::remove_tmp_files(dir)?;
        let found = manifest::read(dir)?;
        if found.is_none() && store_version >= STORE_FORMAT_V2 {
            // The first flush writes MANIFEST before it raises STORE: this one was lost.
            // Nothing is deleted: the chunk files may be the only copy of their records.
            return Err(StorageError::Corrupt {
                path: dir.join(manifest::MANIFEST_FILE),
                offset: 0,
                reason: "STORE says format 2 but the MANIFEST is missing".into(),
            });
        }
        if let Some((m, _)) = &found {
            check_files(dir, m)?;
        }
        let orphans_removed = remove_orphans(dir, found.as_ref().map(|(m, _)| m))?;
        let (manifest, manifest_bytes) = found.unwrap_or_default();
        if manifest_bytes > 0 && store_version == STORE_FORMAT_V1 {
            // A flush committed its MANIFEST, then stopped before raising STORE: finish it.
            store_bytes = meta::write_store_file(dir, &schema, STORE_FORMAT_V2)?;
            store_version = STORE_FORMAT_V2;
        }
        let flushed_lsn = manifest.flushed_lsn;
        let replayed = replay::replay(dir, &schema, policy, flushed_lsn)?;
        let mut dedup =
            Dedup::restore(&manifest.dedup).map_err(|reason| StorageError::Corrupt {
                path: dir.join(manifest::MANIFEST_FILE),
                offset: 0,
                reason: format!("dedup state: {reason}"),
            })?;
        let mut view = View::flushed(
            flushed_lsn,
            manifest.rows,
            manifest.checksum,
            manifest.files.clone(),
            &opts.memory,
        );
        if flushed_lsn > 0 {
            view.wal_base = manifest.wal_base.map(|[b, c]| (b, c));
        }
        let records = replayed.records.len() as u64;
        for r in replayed.records {
            let h = r.header;
            dedup.insert(h.writer_id, h.seq, h.lsn);
            view.push(
                Entry {
                    lsn: h.lsn,
                    writer_id: h.writer_id,
                    seq: h.seq,
                    batch: r.batch,
                    ipc_len: r.ipc_len,
                },
                h.digest,
            );
        }
        let next_lsn = view.last_lsn() + 1;
        let wal = WalWriter::resume(dir, opts.segment_bytes, &replayed.segments, next_lsn)?;
        let flushed = Flushed {
            store_version,
            store_bytes,
            manifest_bytes,
            manifest,
        };
        view.wal_bytes = wal.bytes_on_disk();
        view.other_bytes = flushed.bytes();
        let report = OpenReport {
            records,
            torn_tail_bytes: replayed.torn_tail_bytes,
            segments: replayed.segments.len() as u64,
            skipped_segments: replayed.skipped_segments,
            flushed_lsn,
            files: flushed.manifest.files.len() as u64,
            orphans_removed,
        };
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            schema,
            view: RwLock::new(view),
            memory: opts.memory.clone(),
            flush_run_bytes: opts.flush_run_bytes,
            counters: Counters::new(opts.on_sync.clone()),
            flushed: Mutex::new(flushed),
            compacting: Mutex::new(()),
            flushes_in_flight: std::sync::atomic::AtomicU64::new(0),
            closed: std::sync::atomic::AtomicBool::new(false),
            #[cfg(test)]
            crash_after: Mutex::new(None),
            #[cfg(test)]
            gate: std::sync::Mutex::new(()),
            #[cfg(test)]
            fail_next_sync: std::sync::atomic::AtomicBool::new(false),
            #[cfg(test)]
            queued: std::sync::atomic::AtomicU64::new(0),
        });
        tracing::info!(
            dir = %dir.display(),
            records,
            flushed_lsn,
            files = report.files,
            writers = dedup.writers(),
            torn_tail_bytes = report.torn_tail_bytes,
            "chunk store opened"
        );
        let (tx, rx) = channel();
        let committer = Committer {
            shared: shared.clone(),
            rx,
            dedup,
            next_lsn,
            wal,
            data_sync: opts.data_sync,
            on_failure: opts.on_failure,
            failed: None,
        };
        let commit = CommitThread::start(committer, opts.commit_idle)?;

        Ok((
            ChunkStore {
                shared,
                queue: Some(tx),
                commit,
                _lock: lock,
            },
            report,
        ))
    }

    /// The chunk's schema (fixed at creation).
    pub fn schema(&self) -> SchemaRef {
        self.shared.schema.clone()
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Append `batch` as `(writer_id, seq)` at the next lsn, group-committed with concurrent
    /// callers. Returns `Duplicate` (writing nothing) if that pair was applied before. A batch
    /// whose columns differ from the chunk schema is refused with
    /// [`StorageError::SchemaMismatch`] before anything is queued.
    ///
    /// If the returned future is dropped after the request was queued, the record may still be
    /// applied: retry with the same `(writer_id, seq)` to learn the outcome.
    pub async fn append(
        &self,
        writer_id: u64,
        seq: u64,
        batch: RecordBatch,
    ) -> Result<AppendOutcome, StorageError> {
        self.submit(Op::Append, writer_id, seq, batch).await
    }

    /// Replication / recovery: apply a record another replica already assigned `lsn` to.
    ///
    /// Duplicates are checked first: if `(writer_id, seq)` is already applied the answer is
    /// `Duplicate { lsn }` whatever `lsn` says (so a resent replication message is harmless).
    /// Otherwise `lsn` must be exactly `last_lsn() + 1`, else [`StorageError::LsnMismatch`]
    /// names the expected lsn and nothing is written.
    pub async fn apply_at(
        &self,
        lsn: u64,
        writer_id: u64,
        seq: u64,
        batch: RecordBatch,
    ) -> Result<AppendOutcome, StorageError> {
        self.submit(Op::ApplyAt(lsn), writer_id, seq, batch).await
    }

    /// Replication / recovery: [`ChunkStore::apply_at`] for records in lsn order, queued
    /// together so they share commit groups (one fdatasync for many records, not one each).
    /// Answers in the same order; the first refusal fails the call (later records were
    /// refused too, their lsns no longer following).
    pub async fn apply_records(
        &self,
        records: Vec<Record>,
    ) -> Result<Vec<AppendOutcome>, StorageError> {
        let mut replies = Vec::with_capacity(records.len());
        for r in records {
            replies.push(self.enqueue(Op::ApplyAt(r.lsn), r.writer_id, r.seq, r.batch)?);
        }
        let mut outcomes = Vec::with_capacity(replies.len());
        for rx in replies {
            outcomes.push(self.reply(rx).await?);
        }
        Ok(outcomes)
    }

    async fn submit(
        &self,
        op: Op,
        writer_id: u64,
        seq: u64,
        batch: RecordBatch,
    ) -> Result<AppendOutcome, StorageError> {
        let rx = self.enqueue(op, writer_id, seq, batch)?;
        self.reply(rx).await
    }

    async fn reply(&self, rx: Reply) -> Result<AppendOutcome, StorageError> {
        rx.await.map_err(|_| StorageError::Closed {
            dir: self.shared.dir.clone(),
        })?
    }

    /// Checks and encodes a record and queues it for the commit thread (in call order).
    fn enqueue(
        &self,
        op: Op,
        writer_id: u64,
        seq: u64,
        batch: RecordBatch,
    ) -> Result<Reply, StorageError> {
        let dir = &self.shared.dir;
        let batch = codec::conform(&self.shared.schema, batch).map_err(|detail| {
            StorageError::SchemaMismatch {
                dir: dir.clone(),
                detail,
            }
        })?;
        let ipc = codec::encode_batch(&batch).map_err(arrow_err("encode batch", dir))?;
        let frame = record::frame_len(ipc.len());
        if frame > MAX_PAYLOAD + FRAME_PREFIX_LEN as u64 {
            return Err(StorageError::RecordTooLarge {
                dir: dir.clone(),
                bytes: frame,
                max: MAX_PAYLOAD + FRAME_PREFIX_LEN as u64,
            });
        }
        let digest = codec::content_digest(&batch, &ipc);
        let (reply, rx) = oneshot::channel();
        self.send(Msg::Append(Request {
            op,
            writer_id,
            seq,
            batch,
            ipc,
            digest,
            reply,
        }))?;
        #[cfg(test)]
        self.shared
            .queued
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(rx)
    }

    /// Send a message to the commit thread, starting it again if it parked.
    pub(crate) fn send(&self, msg: Msg) -> Result<(), StorageError> {
        let closed = || StorageError::Closed {
            dir: self.shared.dir.clone(),
        };
        self.queue
            .as_ref()
            .ok_or_else(closed)?
            .send(msg)
            .map_err(|_| closed())?;
        self.commit.wake()
    }

    /// Whether the commit thread is running (it parks when idle).
    #[cfg(test)]
    pub(crate) fn commit_thread_running(&self) -> bool {
        self.commit.running()
    }

    /// Commit threads started since open (tests).
    #[cfg(test)]
    pub(crate) fn commit_thread_starts(&self) -> u64 {
        self.commit.starts()
    }

    pub(crate) fn view(&self) -> std::sync::RwLockReadGuard<'_, View> {
        self.shared
            .view
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Highest applied lsn (0 for an empty store). Lsns are dense: 1..=last_lsn.
    pub fn last_lsn(&self) -> u64 {
        self.view().last_lsn()
    }

    /// Rows held.
    pub fn row_count(&self) -> u64 {
        self.view().position().rows
    }

    /// Content checksum: equal on two replicas holding the same records at the same lsns.
    /// A chain over records in lsn order of `(lsn, writer_id, seq, digest of the rows' values)`;
    /// the digest is of logical content, so it does not depend on how a batch was laid out in
    /// memory or encoded. 0 for an empty store.
    pub fn checksum(&self) -> u64 {
        self.view().position().checksum
    }

    /// The checksum the replica had right after `lsn` (0 for lsn 0); `None` if `lsn` is past
    /// `last_lsn()`. Two replicas with equal `checksum_at(n)` hold the same records 1..=n, so a
    /// replica that diverged from its primary is told apart from one that is only behind.
    ///
    /// After a flush the chain of checksums below the flushed lsn is dropped with the records:
    /// the answer is then known for lsn 0 and for `flushed_lsn()..=last_lsn()` only, `None`
    /// below (see the crate docs: a caller must not flush past what its replicas hold).
    pub fn checksum_at(&self, lsn: u64) -> Option<u64> {
        self.view().checksum_at(lsn)
    }

    /// Like [`ChunkStore::checksum_at`], but below the flushed lsn the answer is chained from
    /// the headers of the records still in the WAL (read from disk, batches skipped), so a
    /// replica that is only behind is told apart from a diverged one as long as the WAL holds
    /// its position. `None` below the oldest WAL segment kept (see
    /// [`ChunkStore::truncate_wal`]) or past `last_lsn()`.
    pub async fn checksum_at_retained(&self, lsn: u64) -> Result<Option<u64>, StorageError> {
        let (base, wal_base) = {
            let v = self.view();
            if let Some(c) = v.checksum_at(lsn) {
                return Ok(Some(c));
            }
            (v.base(), v.wal_base)
        };
        let Some((b, c)) = wal_base.filter(|&(b, _)| b <= lsn && lsn < base) else {
            return Ok(None);
        };
        let dir = self.shared.dir.clone();
        blocking(&self.shared.dir, move || {
            crate::wal::read::chain_through(&dir, b, c, lsn)
        })
        .await
    }

    /// `last_lsn`, `row_count` and `checksum` read together (consistent with each other).
    pub fn position(&self) -> ReplicaPosition {
        self.view().position()
    }

    /// Records with lsn > `after`, in lsn order, for incremental catch-up of a stale replica.
    /// Stops before the record that would take the total Arrow IPC size past `max_bytes`, but
    /// always returns at least one record if there is any. Empty when `after >= last_lsn()`.
    ///
    /// Records after the flushed lsn come from memory; flushed ones are read back from the WAL
    /// segments on disk. Once [`ChunkStore::truncate_wal`] deleted the segment holding
    /// `after + 1`, the answer is [`StorageError::BelowRetainedLog`]: copy the replica whole.
    pub async fn records_since(
        &self,
        after: u64,
        max_bytes: usize,
    ) -> Result<Vec<Record>, StorageError> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut next = after;
        loop {
            let base = {
                let v = self.view();
                if next >= v.base() {
                    v.since(next, max_bytes, &mut out, &mut bytes);
                    return Ok(out);
                }
                v.base()
            };
            let (dir, schema) = (self.shared.dir.clone(), self.shared.schema.clone());
            let (o, b) = blocking(&self.shared.dir, move || {
                crate::wal::read::records_between(
                    &dir, &schema, next, base, max_bytes, &mut out, &mut bytes,
                )?;
                Ok((out, bytes))
            })
            .await?;
            (out, bytes) = (o, b);
            if out.last().map_or(next, |r| r.lsn) < base {
                return Ok(out); // stopped by max_bytes
            }
            // A flush may have moved the flushed lsn meanwhile: look again from `base`.
            next = base;
        }
    }

    /// The rows of records up to lsn `last` (`u64::MAX`: all), every column, collected:
    /// [`ChunkStore::scan_stream`] of a table keeping every row.
    pub async fn scan(&self, last: u64) -> Result<Vec<RecordBatch>, StorageError> {
        self.scan_keeping(last, &SortKey::default()).await
    }

    /// The rows a table with `sort_key` holds, of records up to lsn `last`, every column,
    /// collected ([`ChunkStore::scan_stream`]): with `keepDuplicates` FIRST or LAST, the first
    /// or last row written of each key, in key order. Flushes and compactions drop duplicates
    /// only among the records they meet, so until one file holds everything a key's rows may
    /// sit in several files and in memory, and the scan merges them all (the files and the
    /// sorted in-memory rows, `merge.rs`) to answer as if every duplicate were gone.
    pub async fn scan_keeping(
        &self,
        last: u64,
        sort_key: &SortKey,
    ) -> Result<Vec<RecordBatch>, StorageError> {
        let batches = self.scan_stream(last, sort_key, ScanOptions::default())?;
        blocking(&self.shared.dir, move || batches.collect()).await
    }

    /// Bytes of the store's files (STORE, MANIFEST, chunk files and WAL segments).
    pub fn bytes_on_disk(&self) -> u64 {
        self.view().bytes_on_disk()
    }

    /// The flushed lsn: records up to it are in chunk files, not in memory (0: never flushed).
    pub fn flushed_lsn(&self) -> u64 {
        self.view().base()
    }

    /// Records held in memory (those after the flushed lsn), for a flush policy.
    pub fn unflushed_records(&self) -> u64 {
        self.view().in_memory() as u64
    }

    /// What the batches of the records held in memory keep allocated (each distinct buffer
    /// allocation once), for a flush policy; also counted in [`StoreOptions::memory`].
    pub fn unflushed_bytes(&self) -> u64 {
        self.view().in_memory_bytes()
    }

    /// Counters since open (fsyncs, groups, duplicates, ...).
    pub fn stats(&self) -> StoreStats {
        self.shared.counters.snapshot()
    }

    #[cfg(test)]
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    pub(crate) fn shared_arc(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Stop the commit thread (after the group in progress) and release the directory.
    pub async fn close(self) -> Result<(), StorageError> {
        let dir = self.shared.dir.clone();
        tokio::task::spawn_blocking(move || drop(self))
            .await
            .map_err(|_| StorageError::Closed { dir })
    }
}

/// Make any later flush or compaction write nothing, stop a compaction at its next batch,
/// and wait for what is in progress.
fn stop_flushes(shared: &Shared) {
    shared
        .closed
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let _compaction = shared
        .compacting
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let _flush = shared
        .flushed
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
}

impl Drop for ChunkStore {
    fn drop(&mut self) {
        drop(self.queue.take());
        // A flush in progress finishes first (its blocking task holds the flush lock).
        stop_flushes(&self.shared);
        // The thread finishes what is queued (at most one write + fdatasync) and exits.
        self.commit.stop();
    }
}
