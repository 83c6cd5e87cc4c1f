//! `shoal config get KEY`: a key's value on every node (the seed's
//! `pnodeRun(getConfig{`chunkMetaDir})`), asked of each running node itself.

use anyhow::bail;
use serde::Serialize;
use shoal_proto::node_info_client::NodeInfoClient;
use shoal_proto::{NodeInfoRequest, NodeState};

use crate::cli::ConfigGetArgs;
use crate::output;
use crate::target::Target;

#[derive(Serialize)]
struct Row {
    node: String,
    value: String,
}

pub async fn get(args: ConfigGetArgs) -> anyhow::Result<()> {
    let target = Target::resolve(&args.target)?;
    let status = target.controllers.cluster_status().await?;
    let mut rows = Vec::new();
    let mut unreachable = Vec::new();
    for node in status.nodes.iter().filter(|n| n.state() == NodeState::Up) {
        let mut client = NodeInfoClient::new(target.channels.get(&node.addr)?);
        let mut req = tonic::Request::new(NodeInfoRequest {});
        req.set_timeout(std::time::Duration::from_secs(5));
        match client.node_info(req).await {
            Ok(info) => {
                if let Some(e) = info
                    .into_inner()
                    .config
                    .into_iter()
                    .find(|e| e.name == args.key)
                {
                    rows.push(Row {
                        node: node.alias.clone(),
                        value: e.value,
                    });
                }
            }
            Err(e) => unreachable.push(format!("{}: {}", node.alias, e.message())),
        }
    }
    for u in &unreachable {
        eprintln!("warning: {u}");
    }
    if rows.is_empty() {
        bail!("no running node has a configuration key `{}`", args.key);
    }
    if args.json {
        println!("{}", output::json(&rows)?);
    } else {
        let rows = rows.into_iter().map(|r| vec![r.node, r.value]).collect();
        println!("{}", output::table(&["NODE", "VALUE"], rows));
    }
    Ok(())
}
