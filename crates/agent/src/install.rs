//! The machine's installed versions and metadata backups, all under the agent's home:
//!
//! ```text
//! versions/<version>/shoal, manifest.json   one directory per installed version
//! current  -> versions/<version>            what the nodes (and the agent) start from
//! previous -> versions/<version>            what `current` replaced last: the rollback target
//! backups/<label>/<alias>/...               metadata copied before the machine was changed
//! incoming/                                 packages being received
//! ```
//!
//! `current` is switched with a rename over it, so a crash leaves either the old or the new
//! link, never none. Nothing here runs while the machine's nodes run (the service checks).

use std::path::{Path, PathBuf};

use shoal_package::{Manifest, VerifyingKey};

pub const BINARY: &str = "shoal";

pub struct Installs {
    home: PathBuf,
}

impl Installs {
    pub fn new(home: &Path) -> Self {
        Self {
            home: home.to_owned(),
        }
    }

    fn versions(&self) -> PathBuf {
        self.home.join("versions")
    }

    pub fn incoming(&self) -> PathBuf {
        self.home.join("incoming")
    }

    /// The binary the machine's processes start from, if this home has a versioned install.
    pub fn program(&self) -> Option<PathBuf> {
        let p = self.home.join("current").join(BINARY);
        p.exists().then_some(p)
    }

    pub fn current(&self) -> Option<String> {
        link_version(&self.home.join("current"))
    }

    pub fn previous(&self) -> Option<String> {
        link_version(&self.home.join("previous"))
    }

    pub fn installed(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.versions())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join(BINARY).exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        v.sort();
        v
    }

    /// The versions installed from a package, with the sha256 of their binary.
    pub fn staged(&self) -> Vec<(String, String)> {
        self.installed()
            .into_iter()
            .filter_map(|v| {
                let bytes =
                    std::fs::read(self.versions().join(&v).join(shoal_package::MANIFEST_NAME))
                        .ok()?;
                let m: Manifest = serde_json::from_slice(&bytes).ok()?;
                let sha = m.file(BINARY)?.sha256.clone();
                Some((v, sha))
            })
            .collect()
    }

    /// Verifies `package` and unpacks it as `versions/<version>`. The same package again is a
    /// no-op; another package claiming an installed version is refused.
    pub fn stage(
        &self,
        package: &Path,
        trusted: Option<&VerifyingKey>,
    ) -> Result<Manifest, String> {
        // Only the manifest's head for the version: unpacking verifies the whole package as
        // it extracts, so the (hundreds of MB) payload is read once.
        let (claimed, _) = shoal_package::read_manifest(package).map_err(|e| e.to_string())?;
        claimed
            .version
            .parse::<shoal_package::Version>()
            .map_err(|e| e.to_string())?;
        let dest = self.versions().join(&claimed.version);
        if dest.exists() {
            let manifest = shoal_package::verify(package, trusted).map_err(|e| e.to_string())?;
            // Unpacking wrote the manifest it verified beside the binary.
            let installed: Option<Manifest> =
                std::fs::read(dest.join(shoal_package::MANIFEST_NAME))
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok());
            return if installed.as_ref() == Some(&manifest) {
                Ok(manifest)
            } else {
                Err(format!(
                    "version {} is already installed in {} from another package: \
                     a version is built once",
                    manifest.version,
                    dest.display()
                ))
            };
        }
        std::fs::create_dir_all(self.versions()).map_err(|e| e.to_string())?;
        shoal_package::unpack(package, &dest, trusted).map_err(|e| e.to_string())
    }

    /// Points `current` at an installed version; the one it pointed at becomes `previous`.
    pub fn switch(&self, version: &str) -> Result<(), String> {
        version
            .parse::<shoal_package::Version>()
            .map_err(|e| e.to_string())?;
        let target = self.versions().join(version);
        if !target.join(BINARY).exists() {
            return Err(format!(
                "version {version} is not installed on this machine (installed: {})",
                self.installed().join(", ")
            ));
        }
        let old = self.current();
        if old.as_deref() == Some(version) {
            return Ok(());
        }
        let rel = Path::new("versions").join(version);
        replace_link(&self.home.join("current"), &rel).map_err(|e| e.to_string())?;
        if let Some(old) = old {
            replace_link(
                &self.home.join("previous"),
                &Path::new("versions").join(old),
            )
            .map_err(|e| e.to_string())?;
        }
        tracing::info!("switched to version {version}");
        Ok(())
    }

    /// Copies each `(name, dir)` to `backups/<label>/<name>/`; answers the backup's path,
    /// bytes and files. An existing backup of that label is kept and refused.
    pub fn backup(
        &self,
        label: &str,
        dirs: &[(String, PathBuf)],
    ) -> Result<(PathBuf, u64, u32), String> {
        if label.is_empty()
            || !label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        {
            return Err(format!(
                "backup label {label:?}: use letters, digits, '.', '-', '_'"
            ));
        }
        let dest = self.home.join("backups").join(label);
        if dest.exists() {
            return Err(format!("backup {} exists already", dest.display()));
        }
        let tmp = self.home.join("backups").join(format!(".{label}.tmp"));
        let _ = std::fs::remove_dir_all(&tmp);
        let mut totals = (0u64, 0u32);
        for (name, dir) in dirs {
            if dir.exists() {
                copy_tree(dir, &tmp.join(name), &mut totals)
                    .map_err(|e| format!("cannot back up {}: {e}", dir.display()))?;
            }
        }
        std::fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, &dest).map_err(|e| e.to_string())?;
        Ok((dest, totals.0, totals.1))
    }
}

