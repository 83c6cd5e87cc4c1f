//! The `Controller` gRPC service: heartbeats in, cluster status out. Only the Raft leader
//! answers; followers refuse with the leader's address so clients can follow.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ClientWriteError, RaftError};
use openraft::{Instant as _, RaftMetrics, ReadPolicy};
use shoal_common::config::NodeMode;
use shoal_proto::controller_server::Controller;
use shoal_proto::{
    ChunkInfo, ClusterStatusRequest, ClusterStatusResponse, DdlRequest, DdlResponse,
    EnsureChunksRequest, EnsureChunksResponse, GetCatalogRequest, GetCatalogResponse,
    GetUpgradeRequest, HeartbeatRequest, HeartbeatResponse, LEADER_METADATA_KEY, NodeStatus,
    RaftRole, SetClusterVersionRequest, SetUpgradeRequest, TransferLeadershipRequest,
    TransferLeadershipResponse, UpdateReplicasRequest, UpgradeRecord,
};
use tonic::{Request, Response, Status};

use crate::chunks::PlacementPolicy;
use crate::cluster_meta::{ClusterMeta, NodeState};
use crate::command::{Command, CommandResponse, NodeReport};
use crate::liveness::Liveness;
use crate::raft_types::{Raft, TypeConfig};
use crate::topology::Topology;

/// Shared by the gRPC service and the leader's background duties.
#[derive(Clone)]
pub struct ControllerCore {
    pub raft: Raft,
    pub state: shoal_raft_store::SharedState<ClusterMeta>,
    pub liveness: Arc<Liveness>,
    pub topology: Arc<Topology>,
    /// Serializes "a node was heard from" against "mark it DOWN": a DOWN is decided and
    /// proposed under this lock, after re-checking silence, so a heartbeat that arrived in
    /// between cannot be overtaken by it.
    pub liveness_writes: Arc<tokio::sync::Mutex<()>>,
    pub placement: PlacementPolicy,
    /// To the other controllers (e.g. asking whether one may lead).
    pub channels: shoal_client::channel::Channels,
    /// Dropped names held on this controller's clock.
    pub drop_holds: Arc<crate::drop_holds::DropHolds>,
    /// This controller's `cluster.users`: what the table is seeded from.
    pub users_file: Arc<shoal_common::users::Users>,
    /// Who may log in, kept up to date by [`crate::user_admin::directory`].
    pub users: Arc<shoal_common::users::Directory>,
}

/// A metadata write that has not committed by then is reported as unavailable (e.g. this
/// leader lost its quorum) instead of hanging the caller.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

impl ControllerCore {
    /// Time left before a dropped `name` may be given to something new (`drop_holds`).
    pub fn reuse_wait(&self, name: &str) -> Option<Duration> {
        self.read(|m| self.drop_holds.observe(&m.catalog.dropped_at_ms));
        self.drop_holds.wait(name)
    }

    /// Fails with a redirect to the leader unless this controller is the leader.
    pub fn ensure_leader(&self) -> Result<(), Status> {
        let term = {
            let m = self.raft.metrics();
            let m = m.borrow_watched();
            (m.current_leader == Some(m.id)).then_some(m.current_term)
        };
        self.liveness.set_leader_term(term);
        if term.is_some() {
            Ok(())
        } else {
            Err(self.not_leader())
        }
    }

    fn not_leader(&self) -> Status {
        let metrics = self.raft.metrics().borrow_watched().clone();
        // Never redirect to ourselves: a client would loop on it.
        let leader = metrics
            .current_leader
            .filter(|id| *id != metrics.id)
            .and_then(|id| {
                metrics
                    .membership_config
                    .membership()
                    .get_node(&id)
                    .map(|n| n.addr.clone())
            });
        redirect(leader)
    }

    /// Checks, without a round trip while the leader lease holds, that this controller still
    /// leads a quorum: a leader cut off from the others must not keep answering.
    pub async fn ensure_lease(&self) -> Result<(), Status> {
        self.ensure_leader()?;
        self.raft
            .ensure_linearizable(ReadPolicy::LeaseRead)
            .await
            .map(|_| ())
            .map_err(|e| match e.forward_to_leader() {
                Some(f) => redirect(f.leader_node.as_ref().map(|n| n.addr.clone())),
                None => Status::unavailable(format!("controller has no quorum: {e}")),
            })
    }

