//! [`ChunkStore::cut_tail`]: cut a replica's log back to the prefix it shares with its primary.
//!
//! A replica that diverged from its primary holds records after the common prefix that were
//! never acknowledged (a deposed primary's writes that no in-sync replica received). Cutting
//! them and catching up record by record is far cheaper than copying the primary's chunk
//! files, and possible as long as they are not flushed: a record in a chunk file is sorted
//! among the others and cannot be taken out again. Steps, on the commit thread (which owns the
//! WAL's end and the dedup state), so no append or apply interleaves:
//!
//! ```text
//! 1. refuse  while a flush is between its freeze and its end (its frozen state lists the
//!            records), or when `lsn` is below the flushed lsn; nothing changes
//! 2. MANIFEST its dedup state cut back to lsn if a flush saved it at a later one
//! 3. WAL     segments starting after lsn + 1 deleted, the one holding lsn + 1 truncated at
//!            that record's frame, fdatasync'd (file, then directory)
//! 4. dedup   the pairs applied after lsn forgotten (`DedupSnapshot::through`)
//! 5. view    the records after lsn leave memory; rows and checksum as they were at lsn
//! ```
//!
//! A crash after step 2 reopens as before the cut (the WAL's records after lsn replay on top of
//! the state at lsn); after step 3 only memory is lost: a reopen replays the shorter WAL. A
//! failure in step 3 fails the store as a failed write does (only a reopen knows what the disk
//! holds).

use std::sync::PoisonError;
use std::sync::atomic::Ordering;

use crate::dedup::Dedup;
use crate::error::StorageError;
use crate::group_commit::{Committer, Msg};
use crate::manifest;
use crate::store::{ChunkStore, Shared};
use crate::types::ReplicaPosition;

impl ChunkStore {
    /// Cut the records after `lsn` (none if `lsn ≥ last_lsn()`), answering the position
    /// after. [`StorageError::CannotCutTail`] (nothing changed) when records after `lsn` are
    /// in chunk files or a flush is in progress: copy the replica whole instead, or ask again.
    pub async fn cut_tail(&self, lsn: u64) -> Result<ReplicaPosition, StorageError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Msg::CutTail(lsn, tx))?;
        rx.await.map_err(|_| StorageError::Closed {
            dir: self.dir().to_path_buf(),
        })??;
        Ok(self.position())
    }
}

impl Committer {
    /// [`ChunkStore::cut_tail`] on the commit thread (steps in the module docs).
    pub(crate) fn cut_tail(&mut self, after: u64) -> Result<(), StorageError> {
        if let Some(reason) = &self.failed {
            return Err(self.failed_err(reason));
        }
        if after + 1 >= self.next_lsn {
            return Ok(());
        }
        let refuse = |reason: String| StorageError::CannotCutTail {
            dir: self.shared.dir.clone(),
            lsn: after,
            reason,
        };
        if self.shared.flushes_in_flight.load(Ordering::SeqCst) > 0 {
            return Err(refuse("a flush is in progress".into()));
        }
        let base = self
            .shared
            .view
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .base();
        if after < base {
            return Err(refuse(format!("records up to {base} are in chunk files")));
        }
        let dedup = Dedup::restore(&self.dedup.snapshot().through(after)).map_err(|reason| {
            StorageError::Corrupt {
                path: self.shared.dir.clone(),
                offset: 0,
                reason: format!("dedup state cut at lsn {after}: {reason}"),
            }
        })?;
        cut_manifest_dedup(&self.shared, after)?;
        let cut = self
            .wal
            .mark_after(after)
            .and_then(|mark| self.wal.cut_back(&mark));
        if let Err(e) = cut {
            self.fail_store("cutting the WAL's tail", &e);
            return Err(e);
        }
        self.dedup = dedup;
        tracing::warn!(dir = %self.shared.dir.display(), after,
            dropped = self.next_lsn - 1 - after,
            "cut the records after the prefix this replica shares with its primary");
        self.next_lsn = after + 1;
        let mut view = self
            .shared
            .view
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        view.truncate_after(after);
        view.wal_bytes = self.wal.bytes_on_disk();
        Ok(())
    }
}

/// A MANIFEST whose dedup state is from after `after` (a flush saves the state at the lsn it
/// froze, past what it flushed) is rewritten with the state at `after` first: a reopen must
/// not find the pairs cut, whose lsns other records take next.
fn cut_manifest_dedup(shared: &Shared, after: u64) -> Result<(), StorageError> {
    let mut st = shared.flushed_if_open()?;
    if st.manifest_bytes == 0 || st.manifest.dedup_lsn <= after {
        return Ok(());
    }
    let mut m = st.manifest.clone();
    m.dedup = m.dedup.through(after);
    m.dedup_lsn = after;
    st.manifest_bytes = manifest::write(&shared.dir, &m)?;
    st.manifest = m;
    shared
        .view
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .other_bytes = st.bytes();
    Ok(())
}
