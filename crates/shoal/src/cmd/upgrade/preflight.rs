//! Before any machine is touched: the package verified here and on every agent, its version
//! compatible with what runs, every node up, every chunk COMPLETE (with every node up, a chunk
//! being refilled gets 30 s), a controller quorum to spare, disk space. A refusal names what is wrong and changes nothing that runs (a package
//! staged beside the running version is all an agent may keep).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use shoal_agent::install::BINARY;
use shoal_client::agent::AgentClient;
use shoal_proto::{ClusterStatusResponse, NodeMode, NodeState};

use super::machine::not_complete;
use super::state::{FORMAT, MachinePlan, Status, UpgradeState};
use crate::target::Target;
use shoal_client::record::now_ms;

/// With every node UP, how long chunks being refilled get to become COMPLETE before the
/// upgrade is refused.
const RECOVERY_SETTLE: Duration = Duration::from_secs(30);
const RECOVERY_POLL: Duration = Duration::from_millis(200);

/// Free space an agent must have left after unpacking: room for metadata backups and logs.
const MIN_FREE_BYTES: u64 = 256 << 20;

/// Checks everything and stages the package; `None` when the cluster already runs it.
pub async fn new_upgrade(
    target: &Target,
    package: &Path,
    recorded: Option<&UpgradeState>,
) -> anyhow::Result<Option<UpgradeState>> {
    // The report's "whole run" starts here: staging the package is part of what clients feel.
    let started_ms = now_ms();
    if let Some(r) = recorded {
        match &r.status {
            Status::Done | Status::Finalized => {}
            other => bail!(
                "an upgrade from {} to {} is recorded ({other:?}): `--resume` it or \
                 `--rollback` it first",
                r.from_version,
                r.to_version
            ),
        }
    }
    // The package itself, before anything else: a damaged one goes nowhere.
    let p = package.to_owned();
    let manifest = tokio::task::spawn_blocking(move || shoal_package::verify(&p, None))
        .await?
        .with_context(|| format!("package {} refused", package.display()))?;
    let Some(binary) = manifest.file(BINARY) else {
        bail!("package {} has no `{BINARY}` binary", package.display());
    };
    let status = target.controllers.cluster_status().await?;
    let running = running_version(&status)?;
    if running == manifest.version {
        println!("every node already runs {running}");
        return Ok(None);
    }
    shoal_package::check_upgrade(&running, &manifest)
        .with_context(|| format!("package {} refused", package.display()))?;
    check_cluster(target, &status).await?;

    let machines = plan(&status)?;
    // Every agent verifies and unpacks it (beside the running version) before any machine
    // is touched: a signature an agent refuses, or a full disk, stops it here.
    // One machine at a time: on a shared disk, concurrent copies would stall the writers more.
    let mut staged = Vec::new();
    for m in &machines {
        let mut agent = AgentClient::new(&m.agent_addr, &target.channels)?;
        let have = agent.list().await?.staged;
        if have
            .iter()
            .any(|s| s.version == manifest.version && s.binary_sha256 == binary.sha256)
        {
            continue; // staged before (`--dry-run` stages): not sent again
        }
        let s = agent
            .stage_package(package)
            .await
            .with_context(|| format!("the agent of {} refused the package", m.machine))?;
        staged.push((m.machine.clone(), s));
    }
    for (machine, s) in &staged {
        if s.binary_sha256 != binary.sha256 {
            bail!(
                "the agent of {machine} unpacked a binary with sha256 {}, expected {}",
                s.binary_sha256,
                binary.sha256
            );
        }
        if s.disk_free_bytes < MIN_FREE_BYTES {
            bail!(
                "{machine} has {} MiB free after unpacking; at least {} MiB are needed",
                s.disk_free_bytes >> 20,
                MIN_FREE_BYTES >> 20
            );
        }
    }
    Ok(Some(UpgradeState {
        format: FORMAT,
        from_version: running,
        to_version: manifest.version.clone(),
        binary_sha256: binary.sha256.clone(),
        rolling_back: false,
        status: Status::Running,
        pause_requested: false,
        machines,
        steps: Vec::new(),
        started_ms,
        finalize_to: None,
        probe: None,
    }))
}

