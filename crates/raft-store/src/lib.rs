//! Durable [openraft] storage for Shoal's controller Raft group, on a single [redb] file.
//!
//! [`open`] returns the two halves openraft wants: a [`LogStore`] (log entries, vote, purge
//! marker) and a [`StateMachineStore`] (the application state `S`, a [`MetaState`]). Both
//! share one file, `<dir>/raft.redb`.
//!
//! # On-disk layout (format version 1)
//!
//! | table              | key                        | value                                   |
//! |--------------------|----------------------------|-----------------------------------------|
//! | `meta`             | `"format_version"`         | `u64` = 1                               |
//! | `raft_log_v1`      | log index, `u64` big-endian| serde_json of the openraft `Entry`      |
//! | `raft_meta_v1`     | `"vote"`, `"last_purged_log_id"`, `"committed"` | serde_json         |
//! | `state_machine_v1` | `"state"`, `"last_applied"`, `"last_membership"` | serde_json        |
//! | `snapshot_v1`      | `"meta"`, `"data"`         | serde_json `SnapshotMeta`; data bytes   |
//! | `identity_v1`      | `"identity"`               | serde_json [`Identity`] (since 0.2)     |
//!
//! `meta` is unversioned so that any build can read the version of any file; [`open`]
//! refuses versions it does not know. Every other table carries the version in its name, so
//! a future format can live next to (and migrate from) this one. `identity_v1` was added
//! without a format bump: it is created on first write, and a build that predates it neither
//! reads it nor minds it (see [`identity`]).
//!
//! # Durability
//!
//! Every write is a redb transaction committed with `Durability::Immediate` (fsync) and runs
//! on a blocking thread of the Raft runtime:
//!
//! - `save_vote` and `append` return (and `append` signals its `IOFlushed` callback) only after
//!   the commit;
//! - `purge` writes the purge marker and deletes the entries in one transaction;
//! - `apply` only mutates the in-memory `S` and answers clients: the entries are already
//!   durable in the log of a quorum. `S` (whole, as JSON), its last applied log id and
//!   membership are written with each snapshot (openraft's default policy: every 5,000
//!   entries), in the same transaction as the snapshot. Earlier builds (0.1 among them)
//!   rewrote `S` whole on every apply batch, O(catalog) per commit.
//! - `save_committed` records the commit index without an fsync (the next append's fsync
//!   carries it). On start openraft loads the state machine at the snapshot and re-applies the
//!   log up to that index before the node serves anything; if a crash lost it, the node
//!   re-applies once it hears the leader's commit index.
//!
//! The layout is the same as 0.1's, only `state_machine_v1` may lag the log and `"committed"`
//! is new. 0.1 (a rollback before the finalize) reads such a file correctly: it loads the
//! state at the snapshot and, not reading `"committed"`, re-applies the log after it when it
//! hears the leader's commit index (the log after the snapshot is never purged); the cluster
//! version keeps commands it cannot decode out of that log.
//!
//! # Snapshots
//!
//! A snapshot's data is the JSON of `{version, state, last_applied, last_membership}`. Building
//! one reads the persisted state-machine rows (a consistent redb read), stores it as the current
//! snapshot and returns it; installing one replaces the state machine and the current snapshot
//! in one transaction.
//!
//! [openraft]: https://docs.rs/openraft
//! [redb]: https://docs.rs/redb

use std::path::Path;
use std::sync::Arc;

use openraft::RaftTypeConfig;
use openraft::type_config::alias::DefaultEntryOf;
use openraft::type_config::alias::EntryPayloadOf;

mod db;
mod error;
pub mod identity;
mod log_store;
mod state_machine;

#[cfg(test)]
mod tests;

pub use error::StoreError;
pub use identity::Identity;
pub use identity::IdentityStore;
pub use log_store::LogStore;
pub use state_machine::SharedState;
pub use state_machine::SnapshotBuilder;
pub use state_machine::StateMachineStore;

/// The replicated application state. Implemented by the controller's cluster metadata.
pub trait MetaState<C: RaftTypeConfig>:
    Default + Clone + serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static
{
    /// Apply one committed application command (C::D) and return its response (C::R).
    fn apply(&mut self, cmd: &C::D) -> C::R;
}

/// The type-config requirements of this store.
///
/// The state machine has to look inside log entries, which openraft only allows for its own
/// `Entry`/`EntryPayload` types, and answers blank and membership entries with `R::default()`.
/// A config declared with `openraft::declare_raft_types!` that leaves `Entry` and `Payload` at
/// their defaults and uses a `Default` response type implements this automatically.
pub trait StoreConfig:
    RaftTypeConfig<Entry = DefaultEntryOf<Self>, Payload = EntryPayloadOf<Self>, R: Default>
{
}

impl<C> StoreConfig for C where
    C: RaftTypeConfig<Entry = DefaultEntryOf<C>, Payload = EntryPayloadOf<C>, R: Default>
{
}

/// Opens (creating if absent) `<dir>/raft.redb` — one redb file holding the log, vote, purge
/// marker, the state machine as of the current snapshot (state + last_applied +
/// last_membership) and the current snapshot.
///
/// A new file is initialized with format version 1 and `S::default()`. An existing file must be
/// format version 1; the persisted state, last applied log id and membership are loaded back
/// (openraft then re-applies the log after them, see `LogStore::save_committed`).
///
/// This does blocking file IO (and redb may repair the file after a crash); call it at startup.
pub fn open<C, S>(dir: &Path) -> Result<(LogStore<C>, StateMachineStore<C, S>), StoreError>
where
    C: StoreConfig,
    S: MetaState<C>,
{
    let db = db::Db::open(dir, |db| db.encode("initial state", &S::default()))?;
    let db = Arc::new(db);
    let sm = StateMachineStore::load(db.clone())?;
    Ok((LogStore::new(db), sm))
}
