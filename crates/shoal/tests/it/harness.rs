//! A local cluster for one test: its own directory, its own loopback subnet (so tests run in
//! parallel without port clashes), torn down by `Drop` even when the test fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn shoal_bin() -> &'static str {
    env!("CARGO_BIN_EXE_shoal")
}

/// No single `shoal` command of a test may take longer: a hang fails the test instead.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// Another build of this code that reports the next minor version, for upgrade tests:
/// `$SHOAL_NEXT_BINARY`, else what `scripts/build-upgrade-binaries` left in target/upgrade/.
pub fn next_binary() -> PathBuf {
    upgrade_binary("SHOAL_NEXT_BINARY", "shoal-next")
}

/// The previous release (`compat/previous-release`), built by `scripts/build-upgrade-binaries`.
pub fn previous_release_binary() -> PathBuf {
    upgrade_binary("SHOAL_PREVIOUS_BINARY", "shoal-previous")
}

fn upgrade_binary(var: &str, name: &str) -> PathBuf {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/upgrade")
            .join(name)
    });
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-upgrade-binaries (scripts/test does) or set ${var}",
        path.display()
    );
    path
}

/// Runs `shoal ARGS` to completion (killed and failed after [`COMMAND_TIMEOUT`]).
pub fn shoal(args: &[&str]) -> Output {
    shoal_with(Path::new(shoal_bin()), args)
}

/// Runs `BINARY ARGS` (another build of shoal) like [`shoal`].
pub fn shoal_with(binary: &Path, args: &[&str]) -> Output {
    shoal_with_env(binary, args, &[])
}

/// [`shoal_with`] with extra environment variables (e.g. a test-only fault point).
pub fn shoal_with_env(binary: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(binary);
    command.args(args).envs(env.iter().copied());
    run_shoal(command)
}

/// Runs a prepared `shoal` command (e.g. inside a network namespace) like [`shoal`]: without
/// the environment's cluster secret, its output captured, failed after [`COMMAND_TIMEOUT`].
pub fn run_shoal(mut command: Command) -> Output {
    let child = command
        .env_remove("SHOAL_CLUSTER_SECRET")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shoal");
    let pid = child.id();
    // Read the output on another thread so a full pipe cannot block the child.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(COMMAND_TIMEOUT) {
        Ok(out) => out.expect("output"),
        Err(_) => {
            kill("-KILL", u64::from(pid));
            panic!("`{command:?}` hung for {COMMAND_TIMEOUT:?}");
        }
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The three machine addresses of a new cluster, none used by another cluster of this run: on
/// a loopback /24 of its own (127.<pid-derived>.<counter>.1-3), or, with
/// `$SHOAL_TEST_SUBNET=a.b.c` (a machine shared with other test runs, each given its own
/// addresses), the next three of a.b.c.1-254.
pub fn fresh_hosts() -> Vec<String> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    match std::env::var("SHOAL_TEST_SUBNET") {
        Ok(subnet) => {
            assert!(
                3 * n + 3 <= 254,
                "$SHOAL_TEST_SUBNET={subnet} has no addresses left"
            );
            (1..=3).map(|i| format!("{subnet}.{}", 3 * n + i)).collect()
        }
        Err(_) => {
            let subnet = format!("127.{}.{}", 10 + std::process::id() % 240, (n + 1) % 250);
            (1..=3).map(|i| format!("{subnet}.{i}")).collect()
        }
    }
}

pub struct LocalCluster {
    _tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub hosts: Vec<String>,
}