/// What a `shoal` binary says about itself (`shoal build-info`): what a package's manifest
/// declares, and what an agent checks before it re-executes into a binary.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BuildInfo {
    pub version: String,
    pub build_date: String,
    pub min_upgrade_from: String,
    pub wire_version: u32,
    pub storage_format_version: u32,
}

impl BuildInfo {
    /// This process's own.
    pub fn own() -> Self {
        use shoal_common::version as v;
        Self {
            version: v::version().to_owned(),
            build_date: v::build_date().to_owned(),
            min_upgrade_from: v::MIN_UPGRADE_FROM.to_owned(),
            wire_version: v::WIRE_VERSION,
            storage_format_version: v::STORAGE_FORMAT_VERSION,
        }
    }
}

/// Runs `program build-info` (at most 30 s).
pub async fn build_info(program: &Path) -> Result<BuildInfo, String> {
    let run = tokio::process::Command::new(program)
        .arg("build-info")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), run)
        .await
        .map_err(|_| "`build-info` did not answer within 30 s".to_owned())?
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "`build-info` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("`build-info` printed no build info: {e}"))
}

/// How [`install_first`] puts the binary in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// A copy: an operator's binary (`/usr/local/bin/shoal`) may later be overwritten in
    /// place, which would change a hard-linked installed version under the machine.
    Copy,
    /// A hard link (a copy across file systems): a build's output, never written in place,
    /// installed on several simulated machines (`shoal local up`) without copying it each time.
    Link,
}

