//! What a running node says of itself (`NodeInfo`): its effective configuration, for
//! `shoal config get`, `cluster.config` and the web console.

use std::time::Duration;

use shoal_proto::node_info_client::NodeInfoClient;
use shoal_proto::{ConfigEntry, NodeInfoRequest};

use crate::channel::Channels;

/// The configuration the node at `addr` runs with, every key with its value; `Err` says why it
/// did not answer within `timeout`.
pub async fn config_of(
    channels: &Channels,
    addr: &str,
    timeout: Duration,
) -> Result<Vec<ConfigEntry>, String> {
    let mut client = NodeInfoClient::new(channels.get(addr).map_err(|e| e.to_string())?);
    let mut req = tonic::Request::new(NodeInfoRequest {});
    req.set_timeout(timeout);
    let info = client
        .node_info(req)
        .await
        .map_err(|s| s.message().to_owned())?;
    Ok(info.into_inner().config)
}
