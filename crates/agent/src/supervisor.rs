//! Supervises the machine's node processes: one actor task per node owns its process and
//! applies start / stop requests in order, restarting the process after a crash when
//! `restartOnCrash=1`.
//!
//! ```text
//!            start                exit (not asked)         backoff elapsed
//!  STOPPED ---------> RUNNING -----------------> CRASHED ----------------> RUNNING
//!     ^                  |  stop: SIGTERM, grace, SIGKILL     |  stop
//!     +------------------+------------------------------------+
//! ```
//!
//! A request is answered once its target state is reached: a start when the process runs (or
//! failed to start), a stop when the process has exited and been reaped.
//!
//! An agent that re-executed itself (self-upgrade) keeps its pid, so the node processes it
//! started are still its children: it adopts them (`Proc::Adopted`) instead of restarting
//! them, and reaps them by pid.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use shoal_common::config::NodeMode;
use shoal_proto::{ProcessInfo, ProcessState};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

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

#[derive(Clone, Debug)]
struct Status {
    state: ProcessState,
    pid: u32,
    restarts: u32,
    last_exit: String,
}

enum Request {
    Start(oneshot::Sender<()>),
    Stop(oneshot::Sender<()>),
}

struct Managed {
    spec: NodeSpec,
    requests: mpsc::Sender<Request>,
    status: watch::Receiver<Status>,
}

pub struct Supervisor {
    nodes: BTreeMap<String, Managed>,
    /// Set when the agent shuts down: starts are refused from then on.
    shutting_down: std::sync::atomic::AtomicBool,
}

impl Supervisor {
    /// Spawns one actor per node; all start in the stopped state except those in `adopt`
    /// (alias -> pid of a running child this process inherited across its re-execution).
    pub fn new(
        specs: Vec<NodeSpec>,
        restart_on_crash: bool,
        backoff: Duration,
        adopt: &BTreeMap<String, u32>,
    ) -> Self {
        let nodes = specs
            .into_iter()
            .map(|spec| {
                let (req_tx, req_rx) = mpsc::channel(16);
                let adopted = adopt.get(&spec.alias).copied();
                let (status_tx, status_rx) = watch::channel(Status {
                    state: if adopted.is_some() {
                        ProcessState::Running
                    } else {
                        ProcessState::Stopped
                    },
                    pid: adopted.unwrap_or(0),
                    restarts: 0,
                    last_exit: String::new(),
                });
                let actor = Actor {
                    spec: spec.clone(),
                    status: status_tx,
                    restart_on_crash,
                    backoff,
                    want_running: adopted.is_some(),
                    child: adopted.map(Proc::Adopted),
                    restart_at: None,
                };
                tokio::spawn(actor.run(req_rx));
                let managed = Managed {
                    spec,
                    requests: req_tx,
                    status: status_rx,
                };
                (managed.spec.alias.clone(), managed)
            })
            .collect();
        Self {
            nodes,
            shutting_down: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Stops every node for good: later start requests do nothing.
    pub async fn shutdown(&self) {
        self.shutting_down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.set_running(&[], false).await;
    }

    /// Unknown aliases among `aliases` (empty means all nodes, so none is unknown).
    pub fn unknown<'a>(&self, aliases: &'a [String]) -> Vec<&'a str> {
        aliases
            .iter()
            .filter(|a| !self.nodes.contains_key(a.as_str()))
            .map(String::as_str)
            .collect()
    }

    /// Starts or stops the selected nodes (all when `aliases` is empty) and returns when each
    /// has reached the wanted state.
    pub async fn set_running(&self, aliases: &[String], running: bool) {
        if running && self.is_shutting_down() {
            return;
        }
        let replies = self
            .nodes
            .values()
            .filter(|m| aliases.is_empty() || aliases.contains(&m.spec.alias))
            .map(|m| async move {
                let (tx, rx) = oneshot::channel();
                let req = if running {
                    Request::Start(tx)
                } else {
                    Request::Stop(tx)
                };
                if m.requests.send(req).await.is_ok() {
                    let _ = rx.await;
                }
            });
        futures::future::join_all(replies).await;
    }

    pub fn list(&self) -> Vec<ProcessInfo> {
        self.nodes
            .values()
            .map(|m| {
                let s = m.status.borrow().clone();
                ProcessInfo {
                    alias: m.spec.alias.clone(),
                    mode: shoal_proto::NodeMode::from(m.spec.mode).into(),
                    state: s.state.into(),
                    pid: s.pid,
                    restarts: s.restarts,
                    last_exit: s.last_exit,
                }
            })
            .collect()
    }
}

