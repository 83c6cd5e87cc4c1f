//! `shoal local up|down --dir DIR`: the seed's three-machine cluster on one machine, each
//! "machine" a loopback address with its own home directory `DIR/<host>/`.
//!
//! ```text
//! DIR/cluster.nodes, DIR/cluster.secret      what client commands read with --dir
//! DIR/<host>/{controller,agent,cluster}.cfg  the machine's files, as on a real machine
//! DIR/<host>/{log,run}/                      process logs and pid files
//! DIR/<host>/versions/<v>/shoal, current     installed versions (see `shoal_agent::install`)
//! DIR/tls/, DIR/<host>/tls/                  with --tls: CA and certificates (`local_tls`)
//! ```
//!
//! Each machine is initialised as `shoal host init` initialises a real one (this `shoal`
//! hard-linked as its first installed version), and its agent runs from `current`, as on a
//! real machine: `shoal upgrade` then replaces it. A new cluster that fails to come up is
//! taken away again (`dir_before`), so a rerun is not refused by machines it initialised.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::future::join_all;
use indicatif::{ProgressBar, ProgressStyle};
use shoal_agent::install::{self, Placement};
use shoal_agent::process;
use shoal_common::config::{AgentConfig, ClusterNodes};
use shoal_common::secret::{self, SECRET_FILE};
use shoal_common::tls::ClientTls;
use shoal_common::users::{self, ADMIN_PASSWORD_FILE, Role};
use shoal_proto::NodeState;

use crate::cli::{LocalDirArgs, LocalUpArgs, TargetArgs};
use crate::cmd::dir_before::DirBefore;
use crate::cmd::local_tls;
use crate::cmd::machine_config::TlsMode;
use crate::cmd::{host_init, machine_config, status};
use crate::output;
use crate::target::Target;

/// How long `local down` lets an agent stop its nodes before SIGKILL.
const AGENT_STOP_GRACE: Duration = Duration::from_secs(40);

fn cluster_nodes_text(hosts: &[String], base_port: u16) -> String {
    let mut text = String::from("localSite,mode\n");
    let roles = [
        ("ctl", "controller", 0),
        ("agent", "agent", 1),
        ("node", "datanode", 2),
    ];
    for (prefix, mode, offset) in roles {
        for (i, host) in hosts.iter().enumerate() {
            text.push_str(&format!(
                "{host}:{}:{prefix}{},{mode}\n",
                base_port + offset,
                i + 1
            ));
        }
    }
    text
}

/// Writes the cluster's files unless `dir` already holds a cluster (then it is reused as is):
/// one machine per address of `hosts`, ports from `base_port`, `set` overrides applied to the
/// file (controller.cfg, cluster.cfg, or both) that knows each key, and with `tls` a CA and
/// certificates ([`local_tls`]) named in every file.
/// Also how `shoal chaos` lays out its cluster in network namespaces.
pub(crate) fn write_config(
    dir: &Path,
    hosts: &[String],
    base_port: u16,
    set: &[String],
    tls: Option<TlsMode>,
) -> anyhow::Result<ClusterNodes> {
    let nodes_path = dir.join("cluster.nodes");
    if nodes_path.exists() {
        let nodes = ClusterNodes::load(&nodes_path)?;
        if let Some(tls) = tls {
            refuse_unmet_tls(dir, &nodes, tls)?;
        }
        return Ok(nodes);
    }
    if hosts.is_empty() {
        bail!("--hosts needs at least one address");
    }
    machine_config::check_overrides(set)?; // refuse bad overrides before writing
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let text = cluster_nodes_text(hosts, base_port);
    let nodes = ClusterNodes::parse(&nodes_path, &text)?;
    let secret = secret::generate(&dir.join(SECRET_FILE))?;
    // The demo's admin login: a generated password, never a default one.
    let admin_password = secret::generate(&dir.join(ADMIN_PASSWORD_FILE))?;
    let users = users::user_line("admin", Role::Admin, &admin_password);
    if tls.is_some() {
        local_tls::generate(dir, &nodes.machines())?;
    }
    let exe = std::env::current_exe().context("cannot find the shoal executable")?;
    for host in nodes.machines() {
        let machine = host_init::Machine {
            nodes_text: &text,
            nodes_origin: &nodes_path,
            host: &host,
            secret: &secret,
            users: &users,
            set,
            tls,
            tls_files: None,
        };
        host_init::init(&dir.join(&host), &machine, &exe, Placement::Link)?;
    }
    // Only now, with every file in place, does DIR count as a cluster.
    fs::write(&nodes_path, &text)?;
    Ok(nodes)
}

