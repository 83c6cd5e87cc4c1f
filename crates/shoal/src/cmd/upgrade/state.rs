//! The upgrade's record (typed in [`shoal_client::upgrade_record`]), kept in the controllers
//! (Raft) so that any orchestrator can resume it: the plan, where each machine stands, and each
//! finished step's times.
//!
//! Written after every step with a compare-and-set on the record's revision, so a second
//! orchestrator driving the same upgrade fails at its first write instead of interleaving.

use anyhow::{Context, bail};
use shoal_client::controller::ControllerClient;
pub use shoal_client::upgrade_record::*;

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
