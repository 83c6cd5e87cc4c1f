//! The `Agent` gRPC service (authenticated by the server's interceptor).

use std::sync::Arc;

use shoal_proto::agent_server::Agent;
use shoal_proto::{ListProcessesRequest, ListProcessesResponse, NodesRequest};
use tonic::{Request, Response, Status};

use crate::supervisor::Supervisor;

pub struct AgentService {
    machine: String,
    supervisor: Arc<Supervisor>,
}

impl AgentService {
    pub fn new(machine: String, supervisor: Arc<Supervisor>) -> Self {
        Self {
            machine,
            supervisor,
        }
    }

    fn listing(&self) -> Response<ListProcessesResponse> {
        Response::new(ListProcessesResponse {
            machine: self.machine.clone(),
            processes: self.supervisor.list(),
        })
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
}