impl LocalCluster {
    /// `shoal local up` on a fresh subnet; panics with the logs if it fails.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// `start` with extra `local up` arguments (e.g. `--set KEY=VALUE`).
    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_from(Path::new(shoal_bin()), extra)
    }

    /// A cluster whose machines run `binary` (another build: it is what `local up` installs).
    pub fn start_from(binary: &Path, extra: &[&str]) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("cluster");
        Self::start_in(tmp, dir, fresh_hosts(), binary, extra)
    }

    /// `start_from` in `dir` (under `tmp`, removed with the cluster) on `hosts`.
    pub fn start_in(
        tmp: tempfile::TempDir,
        dir: PathBuf,
        hosts: Vec<String>,
        binary: &Path,
        extra: &[&str],
    ) -> Self {
        let cluster = Self {
            dir,
            hosts,
            _tmp: tmp,
        };
        let hosts = cluster.hosts.join(",");
        let mut args = vec![
            "local",
            "up",
            "--dir",
            cluster.dir_str(),
            "--hosts",
            &hosts,
            "--timeout",
            "60s",
        ];
        args.extend_from_slice(extra);
        let out = shoal_with(binary, &args);
        assert!(
            out.status.success(),
            "local up failed: {}\n{}",
            stderr(&out),
            cluster.logs()
        );
        cluster
    }

    /// How a client reaches this cluster: with its CA and client certificate if it was started
    /// with `--tls` / `--mutual-tls`.
    pub fn client_tls(&self) -> Option<shoal_common::tls::ClientTls> {
        shoal_common::tls::ClientTls::of_local_cluster(&self.dir).expect("the cluster's TLS files")
    }

    pub fn dir_str(&self) -> &str {
        self.dir.to_str().expect("utf-8 path")
    }

    /// `shoal <args> --dir DIR`.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut all = args.to_vec();
        all.extend(["--dir", self.dir_str()]);
        shoal(&all)
    }

    /// `shoal status --json`, parsed; panics if the command fails.
    pub fn status(&self) -> Value {
        let out = self.run(&["status", "--json"]);
        assert!(out.status.success(), "status failed: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).expect("status --json is JSON")
    }

    /// Polls `status` until `pred` holds, or panics after `timeout` with the last status.
    pub fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let started = Instant::now();
        loop {
            let out = self.run(&["status", "--json"]);
            if out.status.success() {
                let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
                if pred(&v) {
                    return v;
                }
                if started.elapsed() > timeout {
                    panic!(
                        "timed out after {timeout:?} waiting for {what}; last status:\n{v:#}\n{}",
                        self.logs()
                    );
                }
            } else if started.elapsed() > timeout {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; status failed: {}",
                    stderr(&out)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The tail of every process log, for failure messages.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for host in &self.hosts {
            let log_dir = self.dir.join(host).join("log");
            let Ok(entries) = std::fs::read_dir(&log_dir) else {
                continue;
            };
            for e in entries.flatten() {
                let content = std::fs::read_to_string(e.path()).unwrap_or_default();
                let tail: Vec<&str> = content.lines().rev().take(15).collect();
                text.push_str(&format!("--- {} ---\n", e.path().display()));
                for l in tail.into_iter().rev() {
                    text.push_str(l);
                    text.push('\n');
                }
            }
        }
        text
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let out = shoal(&["local", "down", "--dir", self.dir_str()]);
        if !out.status.success() {
            eprintln!("local down failed: {}", stderr(&out));
        }
    }
}

/// Nodes of a status JSON.
pub fn nodes(status: &Value) -> &Vec<Value> {
    status["nodes"].as_array().expect("nodes array")
}

pub fn node<'a>(status: &'a Value, alias: &str) -> &'a Value {
    nodes(status)
        .iter()
        .find(|n| n["alias"] == alias)
        .unwrap_or_else(|| panic!("no node {alias} in {status:#}"))
}

pub fn leader(status: &Value) -> Option<String> {
    let leaders: Vec<&Value> = nodes(status)
        .iter()
        .filter(|n| n["raft_role"] == "leader")
        .collect();
    match leaders.as_slice() {
        [one] => Some(one["alias"].as_str()?.to_owned()),
        _ => None,
    }
}

pub fn all_up(status: &Value) -> bool {
    nodes(status).iter().all(|n| n["state"] == "UP")
}

fn kill(signal: &str, pid: u64) {
    let ok = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill {signal} {pid} failed");
}

pub fn kill9(pid: u64) {
    kill("-KILL", pid);
}

/// A spawned `shoal` that is killed if the test ends before it does.
pub struct Spawned(pub Child);

impl Spawned {
    /// Waits for the exit, at most `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < timeout,
                "still running after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A process held with SIGSTOP until dropped (SIGCONT), even if the test panics.
pub struct Frozen(u64);

impl Frozen {
    pub fn new(pid: u64) -> Self {
        kill("-STOP", pid);
        Self(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        kill("-CONT", self.0);
    }
}

/// Some threads of a process frozen through a cgroup v1 freezer until dropped (thawed and put
/// back), even if the test panics: the rest of the process runs on. Needs root and the freezer
/// hierarchy at [`FREEZER`].
pub struct FrozenThreads {
    cgroup: PathBuf,
    tids: Vec<String>,
}

const FREEZER: &str = "/sys/fs/cgroup/freezer";

impl FrozenThreads {
    /// Freezes the threads of `pid` whose name (`comm`, at most 15 bytes) starts with `name`.
    pub fn new(pid: u64, name: &str) -> Self {
        let root = Path::new(FREEZER);
        assert!(
            root.join("tasks").exists(),
            "this test needs root and the cgroup v1 freezer at {FREEZER}"
        );
        let tids: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .expect("threads of the process")
            .flatten()
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with(name))
            })
            .map(|t| t.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!tids.is_empty(), "no thread named {name}* in process {pid}");
        let cgroup = root.join(format!("shoal-it-{}-{pid}", std::process::id()));
        std::fs::create_dir(&cgroup).expect("create the freezer cgroup");
        let frozen = Self { cgroup, tids };
        for tid in &frozen.tids {
            std::fs::write(frozen.cgroup.join("tasks"), tid).expect("move a thread");
        }
        std::fs::write(frozen.cgroup.join("freezer.state"), "FROZEN").expect("freeze");
        let started = Instant::now();
        while std::fs::read_to_string(frozen.cgroup.join("freezer.state"))
            .is_ok_and(|s| s.trim() != "FROZEN")
        {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "threads never froze"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        frozen
    }
}

impl Drop for FrozenThreads {
    fn drop(&mut self) {
        let _ = std::fs::write(self.cgroup.join("freezer.state"), "THAWED");
        for tid in &self.tids {
            let _ = std::fs::write(Path::new(FREEZER).join("tasks"), tid);
        }
        let _ = std::fs::remove_dir(&self.cgroup);
    }
}

pub fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write file");
}
