//! The `Agent` gRPC service (authenticated by the server's interceptor): the machine's
//! processes, and its installed versions for rolling upgrades.

use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;
use shoal_package::VerifyingKey;
use shoal_proto::agent_server::Agent;
use shoal_proto::{
    BackupRequest, BackupResponse, ListProcessesRequest, ListProcessesResponse, NodesRequest,
    PackagePart, ProcessState, RestartAgentRequest, RestartAgentResponse, StagedPackage,
    StagedVersion, SwitchVersionRequest,
};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};

use crate::install::Installs;
use crate::supervisor::Supervisor;

pub struct AgentService {
    pub machine: String,
    pub supervisor: Arc<Supervisor>,
    pub installs: Arc<Installs>,
    /// Metadata directories to back up, by node alias.
    pub metadata_dirs: Vec<(String, PathBuf)>,
    /// Packages must be signed by this key when set (`packageVerifyKey`).
    pub trusted: Option<VerifyingKey>,
    /// Set to re-execute the agent from `current` once the server has stopped.
    pub restart: watch::Sender<bool>,
}

impl AgentService {
    fn listing(&self) -> Response<ListProcessesResponse> {
        Response::new(ListProcessesResponse {
            machine: self.machine.clone(),
            processes: self.supervisor.list(),
            agent_version: shoal_common::version::version().to_owned(),
            current_version: self.installs.current().unwrap_or_default(),
            previous_version: self.installs.previous().unwrap_or_default(),
            installed_versions: self.installs.installed(),
            staged: self
                .installs
                .staged()
                .into_iter()
                .map(|(version, binary_sha256)| StagedVersion {
                    version,
                    binary_sha256,
                })
                .collect(),
        })
    }

    /// Versions are only changed with the machine's nodes stopped: a running node would keep
    /// the old binary and the metadata it writes could not be backed up consistently.
    fn ensure_nodes_stopped(&self, what: &str) -> Result<(), Status> {
        let running: Vec<String> = self
            .supervisor
            .list()
            .into_iter()
            .filter(|p| p.state() != ProcessState::Stopped)
            .map(|p| p.alias)
            .collect();
        if running.is_empty() {
            Ok(())
        } else {
            Err(Status::failed_precondition(format!(
                "cannot {what} while {} runs on {}: stop the machine's nodes first",
                running.join(", "),
                self.machine
            )))
        }
    }

    /// Refuses the whole request if any alias is not one of this machine's nodes, so a typo
    /// changes nothing.
    async fn set_running(
        &self,
        req: Request<NodesRequest>,
        running: bool,
    ) -> Result<Response<ListProcessesResponse>, Status> {
        if running && self.supervisor.is_shutting_down() {
            return Err(Status::unavailable("the agent is shutting down"));
        }
        let aliases = req.into_inner().aliases;
        let unknown = self.supervisor.unknown(&aliases);
        if !unknown.is_empty() {
            return Err(Status::not_found(format!(
                "not a node of machine {}: {}",
                self.machine,
                unknown.join(", ")
            )));
        }
        self.supervisor.set_running(&aliases, running).await;
        Ok(self.listing())
    }
}

#[tonic::async_trait]
impl Agent for AgentService {
    async fn list_processes(
        &self,
        _req: Request<ListProcessesRequest>,
    ) -> Result<Response<ListProcessesResponse>, Status> {
        Ok(self.listing())
    }

    async fn start_nodes(
        &self,
        req: Request<NodesRequest>,
    ) -> Result<Response<ListProcessesResponse>, Status> {
        self.set_running(req, true).await
    }

    async fn stop_nodes(
        &self,
        req: Request<NodesRequest>,
    ) -> Result<Response<ListProcessesResponse>, Status> {
        self.set_running(req, false).await
    }

