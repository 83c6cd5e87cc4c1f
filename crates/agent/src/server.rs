//! Assembles an agent: the machine's node specs from `cluster.nodes`, the supervisor, the gRPC
//! service and the heartbeat loop.

use shoal_common::secret::Keys;
use shoal_common::tls::ServerTls;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use shoal_client::channel::Channels;
use shoal_client::controller::ControllerClient;
use shoal_common::config::{AgentConfig, ClusterCfg, ClusterNodes, ControllerConfig, NodeMode};
use shoal_proto::agent_server::AgentServer;
use shoal_proto::auth::ServerAuth;
use shoal_proto::node_info_server::NodeInfoServer;
use shoal_server::http::Readiness;
use shoal_server::node_info::NodeInfoService;
use tokio::sync::watch;

use crate::install::{self, Installs, Placement};
use crate::process;
use crate::service::AgentService;
use crate::supervisor::{NodeSpec, STOP_GRACE, Supervisor};

/// How often the agent reports itself to the controller leader.
const HEARTBEAT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

pub struct AgentOptions {
    pub config: AgentConfig,
    pub nodes: ClusterNodes,
    /// The cluster secret(s): the first is sent, all are accepted.
    pub secret: Keys,
    /// The machine's home: its config files, `log/` and `run/` live here.
    pub home: PathBuf,
    /// The `shoal` executable this agent runs as: installed as the machine's first version
    /// when the home has no versioned install yet (`current/shoal`, see `install`).
    pub program: PathBuf,
    /// Start the machine's nodes as soon as the agent is up.
    pub start_nodes: bool,
    /// The TLS material of `enableSSL=1` (served with, and used to reach the other nodes);
    /// `None`: plaintext.
    pub tls: Option<ServerTls>,
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
    #[error(transparent)]
    Config(#[from] shoal_common::config::ConfigError),
    #[error("packageVerifyKey: {0}")]
    VerifyKey(String),
    #[error("cannot install {} as the machine's first version: {source}", program.display())]
    Install {
        program: PathBuf,
        source: std::io::Error,
    },
}

/// Why the agent stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum AgentExit {
    /// Asked to stop (SIGTERM / SIGINT): its nodes were stopped first.
    Stopped,
    /// Asked to restart from `current` (self-upgrade); the caller re-executes `program`.
    Restart { program: PathBuf },
}

/// The processes this machine runs, in `cluster.nodes` order.
fn node_specs(opts: &AgentOptions, program: &std::path::Path) -> Result<Vec<NodeSpec>, AgentError> {
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
                program: program.to_owned(),
                args,
            }
        })
        .collect())
}

/// The metadata a machine's nodes keep (what the seed backs up by hand before an upgrade):
/// the controller's `dfsMetaDir`, each data node's `chunkMetaDir`.
fn metadata_dirs(opts: &AgentOptions) -> Result<Vec<(String, PathBuf)>, AgentError> {
    let mut dirs = Vec::new();
    for n in opts.nodes.on_machine(&opts.config.local_site.host) {
        match n.mode {
            NodeMode::Controller => {
                let cfg = ControllerConfig::load(&opts.home.join("controller.cfg"))?;
                dirs.push((n.site.alias.clone(), cfg.dfs_meta_dir));
            }
            NodeMode::DataNode => {
                let cfg = ClusterCfg::load(&opts.home.join("cluster.cfg"))?;
                dirs.push((
                    n.site.alias.clone(),
                    cfg.for_node(&n.site.alias)?.chunk_meta_dir,
                ));
            }
            NodeMode::Agent => {}
        }
    }
    Ok(dirs)
}

/// Stops node processes a previous agent of this machine left running (it was killed): the
/// new agent must own every process it reports, and a duplicate could not bind anyway.
///
/// Node processes that are this process's own children are not orphans: this agent
/// re-executed itself (self-upgrade) and keeps them; they are answered for adoption.
async fn stop_orphans(specs: &[NodeSpec], home: &std::path::Path) -> BTreeMap<String, u32> {
    let mut adopt = BTreeMap::new();
    for spec in specs {
        let pid =
            process::read_pid_file(&spec.pid_file).filter(|pid| process::is_shoal_of(*pid, home));
        if let Some(pid) = pid.filter(|pid| process::parent(*pid) == Some(std::process::id())) {
            tracing::info!(
                "{}: adopting pid {pid} (this agent re-executed itself)",
                spec.alias
            );
            adopt.insert(spec.alias.clone(), pid);
            continue;
        }
        if let Some(pid) = pid {
            tracing::warn!(
                "{}: stopping pid {pid} left by a previous agent",
                spec.alias
            );
            process::terminate(pid, STOP_GRACE).await;
        }
    }
    adopt
}