    /// Read-index: waits until this leader's state machine reflects every write committed
    /// before the call.
    pub async fn read_index(&self) -> Result<(), Status> {
        self.raft
            .ensure_linearizable(ReadPolicy::ReadIndex)
            .await
            .map(|_| ())
            .map_err(|e| {
                Status::unavailable(format!("controller cannot confirm its leadership: {e}"))
            })
    }

    /// Proposes `cmd` through Raft and waits until it is committed and applied.
    ///
    /// Error codes tell the caller whether the command may have run: UNAVAILABLE and a
    /// redirect mean it did not; DEADLINE_EXCEEDED (not committed in time, it may still
    /// commit) and ABORTED mean the outcome is unknown.
    pub async fn write(&self, cmd: Command) -> Result<CommandResponse, Status> {
        match tokio::time::timeout(WRITE_TIMEOUT, self.raft.client_write(cmd)).await {
            Ok(Ok(resp)) => Ok(resp.data),
            Ok(Err(e)) => Err(write_error(e)),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "metadata write not committed within {WRITE_TIMEOUT:?} (no quorum?); it may still commit"
            ))),
        }
    }

    pub fn read<T>(&self, f: impl FnOnce(&ClusterMeta) -> T) -> T {
        f(&self.state.read())
    }
}

/// A failed `client_write` as a status. Only `ForwardToLeader` means the entry was never
/// appended, so only it is a redirect ("did not run"). openraft also answers `forward_to_leader()`
/// for `LogEntryDiscarded`, but that entry was appended and may have committed through the new
/// leader or still commit: ABORTED, outcome unknown, so that clients do not re-send calls that
/// are not idempotent.
fn write_error(e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> Status {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            redirect(f.leader_node.map(|n| n.addr))
        }
        RaftError::APIError(ClientWriteError::LogEntryDiscarded(f)) => Status::aborted(format!(
            "outcome unknown: the metadata write was discarded by a leader change (leader now \
             {}) and may still have been applied; read the state before trying again",
            f.leader_node
                .map_or_else(|| "unknown".to_owned(), |n| n.addr)
        )),
        e => Status::aborted(format!(
            "outcome unknown: the metadata write failed and may have been applied: {e}"
        )),
    }
}

