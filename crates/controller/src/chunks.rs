//! Chunk lookup and creation for coordinating data nodes: the chunks of a table's partitions,
//! placing and committing the missing ones first.

use shoal_catalog::PartitionKey;
use shoal_common::config::ReliabilityLevel;
use shoal_proto::{
    ChunkInfo, EnsureChunksRequest, EnsureChunksResponse, GetCatalogResponse, ReplicaInfo,
    UpdateReplicasRequest,
};
use tonic::Status;

use crate::catalog::{ChunkMeta, NewChunk, ReplicaChange, partition_name};
use crate::cluster_meta::ClusterMeta;
use crate::command::{Command, Rejection};
use crate::controller_service::ControllerCore;
use crate::placement::{Candidate, place};

/// How many replicas a new chunk gets, how they must be spread, and how long a replica on a
/// dead node waits before it is re-created elsewhere (controller.cfg).
#[derive(Clone, Copy, Debug)]
pub struct PlacementPolicy {
    pub factor: usize,
    pub level: ReliabilityLevel,
    /// `dfsRecoveryWaitTime`; zero: never re-create elsewhere.
    pub recovery_wait: std::time::Duration,
}

/// A partition dropped moments ago gets no new chunk yet: a data node may still route writes
/// to the old one by its cached catalog. UNAVAILABLE, so writers retry.
fn refuse_recently_dropped(
    core: &ControllerCore,
    db: &str,
    table: &str,
    keys: &[PartitionKey],
) -> Result<(), Status> {
    for k in keys {
        if let Some(wait) = core.reuse_wait(&partition_name(db, table, *k)) {
            return Err(Status::unavailable(format!(
                "partition {k} of {db}.{table} was dropped moments ago; it can be written again \
                 in {:.1} s",
                wait.as_secs_f64()
            )));
        }
    }
    Ok(())
}

pub async fn ensure(
    core: &ControllerCore,
    req: EnsureChunksRequest,
) -> Result<EnsureChunksResponse, Status> {
    core.ensure_lease().await?;
    let (db, table) = (req.db.as_str(), req.table.as_str());
    let kind = core
        .read(|m| {
            let d = m.catalog.databases.get(db)?;
            Some((d.scheme.kind(), d.tables.contains_key(table)))
        })
        .ok_or_else(|| Status::not_found(format!("database `{db}` does not exist")))?;
    if !kind.1 {
        return Err(Status::not_found(format!(
            "table `{table}` does not exist in `{db}`"
        )));
    }
    let mut keys = req
        .partition_keys
        .iter()
        .map(|k| PartitionKey::parse(kind.0, k))
        .collect::<Result<Vec<_>, _>>()
        .map_err(Status::invalid_argument)?;
    keys.sort();
    keys.dedup();

    let missing: Vec<PartitionKey> = core.read(|m| {
        keys.iter()
            .copied()
            .filter(|k| m.catalog.chunk_of(db, table, *k).is_none())
            .collect()
    });
    if !missing.is_empty() {
        refuse_recently_dropped(core, db, table, &missing)?;
        let chunks = core.read(|m| plan(m, db, table, &missing, core.placement))?;
        let resp = core.write(Command::CreateChunks { chunks }).await?;
        if !resp.rejected.is_empty() {
            return Err(Status::failed_precondition(resp.rejected));
        }
    }
    core.read(|m| {
        let chunks = keys
            .iter()
            .map(|k| {
                m.catalog
                    .chunk_of(db, table, *k)
                    .map(|c| chunk_info(m, c))
                    .ok_or_else(|| Status::internal(format!("chunk {k} missing after creation")))
            })
            .collect::<Result<_, _>>()?;
        Ok(EnsureChunksResponse { chunks })
    })
}

/// The whole catalog after a read-index: every change committed before the call is in it.
pub async fn catalog(core: &ControllerCore) -> Result<GetCatalogResponse, Status> {
    core.ensure_leader()?;
    core.read_index().await?;
    core.read(|m| {
        let databases_json = serde_json::to_vec(&m.catalog.databases)
            .map_err(|e| Status::internal(format!("encode catalog: {e}")))?;
        Ok(GetCatalogResponse {
            databases_json,
            chunks: m
                .catalog
                .chunks
                .values()
                .map(|c| chunk_info(m, c))
                .collect(),
            allocated_chunk_ids: m.catalog.next_chunk_id,
        })
    })
}

/// Commits a compare-and-set change of a chunk's in-sync set and answers the chunk as it is
/// afterwards. ABORTED: the chunk moved on (refresh and decide again); FAILED_PRECONDITION: it
/// would leave no replica in sync; NOT_FOUND: no such chunk.
pub async fn update_replicas(
    core: &ControllerCore,
    req: UpdateReplicasRequest,
) -> Result<ChunkInfo, Status> {
    core.ensure_lease().await?;
    let change = ReplicaChange {
        chunk_id: req.chunk_id,
        expected_version: req.expected_version,
        remove_in_sync: req.remove_in_sync,
        add_in_sync: req.add_in_sync,
        mark_written: req.mark_written,
        move_replica: None,
    };
    let resp = core.write(Command::UpdateReplicas { change }).await?;
    match resp.rejection {
        _ if resp.rejected.is_empty() => {}
        Rejection::Conflict => return Err(Status::aborted(resp.rejected)),
        Rejection::NotFound => return Err(Status::not_found(resp.rejected)),
        Rejection::Invalid | Rejection::AlreadyExists => {
            return Err(Status::failed_precondition(resp.rejected));
        }
    }
    core.read(|m| {
        m.catalog
            .chunks
            .get(&req.chunk_id)
            .map(|c| chunk_info(m, c))
            .ok_or_else(|| Status::not_found(format!("chunk {} was dropped", req.chunk_id)))
    })
}

/// Places each missing partition on data nodes that are UP, counting the replicas placed so
/// far so one request spreads its chunks too.
fn plan(
    m: &ClusterMeta,
    db: &str,
    table: &str,
    missing: &[PartitionKey],
    policy: PlacementPolicy,
) -> Result<Vec<NewChunk>, Status> {
    let mut load = m.catalog.replicas_per_node();
    let up: Vec<(&str, &str)> = m
        .up_data_nodes()
        .map(|n| (n.alias.as_str(), n.machine.as_str()))
        .collect();
    missing
        .iter()
        .map(|key| {
            let candidates: Vec<Candidate<'_>> = up
                .iter()
                .map(|(alias, machine)| Candidate {
                    alias,
                    machine,
                    load: load.get(*alias).copied().unwrap_or(0),
                })
                .collect();
            let nodes = place(&candidates, policy.factor, policy.level)
                .map_err(Status::failed_precondition)?;
            for n in &nodes {
                *load.entry(n.clone()).or_default() += 1;
            }
            Ok(NewChunk {
                db: db.to_owned(),
                table: table.to_owned(),
                key: *key,
                nodes,
            })
        })
        .collect()
}

pub fn chunk_info(m: &ClusterMeta, c: &ChunkMeta) -> ChunkInfo {
    ChunkInfo {
        id: c.id,
        db: c.db.clone(),
        table: c.table.clone(),
        partition_key: c.key.to_string(),
        path: c.path(),
        replicas: c
            .replicas
            .iter()
            .map(|r| ReplicaInfo {
                node: r.node.clone(),
                addr: m
                    .nodes
                    .get(&r.node)
                    .map(|n| n.addr.clone())
                    .unwrap_or_default(),
                in_sync: r.in_sync,
            })
            .collect(),
        state: c.state.name().to_owned(),
        version: c.version,
        chunk_state: shoal_proto::ChunkState::from(c.state).into(),
    }
}
