//! The console's JSON: what `shoal status`, `shoal chunks`, `shoal upgrade --status` and `shoal
//! config` show, asked the same way (the leader through [`ControllerClient`], each node's
//! configuration of the node itself).

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::future::join_all;
use serde_json::{Value, json};
use shoal_client::channel::Channels;
use shoal_client::controller::ControllerClient;
use shoal_client::node_info::config_of;
use shoal_proto::{ChunkState, NodeState};

/// How long one node may take to tell its configuration.
const NODE_INFO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// The answer: the JSON, or 503 with `{"error": ...}` when the cluster could not be asked.
pub fn json(v: Result<Value, String>) -> Response {
    let (code, body) = match v {
        Ok(v) => (StatusCode::OK, v),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, json!({ "error": e })),
    };
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Nodes, chunks not COMPLETE, the upgrade record, and whether the cluster waits for
/// `shoal upgrade --finalize`.
pub async fn overview(controllers: &ControllerClient) -> Result<Value, String> {
    let status = controllers
        .cluster_status()
        .await
        .map_err(|e| e.to_string())?;
    let catalog = controllers.get_catalog().await.map_err(|e| e.to_string())?;
    let upgrade = controllers.get_upgrade().await.map_err(|e| e.to_string())?;
    let nodes: Vec<Value> = status
        .nodes
        .iter()
        .map(|n| {
            json!({
                "alias": n.alias,
                "mode": n.mode().name(),
                "machine": n.machine,
                "addr": n.addr,
                "state": n.state().name(),
                "version": n.version,
                "build_date": n.build_date,
                "raft_role": n.current_role().name(),
                "last_heartbeat_ms_ago": n.last_heartbeat_ms_ago,
            })
        })
        .collect();
    let chunks: Vec<Value> = catalog
        .chunks
        .iter()
        .filter(|c| c.current_state() != ChunkState::Complete)
        .map(|c| {
            json!({
                "id": c.id,
                "path": c.path,
                "state": c.current_state().name(),
                "version": c.version,
                "replicas": c.replicas.iter().map(|r| json!({"node": r.node, "in_sync": r.in_sync})).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(json!({
        "leader": status.leader_alias,
        "raft_term": status.raft_term,
        "cluster_version": status.cluster_version,
        "supported_cluster_version": status.supported_cluster_version,
        "awaiting_finalize": awaiting_finalize(&status),
        "nodes": nodes,
        "chunks_not_complete": chunks,
        // The orchestrator's own format (it carries its version); the page reads what it knows.
        "upgrade": serde_json::from_str::<Value>(&upgrade.state_json).unwrap_or(Value::Null),
    }))
}

/// Every node runs one release, able to run the cluster at a higher version than it does:
/// what `shoal upgrade --finalize` is for (and until then a rollback is still possible).
fn awaiting_finalize(status: &shoal_proto::ClusterStatusResponse) -> Option<String> {
    let mut versions = status.nodes.iter().map(|n| n.version.as_str());
    let first = versions.next()?;
    let one_release = !first.is_empty() && versions.all(|v| v == first);
    (one_release && status.supported_cluster_version > status.cluster_version).then(|| {
        format!(
            "every node runs {first}, but the cluster is at version {} (this release runs at \
             {}): run `shoal upgrade --finalize` once you will not roll back",
            status.cluster_version, status.supported_cluster_version
        )
    })
}

/// Each running node's configuration, as it reports it itself.
pub async fn config(controllers: &ControllerClient, channels: &Channels) -> Result<Value, String> {
    let status = controllers
        .cluster_status()
        .await
        .map_err(|e| e.to_string())?;
    let up = status.nodes.iter().filter(|n| n.state() == NodeState::Up);
    let answers = join_all(up.map(|n| async move {
        match config_of(channels, &n.addr, NODE_INFO_TIMEOUT).await {
            Ok(entries) => {
                let map: serde_json::Map<String, Value> = entries
                    .into_iter()
                    .map(|e| (e.name, Value::String(e.value)))
                    .collect();
                json!({ "alias": n.alias, "config": map })
            }
            Err(e) => json!({ "alias": n.alias, "error": e }),
        }
    }))
    .await;
    Ok(json!({ "nodes": answers }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::{ClusterStatusResponse, NodeStatus};

    fn status(versions: &[&str], cluster: u32, supported: u32) -> ClusterStatusResponse {
        ClusterStatusResponse {
            nodes: versions
                .iter()
                .map(|v| NodeStatus {
                    version: (*v).into(),
                    ..Default::default()
                })
                .collect(),
            cluster_version: cluster,
            supported_cluster_version: supported,
            ..Default::default()
        }
    }

    #[test]
    fn the_banner_waits_for_every_node_on_one_release_able_to_run_higher() {
        let all_new = awaiting_finalize(&status(&["0.2.0", "0.2.0"], 1, 2)).unwrap();
        assert!(all_new.contains("every node runs 0.2.0"), "{all_new}");
        assert!(all_new.contains("--finalize"), "{all_new}");
        // Mid-upgrade, finalized, a leader of a release without the field, nobody known.
        assert_eq!(awaiting_finalize(&status(&["0.1.0", "0.2.0"], 1, 2)), None);
        assert_eq!(awaiting_finalize(&status(&["0.2.0", "0.2.0"], 2, 2)), None);
        assert_eq!(awaiting_finalize(&status(&["0.2.0", "0.2.0"], 1, 0)), None);
        assert_eq!(awaiting_finalize(&status(&[], 1, 2)), None);
    }
}
