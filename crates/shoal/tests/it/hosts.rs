//! Three hosts installed as docs/DEPLOY.md installs real ones, each a network namespace
//! (`shoal_netns`, the fault tier's machines): certificates from `shoal cert`, `shoal host init
//! --tls-dir` into its own home (every connection encrypted; a plaintext client is refused), the agent
//! started as `HOME/current/shoal agent --home HOME` inside the namespace (the systemd unit's
//! command), clients in their own namespace. The cluster comes up, the seed's table is written
//! while the first machine is upgraded (`shoal upgrade --canary 1`) and rolled back
//! (`--rollback`) to the version `host init` installed: every row is there exactly once. Needs
//! root and network namespaces: without them the test prints SKIPPED with the reason.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use shoal_agent::process;
use shoal_netns::{Topology, machine_addr};

use crate::data::{CREATE_DB, CREATE_TABLE};
use crate::harness::{all_up, next_binary, nodes, run_shoal, shoal_bin, stderr, stdout, write};
use crate::host_init::{cluster_nodes, host_init};
use crate::upgrade::{package, version_of};

const MACHINES: usize = 3;
/// A stopped agent stops its nodes first; a drained data node flushes within this.
const AGENT_STOP: Duration = Duration::from_secs(40);

/// The hosts: their namespaces, homes and running agents. Dropping stops the agents (each
/// stops its nodes), kills what is left, then deletes the namespaces.
struct Hosts {
    homes: Vec<PathBuf>,
    agents: Vec<Child>,
    /// Declared last: dropped after the processes in it are gone.
    topology: Topology,
}

impl Hosts {
    /// `shoal ARGS --dir HOME1` from the client namespace (a host's home holds cluster.nodes
    /// and cluster.secret, all a client needs).
    fn client(&self, args: &[&str]) -> Output {
        let mut command = Topology::command_in(&self.topology.client_ns(), shoal_bin());
        command.args(args).arg("--dir").arg(&self.homes[0]);
        run_shoal(command)
    }