/// What woke the actor.
enum Event {
    Request(Option<Request>),
    Exited(std::io::Result<ExitStatus>),
    RestartDue,
}

/// Owns one node's process. Only this task touches it, so requests apply in order.
struct Actor {
    spec: NodeSpec,
    status: watch::Sender<Status>,
    restart_on_crash: bool,
    backoff: Duration,
    want_running: bool,
    child: Option<Proc>,
    /// When a crashed process is due to be restarted.
    restart_at: Option<Instant>,
}

impl Actor {
    async fn run(mut self, mut requests: mpsc::Receiver<Request>) {
        loop {
            let event = tokio::select! {
                r = requests.recv() => Event::Request(r),
                exit = wait_child(&mut self.child) => Event::Exited(exit),
                () = sleep_until(self.restart_at) => Event::RestartDue,
            };
            match event {
                Event::Request(Some(Request::Start(reply))) => {
                    self.want_running = true;
                    self.restart_at = None;
                    if self.child.is_none() {
                        self.spawn();
                    }
                    let _ = reply.send(());
                }
                Event::Request(Some(Request::Stop(reply))) => {
                    self.want_running = false;
                    self.restart_at = None;
                    self.stop().await;
                    let _ = reply.send(());
                }
                // The supervisor is gone (agent shutting down): leave nothing running.
                Event::Request(None) => {
                    self.stop().await;
                    return;
                }
                Event::Exited(exit) => {
                    self.child = None;
                    let text = describe(&exit);
                    tracing::warn!("{}: exited on its own ({text})", self.spec.alias);
                    self.set(ProcessState::Crashed, 0, text);
                    self.schedule_restart();
                }
                Event::RestartDue => {
                    self.restart_at = None;
                    self.status.send_modify(|s| s.restarts += 1);
                    self.spawn();
                }
            }
        }
    }

    fn set(&self, state: ProcessState, pid: u32, last_exit: String) {
        self.status.send_modify(|s| {
            s.state = state;
            s.pid = pid;
            if !last_exit.is_empty() {
                s.last_exit = last_exit;
            }
        });
    }

    fn schedule_restart(&mut self) {
        if self.want_running && self.restart_on_crash {
            self.restart_at = Some(Instant::now() + self.backoff);
        }
    }

    fn spawn(&mut self) {
        match spawn(&self.spec) {
            Ok(child) => {
                let pid = child.id().unwrap_or(0);
                let _ = std::fs::write(&self.spec.pid_file, format!("{pid}\n"));
                tracing::info!("{}: started, pid {pid}", self.spec.alias);
                self.child = Some(Proc::Spawned(child));
                self.set(ProcessState::Running, pid, String::new());
            }
            Err(e) => {
                tracing::error!("{}: cannot start: {e}", self.spec.alias);
                self.set(ProcessState::Crashed, 0, format!("spawn failed: {e}"));
                self.schedule_restart();
            }
        }
    }

    /// SIGTERM, wait up to [`STOP_GRACE`], SIGKILL; returns once the process is reaped.
    async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            self.set(ProcessState::Stopped, 0, String::new());
            return;
        };
        if let Some(pid) = child.pid() {
            process::signal(pid, Signal::SIGTERM);
        }
        let exit = match tokio::time::timeout(STOP_GRACE, child.wait()).await {
            Ok(exit) => exit,
            Err(_) => {
                tracing::warn!(
                    "{}: no exit {STOP_GRACE:?} after SIGTERM; SIGKILL",
                    self.spec.alias
                );
                if let Some(pid) = child.pid() {
                    process::signal(pid, Signal::SIGKILL);
                }
                child.wait().await
            }
        };
        let _ = std::fs::remove_file(&self.spec.pid_file);
        let text = describe(&exit);
        tracing::info!("{}: stopped ({text})", self.spec.alias);
        self.set(ProcessState::Stopped, 0, text);
    }
}

/// A node process: spawned by this agent, or inherited across its re-execution.
enum Proc {
    Spawned(Child),
    Adopted(u32),
}

impl Proc {
    fn pid(&self) -> Option<u32> {
        match self {
            Proc::Spawned(c) => c.id(),
            Proc::Adopted(pid) => Some(*pid),
        }
    }

    async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        match self {
            Proc::Spawned(c) => c.wait().await,
            Proc::Adopted(pid) => process::reap(*pid).await,
        }
    }
}

