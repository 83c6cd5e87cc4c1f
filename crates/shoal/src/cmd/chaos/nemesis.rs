//! The faults. Each [`Nemesis`] picks its target when it starts (the primary of the hot chunk,
//! i.e. the newest, being written; the controller leader; ...), does its damage and returns an [`Active`] fault that
//! [`Active::stop`] undoes; both are recorded in the history. Kills and wipes have nothing to
//! undo (the agent restarts the process); their window is the recovery that follows.
//!
//! What each one guards (see docs/ARCHITECTURE.md, "Fault tier"):
//! partitions and pauses the CAS-protected primary change; kill + wipe a restarted empty
//! replica being taken for the truth (F1); disk full and fsync EIO a poisoned store (F6); a
//! wiped controller metadata rollback (F7); a clock jump the time-based guards (F9); a frozen
//! machine everything that notices a silent machine (heartbeats, leases, primary timeout); DDL
//! churn catalog changes and chunk deletions under appends (F2, F9); a rolling upgrade drains,
//! stops and restarts every machine in turn (brief invariants 4 and 5).

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use shoal_agent::process;

use super::cluster::{ChunkRow, NsCluster, wait_output};
use super::firewall::{self, Block};
use super::freezer::{self, Frozen};
use super::shim::{Control, Eio, Faults};
use super::workload::DB;
use shoal_netns::{CLIENT_ADDR, machine_addr};

const CONTROLLER_PORT: u16 = 8920;
const DATA_PORT: u16 = 8922;
/// A SIGKILLed process is gone well within this.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// How far `clock-jump` sets the leader's wall clock ahead: far past the 5 s name-reuse grace,
/// the 17 s primary timeout and the 30 s `dfsRecoveryWaitTime`.
const CLOCK_JUMP: Duration = Duration::from_secs(5 * 60);
/// The churn's last round is over this long after its hold (its DDL and appends are short).
const CHURN_GRACE: Duration = Duration::from_secs(60);
/// A rolling upgrade of three machines ends within this after its hold (each machine's nodes
/// get `--node-timeout`, 90 s, to come back).
const UPGRADE_GRACE: Duration = Duration::from_secs(600);
/// How long the `upgrade` nemesis waits for every chunk COMPLETE before it starts anyway.
const UPGRADE_READY: Duration = Duration::from_secs(60);
/// `shoal upgrade`'s exit status when it paused rather than stop a machine the cluster could
/// not lose: a verdict of its safety check, not a failure.
const UPGRADE_PAUSED: i32 = 2;

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Nemesis {
    /// The hot chunk's primary's machine cut from the other machines (clients still reach it).
    PartitionHalves,
    /// The hot chunk's primary and its other in-sync replicas (one, or two with `--replicas 3`)
    /// cannot reach each other's data node.
    PartitionPrimaryReplica,
    /// The primary's machine cannot reach any controller (its own included).
    PartitionPrimaryControllers,
    /// Clients cannot reach the primary's machine.
    PartitionPrimaryClients,
    /// The primary's machine receives nothing from the other machines but can still send.
    PartitionOneWay,
    /// Every machine drops 5% of the packets it receives.
    Lossy,
    /// SIGSTOP the hot chunk's primary data node.
    PausePrimary,
    /// SIGSTOP the controller leader.
    PauseLeader,
    /// kill -9 the hot chunk's primary data node (its agent restarts it).
    KillPrimary,
    /// kill -9 the controller leader.
    KillLeader,
    /// kill -9 the primary of the oldest (cold) chunk, wipe its volume and chunkMetaDir,
    /// restart it (F1).
    WipePrimary,
    /// kill -9 a follower controller, wipe its metadata, restart it (F7).
    WipeController,
    /// Fill the primary data node's volume (F6).
    DiskFull,
    /// fsync and fdatasync of the primary data node's files (WAL, chunk files, chunkMetaDir)
    /// fail with EIO, through the fault shim (F6).
    FsyncEio,
    /// The controller leader's wall clock (CLOCK_REALTIME) jumps 5 minutes ahead, and back
    /// when stopped, through the fault shim (F9).
    ClockJump,
    /// Freeze the primary's whole machine (agent, controller, data node) with the cgroup
    /// freezer.
    FreezeMachine,
    /// Create and drop databases and tables, and drop partitions, of names the workload does
    /// not write, while it writes (`shoal chaos churn`).
    DdlChurn,
    /// A rolling upgrade to `--upgrade-to` (`shoal upgrade`), or a rollback when the cluster
    /// already runs it; held at least the hold, and until the orchestrator is done.
    Upgrade,
    /// Writes (write, pwrite, writev) as well as fsync and fdatasync of the primary data
    /// node's files fail with EIO, through the fault shim: a disk failing outright (F6).
    WriteEio,
}

