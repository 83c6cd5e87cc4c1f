//! Replication from a chunk's primary to its other replicas, and recovery of those that fell
//! behind — one mechanism for both.
//!
//! For every chunk it is primary of, this node runs a [`Link`] task per other replica. The
//! task learns where the replica stands, ships the records it lacks in lsn order (pages of
//! [`PAGE_BYTES`]) and, for a replica in sync, publishes the highest lsn it holds so appends
//! waiting for it can be acknowledged. When an in-sync replica cannot be written, the task takes
//! it out of the in-sync set through the controller (compare-and-set on the chunk version)
//! *before* waiting appends are released: an acknowledged append is on every replica the
//! controller lists as in sync (invariant 1).
//!
//! A replica out of sync is caught up while writes go on; once it holds everything, the task
//! pauses the chunk's appends (the chunk lock, see [`Links::chunk_lock`]), ships the last few
//! records and commits the replica back into the in-sync set, then appends resume and wait for
//! it again. A replica whose checksum at its own last lsn differs from the primary's there
//! diverged (it holds records no in-sync replica has: writes that were never acknowledged): it
//! is cut back to the prefix it shares with the primary and caught up from there
//! (`common_prefix`), or, when the records to cut are in its chunk files, rebuilt: by a copy of
//! the primary's chunk files (`snapshot`) when the primary has flushed and the cluster version
//! allows chunk files, else from empty. A replica behind the primary's
//! retained WAL (truncated below what every in-sync replica holds in files, see
//! `flush_policy`) is copied the same way; either way the records after the copy follow here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_client::channel::AuthChannel;
use shoal_client::liveness::watched;
use shoal_proto::data_node_client::DataNodeClient;
use shoal_proto::{
    ApplyRecordsRequest, ChunkInfo, ReplicaInfo, ReplicaPositionRequest, ReplicaRecord,
    UpdateReplicasRequest,
};
use shoal_storage::{ChunkStore, Record, StorageError};
use tokio::sync::{Notify, RwLock, watch};
use tonic::{Code, Status};

use crate::catalog_cache::primary;
use crate::error::storage_status;
use crate::node::Node;

/// Upper bound of one catch-up page (Arrow IPC bytes).
pub const PAGE_BYTES: usize = 4 << 20;
/// How long an append waits for a replica before it is answered ABORTED (the client retries).
const REPLICATION_WAIT: Duration = Duration::from_secs(10);
/// Deadline of one call to a replica that keeps answering health probes: past it the replica
/// counts as unreachable. One that stops answering does within a second ([`watched`]).
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// A link with nothing to do re-checks the chunk this often.
const IDLE_TICK: Duration = Duration::from_secs(1);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Longest the chunk's appends are paused to ship the last records to a rejoining replica and
/// check what it holds (the in-sync change that follows is settled however long it takes).
const REJOIN_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, Default)]
struct LinkState {
    /// Highest lsn the replica is known to hold (while in sync).
    acked: u64,
    /// The chunk version at which the replica was taken out of the in-sync set by a committed
    /// change (0: never). An append decided at an older version may then go on without it.
    removed_at: u64,
    /// The task ended (this node is no longer the chunk's primary).
    stopped: bool,
}

pub struct Link {
    state: watch::Sender<LinkState>,
    wake: Notify,
}

pub struct Links {
    links: Mutex<HashMap<(u64, String), Arc<Link>>>,
    chunk_locks: Mutex<HashMap<u64, Arc<RwLock<()>>>>,
    failover_locks: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<()>>>>,
    /// Rejoins in flight (see `rejoin`).
    rejoins: tokio::sync::Semaphore,
}

/// Rejoins one node commits at once. A machine back from a restart has every replica caught
/// up within a moment, and each rejoin holds its chunk's appends paused until its commit: with
/// all of them in flight at once (667 on the 1,000-chunk bench) the controllers' queue made a
/// writer's append wait 130-180 ms; a short queue keeps that wait to a few commits.
const REJOIN_PARALLELISM: usize = 8;

impl Default for Links {
    fn default() -> Self {
        Self {
            links: Mutex::default(),
            chunk_locks: Mutex::default(),
            failover_locks: Mutex::default(),
            rejoins: tokio::sync::Semaphore::new(REJOIN_PARALLELISM),
        }
    }
}

impl Links {
    /// Appends hold it shared from their local write until their acknowledgement; a rejoin
    /// holds it exclusively, so the in-sync set an append waits for cannot grow under it.
    pub fn chunk_lock(&self, chunk_id: u64) -> Arc<RwLock<()>> {
        self.chunk_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(chunk_id)
            .or_default()
            .clone()
    }

