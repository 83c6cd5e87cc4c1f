//! Machines on one host as network namespaces (the fault tier's cluster, `shoal chaos`; the
//! three-host install test, `it::hosts`): one namespace per machine (`m1`..), one for clients
//! (`c0`), each with a veth to a bridge that lives in a hub namespace. The host's own network namespace is never
//! changed: every link is created from inside the hub (`ip -n`).
//!
//! ```text
//!   m1 10.77.0.1 ─┐
//!   m2 10.77.0.2 ─┼─ br0 (hub)
//!   m3 10.77.0.3 ─┤
//!   c0 10.77.0.10 ┘
//! ```
//!
//! Names carry the creating pid and a counter (`shoalchaos-<pid>-<n>-m1`), so parallel runs
//! never collide, and namespaces left by a run that was killed are recognised by their dead
//! pid and removed by the next run. [`Topology`] deletes its namespaces on drop.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, bail};

const PREFIX: &str = "shoalchaos";
const SUBNET: &str = "10.77.0";
/// The client namespace's address.
pub const CLIENT_ADDR: &str = "10.77.0.10";

pub struct Topology {
    base: String,
    machines: usize,
    created: Vec<String>,
}

/// Runs `ip ARGS`, failing with its stderr.
pub fn ip(args: &[&str]) -> anyhow::Result<Output> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run `ip` (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// Machine `i`'s address (1-based).
pub fn machine_addr(i: usize) -> String {
    format!("{SUBNET}.{i}")
}

impl Topology {
    /// Creates the namespaces and links for `machines` machines and one client.
    pub fn create(machines: usize) -> anyhow::Result<Self> {
        remove_stale();
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let mut t = Self {
            base: format!("{PREFIX}-{}-{n}", std::process::id()),
            machines,
            created: Vec::new(),
        };
        // On error, drop removes what was created so far.
        t.build()?;
        Ok(t)
    }

    fn build(&mut self) -> anyhow::Result<()> {
        let hub = self.ns("hub");
        self.add_ns(&hub)?;
        ip(&["-n", &hub, "link", "set", "lo", "up"])?;
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        let mut members: Vec<(String, String)> = (1..=self.machines)
            .map(|i| (format!("m{i}"), machine_addr(i)))
            .collect();
        members.push(("c0".into(), CLIENT_ADDR.into()));
        for (who, addr) in members {
            let ns = self.ns(&who);
            self.add_ns(&ns)?;
            // The hub end is named after its namespace; the other end is eth0 inside it.
            ip(&[
                "-n", &hub, "link", "add", &who, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])?;
            ip(&["-n", &hub, "link", "set", &who, "master", "br0", "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    fn add_ns(&mut self, name: &str) -> anyhow::Result<()> {
        ip(&["netns", "add", name])?;
        self.created.push(name.to_owned());
        Ok(())
    }

    /// The namespace of `who`: `m1`.., `c0`, `hub`.
    pub fn ns(&self, who: &str) -> String {
        format!("{}-{who}", self.base)
    }

    /// Machine `i`'s namespace (1-based).
    pub fn machine_ns(&self, i: usize) -> String {
        self.ns(&format!("m{i}"))
    }

    pub fn client_ns(&self) -> String {
        self.ns("c0")
    }

    /// `PROGRAM` to be run inside namespace `ns`.
    pub fn command_in(ns: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, program]);
        c
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Machines and client first (their veths go with them), the hub last.
        for ns in self.created.iter().rev() {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("warning: {e}");
            }
        }
    }
}

/// Deletes namespaces of earlier runs whose process is gone, ending what still runs in them
/// (only processes a run of this tool started live there).
fn remove_stale() {
    let Ok(out) = ip(&["netns", "list"]) else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        if !of_a_dead_run(name) {
            continue;
        }
        if let Ok(pids) = ip(&["netns", "pids", name]) {
            for p in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                if let Ok(p) = p.parse::<u32>() {
                    shoal_agent::process::signal(p, nix::sys::signal::Signal::SIGKILL);
                }
            }
        }
        let _ = ip(&["netns", "del", name]);
    }
}

/// Is `name` (a namespace, or a cgroup named after one) of a run whose process is gone?
pub fn of_a_dead_run(name: &str) -> bool {
    name.strip_prefix(&format!("{PREFIX}-"))
        .and_then(|rest| rest.split('-').next())
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|pid| !shoal_agent::process::is_alive(pid))
}

/// Root, and network namespaces that can be created here; else why not.
pub fn supported() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("it needs root (network namespaces, nft, mounts)".into());
    }
    let probe = format!("{PREFIX}-probe-{}", std::process::id());
    ip(&["netns", "add", &probe]).map_err(|e| format!("{e:#}"))?;
    let _ = ip(&["netns", "del", &probe]);
    Ok(())
}
