//! [`LogStore`]: openraft's log storage (entries, vote, purge marker) on the shared redb file.

use std::fmt;
use std::fmt::Debug;
use std::io;
use std::marker::PhantomData;
use std::ops::Bound;
use std::ops::RangeBounds;
use std::sync::Arc;

use openraft::LogState;
use openraft::OptionalSend;
use openraft::RaftLogReader;
use openraft::RaftTypeConfig;
use openraft::entry::RaftEntry;
use openraft::storage::IOFlushed;
use openraft::storage::RaftLogStorage;
use openraft::type_config::alias::LogIdOf;
use openraft::type_config::alias::VoteOf;
use redb::ReadableDatabase;
use redb::ReadableTable;

use crate::StoreError;
use crate::db::COMMITTED_KEY;
use crate::db::Db;
use crate::db::LAST_PURGED_KEY;
use crate::db::LOG;
use crate::db::RAFT_META;
use crate::db::VOTE_KEY;
use crate::db::log_key;
use crate::db::write_blocking;
use crate::db::write_blocking_with;

/// The Raft log, vote and purge marker of one node, stored in `raft.redb`.
///
/// Implements [`RaftLogStorage`] and, for the replication tasks, [`RaftLogReader`]. Clones
/// share the same open database, so a reader obtained earlier sees later appends.
pub struct LogStore<C: RaftTypeConfig> {
    db: Arc<Db>,
    _c: PhantomData<C>,
}

impl<C: RaftTypeConfig> LogStore<C> {
    pub(crate) fn new(db: Arc<Db>) -> Self {
        Self {
            db,
            _c: PhantomData,
        }
    }

    /// The identity record of the same file.
    pub fn identity(&self) -> crate::IdentityStore {
        crate::IdentityStore::new(self.db.clone())
    }

    fn read_entries(&self, start: u64, end: Option<u64>) -> Result<Vec<C::Entry>, StoreError> {
        let db = &self.db;
        let txn = db.db.begin_read().map_err(db.err("begin read"))?;
        let table = txn.open_table(LOG).map_err(db.err("open log table"))?;
        let upper = match end {
            Some(end) => Bound::Excluded(log_key(end)),
            None => Bound::Unbounded,
        };
        let range = table
            .range::<[u8; 8]>((Bound::Included(log_key(start)), upper))
            .map_err(db.err("read log range"))?;
        let mut entries = Vec::new();
        for row in range {
            let (_, value) = row.map_err(db.err("read log entry"))?;
            entries.push(db.decode::<C::Entry>("log entry", value.value())?);
        }
        Ok(entries)
    }

    fn log_state(&self) -> Result<LogState<C>, StoreError> {
        let db = &self.db;
        let last_purged_log_id: Option<LogIdOf<C>> = db.get_json(RAFT_META, LAST_PURGED_KEY)?;

        let txn = db.db.begin_read().map_err(db.err("begin read"))?;
        let table = txn.open_table(LOG).map_err(db.err("open log table"))?;
        let last = match table.last().map_err(db.err("read last log entry"))? {
            Some((_, v)) => Some(db.decode::<C::Entry>("log entry", v.value())?.log_id()),
            None => None,
        };

        // With every entry purged, the last log id is the purge marker (openraft's contract).
        let last_log_id = last.or_else(|| last_purged_log_id.clone());
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }
}

impl<C: RaftTypeConfig> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        Self::new(self.db.clone())
    }
}

impl<C: RaftTypeConfig> fmt::Debug for LogStore<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogStore")
            .field("path", &self.db.path)
            .finish()
    }
}

/// Resolves any `RangeBounds<u64>` to `[start, end)` with `end == None` meaning unbounded;
/// `None` overall when the range is empty.
fn resolve_range(range: &impl RangeBounds<u64>) -> Option<(u64, Option<u64>)> {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.checked_add(1),
        Bound::Excluded(&e) => Some(e),
        Bound::Unbounded => None,
    };
    match end {
        // redb, like BTreeMap, must not be handed an inverted range.
        Some(end) if end <= start => None,
        _ => Some((start, end)),
    }
}

impl<C: RaftTypeConfig> RaftLogReader<C> for LogStore<C> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, io::Error> {
        let Some((start, end)) = resolve_range(&range) else {
            return Ok(Vec::new());
        };
        Ok(self.read_entries(start, end)?)
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<C>>, io::Error> {
        Ok(self.db.get_json(RAFT_META, VOTE_KEY)?)
    }
}

