//! Building a package from release files.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;

use crate::error::PackageError;
use crate::hashing::HashingReader;
use crate::manifest::{
    FORMAT, FileEntry, MANIFEST_NAME, Manifest, ManifestFields, SIGNATURE_NAME, check_names,
};
use crate::signing::sign_manifest;
use crate::version::Version;

/// Read buffer for payload files: large reads keep hashing at disk speed.
pub(crate) const READ_BUFFER: usize = 256 * 1024;

/// Builds the package `out` from `files` (name in package, source path, executable) and
/// returns its manifest. Each file is read twice: once to hash it, because the manifest
/// with every hash comes first in the tar, and once to copy it, hashing again to catch a
/// file that changed in between. The package is written to `<out>.tmp` and renamed, so a
/// failed build never leaves a partial package at `out`.
pub fn build(
    out: &Path,
    manifest_fields: ManifestFields,
    files: &[(String, PathBuf, bool)],
    signing_key: Option<&SigningKey>,
) -> Result<Manifest, PackageError> {
    check_fields(out, &manifest_fields)?;
    check_names(out, files.iter().map(|(name, _, _)| name.as_str()))?;

    let mut entries = Vec::with_capacity(files.len());
    for (name, source, executable) in files {
        let mut reader = HashingReader::new(open(source)?);
        io::copy(&mut reader, &mut io::sink()).map_err(PackageError::io("cannot read", source))?;
        let (size, sha256) = reader.finish();
        entries.push(FileEntry {
            name: name.clone(),
            size,
            sha256,
            executable: *executable,
        });
    }
    let ManifestFields {
        version,
        build_date,
        min_upgrade_from,
        wire_version,
        storage_format_version,
    } = manifest_fields;
    let manifest = Manifest {
        format: FORMAT,
        version,
        build_date,
        min_upgrade_from,
        wire_version,
        storage_format_version,
        files: entries,
    };
    let mut manifest_bytes =
        serde_json::to_vec_pretty(&manifest).map_err(|source| PackageError::BadManifest {
            path: out.to_owned(),
            source,
        })?;
    manifest_bytes.push(b'\n');

    let tmp = TempFile::new(out);
    write_package(&tmp.path, &manifest, &manifest_bytes, files, signing_key)?;
    fs::rename(&tmp.path, out).map_err(PackageError::io("cannot rename package to", out))?;
    tmp.disarm();
    sync_parent(out)?;
    Ok(manifest)
}

/// Catches malformed versions and dates while the release engineer is still at the
/// keyboard, not when a node refuses the upgrade.
fn check_fields(out: &Path, fields: &ManifestFields) -> Result<(), PackageError> {
    let version: Version = fields.version.parse()?;
    let min: Version = fields.min_upgrade_from.parse()?;
    if min > version {
        return Err(PackageError::InvalidInput {
            path: out.to_owned(),
            what: format!("min_upgrade_from {min}"),
            reason: format!("is newer than the package version {version}"),
        });
    }
    let date = fields.build_date.as_bytes();
    let date_ok = date.len() == 10
        && date.iter().enumerate().all(|(i, &b)| match i {
            4 | 7 => b == b'.',
            _ => b.is_ascii_digit(),
        });
    if !date_ok {
        return Err(PackageError::InvalidInput {
            path: out.to_owned(),
            what: format!("build date {:?}", fields.build_date),
            reason: "expected YYYY.MM.DD".to_owned(),
        });
    }
    Ok(())
}

fn write_package(
    tmp: &Path,
    manifest: &Manifest,
    manifest_bytes: &[u8],
    files: &[(String, PathBuf, bool)],
    signing_key: Option<&SigningKey>,
) -> Result<(), PackageError> {
    let write_err = || PackageError::io("cannot write", tmp);
    let file = File::create(tmp).map_err(PackageError::io("cannot create", tmp))?;
    let mut tar = tar::Builder::new(BufWriter::with_capacity(READ_BUFFER, file));

    append(&mut tar, MANIFEST_NAME, false, manifest_bytes).map_err(write_err())?;

    for (entry, (_, source_path, _)) in manifest.files.iter().zip(files) {
        let mut reader = HashingReader::new(open(source_path)?.take(entry.size));
        let mut header = header(entry.size, entry.executable);
        tar.append_data(&mut header, &entry.name, &mut reader)
            .map_err(|source| {
                // Tell a failing source disk from a failing output disk.
                let (action, path) = if reader.failed {
                    ("cannot read", source_path.clone())
                } else {
                    ("cannot write", tmp.to_owned())
                };
                PackageError::Io {
                    action,
                    path,
                    source,
                }
            })?;
        let (size, sha256) = reader.finish();
        if size != entry.size || sha256 != entry.sha256 {
            return Err(PackageError::SourceChanged {
                file: source_path.clone(),
            });
        }
    }

    if let Some(key) = signing_key {
        let signature = sign_manifest(key, manifest_bytes);
        append(&mut tar, SIGNATURE_NAME, false, signature.as_bytes()).map_err(write_err())?;
    }

    // `into_inner` writes the end-of-archive blocks.
    let writer = tar.into_inner().map_err(write_err())?;
    let file = writer
        .into_inner()
        .map_err(|e| write_err()(e.into_error()))?;
    file.sync_all().map_err(write_err())
}

/// Appends a small in-memory entry.
fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    executable: bool,
    data: &[u8],
) -> io::Result<()> {
    let mut header = header(data.len() as u64, executable);
    tar.append_data(&mut header, name, data)
}

/// Deterministic headers: no owner, no timestamp, so the same inputs give the same bytes.
fn header(size: u64, executable: bool) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    header.set_mode(if executable { 0o755 } else { 0o644 });
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header
}

fn open(path: &Path) -> Result<BufReader<File>, PackageError> {
    let file = File::open(path).map_err(PackageError::io("cannot open", path))?;
    Ok(BufReader::with_capacity(READ_BUFFER, file))
}

/// `<out>.tmp`, removed on drop unless the build succeeded.
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl TempFile {
    fn new(out: &Path) -> TempFile {
        let mut name = OsString::from(out.as_os_str());
        name.push(".tmp");
        TempFile {
            path: PathBuf::from(name),
            armed: true,
        }
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Makes the rename durable: without it a crash could lose the new directory entry.
pub(crate) fn sync_parent(path: &Path) -> Result<(), PackageError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)
        .and_then(|dir| dir.sync_all())
        .map_err(PackageError::io("cannot sync directory", parent))
}
