//! The crate's error type and its mapping onto the `io::Error` that openraft's storage traits
//! return.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong opening or operating a raft store.
///
/// Every variant names the redb file it concerns, because a controller host may carry several
/// stores (tests, migrations) and "database corrupted" alone is not actionable.
///
/// Inside the openraft trait methods these errors travel as the source of an [`io::Error`]
/// (see the `From` impl below), so the chain stays inspectable from a `StorageError`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The directory that should hold `raft.redb` could not be created.
    #[error("raft store {}: cannot create directory: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The file is already open, by this process or another. Note that after
    /// `Raft::shutdown()` returns, openraft's worker tasks may still hold the stores for a few
    /// milliseconds; an in-process restart has to retry.
    #[error("raft store {}: database is already open (by this or another process)", path.display())]
    AlreadyOpen {
        /// The redb file.
        path: PathBuf,
    },

    /// redb refused to open or create the file (locked by another process, not a redb file,
    /// unrecoverable corruption, ...).
    #[error("raft store {}: cannot open database: {source}", path.display())]
    Open {
        /// The redb file.
        path: PathBuf,
        /// The underlying error (boxed: redb's errors are large and this is a cold path).
        #[source]
        source: Box<redb::DatabaseError>,
    },

    /// A redb transaction, table or commit operation failed.
    #[error("raft store {}: {op}: {source}", path.display())]
    Db {
        /// The redb file.
        path: PathBuf,
        /// What the store was doing.
        op: &'static str,
        /// The underlying error (boxed: redb's errors are large and this is a cold path).
        #[source]
        source: Box<redb::Error>,
    },

    /// The file was written by a build that uses an on-disk format this build does not know.
    #[error(
        "raft store {}: on-disk format version {found} is not supported (this build reads version {supported})",
        path.display()
    )]
    UnsupportedFormatVersion {
        /// The redb file.
        path: PathBuf,
        /// The version recorded in the file.
        found: u64,
        /// The version this build reads and writes.
        supported: u64,
    },

    /// The file is a redb database with tables but without a `format_version`: it was not
    /// created by this crate and is left untouched.
    #[error("raft store {}: file has no format_version; it is not a shoal raft store", path.display())]
    NotARaftStore {
        /// The redb file.
        path: PathBuf,
    },

    /// A stored value (or a received snapshot) could not be decoded.
    #[error("raft store {}: cannot decode {what}: {source}", path.display())]
    Decode {
        /// The redb file.
        path: PathBuf,
        /// Which value.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },

    /// A value could not be serialized.
    #[error("raft store {}: cannot encode {what}: {source}", path.display())]
    Encode {
        /// The redb file.
        path: PathBuf,
        /// Which value.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },

    /// A value the format guarantees to exist is absent.
    #[error("raft store {}: {what} is missing", path.display())]
    Missing {
        /// The redb file.
        path: PathBuf,
        /// Which value.
        what: &'static str,
    },

    /// A snapshot offered to `install_snapshot` is malformed or of an unknown version.
    #[error("raft store {}: invalid snapshot: {reason}", path.display())]
    InvalidSnapshot {
        /// The redb file of the receiving store.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },

    /// The blocking task that ran a redb write could not be joined.
    #[error("raft store {}: {op}: blocking task failed: {source}", path.display())]
    Task {
        /// The redb file.
        path: PathBuf,
        /// What the store was doing.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl From<StoreError> for io::Error {
    fn from(e: StoreError) -> Self {
        // Decoding failures and foreign formats are data problems, not transient IO problems;
        // keep that distinction visible to callers that look at the kind.
        let kind = match &e {
            StoreError::Decode { .. }
            | StoreError::Missing { .. }
            | StoreError::InvalidSnapshot { .. }
            | StoreError::UnsupportedFormatVersion { .. }
            | StoreError::NotARaftStore { .. } => io::ErrorKind::InvalidData,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}