/// FAILED_PRECONDITION naming the leader (clients follow it), or UNAVAILABLE if none is known.
fn redirect(leader: Option<String>) -> Status {
    match leader {
        Some(addr) => {
            let mut s = Status::failed_precondition(format!(
                "this controller is not the leader; the leader is at {addr}"
            ));
            if let Ok(v) = addr.parse() {
                s.metadata_mut().insert(LEADER_METADATA_KEY, v);
            }
            s
        }
        None => Status::unavailable("no controller leader elected yet"),
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub struct ControllerService {
    core: ControllerCore,
}

impl ControllerService {
    pub fn new(core: ControllerCore) -> Self {
        Self { core }
    }

    /// A controller's Raft role and matched log index, from the leader's replication metrics
    /// (so "follower" means it acknowledged this leader recently, not merely that it is up)
    /// and membership ("learner": a non-voting member that did).
    fn raft_view(&self, alias: &str, metrics: &RaftMetrics<TypeConfig>) -> (RaftRole, u64) {
        let Some(id) = self.core.topology.controller_id(alias) else {
            return (RaftRole::Unspecified, 0);
        };
        if metrics.current_leader == Some(id) {
            return (
                RaftRole::Leader,
                metrics.local_committed.map_or(0, |l| l.index),
            );
        }
        let matched = metrics
            .replication
            .as_ref()
            .and_then(|r| r.get(&id).cloned().flatten())
            .map_or(0, |l| l.index);
        let acked = metrics
            .heartbeat
            .as_ref()
            .and_then(|h| h.get(&id).cloned().flatten())
            .is_some_and(|t| t.elapsed() < FOLLOWER_ACK_WINDOW);
        let membership = metrics.membership_config.membership();
        let voter = membership.voter_ids().any(|v| v == id);
        let role = match (acked, voter) {
            (false, _) => RaftRole::Unreachable,
            (true, true) => RaftRole::Follower,
            // A learner: joining, or re-admitted after its store was lost.
            (true, false) => RaftRole::Learner,
        };
        (role, matched)
    }
}

/// A follower that has not acknowledged the leader for this long is shown as unreachable.
const FOLLOWER_ACK_WINDOW: Duration = Duration::from_secs(3);

#[tonic::async_trait]
impl Controller for ControllerService {
    async fn heartbeat(
        &self,
        req: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        self.core.ensure_lease().await?;
        let req = req.into_inner();
        let mode = NodeMode::try_from(req.mode()).map_err(Status::invalid_argument)?;
        // Refuse a node cluster.nodes does not declare before proposing anything: a misconfigured
        // node would otherwise add a rejected Raft entry every heartbeat.
        let declared = self.core.read(|m| m.nodes.get(&req.alias).map(|n| n.mode));
        match declared {
            Some(Some(m)) if m == mode => {}
            Some(_) => {
                return Err(Status::invalid_argument(format!(
                    "node `{}` is not declared as a {mode} in cluster.nodes",
                    req.alias
                )));
            }
            None => {
                return Err(Status::not_found(format!(
                    "node `{}` is not in cluster.nodes",
                    req.alias
                )));
            }
        }
        let _guard = self.core.liveness_writes.lock().await;
        self.core.liveness.saw(&req.alias);
        let report = NodeReport {
            alias: req.alias.clone(),
            mode,
            addr: req.addr.clone(),
            version: req.version.clone(),
            build_date: req.build_date.clone(),
            pid: req.pid,
            stopping: req.stopping,
        };
        if !self.core.read(|m| m.report_is_current(&report)) {
            let resp = self
                .core
                .write(Command::ReportNode {
                    report,
                    at_ms: now_ms(),
                })
                .await?;
            if !resp.rejected.is_empty() {
                return Err(Status::invalid_argument(resp.rejected));
            }
        }
        // Data nodes check logins and tokens themselves: they get the users table when theirs
        // is not the current one.
        let wants_users = mode == NodeMode::DataNode;
        Ok(Response::new(self.core.read(|m| HeartbeatResponse {
            cluster_version: m.cluster_version,
            users_revision: m.users.revision,
            users: if wants_users && req.users_revision != m.users.revision {
                m.users.users.values().map(user_entry).collect()
            } else {
                Vec::new()
            },
        })))
    }

    async fn execute_ddl(&self, req: Request<DdlRequest>) -> Result<Response<DdlResponse>, Status> {
        crate::ddl::execute(&self.core, &req.into_inner().sql)
            .await
            .map(Response::new)
    }

    async fn ensure_chunks(
        &self,
        req: Request<EnsureChunksRequest>,
    ) -> Result<Response<EnsureChunksResponse>, Status> {
        crate::chunks::ensure(&self.core, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_catalog(
        &self,
        _req: Request<GetCatalogRequest>,
    ) -> Result<Response<GetCatalogResponse>, Status> {
        crate::chunks::catalog(&self.core).await.map(Response::new)
    }

    async fn update_replicas(
        &self,
        req: Request<UpdateReplicasRequest>,
    ) -> Result<Response<ChunkInfo>, Status> {
        crate::chunks::update_replicas(&self.core, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn transfer_leadership(
        &self,
        req: Request<TransferLeadershipRequest>,
    ) -> Result<Response<TransferLeadershipResponse>, Status> {
        crate::upgrade::transfer_leadership(&self.core, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_upgrade(
        &self,
        _req: Request<GetUpgradeRequest>,
    ) -> Result<Response<UpgradeRecord>, Status> {
        crate::upgrade::get_upgrade(&self.core)
            .await
            .map(Response::new)
    }

    async fn set_upgrade(
        &self,
        req: Request<SetUpgradeRequest>,
    ) -> Result<Response<UpgradeRecord>, Status> {
        crate::upgrade::set_upgrade(&self.core, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn set_cluster_version(
        &self,
        req: Request<SetClusterVersionRequest>,
    ) -> Result<Response<ClusterStatusResponse>, Status> {
        crate::upgrade::set_cluster_version(&self.core, req.into_inner()).await?;
        self.cluster_status(Request::new(ClusterStatusRequest {}))
            .await
    }

    async fn cluster_status(
        &self,
        _req: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatusResponse>, Status> {
        self.core.ensure_leader()?;
        self.core.read_index().await?;
        let metrics = self.core.raft.metrics().borrow_watched().clone();
        let leader = metrics.current_leader;
        let (nodes, cluster_version) = self.core.read(|m| (m.nodes.clone(), m.cluster_version));
        let nodes = nodes
            .values()
            .map(|n| {
                let (role, raft_matched_index) = self.raft_view(&n.alias, &metrics);
                let state = shown_state(n.state, role);
                NodeStatus {
                    alias: n.alias.clone(),
                    mode: n
                        .mode
                        .map(shoal_proto::NodeMode::from)
                        .unwrap_or_default()
                        .into(),
                    machine: n.machine.clone(),
                    addr: n.addr.clone(),
                    state: state_to_proto(state).into(),
                    version: n.version.clone(),
                    build_date: n.build_date.clone(),
                    raft_role: role.name().into(),
                    role: role.into(),
                    raft_matched_index,
                    last_heartbeat_ms_ago: self
                        .core
                        .liveness
                        .last_heartbeat_ms_ago(&n.alias)
                        .map_or(-1, |ms| i64::try_from(ms).unwrap_or(i64::MAX)),
                    pid: n.pid,
                }
            })
            .collect();
        Ok(Response::new(ClusterStatusResponse {
            nodes,
            leader_alias: leader
                .and_then(|id| self.core.topology.controller_alias(id))
                .unwrap_or_default(),
            raft_term: metrics.current_term,
            raft_commit_index: metrics.local_committed.map_or(0, |l| l.index),
            cluster_version,
            supported_cluster_version: shoal_common::version::CLUSTER_VERSION,
        }))
    }
}

/// A controller's state as status shows it: the metadata's, except that one UP (or
/// STOPPING) which has not acknowledged the leader within `FOLLOWER_ACK_WINDOW` is DOWN. The
/// metadata only says DOWN once `nodeHeartbeatTimeout` has passed since the leader took
/// office, and a leader that was just killed never answers the new one: without this it
/// would show UP for seconds after its process is gone.
fn shown_state(state: NodeState, role: RaftRole) -> NodeState {
    if role == RaftRole::Unreachable && state.is_live() {
        NodeState::Down
    } else {
        state
    }
}

fn user_entry(u: &shoal_common::users::UserRecord) -> shoal_proto::UserEntry {
    shoal_proto::UserEntry {
        name: u.name.clone(),
        role: u.role.name().to_owned(),
        password_hash: u.hash.clone(),
        generation: u.generation,
    }
}

fn state_to_proto(state: NodeState) -> shoal_proto::NodeState {
    match state {
        NodeState::Unknown => shoal_proto::NodeState::Unknown,
        NodeState::Up => shoal_proto::NodeState::Up,
        NodeState::Down => shoal_proto::NodeState::Down,
        NodeState::Stopping => shoal_proto::NodeState::Stopping,
    }
}

#[cfg(test)]
mod tests {
    use openraft::BasicNode;
    use openraft::errors::{Fatal, ForwardToLeader};

    use super::*;

    fn leader() -> ForwardToLeader<TypeConfig> {
        ForwardToLeader::new(2, BasicNode::new("127.0.0.1:8920"))
    }

    #[test]
    fn only_a_refused_write_is_a_redirect_a_discarded_one_is_outcome_unknown() {
        let s = write_error(RaftError::APIError(ClientWriteError::ForwardToLeader(
            leader(),
        )));
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
        assert_eq!(
            s.metadata().get(LEADER_METADATA_KEY).unwrap(),
            "127.0.0.1:8920"
        );
        let s = write_error(RaftError::APIError(ClientWriteError::ForwardToLeader(
            ForwardToLeader::empty(),
        )));
        assert_eq!(s.code(), tonic::Code::Unavailable);

        let s = write_error(RaftError::APIError(ClientWriteError::LogEntryDiscarded(
            leader(),
        )));
        assert_eq!(s.code(), tonic::Code::Aborted);
        assert!(s.metadata().get(LEADER_METADATA_KEY).is_none());
        assert!(
            s.message().starts_with("outcome unknown"),
            "{}",
            s.message()
        );
        assert!(s.message().contains("127.0.0.1:8920"), "{}", s.message());

        let s = write_error(RaftError::Fatal(Fatal::Stopped));
        assert_eq!(s.code(), tonic::Code::Aborted);
        assert!(
            s.message().starts_with("outcome unknown"),
            "{}",
            s.message()
        );
    }

    #[test]
    fn a_controller_that_does_not_answer_the_leader_is_shown_down() {
        assert_eq!(
            shown_state(NodeState::Up, RaftRole::Unreachable),
            NodeState::Down
        );
        assert_eq!(
            shown_state(NodeState::Stopping, RaftRole::Unreachable),
            NodeState::Down
        );
        assert_eq!(
            shown_state(NodeState::Up, RaftRole::Follower),
            NodeState::Up
        );
        assert_eq!(shown_state(NodeState::Up, RaftRole::Leader), NodeState::Up);
        // Other nodes have no Raft role: their state is the metadata's.
        assert_eq!(
            shown_state(NodeState::Up, RaftRole::Unspecified),
            NodeState::Up
        );
        assert_eq!(
            shown_state(NodeState::Unknown, RaftRole::Unreachable),
            NodeState::Unknown
        );
    }
}
