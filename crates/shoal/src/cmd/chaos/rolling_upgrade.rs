//! The `upgrade` nemesis's package and orchestrator: a rolling upgrade (`shoal upgrade`, run in
//! the client namespace like any operator's) of the run's cluster to another build, or back to
//! this one (`--rollback`, before any `--finalize`) when it already runs that build, so a
//! schedule may draw it any number of times; one that a fault beside it paused is resumed,
//! one that failed is rolled back. The package is built once, when the run starts.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use super::cluster::{NsCluster, run, wait_output};

/// Copying a debug build (hundreds of MB) to three agents on a busy 2-core VM.
const STAGE_TIMEOUT: Duration = Duration::from_secs(600);

/// A release package of the build the cluster is upgraded to.
pub struct Package {
    path: PathBuf,
    version: String,
}

impl Package {
    /// `shoal package build` of `binary` into `dir`.
    pub fn build(binary: &Path, dir: &Path) -> anyhow::Result<Self> {
        if !binary.is_file() {
            bail!(
                "no build to upgrade to at {} (make one with scripts/build-upgrade-binaries, or \
                 name one with --upgrade-to)",
                binary.display()
            );
        }
        let info = run(Command::new(binary).arg("build-info"))
            .with_context(|| format!("{} build-info", binary.display()))?;
        let info: Value = serde_json::from_slice(&info)?;
        let version = info["version"]
            .as_str()
            .with_context(|| format!("{} reports no version", binary.display()))?
            .to_owned();
        let path = dir.join(format!("shoal-{version}.pkg"));
        let exe = std::env::current_exe().context("cannot find the shoal executable")?;
        run(Command::new(exe)
            .args(["package", "build", "--binary"])
            .arg(binary)
            .arg("--out")
            .arg(&path))
        .context("cannot build the upgrade's package")?;
        Ok(Self { path, version })
    }

    /// Stages the package on every agent (`shoal upgrade --dry-run`) before the workload
    /// starts: copying a debug build to three agents takes about a minute here, which would
    /// otherwise be most of the `upgrade` nemesis's hold, and the faults beside it would meet
    /// the copy rather than the machines' drain, stop and restart.
    pub fn stage(&self, c: &NsCluster) -> anyhow::Result<()> {
        let path = self.path_str()?;
        let child = c
            .client(&["upgrade", "--package", path, "--dry-run"])?
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot stage the upgrade's package")?;
        let out = wait_output(child, STAGE_TIMEOUT)?;
        if !out.status.success() {
            bail!(
                "cannot stage {}: {}",
                self.path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    fn path_str(&self) -> anyhow::Result<&str> {
        self.path
            .to_str()
            .with_context(|| format!("{} is not UTF-8", self.path.display()))
    }

    /// `shoal upgrade`'s arguments for the cluster as it stands now: an upgrade left paused
    /// (or whose orchestrator died) is resumed, a failed one rolled back (a fault beside it may
    /// have failed a step); otherwise to the package, or back when every node already runs its
    /// version.
    pub fn orchestrator_args(&self, c: &NsCluster) -> anyhow::Result<Vec<String>> {
        let record = c.upgrade_record()?;
        let direction = match record["status"]["status"].as_str() {
            Some("running" | "paused") => vec!["--resume".to_owned()],
            Some("failed") => vec!["--rollback".to_owned()],
            _ if self.cluster_runs_it(c)? => vec!["--rollback".to_owned()],
            _ => vec!["--package".to_owned(), self.path_str()?.to_owned()],
        };
        // No probe writer: the workload is the clients, and the checker judges them.
        Ok(std::iter::once("upgrade".to_owned())
            .chain(direction)
            .chain(["--probe-rate".to_owned(), "0".to_owned()])
            .collect())
    }

    /// Whether every node runs the package's version.
    fn cluster_runs_it(&self, c: &NsCluster) -> anyhow::Result<bool> {
        let status = c.status()?;
        let nodes = status["nodes"].as_array().cloned().unwrap_or_default();
        Ok(!nodes.is_empty() && nodes.iter().all(|n| n["version"] == *self.version))
    }
}

/// One machine's part of an upgrade pass, from its record.
#[derive(Debug, PartialEq, Eq)]
pub struct MachineWindow {
    pub machine: String,
    /// Its first and last step this pass (e.g. `drain`, `recovered`; `move_leader`
    /// when the pass paused before stopping it).
    pub steps: (String, String),
    pub from_ms: u64,
    pub to_ms: u64,
    /// The first step's error, if one failed.
    pub error: String,
}

impl MachineWindow {
    /// How the history names it.
    pub fn what(&self) -> String {
        let (first, last) = &self.steps;
        let mut w = format!("upgrade: {} {first}..{last}", self.machine);
        if !self.error.is_empty() {
            w.push_str(&format!(" failed: {}", self.error));
        }
        w
    }
}

/// From the upgrade's record, each machine this pass went through since `since_ms` (wall
/// clock, ms), in order. Recorded in the history as windows of their own, so the report shows
/// which fault met which machine's drain, stop and restart.
pub fn machine_windows(record: &Value, since_ms: u64) -> Vec<MachineWindow> {
    let mut out: Vec<MachineWindow> = Vec::new();
    let steps = record["steps"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    for s in steps {
        let (Some(machine), Some(step), Some(start), Some(end)) = (
            s["machine"].as_str(),
            s["step"].as_str(),
            s["started_ms"].as_u64(),
            s["ended_ms"].as_u64(),
        ) else {
            continue;
        };
        if start < since_ms {
            continue;
        }
        let error = s["error"].as_str().unwrap_or_default();
        match out.last_mut() {
            Some(w) if w.machine == machine => {
                w.to_ms = w.to_ms.max(end);
                step.clone_into(&mut w.steps.1);
                if w.error.is_empty() {
                    error.clone_into(&mut w.error);
                }
            }
            _ => out.push(MachineWindow {
                machine: machine.to_owned(),
                steps: (step.to_owned(), step.to_owned()),
                from_ms: start,
                to_ms: end,
                error: error.to_owned(),
            }),
        }
    }
    out
}

/// `target/upgrade/shoal-next` of the target directory this binary was built in.
pub fn default_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the shoal executable")?;
    let target = exe
        .parent()
        .and_then(Path::parent)
        .with_context(|| format!("{} is in no target directory", exe.display()))?;
    Ok(target.join("upgrade").join("shoal-next"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::machine_windows;

    #[test]
    fn each_machine_of_this_pass_is_one_window_with_its_steps_and_first_error() {
        let step = |m: &str, step: &str, start: u64, end: u64, error: &str| json!({"machine": m, "step": step, "started_ms": start, "ended_ms": end, "error": error});
        let record = json!({"steps": [
            step("m1", "drain", 10, 20, ""),
            step("m2", "drain", 100, 110, ""),
            step("m2", "stop_nodes", 110, 130, "no answer"),
            step("m2", "recovered", 130, 140, ""),
            step("m3", "drain", 150, 160, ""),
        ]});
        let w = machine_windows(&record, 50);
        assert_eq!(w.len(), 2, "{w:?}");
        assert_eq!((w[0].from_ms, w[0].to_ms), (100, 140));
        assert_eq!(
            w[0].what(),
            "upgrade: m2 drain..recovered failed: no answer"
        );
        assert_eq!(w[1].what(), "upgrade: m3 drain..drain");
        assert!(machine_windows(&json!(null), 0).is_empty());
    }
}
