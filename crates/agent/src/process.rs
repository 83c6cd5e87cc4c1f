//! Signals to processes by pid, for the agent and the local-cluster tool.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// True while a process with this pid runs. A zombie (exited, not yet reaped by its parent)
/// does not count: it will never act on a signal again.
pub fn is_alive(pid: u32) -> bool {
    to_pid(pid).is_some_and(|p| kill(p, None).is_ok()) && !is_zombie(pid)
}

/// Pid 0 (and anything negative) would address a whole process group: never a target.
fn to_pid(pid: u32) -> Option<Pid> {
    i32::try_from(pid)
        .ok()
        .filter(|p| *p > 0)
        .map(Pid::from_raw)
}

fn is_zombie(pid: u32) -> bool {
    // /proc/<pid>/stat is "pid (comm) state ..."; comm may contain spaces, so split after ')'.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// True if `pid` is alive and runs a `shoal` executable: guards against signalling a process
/// that reused the pid of one of ours.
pub fn is_shoal(pid: u32) -> bool {
    is_alive(pid)
        && std::fs::read(format!("/proc/{pid}/cmdline"))
            .ok()
            .and_then(|c| c.split(|b| *b == 0).next().map(<[u8]>::to_vec))
            .is_some_and(|exe| exe.ends_with(b"shoal"))
}

pub fn signal(pid: u32, sig: Signal) -> bool {
    to_pid(pid).is_some_and(|p| kill(p, sig).is_ok())
}

/// SIGTERM, then SIGKILL if the process still exists after `grace`. For processes that are not
/// our children (they cannot be awaited); returns when the pid is gone or after SIGKILL.
pub async fn terminate(pid: u32, grace: Duration) {
    if !signal(pid, Signal::SIGTERM) {
        return;
    }
    let deadline = Instant::now() + grace;
    // Not our child: no exit notification exists, so poll its existence.
    while is_alive(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if is_alive(pid) {
        tracing::warn!("pid {pid} ignored SIGTERM for {grace:?}; sending SIGKILL");
        signal(pid, Signal::SIGKILL);
    }
}
