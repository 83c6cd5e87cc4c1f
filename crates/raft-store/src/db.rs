//! The redb file: table definitions, format-version handling and small typed helpers shared
//! by the log store and the state machine.

use std::path::Path;
use std::path::PathBuf;

use openraft::RaftTypeConfig;
use openraft::type_config::TypeConfigExt;
use redb::Database;
use redb::Durability;
use redb::ReadableDatabase;
use redb::TableDefinition;
use redb::TableError;
use redb::WriteTransaction;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::StoreError;

/// Name of the single redb file inside the store directory.
pub(crate) const FILE_NAME: &str = "raft.redb";

/// The on-disk format this build reads and writes.
pub(crate) const FORMAT_VERSION: u64 = 1;

/// Format metadata. Deliberately *not* versioned: it is the one table every future build must
/// be able to read to find out which version a file is.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(crate) const FORMAT_VERSION_KEY: &str = "format_version";

/// Log entries: big-endian `u64` index -> serde_json of `C::Entry`. Big-endian so that byte
/// order equals index order, independent of redb's integer encoding.
pub(crate) const LOG: TableDefinition<[u8; 8], &[u8]> = TableDefinition::new("raft_log_v1");

/// Raft hard state next to the log: vote and last purged log id (serde_json).
pub(crate) const RAFT_META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta_v1");
pub(crate) const VOTE_KEY: &str = "vote";
pub(crate) const LAST_PURGED_KEY: &str = "last_purged_log_id";
/// The last committed log id this node knew of, written without an fsync (see `LogStore`).
pub(crate) const COMMITTED_KEY: &str = "committed";

/// State machine as of the current snapshot (serde_json): the application state, its last
/// applied log id and membership, always rewritten together in one transaction.
pub(crate) const SM: TableDefinition<&str, &[u8]> = TableDefinition::new("state_machine_v1");
pub(crate) const STATE_KEY: &str = "state";
pub(crate) const LAST_APPLIED_KEY: &str = "last_applied";
pub(crate) const LAST_MEMBERSHIP_KEY: &str = "last_membership";

/// The current snapshot: its `SnapshotMeta` (serde_json) and its data bytes.
pub(crate) const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot_v1");
pub(crate) const SNAPSHOT_META_KEY: &str = "meta";
pub(crate) const SNAPSHOT_DATA_KEY: &str = "data";

/// Who the store belongs to and whether it was admitted (serde_json of `Identity`). Not
/// created with the other tables: builds before it never open it, and its absence means a
/// store written by one of them.
pub(crate) const IDENTITY: TableDefinition<&str, &[u8]> = TableDefinition::new("identity_v1");
pub(crate) const IDENTITY_KEY: &str = "identity";

/// Encodes a log index as a `LOG` key.
pub(crate) fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// The open redb file plus its path, which every error message carries.
#[derive(Debug)]
pub(crate) struct Db {
    pub(crate) db: Database,
    pub(crate) path: PathBuf,
}