impl<C: RaftTypeConfig> RaftLogStorage<C> for LogStore<C> {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        Ok(self.log_state()?)
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<C>) -> Result<(), io::Error> {
        let bytes = self.db.encode("vote", vote)?;
        // Durable before returning: a node must never forget a vote it granted.
        write_blocking::<C, _>(&self.db, "save vote", move |txn, db| {
            let mut t = txn
                .open_table(RAFT_META)
                .map_err(db.err("open raft meta table"))?;
            t.insert(VOTE_KEY, bytes.as_slice())
                .map_err(db.err("write vote"))?;
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// The state machine persists its state only with snapshots, so a restarted node re-applies
    /// the log from the snapshot up to this id (openraft does it before the node serves
    /// anything). Written without an fsync: the next append's fsync carries it, and if a crash
    /// loses it the node re-applies up to what it had instead once it hears the leader's
    /// commit index. Either way it never applies an entry that was not committed.
    async fn save_committed(&mut self, committed: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let bytes = self.db.encode("committed log id", &committed)?;
        write_blocking_with::<C, _>(
            &self.db,
            "save committed log id",
            redb::Durability::None,
            move |txn, db| {
                let mut t = txn
                    .open_table(RAFT_META)
                    .map_err(db.err("open raft meta table"))?;
                t.insert(COMMITTED_KEY, bytes.as_slice())
                    .map_err(db.err("write committed log id"))?;
                Ok(())
            },
        )
        .await?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<C>>, io::Error> {
        Ok(self
            .db
            .get_json::<Option<LogIdOf<C>>>(RAFT_META, COMMITTED_KEY)?
            .flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut rows = Vec::new();
        for entry in entries {
            rows.push((log_key(entry.index()), self.db.encode("log entry", &entry)?));
        }
        let count = rows.len();
        if count > 0 {
            // Written and fsynced before the callback; since we wait for the commit, the
            // entries are also readable when this returns, as openraft requires.
            write_blocking::<C, _>(&self.db, "append log entries", move |txn, db| {
                let mut t = txn.open_table(LOG).map_err(db.err("open log table"))?;
                for (key, value) in &rows {
                    t.insert(key, value.as_slice())
                        .map_err(db.err("write log entry"))?;
                }
                Ok(())
            })
            .await?;
        }
        tracing::trace!(count, "raft log entries appended");
        callback.io_completed(Ok(()));
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let Some(from) = (match &last_log_id {
            Some(id) => id.index().checked_add(1),
            None => Some(0),
        }) else {
            return Ok(());
        };
        tracing::debug!(from, "truncating raft log");
        // One transaction removes the whole suffix, so no hole can be left behind.
        write_blocking::<C, _>(&self.db, "truncate log", move |txn, db| {
            let mut t = txn.open_table(LOG).map_err(db.err("open log table"))?;
            t.retain_in::<[u8; 8], _>(log_key(from).., |_, _| false)
                .map_err(db.err("delete log entries"))?;
            Ok(())
        })
        .await?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogIdOf<C>) -> Result<(), io::Error> {
        let upto = log_id.index();
        let marker = self.db.encode("last purged log id", &log_id)?;
        tracing::debug!(upto, "purging raft log");
        // openraft requires last_purged to be persisted no later than the deletion; writing
        // both in one atomic transaction satisfies that trivially.
        write_blocking::<C, _>(&self.db, "purge log", move |txn, db| {
            let mut meta = txn
                .open_table(RAFT_META)
                .map_err(db.err("open raft meta table"))?;
            meta.insert(LAST_PURGED_KEY, marker.as_slice())
                .map_err(db.err("write last purged log id"))?;
            let mut t = txn.open_table(LOG).map_err(db.err("open log table"))?;
            t.retain_in::<[u8; 8], _>(..=log_key(upto), |_, _| false)
                .map_err(db.err("delete log entries"))?;
            Ok(())
        })
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::resolve_range;

    #[test]
    #[allow(clippy::reversed_empty_ranges)] // inverted ranges are exactly what is tested
    fn ranges_resolve_to_half_open() {
        assert_eq!(resolve_range(&(..)), Some((0, None)));
        assert_eq!(resolve_range(&(3..7)), Some((3, Some(7))));
        assert_eq!(resolve_range(&(3..=7)), Some((3, Some(8))));
        assert_eq!(resolve_range(&(3..=u64::MAX)), Some((3, None)));
        assert_eq!(resolve_range(&(5..5)), None);
        assert_eq!(resolve_range(&(6..5)), None);
    }
}
