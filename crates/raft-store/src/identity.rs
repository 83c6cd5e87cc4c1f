//! [`IdentityStore`]: who this store belongs to, next to the Raft state in `raft.redb`.
//!
//! A Raft node that lost its disk comes back with no vote and no log. Raft's safety rests on a
//! voter never forgetting a vote it granted or an entry it acknowledged, so such a node must not
//! vote (nor form a new group) until it holds again everything that was committed. The record
//! says whether this store's node has been *admitted*: it formed the group, or a leader found it
//! caught up as a learner and told it so. A store that is new (a first start, or a wiped disk)
//! starts not admitted; the record is written before the node answers any Raft RPC, so a store
//! that later receives log entries from a leader is never mistaken for an old one.
//!
//! Table `identity_v1` (key `"identity"`, serde_json of [`Identity`]). Builds that predate it
//! never open the table, so they read and write a file that has it; a file without it (written
//! by such a build) is an old member's store, see [`IdentityStore::holds_raft_state`].

use std::sync::Arc;

use redb::ReadableDatabase;
use redb::ReadableTable;
use redb::TableError;
use serde::Deserialize;
use serde::Serialize;

use crate::StoreError;
use crate::db::Db;
use crate::db::IDENTITY;
use crate::db::IDENTITY_KEY;
use crate::db::LAST_APPLIED_KEY;
use crate::db::LAST_PURGED_KEY;
use crate::db::LOG;
use crate::db::RAFT_META;
use crate::db::SM;
use crate::db::VOTE_KEY;

/// The version of [`Identity`] this build writes. A reader keeps fields it does not know out
/// (serde ignores them) and takes absent ones as their defaults.
pub const IDENTITY_VERSION: u32 = 1;

/// Which group this store's node belongs to and whether it may vote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// [`IDENTITY_VERSION`] of the build that wrote it.
    #[serde(default)]
    pub version: u32,
    /// The node's Raft id.
    pub node_id: u64,
    /// The group's id, made when it was formed; empty while not known (not admitted yet, or a
    /// group formed by a build that predates this record).
    #[serde(default)]
    pub cluster_id: String,
    /// The node formed the group, held Raft state before this record existed, or a leader
    /// admitted it after it caught up. Only an admitted node votes or campaigns.
    pub admitted: bool,
}

/// Reads and writes the [`Identity`] record of one `raft.redb`. Clones share the open file.
#[derive(Clone, Debug)]
pub struct IdentityStore {
    db: Arc<Db>,
}

impl IdentityStore {
    pub(crate) fn new(db: Arc<Db>) -> Self {
        Self { db }
    }

    /// The record, if one was written.
    pub fn read(&self) -> Result<Option<Identity>, StoreError> {
        let db = &self.db;
        let txn = db.db.begin_read().map_err(db.err("begin read"))?;
        let table = match txn.open_table(IDENTITY) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(db.err("open identity table")(e)),
        };
        let Some(v) = table.get(IDENTITY_KEY).map_err(db.err("read identity"))? else {
            return Ok(None);
        };
        db.decode("identity", v.value()).map(Some)
    }

    /// Writes the record durably (fsync'd before this returns). Blocking file IO.
    pub fn write(&self, identity: &Identity) -> Result<(), StoreError> {
        let bytes = self.db.encode("identity", identity)?;
        self.db.write("write identity", |txn| {
            let mut t = txn
                .open_table(IDENTITY)
                .map_err(self.db.err("open identity table"))?;
            t.insert(IDENTITY_KEY, bytes.as_slice())
                .map_err(self.db.err("write identity"))?;
            Ok(())
        })
    }

    /// Whether the store holds anything of Raft's: a vote, a log entry, a purge marker or an
    /// applied entry. `false` for a new file, i.e. a first start or a lost disk.
    pub fn holds_raft_state(&self) -> Result<bool, StoreError> {
        let db = &self.db;
        let txn = db.db.begin_read().map_err(db.err("begin read"))?;
        let meta = txn
            .open_table(RAFT_META)
            .map_err(db.err("open raft meta table"))?;
        for key in [VOTE_KEY, LAST_PURGED_KEY] {
            if meta.get(key).map_err(db.err("read raft meta"))?.is_some() {
                return Ok(true);
            }
        }
        let log = txn.open_table(LOG).map_err(db.err("open log table"))?;
        if log.first().map_err(db.err("read log"))?.is_some() {
            return Ok(true);
        }
        let sm = txn
            .open_table(SM)
            .map_err(db.err("open state machine table"))?;
        let applied: Option<Option<serde_json::Value>> = match sm
            .get(LAST_APPLIED_KEY)
            .map_err(db.err("read last applied"))?
        {
            Some(v) => Some(db.decode("last applied", v.value())?),
            None => None,
        };
        Ok(applied.flatten().is_some())
    }
}
