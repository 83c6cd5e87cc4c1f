//! The chunk replicas this node holds: one [`ChunkStore`] per chunk under the first volume,
//! and a small record per chunk under `chunkMetaDir` saying which chunk it is and where its data
//! lives (what an operator backs up before an upgrade, and what a restart reopens).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use shoal_proto::{ChunkInfo, ReplicaPosition};
use shoal_storage::{
    ChunkStore, CompactReport, Compaction, FlushReport, SortKey, StagedSnapshot, StorageError,
    StoreOptions,
};

/// Format of the per-chunk record in chunkMetaDir.
const CHUNK_RECORD_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct ChunkRecord {
    format: u32,
    id: u64,
    db: String,
    table: String,
    partition: String,
    path: String,
    dir: PathBuf,
}

/// Chunk stores opened at once when a node starts.
const OPEN_PARALLELISM: usize = 8;

/// The records in `meta_dir`.
fn read_records(meta_dir: &Path) -> Result<Vec<ChunkRecord>, String> {
    let entries = std::fs::read_dir(meta_dir)
        .map_err(|e| format!("cannot read {}: {e}", meta_dir.display()))?;
    let mut records = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().is_none_or(|x| x != "chunk") {
            continue;
        }
        let record: ChunkRecord = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if record.format > CHUNK_RECORD_VERSION {
            return Err(format!(
                "{}: chunk record format {} is newer than this build reads ({CHUNK_RECORD_VERSION})",
                path.display(),
                record.format
            ));
        }
        records.push(record);
    }
    Ok(records)
}

/// Reopens one replica's store (replaying its WAL tail, cutting a torn tail); also answers
/// whether it reopened exactly as written. `None`: the record has no store (created in the
/// metadata, never written: recreated on first write).
async fn reopen(
    record: ChunkRecord,
    opts: StoreOptions,
) -> Result<Option<(u64, ChunkStore, bool)>, String> {
    // A snapshot install a crash interrupted decides what the directory holds.
    ChunkStore::finish_install(&record.dir)
        .await
        .map_err(|e| format!("chunk {}: {e}", record.id))?;
    if !record.dir.join(shoal_storage::STORE_FILE).exists() {
        return Ok(None);
    }
    let opened = match ChunkStore::open(&record.dir, opts.clone()).await {
        Ok((store, report)) => {
            tracing::info!(
                "chunk {}: {} chunk files through lsn {}, {} WAL records replayed \
                 ({} of {} segments skipped)",
                record.id,
                report.files,
                report.flushed_lsn,
                report.records,
                report.skipped_segments,
                report.segments
            );
            if report.torn_tail_bytes > 0 {
                tracing::warn!(
                    "chunk {}: cut a torn tail of {} bytes",
                    record.id,
                    report.torn_tail_bytes
                );
            }
            (store, report.torn_tail_bytes == 0)
        }
        Err(StorageError::Corrupt { .. }) => {
            // A damaged unsynced tail: keep what verifies; the chunk's primary compares
            // checksums and refills or rebuilds this replica.
            let (store, _) = ChunkStore::open_discarding_damaged_tail(&record.dir, opts)
                .await
                .map_err(|e| format!("chunk {}: {e}", record.id))?;
            tracing::warn!("chunk {}: discarded a damaged WAL tail", record.id);
            (store, false)
        }
        Err(e) => return Err(format!("chunk {}: {e}", record.id)),
    };
    Ok(Some((record.id, opened.0, opened.1)))
}

pub struct LocalReplicas {
    meta_dir: PathBuf,
    data_dir: PathBuf,
    opts: StoreOptions,
    stores: Mutex<HashMap<u64, Arc<ChunkStore>>>,
    /// Replicas reopened at start exactly as written: record, store and a WAL without a torn
    /// or damaged tail (see `restart`).
    intact: HashSet<u64>,
    /// Serializes creating and resetting stores.
    changes: tokio::sync::Mutex<()>,
    /// Shared by a flush, WAL truncation or compaction of the chunk, exclusive for a reset,
    /// discard or snapshot install of it before anything else: they write files by path, so the
    /// directory must not be replaced under them (the store serializes them itself).
    flushing: Mutex<HashMap<u64, Arc<tokio::sync::RwLock<()>>>>,
    /// Held while a snapshot for the chunk is received: one at a time (they share a staging
    /// directory).
    installing: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<()>>>>,
}