/// Every machine that runs the upgrade's version goes back to the one it ran before, in the
/// reverse order. Refused once finalized.
pub async fn rollback(
    target: &Target,
    recorded: Option<UpgradeState>,
) -> anyhow::Result<UpgradeState> {
    let Some(mut st) = recorded else {
        bail!("no upgrade is recorded to roll back");
    };
    if st.status == Status::Finalized {
        bail!(
            "{} was finalized (the cluster version was raised): its formats may be in use, \
             rollback is refused",
            st.to_version
        );
    }
    if st.rolling_back && st.status == Status::Done {
        bail!("already rolled back to {}", st.from_version);
    }
    if !st.rolling_back {
        st.rolling_back = true;
        st.machines.reverse();
        let status = target.controllers.cluster_status().await?;
        for m in &mut st.machines {
            // Nothing to undo only on a machine wholly on the old version: installed, agent
            // and every node UP on it. Any other gets every step again.
            let mut agent = AgentClient::new(&m.agent_addr, &target.channels)?;
            let l = agent.list().await?;
            let nodes_old = m.nodes().all(|alias| {
                status.nodes.iter().any(|n| {
                    n.alias == alias && n.state() == NodeState::Up && n.version == st.from_version
                })
            });
            let untouched = l.current_version == st.from_version
                && l.agent_version == st.from_version
                && nodes_old;
            m.done = if untouched {
                super::state::Step::ALL.to_vec()
            } else {
                Vec::new()
            };
        }
    }
    st.status = Status::Running;
    Ok(st)
}

/// The nodes not UP, with their state.
fn not_up(status: &ClusterStatusResponse) -> Vec<String> {
    status
        .nodes
        .iter()
        .filter(|n| n.state() != NodeState::Up)
        .map(|n| format!("{} ({:?})", n.alias, n.state()))
        .collect()
}

/// The chunks not COMPLETE, with their state.
async fn recovering(target: &Target) -> anyhow::Result<Vec<String>> {
    let catalog = target.controllers.get_catalog().await?;
    Ok(catalog
        .chunks
        .iter()
        .filter(|c| not_complete(c))
        .map(|c| format!("{} ({})", c.path, c.state))
        .collect())
}

/// The one version every node runs; a mixed cluster is refused (resume or roll back the
/// upgrade that left it so).
fn running_version(status: &ClusterStatusResponse) -> anyhow::Result<String> {
    let mut versions: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for n in &status.nodes {
        versions.entry(&n.version).or_default().push(&n.alias);
    }
    match versions.len() {
        1 => Ok(versions.into_keys().next().unwrap_or_default().to_owned()),
        _ => bail!(
            "the cluster runs several versions ({}); finish or roll back that first",
            versions
                .iter()
                .map(|(v, nodes)| format!("{v}: {}", nodes.join(" ")))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    }
}

async fn check_cluster(target: &Target, status: &ClusterStatusResponse) -> anyhow::Result<()> {
    let mut down = not_up(status);
    let mut recovering = recovering(target).await?;
    // Every node UP: the replicas not in sync are being refilled (a busy replica may miss a
    // liveness probe and be taken out), which takes seconds, as between machines. The nodes
    // are looked at again each time: one going down meanwhile ends the wait.
    let settle_until = Instant::now() + RECOVERY_SETTLE;
    while !recovering.is_empty() && down.is_empty() && Instant::now() < settle_until {
        tokio::time::sleep(RECOVERY_POLL).await;
        recovering = self::recovering(target).await?;
        down = not_up(&target.controllers.cluster_status().await?);
    }
    // Chunks first: a machine that went down leaves RECOVERING chunks, the more telling fact.
    if !recovering.is_empty() {
        bail!(
            "every chunk must be COMPLETE before an upgrade; not: {}",
            recovering.join(", ")
        );
    }
    if !down.is_empty() {
        bail!(
            "every node must be UP before an upgrade; not: {}",
            down.join(", ")
        );
    }
    let controllers = status
        .nodes
        .iter()
        .filter(|n| n.mode() == NodeMode::Controller)
        .count();
    if controllers < 3 {
        bail!(
            "{controllers} controller(s): stopping one machine would leave no Raft quorum; \
             a rolling upgrade needs at least 3"
        );
    }
    Ok(())
}

/// One entry per machine with an agent; the controller leader's machine last.
fn plan(status: &ClusterStatusResponse) -> anyhow::Result<Vec<MachinePlan>> {
    let mut machines: BTreeMap<String, MachinePlan> = BTreeMap::new();
    for n in &status.nodes {
        let m = machines
            .entry(n.machine.clone())
            .or_insert_with(|| MachinePlan {
                machine: n.machine.clone(),
                agent_addr: String::new(),
                datanodes: Vec::new(),
                controllers: Vec::new(),
                done: Vec::new(),
            });
        match n.mode() {
            NodeMode::Agent => m.agent_addr = n.addr.clone(),
            NodeMode::Datanode => m.datanodes.push((n.alias.clone(), n.addr.clone())),
            NodeMode::Controller => m.controllers.push(n.alias.clone()),
            NodeMode::Unspecified => {}
        }
    }
    if let Some(m) = machines.values().find(|m| m.agent_addr.is_empty()) {
        bail!("machine {} has no agent: it cannot be upgraded", m.machine);
    }
    let mut plan: Vec<MachinePlan> = machines.into_values().collect();
    let leads = |m: &MachinePlan| m.controllers.contains(&status.leader_alias);
    plan.sort_by_key(leads);
    Ok(plan)
}
