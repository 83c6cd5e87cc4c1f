//! Calls to the controller group: finds the Raft leader among the given sites, follows
//! redirects (`shoal-leader` metadata), and retries on another controller while a new leader is
//! being elected.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shoal_proto::controller_client::ControllerClient as PbClient;
use shoal_proto::user_admin_client::UserAdminClient;
use shoal_proto::{
    ChunkInfo, ClusterStatusRequest, ClusterStatusResponse, DdlRequest, DdlResponse,
    EnsureChunksRequest, GetCatalogRequest, GetCatalogResponse, GetUpgradeRequest,
    HeartbeatRequest, HeartbeatResponse, LEADER_METADATA_KEY, ListUsersRequest,
    SetClusterVersionRequest, SetUpgradeRequest, TransferLeadershipRequest, UpdateReplicasRequest,
    UpgradeRecord, UserList, UserRequest,
};

use crate::ClientError;
use crate::channel::{AuthChannel, Channels, with_timeout};
use crate::error::{Failure, classify};

/// Default time to keep trying while no leader answers (covers an election).
pub const DEFAULT_LEADER_WAIT: Duration = Duration::from_secs(10);

/// Pause between two rounds over all sites, so a leaderless group is not hammered.
const ROUND_PAUSE: Duration = Duration::from_millis(100);

/// Per-call deadline: a hung controller must not stall the caller.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// Deadline of calls that commit a metadata write: longer than the controller's own write
/// timeout, so the controller, which knows the outcome, answers first.
const WRITE_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether a call may be re-sent when its outcome is unknown (deadline, reset connection).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Retry {
    /// Running it twice is harmless (heartbeats, reads, EnsureChunks).
    Idempotent,
    /// Re-sent only when it certainly did not run (a redirect, UNAVAILABLE).
    OnlyIfNotRun,
}

#[derive(Clone)]
pub struct ControllerClient {
    sites: Vec<String>,
    channels: Channels,
    leader: Arc<Mutex<Option<String>>>,
    leader_wait: Duration,
}

impl ControllerClient {
    /// `sites` are controller addresses (`host:port`); any of them will do.
    pub fn new(sites: Vec<String>, channels: Channels) -> Self {
        Self {
            sites,
            channels,
            leader: Arc::default(),
            leader_wait: DEFAULT_LEADER_WAIT,
        }
    }

