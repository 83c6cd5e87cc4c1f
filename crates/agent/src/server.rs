//! Assembles an agent: the machine's node specs from `cluster.nodes`, the supervisor, the gRPC
//! service and the heartbeat loop.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use shoal_client::channel::Channels;
use shoal_client::controller::ControllerClient;
use shoal_common::config::{AgentConfig, ClusterNodes, NodeMode};
use shoal_common::version::VERSION;
use shoal_proto::agent_server::AgentServer;
use shoal_proto::auth::ServerAuth;
use shoal_proto::node_info_server::NodeInfoServer;
use shoal_server::node_info::NodeInfoService;
use tokio::sync::watch;

use crate::process;
use crate::service::AgentService;
use crate::supervisor::{NodeSpec, STOP_GRACE, Supervisor};

/// How often the agent reports itself to the controller leader.
const HEARTBEAT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

pub struct AgentOptions {
    pub config: AgentConfig,
    pub nodes: ClusterNodes,
    pub secret: String,
    /// The machine's home: its config files, `log/` and `run/` live here.
    pub home: PathBuf,
    /// The `shoal` executable that runs the nodes.
    pub program: PathBuf,
    /// Start the machine's nodes as soon as the agent is up.
    pub start_nodes: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("agent `{0}` (localSite) is not an agent in cluster.nodes")]
    NotDeclared(String),
    #[error(transparent)]
    Client(#[from] shoal_client::ClientError),
    #[error("gRPC server: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// The processes this machine runs, in `cluster.nodes` order.
fn node_specs(opts: &AgentOptions) -> Result<Vec<NodeSpec>, AgentError> {
    let host = &opts.config.local_site.host;
    let log_dir = opts.home.join("log");
    let run_dir = opts.home.join("run");
    std::fs::create_dir_all(&log_dir)?;
    std::fs::create_dir_all(&run_dir)?;
    let home = opts.home.display().to_string();
    Ok(opts
        .nodes
        .on_machine(host)
        .filter(|n| n.mode != NodeMode::Agent)
        .map(|n| {
            let alias = n.site.alias.clone();
            let args = match n.mode {
                NodeMode::Controller => vec!["controller".into(), "--home".into(), home.clone()],
                _ => vec![
                    "datanode".into(),
                    "--home".into(),
                    home.clone(),
                    "--alias".into(),
                    alias.clone(),
                ],
            };
            NodeSpec {
                log_file: log_dir.join(format!("{alias}.log")),
                pid_file: run_dir.join(format!("{alias}.pid")),
                alias,
                mode: n.mode,
                program: opts.program.clone(),
                args,
            }
        })
        .collect())
}

/// Stops node processes a previous agent of this machine left running (it was killed): the
/// new agent must own every process it reports, and a duplicate could not bind anyway.
async fn stop_orphans(specs: &[NodeSpec], home: &std::path::Path) {
    for spec in specs {
        let pid =
            process::read_pid_file(&spec.pid_file).filter(|pid| process::is_shoal_of(*pid, home));
        if let Some(pid) = pid {
            tracing::warn!(
                "{}: stopping pid {pid} left by a previous agent",
                spec.alias
            );
            process::terminate(pid, STOP_GRACE).await;
        }
    }
}

pub async fn run(
    opts: AgentOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AgentError> {
    let site = opts.config.local_site.clone();
    match opts.nodes.by_alias(&site.alias) {
        Some(n) if n.mode == NodeMode::Agent => {}
        _ => return Err(AgentError::NotDeclared(site.alias.clone())),
    }
    // Bind first: a second agent for the same machine fails here, before it touches the
    // first one's nodes. Then, before answering or reporting anything, stop orphans.
    let listener = shoal_server::serve::bind(&site.addr()).await?;
    let specs = node_specs(&opts)?;
    stop_orphans(&specs, &opts.home).await;
    let supervisor = Arc::new(Supervisor::new(
        specs,
        opts.config.restart_on_crash,
        opts.config.restart_backoff,
    ));
    tracing::info!(
        "agent {} version {VERSION} listening on {}",
        site.alias,
        site.addr()
    );
    if opts.start_nodes {
        let sup = supervisor.clone();
        tokio::spawn(async move { sup.set_running(&[], true).await });
    }

    let auth = ServerAuth::new(&opts.secret);
    let router = tonic::transport::Server::builder()
        .add_service(AgentServer::with_interceptor(
            AgentService::new(site.host.clone(), supervisor.clone()),
            auth.clone(),
        ))
        .add_service(NodeInfoServer::with_interceptor(
            NodeInfoService::new(
                &site.alias,
                shoal_proto::NodeMode::Agent,
                opts.config.entries(),
            ),
            auth,
        ));

    let (stop_tx, stop_rx) = watch::channel(false);
    let controllers = ControllerClient::new(
        opts.nodes.controllers().map(|n| n.site.addr()).collect(),
        Channels::new(&opts.secret)?,
    );
    let heartbeats = tokio::spawn(shoal_client::heartbeat::run(
        controllers,
        shoal_client::heartbeat::self_report(&site.alias, NodeMode::Agent, &site.addr()),
        HEARTBEAT_INTERVAL,
        stop_rx,
    ));

    let served = shoal_server::serve::serve(router, listener, async move {
        shutdown.await;
        // Stopping the agent stops the machine's nodes first (the seed's stopAllNodes.sh), and
        // no start request may revive one after that.
        supervisor.shutdown().await;
        let _ = stop_tx.send(true);
        let _ = heartbeats.await;
    })
    .await;
    Ok(served?)
}
