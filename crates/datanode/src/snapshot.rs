//! Copying a chunk replica whole from its primary (`InstallSnapshot`), for a replica record
//! catch-up cannot serve: it is behind the primary's retained WAL (truncated once every in-sync
//! replica held it in files, see `flush_policy`), or it diverged. The primary streams its
//! committed chunk files ([`ChunkStore::export_snapshot`]); the replica stages, verifies and
//! installs them ([`SnapshotInstall`], `LocalReplicas::install`); the records after the copy's
//! flushed lsn then follow by `ApplyRecords` as in any catch-up (see `replication`).
//!
//! Only from [`CHUNK_FILES_CLUSTER_VERSION`] on (chunk files exist only then). A replica of the
//! previous release answers UNIMPLEMENTED: [`send`] then answers `None` and the primary falls
//! back to record catch-up.

use std::sync::Arc;
use std::time::Instant;

use shoal_client::liveness::watched;
use shoal_common::version::CHUNK_FILES_CLUSTER_VERSION;
use shoal_proto::snapshot_part::Part;
use shoal_proto::{
    ChunkInfo, ReplicaInfo, ReplicaPosition, SnapshotBegin, SnapshotEnd, SnapshotFileInfo,
    SnapshotPart,
};
use shoal_storage::{ChunkStore, SNAPSHOT_PART_BYTES, SnapshotFile, SnapshotInstall, StorageError};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming};

use crate::error::storage_status;
use crate::node::Node;
use crate::replicas::position;

/// Parts read ahead of what the replica has taken.
const PARTS_AHEAD: usize = 4;

