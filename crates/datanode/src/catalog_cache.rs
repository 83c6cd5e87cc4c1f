//! This node's copy of the controller's catalog: table definitions and every chunk with its
//! replicas. Refreshed in the background and whenever a request shows a newer chunk version,
//! so decisions are made on metadata at least as new as the caller's.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use shoal_catalog::{DatabaseDef, PartitionScheme, TableDef};
use shoal_client::ClientError;
use shoal_client::controller::ControllerClient;
use shoal_common::clock::{BootInstant, CATALOG_LEASE};
use shoal_proto::{ChunkInfo, UpdateReplicasRequest};
use tonic::Status;

/// Shared pieces, so a change of one chunk copies a map of pointers, not every chunk: a node
/// holding 1,000 chunks that commits 667 rejoins after a restart copied 667 catalogs, with the
/// lock every append reads through held for each copy.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub databases: Arc<BTreeMap<String, DatabaseDef>>,
    pub chunks: HashMap<u64, Arc<ChunkInfo>>,
    /// Every chunk id up to this was allocated by the controllers when the catalog was read
    /// (0: unknown, an older controller). Never decreases.
    pub allocated_chunk_ids: u64,
}

impl Snapshot {
    /// Whether this catalog says chunk `id` no longer exists: it was allocated, and it is gone.
    /// A chunk merely absent (created after the catalog was read, or a controller that forgot
    /// it) is not known to be dropped, and its replica must be kept.
    pub fn dropped(&self, id: u64) -> bool {
        !self.chunks.contains_key(&id) && id <= self.allocated_chunk_ids
    }

    /// The snapshot a fetched catalog makes of this one. Never goes backwards: a chunk keeps
    /// its newest version (a change this node committed may be newer than the fetch); a chunk
    /// the fetch lacks is kept unless the fetch shows it dropped (this node may have learned of
    /// it after the fetch was answered); an answer with fewer chunk ids allocated than one
    /// installed (a controller that lost its state) is refused.
    fn merge(
        &self,
        databases: BTreeMap<String, DatabaseDef>,
        fetched: Vec<ChunkInfo>,
        allocated: u64,
    ) -> Result<Snapshot, String> {
        if allocated < self.allocated_chunk_ids && allocated != 0 {
            return Err(format!(
                "the controllers answered a catalog older than one this node has seen \
                 (chunk ids allocated: {allocated} < {})",
                self.allocated_chunk_ids
            ));
        }
        let mut chunks: HashMap<u64, Arc<ChunkInfo>> = fetched
            .into_iter()
            .map(|c| match self.chunks.get(&c.id) {
                Some(mine) if mine.version > c.version => (c.id, Arc::clone(mine)),
                _ => (c.id, Arc::new(c)),
            })
            .collect();
        for (id, mine) in &self.chunks {
            // 0: an older controller, which cannot tell; keep.
            if !chunks.contains_key(id) && (allocated == 0 || *id > allocated) {
                chunks.insert(*id, Arc::clone(mine));
            }
        }
        Ok(Snapshot {
            databases: Arc::new(databases),
            chunks,
            allocated_chunk_ids: allocated.max(self.allocated_chunk_ids),
        })
    }
}

pub struct CatalogCache {
    controllers: ControllerClient,
    snapshot: RwLock<Arc<Snapshot>>,
    /// One refresh at a time.
    refreshing: tokio::sync::Mutex<()>,
    /// When the last successful fetch started.
    /// On the boot clock, so a machine suspended past the lease does not trust its catalog.
    fetched_at: std::sync::Mutex<Option<BootInstant>>,
}

impl CatalogCache {
    pub fn new(controllers: ControllerClient) -> Self {
        Self {
            controllers,
            snapshot: RwLock::default(),
            refreshing: tokio::sync::Mutex::new(()),
            fetched_at: std::sync::Mutex::new(None),
        }
    }

