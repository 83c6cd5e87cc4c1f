//! Cutting a diverged replica back to the prefix it shares with its primary, instead of
//! rebuilding it (F10 in the fault notes: a deposed primary with one unreplicated record was
//! copied whole, gigabytes for a large chunk, with a single copy of the chunk meanwhile).
//!
//! Replica checksums chain every record (`lsn, writer, seq, content`), so equal checksums at
//! lsn n mean equal records 1..=n, and "equal at n" holds for every n up to the common prefix
//! and for none after it: a binary search over `GetReplicaPosition(checksum_at)` finds the
//! prefix in O(log n) calls. The replica can cut only records it has not flushed to chunk files
//! (sorted among others, they cannot be taken out): the search starts at its flushed lsn, and
//! a prefix below it means a copy after all.

use std::sync::Arc;

use shoal_client::channel::AuthChannel;
use shoal_common::version::CUT_TAIL_CLUSTER_VERSION;
use shoal_proto::data_node_client::DataNodeClient;
use shoal_proto::{ChunkInfo, ReplicaInfo, ReplicaPosition, ReplicaPositionRequest};
use shoal_storage::ChunkStore;
use tonic::Status;

use crate::node::Node;
use crate::replication::{checksum_at, timed};

/// Cuts the replica (out of sync, at position `at`, not a prefix of this primary's records)
/// back to the longest prefix both hold; answers that lsn, or `None` when it cannot be cut
/// there (the prefix ends inside its chunk files, the cluster version is older, or the replica
/// is of a release without the cut): the caller copies it whole.
pub async fn cut_back(
    node: &Arc<Node>,
    chunk: &ChunkInfo,
    replica: &ReplicaInfo,
    store: &ChunkStore,
    client: &mut DataNodeClient<AuthChannel>,
    at: &ReplicaPosition,
) -> Result<Option<u64>, Status> {
    if *node.cluster_version.borrow() < CUT_TAIL_CLUSTER_VERSION {
        return Ok(None);
    }
    let ask = |checksum_at, cut_after| ReplicaPositionRequest {
        chunk_id: chunk.id,
        chunk_version: chunk.version,
        reset: false,
        checksum_at,
        cut_after,
    };
    let mut shared = async |lsn: u64| -> Result<bool, Status> {
        let Some(ours) = checksum_at(store, lsn).await? else {
            return Ok(false);
        };
        let theirs = client
            .get_replica_position(timed(ask(Some(lsn), None)))
            .await?
            .into_inner()
            .checksum_at_lsn;
        Ok(theirs == Some(ours))
    };
    // `good` is shared, `bad` (exclusive) is not or is past one of the two logs.
    let mut good = at.flushed_lsn;
    let mut bad = at.last_lsn.min(store.last_lsn()) + 1;
    if good >= bad || !shared(good).await? {
        return Ok(None);
    }
    while bad - good > 1 {
        let mid = good + (bad - good) / 2;
        if shared(mid).await? {
            good = mid;
        } else {
            bad = mid;
        }
    }
    let cut = client
        .get_replica_position(timed(ask(None, Some(good))))
        .await?
        .into_inner();
    if cut.last_lsn != good || checksum_at(store, good).await? != Some(cut.checksum) {
        // Not cut: a release that ignores the field, or it moved meanwhile.
        return Ok(None);
    }
    tracing::info!(
        "chunk {}: cut the replica on {} back from lsn {} to lsn {good}, the prefix it shares \
         with this primary; catching it up from there",
        chunk.id,
        replica.node,
        at.last_lsn
    );
    Ok(Some(good))
}
