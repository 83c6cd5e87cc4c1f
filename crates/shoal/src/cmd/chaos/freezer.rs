//! A whole machine frozen at once (agent, controller, data node) with the cgroup v1 freezer:
//! unlike SIGSTOP of each, nothing of the machine runs between the stops, and its agent cannot
//! notice a stopped node and act on it.
//!
//! The cgroup is named after the machine's network namespace (`shoalchaos-<pid>-<n>-m1`), so it
//! belongs to one run; [`Frozen::thaw`] thaws it, moves its processes back to the root cgroup
//! and removes it, and [`remove_stale`] does the same for runs that were killed while a machine
//! was frozen (their processes cannot even die of SIGKILL while frozen).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

const ROOT: &str = "/sys/fs/cgroup/freezer";
/// Freezing waits for every task to reach the refrigerator; a few ms normally.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

/// A frozen cgroup; thawed and removed by [`Frozen::thaw`] or on drop.
pub struct Frozen {
    dir: PathBuf,
    thawed: bool,
}

/// Freezes `pids` in a new cgroup `name`.
pub fn freeze(name: &str, pids: &[u32]) -> anyhow::Result<Frozen> {
    if !Path::new(ROOT).join("tasks").exists() {
        bail!("no cgroup v1 freezer mounted at {ROOT}");
    }
    let dir = Path::new(ROOT).join(name);
    std::fs::create_dir(&dir).with_context(|| format!("cannot create cgroup {}", dir.display()))?;
    // From here on, dropping `frozen` thaws and removes the cgroup whatever fails below.
    let frozen = Frozen { dir, thawed: false };
    for pid in pids {
        write(&frozen.dir.join("cgroup.procs"), &pid.to_string())?;
    }
    write(&frozen.dir.join("freezer.state"), "FROZEN")?;
    let started = Instant::now();
    while state(&frozen.dir)? != "FROZEN" {
        if started.elapsed() > FREEZE_TIMEOUT {
            bail!(
                "{} not FROZEN after {FREEZE_TIMEOUT:?}",
                frozen.dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(frozen)
}

impl Frozen {
    pub fn thaw(mut self) -> anyhow::Result<()> {
        self.thawed = true;
        self.release()
    }

    /// Thaws, moves every process back to the root cgroup (also any forked since), removes
    /// the cgroup.
    fn release(&self) -> anyhow::Result<()> {
        release(&self.dir)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if !self.thawed
            && let Err(e) = self.release()
        {
            eprintln!("warning: {e:#}");
        }
    }
}

fn release(dir: &Path) -> anyhow::Result<()> {
    write(&dir.join("freezer.state"), "THAWED")?;
    let procs = std::fs::read_to_string(dir.join("cgroup.procs"))
        .with_context(|| format!("cannot list {}", dir.display()))?;
    for pid in procs.split_whitespace() {
        // A process that exited meanwhile is no error.
        let _ = std::fs::write(Path::new(ROOT).join("cgroup.procs"), pid);
    }
    std::fs::remove_dir(dir).with_context(|| format!("cannot remove cgroup {}", dir.display()))
}

/// Thaws and removes the cgroups of runs whose process is gone.
pub fn remove_stale() {
    let Ok(entries) = std::fs::read_dir(ROOT) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        if shoal_netns::of_a_dead_run(&name.to_string_lossy())
            && let Err(e) = release(&e.path())
        {
            eprintln!("warning: a stale cgroup: {e:#}");
        }
    }
}

fn state(dir: &Path) -> anyhow::Result<String> {
    let s = std::fs::read_to_string(dir.join("freezer.state"))
        .with_context(|| format!("cannot read {}/freezer.state", dir.display()))?;
    Ok(s.trim().to_owned())
}

fn write(path: &Path, value: &str) -> anyhow::Result<()> {
    std::fs::write(path, value)
        .with_context(|| format!("cannot write {value} to {}", path.display()))
}