/// An existing cluster is reused as is: a TLS request it does not meet is refused, not
/// ignored (mutual TLS asked of a cluster `--tls` made would run without client certificates).
fn refuse_unmet_tls(dir: &Path, nodes: &ClusterNodes, tls: TlsMode) -> anyhow::Result<()> {
    if ClientTls::of_local_cluster(dir)?.is_none() {
        bail!(
            "{} holds a plaintext cluster: --tls and --mutual-tls apply to a new cluster only",
            dir.display()
        );
    }
    if !tls.mutual {
        return Ok(());
    }
    for host in nodes.machines() {
        let file = dir.join(&host).join("agent.cfg");
        if !AgentConfig::load(&file)?.tls.is_some_and(|t| t.mutual) {
            bail!(
                "{} holds a cluster made with --tls, without mutual TLS ({} has no \
                 sslMutualAuth=1): --mutual-tls applies to a new cluster only; start this one \
                 with --tls, or give --mutual-tls a new --dir",
                dir.display(),
                file.display()
            );
        }
    }
    Ok(())
}

pub(crate) fn agent_pid_file(home: &Path) -> PathBuf {
    home.join("run").join("agent.pid")
}

/// Starts the machine's agent from its installed `current` version, as a real machine's
/// service does (`deploy/systemd/shoal-agent.service`); inside network namespace `netns` if given (`ip netns exec`
/// execs the agent, so the child's pid is the agent's), with `env` added to its environment,
/// which its nodes inherit.
pub(crate) fn spawn_agent(
    home: &Path,
    netns: Option<&str>,
    env: &[(&str, &Path)],
) -> anyhow::Result<std::process::Child> {
    let run = home.join("run");
    let log_dir = home.join("log");
    fs::create_dir_all(&run)?;
    fs::create_dir_all(&log_dir)?;
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_dir.join("agent.log"))?;
    let program = install::Installs::new(home).program().with_context(|| {
        format!(
            "{} has no installed version (`shoal host init` makes one)",
            home.display()
        )
    })?;
    let mut command = match netns {
        Some(ns) => {
            let mut c = std::process::Command::new("ip");
            c.args(["netns", "exec", ns]).arg(program);
            c
        }
        None => std::process::Command::new(program),
    };
    let child = command
        .envs(env.iter().copied())
        .arg("agent")
        .arg("--home")
        .arg(home)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C in this terminal must not take the cluster down.
        .process_group(0)
        .spawn()
        .context("cannot start the agent")?;
    fs::write(agent_pid_file(home), format!("{}\n", child.id()))?;
    Ok(child)
}

type Agents = Vec<(std::process::Child, PathBuf)>;

pub async fn up(args: LocalUpArgs) -> anyhow::Result<()> {
    // A new cluster that does not come up is taken away again, processes and files, so that
    // nothing of it refuses the next `up` (a machine is initialised once).
    let before = if args.dir.join("cluster.nodes").exists() {
        None
    } else {
        Some(DirBefore::take(&args.dir, &args.hosts)?)
    };
    let mut agents = Agents::new();
    let (dir, view) = match start(&args, &mut agents).await {
        Ok(started) => started,
        Err(e) => return Err(take_back(e, agents, before, &args).await),
    };
    if args.json {
        println!("{}", output::json(&view)?);
    } else {
        println!("{}", status::render(&view));
        println!(
            "cluster directory: {}  (shoal status --dir {0})",
            dir.display()
        );
    }
    Ok(())
}

/// After a failed `up`, `e`: stops the agents it started (each stops its nodes as it exits)
/// and, for a new cluster (`before`), whatever they left running and every file `up` added.
async fn take_back(
    e: anyhow::Error,
    agents: Agents,
    before: Option<DirBefore>,
    args: &LocalUpArgs,
) -> anyhow::Error {
    let pids = agents.iter().map(|(agent, _)| agent.id());
    join_all(pids.map(|pid| process::terminate(pid, AGENT_STOP_GRACE))).await;
    for (mut agent, _) in agents {
        let _ = agent.wait();
    }
    let Some(before) = before else {
        return e;
    };
    if let Ok(dir) = fs::canonicalize(&args.dir) {
        stop_leftovers(&homes(&dir, &args.hosts)).await;
    }
    match before.remove_added() {
        Ok(false) => e,
        Ok(true) => e.context(format!(
            "the new cluster did not start; removed what this `local up` wrote to {}",
            args.dir.display()
        )),
        Err(undo) => e.context(format!(
            "the new cluster did not start, and removing its files failed ({undo:#})"
        )),
    }
}

/// Writes the cluster's files if it is new and starts the agents that are not running (all of
/// them, normally: `up` is idempotent and also revives a machine whose agent died), each one
/// started into `agents`; answers DIR, canonical, and the cluster once healthy.
async fn start(
    args: &LocalUpArgs,
    agents: &mut Agents,
) -> anyhow::Result<(PathBuf, status::ClusterView)> {
    let tls = (args.tls || args.mutual_tls).then_some(TlsMode {
        mutual: args.mutual_tls,
    });
    let nodes = write_config(&args.dir, &args.hosts, args.base_port, &args.set, tls)?;
    let dir = fs::canonicalize(&args.dir)?;
    for host in nodes.machines() {
        let home = dir.join(&host);
        match process::read_pid_file(&agent_pid_file(&home))
            .filter(|p| process::is_shoal_of(*p, &home))
        {
            Some(pid) => eprintln!("agent of {host} already running (pid {pid})"),
            None => agents.push((spawn_agent(&home, None, &[])?, home)),
        }
    }
    let target = Target::resolve(&TargetArgs::of_dir(&dir))?;
    let all: Vec<String> = nodes.nodes.iter().map(|n| n.site.alias.clone()).collect();
    wait_healthy(&target, &all, agents, args.timeout).await?;
    let view = status::cluster_view(&target.controllers.cluster_status().await?);
    Ok((dir, view))
}

