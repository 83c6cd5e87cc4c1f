//! `shoal host stop|start HOST`: the seed's stopAllNodes.sh / startAll for one machine, done
//! through the machine's agent.

use std::time::Instant;

use anyhow::{Context, bail};
use serde::Serialize;
use shoal_client::agent::AgentClient;
use shoal_proto::{ListProcessesResponse, NodeMode, NodeState, ProcessState};

use crate::cli::HostArgs;
use crate::output;
use crate::target::Target;

/// Finds the agent of `host` (a machine address or the agent's alias): from the local
/// `cluster.nodes` with `--dir`, else from the cluster metadata.
async fn agent_of(target: &Target, host: &str) -> anyhow::Result<(String, AgentClient)> {
    let agents: Vec<(String, String, String)> = match &target.nodes {
        Some(nodes) => nodes
            .agents()
            .map(|n| (n.site.alias.clone(), n.site.host.clone(), n.site.addr()))
            .collect(),
        None => target
            .controllers
            .cluster_status()
            .await?
            .nodes
            .into_iter()
            .filter(|n| n.mode() == NodeMode::Agent)
            .map(|n| (n.alias, n.machine, n.addr))
            .collect(),
    };
    let Some((_, machine, addr)) = agents
        .iter()
        .find(|(alias, machine, _)| machine == host || alias == host)
    else {
        let machines: Vec<&str> = agents.iter().map(|(_, m, _)| m.as_str()).collect();
        bail!(
            "no machine `{host}` in the cluster (machines: {})",
            machines.join(", ")
        );
    };
    let client = AgentClient::new(addr, &target.channels)?;
    Ok((machine.clone(), client))
}

#[derive(Serialize)]
struct ProcessView {
    alias: String,
    mode: String,
    state: String,
    pid: u32,
    restarts: u32,
    last_exit: String,
}

fn process_name(state: ProcessState) -> &'static str {
    match state {
        ProcessState::Running => "RUNNING",
        ProcessState::Stopped => "STOPPED",
        ProcessState::Crashed => "CRASHED",
        ProcessState::Unspecified => "?",
    }
}

fn print(listing: &ListProcessesResponse, json: bool) -> anyhow::Result<()> {
    let views: Vec<ProcessView> = listing
        .processes
        .iter()
        .map(|p| ProcessView {
            alias: p.alias.clone(),
            mode: p.mode().name().into(),
            state: process_name(p.state()).into(),
            pid: p.pid,
            restarts: p.restarts,
            last_exit: p.last_exit.clone(),
        })
        .collect();
    if json {
        println!("{}", output::json(&views)?);
        return Ok(());
    }
    let rows = views
        .into_iter()
        .map(|v| {
            vec![
                v.alias,
                v.mode,
                v.state,
                v.pid.to_string(),
                v.restarts.to_string(),
                v.last_exit,
            ]
        })
        .collect();
    println!(
        "machine {}\n{}",
        listing.machine,
        output::table(
            &["ALIAS", "MODE", "PROCESS", "PID", "RESTARTS", "LAST EXIT"],
            rows
        )
    );
    Ok(())
}

pub async fn stop(args: HostArgs) -> anyhow::Result<()> {
    let target = Target::resolve(&args.target)?;
    let (machine, mut agent) = agent_of(&target, &args.host).await?;
    let listing = agent
        .stop(Vec::new())
        .await
        .with_context(|| format!("stopping the nodes of {machine}"))?;
    print(&listing, args.json)
}

pub async fn ps(args: HostArgs) -> anyhow::Result<()> {
    let target = Target::resolve(&args.target)?;
    let (_, mut agent) = agent_of(&target, &args.host).await?;
    print(&agent.list().await?, args.json)
}

pub async fn start(args: HostArgs) -> anyhow::Result<()> {
    let target = Target::resolve(&args.target)?;
    let (machine, mut agent) = agent_of(&target, &args.host).await?;
    let listing = agent
        .start(Vec::new())
        .await
        .with_context(|| format!("starting the nodes of {machine}"))?;
    let started: Vec<(String, u32)> = listing
        .processes
        .iter()
        .map(|p| (p.alias.clone(), p.pid))
        .collect();
    wait_up(&target, &started, args.timeout).await?;
    print(&listing, args.json)
}

/// Waits until the controller leader reports every node UP *as the process the agent started*
/// (its pid): a heartbeat from the process before it does not count.
async fn wait_up(
    target: &Target,
    started: &[(String, u32)],
    timeout: std::time::Duration,
) -> anyhow::Result<()> {
    let since = Instant::now();
    loop {
        let status = target.controllers.cluster_status().await?;
        let pending: Vec<&str> = started
            .iter()
            .filter(|(alias, pid)| {
                !status
                    .nodes
                    .iter()
                    .any(|n| &n.alias == alias && n.state() == NodeState::Up && n.pid == *pid)
            })
            .map(|(alias, _)| alias.as_str())
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        if since.elapsed() > timeout {
            bail!("not up after {timeout:?}: {}", pending.join(", "));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