    fn status(&self) -> Option<Value> {
        let out = self.client(&["status", "--json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    /// Polls until `what` holds of the cluster status, at most `timeout`.
    fn wait_status(&self, what: &str, timeout: Duration, ok: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            let status = self.status();
            if let Some(s) = status.as_ref().filter(|s| ok(s)) {
                return s.clone();
            }
            assert!(
                started.elapsed() < timeout,
                "not {what} after {timeout:?}: {status:#?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The end of every agent's log (its nodes' logs are under HOME/log/).
    fn logs(&self) -> String {
        self.homes
            .iter()
            .map(|h| {
                let log = std::fs::read_to_string(h.join("agent.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- {}\n{}", h.display(), tail.join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for a in &self.agents {
            signal(a.id(), "-TERM");
        }
        let started = Instant::now();
        for a in &mut self.agents {
            while a.try_wait().ok().flatten().is_none() && started.elapsed() < AGENT_STOP {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = a.kill();
            let _ = a.wait();
        }
        // Nodes an agent could not stop (it was killed): by their pid files.
        for home in &self.homes {
            for e in std::fs::read_dir(home.join("run"))
                .into_iter()
                .flatten()
                .flatten()
            {
                if let Some(pid) =
                    process::read_pid_file(&e.path()).filter(|pid| process::is_shoal_of(*pid, home))
                {
                    signal(pid, "-KILL");
                }
            }
        }
    }
}

fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status();
}

/// Each node's machine and version.
fn versions(status: &Value) -> Vec<(String, String)> {
    nodes(status)
        .iter()
        .map(|n| {
            (
                n["machine"].as_str().unwrap().to_owned(),
                n["version"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn link(home: &Path, name: &str) -> PathBuf {
    std::fs::read_link(home.join(name)).unwrap_or_default()
}

fn succeeded(what: &str, out: &Output, hosts: &Hosts) {
    assert!(
        out.status.success(),
        "{what} ({}): {}{}\n{}",
        out.status,
        stdout(out),
        stderr(out),
        hosts.logs()
    );
}

#[test]
fn three_hosts_installed_with_host_init_upgrade_their_first_machine_and_roll_it_back() {
    if let Err(why) = shoal_netns::supported() {
        // Straight to stderr: libtest captures `eprintln!` of passing tests.
        let _ = writeln!(std::io::stderr(), "SKIPPED it::hosts: {why}");
        return;
    }
    let next = next_binary();
    let (old, new) = (version_of(Path::new(shoal_bin())), version_of(&next));
    let tmp = tempfile::tempdir().unwrap();
    let addrs: Vec<String> = (1..=MACHINES).map(machine_addr).collect();
    // What an operator writes once and copies to every host.
    let nodes_file = tmp.path().join("cluster.nodes");
    write(&nodes_file, &cluster_nodes(&addrs));
    let secret = tmp.path().join("cluster.secret");
    write(&secret, "0123456789abcdef0123456789abcdef\n");
    let ca = tmp.path().join("ca");
    let cert = |args: &[&str]| {
        let out = crate::harness::shoal(args);
        assert!(
            out.status.success(),
            "shoal cert {args:?}: {}",
            stderr(&out)
        );
    };
    cert(&["cert", "create-ca", "--ca-dir", ca.to_str().unwrap()]);

    let topology = Topology::create(MACHINES).unwrap();
    let mut hosts = Hosts {
        homes: Vec::new(),
        agents: Vec::new(),
        topology,
    };
    for (i, addr) in addrs.iter().enumerate() {
        let home = tmp.path().join(format!("host{}", i + 1)).join("shoal");
        let certs = tmp.path().join(format!("host{}-tls", i + 1));
        let certs = certs.to_str().unwrap();
        cert(&[
            "cert",
            "create-node",
            "--ca-dir",
            ca.to_str().unwrap(),
            "--host",
            addr,
            "--out",
            certs,
        ]);
        let out = host_init(&home, &nodes_file, &secret, addr, &["--tls-dir", certs]);
        succeeded("host init", &out, &hosts);
        let log = std::fs::File::create(home.join("agent.log")).unwrap();
        // deploy/systemd/shoal-agent.service's ExecStart, in the host's namespace.
        let agent = Topology::command_in(
            &hosts.topology.machine_ns(i + 1),
            home.join("current/shoal").to_str().unwrap(),
        )
        .arg("agent")
        .arg("--home")
        .arg(&home)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
        hosts.agents.push(agent);
        hosts.homes.push(home);
    }
    hosts.wait_status("9 nodes UP with a leader", Duration::from_secs(90), |s| {
        nodes(s).len() == 3 * MACHINES && all_up(s)
    });
    // `--dir HOME` finds HOME/tls/ca.pem; a client without the CA speaks plaintext, refused.
    let mut plaintext = Topology::command_in(&hosts.topology.client_ns(), shoal_bin());
    plaintext
        .args(["status", "--sites", &format!("{}:8920", addrs[0])])
        .arg("--secret-file")
        .arg(&secret);
    let out = run_shoal(plaintext);
    assert!(
        !out.status.success(),
        "a plaintext client was served: {}",
        stdout(&out)
    );
    for sql in [CREATE_DB, CREATE_TABLE] {
        succeeded(sql, &hosts.client(&["sql", sql]), &hosts);
    }

    let pkg = package(tmp.path(), &next);
    // Staged on every agent first (it copies the package), so the writer below meets the
    // machine's drain, stop and restart rather than the copy.
    let staged = hosts.client(&["upgrade", "--package", pkg.to_str().unwrap(), "--dry-run"]);
    succeeded("upgrade --dry-run", &staged, &hosts);

    let record = tmp.path().join("record.jsonl");
    let summary = tmp.path().join("summary.json");
    let mut writer = Topology::command_in(&hosts.topology.client_ns(), shoal_bin())
        .args(["write", "--rate", "100", "--duration", "40s", "--json"])
        .arg("--record")
        .arg(&record)
        .arg("--dir")
        .arg(&hosts.homes[0])
        .env_remove("SHOAL_CLUSTER_SECRET")
        .stdout(std::fs::File::create(&summary).unwrap())
        .stderr(std::fs::File::create(tmp.path().join("writer.log")).unwrap())
        .spawn()
        .unwrap();

    // The first machine only: a canary stops there (exit 2, "paused").
    let canary = hosts.client(&[
        "upgrade",
        "--package",
        pkg.to_str().unwrap(),
        "--canary",
        "1",
    ]);
    assert_eq!(
        canary.status.code(),
        Some(2),
        "upgrade --canary 1: {}{}\n{}",
        stdout(&canary),
        stderr(&canary),
        hosts.logs()
    );
    let status = hosts.wait_status("UP", Duration::from_secs(60), all_up);
    let upgraded: Vec<String> = versions(&status)
        .into_iter()
        .filter(|(_, v)| *v == new)
        .map(|(m, _)| m)
        .collect();
    assert_eq!(
        upgraded.len(),
        3,
        "one machine's three processes on {new}: {status:#}"
    );
    let machine = addrs.iter().position(|a| *a == upgraded[0]).unwrap();
    let home = &hosts.homes[machine];
    // What host init installed is the rollback target.
    assert_eq!(link(home, "current"), Path::new("versions").join(&new));
    assert_eq!(link(home, "previous"), Path::new("versions").join(&old));

    let back = hosts.client(&["upgrade", "--rollback"]);
    succeeded("upgrade --rollback", &back, &hosts);
    let status = hosts.wait_status("UP", Duration::from_secs(60), all_up);
    assert!(
        versions(&status).iter().all(|(_, v)| *v == old),
        "not every node back on {old}: {status:#}"
    );
    for home in &hosts.homes {
        assert_eq!(link(home, "current"), Path::new("versions").join(&old));
    }

    let started = Instant::now();
    while writer.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the writer hangs"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let writer_log = std::fs::read_to_string(tmp.path().join("writer.log")).unwrap();
    let written: Value = serde_json::from_slice(&std::fs::read(&summary).unwrap())
        .unwrap_or_else(|e| panic!("writer summary: {e}; log: {writer_log}"));
    assert_eq!(written["appends_failed"], 0, "{written:#}\n{writer_log}");
    // Every acknowledged row present exactly once.
    let verify = hosts.client(&[
        "verify",
        "--record",
        record.to_str().unwrap(),
        "--max-age",
        "10m",
    ]);
    succeeded("verify", &verify, &hosts);
}
