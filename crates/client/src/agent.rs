//! Calls to one machine's agent.

use std::time::Duration;

use shoal_proto::agent_client::AgentClient as PbClient;
use shoal_proto::{ListProcessesRequest, ListProcessesResponse, NodesRequest};

use crate::ClientError;
use crate::channel::{Channels, with_timeout};

/// Stopping waits for the node's graceful shutdown; allow for it.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

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

    fn unwrap<T>(&self, r: Result<tonic::Response<T>, tonic::Status>) -> Result<T, ClientError> {
        r.map(tonic::Response::into_inner)
            .map_err(|s| ClientError::from_status(&self.addr, s))
    }
}
