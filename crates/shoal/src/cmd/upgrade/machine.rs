//! One machine's steps: drain, move leadership, stop, back up, switch, start, wait for its
//! nodes on the new version, restart the agent from it, wait until every chunk is COMPLETE.
//! Each step is safe to run again, which is what resuming after a killed orchestrator does.

use std::time::{Duration, Instant};

use anyhow::bail;
use shoal_client::agent::AgentClient;
use shoal_proto::data_node_client::DataNodeClient;
use shoal_proto::{DrainRequest, NodeState, ProcessState};

use super::state::{MachinePlan, Step};
use crate::target::Target;

/// Poll interval of the waits below.
const POLL: Duration = Duration::from_millis(100);
/// A data node's drain: every chunk it leads finishes its appends in flight first.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
/// The agent re-executing itself.
const AGENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Chunks catching up after the machine is back.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(600);

pub struct Machine<'a> {
    pub target: &'a Target,
    pub plan: &'a MachinePlan,
    /// The version this pass moves the machine to, and the one it leaves.
    pub to: &'a str,
    pub from: &'a str,
    pub node_timeout: Duration,
}

impl Machine<'_> {
    fn agent(&self) -> anyhow::Result<AgentClient> {
        Ok(AgentClient::new(
            &self.plan.agent_addr,
            &self.target.channels,
        )?)
    }

    /// Runs one step; `progress` shows what it waits for.
    pub async fn run(&self, step: Step, progress: &dyn Fn(String)) -> anyhow::Result<()> {
        match step {
            Step::Drain => self.drain().await,
            Step::MoveLeader => self.move_leader(progress).await,
            Step::StopNodes => {
                self.agent()?.stop(Vec::new()).await?;
                Ok(())
            }
            Step::Backup => {
                let label = format!("{}-{}", self.from, shoal_client::record::now_ms());
                let b = self.agent()?.backup_metadata(&label).await?;
                progress(format!(
                    "{} files, {} bytes in {}",
                    b.files, b.bytes, b.path
                ));
                Ok(())
            }
            Step::Switch => {
                self.agent()?.switch_version(self.to).await?;
                Ok(())
            }
            Step::StartNodes => {
                self.agent()?.start(Vec::new()).await?;
                Ok(())
            }
            Step::Rejoin => self.wait_nodes_on(self.to, progress).await,
            Step::RestartAgent => {
                self.restart_agent().await?;
                // The new agent adopted the running nodes; one that exited meanwhile is started.
                self.agent()?.start(Vec::new()).await?;
                self.wait_nodes_on(self.to, progress).await
            }
            Step::Recovered => wait_all_complete(self.target, progress).await,
        }
    }

    async fn drain(&self) -> anyhow::Result<()> {
        let status = self.target.controllers.cluster_status().await?;
        for (alias, addr) in &self.plan.datanodes {
            // A node that is not up has nothing to hand over (and cannot answer).
            let up = status
                .nodes
                .iter()
                .any(|n| &n.alias == alias && n.state() == NodeState::Up);
            if !up {
                continue;
            }
            let mut client = DataNodeClient::new(self.target.channels.get(addr)?);
            let mut req = tonic::Request::new(DrainRequest {});
            req.set_timeout(DRAIN_TIMEOUT);
            let resp = match client.drain(req).await {
                Ok(r) => r.into_inner(),
                // A release without drain: it is stopped without one (its appends in flight
                // then wait for the removal of its replicas, as after a crash).
                Err(s) if s.code() == tonic::Code::Unimplemented => {
                    tracing::warn!("{alias} cannot drain (older release): stopping it as it is");
                    continue;
                }
                Err(s) => return Err(anyhow::anyhow!("draining {alias}: {}", s.message())),
            };
            tracing::info!(
                "{alias}: left {} chunks, kept {:?}",
                resp.chunks_left,
                resp.chunks_kept
            );
        }
        Ok(())
    }

    /// Hands leadership to the most caught-up controller of another machine, and checks that
    /// it landed there (a retried hand-over could pick this machine's controller again).
    async fn move_leader(&self, progress: &dyn Fn(String)) -> anyhow::Result<()> {
        let status = self.target.controllers.cluster_status().await?;
        if !self.plan.controllers.contains(&status.leader_alias) {
            return Ok(());
        }
        let to = status
            .nodes
            .iter()
            .filter(|n| {
                n.current_role() == shoal_proto::RaftRole::Follower
                    && !self.plan.controllers.contains(&n.alias)
            })
            .max_by_key(|n| n.raft_matched_index)
            .map(|n| n.alias.clone())
            .ok_or_else(|| anyhow::anyhow!("no follower on another machine to lead"))?;
        progress(format!(
            "{} leads; handing over to {to}",
            status.leader_alias
        ));
        match self.target.controllers.transfer_leadership(&to).await {
            Ok(_) => {}
            // A release without hand-over: the others elect a leader when it stops.
            Err(shoal_client::ClientError::Rpc {
                code: tonic::Code::Unimplemented,
                ..
            }) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let leader = self.target.controllers.cluster_status().await?.leader_alias;
        if self.plan.controllers.contains(&leader) {
            bail!("leadership is still on {} ({leader})", self.plan.machine);
        }
        progress(format!("{leader} leads"));
        Ok(())
    }

    /// Until every node of the machine is UP and reports `version`.
    pub async fn wait_nodes_on(
        &self,
        version: &str,
        progress: &dyn Fn(String),
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let pending: Vec<String> = match self.target.controllers.cluster_status().await {
                Ok(s) => self
                    .plan
                    .nodes()
                    .filter(|alias| {
                        !s.nodes.iter().any(|n| {
                            n.alias == *alias && n.state() == NodeState::Up && n.version == version
                        })
                    })
                    .map(str::to_owned)
                    .collect(),
                Err(e) => vec![format!("(no status: {e})")],
            };
            if pending.is_empty() {
                return Ok(());
            }
            if started.elapsed() > self.node_timeout {
                bail!(
                    "{} not UP on {version} after {:?}: {}",
                    self.plan.machine,
                    self.node_timeout,
                    pending.join(", ")
                );
            }
            progress(format!("waiting for {}", pending.join(", ")));
            tokio::time::sleep(POLL).await;
        }
    }

    async fn restart_agent(&self) -> anyhow::Result<()> {
        let mut agent = self.agent()?;
        if agent.list().await?.agent_version == self.to {
            return Ok(());
        }
        agent.restart().await?;
        let started = Instant::now();
        loop {
            // The same address answers again once the new agent has bound it.
            if let Ok(l) = self.agent()?.list().await
                && l.agent_version == self.to
            {
                return Ok(());
            }
            if started.elapsed() > AGENT_TIMEOUT {
                bail!(
                    "the agent of {} did not come back on {} within {AGENT_TIMEOUT:?}",
                    self.plan.machine,
                    self.to
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Returns the machine to running `self.from` after a failure once its nodes may have been
    /// stopped: stop, switch back, start, wait for its nodes on the old version. Stopping,
    /// switching and starting go to the machine's agent alone, which needs no controller, so
    /// this also works when stopping the machine cost the controllers their quorum (its
    /// controller's return gives it back).
    pub async fn roll_back(&self, progress: &dyn Fn(String)) -> anyhow::Result<()> {
        let mut agent = self.agent()?;
        let running = agent
            .list()
            .await?
            .processes
            .iter()
            .any(|p| p.state() != ProcessState::Stopped);
        // Running nodes leave as gently as on the way in (best effort: they may not answer).
        // Nothing running: straight to the restart, without waiting on the controllers.
        if running {
            if let Err(e) = self.drain().await {
                progress(format!("drain: {e:#}"));
            }
            if let Err(e) = self.move_leader(progress).await {
                progress(format!("leadership: {e:#}"));
            }
        }
        agent.stop(Vec::new()).await?;
        agent.switch_version(self.from).await?;
        agent.start(Vec::new()).await?;
        progress(format!("{} started on {}", self.plan.machine, self.from));
        self.wait_nodes_on(self.from, progress).await?;
        let mut agent = self.agent()?;
        if agent.list().await?.agent_version != self.from {
            agent.restart().await?;
        }
        Ok(())
    }

    /// Restarts the machine's data nodes, which ends a drain (the controller keeps running):
    /// what undoes the steps before the stop. A drained node refuses catch-up until then.
    pub async fn restart_datanodes(&self) -> anyhow::Result<()> {
        let aliases: Vec<String> = self.plan.datanodes.iter().map(|(a, _)| a.clone()).collect();
        let mut agent = self.agent()?;
        agent.stop(aliases.clone()).await?;
        agent.start(aliases).await?;
        Ok(())
    }
}

/// A chunk with a replica out of sync (RECOVERING): stopping another machine now could leave
/// it with no replica at all.
pub fn not_complete(chunk: &shoal_proto::ChunkInfo) -> bool {
    chunk.current_state() == shoal_proto::ChunkState::Recovering
        || chunk.replicas.iter().any(|r| !r.in_sync)
}

/// Until every replica of every chunk is back in sync.
pub async fn wait_all_complete(target: &Target, progress: &dyn Fn(String)) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let pending = match target.controllers.get_catalog().await {
            Ok(c) => c.chunks.iter().filter(|c| not_complete(c)).count(),
            Err(_) => usize::MAX,
        };
        if pending == 0 {
            return Ok(());
        }
        if started.elapsed() > RECOVERY_TIMEOUT {
            bail!("{pending} chunks still not COMPLETE after {RECOVERY_TIMEOUT:?}");
        }
        if pending != usize::MAX {
            progress(format!("{pending} chunks recovering"));
        }
        tokio::time::sleep(POLL).await;
    }
}
