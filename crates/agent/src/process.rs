//! Signals to processes by pid, for the agent and the local-cluster tool.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The pid in a pid file, if the file exists and holds one.
pub fn read_pid_file(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

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

/// The parent pid of `pid` (from /proc), if it exists.
pub fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
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

/// True if `pid` is alive, runs a `shoal` executable and has `home` among its arguments: a pid
/// file can outlive its process, and the pid may since belong to someone else.
pub fn is_shoal_of(pid: u32, home: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let mut args = cmdline.split(|b| *b == 0);
    let home = home.as_os_str().as_encoded_bytes();
    is_alive(pid)
        && pid != std::process::id()
        && args.next().is_some_and(|exe| exe.ends_with(b"shoal"))
        && args.any(|a| a == home)
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

/// Waits for our child `pid` to exit and reaps it, for a child inherited across `exec` (no
/// `Child` handle exists for it). Polls: there is no exit notification without one.
pub async fn reap(pid: u32) -> std::io::Result<std::process::ExitStatus> {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    use std::os::unix::process::ExitStatusExt;
    let Some(p) = to_pid(pid) else {
        return Err(std::io::Error::other(format!("bad pid {pid}")));
    };
    loop {
        match waitpid(p, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(ExitStatusExt::from_raw(code << 8)),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(ExitStatusExt::from_raw(sig as i32)),
            Ok(_) => {}
            // Not our child after all: all we can do is watch it.
            Err(nix::errno::Errno::ECHILD) if !is_alive(pid) => {
                return Ok(ExitStatusExt::from_raw(0));
            }
            Err(nix::errno::Errno::ECHILD) => {}
            Err(e) => return Err(std::io::Error::other(e)),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
