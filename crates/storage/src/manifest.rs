//! The `MANIFEST` file (storage format 2): which chunk files hold the records up to the flushed
//! lsn, the replica's position there, and the dedup state. Replaced whole
//! ([`fsutil::write_atomic`]); writing it is the commit point of a flush and of a compaction.
//!
//! Layout (little endian):
//! ```text
//! [magic "SHOALMAN" 8][manifest version u32][crc32 of body u32][body len u32][body: JSON]
//! ```
//! The version is checked before anything else so a newer layout is refused by name.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::dedup::DedupSnapshot;
use crate::error::{StorageError, io_err};
use crate::fsutil;
use crate::meta::le_u32;

/// Name of the manifest file.
pub const MANIFEST_FILE: &str = "MANIFEST";
/// Manifest format version written by this build (and the highest it reads).
pub const MANIFEST_FORMAT_VERSION: u32 = 1;
/// Sub-directory holding the chunk files.
pub const FILES_DIR: &str = "f";

const MAGIC: &[u8; 8] = b"SHOALMAN";
const PREFIX_LEN: usize = 8 + 4 + 4 + 4;

/// The replica as of the last committed flush.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    /// Store format of the directory (2).
    pub format: u32,
    /// Every record with lsn ≤ this is in [`Manifest::files`]; the WAL is replayed above it.
    pub flushed_lsn: u64,
    /// Rows of the records 1..=flushed_lsn.
    pub rows: u64,
    /// The replica checksum right after `flushed_lsn`.
    pub checksum: u64,
    /// Chunk files, in lsn order; their lsn ranges are disjoint and cover 1..=flushed_lsn
    /// except ranges whose records hold no rows (a compacted file's range is the union of its
    /// inputs', gaps included).
    pub files: Vec<FileMeta>,
    /// Dedup state at lsn `dedup_lsn` (≥ `flushed_lsn`; replaying the WAL after `flushed_lsn`
    /// on top of it gives the state at the end of the log, see `dedup.rs`).
    pub dedup_lsn: u64,
    /// The saved dedup state.
    pub dedup: DedupSnapshot,
    /// `[b, checksum at b]` where `b + 1` is the first lsn of the oldest WAL segment kept: from
    /// it the checksum at any lsn the WAL still holds can be chained from the record headers
    /// (`ChunkStore::checksum_at_retained`). Absent when not known.
    #[serde(default)]
    pub wal_base: Option<[u64; 2]>,
}

/// One immutable chunk file (`f/<name>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct FileMeta {
    /// File name inside `f/`.
    pub name: String,
    /// Lowest lsn whose rows are in the file.
    pub first_lsn: u64,
    /// Highest lsn whose rows are in the file.
    pub last_lsn: u64,
    /// Rows in the file.
    pub rows: u64,
    /// File size.
    pub bytes: u64,
    /// Columns the rows are sorted by (ascending, nulls first; equal keys in lsn order).
    pub sort_key: Vec<String>,
    /// Per column: the smallest and largest non-null value, as Arrow displays it.
    pub columns: Vec<ColumnRange>,
    /// 0: written by a flush; n > 0: merged by a compaction from files of levels < n.
    /// Absent in manifests written before compaction existed (read as 0); a build that does
    /// not know the field ignores it.
    #[serde(default)]
    pub level: u32,
}

/// Value range of one column in a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ColumnRange {
    pub name: String,
    pub min: Option<String>,
    pub max: Option<String>,
    pub nulls: u64,
}

/// Write the manifest durably (the commit point of a flush); returns its size.
pub(crate) fn write(dir: &Path, m: &Manifest) -> Result<u64, StorageError> {
    let out = encode(dir, m)?;
    fsutil::write_atomic(dir, MANIFEST_FILE, &out)?;
    Ok(out.len() as u64)
}

/// The bytes of the `MANIFEST` file of store `dir` holding `m`.
pub(crate) fn encode(dir: &Path, m: &Manifest) -> Result<Vec<u8>, StorageError> {
    let body = serde_json::to_vec(m).map_err(|e| StorageError::Corrupt {
        path: dir.join(MANIFEST_FILE),
        offset: 0,
        reason: format!("cannot encode manifest: {e}"),
    })?;
    let len = u32::try_from(body.len()).map_err(|_| StorageError::InvalidOptions {
        dir: dir.to_path_buf(),
        detail: format!("manifest encodes to {} bytes, too large", body.len()),
    })?;
    let mut out = Vec::with_capacity(PREFIX_LEN + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&MANIFEST_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Read and verify the manifest; `None` if there is none (nothing flushed yet). Also returns
/// its size in bytes.
pub(crate) fn read(dir: &Path) -> Result<Option<(Manifest, u64)>, StorageError> {
    let path = dir.join(MANIFEST_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read", &path)(e)),
    };
    let m = decode(&path, &bytes)?;
    Ok(Some((m, bytes.len() as u64)))
}

/// Verify and decode the bytes of a `MANIFEST` file (`path` names it in errors).
pub(crate) fn decode(path: &Path, bytes: &[u8]) -> Result<Manifest, StorageError> {
    let corrupt = |reason: String| StorageError::Corrupt {
        path: path.to_path_buf(),
        offset: 0,
        reason,
    };
    if bytes.len() < 12 || &bytes[..8] != MAGIC {
        return Err(StorageError::BadMagic {
            path: path.to_path_buf(),
            what: "manifest",
        });
    }
    let version = le_u32(&bytes[8..12]);
    if version == 0 || version > MANIFEST_FORMAT_VERSION {
        return Err(StorageError::UnsupportedVersion {
            path: path.to_path_buf(),
            what: "manifest",
            found: version,
            supported: MANIFEST_FORMAT_VERSION,
        });
    }
    if bytes.len() < PREFIX_LEN {
        return Err(corrupt("MANIFEST truncated".into()));
    }
    let crc = le_u32(&bytes[12..16]);
    let len = le_u32(&bytes[16..20]) as usize;
    let body = bytes
        .get(PREFIX_LEN..PREFIX_LEN + len)
        .ok_or_else(|| corrupt("MANIFEST truncated".into()))?;
    if crc32fast::hash(body) != crc {
        return Err(corrupt("MANIFEST crc mismatch".into()));
    }
    let m: Manifest =
        serde_json::from_slice(body).map_err(|e| corrupt(format!("undecodable MANIFEST: {e}")))?;
    Ok(m)
}
