//! When a replica's rows move from memory into a chunk file (storage format 2): once the
//! cluster version allows the format (after `shoal upgrade --finalize`, or from the start on a
//! cluster this release created), a replica is flushed when it holds a chunk-file's worth of
//! rows in memory, when it has had no append for `flushIdleTime`, and, largest first, when the
//! node's rows in memory exceed half of `TSDBCacheEngineSize` (the policy wakes as soon as they
//! cross it). One flush at a time per node; a flush writes runs of at most
//! [`shoal_storage::StoreOptions::flush_run_bytes`] each, so its working set stays small.
//!
//! What counts is what the stores hold ([`MemoryGauge`]): the allocations of the batches of
//! the records not yet flushed and the working set of the flush in progress.
//!
//! A primary flushes only what every other in-sync replica already holds; another replica
//! flushes all it holds (every record of it came from the primary, which has it too).
//!
//! After each flush the replica's WAL is truncated through the flushed lsn (whole sealed
//! segments only, see [`shoal_storage::ChunkStore::truncate_wal`]), so the WAL holds nothing
//! every in-sync replica already has in files: on a primary that is all it flushed (no more
//! than every in-sync replica holds); on another replica all it flushed, which it can lose
//! only by being copied again (`snapshot`). A replica that is out of sync and behind what is
//! left of its primary's WAL is copied whole; record catch-up serves the rest.
//!
//! Compaction, in the background, one replica at a time per node, with flushes going on: a
//! replica with a run of [`shoal_storage::COMPACT_MIN_FILES`] files of one level (e.g. 8
//! flushes since the last merge) has them merged into one a level up; a replica idle for
//! [`COLD_IDLE`] × `flushIdleTime` with more than one file is merged into one file, once (a
//! cold partition). After a failed compaction a replica is not compacted again until it is
//! written again.
//!
//! When flushes fall behind, [`MemoryBudget::admit`] holds new appends at their primary while
//! the node's counted memory is above the budget, and refuses them if that lasts
//! (RESOURCE_EXHAUSTED with [`Reason::MemoryFull`], which the coordinator passes on to the
//! client as UNAVAILABLE, to retry, without failing the primary over): memory stays bounded
//! instead of growing until the node is killed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_common::version::CHUNK_FILES_CLUSTER_VERSION;
use shoal_proto::Reason;
use shoal_storage::{Compaction, MemoryGauge};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::Status;

use crate::node::{Node, sort_key};
use crate::primary::is_primary;

/// How often replicas are looked at.
const TICK: Duration = Duration::from_secs(1);
/// Rows in memory (bytes of their batches) that make one replica's file worth writing now.
const CHUNK_FILE_BYTES: u64 = 64 << 20;
/// A replica idle for this many `flushIdleTime`s is cold: all its files are merged, once.
const COLD_IDLE: u32 = 10;

#[derive(Clone, Copy, Debug)]
pub struct FlushPolicy {
    /// `flushIdleTime`.
    pub idle: Duration,
}

/// The node's stores' memory (rows not yet in chunk files, flushes in progress) against
/// `TSDBCacheEngineSize` (nothing is freed while chunk files are not allowed).
pub struct MemoryBudget {
    /// Appends are held above it.
    pub limit: u64,
    gauge: MemoryGauge,
    /// Longest an append is held before it is refused.
    hold: Duration,
}

/// How long an append waits for flushes to make room before it is refused.
const HOLD: Duration = Duration::from_secs(2);

impl MemoryBudget {
    pub fn new(limit: u64) -> Self {
        Self::with_hold(limit, HOLD)
    }

    fn with_hold(limit: u64, hold: Duration) -> Self {
        let gauge = MemoryGauge::default();
        gauge.set_mark(limit / 2);
        Self { limit, gauge, hold }
    }

    /// What the stores count their memory in: open every store with it.
    pub fn gauge(&self) -> &MemoryGauge {
        &self.gauge
    }

    /// Rows in memory above this are flushed, largest replica first.
    fn flush_mark(&self) -> u64 {
        self.limit / 2
    }

    fn over(&self) -> Option<u64> {
        let bytes = self.gauge.bytes();
        (bytes > self.limit).then_some(bytes)
    }

