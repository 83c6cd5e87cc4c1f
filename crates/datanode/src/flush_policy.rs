//! When a replica's rows move from memory into a chunk file (storage format 2): once the
//! cluster version allows the format (after `shoal upgrade --finalize`, or from the start on a
//! cluster this release created), a replica is flushed when it holds a chunk-file's worth of
//! rows in memory, when it has had no append for `flushIdleTime`, and, largest first, when the
//! node's rows in memory exceed `TSDBCacheEngineSize`. One flush at a time per node.
//!
//! A primary flushes only what every other in-sync replica already holds; another replica
//! flushes all it holds (every record of it came from the primary, which has it too).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_common::version::CHUNK_FILES_CLUSTER_VERSION;
use tokio::sync::watch;

use crate::node::Node;
use crate::primary::is_primary;

/// How often replicas are looked at.
const TICK: Duration = Duration::from_secs(1);
/// Rows in memory (bytes of their batches) that make one replica's file worth writing now.
const CHUNK_FILE_BYTES: u64 = 64 << 20;

#[derive(Clone, Copy, Debug)]
pub struct FlushPolicy {
    /// `TSDBCacheEngineSize`: rows in memory above it are flushed, largest replica first.
    pub budget_bytes: u64,
    /// `flushIdleTime`.
    pub idle: Duration,
}

/// A replica as the policy last saw it.
struct Seen {
    last_lsn: u64,
    since: Instant,
}

pub async fn run(node: Arc<Node>, policy: FlushPolicy, mut stop: watch::Receiver<bool>) {
    let mut seen: HashMap<u64, Seen> = HashMap::new();
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(TICK) => {}
        }
        if *node.cluster_version.borrow() < CHUNK_FILES_CLUSTER_VERSION {
            continue;
        }
        for id in due(&node, &policy, &mut seen, Instant::now()) {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                () = flush(&node, id) => {}
            }
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
        let s = seen.entry(id).or_insert(Seen {
            last_lsn,
            since: now,
        });
        if s.last_lsn != last_lsn {
            *s = Seen {
                last_lsn,
                since: now,
            };
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
        if total <= policy.budget_bytes {
            break;
        }
        due.push(id);
        total -= bytes;
    }
    due
}

async fn flush(node: &Node, id: u64) {
    let Some(chunk) = node.catalog.snapshot().chunks.get(&id).cloned() else {
        return; // not in the catalog yet, or dropped: nothing to sort it by
    };
    let Some(table) = node.catalog.table_of(&chunk) else {
        return;
    };
    let Some(store) = node.replicas.get(id) else {
        return;
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
    match node.replicas.flush(id, through, &table.sort_key()).await {
        Ok(Some(r)) if r.records > 0 => tracing::info!(
            "chunk {id}: flushed {} records ({} rows) through lsn {} to a {} byte file in {:?}",
            r.records,
            r.rows,
            r.flushed_lsn,
            r.file_bytes,
            started.elapsed()
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("chunk {id}: flush failed: {e}"),
    }
}