    /// The controller that answered last as leader.
    pub fn known_leader(&self) -> Option<String> {
        self.leader
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub async fn heartbeat(&self, req: HeartbeatRequest) -> Result<HeartbeatResponse, ClientError> {
        self.call(Retry::Idempotent, move |mut c| {
            let req = req.clone();
            async move { c.heartbeat(with_timeout(CALL_TIMEOUT, req)).await }
        })
        .await
    }

    /// Runs DDL on the leader. Not idempotent, so it is re-sent only when it certainly did not
    /// run; an unknown outcome (deadline, connection reset) is reported as such.
    pub async fn execute_ddl(&self, sql: &str) -> Result<DdlResponse, ClientError> {
        self.call(Retry::OnlyIfNotRun, |mut c| {
            let sql = sql.to_owned();
            async move {
                c.execute_ddl(with_timeout(WRITE_CALL_TIMEOUT, DdlRequest { sql }))
                    .await
            }
        })
        .await
    }

    /// The chunks of the given partitions (DolphinDB literals), created and placed if missing.
    pub async fn ensure_chunks(
        &self,
        db: &str,
        table: &str,
        partition_keys: &[&str],
    ) -> Result<Vec<ChunkInfo>, ClientError> {
        let req = EnsureChunksRequest {
            db: db.to_owned(),
            table: table.to_owned(),
            partition_keys: partition_keys.iter().map(|k| (*k).to_owned()).collect(),
        };
        let resp = self
            .call(Retry::Idempotent, |mut c| {
                let req = req.clone();
                async move { c.ensure_chunks(with_timeout(WRITE_CALL_TIMEOUT, req)).await }
            })
            .await?;
        Ok(resp.chunks)
    }

    /// Databases, tables and every chunk, as committed when the call was made.
    pub async fn get_catalog(&self) -> Result<GetCatalogResponse, ClientError> {
        self.call(Retry::Idempotent, |mut c| async move {
            c.get_catalog(with_timeout(CALL_TIMEOUT, GetCatalogRequest {}))
                .await
        })
        .await
    }

    /// Compare-and-set change of a chunk's in-sync set. Re-sent on an unknown outcome: a
    /// second copy of an applied change fails its version check (ABORTED) and the caller
    /// refreshes the chunk, which then shows the change.
    pub async fn update_replicas(
        &self,
        req: UpdateReplicasRequest,
    ) -> Result<ChunkInfo, ClientError> {
        self.call(Retry::Idempotent, |mut c| {
            let req = req.clone();
            async move {
                c.update_replicas(with_timeout(WRITE_CALL_TIMEOUT, req))
                    .await
            }
        })
        .await
    }

    pub async fn cluster_status(&self) -> Result<ClusterStatusResponse, ClientError> {
        self.call(Retry::Idempotent, |mut c| async move {
            c.cluster_status(with_timeout(CALL_TIMEOUT, ClusterStatusRequest {}))
                .await
        })
        .await
    }

    /// Hands leadership to `to_alias` (empty: the most caught-up other controller); answers
    /// the new leader's alias once it leads.
    pub async fn transfer_leadership(&self, to_alias: &str) -> Result<String, ClientError> {
        let resp = self
            .call(Retry::Idempotent, |mut c| {
                let to_alias = to_alias.to_owned();
                async move {
                    c.transfer_leadership(with_timeout(
                        WRITE_CALL_TIMEOUT,
                        TransferLeadershipRequest { to_alias },
                    ))
                    .await
                }
            })
            .await?;
        self.set_leader(None);
        Ok(resp.leader_alias)
    }

    pub async fn get_upgrade(&self) -> Result<UpgradeRecord, ClientError> {
        self.call(Retry::Idempotent, |mut c| async move {
            c.get_upgrade(with_timeout(CALL_TIMEOUT, GetUpgradeRequest {}))
                .await
        })
        .await
    }

    /// Compare-and-set of the upgrade record: a re-sent copy of an applied write fails its
    /// revision check (ABORTED); the caller re-reads the record.
    pub async fn set_upgrade(
        &self,
        expected_revision: u64,
        state_json: String,
    ) -> Result<UpgradeRecord, ClientError> {
        self.call(Retry::Idempotent, |mut c| {
            let req = SetUpgradeRequest {
                expected_revision,
                state_json: state_json.clone(),
            };
            async move { c.set_upgrade(with_timeout(WRITE_CALL_TIMEOUT, req)).await }
        })
        .await
    }

    pub async fn set_cluster_version(
        &self,
        cluster_version: u32,
        require_version: &str,
    ) -> Result<ClusterStatusResponse, ClientError> {
        self.call(Retry::Idempotent, |mut c| {
            let req = SetClusterVersionRequest {
                cluster_version,
                require_version: require_version.to_owned(),
            };
            async move {
                c.set_cluster_version(with_timeout(WRITE_CALL_TIMEOUT, req))
                    .await
            }
        })
        .await
    }

    /// Lists the users (`UserAdmin`, admin only).
    pub async fn list_users(&self) -> Result<UserList, ClientError> {
        self.call_on(
            UserAdminClient::new,
            Retry::Idempotent,
            |mut c| async move {
                c.list_users(with_timeout(CALL_TIMEOUT, ListUsersRequest {}))
                    .await
            },
        )
        .await
    }

    /// Changes a user (`UserAdmin`): re-sent only when it certainly did not run.
    pub async fn change_user(
        &self,
        change: UserChange,
        req: UserRequest,
    ) -> Result<UserList, ClientError> {
        self.call_on(UserAdminClient::new, Retry::OnlyIfNotRun, |mut c| {
            let req = with_timeout(WRITE_CALL_TIMEOUT, req.clone());
            async move {
                match change {
                    UserChange::Add => c.add_user(req).await,
                    UserChange::Remove => c.remove_user(req).await,
                    UserChange::Password => c.set_password(req).await,
                    UserChange::Role => c.set_role(req).await,
                }
            }
        })
        .await
    }

    async fn call<T, F, Fut>(&self, retry: Retry, op: F) -> Result<T, ClientError>
    where
        F: Fn(PbClient<AuthChannel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.call_on(PbClient::new, retry, op).await
    }

    /// Runs a call on the leader: tries the known leader, then every site, follows redirects
    /// (each address at most once per round), and starts another round after a pause until
    /// `leader_wait` has passed; re-sends a call whose outcome is unknown only if `retry` says
    /// it is idempotent.
    async fn call_on<C, T, F, Fut>(
        &self,
        client: fn(AuthChannel) -> C,
        retry: Retry,
        op: F,
    ) -> Result<T, ClientError>
    where
        F: Fn(C) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let started = Instant::now();
        let mut last = String::from("no site tried");
        loop {
            let mut candidates: Vec<String> = self.known_leader().into_iter().collect();
            candidates.extend(self.sites.iter().cloned());
            let mut tried = HashSet::new();
            let mut i = 0;
            while i < candidates.len() && started.elapsed() < self.leader_wait {
                let addr = candidates[i].clone();
                i += 1;
                if !tried.insert(addr.clone()) {
                    continue;
                }
                let client = client(self.channels.get(&addr)?);
                // No attempt may run past the caller's deadline.
                let left = self.leader_wait.saturating_sub(started.elapsed());
                let attempt = tokio::time::timeout(left, op(client))
                    .await
                    .unwrap_or_else(|_| {
                        Err(tonic::Status::deadline_exceeded("client deadline reached"))
                    });
                let status = match attempt {
                    Ok(resp) => {
                        self.set_leader(Some(addr));
                        return Ok(resp.into_inner());
                    }
                    Err(s) => s,
                };
                match after_failure(retry, &status) {
                    Next::Follow(leader) => {
                        last = format!("{addr} redirected to {leader}");
                        if !tried.contains(&leader) {
                            candidates.insert(i, leader);
                        }
                    }
                    Next::TryAnother => {
                        last = format!("{addr}: {}", crate::error::described(&status));
                        if self.known_leader().as_deref() == Some(addr.as_str()) {
                            self.set_leader(None);
                        }
                    }
                    Next::Fail => return Err(ClientError::from_status(&addr, status)),
                }
            }
            if started.elapsed() >= self.leader_wait {
                let tls = self.channels.tls().is_some();
                if let Some(hint) = crate::error::tls_hint(&last, tls) {
                    last = format!("{last}; {hint}");
                }
                return Err(ClientError::NoLeader {
                    sites: self.sites.join(","),
                    waited: started.elapsed(),
                    last,
                });
            }
            tokio::time::sleep(ROUND_PAUSE).await;
        }
    }

