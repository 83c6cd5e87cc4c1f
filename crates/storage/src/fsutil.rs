//! Small filesystem helpers with the durability steps spelled out.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::{StorageError, io_err};

/// Suffix of files being created whole; leftovers are deleted on open.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// fsync a directory so that entries created, renamed or removed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    let d = File::open(dir).map_err(io_err("open directory", dir))?;
    d.sync_all().map_err(io_err("fsync directory", dir))
}

/// Create `dir/name` whole and durably: write `dir/name.tmp`, fsync it, rename it over
/// `dir/name`, fsync `dir`. After a crash either the old state or the complete new file exists.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let dst = dir.join(name);
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        f.write_all(bytes).map_err(io_err("write", &tmp))?;
        f.sync_all().map_err(io_err("fsync", &tmp))?;
    }
    std::fs::rename(&tmp, &dst).map_err(io_err("rename into place", &dst))?;
    sync_dir(dir)
}

/// Delete leftovers of interrupted [`write_atomic`] calls.
pub(crate) fn remove_tmp_files(dir: &Path) -> Result<(), StorageError> {
    let mut removed = false;
    for entry in std::fs::read_dir(dir).map_err(io_err("list directory", dir))? {
        let entry = entry.map_err(io_err("list directory", dir))?;
        let path = entry.path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(TMP_SUFFIX))
        {
            tracing::info!(file = %path.display(), "removing leftover temporary file");
            std::fs::remove_file(&path).map_err(io_err("remove", &path))?;
            removed = true;
        }
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(())
}
