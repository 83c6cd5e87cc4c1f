//! Calls to one machine's agent.

use std::time::Duration;

use shoal_proto::agent_client::AgentClient as PbClient;
use shoal_proto::{
    BackupRequest, BackupResponse, ListProcessesRequest, ListProcessesResponse, NodesRequest,
    PackagePart, RestartAgentRequest, StagedPackage, SwitchVersionRequest,
};

use crate::ClientError;
use crate::channel::{Channels, with_timeout};

/// Stopping waits for the node's graceful shutdown; allow for it.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Receiving, verifying and unpacking a package of a few hundred MB.
const STAGE_TIMEOUT: Duration = Duration::from_secs(600);
/// Bytes per message of a package upload.
const PACKAGE_PART: usize = 1 << 20;

pub struct AgentClient {
    addr: String,
    client: PbClient<crate::channel::AuthChannel>,
}

impl AgentClient {
    pub fn new(addr: &str, channels: &Channels) -> Result<Self, ClientError> {
        Ok(Self {
            addr: addr.to_owned(),
            client: PbClient::new(channels.get(addr)?),
        })
    }

    pub async fn list(&mut self) -> Result<ListProcessesResponse, ClientError> {
        let r = self
            .client
            .list_processes(with_timeout(CALL_TIMEOUT, ListProcessesRequest {}))
            .await;
        self.unwrap(r)
    }

    /// Starts the given nodes, or every node of the machine when `aliases` is empty.
    pub async fn start(
        &mut self,
        aliases: Vec<String>,
    ) -> Result<ListProcessesResponse, ClientError> {
        let r = self
            .client
            .start_nodes(with_timeout(CALL_TIMEOUT, NodesRequest { aliases }))
            .await;
        self.unwrap(r)
    }

    /// Stops the given nodes gracefully, or every node of the machine when `aliases` is empty.
    pub async fn stop(
        &mut self,
        aliases: Vec<String>,
    ) -> Result<ListProcessesResponse, ClientError> {
        let r = self
            .client
            .stop_nodes(with_timeout(CALL_TIMEOUT, NodesRequest { aliases }))
            .await;
        self.unwrap(r)
    }

    /// Sends a package file in parts; the agent verifies and unpacks it.
    pub async fn stage_package(
        &mut self,
        package: &std::path::Path,
    ) -> Result<StagedPackage, ClientError> {
        let file = tokio::fs::File::open(package).await.map_err(|e| {
            ClientError::BadInput(format!("cannot read {}: {e}", package.display()))
        })?;
        let parts = futures::stream::unfold(file, |mut file| async move {
            use tokio::io::AsyncReadExt;
            let mut buf = vec![0u8; PACKAGE_PART];
            match file.read(&mut buf).await {
                Ok(0) | Err(_) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((PackagePart { data: buf }, file))
                }
            }
        });
        let r = self
            .client
            .stage_package(with_timeout(STAGE_TIMEOUT, parts))
            .await;
        self.unwrap(r)
    }

    pub async fn backup_metadata(&mut self, label: &str) -> Result<BackupResponse, ClientError> {
        let r = self
            .client
            .backup_metadata(with_timeout(
                CALL_TIMEOUT,
                BackupRequest {
                    label: label.to_owned(),
                },
            ))
            .await;
        self.unwrap(r)
    }

    pub async fn switch_version(
        &mut self,
        version: &str,
    ) -> Result<ListProcessesResponse, ClientError> {
        let r = self
            .client
            .switch_version(with_timeout(
                CALL_TIMEOUT,
                SwitchVersionRequest {
                    version: version.to_owned(),
                },
            ))
            .await;
        self.unwrap(r)
    }

    /// Asks the agent to re-execute itself from its current version; it answers first.
    pub async fn restart(&mut self) -> Result<(), ClientError> {
        let r = self
            .client
            .restart_agent(with_timeout(CALL_TIMEOUT, RestartAgentRequest {}))
            .await;
        self.unwrap(r).map(|_| ())
    }

    fn unwrap<T>(&self, r: Result<tonic::Response<T>, tonic::Status>) -> Result<T, ClientError> {
        r.map(tonic::Response::into_inner)
            .map_err(|s| ClientError::from_status(&self.addr, s))
    }
}
