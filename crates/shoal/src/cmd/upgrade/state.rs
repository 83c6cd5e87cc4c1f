//! The upgrade's record, kept in the controllers (Raft) so that any orchestrator can resume
//! it: the plan, where each machine stands, and each finished step's times.
//!
//! Written after every step with a compare-and-set on the record's revision, so a second
//! orchestrator driving the same upgrade fails at its first write instead of interleaving.

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use shoal_client::controller::ControllerClient;

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
    pub probe: Option<shoal_client::record::WindowStats>,
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

/// A write refused because the record is not at the revision this orchestrator last saw:
/// another orchestrator drives the upgrade. Retrying would overwrite its record.
#[derive(Debug)]
pub struct RecordChanged(String);

impl std::fmt::Display for RecordChanged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the upgrade record changed under this orchestrator (another `shoal upgrade` is \
             driving it?): {}",
            self.0
        )
    }
}

impl std::error::Error for RecordChanged {}

/// The record as last read or written, with its revision for the next compare-and-set.
pub struct Store<'a> {
    controllers: &'a ControllerClient,
    revision: u64,
    /// What this orchestrator wrote last, to tell a `--pause` from another orchestrator.
    last_written: Option<UpgradeState>,
    /// Writes whose calls failed without a refusal since the last that succeeded: any may
    /// still commit (e.g. once the controllers regain their quorum), and is then ours, not
    /// another orchestrator's.
    unconfirmed: Vec<UpgradeState>,
}

impl<'a> Store<'a> {
    pub async fn load(
        controllers: &'a ControllerClient,
    ) -> anyhow::Result<(Self, Option<UpgradeState>)> {
        let record = controllers
            .get_upgrade()
            .await
            .context("cannot read the upgrade record from the controllers")?;
        let state = if record.state_json.is_empty() {
            None
        } else {
            let format: serde_json::Value = serde_json::from_str(&record.state_json)?;
            if format["format"].as_u64() != Some(u64::from(FORMAT)) {
                bail!(
                    "the recorded upgrade has format {} and this shoal knows {FORMAT}: \
                     drive it with the shoal that started it",
                    format["format"]
                );
            }
            Some(serde_json::from_str(&record.state_json)?)
        };
        Ok((
            Self {
                controllers,
                revision: record.revision,
                last_written: None,
                unconfirmed: Vec::new(),
            },
            state,
        ))
    }

    /// Writes `state`. If the only change since our last write is a `--pause` request (from
    /// another shell), it is taken into `state` and the write retried; any other change means
    /// another orchestrator drives this upgrade, and fails the write.
    pub async fn save(&mut self, state: &mut UpgradeState) -> anyhow::Result<()> {
        match self.write(state).await {
            Err(conflict) => {
                let Some(fresh) = self.reload().await? else {
                    return Err(conflict);
                };
                // Our own write, committed though its answer was lost (a re-sent copy then
                // failed its revision check).
                if fresh == *state {
                    self.last_written = Some(fresh);
                    return Ok(());
                }
                // An earlier write of ours that failed, committed since: write over it.
                if self.unconfirmed.contains(&fresh) {
                    self.last_written = Some(fresh);
                    return self.write(state).await;
                }
                let only_a_pause = fresh.pause_requested
                    && self.last_written.as_ref().is_none_or(|mine| {
                        *mine
                            == UpgradeState {
                                pause_requested: false,
                                ..fresh.clone()
                            }
                    });
                if !only_a_pause {
                    return Err(conflict);
                }
                state.pause_requested = true;
                self.write(state).await
            }
            ok => ok,
        }
    }

    async fn write(&mut self, state: &UpgradeState) -> anyhow::Result<()> {
        let json = serde_json::to_string(state)?;
        match self.controllers.set_upgrade(self.revision, json).await {
            Ok(record) => {
                self.revision = record.revision;
                self.last_written = Some(state.clone());
                self.unconfirmed.clear();
                Ok(())
            }
            Err(
                e @ shoal_client::ClientError::Rpc {
                    code: tonic::Code::Aborted,
                    ..
                },
            ) => Err(RecordChanged(e.to_string()).into()),
            Err(e) => {
                self.unconfirmed.push(state.clone());
                Err(anyhow::anyhow!("cannot write the upgrade record: {e}"))
            }
        }
    }

    /// Marks the running upgrade for a pause, re-reading it while the orchestrator writes.
    pub async fn request_pause(&mut self) -> anyhow::Result<()> {
        for _ in 0..20 {
            let Some(mut st) = self.reload().await? else {
                bail!("no upgrade is recorded");
            };
            if st.status != Status::Running {
                bail!("the upgrade is not running ({:?})", st.status);
            }
            st.pause_requested = true;
            if self.write(&st).await.is_ok() {
                return Ok(());
            }
        }
        bail!("the upgrade record kept changing; try again")
    }

    /// Re-reads the record; the next write compares against it.
    async fn reload(&mut self) -> anyhow::Result<Option<UpgradeState>> {
        let (fresh, state) = Store::load(self.controllers).await?;
        self.revision = fresh.revision;
        Ok(state)
    }
}