impl Nemesis {
    pub const ALL: [Nemesis; 19] = [
        Self::PartitionHalves,
        Self::PartitionPrimaryReplica,
        Self::PartitionPrimaryControllers,
        Self::PartitionPrimaryClients,
        Self::PartitionOneWay,
        Self::Lossy,
        Self::PausePrimary,
        Self::PauseLeader,
        Self::KillPrimary,
        Self::KillLeader,
        Self::WipePrimary,
        Self::WipeController,
        Self::DiskFull,
        Self::FsyncEio,
        Self::ClockJump,
        Self::FreezeMachine,
        Self::DdlChurn,
        Self::Upgrade,
        Self::WriteEio,
    ];

    /// The shortest hold that covers the fault: a rolling upgrade of three machines took 73 to
    /// 104 s here (debug build, 2 busy cores), and the workload runs only as long as the
    /// schedule says.
    pub fn min_hold(self) -> Duration {
        match self {
            Self::Upgrade => Duration::from_secs(120),
            _ => Duration::ZERO,
        }
    }

    /// An operator's action rather than a fault: it runs beside the faults the schedule holds
    /// after it (one such at a time), so that a rolling upgrade meets partitions, pauses,
    /// kills and disk faults on the machines it drains, stops and restarts.
    pub fn runs_beside(self) -> bool {
        matches!(self, Self::Upgrade | Self::DdlChurn)
    }

