//! The long-running roles. Each loads its files from `--home`, refuses to start on any bad
//! file, then runs until SIGTERM / SIGINT.

use std::path::Path;

use anyhow::Context;
use shoal_common::config::TlsFiles;
use shoal_common::config::{AgentConfig, ClusterCfg, ClusterNodes, ControllerConfig};
use shoal_common::secret::{self, SECRET_FILE};
use shoal_common::tls::ServerTls;
use shoal_common::users::{USERS_FILE, Users};
use shoal_server::signals::terminated;

use crate::cli::{AgentArgs, DataNodeArgs, RoleArgs};

fn nodes_and_secret(home: &Path) -> anyhow::Result<(ClusterNodes, secret::Keys)> {
    let nodes = ClusterNodes::load(&home.join("cluster.nodes"))?;
    let secret = secret::load_file_or_env(&home.join(SECRET_FILE))?;
    Ok((nodes, secret))
}

/// The TLS material the role's file names, read and checked before the role binds anything.
fn tls(files: Option<&TlsFiles>) -> anyhow::Result<Option<ServerTls>> {
    Ok(files.map(ServerTls::load).transpose()?)
}

pub async fn controller(args: RoleArgs) -> anyhow::Result<()> {
    let config = ControllerConfig::load(&args.home.join("controller.cfg"))?;
    let (nodes, secret) = nodes_and_secret(&args.home)?;
    let opts = shoal_controller::ControllerOptions {
        tls: tls(config.tls.as_ref())?,
        config,
        nodes,
        secret,
        users: Users::load(&args.home.join(USERS_FILE)).map_err(anyhow::Error::msg)?,
    };
    Ok(shoal_controller::run(opts, terminated()).await?)
}

pub async fn agent(args: AgentArgs) -> anyhow::Result<()> {
    let config = AgentConfig::load(&args.home.join("agent.cfg"))?;
    let (nodes, secret) = nodes_and_secret(&args.home)?;
    let program = std::env::current_exe().context("cannot find the shoal executable")?;
    let opts = shoal_agent::AgentOptions {
        tls: tls(config.tls.as_ref())?,
        config,
        nodes,
        secret,
        home: args.home,
        program,
        start_nodes: !args.no_start,
    };
    let home = opts.home.clone();
    match shoal_agent::run(opts, terminated()).await? {
        shoal_agent::AgentExit::Stopped => Ok(()),
        // Self-upgrade: become the new version's agent, same pid (pid files and a supervisor
        // of the agent keep pointing at it); the machine's nodes are stopped and stay so
        // until the orchestrator starts them.
        shoal_agent::AgentExit::Restart { program } => {
            use std::os::unix::process::CommandExt;
            tracing::info!("re-executing {}", program.display());
            let err = std::process::Command::new(&program)
                .arg("agent")
                .arg("--home")
                .arg(&home)
                .arg("--no-start")
                .exec();
            Err(anyhow::anyhow!(
                "cannot re-execute {}: {err}",
                program.display()
            ))
        }
    }
}

pub async fn datanode(args: DataNodeArgs) -> anyhow::Result<()> {
    let cluster_cfg = ClusterCfg::load(&args.home.join("cluster.cfg"))?;
    let (nodes, secret) = nodes_and_secret(&args.home)?;
    cluster_cfg.check_aliases(&nodes)?;
    let config = cluster_cfg.for_node(&args.alias)?;
    let opts = shoal_datanode::DataNodeOptions {
        tls: tls(config.tls.as_ref())?,
        config,
        nodes,
        secret,
        users: Users::load(&args.home.join(USERS_FILE)).map_err(anyhow::Error::msg)?,
    };
    // Ends with the node, when the runtime shuts down.
    tokio::spawn(crate::allocator::log_stats());
    Ok(shoal_datanode::run(opts, terminated()).await?)
}