/// Installs `exe` as version `version` of a home that has none yet and points `current` at it
/// (what `shoal host init` and `shoal local up` do, and an agent started from a bare binary):
/// the version the first upgrade keeps as its rollback target. A no-op once `current` exists.
pub fn install_first(
    home: &Path,
    exe: &Path,
    version: &str,
    placement: Placement,
) -> std::io::Result<()> {
    let installs = Installs::new(home);
    if installs.current().is_some() {
        return Ok(());
    }
    let dir = installs.versions().join(version);
    std::fs::create_dir_all(&dir)?;
    let bin = dir.join(BINARY);
    if !bin.exists() {
        // Under a temporary name: a crash mid-copy must not leave a truncated `shoal` that
        // `installed()` would list.
        let tmp = dir.join(format!(".{BINARY}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        if placement == Placement::Copy || std::fs::hard_link(exe, &tmp).is_err() {
            std::fs::copy(exe, &tmp)?;
            std::fs::File::open(&tmp)?.sync_all()?;
        }
        std::fs::rename(&tmp, &bin)?;
    }
    replace_link(&home.join("current"), &Path::new("versions").join(version))
}

fn link_version(link: &Path) -> Option<String> {
    std::fs::read_link(link)
        .ok()?
        .file_name()?
        .to_str()
        .map(str::to_owned)
}

/// Replaces (or creates) the symlink `link` -> `target` atomically.
fn replace_link(link: &Path, target: &Path) -> std::io::Result<()> {
    let tmp = link.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    std::fs::rename(&tmp, link)?;
    if let Some(parent) = link.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path, totals: &mut (u64, u32)) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let ty = entry.file_type()?;
        let dest = to.join(entry.file_name());
        if ty.is_dir() {
            copy_tree(&entry.path(), &dest, totals)?;
        } else if ty.is_file() {
            totals.0 += std::fs::copy(entry.path(), &dest)?;
            totals.1 += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn switch_keeps_the_previous_version_and_refuses_an_unknown_one() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("exe");
        std::fs::write(&exe, b"v1").unwrap();
        install_first(dir.path(), &exe, "0.1.0", Placement::Copy).unwrap();
        let i = Installs::new(dir.path());
        assert_eq!(i.current().as_deref(), Some("0.1.0"));
        assert_eq!(i.program(), Some(dir.path().join("current").join(BINARY)));
        std::fs::create_dir_all(dir.path().join("versions/0.2.0")).unwrap();
        std::fs::write(dir.path().join("versions/0.2.0/shoal"), b"v2").unwrap();
        assert!(i.switch("0.3.0").unwrap_err().contains("not installed"));
        assert_eq!(i.current().as_deref(), Some("0.1.0"));
        i.switch("0.2.0").unwrap();
        assert_eq!(i.current().as_deref(), Some("0.2.0"));
        assert_eq!(i.previous().as_deref(), Some("0.1.0"));
        assert_eq!(std::fs::read(i.program().unwrap()).unwrap(), b"v2");
        assert_eq!(i.installed(), vec!["0.1.0", "0.2.0"]);
    }

    /// A package of a fake binary, signed with `key` if given.
    fn package(
        dir: &Path,
        version: &str,
        content: &str,
        key: Option<&shoal_package::SigningKey>,
    ) -> std::path::PathBuf {
        let bin = dir.join(format!("bin-{content}"));
        std::fs::write(&bin, content).unwrap();
        let out = dir.join(format!("{version}-{content}-{}.pkg", key.is_some()));
        let fields = shoal_package::ManifestFields {
            version: version.into(),
            build_date: "2026.11.25".into(),
            min_upgrade_from: "0.1.0".into(),
            wire_version: 1,
            storage_format_version: 1,
        };
        shoal_package::build(&out, fields, &[(BINARY.into(), bin, true)], key).unwrap();
        out
    }

    #[test]
    fn staging_verifies_the_signature_when_a_key_is_configured_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("release.key");
        let public = shoal_package::generate_key(&key_file).unwrap();
        let key = shoal_package::load_signing_key(&key_file).unwrap();
        let i = Installs::new(dir.path());
        let unsigned = package(dir.path(), "0.2.0", "a", None);
        let e = i.stage(&unsigned, Some(&public)).unwrap_err();
        assert!(e.contains("not signed"), "{e}");
        assert!(
            i.installed().is_empty(),
            "a refused package left {:?}",
            i.installed()
        );
        let signed = package(dir.path(), "0.2.0", "a", Some(&key));
        assert_eq!(i.stage(&signed, Some(&public)).unwrap().version, "0.2.0");
        assert_eq!(i.stage(&signed, Some(&public)).unwrap().version, "0.2.0");
        assert_eq!(i.staged().len(), 1);
        // Another package claiming the same version is refused.
        let other = package(dir.path(), "0.2.0", "b", None);
        assert!(
            i.stage(&other, None)
                .unwrap_err()
                .contains("another package")
        );
    }

    #[test]
    fn a_backup_copies_every_file_and_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let meta = dir.path().join("meta");
        std::fs::create_dir_all(meta.join("sub")).unwrap();
        std::fs::write(meta.join("a"), b"12345").unwrap();
        std::fs::write(meta.join("sub/b"), b"678").unwrap();
        let i = Installs::new(dir.path());
        let dirs = vec![("ctl1".to_owned(), meta.clone())];
        let (path, bytes, files) = i.backup("0.1.0-1", &dirs).unwrap();
        assert_eq!((bytes, files), (8, 2));
        assert_eq!(std::fs::read(path.join("ctl1/sub/b")).unwrap(), b"678");
        assert!(i.backup("0.1.0-1", &dirs).unwrap_err().contains("exists"));
        assert!(i.backup("../x", &dirs).unwrap_err().contains("label"));
    }
}