    /// Does it need the fault shim preloaded into the cluster's processes?
    pub fn needs_shim(self) -> bool {
        matches!(self, Self::FsyncEio | Self::WriteEio | Self::ClockJump)
    }

    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Does the damage, for `hold`; the returned fault says what it did and how to undo it.
    pub fn start(self, c: &NsCluster, hold: Duration) -> anyhow::Result<Active> {
        let mut undo = Undo::Nothing;
        let target = match self {
            Self::PartitionHalves
            | Self::PartitionPrimaryReplica
            | Self::PartitionPrimaryControllers
            | Self::PartitionPrimaryClients
            | Self::PartitionOneWay => {
                let (id, primary, replicas) = chunk(c, Temperature::Hot)?;
                let p = c.machine_of(&primary)?;
                let r = replicas
                    .iter()
                    .map(|r| c.machine_of(r))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let rules = self.partition_rules(p, &r);
                let mut namespaces = Vec::new();
                for (ns_of, blocks) in rules {
                    let ns = match ns_of {
                        Some(i) => c.topology.machine_ns(i),
                        None => c.topology.client_ns(),
                    };
                    firewall::apply(&ns, &blocks)?;
                    namespaces.push(ns);
                }
                undo = Undo::Firewall(namespaces);
                format!(
                    "{primary} (primary of chunk {id}, in-sync replicas [{}])",
                    replicas.join(", ")
                )
            }
            Self::Lossy => {
                let namespaces: Vec<String> = (1..=3).map(|i| c.topology.machine_ns(i)).collect();
                let loss = Block {
                    percent: Some(5),
                    ..Block::default()
                };
                for ns in &namespaces {
                    firewall::apply(ns, std::slice::from_ref(&loss))?;
                }
                undo = Undo::Firewall(namespaces);
                "every machine, 5% of packets".into()
            }
            Self::PausePrimary | Self::PauseLeader => {
                let alias = match self {
                    Self::PausePrimary => chunk(c, Temperature::Hot)?.1,
                    _ => leader(c)?,
                };
                let pid = c.pid_of(&alias)?;
                process::signal(pid, Signal::SIGSTOP);
                undo = Undo::Continue(pid);
                format!("{alias} (pid {pid})")
            }
            Self::KillPrimary | Self::KillLeader => {
                let alias = match self {
                    Self::KillPrimary => chunk(c, Temperature::Hot)?.1,
                    _ => leader(c)?,
                };
                let pid = c.pid_of(&alias)?;
                kill9(pid)?;
                format!("{alias} (pid {pid})")
            }
            Self::WipePrimary => {
                let (id, alias, _) = chunk(c, Temperature::Cold)?;
                let dirs = c.data_dirs(&alias)?;
                kill_and_wipe(c, &alias, &dirs)?;
                format!("{alias} (primary of cold chunk {id}): volume and chunkMetaDir")
            }
            Self::WipeController => {
                let leader = leader(c)?;
                let alias = c
                    .nodes
                    .controllers()
                    .map(|n| n.site.alias.clone())
                    .find(|a| *a != leader)
                    .context("no follower controller")?;
                kill_and_wipe(c, &alias, &[c.meta_dir(&alias)?])?;
                format!("{alias} (a follower): dfsMeta")
            }
            Self::DiskFull => {
                let alias = chunk(c, Temperature::Hot)?.1;
                let [volume, _] = c.data_dirs(&alias)?;
                let ballast = volume.join("chaos-ballast");
                fill(&ballast)?;
                undo = Undo::Remove(ballast);
                format!("{alias}'s volume")
            }
            Self::FsyncEio | Self::WriteEio => {
                let alias = chunk(c, Temperature::Hot)?.1;
                let dir = c.data_node_dir(&alias)?;
                let control = shim_control(c, &alias)?;
                control.set(&Faults {
                    eio: Some(Eio {
                        under: dir.clone(),
                        writes: self == Self::WriteEio,
                    }),
                    ..Faults::default()
                })?;
                undo = Undo::Disarm(control);
                format!("{alias} (files under {})", dir.display())
            }
            Self::ClockJump => {
                let alias = leader(c)?;
                let control = shim_control(c, &alias)?;
                control.set(&Faults {
                    clock_ahead: Some(("controller", CLOCK_JUMP)),
                    ..Faults::default()
                })?;
                undo = Undo::Disarm(control);
                format!("{alias} (the leader) {} s ahead", CLOCK_JUMP.as_secs())
            }
            Self::FreezeMachine => {
                let alias = chunk(c, Temperature::Hot)?.1;
                let machine = c.machine_of(&alias)?;
                let pids = c.pids_of_machine(machine);
                undo = Undo::Thaw(freezer::freeze(&c.topology.machine_ns(machine), &pids)?);
                format!("machine {machine} of {alias} (pids {pids:?})")
            }
            Self::DdlChurn => {
                let log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(c.dir.join("churn.log"))?;
                let duration = format!("{}ms", hold.as_millis());
                let churn = c
                    .client(&["chaos", "churn", "--duration", &duration])?
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(log)
                    .spawn()
                    .context("cannot start the churn")?;
                undo = Undo::Wait(churn, hold + CHURN_GRACE);
                format!("dfs://churn_* (log {})", c.dir.join("churn.log").display())
            }
            Self::Upgrade => {
                let package = c
                    .upgrade_to
                    .as_ref()
                    .context("the run has no package to upgrade to")?;
                // As an operator would: `shoal upgrade` refuses a cluster with a chunk not
                // COMPLETE (one recovering from the previous fault), so wait for that first.
                if !c.wait_complete(UPGRADE_READY) {
                    eprintln!("chaos: chunks still not COMPLETE after {UPGRADE_READY:?}");
                }
                let args = package.orchestrator_args(c)?;
                let log_path = c.dir.join("upgrade.log");
                let log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log_path)?;
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let orchestrator = c
                    .client(&args)?
                    .stdin(Stdio::null())
                    .stdout(log.try_clone()?)
                    .stderr(log)
                    .spawn()
                    .context("cannot start the upgrade")?;
                undo = Undo::Orchestrator(orchestrator, hold + UPGRADE_GRACE, log_path.clone());
                format!("`shoal {}` (log {})", args.join(" "), log_path.display())
            }
        };
        Ok(Active {
            what: format!("{} {target}", self.name()),
            undo,
        })
    }

    /// Per namespace (`None`: the client's; each at most once, as its rules replace the
    /// namespace's), the packets it drops, given the primary's machine `p` and the machines
    /// `r` of its other in-sync replicas.
    fn partition_rules(self, p: usize, r: &[usize]) -> Vec<(Option<usize>, Vec<Block>)> {
        let others: Vec<usize> = (1..=3).filter(|i| *i != p).collect();
        let from = |i: usize| Block::from(&machine_addr(i));
        match self {
            Self::PartitionHalves => {
                let mut rules = vec![(Some(p), others.iter().map(|i| from(*i)).collect())];
                rules.extend(others.iter().map(|i| (Some(*i), vec![from(p)])));
                rules
            }
            Self::PartitionPrimaryReplica => {
                // A chunk with no other in-sync replica: cut it from where one would be rebuilt.
                let r = if r.is_empty() { &others[..1] } else { r };
                // Requests to and answers from the other's data node, both ways.
                let data = |i: usize| {
                    vec![
                        Block {
                            dport: Some(DATA_PORT),
                            ..from(i)
                        },
                        Block {
                            sport: Some(DATA_PORT),
                            ..from(i)
                        },
                    ]
                };
                let mut rules = vec![(Some(p), r.iter().flat_map(|i| data(*i)).collect())];
                rules.extend(r.iter().map(|i| (Some(*i), data(p))));
                rules
            }
            // Answers from every controller, its own (over loopback) included.
            Self::PartitionPrimaryControllers => vec![(
                Some(p),
                vec![Block {
                    sport: Some(CONTROLLER_PORT),
                    ..Block::default()
                }],
            )],
            Self::PartitionPrimaryClients => vec![(Some(p), vec![Block::from(CLIENT_ADDR)])],
            Self::PartitionOneWay => vec![(Some(p), others.iter().map(|i| from(*i)).collect())],
            _ => Vec::new(),
        }
    }
}

