//! The cluster's state as DolphinDB's functions give it, read from Shoal's system tables
//! (`cluster.nodes`, `cluster.config`, `cluster.chunks`): the seed's `pnodeRun(version)`,
//! `pnodeRun(getConfig{`chunkMetaDir})`, `rpc(getControllerAlias(), ...)`.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};

use super::Args;
use crate::error::{Result, ScriptError};
use crate::host::{Host, HostError};
use crate::sql;
use crate::value::Value;

/// Functions whose answer depends on the node they run on.
pub const NODE_FUNCTIONS: [&str; 3] = ["version", "getNodeAlias", "getConfig"];

/// The nodes a node function runs on.
enum Nodes {
    One(String),
    /// Every data node (`pnodeRun`'s default).
    EveryDataNode,
    List(Vec<String>),
}

impl Nodes {
    /// A SQL condition on the `node` column of a system table.
    fn filter(&self) -> String {
        let list = |names: &[String]| {
            let names: Vec<String> = names.iter().map(|n| sql::string(n)).collect();
            format!("node IN ({})", names.join(", "))
        };
        match self {
            Nodes::One(n) => list(std::slice::from_ref(n)),
            Nodes::List(names) => list(names),
            Nodes::EveryDataNode => {
                "node IN (SELECT node FROM cluster.nodes WHERE mode = 'datanode')".into()
            }
        }
    }
}

/// `f(args)` on each node of `nodes`: `(node, value)` in node order. A node that does not
/// answer (or has no such configuration key) has no row.
async fn per_node(host: &dyn Host, f: &Args<'_>, nodes: &Nodes) -> Result<Vec<(String, String)>> {
    let filter = nodes.filter();
    let query = match f.func {
        "version" => {
            f.count(0, 0)?;
            format!(
                "SELECT node, version || ' ' || build_date AS value FROM cluster.nodes \
                 WHERE {filter} ORDER BY node"
            )
        }
        "getNodeAlias" => {
            f.count(0, 0)?;
            format!("SELECT node, node AS value FROM cluster.nodes WHERE {filter} ORDER BY node")
        }
        _ => {
            f.count(1, 1)?;
            let key = f.text(0, "key")?;
            format!(
                "SELECT node, value FROM cluster.config WHERE name = {} AND {filter} ORDER BY node",
                sql::string(&key)
            )
        }
    };
    let batch = host.query(&query).await?;
    let names = sql::column_text(&batch, "node")?;
    let values = sql::column_text(&batch, "value")?;
    Ok(names
        .into_iter()
        .zip(values)
        .map(|(n, v)| (n.unwrap_or_default(), v.unwrap_or_default()))
        .collect())
}

/// `f(args)` on one node: its value. `getConfig()` without a key: the node's whole
/// configuration as a `name, value` table.
pub async fn on_node(host: &dyn Host, node: &str, f: &Args<'_>) -> Result<Value> {
    let func = f.func;
    if func == "getConfig" && f.get(0).is_none() {
        f.count(0, 1)?;
        let batch = host
            .query(&format!(
                "SELECT name, value FROM cluster.config WHERE node = {} ORDER BY name",
                sql::string(node)
            ))
            .await?;
        return Ok(Value::Table(batch));
    }
    let rows = per_node(host, f, &Nodes::One(node.to_owned())).await?;
    match rows.into_iter().next() {
        Some((_, value)) => Ok(Value::Str(value)),
        None if func == "getConfig" => Err(ScriptError::invalid(format!(
            "node `{node}` reports no configuration key `{}` (an unknown key, an unknown \
             node, or a node that does not answer)",
            f.text(0, "key")?
        ))),
        None => Err(ScriptError::invalid(format!(
            "no node `{node}` in the cluster"
        ))),
    }
}

/// `pnodeRun(f[, nodes])`: `f` on every data node (or the nodes named), as `node, value` rows.
pub async fn pnode_run(host: &dyn Host, args: &Args<'_>) -> Result<Value> {
    args.count(1, 2)?;
    let Some(Value::Function { name, bound }) = args.get(0) else {
        return Err(args.bad(
            0,
            "function",
            "a function such as version or getConfig{`key}",
        ));
    };
    if !NODE_FUNCTIONS.contains(&name.as_str()) {
        return Err(ScriptError::Unsupported {
            construct: format!("pnodeRun with `{name}`"),
            supported: format!("pnodeRun with {}", NODE_FUNCTIONS.join(", ")),
        });
    }
    let nodes = match args.get(1).cloned() {
        None => Nodes::EveryDataNode,
        Some(Value::Vector(v)) => Nodes::List(v.iter().map(ToString::to_string).collect()),
        Some(_) => Nodes::One(args.text(1, "nodes")?),
    };
    let f = Args {
        func: name,
        values: bound.clone(),
    };
    if name == "getConfig" && f.get(0).is_none() {
        return Err(ScriptError::invalid(
            "pnodeRun needs the key: pnodeRun(getConfig{`chunkMetaDir})",
        ));
    }
    let rows = per_node(host, &f, &nodes).await?;
    let column = |f: fn(&(String, String)) -> &str| -> ArrayRef {
        Arc::new(rows.iter().map(|r| Some(f(r))).collect::<StringArray>())
    };
    let batch =
        RecordBatch::try_from_iter([("node", column(|r| &r.0)), ("value", column(|r| &r.1))])
            .map_err(|e| ScriptError::invalid(format!("pnodeRun result: {e}")))?;
    Ok(Value::Table(batch))
}

/// The alias of the controller that leads the Raft group now.
pub async fn controller_alias(host: &dyn Host) -> Result<String> {
    let batch = host
        .query("SELECT node FROM cluster.nodes WHERE mode = 'controller' AND raft_role = 'leader'")
        .await?;
    sql::column_text(&batch, "node")?
        .into_iter()
        .flatten()
        .next()
        .ok_or_else(|| HostError::Unavailable("no controller is leader now".into()).into())
}

/// DolphinDB's `getClusterChunksStatus()` columns, from `cluster.chunks`: as SQL, so a select
/// over it runs in the engine and a cluster of many chunks streams its answer.
pub fn chunks_status() -> Value {
    Value::Query(
        "SELECT CAST(chunk_id AS VARCHAR) AS \"chunkId\", path AS \"file\", bytes AS \"size\", \
         version, state, replicas FROM cluster.chunks ORDER BY chunk_id"
            .into(),
    )
}
