//! The one error type of this crate. Every variant names the store directory or the file
//! (and offset) it is about, so an operator can act on the message alone.

use std::path::PathBuf;

use arrow::error::ArrowError;

/// Errors returned by [`crate::ChunkStore`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// An I/O operation on a file or directory failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done ("open", "write", "fdatasync", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `create` found a store (or WAL segments) already in the directory.
    #[error("a chunk store already exists in {}", dir.display())]
    AlreadyExists {
        /// The store directory.
        dir: PathBuf,
    },
    /// `open` found no store in the directory.
    #[error("no chunk store in {} (missing {})", dir.display(), crate::meta::STORE_FILE)]
    NotFound {
        /// The store directory.
        dir: PathBuf,
    },
    /// A file does not start with the expected magic bytes.
    #[error("{}: not a Shoal {what} file (bad magic)", path.display())]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// Which kind of file was expected.
        what: &'static str,
    },
    /// A file or record carries a format version this build does not know (written by a newer
    /// Shoal). Nothing is read or modified.
    #[error(
        "{}: unsupported {what} format version {found} (this build reads versions 1..={supported}); \
         written by a newer Shoal? refusing to open",
        path.display()
    )]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// Which format ("store", "WAL segment", "WAL record", "WAL record kind").
        what: &'static str,
        /// The version found on disk.
        found: u32,
        /// The highest version this build supports.
        supported: u32,
    },
    /// Data on disk failed verification somewhere other than a torn tail.
    #[error("corrupt {} at offset {offset}: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte offset of the bad record (or header) in the file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// An appended batch does not have the chunk's schema. Nothing was written.
    #[error("batch does not match the schema of chunk store {}: {detail}", dir.display())]
    SchemaMismatch {
        /// The store directory.
        dir: PathBuf,
        /// Expected vs. actual columns.
        detail: String,
    },
    /// `apply_at` was given an lsn other than `last_lsn() + 1`. Nothing was written.
    #[error(
        "chunk store {}: apply_at got lsn {got}, expected lsn {expected} (last_lsn + 1)",
        dir.display()
    )]
    LsnMismatch {
        /// The store directory.
        dir: PathBuf,
        /// The lsn the store expects next.
        expected: u64,
        /// The lsn it was given.
        got: u64,
    },
    /// Arrow failed to encode or decode a batch or schema.
    #[error("{context} ({}): {source}", path.display())]
    Arrow {
        /// What was being done.
        context: &'static str,
        /// The store directory or file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: ArrowError,
    },
    /// Another `ChunkStore` (in this or another process) has the directory open.
    #[error("chunk store {} is already open elsewhere (lock on {} is held)", dir.display(), crate::meta::LOCK_FILE)]
    Locked {
        /// The store directory.
        dir: PathBuf,
    },
    /// `(writer_id, seq)` is older than the writer's dedup window, so whether it was applied
    /// is not known: it is neither written nor acknowledged as a duplicate. The writer had more
    /// than [`crate::DEDUP_WINDOW`] seqs in flight, retried very late, or reused its id.
    #[error(
        "chunk store {}: writer {writer_id} seq {seq} is older than the writer's dedup window \
         (highest applied seq {highest}, window {window}: seqs below {} are not tracked); \
         refused, nothing written; whether it was applied before is unknown",
        dir.display(),
        highest.saturating_sub(*window)
    )]
    OutsideDedupWindow {
        /// The store directory.
        dir: PathBuf,
        /// The writer.
        writer_id: u64,
        /// The refused seq.
        seq: u64,
        /// The writer's highest applied seq.
        highest: u64,
        /// [`crate::DEDUP_WINDOW`].
        window: u64,
    },
    /// A WAL write or fdatasync failed. The outcome of the records in flight is unknown (they
    /// may or may not be on disk), so the store refuses all further writes until it is reopened,
    /// which replays what is really on disk.
    #[error("chunk store {}: WAL write failed, store must be reopened: {reason}", dir.display())]
    Failed {
        /// The store directory.
        dir: PathBuf,
        /// The original failure.
        reason: String,
    },
    /// The store's writer thread is gone (the store was closed, or the thread panicked).
    #[error("chunk store {} is closed", dir.display())]
    Closed {
        /// The store directory.
        dir: PathBuf,
    },
    /// One record would exceed the 4 GiB frame limit. Nothing was written.
    #[error("record of {bytes} bytes is too large for chunk store {} (max {max})", dir.display())]
    RecordTooLarge {
        /// The store directory.
        dir: PathBuf,
        /// Encoded size of the record.
        bytes: u64,
        /// Largest encodable record.
        max: u64,
    },
    /// `records_since` was asked for records the store no longer holds one by one: they were
    /// flushed to chunk files and the WAL segments holding them were truncated. The caller
    /// copies the replica whole instead.
    #[error(
        "chunk store {}: record {lsn} is below the retained WAL (first retained lsn \
         {first_retained}); the records are only in chunk files",
        dir.display()
    )]
    BelowRetainedLog {
        /// The store directory.
        dir: PathBuf,
        /// The first lsn asked for.
        lsn: u64,
        /// The lowest lsn the WAL still holds from.
        first_retained: u64,
    },
    /// The records after `lsn` cannot be cut (see `ChunkStore::cut_tail`); nothing changed.
    #[error("chunk store {}: cannot cut the records after lsn {lsn}: {reason}", dir.display())]
    CannotCutTail {
        /// The store directory.
        dir: PathBuf,
        /// The lsn asked to end at.
        lsn: u64,
        /// Why not.
        reason: String,
    },
    /// A snapshot sent to replace this replica was refused before its commit (a file name
    /// outside the store, a file short or with another hash than sent, a MANIFEST not listing
    /// exactly the files sent). The store is unchanged.
    #[error("snapshot for chunk store {} refused: {reason}", dir.display())]
    SnapshotRefused {
        /// The store directory.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A scan asked for a column the chunk does not have.
    #[error("chunk store {} has no column `{column}`", dir.display())]
    NoSuchColumn {
        /// The store directory.
        dir: PathBuf,
        /// The column asked for.
        column: String,
    },
    /// The options passed to `create`/`open` are unusable.
    #[error("invalid options for chunk store {}: {detail}", dir.display())]
    InvalidOptions {
        /// The store directory.
        dir: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// Shorthand for building [`StorageError::Io`] in `map_err`.
pub(crate) fn io_err(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> StorageError {
    let path = path.into();
    move |source| StorageError::Io { op, path, source }
}

/// Shorthand for building [`StorageError::Arrow`] in `map_err`.
pub(crate) fn arrow_err(
    context: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(ArrowError) -> StorageError {
    let path = path.into();
    move |source| StorageError::Arrow {
        context,
        path,
        source,
    }
}