impl Db {
    /// Opens `<dir>/raft.redb`, creating and initializing it when absent. `init_state` is the
    /// serialized default application state written into a fresh file.
    pub(crate) fn open(
        dir: &Path,
        init_state: impl FnOnce(&Db) -> Result<Vec<u8>, StoreError>,
    ) -> Result<Db, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path).map_err(|source| match source {
            redb::DatabaseError::DatabaseAlreadyOpen => {
                StoreError::AlreadyOpen { path: path.clone() }
            }
            source => StoreError::Open {
                path: path.clone(),
                source: Box::new(source),
            },
        })?;
        let db = Db { db, path };

        match db.format_version()? {
            Some(FORMAT_VERSION) => {}
            Some(found) => {
                return Err(StoreError::UnsupportedFormatVersion {
                    path: db.path.clone(),
                    found,
                    supported: FORMAT_VERSION,
                });
            }
            None => {
                // Only a file with no tables at all is ours to initialize; anything else was
                // written by someone else and must not be modified.
                if db.has_tables()? {
                    return Err(StoreError::NotARaftStore {
                        path: db.path.clone(),
                    });
                }
                let state = init_state(&db)?;
                db.initialize(&state)?;
                tracing::info!(path = %db.path.display(), version = FORMAT_VERSION, "created raft store");
            }
        }
        Ok(db)
    }

    fn format_version(&self) -> Result<Option<u64>, StoreError> {
        let txn = self.db.begin_read().map_err(self.err("begin read"))?;
        let table = match txn.open_table(META) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.err("open meta table")(e)),
        };
        let version = table
            .get(FORMAT_VERSION_KEY)
            .map_err(self.err("read format_version"))?;
        Ok(version.map(|v| v.value()))
    }

    fn has_tables(&self) -> Result<bool, StoreError> {
        let txn = self.db.begin_read().map_err(self.err("begin read"))?;
        let mut tables = txn.list_tables().map_err(self.err("list tables"))?;
        Ok(tables.next().is_some())
    }

    /// Writes the version marker and creates every table, in one durable transaction, so a
    /// crash mid-way leaves an empty (re-initializable) file rather than a half-made one.
    fn initialize(&self, state: &[u8]) -> Result<(), StoreError> {
        self.write("initialize store", |txn| {
            let mut meta = txn.open_table(META).map_err(self.err("open meta table"))?;
            meta.insert(FORMAT_VERSION_KEY, FORMAT_VERSION)
                .map_err(self.err("write format_version"))?;
            txn.open_table(LOG).map_err(self.err("create log table"))?;
            txn.open_table(RAFT_META)
                .map_err(self.err("create raft meta table"))?;
            txn.open_table(SNAPSHOT)
                .map_err(self.err("create snapshot table"))?;
            let mut sm = txn
                .open_table(SM)
                .map_err(self.err("create state machine table"))?;
            sm.insert(STATE_KEY, state)
                .map_err(self.err("write initial state"))?;
            Ok(())
        })
    }

    /// Returns a mapper from any redb error to [`StoreError::Db`] naming this file and `op`.
    pub(crate) fn err<E: Into<redb::Error>>(
        &self,
        op: &'static str,
    ) -> impl FnOnce(E) -> StoreError + use<'_, E> {
        move |e| StoreError::Db {
            path: self.path.clone(),
            op,
            source: Box::new(e.into()),
        }
    }

    pub(crate) fn encode<T: Serialize + ?Sized>(
        &self,
        what: &'static str,
        value: &T,
    ) -> Result<Vec<u8>, StoreError> {
        serde_json::to_vec(value).map_err(|source| StoreError::Encode {
            path: self.path.clone(),
            what,
            source,
        })
    }

    pub(crate) fn decode<T: DeserializeOwned>(
        &self,
        what: &'static str,
        bytes: &[u8],
    ) -> Result<T, StoreError> {
        serde_json::from_slice(bytes).map_err(|source| StoreError::Decode {
            path: self.path.clone(),
            what,
            source,
        })
    }

    /// Reads and decodes one JSON value from a `&str -> &[u8]` table.
    pub(crate) fn get_json<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &'static str,
    ) -> Result<Option<T>, StoreError> {
        let txn = self.db.begin_read().map_err(self.err("begin read"))?;
        let t = txn.open_table(table).map_err(self.err("open table"))?;
        let Some(v) = t.get(key).map_err(self.err("read value"))? else {
            return Ok(None);
        };
        self.decode(key, v.value()).map(Some)
    }

    /// Runs `f` in a write transaction committed with `Durability::Immediate`, i.e. fsynced
    /// before this returns.
    pub(crate) fn write<R>(
        &self,
        op: &'static str,
        f: impl FnOnce(&WriteTransaction) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        // Immediate is redb's default; set it anyway so the durability this store relies on
        // is stated here rather than inherited.
        self.write_with(op, Durability::Immediate, f)
    }

    /// Runs `f` in a write transaction committed with `durability`. `Durability::None` makes
    /// the change visible at once and durable with the next immediate commit.
    pub(crate) fn write_with<R>(
        &self,
        op: &'static str,
        durability: Durability,
        f: impl FnOnce(&WriteTransaction) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut txn = self.db.begin_write().map_err(self.err(op))?;
        txn.set_durability(durability).map_err(self.err(op))?;
        let r = f(&txn)?;
        txn.commit().map_err(self.err(op))?;
        Ok(r)
    }
}

/// Runs a durable write on a blocking thread of `C`'s runtime, so the fsync does not stall an
/// async worker, and waits for it.
pub(crate) async fn write_blocking<C, R>(
    db: &std::sync::Arc<Db>,
    op: &'static str,
    f: impl FnOnce(&WriteTransaction, &Db) -> Result<R, StoreError> + Send + 'static,
) -> Result<R, StoreError>
where
    C: RaftTypeConfig,
    R: Send + 'static,
{
    write_blocking_with::<C, R>(db, op, Durability::Immediate, f).await
}

/// [`write_blocking`] with a chosen durability. Even a write without fsync waits for the one
/// redb writer, which may be inside another transaction's fsync: hence the blocking thread.
pub(crate) async fn write_blocking_with<C, R>(
    db: &std::sync::Arc<Db>,
    op: &'static str,
    durability: Durability,
    f: impl FnOnce(&WriteTransaction, &Db) -> Result<R, StoreError> + Send + 'static,
) -> Result<R, StoreError>
where
    C: RaftTypeConfig,
    R: Send + 'static,
{
    let db = db.clone();
    let path = db.path.clone();
    C::spawn_blocking(move || db.write_with(op, durability, |txn| f(txn, &db)))
        .await
        .map_err(|source| StoreError::Task { path, op, source })?
}