async fn wait_child(child: &mut Option<Proc>) -> std::io::Result<ExitStatus> {
    match child {
        Some(c) => c.wait().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
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
        // Its own process group: a Ctrl-C meant for the agent reaches only the agent, which
        // then stops its nodes in order (a node takes a second signal as "exit now").
        .process_group(0)
        .kill_on_drop(false)
        .spawn()
}

fn describe(exit: &std::io::Result<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match exit {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => format!("exit {code}"),
            (None, Some(sig)) => format!("signal {sig}"),
            _ => "unknown exit".into(),
        },
        Err(e) => format!("wait failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &std::path::Path, alias: &str, program: &str, args: &[&str]) -> NodeSpec {
        NodeSpec {
            alias: alias.into(),
            mode: NodeMode::DataNode,
            program: program.into(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            log_file: dir.join(format!("{alias}.log")),
            pid_file: dir.join(format!("{alias}.pid")),
        }
    }

    fn info(sup: &Supervisor, alias: &str) -> ProcessInfo {
        sup.list().into_iter().find(|p| p.alias == alias).unwrap()
    }

    #[tokio::test]
    async fn start_and_stop_reach_their_state_before_returning() {
        let dir = tempfile::tempdir().unwrap();
        let sup = Supervisor::new(
            vec![spec(dir.path(), "n", "/bin/sleep", &["60"])],
            true,
            Duration::from_millis(50),
            &BTreeMap::new(),
        );
        sup.set_running(&[], true).await;
        let p = info(&sup, "n");
        assert_eq!(p.state(), ProcessState::Running);
        assert!(process::is_alive(p.pid));

        sup.set_running(&[], false).await;
        assert_eq!(info(&sup, "n").state(), ProcessState::Stopped);
        assert!(
            !process::is_alive(p.pid),
            "stop returned while the process runs"
        );
        assert_eq!(info(&sup, "n").last_exit, "signal 15");
    }

    #[tokio::test]
    async fn a_crash_loop_is_restarted_and_can_still_be_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let sup = Supervisor::new(
            vec![spec(dir.path(), "c", "/bin/sh", &["-c", "exit 3"])],
            true,
            Duration::from_millis(20),
            &BTreeMap::new(),
        );
        sup.set_running(&[], true).await;
        let mut status = sup.nodes["c"].status.clone();
        status.wait_for(|s| s.restarts >= 2).await.unwrap();
        // A stop that lands during the crash backoff returns, and nothing restarts after it.
        tokio::time::timeout(Duration::from_secs(5), sup.set_running(&[], false))
            .await
            .unwrap();
        let stopped = info(&sup, "c");
        assert_eq!(stopped.state(), ProcessState::Stopped);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(info(&sup, "c").restarts, stopped.restarts);
        // Stopped either in backoff (last exit is the crash) or while briefly running again.
        assert!(
            ["exit 3", "signal 15"].contains(&stopped.last_exit.as_str()),
            "{stopped:?}"
        );
    }

    #[tokio::test]
    async fn without_restart_on_crash_a_crashed_node_waits_for_a_start() {
        let dir = tempfile::tempdir().unwrap();
        let sup = Supervisor::new(
            vec![spec(dir.path(), "c", "/bin/sh", &["-c", "exit 1"])],
            false,
            Duration::from_millis(10),
            &BTreeMap::new(),
        );
        sup.set_running(&[], true).await;
        let mut status = sup.nodes["c"].status.clone();
        status
            .wait_for(|s| s.state == ProcessState::Crashed)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(info(&sup, "c").restarts, 0);
        assert_eq!(info(&sup, "c").state(), ProcessState::Crashed);
    }

    #[tokio::test]
    async fn concurrent_start_and_stop_both_return() {
        let dir = tempfile::tempdir().unwrap();
        let sup = Supervisor::new(
            vec![spec(dir.path(), "n", "/bin/sleep", &["60"])],
            true,
            Duration::from_millis(50),
            &BTreeMap::new(),
        );
        let both = async { tokio::join!(sup.set_running(&[], true), sup.set_running(&[], false)) };
        tokio::time::timeout(Duration::from_secs(20), both)
            .await
            .unwrap();
        // Requests apply in order: whichever came last decides, and the state matches it.
        let p = info(&sup, "n");
        assert_eq!(p.state() == ProcessState::Running, process::is_alive(p.pid));
        sup.set_running(&[], false).await;
    }
}
