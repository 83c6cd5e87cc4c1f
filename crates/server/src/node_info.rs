//! The `NodeInfo` service every node serves: who it is and its effective configuration.

use shoal_common::version;
use shoal_proto::node_info_server::NodeInfo;
use shoal_proto::{ConfigEntry, NodeInfoRequest, NodeInfoResponse, NodeMode};
use tonic::{Request, Response, Status};

pub struct NodeInfoService {
    info: NodeInfoResponse,
}

impl NodeInfoService {
    /// `config`: every key with its effective value, as the role's config struct lists them.
    pub fn new(alias: &str, mode: NodeMode, config: Vec<(String, String)>) -> Self {
        Self {
            info: NodeInfoResponse {
                alias: alias.to_owned(),
                version: version::version().to_owned(),
                build_date: version::build_date().to_owned(),
                mode: mode.into(),
                config: config
                    .into_iter()
                    .map(|(name, value)| ConfigEntry { name, value })
                    .collect(),
            },
        }
    }
}

#[tonic::async_trait]
impl NodeInfo for NodeInfoService {
    async fn node_info(
        &self,
        _req: Request<NodeInfoRequest>,
    ) -> Result<Response<NodeInfoResponse>, Status> {
        Ok(Response::new(self.info.clone()))
    }
}