/// A fault in place: undone by [`Active::stop`], or on drop (a run that fails midway still
/// leaves no fault armed, no machine frozen).
pub struct Active {
    /// For the history: the nemesis and its target.
    pub what: String,
    undo: Undo,
}

enum Undo {
    Nothing,
    Firewall(Vec<String>),
    Continue(u32),
    Remove(PathBuf),
    Disarm(Control),
    Thaw(Frozen),
    /// A client process that ends by itself, killed if it has not within the duration.
    Wait(Child, Duration),
    /// `shoal upgrade`, waited for like [`Undo::Wait`]; it may pause (exit 2), and logs to
    /// the path.
    Orchestrator(Child, Duration, PathBuf),
}

impl Active {
    pub fn stop(mut self) -> anyhow::Result<()> {
        std::mem::replace(&mut self.undo, Undo::Nothing).undo()
    }

    /// Whether stopping it would not wait: a client process it runs (churn, an upgrade's
    /// orchestrator) has ended; every other fault is undone at once.
    pub fn finished(&mut self) -> bool {
        match &mut self.undo {
            Undo::Wait(child, _) | Undo::Orchestrator(child, _, _) => {
                !matches!(child.try_wait(), Ok(None))
            }
            _ => true,
        }
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        if let Err(e) = std::mem::replace(&mut self.undo, Undo::Nothing).undo() {
            eprintln!("warning: cannot undo {}: {e:#}", self.what);
        }
    }
}