    /// Held by a coordinator while it deposes the chunk's primary (one failover at a time).
    pub fn failover_lock(&self, chunk_id: u64) -> Arc<tokio::sync::Mutex<()>> {
        self.failover_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(chunk_id)
            .or_default()
            .clone()
    }

    /// The running link to `peer` for a chunk this node is primary of; started if needed.
    pub fn link(&self, node: &Arc<Node>, chunk_id: u64, peer: &str) -> Arc<Link> {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        let key = (chunk_id, peer.to_owned());
        if let Some(l) = links.get(&key) {
            return l.clone();
        }
        let link = Arc::new(Link {
            state: watch::channel(LinkState::default()).0,
            wake: Notify::new(),
        });
        links.insert(key, link.clone());
        tokio::spawn(run(node.clone(), chunk_id, peer.to_owned(), link.clone()));
        link
    }

    /// The highest lsn every other in-sync replica of `chunk` is known to hold, this node being
    /// its primary (`u64::MAX` when there is no other; 0 while one is not known yet).
    pub fn held_by_all(&self, chunk: &ChunkInfo, me: &str) -> u64 {
        let links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        chunk
            .replicas
            .iter()
            .filter(|r| r.in_sync && r.node != me)
            .map(|r| {
                links
                    .get(&(chunk.id, r.node.clone()))
                    .map_or(0, |l| l.state.borrow().acked)
            })
            .min()
            .unwrap_or(u64::MAX)
    }

    fn forget(&self, chunk_id: u64, peer: &str, link: &Arc<Link>) {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        let key = (chunk_id, peer.to_owned());
        if links.get(&key).is_some_and(|l| Arc::ptr_eq(l, link)) {
            links.remove(&key);
        }
    }

    /// Starts links for every replica of every chunk this node is primary of (so replicas
    /// that fell behind are caught up even when nobody writes).
    pub fn sweep(&self, node: &Arc<Node>) {
        let snapshot = node.catalog.snapshot();
        for chunk in snapshot.chunks.values() {
            if primary(chunk).is_some_and(|p| p.node == node.alias) {
                for r in chunk.replicas.iter().filter(|r| r.node != node.alias) {
                    self.link(node, chunk.id, &r.node);
                }
            }
        }
    }
}

/// Waits until the replica behind `link` holds `lsn`, or was taken out of the in-sync set after
/// `version` (the chunk version the append chose its replicas by).
pub async fn wait_replicated(link: &Link, lsn: u64, version: u64) -> Result<(), Status> {
    let mut rx = link.state.subscribe();
    link.wake.notify_one();
    let released = move |s: &LinkState| s.acked >= lsn || s.removed_at > version;
    let done = move |s: &LinkState| released(s) || s.stopped;
    match tokio::time::timeout(REPLICATION_WAIT, rx.wait_for(done)).await {
        Ok(Ok(s)) if released(&s) => Ok(()),
        Ok(_) => Err(Status::aborted(
            "this node stopped being the chunk's primary during the write; retry",
        )),
        Err(_) => Err(Status::aborted(format!(
            "a replica did not confirm the write within {REPLICATION_WAIT:?}; retry"
        ))),
    }
}

enum Step {
    /// Something was shipped or changed: go again at once.
    Progress,
    /// The replica holds everything and is in sync.
    Idle,
}