    fn set_leader(&self, addr: Option<String>) {
        *self.leader.lock().unwrap_or_else(|p| p.into_inner()) = addr;
    }
}

/// Which `UserAdmin` change [`ControllerClient::change_user`] makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserChange {
    Add,
    Remove,
    Password,
    Role,
}

/// What to do after a call failed.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// A follower named the leader: the call did not run, send it there.
    Follow(String),
    /// Send it to another controller.
    TryAnother,
    /// Report the error.
    Fail,
}

/// UNAVAILABLE and a redirect mean the call did not run: re-send it. A deadline or a reset
/// connection (`Unknown`, `Cancelled`) leaves the outcome unknown: re-send only an idempotent
/// call. ABORTED is never re-sent: it is either a refused compare-and-set or a write whose
/// outcome is unknown (an entry discarded by a leader change), and only the caller can check.
fn after_failure(retry: Retry, status: &tonic::Status) -> Next {
    if let Some(leader) = redirect(status) {
        return Next::Follow(leader);
    }
    let failure = classify(status);
    if failure == Failure::NotRun
        || (retry == Retry::Idempotent && failure == Failure::OutcomeUnknown)
    {
        Next::TryAnother
    } else {
        Next::Fail
    }
}

/// The leader address a follower named in its refusal, if any.
fn redirect(s: &tonic::Status) -> Option<String> {
    if s.code() != tonic::Code::FailedPrecondition {
        return None;
    }
    s.metadata()
        .get(LEADER_METADATA_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use tonic::{Code, Status};

    use super::*;

    #[test]
    fn only_calls_that_did_not_run_or_are_idempotent_are_re_sent() {
        let mut redirect = Status::failed_precondition("not the leader");
        redirect
            .metadata_mut()
            .insert(LEADER_METADATA_KEY, "10.0.0.2:8920".parse().unwrap());
        let discarded = Status::aborted("outcome unknown: discarded by a leader change");
        for retry in [Retry::Idempotent, Retry::OnlyIfNotRun] {
            assert_eq!(
                after_failure(retry, &redirect),
                Next::Follow("10.0.0.2:8920".into())
            );
            assert_eq!(
                after_failure(retry, &Status::unavailable("no leader")),
                Next::TryAnother
            );
            assert_eq!(after_failure(retry, &discarded), Next::Fail, "{retry:?}");
            assert_eq!(
                after_failure(retry, &Status::failed_precondition("no leader metadata")),
                Next::Fail
            );
        }
        for code in [Code::DeadlineExceeded, Code::Cancelled, Code::Unknown] {
            let s = Status::new(code, "outcome unknown");
            assert_eq!(after_failure(Retry::Idempotent, &s), Next::TryAnother);
            assert_eq!(after_failure(Retry::OnlyIfNotRun, &s), Next::Fail);
        }
    }
}
