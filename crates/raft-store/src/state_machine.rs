//! [`StateMachineStore`]: the applied application state, held in memory and persisted with
//! each snapshot, plus snapshot building and installation.

use std::fmt;
use std::io;
use std::io::Cursor;
use std::sync::Arc;
use std::sync::PoisonError;
use std::sync::RwLock;
use std::sync::RwLockReadGuard;
use std::sync::RwLockWriteGuard;

use futures::Stream;
use futures::TryStreamExt;
use openraft::EntryPayload;
use openraft::OptionalSend;
use openraft::RaftSnapshotBuilder;
use openraft::RaftTypeConfig;
use openraft::StoredMembership;
use openraft::storage::EntryResponder;
use openraft::storage::RaftStateMachine;
use openraft::type_config::alias::LogIdOf;
use openraft::type_config::alias::SnapshotMetaOf;
use openraft::type_config::alias::SnapshotOf;
use openraft::type_config::alias::StoredMembershipOf;
use redb::ReadableDatabase;
use redb::ReadableTable;
use redb::WriteTransaction;
use serde::Deserialize;
use serde::Serialize;

use crate::MetaState;
use crate::StoreConfig;
use crate::StoreError;
use crate::db::Db;
use crate::db::LAST_APPLIED_KEY;
use crate::db::LAST_MEMBERSHIP_KEY;
use crate::db::SM;
use crate::db::SNAPSHOT;
use crate::db::SNAPSHOT_DATA_KEY;
use crate::db::SNAPSHOT_META_KEY;
use crate::db::STATE_KEY;
use crate::db::write_blocking;

/// Version of the snapshot data layout. Snapshots travel between nodes, so they carry their
/// own version independent of the file's `format_version`.
const SNAPSHOT_VERSION: u64 = 1;

/// A read handle on the applied application state.
///
/// Cloned out of the [`StateMachineStore`] before the store is handed to `Raft`; readers then
/// see every applied batch as soon as it has been applied in memory (persistence and client
/// responses follow right after). Only the state machine can write.
#[derive(Debug)]
pub struct SharedState<S>(Arc<RwLock<S>>);

impl<S> Clone for SharedState<S> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<S> SharedState<S> {
    fn new(state: S) -> Self {
        Self(Arc::new(RwLock::new(state)))
    }

    /// Locks the state for reading. Hold the guard briefly: applying waits for it.
    pub fn read(&self) -> RwLockReadGuard<'_, S> {
        // A poisoned lock means `MetaState::apply` panicked, which also takes down the Raft
        // state machine task; readers still get the last state rather than a second panic.
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, S> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The snapshot data: JSON of the full applied state at one log id.
#[derive(Serialize, Deserialize)]
struct SnapshotWire<St, L, M> {
    version: u64,
    state: St,
    last_applied: L,
    last_membership: M,
}

type SnapshotData<C, St> = SnapshotWire<St, Option<LogIdOf<C>>, StoredMembershipOf<C>>;

/// The replicated state machine of one node, stored in `raft.redb`.
///
/// Implements [`RaftStateMachine`]. `S` lives in memory behind a [`SharedState`]; it is written
/// to disk (with its last applied log id and membership) only with each snapshot, and a
/// restart re-applies the log after it.
pub struct StateMachineStore<C: RaftTypeConfig, S> {
    db: Arc<Db>,
    state: SharedState<S>,
    last_applied: Option<LogIdOf<C>>,
    last_membership: StoredMembershipOf<C>,
}

impl<C: RaftTypeConfig, S> fmt::Debug for StateMachineStore<C, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateMachineStore")
            .field("path", &self.db.path)
            .field("last_applied", &self.last_applied)
            .finish_non_exhaustive()
    }
}

impl<C: RaftTypeConfig, S> StateMachineStore<C, S> {
    /// A read handle on the applied state, usable after the store is moved into `Raft`.
    pub fn state(&self) -> SharedState<S> {
        self.state.clone()
    }
}

impl<C, S> StateMachineStore<C, S>
where
    C: StoreConfig,
    S: MetaState<C>,
{
    /// Loads the persisted state machine from an opened, initialized file.
    pub(crate) fn load(db: Arc<Db>) -> Result<Self, StoreError> {
        let state: S = db
            .get_json(SM, STATE_KEY)?
            .ok_or_else(|| StoreError::Missing {
                path: db.path.clone(),
                what: "state machine state",
            })?;
        let last_applied: Option<LogIdOf<C>> = db.get_json(SM, LAST_APPLIED_KEY)?.flatten();
        let last_membership: StoredMembershipOf<C> =
            db.get_json(SM, LAST_MEMBERSHIP_KEY)?.unwrap_or_default();
        Ok(Self {
            db,
            state: SharedState::new(state),
            last_applied,
            last_membership,
        })
    }

    fn invalid_snapshot(&self, reason: String) -> StoreError {
        StoreError::InvalidSnapshot {
            path: self.db.path.clone(),
            reason,
        }
    }
}