pub async fn run(
    opts: AgentOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<AgentExit, AgentError> {
    let site = opts.config.local_site.clone();
    match opts.nodes.by_alias(&site.alias) {
        Some(n) if n.mode == NodeMode::Agent => {}
        _ => return Err(AgentError::NotDeclared(site.alias.clone())),
    }
    // Bind first: a second agent for the same machine fails here, before it touches the
    // first one's nodes. Then, before answering or reporting anything, stop orphans.
    let listener = shoal_server::serve::bind(&site.addr()).await?;
    // A machine set up by hand from a bare binary gets that binary as its first installed
    // version: the first upgrade then switches `current` away from a version it can switch
    // back to (without one, `shoal upgrade --rollback` found nothing to return to).
    install::install_first(
        &opts.home,
        &opts.program,
        shoal_common::version::version(),
        Placement::Copy,
    )
    .map_err(|source| AgentError::Install {
        program: opts.program.clone(),
        source,
    })?;
    let installs = Arc::new(Installs::new(&opts.home));
    let program = installs.program().ok_or_else(|| AgentError::Install {
        program: opts.program.clone(),
        source: std::io::Error::other("no `current/shoal` after installing it"),
    })?;
    let specs = node_specs(&opts, &program)?;
    let metadata_dirs = metadata_dirs(&opts)?;
    let trusted = match &opts.config.package_verify_key {
        Some(path) => Some(
            shoal_package::load_verifying_key(path)
                .map_err(|e| AgentError::VerifyKey(e.to_string()))?,
        ),
        None => None,
    };
    let adopt = stop_orphans(&specs, &opts.home).await;
    let supervisor = Arc::new(Supervisor::new(
        specs,
        opts.config.restart_on_crash,
        opts.config.restart_backoff,
        &adopt,
    ));
    tracing::info!(
        "agent {} version {} listening on {}",
        site.alias,
        shoal_common::version::version(),
        site.addr()
    );
    if opts.start_nodes {
        let sup = supervisor.clone();
        tokio::spawn(async move { sup.set_running(&[], true).await });
    }

    let (restart_tx, mut restart_rx) = watch::channel(false);
    let auth = ServerAuth::new(&opts.secret);
    let router = shoal_server::serve::builder(opts.tls.as_ref())?
        .add_service(AgentServer::with_interceptor(
            AgentService {
                machine: site.host.clone(),
                supervisor: supervisor.clone(),
                installs: installs.clone(),
                metadata_dirs,
                trusted,
                restart: restart_tx,
            },
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
    let (_ready_tx, ready_rx) = watch::channel(Readiness::Ready);
    let http = shoal_server::http::spawn(
        &site.addr(),
        opts.config.http_port,
        shoal_server::http::registry("agent", &site.alias),
        ready_rx,
        stop_rx.clone(),
        shoal_server::http::Router::new(),
        opts.tls.as_ref(),
    )
    .await?;
    let controllers = ControllerClient::new(
        opts.nodes.controllers().map(|n| n.site.addr()).collect(),
        Channels::new(opts.secret.signing())?.with_tls(opts.tls.as_ref().map(ServerTls::client)),
    );
    let heartbeats = tokio::spawn(shoal_client::heartbeat::run(
        controllers,
        shoal_client::heartbeat::self_report(&site.alias, NodeMode::Agent, &site.addr()),
        HEARTBEAT_INTERVAL,
        stop_rx,
        None,
        None,
        None,
    ));

    let restarting = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let restart_seen = restarting.clone();
    let served = shoal_server::serve::serve(router, listener, async move {
        let restart = tokio::select! {
            () = shutdown => false,
            Ok(_) = restart_rx.wait_for(|r| *r) => true,
        };
        restart_seen.store(restart, std::sync::atomic::Ordering::SeqCst);
        // Stopping the agent stops the machine's nodes first (the seed's stopAllNodes.sh), and
        // no start request may revive one after that. A restart keeps them: the re-executed
        // agent adopts them.
        if restart {
            // The supervisor must outlive this process image: dropping it would end the
            // node actors, and each stops its process on the way out.
            std::mem::forget(supervisor);
        } else {
            supervisor.shutdown().await;
        }
        let _ = stop_tx.send(true);
        let _ = heartbeats.await;
        // Closed before a restart re-executes the agent, which binds the port again.
        let _ = http.await;
    })
    .await;
    served?;
    Ok(match installs.program() {
        Some(program) if restarting.load(std::sync::atomic::Ordering::SeqCst) => {
            AgentExit::Restart { program }
        }
        _ => AgentExit::Stopped,
    })
}
