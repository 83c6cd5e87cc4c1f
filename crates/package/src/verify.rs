//! Checking a package against its manifest, optionally extracting it on the way.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use ed25519_dalek::VerifyingKey;

use crate::error::PackageError;
use crate::hashing::HashingReader;
use crate::make::READ_BUFFER;
use crate::manifest::{FileEntry, MANIFEST_NAME, Manifest, SIGNATURE_NAME, check_entry_name};
use crate::read::{MAX_SIGNATURE_BYTES, damaged, read_manifest_entry, read_small, truncated};
use crate::signing::{check_signature, parse_signature};

/// Tar block size; entries are padded to it and the archive ends with two zero blocks.
const BLOCK: u64 = 512;

/// Checks that the package at `path` holds exactly the files its manifest lists, with the
/// listed sizes and SHA-256, and, when `trusted` is set, that the manifest carries a valid
/// signature by that key. Reads the whole package once.
pub fn verify(path: &Path, trusted: Option<&VerifyingKey>) -> Result<Manifest, PackageError> {
    let (manifest, _) = check_package(path, trusted, None)?;
    Ok(manifest)
}

/// One streaming pass over the package: every check of [`verify`], writing each payload
/// file into `out_dir` when given. Returns the manifest and its exact bytes. On error,
/// `out_dir` may hold partial files; the caller discards it.
pub(crate) fn check_package(
    path: &Path,
    trusted: Option<&VerifyingKey>,
    out_dir: Option<&Path>,
) -> Result<(Manifest, Vec<u8>), PackageError> {
    let file = File::open(path).map_err(PackageError::io("cannot open package", path))?;
    let len = file
        .metadata()
        .map_err(PackageError::io("cannot read package", path))?
        .len();
    let mut archive = tar::Archive::new(BufReader::with_capacity(READ_BUFFER, file));
    let mut entries = archive.entries().map_err(damaged(path))?;

    let first = entries.next();
    let mut end = match &first {
        Some(Ok(entry)) => entry_end(entry),
        _ => 0,
    };
    let manifest_bytes = read_manifest_entry(path, first)?;
    let manifest = Manifest::parse(path, &manifest_bytes)?;

    let mut seen = vec![false; manifest.files.len()];
    let mut signature = None;
    for entry in entries {
        let mut entry = entry.map_err(damaged(path))?;
        let name_bytes = entry.path_bytes().into_owned();
        check_entry_name(path, &name_bytes)?;
        let name = String::from_utf8_lossy(&name_bytes).into_owned();
        end = entry_end(&entry);
        if signature.is_some() {
            // Only the signature may come after the payload, and nothing after it.
            return Err(PackageError::AfterSignature {
                path: path.to_owned(),
                entry: name,
            });
        }
        if name == MANIFEST_NAME {
            return Err(PackageError::DuplicateEntry {
                path: path.to_owned(),
                entry: name,
            });
        }
        if name == SIGNATURE_NAME {
            let text = read_small(path, &mut entry, SIGNATURE_NAME, MAX_SIGNATURE_BYTES)?;
            signature = Some(parse_signature(path, &text)?);
            continue;
        }
        let Some((expected, seen)) = manifest
            .files
            .iter()
            .zip(seen.iter_mut())
            .find(|(f, _)| f.name == name)
        else {
            return Err(PackageError::ExtraEntry {
                path: path.to_owned(),
                entry: name,
            });
        };
        if std::mem::replace(seen, true) {
            return Err(PackageError::DuplicateEntry {
                path: path.to_owned(),
                entry: name,
            });
        }
        if !entry.header().entry_type().is_file() {
            return Err(PackageError::NotRegularFile {
                path: path.to_owned(),
                entry: name,
            });
        }
        check_file(path, &mut entry, expected, out_dir)?;
    }

    if let Some((file, _)) = manifest.files.iter().zip(&seen).find(|(_, seen)| !**seen) {
        return Err(PackageError::MissingFile {
            path: path.to_owned(),
            file: file.name.clone(),
        });
    }
    // The tar reader treats a clean end of file like the end-of-archive marker; demanding the
    // marker catches a package cut exactly at an entry boundary (e.g. before manifest.sig).
    if len < end.saturating_add(2 * BLOCK) {
        return Err(PackageError::Damaged {
            path: path.to_owned(),
            detail: "the end-of-archive marker is missing".to_owned(),
        });
    }
    if let Some(key) = trusted {
        check_signature(path, key, &manifest_bytes, signature.as_ref())?;
    }
    Ok((manifest, manifest_bytes))
}

/// Offset just past the entry's padded content.
fn entry_end<R: Read>(entry: &tar::Entry<'_, R>) -> u64 {
    let padded = entry.size().div_ceil(BLOCK).saturating_mul(BLOCK);
    entry.raw_file_position().saturating_add(padded)
}

/// Streams one payload file through SHA-256, into `out_dir` when given, and compares it
/// with its manifest entry.
fn check_file<R: Read>(
    path: &Path,
    entry: &mut tar::Entry<'_, R>,
    expected: &FileEntry,
    out_dir: Option<&Path>,
) -> Result<(), PackageError> {
    let header_size = entry.size();
    if header_size != expected.size {
        return Err(PackageError::SizeMismatch {
            path: path.to_owned(),
            file: expected.name.clone(),
            expected: expected.size,
            actual: header_size,
        });
    }
    let mut reader = HashingReader::new(entry);
    match out_dir {
        None => {
            io::copy(&mut reader, &mut io::sink()).map_err(damaged(path))?;
        }
        Some(dir) => write_file(
            path,
            &mut reader,
            &dir.join(&expected.name),
            expected.executable,
        )?,
    }
    let (size, sha256) = reader.finish();
    if size != expected.size {
        return Err(truncated(path, &expected.name, size, expected.size));
    }
    if sha256 != expected.sha256 {
        return Err(PackageError::HashMismatch {
            path: path.to_owned(),
            file: expected.name.clone(),
            expected: expected.sha256.clone(),
            actual: sha256,
        });
    }
    Ok(())
}

/// Writes one extracted file with its final mode and syncs it, so the directory renamed
/// into place later is complete on disk.
fn write_file<R: Read>(
    path: &Path,
    reader: &mut HashingReader<R>,
    target: &Path,
    executable: bool,
) -> Result<(), PackageError> {
    let mode = if executable { 0o755 } else { 0o644 };
    let write_err = || PackageError::io("cannot write", target);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(target)
        .map_err(PackageError::io("cannot create", target))?;
    let mut writer = BufWriter::with_capacity(READ_BUFFER, file);
    if let Err(e) = io::copy(reader, &mut writer) {
        return Err(if reader.failed {
            damaged(path)(e)
        } else {
            write_err()(e)
        });
    }
    writer.flush().map_err(write_err())?;
    let file = writer
        .into_inner()
        .map_err(|e| write_err()(e.into_error()))?;
    // Exact mode regardless of the umask.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(write_err())?;
    file.sync_all().map_err(write_err())
}
