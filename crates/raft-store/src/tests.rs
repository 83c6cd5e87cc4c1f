//! Crate tests: openraft's storage conformance suite, restart recovery and format versioning.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io;
use std::path::Path;

use futures::stream;
use openraft::Membership;
use openraft::RaftLogReader;
use openraft::RaftSnapshotBuilder;
use openraft::StorageError;
use openraft::entry::RaftEntry;
use openraft::storage::EntryResponder;
use openraft::storage::IOFlushed;
use openraft::storage::RaftLogStorage;
use openraft::storage::RaftStateMachine;
use openraft::testing::log::StoreBuilder;
use openraft::testing::log::Suite;
use openraft::type_config::TypeConfigExt;
use openraft::type_config::alias::EntryOf;
use openraft::type_config::alias::LogIdOf;
use openraft::type_config::alias::VoteOf;
use serde::Deserialize;
use serde::Serialize;
use tempfile::TempDir;

use crate::LogStore;
use crate::MetaState;
use crate::StateMachineStore;
use crate::StoreError;
use crate::open;

openraft::declare_raft_types!(
    /// Test-only config: string commands, string responses, everything else default.
    pub(crate) TestConfig: D = String, R = String
);

/// A trivial state: the list of applied commands.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Applied {
    commands: Vec<String>,
}

impl MetaState<TestConfig> for Applied {
    fn apply(&mut self, cmd: &String) -> String {
        self.commands.push(cmd.clone());
        format!("applied #{}", self.commands.len())
    }
}

type Stores = (LogStore<TestConfig>, StateMachineStore<TestConfig, Applied>);

fn open_test(dir: &Path) -> Stores {
    open::<TestConfig, Applied>(dir).unwrap()
}

struct Builder;

impl StoreBuilder<TestConfig, LogStore<TestConfig>, StateMachineStore<TestConfig, Applied>, TempDir>
    for Builder
{
    async fn build(
        &self,
    ) -> Result<
        (
            TempDir,
            LogStore<TestConfig>,
            StateMachineStore<TestConfig, Applied>,
        ),
        StorageError<TestConfig>,
    > {
        let dir = TempDir::new().map_err(|e| StorageError::read(TestConfig::err_from_error(&e)))?;
        let (log, sm) =
            open(dir.path()).map_err(|e| StorageError::read(TestConfig::err_from_error(&e)))?;
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite() {
    Suite::test_all(Builder).await.unwrap();
}

fn log_id(term: u64, index: u64) -> LogIdOf<TestConfig> {
    openraft::testing::log_id::<TestConfig>(term, 1, index)
}

fn membership(nodes: &[u64]) -> Membership<u64, openraft::BasicNode> {
    let voters: BTreeSet<u64> = nodes.iter().copied().collect();
    Membership::new_with_defaults(vec![voters], [])
}

async fn append(log: &mut LogStore<TestConfig>, entries: Vec<EntryOf<TestConfig>>) {
    let (tx, rx) = TestConfig::oneshot();
    log.append(entries, IOFlushed::signal(tx)).await.unwrap();
    // The callback must have fired with success by the time append returns.
    rx.await.unwrap().unwrap();
}

async fn apply(sm: &mut StateMachineStore<TestConfig, Applied>, entries: Vec<EntryOf<TestConfig>>) {
    let items: Vec<Result<EntryResponder<TestConfig>, io::Error>> =
        entries.into_iter().map(|e| Ok((e, None))).collect();
    sm.apply(stream::iter(items)).await.unwrap();
}

/// Builds a snapshot of `sm`, which also persists its state.
async fn snapshot(sm: &mut StateMachineStore<TestConfig, Applied>) {
    sm.get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
}

fn sample_entries() -> Vec<EntryOf<TestConfig>> {
    vec![
        EntryOf::<TestConfig>::new_blank(log_id(1, 1)),
        EntryOf::<TestConfig>::new_membership(log_id(1, 2), membership(&[1, 2, 3])),
        EntryOf::<TestConfig>::new_normal(log_id(1, 3), "create table t".to_string()),
        EntryOf::<TestConfig>::new_normal(log_id(2, 4), "add node 4".to_string()),
    ]
}

#[tokio::test]
async fn state_vote_and_log_survive_reopen() {
    let dir = TempDir::new().unwrap();
    let vote = VoteOf::<TestConfig>::new(2, 1);
    let want = Applied {
        commands: vec!["create table t".into(), "add node 4".into()],
    };
    {
        let (mut log, mut sm) = open_test(dir.path());
        let shared = sm.state();
        log.save_vote(&vote).await.unwrap();
        append(&mut log, sample_entries()).await;
        apply(&mut sm, sample_entries()).await;
        log.save_committed(Some(log_id(2, 4))).await.unwrap();
        // The handle observes applied state.
        assert_eq!(*shared.read(), want);
    }

    // Applying wrote nothing: the state is the last snapshot's (none yet), and the committed
    // id tells openraft how far to re-apply the log.
    {
        let (mut log, mut sm) = open_test(dir.path());
        assert_eq!(*sm.state().read(), Applied::default());
        assert_eq!(sm.applied_state().await.unwrap().0, None);
        assert_eq!(log.read_committed().await.unwrap(), Some(log_id(2, 4)));
        apply(&mut sm, sample_entries()).await;
        snapshot(&mut sm).await;
    }

    // A snapshot persists the state machine with it.
    let (mut log, mut sm) = open_test(dir.path());
    assert_eq!(*sm.state().read(), want);

    let (last_applied, last_membership) = sm.applied_state().await.unwrap();
    assert_eq!(last_applied, Some(log_id(2, 4)));
    assert_eq!(last_membership.log_id(), &Some(log_id(1, 2)));
    assert_eq!(last_membership.membership(), &membership(&[1, 2, 3]));

    assert_eq!(log.read_vote().await.unwrap(), Some(vote));
    let entries = log.try_get_log_entries(..).await.unwrap();
    assert_eq!(
        entries.iter().map(|e| e.log_id()).collect::<Vec<_>>(),
        [log_id(1, 1), log_id(1, 2), log_id(1, 3), log_id(2, 4)]
    );
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(log_id(2, 4)));
    assert_eq!(state.last_purged_log_id, None);

    // Purge marker survives a restart too.
    log.purge(log_id(1, 2)).await.unwrap();
    drop((log, sm));
    let (mut log, _sm) = open_test(dir.path());
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 2)));
    assert_eq!(state.last_log_id, Some(log_id(2, 4)));
    assert_eq!(log.try_get_log_entries(0..10).await.unwrap().len(), 2);
}

