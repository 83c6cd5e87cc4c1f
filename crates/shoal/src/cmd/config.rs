//! `shoal config get KEY`: a key's value on every node (the seed's
//! `pnodeRun(getConfig{`chunkMetaDir})`), asked of each running node itself.

use std::time::Duration;

use anyhow::bail;
use serde::Serialize;
use shoal_client::node_info::config_of;
use shoal_proto::NodeState;

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
        match config_of(&target.channels, &node.addr, Duration::from_secs(5)).await {
            Ok(config) => {
                if let Some(e) = config.into_iter().find(|e| e.name == args.key) {
                    rows.push(Row {
                        node: node.alias.clone(),
                        value: e.value,
                    });
                }
            }
            Err(e) => unreachable.push(format!("{}: {e}", node.alias)),
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
