//! A local 3-machine cluster driven through the `shoal` binary, always taken down again, and a
//! connection to its data plane (secret and addresses read from its directory).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use shoal_client::channel::Channels;
use shoal_client::controller::ControllerClient;
use shoal_client::data::DataClient;
use shoal_common::config::ClusterNodes;
use shoal_proto::data_node_client::DataNodeClient;
use shoal_proto::{ChunkInfo, ListReplicasRequest, ReplicaPosition};

/// No single `shoal` command may take longer: a hang fails the benchmark instead.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);
/// Deadline of one `ListReplicas` call (a stopped node must not stall a poll).
const LIST_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs `shoal ARGS` to completion; killed and failed after [`COMMAND_TIMEOUT`].
pub fn shoal(bin: &Path, args: &[&str]) -> Result<Output> {
    shoal_within(bin, args, COMMAND_TIMEOUT)
}

/// Runs `shoal ARGS` to completion; killed and failed after `timeout`.
pub fn shoal_within(bin: &Path, args: &[&str], timeout: Duration) -> Result<Output> {
    let child = Command::new(bin)
        .args(args)
        .env_remove("SHOAL_CLUSTER_SECRET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => Ok(out?),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            bail!("`shoal {}` hung for {timeout:?}", args.join(" "))
        }
    }
}

pub struct Cluster {
    pub bin: PathBuf,
    pub dir: PathBuf,
    pub hosts: Vec<String>,
    up: bool,
}

impl Cluster {
    /// `shoal local up`. From the moment it is attempted, dropping the value runs `local down`.
    /// `set`: `KEY=VALUE` overrides for the cluster's files (`local up --set`).
    pub fn up(bin: &Path, dir: &Path, hosts: &[String], set: &[String]) -> Result<Self> {
        if dir.exists() {
            bail!(
                "{} already exists: pass a fresh --dir (the benchmark creates and removes it)",
                dir.display()
            );
        }
        let mut cluster = Self {
            bin: bin.to_owned(),
            dir: dir.to_owned(),
            hosts: hosts.to_vec(),
            up: true,
        };
        let hosts = hosts.join(",");
        let mut args = vec![
            "local",
            "up",
            "--dir",
            cluster.dir_str()?,
            "--hosts",
            &hosts,
            "--timeout",
            "60s",
        ];
        for s in set {
            args.extend(["--set", s.as_str()]);
        }
        let out = shoal(bin, &args)?;
        if !out.status.success() {
            let logs = cluster.logs();
            let _ = cluster.down();
            bail!("local up failed: {}\n{logs}", stderr(&out));
        }
        Ok(cluster)
    }

    pub fn dir_str(&self) -> Result<&str> {
        self.dir.to_str().context("--dir must be UTF-8")
    }

    /// `shoal ARGS --dir DIR`, failing with its stderr unless it succeeds; returns stdout.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        self.run_within(args, COMMAND_TIMEOUT)
    }

    /// [`Cluster::run`] for a command that may take up to `timeout`.
    pub fn run_within(&self, args: &[&str], timeout: Duration) -> Result<String> {
        let mut all = args.to_vec();
        all.extend(["--dir", self.dir_str()?]);
        let out = shoal_within(&self.bin, &all, timeout)?;
        if !out.status.success() {
            bail!("`shoal {}` failed: {}", all.join(" "), stderr(&out));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn status(&self) -> Result<serde_json::Value> {
        Ok(serde_json::from_str(&self.run(&["status", "--json"])?)?)
    }

    /// `shoal local down`; idempotent.
    pub fn down(&mut self) -> Result<()> {
        if !self.up {
            return Ok(());
        }
        self.up = false;
        let out = shoal(&self.bin, &["local", "down", "--dir", self.dir_str()?])?;
        if !out.status.success() {
            bail!("local down failed: {}", stderr(&out));
        }
        Ok(())
    }

    /// Every process log of every machine: its path and its text.
    fn log_texts(&self) -> Vec<(PathBuf, String)> {
        let mut logs = Vec::new();
        for host in &self.hosts {
            let Ok(entries) = std::fs::read_dir(self.dir.join(host).join("log")) else {
                continue;
            };
            for e in entries.flatten() {
                let content = std::fs::read_to_string(e.path()).unwrap_or_default();
                logs.push((e.path(), content));
            }
        }
        logs
    }

    /// The lines of every log that contain `needle`, whole logs read.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        self.log_texts()
            .iter()
            .flat_map(|(_, text)| text.lines().filter(|l| l.contains(needle)))
            .map(str::to_owned)
            .collect()
    }

    /// The tail of every process log, for error messages.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for (path, content) in self.log_texts() {
            let tail: Vec<&str> = content.lines().rev().take(10).collect();
            text.push_str(&format!("--- {} ---\n", path.display()));
            for l in tail.into_iter().rev() {
                text.push_str(l);
                text.push('\n');
            }
        }
        text
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Err(e) = self.down() {
            eprintln!("{e:#}");
        }
    }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The cluster's data plane, as a client sees it.