/// The entry for `id` in a map of per-chunk locks, created on first use.
fn per_chunk<T: Default>(map: &Mutex<HashMap<u64, Arc<T>>>, id: u64) -> Arc<T> {
    map.lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(id)
        .or_default()
        .clone()
}

impl LocalReplicas {
    /// Reopens every replica recorded in `meta_dir` (replaying its WAL, cutting a torn tail).
    /// Every store, opened or created later, takes `opts`: its failure hook is told when a write
    /// failure poisons it, its memory gauge counts what it holds in memory.
    pub async fn open(meta_dir: &Path, volume: &Path, opts: StoreOptions) -> Result<Self, String> {
        let data_dir = volume.join("chunks");
        std::fs::create_dir_all(&data_dir)
            .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
        let records = read_records(meta_dir)?;
        // Opening is mostly waiting on the disk (a MANIFEST, the files' sizes, the WAL tail):
        // several at once keep a node holding thousands of chunks quick to come up.
        let opened: Vec<_> = futures::stream::iter(records)
            .map(|record| reopen(record, opts.clone()))
            .buffer_unordered(OPEN_PARALLELISM)
            .try_collect()
            .await?;
        let mut stores = HashMap::new();
        let mut intact = HashSet::new();
        for (id, store, was_intact) in opened.into_iter().flatten() {
            if was_intact {
                intact.insert(id);
            }
            stores.insert(id, Arc::new(store));
        }
        tracing::info!(
            "opened {} chunk replicas ({} intact)",
            stores.len(),
            intact.len()
        );
        Ok(Self {
            meta_dir: meta_dir.to_path_buf(),
            data_dir,
            opts,
            stores: Mutex::new(stores),
            intact,
            changes: tokio::sync::Mutex::new(()),
            flushing: Mutex::default(),
            installing: Mutex::default(),
        })
    }

    /// Whether chunk `id`'s replica was reopened at start exactly as it was written.
    pub fn reopened_intact(&self, id: u64) -> bool {
        self.intact.contains(&id)
    }

    /// Flushes chunk `id`'s rows through lsn `through` to a chunk file sorted by `sort_key`,
    /// keeping the duplicates it keeps (see [`ChunkStore::flush`]); `None` when this node holds
    /// no such replica. A reset or discard of the chunk waits for it.
    pub async fn flush(
        &self,
        id: u64,
        through: u64,
        sort_key: &SortKey,
    ) -> Result<Option<FlushReport>, StorageError> {
        self.with_store(id, async |s| s.flush(through, sort_key).await)
            .await
    }

    /// Deletes chunk `id`'s WAL segments wholly at or below `through` and its flushed lsn (see
    /// [`ChunkStore::truncate_wal`]); answers the first lsn the WAL still holds, `None` when
    /// this node holds no such replica.
    pub async fn truncate_wal(&self, id: u64, through: u64) -> Result<Option<u64>, StorageError> {
        self.with_store(id, async |s| s.truncate_wal(through).await)
            .await
    }

    /// Cuts chunk `id`'s records after `after` (see [`ChunkStore::cut_tail`]); answers how
    /// many were cut, `None` when this node holds no such replica.
    pub async fn cut_tail(&self, id: u64, after: u64) -> Result<Option<u64>, StorageError> {
        self.with_store(id, async |s| {
            let before = s.last_lsn();
            s.cut_tail(after).await.map(|p| before - p.last_lsn)
        })
        .await
    }