impl Undo {
    fn undo(self) -> anyhow::Result<()> {
        match self {
            Undo::Nothing => Ok(()),
            Undo::Firewall(namespaces) => {
                for ns in &namespaces {
                    firewall::apply(ns, &[])?;
                }
                Ok(())
            }
            Undo::Continue(pid) => {
                process::signal(pid, Signal::SIGCONT);
                Ok(())
            }
            Undo::Remove(path) => std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove {}", path.display())),
            Undo::Disarm(control) => control.set(&Faults::default()),
            Undo::Thaw(frozen) => frozen.thaw(),
            Undo::Wait(child, within) => {
                let out = wait_output(child, within)?;
                if !out.status.success() {
                    bail!("it ended with {}", out.status);
                }
                Ok(())
            }
            Undo::Orchestrator(child, within, log) => {
                let out = wait_output(child, within)?;
                match out.status.code() {
                    Some(0) => Ok(()),
                    Some(UPGRADE_PAUSED) => {
                        eprintln!("chaos: the upgrade paused; see {}", log.display());
                        Ok(())
                    }
                    // A fault beside it may fail a step: the orchestrator then returns the
                    // machine to the old version (the final state shows whether it did), and
                    // the next `upgrade` rolls back the rest. Not a verdict on the data.
                    _ => {
                        eprintln!(
                            "chaos: the upgrade failed ({}); see {}",
                            out.status,
                            log.display()
                        );
                        Ok(())
                    }
                }
            }
        }
    }
}

/// Which chunk a nemesis aims at: the newest (still written: faults there hit appends in
/// flight) or the oldest (cold: nothing notices a fault there until recovery).
#[derive(Clone, Copy)]
enum Temperature {
    Hot,
    Cold,
}

/// The run's newest or oldest chunk: its id, primary and other in-sync replicas.
fn chunk(c: &NsCluster, t: Temperature) -> anyhow::Result<(u64, String, Vec<String>)> {
    let chunks: Vec<ChunkRow> = c.chunks(DB)?;
    let by_id = |c: &&ChunkRow| c.chunk_id;
    let chosen = match t {
        Temperature::Hot => chunks.iter().max_by_key(by_id),
        Temperature::Cold => chunks.iter().min_by_key(by_id),
    }
    .with_context(|| format!("{DB} has no chunk yet"))?;
    let mut in_sync = chosen.in_sync();
    if in_sync.is_empty() {
        bail!("chunk {} has no in-sync replica", chosen.chunk_id);
    }
    let primary = in_sync.remove(0);
    Ok((chosen.chunk_id, primary, in_sync))
}

/// The control of the fault shim on `alias`'s machine, once `alias` is seen to have it loaded.
fn shim_control(c: &NsCluster, alias: &str) -> anyhow::Result<Control> {
    let shim = c
        .shim
        .as_ref()
        .context("the cluster was started without the fault shim")?;
    shim.check_loaded(c.pid_of(alias)?)
        .with_context(|| format!("{alias} cannot be given a fault"))?;
    Ok(shim.control(c.machine_of(alias)?)?.clone())
}

