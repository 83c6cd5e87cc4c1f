//! The replica's side: [`SnapshotInstall`] stages and commits a snapshot,
//! [`ChunkStore::install_snapshot`] swaps it in, [`ChunkStore::finish_install`] completes or
//! discards one a crash interrupted.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::Xxh3;

use super::{SnapshotFile, replaced_dir, staging_dir};
use crate::error::{StorageError, io_err};
use crate::flush::{CrashHook, CrashPoint, crash_if};
use crate::fsutil;
use crate::manifest::{self, FILES_DIR, MANIFEST_FILE};
use crate::meta::{self, STORE_FILE, STORE_FORMAT_V2};
use crate::store::{ChunkStore, blocking};
use crate::types::{OpenReport, StoreOptions};

/// A MANIFEST is held in memory until the commit; one larger than this is refused.
const MAX_MANIFEST_BYTES: u64 = 64 << 20;

/// A snapshot being received for the store in `dir` (see the module docs of `snapshot`). Feed
/// it the sender's bytes in order with [`SnapshotInstall::write`], then
/// [`SnapshotInstall::finish`] with the sender's hashes. Blocking I/O: use it off the async
/// runtime. Dropping it before `finish` leaves an uncommitted staging directory, which the next
/// install or open deletes.
pub struct SnapshotInstall {
    dir: PathBuf,
    staging: PathBuf,
    files: Vec<SnapshotFile>,
    /// The file being written (`files[at]`), and how much of it is still to come.
    at: usize,
    out: Option<File>,
    left: u64,
    hasher: Xxh3,
    hashes: Vec<u64>,
    /// The MANIFEST's bytes: written last, as the commit.
    manifest: Vec<u8>,
    pub(crate) crash: CrashHook,
}

impl std::fmt::Debug for SnapshotInstall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotInstall")
            .field("dir", &self.dir)
            .field("files", &self.files)
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

/// A committed snapshot, waiting to replace the store (see [`ChunkStore::install_snapshot`]).
#[derive(Debug)]
pub struct StagedSnapshot {
    dir: PathBuf,
    /// The flushed lsn of the copy.
    pub flushed_lsn: u64,
    /// The copy's checksum at `flushed_lsn`.
    pub checksum: u64,
    pub(crate) crash: CrashHook,
}

fn refused(dir: &Path, reason: String) -> StorageError {
    StorageError::SnapshotRefused {
        dir: dir.to_path_buf(),
        reason,
    }
}

/// Checks the file list: exactly one `STORE` and one `MANIFEST`, the rest plain names under
/// `f/`, no name twice (a sender must not write outside the staging directory).
fn check_names(dir: &Path, files: &[SnapshotFile]) -> Result<(), StorageError> {
    let mut seen = HashMap::new();
    for f in files {
        let chunk_file = f
            .name
            .strip_prefix(FILES_DIR)
            .and_then(|n| n.strip_prefix('/'));
        let ok = match chunk_file {
            Some(n) => !n.is_empty() && !n.starts_with('.') && !n.contains(['/', '\\']),
            None => f.name == STORE_FILE || f.name == MANIFEST_FILE,
        };
        if !ok {
            return Err(refused(dir, format!("unexpected file name {:?}", f.name)));
        }
        if seen.insert(f.name.as_str(), ()).is_some() {
            return Err(refused(dir, format!("file {:?} sent twice", f.name)));
        }
    }
    for needed in [STORE_FILE, MANIFEST_FILE] {
        if !seen.contains_key(needed) {
            return Err(refused(dir, format!("no {needed} in the snapshot")));
        }
    }
    Ok(())
}

/// Removes `path` (a directory) if it is there, durably.
fn remove_dir(path: &Path) -> Result<(), StorageError> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => sync_parent(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove directory", path)(e)),
    }
}

fn sync_parent(path: &Path) -> Result<(), StorageError> {
    fsutil::sync_dir(path.parent().unwrap_or(Path::new(".")))
}

fn rename(from: &Path, to: &Path) -> Result<(), StorageError> {
    std::fs::rename(from, to).map_err(io_err("rename into place", to))?;
    sync_parent(to)
}

