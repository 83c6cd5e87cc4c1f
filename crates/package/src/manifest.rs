//! The manifest: what a package contains and which cluster it may upgrade.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::PackageError;

/// The package format this code writes and reads. Bump it when an older reader would
/// misread a newer package; older readers then refuse it by name instead of guessing.
pub const FORMAT: u32 = 1;

/// Name of the first entry of every package.
pub const MANIFEST_NAME: &str = "manifest.json";

/// Name of the optional last entry: hex Ed25519 signature over the manifest bytes.
pub const SIGNATURE_NAME: &str = "manifest.sig";

/// Upper bound on manifest.json, so a hostile header cannot make us allocate gigabytes.
pub(crate) const MAX_MANIFEST_BYTES: u64 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Package format, [`FORMAT`]; an unknown one is refused.
    pub format: u32,
    /// Release version, "X.Y.Z".
    pub version: String,
    /// Build date, "YYYY.MM.DD".
    pub build_date: String,
    /// Oldest running version this package can upgrade in place.
    pub min_upgrade_from: String,
    pub wire_version: u32,
    pub storage_format_version: u32,
    /// The payload, in package order.
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Plain file name inside the package and the unpacked directory.
    pub name: String,
    pub size: u64,
    /// Lowercase hex SHA-256 of the content.
    pub sha256: String,
    /// Unpacked with mode 0755 instead of 0644.
    pub executable: bool,
}

/// What the caller of [`crate::build`] decides; `format` and `files` are filled in by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestFields {
    pub version: String,
    pub build_date: String,
    pub min_upgrade_from: String,
    pub wire_version: u32,
    pub storage_format_version: u32,
}

impl Manifest {
    /// Parses manifest bytes read from the package at `path`. The format is checked before
    /// the rest so that a future format with different fields is reported as such, not as
    /// a JSON error.
    pub(crate) fn parse(path: &Path, bytes: &[u8]) -> Result<Manifest, PackageError> {
        #[derive(Deserialize)]
        struct FormatOnly {
            format: u32,
        }
        let bad = |source| PackageError::BadManifest {
            path: path.to_owned(),
            source,
        };
        let FormatOnly { format } = serde_json::from_slice(bytes).map_err(bad)?;
        if format != FORMAT {
            return Err(PackageError::UnknownFormat {
                path: path.to_owned(),
                format,
            });
        }
        let manifest: Manifest = serde_json::from_slice(bytes).map_err(bad)?;
        check_names(path, manifest.files.iter().map(|f| f.name.as_str()))?;
        Ok(manifest)
    }

    /// The file entry called `name`, if listed.
    pub fn file(&self, name: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.name == name)
    }
}

/// Payload names must be plain, unique, and not the package's own entries: they become
/// file names in the unpacked directory.
pub(crate) fn check_names<'a>(
    path: &Path,
    names: impl IntoIterator<Item = &'a str>,
) -> Result<(), PackageError> {
    let mut seen = HashSet::new();
    for name in names {
        check_entry_name(path, name.as_bytes())?;
        if name == MANIFEST_NAME || name == SIGNATURE_NAME {
            return Err(PackageError::ReservedName {
                path: path.to_owned(),
                entry: name.to_owned(),
            });
        }
        if !seen.insert(name) {
            return Err(PackageError::DuplicateEntry {
                path: path.to_owned(),
                entry: name.to_owned(),
            });
        }
    }
    Ok(())
}

/// Refuses any entry name that could land outside the unpack directory: separators,
/// `.`/`..`, empty names and NUL bytes.
pub(crate) fn check_entry_name(path: &Path, name: &[u8]) -> Result<(), PackageError> {
    let unsafe_name = name.is_empty()
        || name == b"."
        || name.windows(2).any(|w| w == b"..")
        || name.iter().any(|&b| b == b'/' || b == b'\\' || b == 0);
    if unsafe_name {
        return Err(PackageError::UnsafeName {
            path: path.to_owned(),
            entry: String::from_utf8_lossy(name).into_owned(),
        });
    }
    Ok(())
}