/// A new file holds no Raft state and no identity; a vote, a log entry or an applied entry
/// each make it one that does; the identity record survives a reopen.
#[tokio::test]
async fn identity_and_raft_state_are_told_apart_and_survive_reopen() {
    let dir = TempDir::new().unwrap();
    {
        let (mut log, _sm) = open_test(dir.path());
        let id = log.identity();
        assert_eq!(id.read().unwrap(), None);
        assert!(!id.holds_raft_state().unwrap(), "a new file holds nothing");
        let pending = crate::Identity {
            version: crate::identity::IDENTITY_VERSION,
            node_id: 2,
            cluster_id: String::new(),
            admitted: false,
        };
        id.write(&pending).unwrap();
        assert!(
            !id.holds_raft_state().unwrap(),
            "the record is not Raft state"
        );
        log.save_vote(&VoteOf::<TestConfig>::new(1, 1))
            .await
            .unwrap();
        assert!(id.holds_raft_state().unwrap(), "a vote is");
    }
    let (log, _sm) = open_test(dir.path());
    let id = log.identity();
    assert!(id.holds_raft_state().unwrap());
    assert!(!id.read().unwrap().unwrap().admitted);
    let admitted = crate::Identity {
        version: crate::identity::IDENTITY_VERSION,
        node_id: 2,
        cluster_id: "c0ffee".into(),
        admitted: true,
    };
    id.write(&admitted).unwrap();
    assert_eq!(id.read().unwrap(), Some(admitted));

    for (what, entries_only) in [("a log entry", true), ("a snapshot", false)] {
        let dir = TempDir::new().unwrap();
        let (mut log, mut sm) = open_test(dir.path());
        if entries_only {
            append(&mut log, sample_entries()).await;
        } else {
            apply(&mut sm, sample_entries()).await;
            snapshot(&mut sm).await;
        }
        assert!(log.identity().holds_raft_state().unwrap(), "{what}");
    }
}