impl SnapshotInstall {
    /// Starts receiving `files` (as the sender lists them) for the store in `dir`, which is
    /// not touched until [`ChunkStore::install_snapshot`]. Deletes what an earlier attempt left.
    pub fn begin(dir: &Path, files: Vec<SnapshotFile>) -> Result<Self, StorageError> {
        check_names(dir, &files)?;
        let manifest = files.iter().find(|f| f.name == MANIFEST_FILE);
        if manifest.is_some_and(|m| m.bytes > MAX_MANIFEST_BYTES) {
            return Err(refused(dir, "MANIFEST too large".into()));
        }
        discard(dir)?;
        let staging = staging_dir(dir);
        let chunk_files = staging.join(FILES_DIR);
        std::fs::create_dir_all(&chunk_files).map_err(io_err("create directory", &chunk_files))?;
        let mut install = SnapshotInstall {
            dir: dir.to_path_buf(),
            staging,
            files,
            at: 0,
            out: None,
            left: 0,
            hasher: Xxh3::new(),
            hashes: Vec::new(),
            manifest: Vec::new(),
            crash: CrashHook::default(),
        };
        install.start_file()?;
        Ok(install)
    }

    /// Takes the next bytes of the stream (any split; files follow each other). More bytes
    /// than the files announced is an error.
    pub fn write(&mut self, mut data: &[u8]) -> Result<(), StorageError> {
        while !data.is_empty() {
            if self.at == self.files.len() {
                return Err(refused(
                    &self.dir,
                    format!("{} bytes past the last file", data.len()),
                ));
            }
            let n = usize::try_from(self.left).map_or(data.len(), |l| l.min(data.len()));
            let (now, rest) = data.split_at(n);
            self.hasher.update(now);
            match &mut self.out {
                Some(f) => f.write_all(now).map_err(io_err(
                    "write",
                    self.staging.join(&self.files[self.at].name),
                ))?,
                None => self.manifest.extend_from_slice(now),
            }
            self.left -= n as u64;
            data = rest;
            if self.left == 0 {
                self.end_file()?;
            }
        }
        Ok(())
    }

    /// Checks that every file arrived whole with the sender's xxh3 (`hashes`, in file order)
    /// and that the MANIFEST lists exactly the chunk files received, fsyncs them, and commits:
    /// the MANIFEST is written into the staging directory. From then on the snapshot replaces
    /// the store, if not now then when the store is next opened.
    pub fn finish(mut self, hashes: &[u64]) -> Result<StagedSnapshot, StorageError> {
        if self.at < self.files.len() {
            return Err(refused(
                &self.dir,
                format!(
                    "the stream ended {} bytes short of the end of {}",
                    self.left, self.files[self.at].name
                ),
            ));
        }
        if hashes.len() != self.files.len() {
            return Err(refused(
                &self.dir,
                format!("{} hashes for {} files", hashes.len(), self.files.len()),
            ));
        }
        for ((f, got), want) in self.files.iter().zip(&self.hashes).zip(hashes) {
            if got != want {
                return Err(refused(
                    &self.dir,
                    format!(
                        "{} arrived with xxh3 {got:016x}, sent with {want:016x}",
                        f.name
                    ),
                ));
            }
        }
        let path = self.staging.join(MANIFEST_FILE);
        let m = manifest::decode(&path, &self.manifest)?;
        let listed: HashMap<String, u64> = m
            .files
            .iter()
            .map(|f| (format!("{FILES_DIR}/{}", f.name), f.bytes))
            .collect();
        let received: HashMap<String, u64> = self
            .files
            .iter()
            .filter(|f| f.name.starts_with(FILES_DIR))
            .map(|f| (f.name.clone(), f.bytes))
            .collect();
        if listed != received {
            return Err(refused(
                &self.dir,
                "the MANIFEST does not list exactly the chunk files sent".into(),
            ));
        }
        let (_, version) = meta::read_store_file(&self.staging)?;
        if version != STORE_FORMAT_V2 {
            return Err(refused(&self.dir, format!("STORE is format {version}")));
        }
        fsutil::sync_dir(&self.staging.join(FILES_DIR))?;
        fsutil::sync_dir(&self.staging)?;
        crash_if(&mut self.crash, &self.dir, CrashPoint::SnapshotStaged)?;
        fsutil::write_atomic(&self.staging, MANIFEST_FILE, &self.manifest)?;
        crash_if(&mut self.crash, &self.dir, CrashPoint::SnapshotCommitted)?;
        Ok(StagedSnapshot {
            dir: self.dir,
            flushed_lsn: m.flushed_lsn,
            checksum: m.checksum,
            crash: self.crash,
        })
    }

