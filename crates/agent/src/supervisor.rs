//! Supervises the machine's node processes: one task per node keeps its process in the wanted
//! state (running or stopped), restarting it after a crash when `restartOnCrash=1`.
//!
//! ```text
//!            start                exit (not asked)         backoff elapsed
//!  STOPPED ---------> RUNNING -----------------> CRASHED ----------------> RUNNING
//!     ^                  |  stop: SIGTERM, grace, SIGKILL
//!     +------------------+
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use shoal_common::config::NodeMode;
use shoal_proto::{ProcessInfo, ProcessState};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::process;

/// How long a node gets to stop after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(15);

/// How to launch one node.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub alias: String,
    pub mode: NodeMode,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub log_file: PathBuf,
    pub pid_file: PathBuf,
}

#[derive(Clone, Debug, Default)]
struct Status {
    state: Option<ProcessState>,
    pid: u32,
    restarts: u32,
    last_exit: String,
}

struct Managed {
    spec: NodeSpec,
    want_running: Arc<watch::Sender<bool>>,
    status: Arc<Mutex<Status>>,
    /// Signalled by the node's task each time the process reached the wanted state.
    settled: watch::Receiver<u64>,
}

pub struct Supervisor {
    nodes: BTreeMap<String, Managed>,
}

impl Supervisor {
    /// Spawns one supervising task per node; all start in the stopped state.
    pub fn new(specs: Vec<NodeSpec>, restart_on_crash: bool, backoff: Duration) -> Self {
        let nodes = specs
            .into_iter()
            .map(|spec| {
                let want_tx = Arc::new(watch::Sender::new(false));
                let (settled_tx, settled_rx) = watch::channel(0);
                let status = Arc::new(Mutex::new(Status {
                    state: Some(ProcessState::Stopped),
                    ..Status::default()
                }));
                tokio::spawn(supervise(
                    spec.clone(),
                    want_tx.clone(),
                    status.clone(),
                    settled_tx,
                    restart_on_crash,
                    backoff,
                ));
                let managed = Managed {
                    spec,
                    want_running: want_tx,
                    status,
                    settled: settled_rx,
                };
                (managed.spec.alias.clone(), managed)
            })
            .collect();
        Self { nodes }
    }

    /// Unknown aliases among `aliases` (empty means all nodes, so none is unknown).
    pub fn unknown<'a>(&self, aliases: &'a [String]) -> Vec<&'a str> {
        aliases
            .iter()
            .filter(|a| !self.nodes.contains_key(a.as_str()))
            .map(String::as_str)
            .collect()
    }

    fn selected(&self, aliases: &[String]) -> Vec<&Managed> {
        self.nodes
            .values()
            .filter(|m| aliases.is_empty() || aliases.contains(&m.spec.alias))
            .collect()
    }

    /// Sets the wanted state of the selected nodes and waits until each has reached it
    /// (started, or stopped and reaped).
    pub async fn set_running(&self, aliases: &[String], running: bool) {
        let mut waits = Vec::new();
        for m in self.selected(aliases) {
            let mut settled = m.settled.clone();
            settled.mark_unchanged();
            let changed = m.want_running.send_if_modified(|w| {
                let changed = *w != running;
                *w = running;
                changed
            });
            let already = {
                let s = m.status.lock().unwrap_or_else(|p| p.into_inner());
                let running_now = s.state == Some(ProcessState::Running);
                running_now == running
            };
            if changed || !already {
                waits.push(async move {
                    let _ = settled.changed().await;
                });
            }
        }
        futures::future::join_all(waits).await;
    }

    pub fn list(&self) -> Vec<ProcessInfo> {
        self.nodes
            .values()
            .map(|m| {
                let s = m.status.lock().unwrap_or_else(|p| p.into_inner()).clone();
                ProcessInfo {
                    alias: m.spec.alias.clone(),
                    mode: mode_to_proto(m.spec.mode).into(),
                    state: s.state.unwrap_or(ProcessState::Unspecified).into(),
                    pid: s.pid,
                    restarts: s.restarts,
                    last_exit: s.last_exit,
                }
            })
            .collect()
    }
}

pub fn mode_to_proto(mode: NodeMode) -> shoal_proto::NodeMode {
    match mode {
        NodeMode::Controller => shoal_proto::NodeMode::Controller,
        NodeMode::Agent => shoal_proto::NodeMode::Agent,
        NodeMode::DataNode => shoal_proto::NodeMode::Datanode,
    }
}

fn set(status: &Mutex<Status>, f: impl FnOnce(&mut Status)) {
    f(&mut status.lock().unwrap_or_else(|p| p.into_inner()));
}

/// One node's lifecycle loop.
async fn supervise(
    spec: NodeSpec,
    want_tx: Arc<watch::Sender<bool>>,
    status: Arc<Mutex<Status>>,
    settled: watch::Sender<u64>,
    restart_on_crash: bool,
    backoff: Duration,
) {
    let notify = || settled.send_modify(|n| *n += 1);
    let mut want = want_tx.subscribe();
    loop {
        // Stopped: wait to be asked to run.
        if want.wait_for(|w| *w).await.is_err() {
            return;
        }
        let mut child = match spawn(&spec) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("{}: cannot start: {e}", spec.alias);
                set(&status, |s| {
                    s.state = Some(ProcessState::Crashed);
                    s.last_exit = format!("spawn failed: {e}");
                });
                notify();
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        let pid = child.id().unwrap_or(0);
        let _ = std::fs::write(&spec.pid_file, format!("{pid}\n"));
        tracing::info!("{}: started, pid {pid}", spec.alias);
        set(&status, |s| {
            s.state = Some(ProcessState::Running);
            s.pid = pid;
        });
        notify();

        // Running: until it exits or we are asked to stop it.
        let exit = tokio::select! {
            exit = child.wait() => Some(exit),
            _ = want.wait_for(|w| !*w) => None,
        };
        let exit = match exit {
            Some(exit) => exit,
            None => stop(&spec, &mut child).await,
        };
        let _ = std::fs::remove_file(&spec.pid_file);
        let text = match &exit {
            Ok(s) => describe(s),
            Err(e) => format!("wait failed: {e}"),
        };
        let asked = !*want.borrow();
        if asked {
            tracing::info!("{}: stopped ({text})", spec.alias);
            set(&status, |s| {
                s.state = Some(ProcessState::Stopped);
                s.pid = 0;
                s.last_exit = text;
            });
            notify();
            continue;
        }
        tracing::warn!("{}: exited on its own ({text})", spec.alias);
        set(&status, |s| {
            s.state = Some(ProcessState::Crashed);
            s.pid = 0;
            s.last_exit = text;
        });
        notify();
        if !restart_on_crash {
            // Stays down until someone asks for a start.
            want_tx.send_replace(false);
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = want.wait_for(|w| !*w) => {}
        }
        if *want.borrow() {
            set(&status, |s| s.restarts += 1);
        }
    }
}

fn spawn(spec: &NodeSpec) -> std::io::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log_file)?;
    Command::new(&spec.program)
        .args(&spec.args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(false)
        .spawn()
}

async fn stop(spec: &NodeSpec, child: &mut Child) -> std::io::Result<std::process::ExitStatus> {
    if let Some(pid) = child.id() {
        process::signal(pid, Signal::SIGTERM);
    }
    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(exit) => exit,
        Err(_) => {
            tracing::warn!(
                "{}: no exit {STOP_GRACE:?} after SIGTERM; SIGKILL",
                spec.alias
            );
            child.start_kill()?;
            child.wait().await
        }
    }
}

fn describe(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => "unknown exit".into(),
    }
}