fn leader(c: &NsCluster) -> anyhow::Result<String> {
    let status = c.status()?;
    status["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["raft_role"] == "leader")
        .and_then(|n| n["alias"].as_str().map(str::to_owned))
        .context("no controller leader")
}

fn kill9(pid: u32) -> anyhow::Result<()> {
    process::signal(pid, Signal::SIGKILL);
    let started = Instant::now();
    while process::is_alive(pid) {
        if started.elapsed() > KILL_WAIT {
            bail!("pid {pid} still alive {KILL_WAIT:?} after SIGKILL");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Kills `alias` while its agent is stopped (so it cannot restart it yet), empties `dirs`, and
/// lets the agent go on, which restarts it on the empty directories.
fn kill_and_wipe(c: &NsCluster, alias: &str, dirs: &[PathBuf]) -> anyhow::Result<()> {
    let agent = c.pid_of(&c.agent_of(alias)?)?;
    let pid = c.pid_of(alias)?;
    process::signal(agent, Signal::SIGSTOP);
    let wiped = kill9(pid).and_then(|()| {
        for d in dirs {
            empty_dir(d)?;
        }
        Ok(())
    });
    process::signal(agent, Signal::SIGCONT);
    wiped
}

fn empty_dir(dir: &Path) -> anyhow::Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = e?.path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        }
        .with_context(|| format!("cannot remove {}", path.display()))?;
    }
    Ok(())
}

/// Writes zeros to `path` until the file system is full.
fn fill(path: &Path) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    let block = vec![0u8; 1 << 20];
    // Bounded: the volume is a small tmpfs; this many MiB would be a misconfiguration.
    for _ in 0..4096 {
        match f.write_all(&block).and_then(|()| f.sync_data()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    bail!("{} never filled up", path.display())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn partitions_drop_the_right_packets_in_the_right_namespaces() {
        let halves = Nemesis::PartitionHalves.partition_rules(2, &[3]);
        assert_eq!(
            halves,
            vec![
                (
                    Some(2),
                    vec![Block::from("10.77.0.1"), Block::from("10.77.0.3")]
                ),
                (Some(1), vec![Block::from("10.77.0.2")]),
                (Some(3), vec![Block::from("10.77.0.2")]),
            ]
        );
        let pr = Nemesis::PartitionPrimaryReplica.partition_rules(1, &[3]);
        assert_eq!(pr.len(), 2);
        assert_eq!(pr[0].0, Some(1));
        assert_eq!(
            pr[0].1[0],
            Block {
                from: Some("10.77.0.3".into()),
                dport: Some(8922),
                ..Block::default()
            }
        );
        assert_eq!(pr[1].1[1].sport, Some(8922));
        let one_way = Nemesis::PartitionOneWay.partition_rules(3, &[]);
        assert_eq!(one_way.len(), 1, "only the primary's side drops");
        let clients = Nemesis::PartitionPrimaryClients.partition_rules(1, &[]);
        assert_eq!(clients, vec![(Some(1), vec![Block::from("10.77.0.10")])]);
    }

    #[test]
    fn a_primary_is_cut_from_every_other_in_sync_replica() {
        let two = Nemesis::PartitionPrimaryReplica.partition_rules(2, &[1, 3]);
        let machines: Vec<Option<usize>> = two.iter().map(|(m, _)| *m).collect();
        assert_eq!(
            machines,
            vec![Some(2), Some(1), Some(3)],
            "each namespace once"
        );
        assert_eq!(two[0].1.len(), 4, "both ways, from each replica");
        assert!(two[1..].iter().all(|(_, b)| b[0]
            == Block {
                dport: Some(8922),
                ..Block::from("10.77.0.2")
            }));
        let none = Nemesis::PartitionPrimaryReplica.partition_rules(2, &[]);
        assert_eq!(none.len(), 2, "cut from the first other machine");
        assert_eq!(none[1].0, Some(1));
    }

    #[test]
    fn names_are_the_cli_names() {
        assert_eq!(Nemesis::WipePrimary.name(), "wipe-primary");
        assert_eq!(Nemesis::ALL.len(), 19);
        assert_eq!(Nemesis::FsyncEio.name(), "fsync-eio");
        assert_eq!(Nemesis::WriteEio.name(), "write-eio");
    }
}