/// Copies `store` (this node is its primary) to the replica; answers the lsn the replica then
/// holds, or `None` if there is nothing to copy (never flushed, or the cluster version does not
/// allow chunk files yet) or the replica does not take snapshots (an older release).
pub async fn send(
    node: &Node,
    replica: &ReplicaInfo,
    chunk: &ChunkInfo,
    store: &ChunkStore,
) -> Result<Option<u64>, Status> {
    if *node.cluster_version.borrow() < CHUNK_FILES_CLUSTER_VERSION {
        return Ok(None);
    }
    let Some(mut export) = store.export_snapshot().await.map_err(storage_status)? else {
        return Ok(None);
    };
    let (lsn, checksum, bytes) = (export.flushed_lsn, export.checksum, export.bytes());
    let begin = SnapshotBegin {
        chunk_id: chunk.id,
        chunk_version: chunk.version,
        flushed_lsn: lsn,
        checksum,
        files: export
            .files()
            .iter()
            .map(|f| SnapshotFileInfo {
                name: f.name.clone(),
                bytes: f.bytes,
            })
            .collect(),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(PARTS_AHEAD);
    let part = |p| SnapshotPart { part: Some(p) };
    // Cannot fail: the receiver is still here and the channel has room.
    let _ = tx.try_send(part(Part::Begin(begin)));
    let chunk_id = chunk.id;
    tokio::task::spawn_blocking(move || {
        loop {
            match export.next_part(SNAPSHOT_PART_BYTES) {
                Ok(Some(data)) => {
                    if tx.blocking_send(part(Part::Data(data))).is_err() {
                        return; // the call ended
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // Ending the stream without its end message makes the replica refuse it.
                    tracing::warn!("chunk {chunk_id}: reading the snapshot to send: {e}");
                    return;
                }
            }
        }
        let xxh3 = export.hashes().to_vec();
        let _ = tx.blocking_send(part(Part::End(SnapshotEnd { xxh3 })));
    });
    let started = Instant::now();
    let mut client = node.data_node(&replica.addr)?;
    // No deadline (a big chunk takes as long as it takes), but cut short if the replica stops
    // answering.
    let call = client.install_snapshot(ReceiverStream::new(rx));
    let held = match watched(&node.channels, &replica.addr, call).await {
        Ok(r) => r.into_inner(),
        Err(s) if s.code() == Code::Unimplemented => {
            tracing::info!(
                "chunk {}: the replica on {} takes no snapshots (an older release); \
                 catching it up record by record",
                chunk.id,
                replica.node
            );
            return Ok(None);
        }
        Err(s) => return Err(s),
    };
    if (held.last_lsn, held.checksum) != (lsn, checksum) {
        return Err(Status::internal(format!(
            "chunk {}: after the snapshot through lsn {lsn} (checksum {checksum:x}) the replica \
             on {} holds lsn {} (checksum {:x})",
            chunk.id, replica.node, held.last_lsn, held.checksum
        )));
    }
    tracing::info!(
        "chunk {}: sent a snapshot through lsn {lsn} to {}: {bytes} bytes in {:?}",
        chunk.id,
        replica.node,
        started.elapsed()
    );
    Ok(Some(lsn))
}

/// The replica's side: receives the stream that `begin` opened for `chunk`, installs it and
/// answers the replica's position. The caller checked the chunk version and that this replica
/// is out of sync.
pub async fn receive(
    node: &Arc<Node>,
    chunk: &ChunkInfo,
    begin: SnapshotBegin,
    mut parts: Streaming<SnapshotPart>,
) -> Result<ReplicaPosition, Status> {
    if *node.cluster_version.borrow() < CHUNK_FILES_CLUSTER_VERSION {
        return Err(Status::failed_precondition(format!(
            "chunk {}: chunk files are not allowed before the cluster version is {}",
            chunk.id, CHUNK_FILES_CLUSTER_VERSION
        )));
    }
    let lock = node.replicas.install_lock(chunk.id);
    let _one = lock.lock().await;
    let started = Instant::now();
    let dir = node.replicas.dir_of(chunk.id);
    let files = begin
        .files
        .into_iter()
        .map(|f| SnapshotFile {
            name: f.name,
            bytes: f.bytes,
        })
        .collect();
    let mut install = off_runtime(move || SnapshotInstall::begin(&dir, files)).await?;
    let mut bytes = 0u64;
    let hashes = loop {
        match parts.message().await?.and_then(|p| p.part) {
            Some(Part::Data(data)) => {
                bytes += data.len() as u64;
                install = off_runtime(move || install.write(&data).map(|()| install)).await?;
            }
            Some(Part::End(end)) => break end.xxh3,
            Some(Part::Begin(_)) | None => {
                return Err(Status::invalid_argument(format!(
                    "chunk {}: the snapshot stream ended or restarted before its end message",
                    chunk.id
                )));
            }
        }
    };
    let staged = off_runtime(move || install.finish(&hashes)).await?;
    if (staged.flushed_lsn, staged.checksum) != (begin.flushed_lsn, begin.checksum) {
        return Err(Status::invalid_argument(format!(
            "chunk {}: the snapshot's MANIFEST says lsn {} checksum {:x}, its sender lsn {} \
             checksum {:x}",
            chunk.id, staged.flushed_lsn, staged.checksum, begin.flushed_lsn, begin.checksum
        )));
    }
    let store = node
        .replicas
        .install(chunk, staged)
        .await
        .map_err(Status::internal)?;
    node.metrics.repaired("snapshot");
    node.metrics.recovered("snapshot", bytes);
    // `shoal-bench snapshot` reads this line: keep "<bytes> bytes in <seconds> s".
    let took = started.elapsed().as_secs_f64();
    tracing::info!(
        "chunk {}: installed a snapshot from its primary through lsn {}: {bytes} bytes in \
         {took:.3} s ({:.1} MB/s)",
        chunk.id,
        begin.flushed_lsn,
        bytes as f64 / took.max(1e-6) / 1e6
    );
    Ok(position(chunk.id, &store))
}

/// Runs blocking storage work on a blocking thread.
async fn off_runtime<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("snapshot install: {e}")))?
        .map_err(storage_status)
}
