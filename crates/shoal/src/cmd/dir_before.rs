//! What a directory held before a command wrote into it, so that a failure can take away
//! exactly what the command added and nothing else: `local up` of a new cluster that does not
//! come up leaves DIR as it found it (a machine its failed run initialised would refuse the
//! next run: a machine is initialised once).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Context;

pub(crate) struct DirBefore {
    dir: PathBuf,
    /// The entries of `dir` and of the subdirectories looked into; `None`: no `dir`.
    entries: Option<BTreeSet<PathBuf>>,
    /// The subdirectories of `dir` that existed, looked into.
    subdirs: Vec<PathBuf>,
}

impl DirBefore {
    /// What `dir` holds now, and each of its subdirectories named in `inside` (the machines'
    /// homes: a command may add files to one that existed).
    pub fn take(dir: &Path, inside: &[String]) -> anyhow::Result<Self> {
        if dir.symlink_metadata().is_err() {
            return Ok(DirBefore {
                dir: dir.to_owned(),
                entries: None,
                subdirs: Vec::new(),
            });
        }
        let mut entries = list(dir)?;
        let subdirs: Vec<PathBuf> = inside
            .iter()
            .map(|name| dir.join(name))
            .filter(|p| p.is_dir() && !p.is_symlink())
            .collect();
        for sub in &subdirs {
            entries.extend(list(sub)?);
        }
        Ok(DirBefore {
            dir: dir.to_owned(),
            entries: Some(entries),
            subdirs,
        })
    }

    /// Removes what was added since [`DirBefore::take`]: `dir` itself if it did not exist,
    /// else each entry of it (and of the subdirectories looked into) that was not there.
    /// Answers whether there was anything to remove.
    pub fn remove_added(&self) -> anyhow::Result<bool> {
        let Some(before) = &self.entries else {
            if self.dir.symlink_metadata().is_err() {
                return Ok(false);
            }
            remove(&self.dir)?;
            return Ok(true);
        };
        let mut removed = false;
        for parent in std::iter::once(&self.dir).chain(&self.subdirs) {
            for entry in list(parent)? {
                if !before.contains(&entry) {
                    remove(&entry)?;
                    removed = true;
                }
            }
        }
        Ok(removed)
    }
}

fn list(dir: &Path) -> anyhow::Result<BTreeSet<PathBuf>> {
    let read = || -> std::io::Result<BTreeSet<PathBuf>> {
        std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.path()))
            .collect()
    };
    read().with_context(|| format!("cannot list {}", dir.display()))
}

/// Removes `path`: a directory with its contents, a file or a symbolic link (not followed).
fn remove(path: &Path) -> anyhow::Result<()> {
    let is_dir = path.symlink_metadata().is_ok_and(|m| m.is_dir());
    if is_dir {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
    .with_context(|| format!("cannot remove {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_was_added_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        std::fs::create_dir_all(dir.join("home1")).unwrap();
        std::fs::write(dir.join("mine.txt"), "x").unwrap();
        std::fs::write(dir.join("home1/notes"), "x").unwrap();
        let before = DirBefore::take(&dir, &["home1".into(), "home2".into()]).unwrap();
        std::fs::create_dir_all(dir.join("home1/versions/1")).unwrap();
        std::fs::create_dir_all(dir.join("home2/log")).unwrap();
        std::os::unix::fs::symlink(tmp.path(), dir.join("home1/current")).unwrap();
        std::fs::write(dir.join("cluster.secret"), "x").unwrap();
        assert!(before.remove_added().unwrap());
        let mut left: Vec<String> = walk(&dir);
        left.sort();
        assert_eq!(left, ["home1", "home1/notes", "mine.txt"]);
        // The link was removed, not what it pointed at.
        assert!(tmp.path().join("d").exists());

        let fresh = tmp.path().join("new");
        let before = DirBefore::take(&fresh, &[]).unwrap();
        std::fs::create_dir_all(fresh.join("a/b")).unwrap();
        assert!(before.remove_added().unwrap());
        assert!(!fresh.exists());
        assert!(!before.remove_added().unwrap());
    }

    fn walk(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.strip_prefix(dir).unwrap().display().to_string();
            if p.is_dir() {
                out.extend(walk(&p).into_iter().map(|c| format!("{name}/{c}")));
            }
            out.push(name);
        }
        out
    }
}