pub struct Conn {
    pub controllers: ControllerClient,
    pub channels: Channels,
    /// alias → address of every data node.
    pub datanodes: BTreeMap<String, String>,
    /// alias → machine of every data node.
    pub datanode_hosts: BTreeMap<String, String>,
}

impl Conn {
    pub fn connect(dir: &Path) -> Result<Self> {
        let nodes = ClusterNodes::load(&dir.join("cluster.nodes"))?;
        let secret = shoal_common::secret::load(&dir.join(shoal_common::secret::SECRET_FILE))?;
        let channels = Channels::new(secret.signing())?;
        let datanodes = nodes
            .datanodes()
            .map(|n| (n.site.alias.clone(), n.site.addr()))
            .collect();
        let datanode_hosts = nodes
            .datanodes()
            .map(|n| (n.site.alias.clone(), n.site.host.clone()))
            .collect();
        Ok(Self {
            controllers: ControllerClient::new(
                nodes.controllers().map(|n| n.site.addr()).collect(),
                channels.clone(),
            ),
            channels,
            datanodes,
            datanode_hosts,
        })
    }

    /// The alias of the data node on machine `host`.
    pub fn datanode_on(&self, host: &str) -> Result<String> {
        self.datanode_hosts
            .iter()
            .find(|(_, h)| h.as_str() == host)
            .map(|(a, _)| a.clone())
            .with_context(|| format!("no data node on {host}"))
    }

    /// A data client whose first site is the `k`-th data node (writers spread coordinators).
    pub fn data_client(&self, k: usize) -> DataClient {
        let mut sites: Vec<String> = self.datanodes.values().cloned().collect();
        let n = sites.len().max(1);
        sites.rotate_left(k % n);
        DataClient::new(sites, self.channels.clone())
    }

    pub async fn chunks(&self) -> Result<Vec<ChunkInfo>> {
        Ok(self.controllers.get_catalog().await?.chunks)
    }

    /// Every replica's position by (chunk id, node alias); nodes that do not answer are left
    /// out.
    pub async fn positions(&self) -> BTreeMap<(u64, String), ReplicaPosition> {
        let mut all = BTreeMap::new();
        for (alias, addr) in &self.datanodes {
            let Ok(ch) = self.channels.get(addr) else {
                continue;
            };
            let mut c = DataNodeClient::new(ch);
            let mut req = tonic::Request::new(ListReplicasRequest {});
            req.set_timeout(LIST_TIMEOUT);
            if let Ok(resp) = c.list_replicas(req).await {
                for p in resp.into_inner().replicas {
                    all.insert((p.chunk_id, alias.clone()), p);
                }
            }
        }
        all
    }
}

/// CPU time (user + system) of processes, from /proc; a process that is gone counts 0.
pub fn cpu_seconds(pids: &[u64]) -> f64 {
    let tick = clock_ticks();
    pids.iter()
        .map(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return 0.0;
            };
            // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                return 0.0;
            };
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = |i: usize| f.get(i - 3).and_then(|v| v.parse::<f64>().ok());
            (ticks(14).unwrap_or(0.0) + ticks(15).unwrap_or(0.0)) / tick
        })
        .sum()
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Pids of the cluster's processes by mode (controller, agent, datanode), from `status --json`.
pub fn pids_by_mode(status: &serde_json::Value) -> BTreeMap<String, Vec<u64>> {
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for n in status["nodes"].as_array().into_iter().flatten() {
        if let (Some(mode), Some(pid)) = (n["mode"].as_str(), n["pid"].as_u64()) {
            out.entry(mode.to_owned()).or_default().push(pid);
        }
    }
    out
}
