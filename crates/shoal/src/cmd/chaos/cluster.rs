//! A three-machine cluster whose machines are network namespaces: `shoal local up`'s files,
//! with the namespaces' addresses, each agent started with `ip netns exec mN` (its controller
//! and data node inherit the namespace). Every client call (status, chunks, the workload) runs
//! in the client namespace, the only place from which the cluster can be reached.
//!
//! Each data node's volume is a small tmpfs, so the disk-full fault can fill it. With the fault
//! shim ([`super::shim`]) every process of a machine is started with it preloaded. Dropping the
//! cluster stops it (`shoal local down`), unmounts the volumes and deletes the namespaces, also
//! when the run failed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::Value;
use shoal_common::config::ClusterNodes;

use super::freezer;
use super::rolling_upgrade::Package;
use super::shim::Shim;
use crate::cmd::local;
use shoal_netns::{Topology, machine_addr};

const MACHINES: usize = 3;
const BASE_PORT: u16 = 8920;
/// Each data node's volume: room for a run's rows many times over, small enough to fill fast.
const VOLUME_SIZE: &str = "64m";
/// A client command that takes longer is killed: a paused node must not hang the run.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

pub struct NsCluster {
    pub dir: PathBuf,
    pub nodes: ClusterNodes,
    volumes: Vec<PathBuf>,
    /// Preloaded into every process when the run has nemeses that need it.
    pub shim: Option<Shim>,
    /// What the `upgrade` nemesis upgrades to, when the run has one.
    pub upgrade_to: Option<Package>,
    /// The agents we started, reaped when stopped.
    agents: Vec<std::process::Child>,
    /// Declared last: dropped after the processes in it are stopped.
    pub topology: Topology,
}

/// A row of `cluster.chunks` (`shoal chunks --json`).
#[derive(Deserialize, Clone, Debug)]
pub struct ChunkRow {
    pub chunk_id: u64,
    pub db: String,
    pub state: String,
    pub version: u64,
    /// `node1:in_sync,node4:stale`
    pub replicas: String,
    /// `node1=<hex>,node4=?`
    pub checksums: String,
}

impl ChunkRow {
    /// Replica nodes in catalog order with their in-sync flag; the first in sync is the primary.
    pub fn replicas(&self) -> Vec<(String, bool)> {
        self.replicas
            .split(',')
            .filter_map(|r| r.split_once(':'))
            .map(|(n, s)| (n.to_owned(), s == "in_sync"))
            .collect()
    }

    pub fn in_sync(&self) -> Vec<String> {
        self.replicas()
            .into_iter()
            .filter(|(_, s)| *s)
            .map(|(n, _)| n)
            .collect()
    }

    pub fn checksums(&self) -> Vec<(String, String)> {
        self.checksums
            .split(',')
            .filter_map(|c| c.split_once('='))
            .map(|(n, c)| (n.to_owned(), c.to_owned()))
            .collect()
    }
}

impl NsCluster {
    /// Namespaces, files and agents (with the fault shim if `with_shim`); returns once every
    /// node is UP and a controller leads.
    pub fn start(
        dir: &Path,
        set: &[String],
        with_shim: bool,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        // Before the stale namespaces go: a frozen process does not even die of SIGKILL.
        freezer::remove_stale();
        let topology = Topology::create(MACHINES)?;
        let hosts: Vec<String> = (1..=MACHINES).map(machine_addr).collect();
        let nodes = local::write_config(dir, &hosts, BASE_PORT, set, None)?;
        let dir = std::fs::canonicalize(dir)?;
        let shim = with_shim
            .then(|| Shim::build(&dir.join("shim"), MACHINES))
            .transpose()?;
        let mut cluster = Self {
            dir,
            nodes,
            volumes: Vec::new(),
            shim,
            upgrade_to: None,
            agents: Vec::new(),
            topology,
        };
        for i in 1..=MACHINES {
            let alias = format!("node{i}");
            let volume = cluster.home_of(&alias)?.join(&alias).join("volumes");
            std::fs::create_dir_all(&volume)?;
            run(Command::new("mount").args(["-t", "tmpfs", "-o"]).args([
                &format!("size={VOLUME_SIZE}"),
                "shoalchaos",
                path_str(&volume)?,
            ]))?;
            cluster.volumes.push(volume);
        }
        for i in 1..=MACHINES {
            let home = cluster.dir.join(machine_addr(i));
            let env = match &cluster.shim {
                Some(shim) => shim.env(i)?.to_vec(),
                None => Vec::new(),
            };
            let agent = local::spawn_agent(&home, Some(&cluster.topology.machine_ns(i)), &env)?;
            cluster.agents.push(agent);
        }
        cluster.wait_healthy(timeout)?;
        Ok(cluster)
    }