    async fn stage_package(
        &self,
        req: Request<Streaming<PackagePart>>,
    ) -> Result<Response<StagedPackage>, Status> {
        let dir = self.installs.incoming();
        tokio::fs::create_dir_all(&dir).await?;
        let path = dir.join(format!("package-{}.tar", rand_suffix()));
        let received = receive(req.into_inner(), &path).await;
        let staged = match received {
            Ok(()) => {
                let installs = self.installs.clone();
                let trusted = self.trusted;
                let p = path.clone();
                tokio::task::spawn_blocking(move || installs.stage(&p, trusted.as_ref()))
                    .await
                    .map_err(|e| Status::internal(e.to_string()))?
                    .map_err(Status::invalid_argument)
            }
            Err(e) => Err(e),
        };
        let _ = tokio::fs::remove_file(&path).await;
        let m = staged?;
        let binary_sha256 = m
            .files
            .iter()
            .find(|f| f.name == crate::install::BINARY)
            .map(|f| f.sha256.clone())
            .unwrap_or_default();
        tracing::info!("staged version {} ({binary_sha256})", m.version);
        Ok(Response::new(StagedPackage {
            version: m.version,
            build_date: m.build_date,
            min_upgrade_from: m.min_upgrade_from,
            wire_version: m.wire_version,
            storage_format_version: m.storage_format_version,
            disk_free_bytes: disk_free(&dir),
            binary_sha256,
            signed: self.trusted.is_some(),
        }))
    }

    async fn backup_metadata(
        &self,
        req: Request<BackupRequest>,
    ) -> Result<Response<BackupResponse>, Status> {
        self.ensure_nodes_stopped("back up metadata")?;
        let label = req.into_inner().label;
        let installs = self.installs.clone();
        let dirs = self.metadata_dirs.clone();
        let (path, bytes, files) =
            tokio::task::spawn_blocking(move || installs.backup(&label, &dirs))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(Status::failed_precondition)?;
        tracing::info!(
            "backed up {files} metadata files ({bytes} bytes) to {}",
            path.display()
        );
        Ok(Response::new(BackupResponse {
            path: path.display().to_string(),
            bytes,
            files,
        }))
    }

    async fn switch_version(
        &self,
        req: Request<SwitchVersionRequest>,
    ) -> Result<Response<ListProcessesResponse>, Status> {
        self.ensure_nodes_stopped("switch versions")?;
        self.installs
            .switch(&req.into_inner().version)
            .map_err(Status::failed_precondition)?;
        Ok(self.listing())
    }

    async fn restart_agent(
        &self,
        _req: Request<RestartAgentRequest>,
    ) -> Result<Response<RestartAgentResponse>, Status> {
        let Some(program) = self.installs.program() else {
            return Err(Status::failed_precondition(format!(
                "{} has no versioned install (no `current` link) to restart from",
                self.machine
            )));
        };
        // Never exec something that cannot even say what it is: this agent would be gone.
        let want = self.installs.current().unwrap_or_default();
        let reported = crate::install::build_info(&program).await;
        match reported {
            Ok(info) if info.version == want => {}
            Ok(info) => {
                return Err(Status::failed_precondition(format!(
                    "{} reports version {}, expected {want}; not restarting",
                    program.display(),
                    info.version
                )));
            }
            Err(e) => {
                return Err(Status::failed_precondition(format!(
                    "{} does not run ({e}); not restarting",
                    program.display()
                )));
            }
        }
        tracing::info!(
            "restarting the agent from version {:?}",
            self.installs.current()
        );
        self.restart.send_replace(true);
        Ok(Response::new(RestartAgentResponse {}))
    }
}

async fn receive(mut parts: Streaming<PackagePart>, path: &std::path::Path) -> Result<(), Status> {
    let mut file = tokio::fs::File::create(path).await?;
    while let Some(part) = parts.next().await {
        file.write_all(&part?.data).await?;
    }
    file.sync_all().await?;
    Ok(())
}

fn rand_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{nanos}", std::process::id())
}

fn disk_free(path: &std::path::Path) -> u64 {
    nix::sys::statvfs::statvfs(path)
        .map(|s| s.blocks_available() * s.fragment_size())
        .unwrap_or(0)
}
