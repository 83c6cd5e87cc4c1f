//! The `Controller` gRPC service: heartbeats in, cluster status out. Only the Raft leader
//! answers; followers refuse with the leader's address so clients can follow.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::ReadPolicy;
use openraft::async_runtime::WatchReceiver;
use shoal_common::config::NodeMode;
use shoal_proto::controller_server::Controller;
use shoal_proto::{
    ClusterStatusRequest, ClusterStatusResponse, HeartbeatRequest, HeartbeatResponse,
    LEADER_METADATA_KEY, NodeStatus,
};
use tonic::{Request, Response, Status};

use crate::cluster_meta::{ClusterMeta, NodeState};
use crate::command::{Command, CommandResponse, NodeReport};
use crate::liveness::Liveness;
use crate::raft_types::{NodeId, Raft};
use crate::topology::Topology;

/// Shared by the gRPC service and the leader's background duties.
#[derive(Clone)]
pub struct ControllerCore {
    pub raft: Raft,
    pub state: shoal_raft_store::SharedState<ClusterMeta>,
    pub liveness: Arc<Liveness>,
    pub topology: Arc<Topology>,
}

impl ControllerCore {
    /// Fails with a redirect to the leader unless this controller is the leader.
    pub fn ensure_leader(&self) -> Result<(), Status> {
        let is_leader = self.raft.is_leader();
        self.liveness.set_leader(is_leader);
        if is_leader {
            Ok(())
        } else {
            Err(self.not_leader())
        }
    }

    fn not_leader(&self) -> Status {
        let metrics = self.raft.metrics().borrow_watched().clone();
        let leader = metrics.current_leader.and_then(|id| {
            metrics
                .membership_config
                .membership()
                .get_node(&id)
                .map(|n| n.addr.clone())
        });
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

    /// Proposes `cmd` through Raft and waits until it is committed and applied.
    pub async fn write(&self, cmd: Command) -> Result<CommandResponse, Status> {
        match self.raft.client_write(cmd).await {
            Ok(resp) => Ok(resp.data),
            Err(e) if e.forward_to_leader().is_some() => Err(self.not_leader()),
            Err(e) => Err(Status::unavailable(format!("metadata write failed: {e}"))),
        }
    }

    pub fn read<T>(&self, f: impl FnOnce(&ClusterMeta) -> T) -> T {
        f(&self.state.read())
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

    fn role_of(&self, alias: &str, state: NodeState, leader: Option<NodeId>) -> String {
        let Some(id) = self.core.topology.controller_id(alias) else {
            return String::new();
        };
        let role = if leader == Some(id) {
            "leader"
        } else if state == NodeState::Up || state == NodeState::Stopping {
            "follower"
        } else {
            "down"
        };
        role.to_owned()
    }
}

#[tonic::async_trait]
impl Controller for ControllerService {
    async fn heartbeat(
        &self,
        req: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        self.core.ensure_leader()?;
        let req = req.into_inner();
        let mode = mode_from_proto(req.mode())?;
        self.core.liveness.saw(&req.alias);
        let report = NodeReport {
            alias: req.alias,
            mode,
            addr: req.addr,
            version: req.version,
            build_date: req.build_date,
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
        Ok(Response::new(HeartbeatResponse {
            cluster_version: self.core.read(|m| m.cluster_version),
        }))
    }

    async fn cluster_status(
        &self,
        _req: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatusResponse>, Status> {
        self.core.ensure_leader()?;
        // Read-index: the answer reflects every write committed before the call.
        self.core
            .raft
            .ensure_linearizable(ReadPolicy::ReadIndex)
            .await
            .map_err(|_| self.core.not_leader())?;
        let metrics = self.core.raft.metrics().borrow_watched().clone();
        let leader = metrics.current_leader;
        let meta = self.core.read(ClusterMeta::clone);
        let nodes = meta
            .nodes
            .values()
            .map(|n| NodeStatus {
                alias: n.alias.clone(),
                mode: n.mode.map(mode_to_proto).unwrap_or_default().into(),
                machine: n.machine.clone(),
                addr: n.addr.clone(),
                state: state_to_proto(n.state).into(),
                version: n.version.clone(),
                build_date: n.build_date.clone(),
                raft_role: self.role_of(&n.alias, n.state, leader),
                last_heartbeat_ms_ago: self
                    .core
                    .liveness
                    .last_heartbeat_ms_ago(&n.alias)
                    .map_or(-1, |ms| i64::try_from(ms).unwrap_or(i64::MAX)),
                pid: n.pid,
            })
            .collect();
        Ok(Response::new(ClusterStatusResponse {
            nodes,
            leader_alias: leader
                .and_then(|id| self.core.topology.controller_alias(id))
                .unwrap_or_default(),
            raft_term: metrics.current_term,
            raft_commit_index: metrics.local_committed.map_or(0, |l| l.index),
            cluster_version: meta.cluster_version,
        }))
    }
}

pub fn mode_to_proto(mode: NodeMode) -> shoal_proto::NodeMode {
    match mode {
        NodeMode::Controller => shoal_proto::NodeMode::Controller,
        NodeMode::Agent => shoal_proto::NodeMode::Agent,
        NodeMode::DataNode => shoal_proto::NodeMode::Datanode,
    }
}

fn mode_from_proto(mode: shoal_proto::NodeMode) -> Result<NodeMode, Status> {
    match mode {
        shoal_proto::NodeMode::Controller => Ok(NodeMode::Controller),
        shoal_proto::NodeMode::Agent => Ok(NodeMode::Agent),
        shoal_proto::NodeMode::Datanode => Ok(NodeMode::DataNode),
        shoal_proto::NodeMode::Unspecified => {
            Err(Status::invalid_argument("heartbeat without a node mode"))
        }
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