async fn run(node: Arc<Node>, chunk_id: u64, peer: String, link: Arc<Link>) {
    let mut peer_lsn: Option<u64> = None;
    let mut seen_version = 0;
    let mut backoff = MIN_BACKOFF;
    while let Some(chunk) = node.catalog.chunk(chunk_id) {
        if primary(&chunk).is_none_or(|p| p.node != node.alias) {
            break;
        }
        if chunk.version != seen_version {
            // The replica may have restarted meanwhile (that is one reason the version moves)
            // and lost what it held: ask where it stands before relying on it, above all
            // before putting it back in sync.
            peer_lsn = None;
            seen_version = chunk.version;
        }
        let Some(replica) = chunk.replicas.iter().find(|r| r.node == peer).cloned() else {
            break;
        };
        if !replica.in_sync {
            // Taken out of the in-sync set (by us, or by itself when draining) at or before
            // this version: appends decided at an older one no longer wait for it.
            link.state.send_if_modified(|s| {
                let newer = chunk.version > s.removed_at;
                s.removed_at = s.removed_at.max(chunk.version);
                newer
            });
        }
        let store = match node.store(&chunk).await {
            Ok(store) => store,
            Err(e) => {
                // Our own side failed, not the replica: never a reason to remove it.
                tracing::warn!("chunk {chunk_id}: local store: {}", e.message());
                tokio::time::sleep(MAX_BACKOFF).await;
                continue;
            }
        };
        match step(&node, &link, &chunk, &replica, &store, &mut peer_lsn).await {
            Ok(Step::Progress) => backoff = MIN_BACKOFF,
            Ok(Step::Idle) => {
                backoff = MIN_BACKOFF;
                tokio::select! {
                    _ = link.wake.notified() => {}
                    _ = tokio::time::sleep(IDLE_TICK) => {}
                }
            }
            Err(e) if e.code() == Code::OutOfRange => peer_lsn = None, // ask where it stands
            Err(e) if e.code() == Code::Aborted => {
                // Our chunk metadata is older than the replica's: refresh, decide again (at
                // once if the chunk moved on: appends may be waiting on what it shows).
                peer_lsn = None;
                let _ = node.catalog.refresh().await;
                if node
                    .catalog
                    .chunk(chunk_id)
                    .is_some_and(|c| c.version == chunk.version)
                {
                    tokio::time::sleep(MIN_BACKOFF).await;
                }
            }
            Err(e) => {
                peer_lsn = None;
                if replica.in_sync {
                    tracing::warn!(
                        "chunk {chunk_id}: replica on {peer} failed ({}); taking it out of the in-sync set",
                        e.message()
                    );
                    if let Ok(at) = remove_from_in_sync(&node, &chunk, &peer).await {
                        link.state
                            .send_modify(|s| s.removed_at = s.removed_at.max(at));
                    }
                } else {
                    tracing::debug!("chunk {chunk_id}: catch-up of {peer}: {}", e.message());
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    link.state.send_modify(|s| s.stopped = true);
    node.links.forget(chunk_id, &peer, &link);
}

async fn step(
    node: &Arc<Node>,
    link: &Link,
    chunk: &ChunkInfo,
    replica: &ReplicaInfo,
    store: &ChunkStore,
    peer_lsn: &mut Option<u64>,
) -> Result<Step, Status> {
    let lsn = match *peer_lsn {
        Some(lsn) => lsn,
        // Cut short if the replica stops answering. Safe at any point: a removal it started is
        // found in the catalog later, a reset is asked for again.
        None => {
            let mut client = node.data_node(&replica.addr)?;
            let handshake = handshake(node, link, chunk, replica, store, &mut client);
            match watched(&node.channels, &replica.addr, handshake).await? {
                Some(lsn) => lsn,
                None => return Ok(Step::Progress),
            }
        }
    };
    *peer_lsn = Some(lsn);
    publish(link, replica, lsn);
    if lsn < store.last_lsn() {
        let held = match store.records_since(lsn, PAGE_BYTES).await {
            Ok(records) => ship(node, replica, chunk, records).await?,
            Err(StorageError::BelowRetainedLog { first_retained, .. }) => {
                tracing::info!(
                    "chunk {}: the replica on {} is at lsn {lsn}, below the retained WAL (from \
                     lsn {first_retained}); copying the chunk files",
                    chunk.id,
                    replica.node
                );
                crate::snapshot::send(node, replica, chunk, store)
                    .await?
                    .ok_or_else(|| {
                        Status::failed_precondition(format!(
                            "chunk {}: the replica on {} needs records the WAL no longer holds \
                             and takes no snapshots",
                            chunk.id, replica.node
                        ))
                    })?
            }
            Err(e) => return Err(storage_status(e)),
        };
        *peer_lsn = Some(held);
        publish(link, replica, held);
        return Ok(Step::Progress);
    }
    if !replica.in_sync {
        rejoin(node, link, chunk, replica, store, lsn).await?;
        *peer_lsn = None;
        return Ok(Step::Progress);
    }
    Ok(Step::Idle)
}

fn publish(link: &Link, replica: &ReplicaInfo, lsn: u64) {
    if replica.in_sync {
        link.state.send_if_modified(|s| {
            let newer = lsn > s.acked;
            s.acked = s.acked.max(lsn);
            newer
        });
    }
}

/// Where the replica stands: its last lsn if it holds a prefix of this primary's records.
/// A replica that diverged is taken out of the in-sync set (if it is in it) and reset; `None`
/// then means "look again".
async fn handshake(
    node: &Arc<Node>,
    link: &Link,
    chunk: &ChunkInfo,
    replica: &ReplicaInfo,
    store: &ChunkStore,
    client: &mut DataNodeClient<AuthChannel>,
) -> Result<Option<u64>, Status> {
    let ask = |reset| ReplicaPositionRequest {
        chunk_id: chunk.id,
        chunk_version: chunk.version,
        reset,
        ..Default::default()
    };
    let p = client
        .get_replica_position(timed(ask(false)))
        .await?
        .into_inner();
    if checksum_at(store, p.last_lsn).await? == Some(p.checksum) {
        return Ok(Some(p.last_lsn));
    }
    if replica.in_sync && p.last_lsn > store.last_lsn() {
        // An in-sync replica holds records this primary lacks: this primary lost records it
        // held (a restart should have taken it out of sync; see `restart`). Resetting the
        // replica would destroy the only copy: step down so it leads and refills this one.
        tracing::error!(
            "chunk {}: in-sync replica on {} is ahead of this primary (lsn {} > {}); stepping down",
            chunk.id,
            replica.node,
            p.last_lsn,
            store.last_lsn()
        );
        remove_from_in_sync(node, chunk, &node.alias).await?;
        return Err(Status::aborted(format!(
            "chunk {}: stepped down for the replica on {}, which is ahead",
            chunk.id, replica.node
        )));
    }
    tracing::warn!(
        "chunk {}: replica on {} diverged or is behind this primary's retained WAL (its lsn {} \
         checksum {:x}; primary lsn {}), rebuilding it",
        chunk.id,
        replica.node,
        p.last_lsn,
        p.checksum,
        store.last_lsn()
    );
    if replica.in_sync {
        let at = remove_from_in_sync(node, chunk, &replica.node).await?;
        link.state
            .send_modify(|s| s.removed_at = s.removed_at.max(at));
        return Ok(None);
    }
    // Records after the prefix both hold were never acknowledged: cut them and catch up from
    // there, unless the replica flushed them.
    if let Some(lsn) =
        crate::common_prefix::cut_back(node, chunk, replica, store, client, &p).await?
    {
        return Ok(Some(lsn));
    }
    // A copy of the chunk files replaces what it holds: far cheaper than replaying every
    // record, and the only way once the WAL below the flushed lsn is truncated.
    if let Some(lsn) = crate::snapshot::send(node, replica, chunk, store).await? {
        return Ok(Some(lsn));
    }
    let p = client
        .get_replica_position(timed(ask(true)))
        .await?
        .into_inner();
    Ok(Some(p.last_lsn))
}

/// Sends the next page of records after `lsn` (in lsn order); answers the last lsn the replica
/// then holds.
async fn ship_since(
    node: &Node,
    replica: &ReplicaInfo,
    chunk: &ChunkInfo,
    store: &ChunkStore,
    lsn: u64,
) -> Result<u64, Status> {
    let records = store
        .records_since(lsn, PAGE_BYTES)
        .await
        .map_err(storage_status)?;
    ship(node, replica, chunk, records).await
}

/// Sends `records` (in lsn order); answers the last lsn the replica then holds. A replica that
/// stops answering fails it at once, not at [`CALL_TIMEOUT`]: appends may be waiting for it.
async fn ship(
    node: &Node,
    replica: &ReplicaInfo,
    chunk: &ChunkInfo,
    records: Vec<Record>,
) -> Result<u64, Status> {
    let records = records
        .into_iter()
        .map(|r| {
            shoal_catalog::rows::encode_ipc(r.batch.schema_ref(), std::slice::from_ref(&r.batch))
                .map(|arrow_ipc| ReplicaRecord {
                    lsn: r.lsn,
                    writer_id: r.writer_id,
                    seq: r.seq,
                    arrow_ipc,
                })
                .map_err(|e| Status::internal(format!("encode record: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let req = ApplyRecordsRequest {
        chunk_id: chunk.id,
        chunk_version: chunk.version,
        records,
    };
    let mut client = node.data_node(&replica.addr)?;
    let shipped = watched(
        &node.channels,
        &replica.addr,
        client.apply_records(timed(req)),
    )
    .await?;
    Ok(shipped.into_inner().last_lsn)
}

/// Puts a caught-up replica back into the in-sync set with the chunk's appends paused, so no
/// append can be acknowledged without it from then on.
async fn rejoin(
    node: &Arc<Node>,
    link: &Link,
    chunk: &ChunkInfo,
    replica: &ReplicaInfo,
    store: &ChunkStore,
    mut lsn: u64,
) -> Result<(), Status> {
    // Taken before the appends pause, so waiting for it pauses nothing.
    let _turn = node
        .links
        .rejoins
        .acquire()
        .await
        .map_err(|_| Status::internal("the rejoin semaphore is closed"))?;
    let lock = node.links.chunk_lock(chunk.id);
    let _appends_paused = lock.write().await;
    let shipped = tokio::time::timeout(REJOIN_TIMEOUT, async {
        let now = node.catalog.chunk(chunk.id);
        if now.as_ref().map(|c| c.version) != Some(chunk.version) {
            return Ok(false); // the chunk changed meanwhile: decide again
        }
        while lsn < store.last_lsn() {
            lsn = ship_since(node, replica, chunk, store, lsn).await?;
        }
        // What the replica holds now, not what it was last known to hold: it may have
        // restarted empty since, and nothing left to ship would not show it.
        let held = node
            .data_node(&replica.addr)?
            .get_replica_position(timed(ReplicaPositionRequest {
                chunk_id: chunk.id,
                chunk_version: chunk.version,
                ..Default::default()
            }))
            .await?
            .into_inner();
        if held.last_lsn != lsn || checksum_at(store, lsn).await? != Some(held.checksum) {
            return Err(Status::out_of_range(format!(
                "rejoin of {}: it holds lsn {} (checksum {:x}), not {lsn}; looking again",
                replica.node, held.last_lsn, held.checksum
            )));
        }
        Ok(true)
    })
    .await
    .map_err(|_| {
        Status::aborted(format!(
            "catching up {} took longer than {REJOIN_TIMEOUT:?} with appends paused",
            replica.node
        ))
    })??;
    if !shipped {
        return Ok(());
    }
    let change = UpdateReplicasRequest {
        add_in_sync: vec![replica.node.clone()],
        ..Default::default()
    };
    if let Err(e) = node.catalog.change_replicas(chunk, change.clone()).await {
        // The change may have committed, or may still: until that is settled, appends must
        // not go on under the old in-sync set (they would be acknowledged without this
        // replica, which could then be in sync without them).
        settle_unknown_outcome(node, chunk, change).await;
        return Err(Status::aborted(format!("rejoin of {}: {e}", replica.node)));
    }
    link.state.send_modify(|s| s.acked = s.acked.max(lsn));
    tracing::info!(
        "chunk {}: replica on {} caught up at lsn {lsn} and is in sync again",
        chunk.id,
        replica.node
    );
    Ok(())
}

/// After a change of `chunk` whose outcome is unknown, with the chunk's appends paused: returns
/// once the chunk has moved past `chunk.version`, proposing the same change again (at the same
/// expected version) until it has. Every change is a compare-and-set on the version, so once
/// any change at that version has applied, the first proposal can never apply later: the
/// outcome is fenced, not guessed from elapsed time. Waits as long as the controllers take
/// (appends to this chunk could not safely go on meanwhile).
async fn settle_unknown_outcome(node: &Node, chunk: &ChunkInfo, change: UpdateReplicasRequest) {
    let mut backoff = MIN_BACKOFF;
    loop {
        if node
            .catalog
            .refresh_past(chunk.id, chunk.version)
            .await
            .is_ok()
            && node
                .catalog
                .chunk(chunk.id)
                .is_none_or(|c| c.version > chunk.version)
        {
            return;
        }
        match node.catalog.change_replicas(chunk, change.clone()).await {
            Ok(_) => return,
            Err(e) => tracing::warn!(
                "chunk {}: settling an in-sync change of unknown outcome: {e}",
                chunk.id
            ),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Commits "`peer` is out of sync" (it missed a write, or it is an unreachable primary) for the
/// chunk version this decision was based on; answers the chunk's version after the change. On
/// a refusal (someone changed the chunk first) the catalog is refreshed to look again.
pub async fn remove_from_in_sync(
    node: &Node,
    chunk: &ChunkInfo,
    peer: &str,
) -> Result<u64, Status> {
    let change = UpdateReplicasRequest {
        remove_in_sync: vec![peer.to_owned()],
        ..Default::default()
    };
    match node.catalog.change_replicas(chunk, change).await {
        Ok(info) => Ok(info.version),
        Err(e) => {
            // Shared with the other writes that found the same peer failed at this version.
            let _ = node.catalog.refresh_past(chunk.id, chunk.version).await;
            Err(Status::aborted(format!(
                "could not take {peer} out of chunk {}'s in-sync set: {e}",
                chunk.id
            )))
        }
    }
}

pub(crate) fn timed<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(CALL_TIMEOUT);
    r
}

/// The primary's checksum after `lsn`, read back from the WAL when `lsn` lies below what it
/// flushed to files (a replica that fell behind a flush still hands over cheaply).
pub(crate) async fn checksum_at(store: &ChunkStore, lsn: u64) -> Result<Option<u64>, Status> {
    store
        .checksum_at_retained(lsn)
        .await
        .map_err(storage_status)
}