    /// Opens `files[at]` for writing (the MANIFEST is kept in memory instead).
    fn start_file(&mut self) -> Result<(), StorageError> {
        while let Some(f) = self.files.get(self.at) {
            self.left = f.bytes;
            self.out = if f.name == MANIFEST_FILE {
                None
            } else {
                let path = self.staging.join(&f.name);
                Some(File::create(&path).map_err(io_err("create", &path))?)
            };
            if f.bytes > 0 {
                return Ok(());
            }
            self.end_file_only()?;
        }
        Ok(())
    }

    fn end_file(&mut self) -> Result<(), StorageError> {
        self.end_file_only()?;
        self.start_file()
    }

    /// The current file is complete: fsync it, keep its hash, move on.
    fn end_file_only(&mut self) -> Result<(), StorageError> {
        if let Some(f) = self.out.take() {
            f.sync_all().map_err(io_err(
                "fsync",
                self.staging.join(&self.files[self.at].name),
            ))?;
        }
        self.hashes.push(self.hasher.digest());
        self.hasher.reset();
        self.at += 1;
        Ok(())
    }
}

/// Deletes the staging directory of an install that was not committed, and a replaced store
/// whose swap completed.
fn discard(dir: &Path) -> Result<(), StorageError> {
    remove_dir(&staging_dir(dir))?;
    if dir.exists() {
        remove_dir(&replaced_dir(dir))?;
    }
    Ok(())
}

/// Steps 3–5 of an install whose MANIFEST is committed in the staging directory; each is
/// skipped when a crash came after it.
fn roll_forward(dir: &Path, crash: &mut CrashHook) -> Result<(), StorageError> {
    let (staging, replaced) = (staging_dir(dir), replaced_dir(dir));
    if staging.exists() {
        if dir.exists() {
            remove_dir(&replaced)?;
            rename(dir, &replaced)?;
            crash_if(crash, dir, CrashPoint::SnapshotMovedAside)?;
        }
        rename(&staging, dir)?;
        crash_if(crash, dir, CrashPoint::SnapshotSwapped)?;
    }
    remove_dir(&replaced)
}

/// Completes an install a crash interrupted (see [`ChunkStore::finish_install`]).
pub(crate) fn recover(dir: &Path) -> Result<bool, StorageError> {
    let (staging, replaced) = (staging_dir(dir), replaced_dir(dir));
    if staging.join(MANIFEST_FILE).exists() {
        roll_forward(dir, &mut CrashHook::default())?;
        tracing::info!(dir = %dir.display(), "completed a snapshot install interrupted after its commit");
        return Ok(true);
    }
    if staging.exists() {
        tracing::info!(dir = %dir.display(), "discarding an uncommitted snapshot install");
    }
    if !dir.exists() && replaced.exists() {
        // Only a committed install moves the store aside; with its staging gone it was
        // swapped in. Defensive: put the old store back rather than leave none.
        rename(&replaced, dir)?;
    }
    discard(dir)?;
    Ok(false)
}

impl ChunkStore {
    /// Replaces the store in `staged`'s directory by the committed snapshot and opens it: the
    /// store is at the snapshot's flushed lsn, with an empty WAL. The caller must have closed
    /// the store that was there (its directory is moved aside and deleted).
    pub async fn install_snapshot(
        staged: StagedSnapshot,
        opts: StoreOptions,
    ) -> Result<(ChunkStore, OpenReport), StorageError> {
        let StagedSnapshot { dir, mut crash, .. } = staged;
        let d = dir.clone();
        blocking(&dir, move || roll_forward(&d, &mut crash)).await?;
        ChunkStore::open(&dir, opts).await
    }

    /// After a crash: completes an install of a snapshot into `dir` that was committed (its
    /// staging directory holds a MANIFEST; answers `true`), or deletes the staging directory
    /// of one that was not, so the store in `dir` is wholly the old one or wholly the copy.
    /// [`ChunkStore::open`] calls it first; call it before deciding from what is in `dir`.
    pub async fn finish_install(dir: &Path) -> Result<bool, StorageError> {
        let d = dir.to_path_buf();
        blocking(dir, move || recover(&d)).await
    }
}

/// Before a new store is created in `dir`: an install left next to it is abandoned.
pub(crate) fn discard_before_create(dir: &Path) -> Result<(), StorageError> {
    remove_dir(&staging_dir(dir))?;
    remove_dir(&replaced_dir(dir))
}