    /// `shoal ARGS --dir DIR`, run in the client namespace.
    pub fn client(&self, args: &[&str]) -> anyhow::Result<Command> {
        let exe = std::env::current_exe().context("cannot find the shoal executable")?;
        let mut c = Topology::command_in(&self.topology.client_ns(), path_str(&exe)?);
        c.args(args).args(["--dir", path_str(&self.dir)?]);
        Ok(c)
    }

    /// [`Self::client`] to completion, within [`CLIENT_TIMEOUT`].
    pub fn client_output(&self, args: &[&str]) -> anyhow::Result<Output> {
        let child = self
            .client(args)?
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        wait_output(child, CLIENT_TIMEOUT).with_context(|| format!("shoal {}", args.join(" ")))
    }

    fn client_json<T: serde::de::DeserializeOwned>(&self, args: &[&str]) -> anyhow::Result<T> {
        let out = self.client_output(args)?;
        if !out.status.success() {
            bail!(
                "shoal {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    pub fn status(&self) -> anyhow::Result<Value> {
        self.client_json(&["status", "--json"])
    }

    /// The upgrade's record (`shoal upgrade --show --json`): `null` when none.
    pub fn upgrade_record(&self) -> anyhow::Result<Value> {
        self.client_json(&["upgrade", "--show", "--json"])
    }

    /// The chunks of `db`.
    pub fn chunks(&self, db: &str) -> anyhow::Result<Vec<ChunkRow>> {
        let all: Vec<ChunkRow> = self.client_json(&["chunks", "--json"])?;
        Ok(all.into_iter().filter(|c| c.db == db).collect())
    }

    /// Polls until every chunk of every database is COMPLETE with every replica in sync (what
    /// `shoal upgrade` checks before it changes anything); `false` if some is not after
    /// `timeout`.
    pub fn wait_complete(&self, timeout: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < timeout {
            let chunks: anyhow::Result<Vec<ChunkRow>> = self.client_json(&["chunks", "--json"]);
            if chunks.is_ok_and(|all| {
                all.iter()
                    .all(|c| c.state == "COMPLETE" && c.replicas().iter().all(|(_, s)| *s))
            }) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        false
    }

    /// Polls status until every node is UP and a controller leads.
    pub fn wait_healthy(&self, timeout: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut last = String::from("no answer yet");
        while started.elapsed() < timeout {
            match self.status() {
                Ok(s) => {
                    let nodes = s["nodes"].as_array().cloned().unwrap_or_default();
                    let down: Vec<&str> = nodes
                        .iter()
                        .filter(|n| n["state"] != "UP")
                        .filter_map(|n| n["alias"].as_str())
                        .collect();
                    let leader = nodes.iter().any(|n| n["raft_role"] == "leader");
                    if down.is_empty() && leader && !nodes.is_empty() {
                        return Ok(());
                    }
                    last = format!("not UP: {}; leader: {leader}", down.join(", "));
                }
                Err(e) => last = format!("{e:#}"),
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        bail!("cluster not healthy after {timeout:?}: {last}")
    }

    /// The home directory of the machine running `alias`.
    pub fn home_of(&self, alias: &str) -> anyhow::Result<PathBuf> {
        let n = self
            .nodes
            .by_alias(alias)
            .with_context(|| format!("no node {alias}"))?;
        Ok(self.dir.join(&n.site.host))
    }

    /// 1-based index of the machine running `alias`.
    pub fn machine_of(&self, alias: &str) -> anyhow::Result<usize> {
        let host = &self
            .nodes
            .by_alias(alias)
            .with_context(|| format!("no node {alias}"))?
            .site
            .host;
        (1..=MACHINES)
            .find(|i| machine_addr(*i) == *host)
            .with_context(|| format!("{alias} is on no machine of the run"))
    }

    /// The pid `alias` runs as now (from its agent's pid file).
    pub fn pid_of(&self, alias: &str) -> anyhow::Result<u32> {
        let home = self.home_of(alias)?;
        let file = if alias.starts_with("agent") {
            local::agent_pid_file(&home)
        } else {
            home.join("run").join(format!("{alias}.pid"))
        };
        shoal_agent::process::read_pid_file(&file)
            .filter(|p| shoal_agent::process::is_alive(*p))
            .with_context(|| format!("{alias} is not running ({})", file.display()))
    }

    /// The agent of the machine running `alias`.
    pub fn agent_of(&self, alias: &str) -> anyhow::Result<String> {
        Ok(format!("agent{}", self.machine_of(alias)?))
    }

    /// A data node's directory, holding its volume and chunkMetaDir.
    pub fn data_node_dir(&self, alias: &str) -> anyhow::Result<PathBuf> {
        Ok(self.home_of(alias)?.join(alias))
    }

    /// A data node's volume (tmpfs) and chunkMetaDir.
    pub fn data_dirs(&self, alias: &str) -> anyhow::Result<[PathBuf; 2]> {
        let base = self.data_node_dir(alias)?;
        Ok([base.join("volumes"), base.join("storage")])
    }

    /// The pids of machine `i`'s agent and nodes that are running.
    pub fn pids_of_machine(&self, i: usize) -> Vec<u32> {
        let host = machine_addr(i);
        self.nodes
            .on_machine(&host)
            .filter_map(|n| self.pid_of(&n.site.alias).ok())
            .collect()
    }

    /// The controller's metadata directory on `alias`'s machine.
    pub fn meta_dir(&self, controller: &str) -> anyhow::Result<PathBuf> {
        Ok(self.home_of(controller)?.join("dfsMeta"))
    }
}

impl Drop for NsCluster {
    fn drop(&mut self) {
        let stopped = std::env::current_exe().map(|exe| {
            Command::new(exe)
                .args(["local", "down", "--dir"])
                .arg(&self.dir)
                .stdout(Stdio::null())
                .status()
        });
        if !matches!(stopped, Ok(Ok(s)) if s.success()) {
            eprintln!(
                "warning: `shoal local down` failed for {}",
                self.dir.display()
            );
        }
        // Stopped by now (or never stopping): SIGKILL is a no-op then, and reaping cannot hang.
        for a in &mut self.agents {
            let _ = a.kill();
            let _ = a.wait();
        }
        for v in &self.volumes {
            if let Err(e) = run(Command::new("umount").arg(v)) {
                eprintln!("warning: {e:#}");
            }
        }
    }
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str()
        .with_context(|| format!("{} is not UTF-8", p.display()))
}

/// Runs a command to success, failing with its stderr; its stdout.
pub fn run(c: &mut Command) -> anyhow::Result<Vec<u8>> {
    let out = c
        .output()
        .with_context(|| format!("cannot run {:?}", c.get_program()))?;
    if !out.status.success() {
        bail!(
            "{c:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

/// Waits for a child with piped output, killing it after `timeout`.
pub fn wait_output(child: std::process::Child, timeout: Duration) -> anyhow::Result<Output> {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => Ok(out?),
        Err(_) => {
            shoal_agent::process::signal(pid, nix::sys::signal::Signal::SIGKILL);
            bail!("killed after {timeout:?}")
        }
    }
}