/// Rewrites the three state-machine rows; callers do it inside one transaction so they never
/// disagree on disk.
fn put_applied(
    txn: &WriteTransaction,
    db: &Db,
    state: &[u8],
    last_applied: &[u8],
    last_membership: &[u8],
) -> Result<(), StoreError> {
    let mut t = txn
        .open_table(SM)
        .map_err(db.err("open state machine table"))?;
    t.insert(STATE_KEY, state).map_err(db.err("write state"))?;
    t.insert(LAST_APPLIED_KEY, last_applied)
        .map_err(db.err("write last applied"))?;
    t.insert(LAST_MEMBERSHIP_KEY, last_membership)
        .map_err(db.err("write last membership"))?;
    Ok(())
}

fn put_snapshot(
    txn: &WriteTransaction,
    db: &Db,
    meta: &[u8],
    data: &[u8],
) -> Result<(), StoreError> {
    let mut t = txn
        .open_table(SNAPSHOT)
        .map_err(db.err("open snapshot table"))?;
    t.insert(SNAPSHOT_META_KEY, meta)
        .map_err(db.err("write snapshot meta"))?;
    t.insert(SNAPSHOT_DATA_KEY, data)
        .map_err(db.err("write snapshot data"))?;
    Ok(())
}

impl<C, S> RaftStateMachine<C> for StateMachineStore<C, S>
where
    C: StoreConfig,
    S: MetaState<C>,
{
    type SnapshotData = Cursor<Vec<u8>>;
    type SnapshotBuilder = SnapshotBuilder<C, S>;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogIdOf<C>>, StoredMembershipOf<C>), io::Error> {
        Ok((self.last_applied.clone(), self.last_membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<C>, io::Error>> + Unpin + OptionalSend,
    {
        // Collect first: the state lock is a std lock and must not be held across an await.
        let mut batch = Vec::new();
        while let Some(item) = entries.try_next().await? {
            batch.push(item);
        }
        if batch.is_empty() {
            return Ok(());
        }

        let mut last_applied = self.last_applied.clone();
        let mut last_membership = self.last_membership.clone();
        let mut replies = Vec::with_capacity(batch.len());
        {
            let mut state = self.state.write();
            for (entry, responder) in batch {
                let response = match &entry.payload {
                    EntryPayload::Blank => C::R::default(),
                    EntryPayload::Normal(cmd) => state.apply(cmd),
                    EntryPayload::Membership(m) => {
                        last_membership =
                            StoredMembership::new(Some(entry.log_id.clone()), m.clone());
                        C::R::default()
                    }
                };
                last_applied = Some(entry.log_id);
                if let Some(responder) = responder {
                    replies.push((responder, response));
                }
            }
        }
        // Nothing is written here: the entries are durable in the log of a quorum, and a
        // restart re-applies them from the last snapshot (`LogStore::save_committed`). Writing
        // the whole state per batch cost O(state) per commit.
        self.last_applied = last_applied;
        self.last_membership = last_membership;
        for (responder, response) in replies {
            responder.send(response);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // Called between apply batches, so the copy is one consistent applied point.
        SnapshotBuilder {
            db: self.db.clone(),
            applied: SnapshotWire {
                version: SNAPSHOT_VERSION,
                state: self.state.read().clone(),
                last_applied: self.last_applied.clone(),
                last_membership: self.last_membership.clone(),
            },
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<C>,
        snapshot: Self::SnapshotData,
    ) -> Result<(), io::Error> {
        let data = snapshot.into_inner();
        let decoded: SnapshotData<C, S> = self.db.decode("snapshot data", &data)?;
        if decoded.version != SNAPSHOT_VERSION {
            return Err(self
                .invalid_snapshot(format!(
                    "snapshot version {} is not supported (this build reads version {SNAPSHOT_VERSION})",
                    decoded.version
                ))
                .into());
        }
        // The meta is what openraft reasons with; data that disagrees with it is corrupt.
        if decoded.last_applied != meta.last_log_id
            || decoded.last_membership != meta.last_membership
        {
            return Err(self
                .invalid_snapshot(format!(
                    "snapshot data (last applied {:?}) does not match its meta {meta}",
                    decoded.last_applied
                ))
                .into());
        }

        let state_bytes = self.db.encode("state", &decoded.state)?;
        let applied_bytes = self.db.encode("last applied", &meta.last_log_id)?;
        let membership_bytes = self.db.encode("last membership", &meta.last_membership)?;
        let meta_bytes = self.db.encode("snapshot meta", meta)?;
        // State machine and current snapshot are replaced together, before memory, so a failed
        // write leaves both the file and the in-memory state as they were.
        write_blocking::<C, _>(&self.db, "install snapshot", move |txn, db| {
            put_applied(txn, db, &state_bytes, &applied_bytes, &membership_bytes)?;
            put_snapshot(txn, db, &meta_bytes, &data)
        })
        .await?;

        *self.state.write() = decoded.state;
        self.last_applied = meta.last_log_id.clone();
        self.last_membership = meta.last_membership.clone();
        tracing::info!(%meta, "installed raft snapshot");
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<C, Self::SnapshotData>>, io::Error> {
        Ok(read_current_snapshot::<C>(&self.db)?)
    }
}

/// A snapshot as this store hands it to openraft: metadata plus the serialized bytes.
type BytesSnapshot<C> = SnapshotOf<C, Cursor<Vec<u8>>>;

fn read_current_snapshot<C: RaftTypeConfig>(
    db: &Db,
) -> Result<Option<BytesSnapshot<C>>, StoreError> {
    let txn = db.db.begin_read().map_err(db.err("begin read"))?;
    let t = txn
        .open_table(SNAPSHOT)
        .map_err(db.err("open snapshot table"))?;
    let Some(meta) = t
        .get(SNAPSHOT_META_KEY)
        .map_err(db.err("read snapshot meta"))?
    else {
        return Ok(None);
    };
    let meta: SnapshotMetaOf<C> = db.decode("snapshot meta", meta.value())?;
    let data = t
        .get(SNAPSHOT_DATA_KEY)
        .map_err(db.err("read snapshot data"))?
        .ok_or_else(|| StoreError::Missing {
            path: db.path.clone(),
            what: "snapshot data",
        })?
        .value()
        .to_vec();
    Ok(Some(BytesSnapshot::<C> {
        meta,
        snapshot: Cursor::new(data),
    }))
}

/// Builds a snapshot of the state as it was when openraft asked for the builder, and makes it
/// the persisted state machine too (in the same transaction), so a restart starts from it.
pub struct SnapshotBuilder<C: RaftTypeConfig, S> {
    db: Arc<Db>,
    applied: SnapshotData<C, S>,
}

impl<C: RaftTypeConfig, S> fmt::Debug for SnapshotBuilder<C, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotBuilder")
            .field("path", &self.db.path)
            .field("last_applied", &self.applied.last_applied)
            .finish()
    }
}

impl<C, S> RaftSnapshotBuilder<C> for SnapshotBuilder<C, S>
where
    C: StoreConfig,
    S: MetaState<C>,
{
    type SnapshotData = Cursor<Vec<u8>>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<C, Cursor<Vec<u8>>>, io::Error> {
        let applied = &self.applied;
        let meta = SnapshotMetaOf::<C> {
            last_log_id: applied.last_applied.clone(),
            last_membership: applied.last_membership.clone(),
        };
        let data = self.db.encode("snapshot data", applied)?;
        let state_bytes = self.db.encode("state", &applied.state)?;
        let applied_bytes = self.db.encode("last applied", &applied.last_applied)?;
        let membership_bytes = self
            .db
            .encode("last membership", &applied.last_membership)?;
        let meta_bytes = self.db.encode("snapshot meta", &meta)?;

        let new_last = meta.last_log_id.clone();
        let stored_data = data.clone();
        let replaced = write_blocking::<C, _>(&self.db, "store snapshot", move |txn, db| {
            // A snapshot installed while this one was being built may be newer; never let
            // the older one replace it (or the state machine it wrote).
            let current: Option<SnapshotMetaOf<C>> = {
                let t = txn
                    .open_table(SNAPSHOT)
                    .map_err(db.err("open snapshot table"))?;
                let v = t
                    .get(SNAPSHOT_META_KEY)
                    .map_err(db.err("read snapshot meta"))?;
                v.map(|v| db.decode("snapshot meta", v.value()))
                    .transpose()?
            };
            if current.is_some_and(|c| c.last_log_id > new_last) {
                return Ok(false);
            }
            put_applied(txn, db, &state_bytes, &applied_bytes, &membership_bytes)?;
            put_snapshot(txn, db, &meta_bytes, &stored_data)?;
            Ok(true)
        })
        .await?;
        tracing::info!(%meta, replaced, size = data.len(), "built raft snapshot");

        Ok(SnapshotOf::<C, Cursor<Vec<u8>>> {
            meta,
            snapshot: Cursor::new(data),
        })
    }
}
