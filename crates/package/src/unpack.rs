//! Installing a package's files into a new directory, all or nothing.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use ed25519_dalek::VerifyingKey;

use crate::error::PackageError;
use crate::make::sync_parent;
use crate::manifest::{MANIFEST_NAME, Manifest};
use crate::verify::check_package;

/// Verifies the package at `path` (as [`crate::verify`]) while extracting it, and leaves its
/// files plus manifest.json at `dest`. Extraction goes to a temporary directory beside
/// `dest` (same file system, so the final rename is atomic); on any error it is removed and
/// nothing appears at `dest`. An existing `dest` is refused rather than replaced: it may be
/// the installed release a node is running.
pub fn unpack(
    path: &Path,
    dest: &Path,
    trusted: Option<&VerifyingKey>,
) -> Result<Manifest, PackageError> {
    refuse_existing(dest)?;
    let Some(dest_name) = dest.file_name() else {
        return Err(PackageError::Io {
            action: "cannot unpack to",
            path: dest.to_owned(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "not a directory name"),
        });
    };
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.unpack-", dest_name.to_string_lossy()))
        .tempdir_in(parent)
        .map_err(PackageError::io(
            "cannot create a temporary directory in",
            parent,
        ))?;

    let (manifest, manifest_bytes) = check_package(path, trusted, Some(tmp.path()))?;

    let manifest_path = tmp.path().join(MANIFEST_NAME);
    let write_err = || PackageError::io("cannot write", &manifest_path);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&manifest_path)
        .map_err(write_err())?;
    file.write_all(&manifest_bytes).map_err(write_err())?;
    file.sync_all().map_err(write_err())?;

    // The temporary directory is private (0700); the installed release is not.
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755))
        .and_then(|()| File::open(tmp.path())?.sync_all())
        .map_err(PackageError::io("cannot sync directory", tmp.path()))?;

    // Checked again just before the rename: on Linux, rename() silently replaces an empty
    // directory.
    refuse_existing(dest)?;
    fs::rename(tmp.path(), dest)
        .map_err(PackageError::io("cannot rename unpacked package to", dest))?;
    let _ = tmp.keep();
    sync_parent(dest)?;
    Ok(manifest)
}

fn refuse_existing(dest: &Path) -> Result<(), PackageError> {
    if dest.symlink_metadata().is_ok() {
        return Err(PackageError::DestExists {
            dest: dest.to_owned(),
        });
    }
    Ok(())
}