fn homes(dir: &Path, hosts: &[String]) -> Vec<PathBuf> {
    hosts.iter().map(|h| dir.join(h)).collect()
}

/// A node counts as up once it is UP *as the process this `up` is waiting for* (a controller:
/// and a voter of the group): on a machine
/// whose agent was just started, the agent itself and the pids its pid files name (a node
/// that reported UP before may be an orphan the new agent is replacing).
fn is_current(n: &shoal_proto::NodeStatus, agents: &[(std::process::Child, PathBuf)]) -> bool {
    if n.state() != NodeState::Up {
        return false;
    }
    // A controller counts once it is a voter: on a new cluster the others join the group
    // formed by the first as learners, then voters.
    if n.mode() == shoal_proto::NodeMode::Controller
        && !matches!(
            n.current_role(),
            shoal_proto::RaftRole::Leader | shoal_proto::RaftRole::Follower
        )
    {
        return false;
    }
    let Some((agent, home)) = agents.iter().find(|(_, home)| home.ends_with(&n.machine)) else {
        return true;
    };
    let expected = if n.mode() == shoal_proto::NodeMode::Agent {
        Some(agent.id())
    } else {
        process::read_pid_file(&home.join("run").join(format!("{}.pid", n.alias)))
    };
    expected == Some(n.pid)
}

/// Waits until every node is UP and a controller leads, with a progress bar. Fails at once if
/// an agent exits (a port in use, a bad file), showing the end of its log.
async fn wait_healthy(
    target: &Target,
    aliases: &[String],
    agents: &mut [(std::process::Child, PathBuf)],
    timeout: Duration,
) -> anyhow::Result<()> {
    let bar = ProgressBar::new(aliases.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} nodes up {pos}/{len} {wide_msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(100));
    let started = Instant::now();
    loop {
        let (up, pending, leader) = match target.controllers.cluster_status().await {
            Ok(s) => {
                let pending: Vec<String> = aliases
                    .iter()
                    .filter(|a| {
                        !s.nodes
                            .iter()
                            .any(|n| &n.alias == *a && is_current(n, agents))
                    })
                    .cloned()
                    .collect();
                (aliases.len() - pending.len(), pending, s.leader_alias)
            }
            Err(_) => (0, aliases.to_vec(), String::new()),
        };
        bar.set_position(up as u64);
        for (agent, home) in agents.iter_mut() {
            if let Some(exit) = agent.try_wait()? {
                bar.abandon();
                let log =
                    fs::read_to_string(home.join("log").join("agent.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                bail!(
                    "the agent of {} exited ({exit}):\n{}",
                    home.display(),
                    tail.join("\n")
                );
            }
        }
        if pending.is_empty() && !leader.is_empty() {
            bar.finish_and_clear();
            return Ok(());
        }
        bar.set_message(if leader.is_empty() {
            "electing a controller leader".to_string()
        } else {
            format!("waiting for {}", pending.join(", "))
        });
        if started.elapsed() > timeout {
            bar.abandon();
            bail!(
                "cluster not healthy after {timeout:?}: waiting for {}; see the logs under */log/",
                pending.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn down(args: LocalDirArgs) -> anyhow::Result<()> {
    let nodes = ClusterNodes::load(&args.dir.join("cluster.nodes"))
        .with_context(|| format!("{} is not a local cluster directory", args.dir.display()))?;
    // Processes were started with canonical paths; match them the same way.
    let dir = fs::canonicalize(&args.dir)?;
    let homes = homes(&dir, &nodes.machines());
    // Agents first: each stops its own nodes gracefully before exiting.
    let agents = homes.iter().filter_map(|home| {
        process::read_pid_file(&agent_pid_file(home)).filter(|p| process::is_shoal_of(*p, home))
    });
    join_all(agents.map(|pid| process::terminate(pid, AGENT_STOP_GRACE))).await;
    stop_leftovers(&homes).await;
    println!("stopped the local cluster in {}", args.dir.display());
    Ok(())
}

/// Stops what the agents of `homes` left running (an agent was killed, say), by its pid
/// files, and removes them.
async fn stop_leftovers(homes: &[PathBuf]) {
    let mut leftovers = Vec::new();
    for home in homes {
        if let Ok(entries) = fs::read_dir(home.join("run")) {
            for e in entries.flatten() {
                // A pid file can outlive its process; only signal a pid that still runs
                // shoal for this machine.
                if let Some(pid) =
                    process::read_pid_file(&e.path()).filter(|p| process::is_shoal_of(*p, home))
                {
                    leftovers.push(pid);
                }
                let _ = fs::remove_file(e.path());
            }
        }
    }
    join_all(
        leftovers
            .iter()
            .map(|pid| process::terminate(*pid, AGENT_STOP_GRACE)),
    )
    .await;
}