    /// Lets an append through at once unless the node's counted memory is above the budget;
    /// then waits up to [`HOLD`] for flushes to bring it down, and refuses it
    /// ([`Reason::MemoryFull`]) if they do not.
    pub async fn admit(&self, alias: &str) -> Result<(), Status> {
        let deadline = tokio::time::Instant::now() + self.hold;
        while let Some(bytes) = self.over() {
            let freed = self.gauge.freed();
            if self.over().is_none() {
                break;
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(
                    Reason::MemoryFull.attach(Status::resource_exhausted(format!(
                        "data node {alias} holds {} MiB of rows not yet flushed to chunk files \
                         and flushes in progress, over TSDBCacheEngineSize ({} MiB); retry \
                         shortly",
                        bytes >> 20,
                        self.limit >> 20
                    ))),
                );
            }
        }
        Ok(())
    }
}

/// A replica as the policy last saw it.
struct Seen {
    last_lsn: u64,
    since: Instant,
    /// Not compacted again until written again: merged whole, or a compaction of it failed
    /// (retrying at every tick would read the same files again and again).
    compaction_paused: bool,
}

impl Seen {
    fn new(last_lsn: u64, now: Instant) -> Self {
        Seen {
            last_lsn,
            since: now,
            compaction_paused: false,
        }
    }
}

pub async fn run(node: Arc<Node>, policy: FlushPolicy, stop: watch::Receiver<bool>) {
    let mut compaction = None;
    flush_and_compact(&node, &policy, stop, &mut compaction).await;
    // Its store stops the merge at the next batch once closed.
    if let Some(c) = compaction {
        c.abort();
    }
}

async fn flush_and_compact(
    node: &Arc<Node>,
    policy: &FlushPolicy,
    mut stop: watch::Receiver<bool>,
    compaction: &mut Option<JoinHandle<Option<u64>>>,
) {
    let mut seen: HashMap<u64, Seen> = HashMap::new();
    let mut flushed = false;
    loop {
        // Straight on while flushes make progress and still lag behind the mark.
        if !flushed || node.memory.gauge().bytes() <= node.memory.flush_mark() {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(TICK) => {}
                () = node.memory.gauge().above_mark() => {}
            }
        } else if *stop.borrow() {
            return;
        }
        if *node.cluster_version.borrow() < CHUNK_FILES_CLUSTER_VERSION {
            continue;
        }
        flushed = false;
        for id in due(node, policy, &mut seen, Instant::now()) {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                moved = flush(node, id) => flushed |= moved,
            }
        }
        if compaction.as_ref().is_some_and(JoinHandle::is_finished)
            && let Some(done) = compaction.take()
            && let Ok(Some(failed)) = done.await
            && let Some(s) = seen.get_mut(&failed)
        {
            s.compaction_paused = true;
        }
        if compaction.is_none()
            && let Some((id, how)) = compaction_due(node, policy, &mut seen, Instant::now())
        {
            let node = node.clone();
            *compaction = Some(tokio::spawn(async move { compact(&node, id, how).await }));
        }
    }
}

/// The replicas to flush now, in order.
fn due(node: &Node, policy: &FlushPolicy, seen: &mut HashMap<u64, Seen>, now: Instant) -> Vec<u64> {
    let mut in_memory: Vec<(u64, u64)> = Vec::new(); // (bytes, id)
    let mut due = Vec::new();
    let ids = node.replicas.ids();
    seen.retain(|id, _| ids.contains(id));
    for id in ids {
        let Some(store) = node.replicas.get(id) else {
            continue;
        };
        let last_lsn = store.last_lsn();
        let s = seen.entry(id).or_insert_with(|| Seen::new(last_lsn, now));
        if s.last_lsn != last_lsn {
            *s = Seen::new(last_lsn, now);
        }
        let bytes = store.unflushed_bytes();
        if store.unflushed_records() == 0 {
            continue;
        }
        if bytes >= CHUNK_FILE_BYTES || now.duration_since(s.since) >= policy.idle {
            due.push(id);
        } else {
            in_memory.push((bytes, id));
        }
    }
    let mut total: u64 = in_memory.iter().map(|(b, _)| b).sum();
    in_memory.sort_unstable_by(|a, b| b.cmp(a));
    for (bytes, id) in in_memory {
        if total <= node.memory.flush_mark() {
            break;
        }
        due.push(id);
        total -= bytes;
    }
    due
}