    pub fn controllers(&self) -> &ControllerClient {
        &self.controllers
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Fetches the catalog from the leader (one fetch at a time; each caller gets a fetch that
    /// started after it asked). A chunk never goes back to an older version: a change this node
    /// committed itself may be newer than a fetch that started before it.
    pub async fn refresh(&self) -> Result<(), ClientError> {
        self.refresh_unless(|_| false).await
    }

    /// A refresh, unless by then this node already knows chunk `id` past `version`.
    pub async fn refresh_past(&self, id: u64, version: u64) -> Result<(), ClientError> {
        self.refresh_unless(|s| s.chunks.get(&id).is_none_or(|c| c.version > version))
            .await
    }

    /// A refresh, unless by the time this caller's turn comes the snapshot already satisfies
    /// it (another caller's fetch brought it): many requests waiting for one new chunk version
    /// then share one fetch instead of queueing one each.
    async fn refresh_unless(
        &self,
        satisfied: impl Fn(&Snapshot) -> bool,
    ) -> Result<(), ClientError> {
        let _one_at_a_time = self.refreshing.lock().await;
        if satisfied(&self.snapshot()) {
            return Ok(());
        }
        let started = BootInstant::now();
        let resp = self.controllers.get_catalog().await?;
        let databases: BTreeMap<String, DatabaseDef> = serde_json::from_slice(&resp.databases_json)
            .map_err(|e| ClientError::Rpc {
                addr: "controller".into(),
                code: tonic::Code::Internal,
                message: format!("undecodable catalog: {e}"),
            })?;
        let mut guard = self.snapshot.write().unwrap_or_else(|p| p.into_inner());
        let next = guard
            .merge(databases, resp.chunks, resp.allocated_chunk_ids)
            .map_err(|message| ClientError::Rpc {
                addr: "controller".into(),
                code: tonic::Code::Unavailable,
                message,
            })?;
        *guard = Arc::new(next);
        *self.fetched_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(started);
        Ok(())
    }

    /// Writes are routed and acknowledged only by a catalog younger than [`CATALOG_LEASE`]
    /// (refreshed first if older): the controllers answer a DROP only after that and keep a
    /// dropped name from being reused for longer, so a write for a new table never lands in a
    /// dropped one's chunk.
    pub async fn ensure_fresh(&self) -> Result<(), Status> {
        let fetched = *self.fetched_at.lock().unwrap_or_else(|p| p.into_inner());
        if fetched.is_some_and(|t| t.elapsed() < CATALOG_LEASE) {
            return Ok(());
        }
        self.refresh().await.map_err(unavailable)
    }

    /// Commits a change of `chunk`'s in-sync set, compare-and-set on the version this node
    /// saw, and records the chunk as the controller answers it.
    pub async fn change_replicas(
        &self,
        chunk: &ChunkInfo,
        change: UpdateReplicasRequest,
    ) -> Result<ChunkInfo, ClientError> {
        let req = UpdateReplicasRequest {
            chunk_id: chunk.id,
            expected_version: chunk.version,
            ..change
        };
        let info = self.controllers.update_replicas(req).await?;
        self.update_chunk(info.clone());
        Ok(info)
    }

    /// Records a chunk as the controller answered it after a change, if it is newer.
    pub fn update_chunk(&self, chunk: ChunkInfo) {
        let mut guard = self.snapshot.write().unwrap_or_else(|p| p.into_inner());
        if guard
            .chunks
            .get(&chunk.id)
            .is_some_and(|c| c.version >= chunk.version)
        {
            return;
        }
        let mut chunks = guard.chunks.clone();
        chunks.insert(chunk.id, Arc::new(chunk));
        *guard = Arc::new(Snapshot {
            databases: Arc::clone(&guard.databases),
            chunks,
            allocated_chunk_ids: guard.allocated_chunk_ids,
        });
    }

    pub fn chunk(&self, id: u64) -> Option<ChunkInfo> {
        self.snapshot().chunks.get(&id).map(|c| ChunkInfo::clone(c))
    }

    /// The chunk at `version` or newer, refreshing once if this node has only older metadata.
    pub async fn chunk_at_least(&self, id: u64, version: u64) -> Result<ChunkInfo, Status> {
        if let Some(c) = self.chunk(id).filter(|c| c.version >= version) {
            return Ok(c);
        }
        self.refresh_unless(|s| s.chunks.get(&id).is_some_and(|c| c.version >= version))
            .await
            .map_err(unavailable)?;
        match self.chunk(id) {
            Some(c) if c.version >= version => Ok(c),
            Some(c) => Err(Status::unavailable(format!(
                "chunk {id}: the controller answered version {}, older than {version}",
                c.version
            ))),
            None => Err(Status::not_found(format!(
                "chunk {id} does not exist (dropped?)"
            ))),
        }
    }

    /// A table's partition scheme and definition, refreshing once if unknown.
    pub async fn table(
        &self,
        db: &str,
        table: &str,
    ) -> Result<(PartitionScheme, TableDef), Status> {
        let find = |s: &Snapshot| {
            let d = s.databases.get(db)?;
            Some((d.scheme.clone(), d.tables.get(table)?.clone()))
        };
        if let Some(t) = find(&self.snapshot()) {
            return Ok(t);
        }
        self.refresh().await.map_err(unavailable)?;
        let s = self.snapshot();
        if !s.databases.contains_key(db) {
            return Err(Status::not_found(format!("database `{db}` does not exist")));
        }
        find(&s)
            .ok_or_else(|| Status::not_found(format!("table `{table}` does not exist in `{db}`")))
    }

    /// The table definition a chunk belongs to.
    pub fn table_of(&self, chunk: &ChunkInfo) -> Option<TableDef> {
        self.snapshot()
            .databases
            .get(&chunk.db)?
            .tables
            .get(&chunk.table)
            .cloned()
    }

    /// The chunk holding `partition` (a DolphinDB literal) of a table, if known.
    pub fn chunk_for(&self, db: &str, table: &str, partition: &str) -> Option<ChunkInfo> {
        self.snapshot()
            .chunks
            .values()
            .find(|c| c.db == db && c.table == table && c.partition_key == partition)
            .map(|c| ChunkInfo::clone(c))
    }
}

pub fn unavailable(e: ClientError) -> Status {
    Status::unavailable(format!("cannot reach the controllers: {e}"))
}

/// The primary of a chunk: its first in-sync replica, in the controller's order.
pub fn primary(chunk: &ChunkInfo) -> Option<&shoal_proto::ReplicaInfo> {
    chunk.replicas.iter().find(|r| r.in_sync)
}

pub fn is_in_sync(chunk: &ChunkInfo, node: &str) -> bool {
    chunk.replicas.iter().any(|r| r.node == node && r.in_sync)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(id: u64, version: u64) -> ChunkInfo {
        ChunkInfo {
            id,
            version,
            ..Default::default()
        }
    }

    fn snapshot(chunks: &[ChunkInfo], allocated: u64) -> Snapshot {
        Snapshot {
            databases: Arc::default(),
            chunks: chunks.iter().map(|c| (c.id, Arc::new(c.clone()))).collect(),
            allocated_chunk_ids: allocated,
        }
    }

    #[test]
    fn a_fetch_answered_before_a_chunk_was_created_does_not_forget_it() {
        // Chunk 3 was learned from the controller's answer to a change, after the fetch (which
        // knew chunks up to 2) was answered.
        let mine = snapshot(&[chunk(1, 4), chunk(3, 1)], 2);
        let next = mine
            .merge(BTreeMap::new(), vec![chunk(1, 2), chunk(2, 1)], 2)
            .unwrap();
        assert_eq!(
            next.chunks[&1].version, 4,
            "a chunk never goes back a version"
        );
        assert!(next.chunks.contains_key(&2));
        assert!(
            next.chunks.contains_key(&3),
            "created after the fetch: kept"
        );
        assert!(!next.dropped(3));
    }

    #[test]
    fn a_chunk_the_catalog_allocated_and_no_longer_has_was_dropped() {
        let mine = snapshot(&[chunk(1, 1), chunk(2, 1)], 2);
        let next = mine.merge(BTreeMap::new(), vec![chunk(1, 1)], 2).unwrap();
        assert!(!next.chunks.contains_key(&2));
        assert!(next.dropped(2));
        assert!(!next.dropped(1), "present");
        assert!(!next.dropped(7), "never allocated");
    }

    #[test]
    fn a_catalog_older_than_one_installed_is_refused_and_changes_nothing() {
        // A controller group that lost its state answers an empty catalog.
        let mine = snapshot(&[chunk(1, 1), chunk(2, 1)], 2);
        let err = mine.merge(BTreeMap::new(), vec![], 1).unwrap_err();
        assert!(err.contains("older than one this node has seen"), "{err}");
    }

    #[test]
    fn an_older_controller_that_does_not_tell_drops_nothing() {
        let mine = snapshot(&[chunk(1, 1), chunk(2, 1)], 2);
        let next = mine.merge(BTreeMap::new(), vec![chunk(1, 1)], 0).unwrap();
        assert!(next.chunks.contains_key(&2));
        assert!(!next.dropped(2));
        assert_eq!(next.allocated_chunk_ids, 2);
    }
}