    /// Merges chunk `id`'s files (see [`ChunkStore::compact`]); `None` when this node holds no
    /// such replica. Flushes go on meanwhile.
    pub async fn compact(
        &self,
        id: u64,
        sort_key: &SortKey,
        how: Compaction,
    ) -> Result<Option<CompactReport>, StorageError> {
        self.with_store(id, async |s| s.compact(sort_key, how).await)
            .await
    }

    /// Runs `op` on chunk `id`'s store (`None` when this node holds no such replica), with the
    /// chunk's flush guard held shared: a reset, discard or install of the chunk waits for it.
    async fn with_store<T>(
        &self,
        id: u64,
        op: impl AsyncFnOnce(&ChunkStore) -> Result<T, StorageError>,
    ) -> Result<Option<T>, StorageError> {
        let guard = self.flush_guard(id);
        let _shared = guard.read().await;
        match self.get(id) {
            Some(store) => op(&store).await.map(Some),
            None => Ok(None),
        }
    }

    fn flush_guard(&self, id: u64) -> Arc<tokio::sync::RwLock<()>> {
        per_chunk(&self.flushing, id)
    }

    /// Held while a snapshot for chunk `id` is received and installed.
    pub fn install_lock(&self, id: u64) -> Arc<tokio::sync::Mutex<()>> {
        per_chunk(&self.installing, id)
    }

    /// Where chunk `id`'s store lives.
    pub fn dir_of(&self, id: u64) -> PathBuf {
        self.data_dir.join(id.to_string())
    }

