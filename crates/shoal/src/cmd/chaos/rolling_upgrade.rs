//! The `upgrade` nemesis's package and orchestrator: a rolling upgrade (`shoal upgrade`, run in
//! the client namespace like any operator's) of the run's cluster to another build, or back to
//! this one (`--rollback`, before any `--finalize`) when it already runs that build, so a
//! schedule may draw it any number of times. The package is built once, when the run starts.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde_json::Value;

use super::cluster::{NsCluster, run};

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

    /// `shoal upgrade`'s arguments for the cluster as it runs now: to the package, or back
    /// when every node already runs its version.
    pub fn orchestrator_args(&self, c: &NsCluster) -> anyhow::Result<Vec<String>> {
        let status = c.status()?;
        let nodes = status["nodes"].as_array().cloned().unwrap_or_default();
        let upgraded = !nodes.is_empty() && nodes.iter().all(|n| n["version"] == *self.version);
        let path = self
            .path
            .to_str()
            .with_context(|| format!("{} is not UTF-8", self.path.display()))?;
        let direction = if upgraded {
            vec!["--rollback"]
        } else {
            vec!["--package", path]
        };
        // No probe writer: the workload is the clients, and the checker judges them.
        Ok(["upgrade"]
            .into_iter()
            .chain(direction)
            .chain(["--probe-rate", "0"])
            .map(str::to_owned)
            .collect())
    }
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
