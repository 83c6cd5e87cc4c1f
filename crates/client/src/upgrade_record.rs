//! The rolling upgrade's record as the orchestrator (`shoal upgrade`) writes it into the
//! controllers: the plan, where each machine stands, and each finished step's times. The
//! controllers keep it as opaque JSON; it is typed here so that every reader (the orchestrator,
//! the `cluster.upgrade` system table, the controllers' metrics) reads one definition.

use serde::{Deserialize, Serialize};

use crate::record::WindowStats;

/// Raised when the record's meaning changes; an orchestrator refuses a format it does not know.
pub const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "status", content = "reason", rename_all = "snake_case")]
pub enum Status {
    Running,
    /// Stopped between machines: `--pause`, `--canary`, or the client-impact budget.
    Paused(String),
    /// Every machine runs the target version.
    Done,
    /// A machine did not come back on the new version; it was returned to the old one.
    Failed(String),
    /// `--finalize` raised the cluster version: no rollback from here.
    Finalized,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Drain,
    MoveLeader,
    StopNodes,
    Backup,
    Switch,
    StartNodes,
    Rejoin,
    RestartAgent,
    Recovered,
}

impl Step {
    pub const ALL: [Step; 9] = [
        Step::Drain,
        Step::MoveLeader,
        Step::StopNodes,
        Step::Backup,
        Step::Switch,
        Step::StartNodes,
        Step::Rejoin,
        Step::RestartAgent,
        Step::Recovered,
    ];

    pub fn describe(self) -> &'static str {
        match self {
            Step::Drain => "drain data nodes",
            Step::MoveLeader => "move Raft leadership away",
            Step::StopNodes => "stop nodes",
            Step::Backup => "back up metadata",
            Step::Switch => "switch version",
            Step::StartNodes => "start nodes",
            Step::Rejoin => "wait for nodes on the new version",
            Step::RestartAgent => "restart the agent",
            Step::Recovered => "wait for every chunk COMPLETE",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct MachinePlan {
    pub machine: String,
    pub agent_addr: String,
    /// (alias, address) of its data nodes and controllers.
    pub datanodes: Vec<(String, String)>,
    pub controllers: Vec<String>,
    /// Steps finished for the current pass (upgrade or rollback), in order.
    pub done: Vec<Step>,
}

impl MachinePlan {
    pub fn finished(&self) -> bool {
        self.done.last() == Some(&Step::Recovered)
    }

    pub fn nodes(&self) -> impl Iterator<Item = &str> {
        self.datanodes
            .iter()
            .map(|(a, _)| a.as_str())
            .chain(self.controllers.iter().map(String::as_str))
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct StepRecord {
    pub machine: String,
    pub step: Step,
    pub started_ms: u64,
    pub ended_ms: u64,
    /// Empty when it succeeded.
    #[serde(default)]
    pub error: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct UpgradeState {
    pub format: u32,
    pub from_version: String,
    pub to_version: String,
    /// sha256 of the package's binary.
    pub binary_sha256: String,
    /// Going back to `from_version` (`--rollback`).
    pub rolling_back: bool,
    pub status: Status,
    /// `--pause` asked the running orchestrator to stop before its next machine.
    pub pause_requested: bool,
    /// In upgrade order: the controller leader's machine last.
    pub machines: Vec<MachinePlan>,
    pub steps: Vec<StepRecord>,
    pub started_ms: u64,
    /// The cluster version `--finalize` sets (recorded first, so a rerun sets the same).
    #[serde(default)]
    pub finalize_to: Option<u32>,
    /// What the probe writer has seen in this run so far, saved with each machine (the web
    /// console shows it); absent without a probe and from an orchestrator before 0.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<WindowStats>,
}

impl UpgradeState {
    /// The version machines are being moved to in this pass.
    pub fn target_version(&self) -> &str {
        if self.rolling_back {
            &self.from_version
        } else {
            &self.to_version
        }
    }

    /// The version they are moved away from.
    pub fn source_version(&self) -> &str {
        if self.rolling_back {
            &self.to_version
        } else {
            &self.from_version
        }
    }
}

impl UpgradeState {
    /// The record in `json` (the controllers' `state_json`); `None` when there is none or it
    /// is of a format this build does not know.
    pub fn parse(json: &str) -> Option<UpgradeState> {
        serde_json::from_str::<UpgradeState>(json)
            .ok()
            .filter(|st| st.format == FORMAT)
    }

    /// The first machine not finished and the step it is at (the next one not done), while
    /// the upgrade runs.
    pub fn current(&self) -> Option<(&MachinePlan, Option<Step>)> {
        if self.status != Status::Running {
            return None;
        }
        let m = self.machines.iter().find(|m| !m.finished())?;
        let next = Step::ALL.into_iter().find(|s| !m.done.contains(s));
        Some((m, next))
    }
}

impl Status {
    /// `running`, `paused`, `done`, `failed`, `finalized`, and why (paused, failed).
    pub fn name_and_reason(&self) -> (&'static str, &str) {
        match self {
            Status::Running => ("running", ""),
            Status::Paused(why) => ("paused", why),
            Status::Done => ("done", ""),
            Status::Failed(why) => ("failed", why),
            Status::Finalized => ("finalized", ""),
        }
    }
}

impl Step {
    /// The name the record uses (`stop_nodes`).
    pub fn name(self) -> &'static str {
        match self {
            Step::Drain => "drain",
            Step::MoveLeader => "move_leader",
            Step::StopNodes => "stop_nodes",
            Step::Backup => "backup",
            Step::Switch => "switch",
            Step::StartNodes => "start_nodes",
            Step::Rejoin => "rejoin",
            Step::RestartAgent => "restart_agent",
            Step::Recovered => "recovered",
        }
    }
}
