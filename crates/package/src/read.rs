//! Reading a package's own entries: the manifest and the signature.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use ed25519_dalek::Signature;

use crate::error::PackageError;
use crate::manifest::{MANIFEST_NAME, MAX_MANIFEST_BYTES, Manifest, SIGNATURE_NAME};
use crate::signing::parse_signature;

/// Upper bound on manifest.sig (128 hex characters plus whitespace).
pub(crate) const MAX_SIGNATURE_BYTES: u64 = 1024;

/// Reads the manifest and the signature, if any, without reading the payload: the tar is
/// walked with seeks, so this costs a few block reads even for a 400 MB package. Nothing is
/// verified beyond the manifest format; use [`crate::verify`] before trusting the package.
pub fn read_manifest(path: &Path) -> Result<(Manifest, Option<Signature>), PackageError> {
    let file = File::open(path).map_err(PackageError::io("cannot open package", path))?;
    let mut archive = tar::Archive::new(BufReader::new(file));
    let mut entries = archive.entries_with_seek().map_err(damaged(path))?;
    let manifest_bytes = read_manifest_entry(path, entries.next())?;
    let manifest = Manifest::parse(path, &manifest_bytes)?;
    for entry in entries {
        let mut entry = entry.map_err(damaged(path))?;
        if entry.path_bytes().as_ref() == SIGNATURE_NAME.as_bytes() {
            let text = read_small(path, &mut entry, SIGNATURE_NAME, MAX_SIGNATURE_BYTES)?;
            return Ok((manifest, Some(parse_signature(path, &text)?)));
        }
    }
    Ok((manifest, None))
}

/// The bytes of the first entry, which must be manifest.json.
pub(crate) fn read_manifest_entry<R: Read>(
    path: &Path,
    first: Option<io::Result<tar::Entry<'_, R>>>,
) -> Result<Vec<u8>, PackageError> {
    let Some(entry) = first else {
        return Err(PackageError::Damaged {
            path: path.to_owned(),
            detail: "no entries (expected manifest.json first)".to_owned(),
        });
    };
    let mut entry = entry.map_err(damaged(path))?;
    if entry.path_bytes().as_ref() != MANIFEST_NAME.as_bytes() {
        return Err(PackageError::ManifestNotFirst {
            path: path.to_owned(),
            found: String::from_utf8_lossy(&entry.path_bytes()).into_owned(),
        });
    }
    read_small(path, &mut entry, MANIFEST_NAME, MAX_MANIFEST_BYTES)
}

/// Reads a whole small entry, refusing anything that is not a regular file or is larger
/// than `limit` (a hostile size must not become a huge allocation).
pub(crate) fn read_small<R: Read>(
    path: &Path,
    entry: &mut tar::Entry<'_, R>,
    name: &str,
    limit: u64,
) -> Result<Vec<u8>, PackageError> {
    if !entry.header().entry_type().is_file() {
        return Err(PackageError::NotRegularFile {
            path: path.to_owned(),
            entry: name.to_owned(),
        });
    }
    let size = entry.size();
    if size > limit {
        return Err(PackageError::Damaged {
            path: path.to_owned(),
            detail: format!("{name} is {size} bytes, more than the {limit} allowed"),
        });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    entry.read_to_end(&mut bytes).map_err(damaged(path))?;
    if bytes.len() as u64 != size {
        return Err(truncated(path, name, bytes.len() as u64, size));
    }
    Ok(bytes)
}

pub(crate) fn damaged(path: &Path) -> impl FnOnce(io::Error) -> PackageError + '_ {
    move |e| PackageError::Damaged {
        path: path.to_owned(),
        detail: e.to_string(),
    }
}

pub(crate) fn truncated(path: &Path, name: &str, got: u64, size: u64) -> PackageError {
    PackageError::Damaged {
        path: path.to_owned(),
        detail: format!("{name} ends after {got} of its {size} bytes"),
    }
}