/// The replica to compact next, among those not paused: one with a run of files due, else a
/// cold one with more than one file (paused now: merged once).
fn compaction_due(
    node: &Node,
    policy: &FlushPolicy,
    seen: &mut HashMap<u64, Seen>,
    now: Instant,
) -> Option<(u64, Compaction)> {
    let tiered = seen.iter().find(|&(&id, s)| {
        !s.compaction_paused
            && node
                .replicas
                .get(id)
                .is_some_and(|store| store.compaction_due())
    });
    if let Some((&id, _)) = tiered {
        return Some((id, Compaction::Tiered));
    }
    let (&id, s) = seen.iter_mut().find(|(id, s)| {
        !s.compaction_paused
            && now.duration_since(s.since) >= policy.idle * COLD_IDLE
            && node
                .replicas
                .get(**id)
                .is_some_and(|store| store.file_count() > 1)
    })?;
    s.compaction_paused = true;
    Some((id, Compaction::All))
}

/// Compacts replica `id`; returns it if that failed.
async fn compact(node: &Node, id: u64, how: Compaction) -> Option<u64> {
    let chunk = node.catalog.chunk(id)?;
    let table = node.catalog.table_of(&chunk)?;
    let started = Instant::now();
    match node.replicas.compact(id, &sort_key(&table), how).await {
        Ok(Some(r)) if r.inputs > 0 => {
            node.metrics.compacted(Ok(r.input_bytes), started.elapsed());
            tracing::info!(
                "chunk {id}: merged {} files ({} bytes) into a level-{} file of {} rows, {} bytes, \
             in {:?}; {} files now",
                r.inputs,
                r.input_bytes,
                r.level,
                r.rows,
                r.file_bytes,
                started.elapsed(),
                r.files
            )
        }
        Ok(_) => {}
        Err(e) => {
            node.metrics.compacted(Err(()), started.elapsed());
            tracing::warn!("chunk {id}: compaction failed: {e}");
            return Some(id);
        }
    }
    None
}

/// Flushes replica `id` as far as it may; answers whether any record left memory.
async fn flush(node: &Node, id: u64) -> bool {
    let Some(chunk) = node.catalog.chunk(id) else {
        return false; // not in the catalog yet, or dropped: nothing to sort it by
    };
    let Some(table) = node.catalog.table_of(&chunk) else {
        return false;
    };
    let Some(store) = node.replicas.get(id) else {
        return false;
    };
    let through = if is_primary(node, &chunk) {
        node.links
            .held_by_all(&chunk, &node.alias)
            .min(store.last_lsn())
    } else {
        store.last_lsn()
    };
    drop(store);
    let started = Instant::now();
    match node.replicas.flush(id, through, &sort_key(&table)).await {
        Ok(Some(r)) if r.records > 0 => {
            node.metrics.flushed(Ok(r.file_bytes), started.elapsed());
            tracing::info!(
                "chunk {id}: flushed {} records ({} rows) through lsn {} to {} files of {} bytes \
                 in {:?}",
                r.records,
                r.rows,
                r.flushed_lsn,
                r.files.len(),
                r.file_bytes,
                started.elapsed()
            );
            truncate_wal(node, id, r.flushed_lsn).await;
            true
        }
        Ok(_) => false,
        Err(e) => {
            node.metrics.flushed(Err(()), started.elapsed());
            tracing::warn!("chunk {id}: flush failed: {e}");
            false
        }
    }
}

/// Deletes replica `id`'s WAL segments wholly at or below `flushed` (see the module docs).
async fn truncate_wal(node: &Node, id: u64, flushed: u64) {
    match node.replicas.truncate_wal(id, flushed).await {
        Ok(Some(first)) if first > 1 => {
            tracing::debug!("chunk {id}: WAL truncated, it holds lsn {first} on");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("chunk {id}: WAL truncation failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn appends_pass_up_to_the_budget_wait_above_it_and_are_refused_if_it_lasts() {
        let budget = MemoryBudget::with_hold(100, Duration::from_millis(300));
        let mut held = budget.gauge().charge(100);
        budget.admit("node1").await.unwrap();

        held.add(1);
        let started = Instant::now();
        let err = budget.admit("node1").await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        assert_eq!(Reason::of(&err), Some(Reason::MemoryFull));
        assert!(
            err.message().contains("TSDBCacheEngineSize"),
            "{}",
            err.message()
        );
        assert!(started.elapsed() >= Duration::from_millis(300));

        // A flush giving memory back lets the held append through before the deadline.
        let freeing = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            held.release(51);
            held
        });
        let started = Instant::now();
        budget.admit("node1").await.unwrap();
        assert!(started.elapsed() < Duration::from_millis(300));
        assert_eq!(freeing.await.unwrap().bytes(), 50);
    }
}