#[tokio::test]
async fn snapshot_survives_reopen_and_installs_elsewhere() {
    let dir = TempDir::new().unwrap();
    let built = {
        let (_log, mut sm) = open_test(dir.path());
        apply(&mut sm, sample_entries()).await;
        let mut builder = sm.get_snapshot_builder().await;
        builder.build_snapshot().await.unwrap()
    };
    assert_eq!(built.meta.last_log_id, Some(log_id(2, 4)));

    // The current snapshot is persisted.
    let (_log, mut sm) = open_test(dir.path());
    let current = sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, built.meta);
    assert_eq!(current.snapshot.get_ref(), built.snapshot.get_ref());

    // Installing it on a fresh node reproduces the state, durably.
    let other = TempDir::new().unwrap();
    {
        let (_log, mut sm2) = open_test(other.path());
        let shared = sm2.state();
        sm2.install_snapshot(&current.meta, current.snapshot.clone())
            .await
            .unwrap();
        assert_eq!(shared.read().commands, vec!["create table t", "add node 4"]);
    }
    let (_log, mut sm2) = open_test(other.path());
    assert_eq!(
        sm2.state().read().commands,
        vec!["create table t", "add node 4"]
    );
    assert_eq!(sm2.applied_state().await.unwrap().0, Some(log_id(2, 4)));
    assert_eq!(
        sm2.get_current_snapshot().await.unwrap().unwrap().meta,
        built.meta
    );
}