    pub fn get(&self, id: u64) -> Option<Arc<ChunkStore>> {
        self.lock().get(&id).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ChunkStore>>> {
        self.stores.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The chunk's store, created empty (record first, then the store) on first use.
    pub async fn get_or_create(
        &self,
        chunk: &ChunkInfo,
        schema: SchemaRef,
    ) -> Result<Arc<ChunkStore>, String> {
        if let Some(s) = self.get(chunk.id) {
            return Ok(s);
        }
        let _one = self.changes.lock().await;
        if let Some(s) = self.get(chunk.id) {
            return Ok(s);
        }
        self.create(chunk, schema, false).await
    }

    /// Creates the chunk's record and an empty store; `replace`: discard a store already there.
    async fn create(
        &self,
        chunk: &ChunkInfo,
        schema: SchemaRef,
        replace: bool,
    ) -> Result<Arc<ChunkStore>, String> {
        let dir = self.write_record(chunk)?;
        if !replace && dir.join(shoal_storage::STORE_FILE).exists() {
            // Data without its record (e.g. chunkMetaDir restored from an older backup): never
            // delete it silently.
            return Err(format!(
                "chunk {}: {} holds a store that {} does not record; refusing to overwrite it",
                chunk.id,
                dir.display(),
                self.meta_dir.display()
            ));
        }
        if dir.exists() {
            // Leftovers of a store never completely created, or the replica being reset.
            std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let store = Arc::new(
            ChunkStore::create(&dir, schema, self.opts.clone())
                .await
                .map_err(|e| e.to_string())?,
        );
        self.lock().insert(chunk.id, store.clone());
        Ok(store)
    }

    /// Discards a replica that diverged from its primary and starts it again empty.
    pub async fn reset(
        &self,
        chunk: &ChunkInfo,
        schema: SchemaRef,
    ) -> Result<Arc<ChunkStore>, String> {
        let flush_guard = self.flush_guard(chunk.id);
        let _no_flush = flush_guard.write().await;
        let _one = self.changes.lock().await;
        self.close(chunk.id).await?;
        tracing::warn!(
            "chunk {}: rebuilding this replica from its primary",
            chunk.id
        );
        self.create(chunk, schema, true).await
    }

    /// Replaces chunk `id`'s replica (if any) by a snapshot committed in its staging directory
    /// (see [`ChunkStore::install_snapshot`]), writing the chunk's record first if this node
    /// had none (a wiped volume).
    pub async fn install(
        &self,
        chunk: &ChunkInfo,
        staged: StagedSnapshot,
    ) -> Result<Arc<ChunkStore>, String> {
        let flush_guard = self.flush_guard(chunk.id);
        let _no_flush = flush_guard.write().await;
        let _one = self.changes.lock().await;
        self.write_record(chunk)?;
        self.close(chunk.id).await?;
        let (store, _) = ChunkStore::install_snapshot(staged, self.opts.clone())
            .await
            .map_err(|e| e.to_string())?;
        let store = Arc::new(store);
        self.lock().insert(chunk.id, store.clone());
        Ok(store)
    }

    /// Takes chunk `id`'s store out of use and closes it, before its directory is replaced.
    async fn close(&self, id: u64) -> Result<(), String> {
        let old = self.lock().remove(&id);
        if let Some(old) = old {
            // Other holders of the Arc finish their call; the directory goes away under them
            // only after this store is closed.
            match Arc::try_unwrap(old) {
                Ok(store) => store.close().await.map_err(|e| e.to_string())?,
                Err(shared) => drop(shared),
            }
        }
        Ok(())
    }
    /// Writes chunk `id`'s record (which chunk it is, where its store lives); answers the
    /// store's directory.
    fn write_record(&self, chunk: &ChunkInfo) -> Result<PathBuf, String> {
        let dir = self.dir_of(chunk.id);
        let record = ChunkRecord {
            format: CHUNK_RECORD_VERSION,
            id: chunk.id,
            db: chunk.db.clone(),
            table: chunk.table.clone(),
            partition: chunk.partition_key.clone(),
            path: chunk.path.clone(),
            dir: dir.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&record).map_err(|e| e.to_string())?;
        write_durably(&self.meta_dir, &format!("{}.chunk", chunk.id), &bytes)
            .map_err(|e| format!("chunk {}: cannot write its record: {e}", chunk.id))?;
        Ok(dir)
    }

    /// Ids of the replicas held.
    pub fn ids(&self) -> Vec<u64> {
        self.lock().keys().copied().collect()
    }

    /// Deletes a replica the catalog no longer places here (its chunk was dropped, or the
    /// replica was re-created on another node while this one was down). Skipped while a call
    /// still uses the store; the next upkeep tries again.
    pub async fn discard(&self, id: u64) -> Result<(), String> {
        let flush_guard = self.flush_guard(id);
        let _no_flush = flush_guard.write().await;
        let _one = self.changes.lock().await;
        let store = {
            let mut stores = self.lock();
            match stores.get(&id) {
                Some(s) if Arc::strong_count(s) == 1 => stores.remove(&id),
                _ => None,
            }
        };
        let Some(store) = store.and_then(|s| Arc::try_unwrap(s).ok()) else {
            return Ok(());
        };
        let dir = store.dir().to_path_buf();
        store.close().await.map_err(|e| e.to_string())?;
        let record = self.meta_dir.join(format!("{id}.chunk"));
        std::fs::remove_file(&record).map_err(|e| format!("{}: {e}", record.display()))?;
        std::fs::File::open(&self.meta_dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("{}: {e}", self.meta_dir.display()))?;
        std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        self.flushing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        self.installing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        tracing::info!("chunk {id}: replica no longer placed here, deleted");
        Ok(())
    }

    /// Position of every replica held.
    pub fn positions(&self) -> Vec<ReplicaPosition> {
        let mut v: Vec<ReplicaPosition> =
            self.lock().iter().map(|(id, s)| position(*id, s)).collect();
        v.sort_by_key(|p| p.chunk_id);
        v
    }
}

pub fn position(chunk_id: u64, store: &ChunkStore) -> ReplicaPosition {
    let p = store.position();
    ReplicaPosition {
        chunk_id,
        last_lsn: p.last_lsn,
        rows: p.rows,
        checksum: p.checksum,
        bytes: store.bytes_on_disk(),
        flushed_lsn: store.flushed_lsn(),
        checksum_at_lsn: None,
    }
}

/// Writes `dir/name` whole: temp file, fsync, rename, fsync of the directory.
fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}
