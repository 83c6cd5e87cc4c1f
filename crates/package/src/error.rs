//! One error type for the crate; every message names the file and the problem, because an
//! operator reading it mid-upgrade must be able to act without a debugger.

use std::io;
use std::path::PathBuf;

use crate::manifest::FORMAT;
use crate::version::Version;

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("package {path} is damaged or truncated: {detail}")]
    Damaged { path: PathBuf, detail: String },
    #[error("package {path}: manifest.json is not valid: {source}")]
    BadManifest {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "package {path} has format {format}, but this shoal reads format {FORMAT} only: use the shoal release that built it"
    )]
    UnknownFormat { path: PathBuf, format: u32 },
    #[error("package {path}: first entry is {found:?}, expected manifest.json")]
    ManifestNotFirst { path: PathBuf, found: String },
    #[error(
        "package {path}: entry {entry:?} has an unsafe name: names must be plain file names, without '/' or '..'"
    )]
    UnsafeName { path: PathBuf, entry: String },
    #[error("package {path}: entry {entry:?} is reserved for the package itself")]
    ReservedName { path: PathBuf, entry: String },
    #[error("package {path}: entry {entry:?} is not a regular file")]
    NotRegularFile { path: PathBuf, entry: String },
    #[error("package {path}: entry {entry:?} appears more than once")]
    DuplicateEntry { path: PathBuf, entry: String },
    #[error("package {path}: unexpected entry {entry:?} (not listed in the manifest)")]
    ExtraEntry { path: PathBuf, entry: String },
    #[error("package {path}: entry {entry:?} follows manifest.sig, which must be the last entry")]
    AfterSignature { path: PathBuf, entry: String },
    #[error("package {path}: {file} is listed in the manifest but missing from the package")]
    MissingFile { path: PathBuf, file: String },
    #[error("package {path}: {file} is {actual} bytes, but the manifest says {expected}")]
    SizeMismatch {
        path: PathBuf,
        file: String,
        expected: u64,
        actual: u64,
    },
    #[error("package {path}: {file} has sha256 {actual}, but the manifest says {expected}")]
    HashMismatch {
        path: PathBuf,
        file: String,
        expected: String,
        actual: String,
    },
    #[error("package {path} is not signed but a verify key is configured")]
    NotSigned { path: PathBuf },
    #[error("package {path}: signature does not match")]
    BadSignature { path: PathBuf },
    #[error("package {path}: manifest.sig is malformed: {detail}")]
    MalformedSignature { path: PathBuf, detail: String },
    #[error("cannot build package {path}: {what}: {reason}")]
    InvalidInput {
        path: PathBuf,
        what: String,
        reason: String,
    },
    #[error("{file} changed while it was being packaged; build again")]
    SourceChanged { file: PathBuf },
    #[error("{dest} already exists: refusing to unpack over it")]
    DestExists { dest: PathBuf },
    #[error("key file {path} already exists: refusing to overwrite it")]
    KeyExists { path: PathBuf },
    #[error("key file {path}: {problem}")]
    BadKey { path: PathBuf, problem: String },
    #[error("cannot generate a signing key: the OS random source failed: {detail}")]
    Random { detail: String },
    #[error("invalid version {version:?}: expected X.Y.Z, e.g. 0.2.0")]
    BadVersion { version: String },
    #[error(
        "package version {package} is older than the running {running}: downgrades are refused; use upgrade --rollback"
    )]
    Downgrade { package: Version, running: Version },
    #[error("the cluster already runs {version}")]
    SameVersion { version: Version },
    #[error(
        "{package} upgrades from {min} or later; the cluster runs {running}: upgrade to an intermediate release first"
    )]
    UpgradeTooLarge {
        package: Version,
        min: Version,
        running: Version,
    },
}

impl PackageError {
    /// Wraps an I/O error with what was being done and to which file.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| PackageError::Io {
            action,
            path,
            source,
        }
    }
}