#[tokio::test]
async fn install_refuses_garbage_without_touching_state() {
    let dir = TempDir::new().unwrap();
    let (_log, mut sm) = open_test(dir.path());
    apply(&mut sm, sample_entries()).await;
    let meta = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap()
        .meta;

    let err = sm
        .install_snapshot(&meta, io::Cursor::new(b"not json".to_vec()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("raft.redb"), "{err}");
    assert_eq!(sm.state().read().commands.len(), 2);
}

#[test]
fn unknown_format_version_is_refused() {
    let dir = TempDir::new().unwrap();
    drop(open_test(dir.path()));

    let path = dir.path().join("raft.redb");
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(crate::db::META)
            .unwrap()
            .insert("format_version", 2u64)
            .unwrap();
        txn.commit().unwrap();
    }

    let err = open::<TestConfig, Applied>(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::UnsupportedFormatVersion {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(
        msg.contains("version 2") && msg.contains("version 1"),
        "{msg}"
    );
}

#[test]
fn foreign_redb_file_is_refused() {
    let dir = TempDir::new().unwrap();
    {
        let db = redb::Database::create(dir.path().join("raft.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        let def: redb::TableDefinition<&str, &str> = redb::TableDefinition::new("other");
        txn.open_table(def).unwrap().insert("k", "v").unwrap();
        txn.commit().unwrap();
    }
    let err = open::<TestConfig, Applied>(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::NotARaftStore { .. }), "{err:?}");
}

#[test]
fn new_file_records_format_version() {
    let dir = TempDir::new().unwrap();
    drop(open_test(dir.path()));
    let db = redb::Database::create(dir.path().join("raft.redb")).unwrap();
    let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
    let version = txn
        .open_table(crate::db::META)
        .unwrap()
        .get("format_version")
        .unwrap()
        .unwrap()
        .value();
    assert_eq!(version, 1);
}

/// A network for a one-node cluster: there is never anyone to talk to.
struct NoNetwork;

fn unreachable() -> openraft::error::Unreachable<TestConfig> {
    openraft::error::Unreachable::new(&io::Error::other("single-node test cluster has no peers"))
}

impl openraft::network::v2::RaftNetworkV2<TestConfig> for NoNetwork {
    type SnapshotData = io::Cursor<Vec<u8>>;

    async fn append_entries(
        &mut self,
        _rpc: openraft::raft::AppendEntriesRequest<TestConfig>,
        _option: openraft::network::RPCOption,
    ) -> Result<
        openraft::raft::AppendEntriesResponse<TestConfig>,
        openraft::error::RPCError<TestConfig>,
    > {
        Err(openraft::error::RPCError::Unreachable(unreachable()))
    }

    async fn vote(
        &mut self,
        _rpc: openraft::raft::VoteRequest<TestConfig>,
        _option: openraft::network::RPCOption,
    ) -> Result<openraft::raft::VoteResponse<TestConfig>, openraft::error::RPCError<TestConfig>>
    {
        Err(openraft::error::RPCError::Unreachable(unreachable()))
    }

    async fn full_snapshot(
        &mut self,
        _vote: VoteOf<TestConfig>,
        _snapshot: openraft::type_config::alias::SnapshotOf<TestConfig, Self::SnapshotData>,
        _cancel: impl std::future::Future<Output = openraft::error::ReplicationClosed> + Send + 'static,
        _option: openraft::network::RPCOption,
    ) -> Result<
        openraft::raft::SnapshotResponse<TestConfig>,
        openraft::error::StreamingError<TestConfig>,
    > {
        Err(openraft::error::StreamingError::Unreachable(unreachable()))
    }
}

impl openraft::network::RaftNetworkFactory<TestConfig> for NoNetwork {
    type Network = NoNetwork;

    async fn new_client(&mut self, _target: u64, _node: &openraft::BasicNode) -> Self::Network {
        NoNetwork
    }
}

async fn start_raft(
    dir: &Path,
) -> (
    openraft::Raft<TestConfig, StateMachineStore<TestConfig, Applied>>,
    crate::SharedState<Applied>,
) {
    // openraft's worker tasks release the stores shortly *after* `shutdown()` returns.
    let mut attempts = 0;
    let (log, sm) = loop {
        match open::<TestConfig, Applied>(dir) {
            Err(StoreError::AlreadyOpen { .. }) if attempts < 100 => {
                attempts += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            res => break res.unwrap(),
        }
    };
    let state = sm.state();
    let config = openraft::Config {
        election_timeout_min: 150,
        election_timeout_max: 300,
        heartbeat_interval: 50,
        ..Default::default()
    };
    let raft = openraft::Raft::new(
        1,
        std::sync::Arc::new(config.validate().unwrap()),
        NoNetwork,
        log,
        sm,
    )
    .await
    .unwrap();
    (raft, state)
}

/// End to end through a real single-node `Raft`: client responses come from `MetaState::apply`,
/// snapshots and purges work, and a restarted node resumes from its persisted state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_raft_round_trip() {
    let dir = TempDir::new().unwrap();
    let timeout = Some(std::time::Duration::from_secs(10));
    {
        let (raft, state) = start_raft(dir.path()).await;
        let nodes = std::collections::BTreeMap::from([(1u64, openraft::BasicNode::default())]);
        raft.initialize(nodes).await.unwrap();
        raft.wait(timeout)
            .state(openraft::ServerState::Leader, "leader")
            .await
            .unwrap();

        let r1 = raft.client_write("first".to_string()).await.unwrap();
        assert_eq!(r1.data, "applied #1");
        let r2 = raft.client_write("second".to_string()).await.unwrap();
        assert_eq!(r2.data, "applied #2");
        assert_eq!(state.read().commands, vec!["first", "second"]);

        raft.trigger().snapshot().await.unwrap();
        raft.wait(timeout)
            .snapshot(r2.log_id, "snapshot")
            .await
            .unwrap();
        raft.trigger().purge_log(r2.log_id.index()).await.unwrap();
        raft.wait(timeout)
            .purged(Some(r2.log_id), "purged")
            .await
            .unwrap();
        raft.shutdown().await.unwrap();
    }

    {
        let (raft, state) = start_raft(dir.path()).await;
        // Loaded from the snapshot before any log replay could happen (the log is purged).
        assert_eq!(state.read().commands, vec!["first", "second"]);
        raft.wait(timeout)
            .state(openraft::ServerState::Leader, "leader again")
            .await
            .unwrap();
        let r3 = raft.client_write("third".to_string()).await.unwrap();
        assert_eq!(r3.data, "applied #3");
        raft.shutdown().await.unwrap();
    }

    // "third" is in no snapshot: the restart re-applies it from the log up to the saved
    // commit, before the node serves anything or has a leader.
    let (raft, state) = start_raft(dir.path()).await;
    assert_eq!(state.read().commands, vec!["first", "second", "third"]);
    raft.shutdown().await.unwrap();
}
