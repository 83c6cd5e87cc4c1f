//! WAL segment files: naming, the segment header, creation and listing.
//!
//! A segment is named after the lsn of its first record, `{first_lsn:020}.wal`, so listing the
//! directory sorted by name gives lsn order. Header (32 bytes, LE):
//! ```text
//! [magic "SHOALWAL" 8][segment version u32][reserved u32 = 0][first_lsn u64]
//! [reserved u32 = 0][crc32 of the previous 28 bytes u32]
//! ```
//! followed by record frames (see [`super::record`]). A segment is created whole (header written
//! to a temp file, fsync, rename, fsync(dir)), then only appended to; once the next segment
//! exists it is sealed and never written again.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{StorageError, io_err};
use crate::fsutil::{self, TMP_SUFFIX};
use crate::meta::{le_u32, le_u64};

/// Segment format version written by this build (and the highest it reads).
pub const SEGMENT_FORMAT_VERSION: u32 = 1;
/// Size of the segment header.
pub(crate) const SEGMENT_HEADER_LEN: usize = 32;
const MAGIC: &[u8; 8] = b"SHOALWAL";
const EXT: &str = ".wal";

/// File name of the segment whose first record has `first_lsn`.
pub(crate) fn segment_name(first_lsn: u64) -> String {
    format!("{first_lsn:020}{EXT}")
}

/// Encode the header of a segment.
pub(crate) fn encode_header(first_lsn: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[0..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&SEGMENT_FORMAT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&first_lsn.to_le_bytes());
    let crc = crc32fast::hash(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Verify a segment header; returns its first lsn.
pub(crate) fn decode_header(path: &Path, buf: &[u8]) -> Result<u64, StorageError> {
    if buf.len() < 12 || &buf[..8] != MAGIC {
        return Err(StorageError::BadMagic {
            path: path.to_path_buf(),
            what: "WAL segment",
        });
    }
    let version = le_u32(&buf[8..12]);
    if version == 0 || version > SEGMENT_FORMAT_VERSION {
        return Err(StorageError::UnsupportedVersion {
            path: path.to_path_buf(),
            what: "WAL segment",
            found: version,
            supported: SEGMENT_FORMAT_VERSION,
        });
    }
    let corrupt = |reason: &str| StorageError::Corrupt {
        path: path.to_path_buf(),
        offset: 0,
        reason: reason.to_string(),
    };
    if buf.len() < SEGMENT_HEADER_LEN {
        return Err(corrupt("segment header truncated"));
    }
    if crc32fast::hash(&buf[..28]) != le_u32(&buf[28..32]) {
        return Err(corrupt("segment header crc mismatch"));
    }
    Ok(le_u64(&buf[16..24]))
}

/// Create a new, empty segment durably and open it for appending.
pub(crate) fn create(dir: &Path, first_lsn: u64) -> Result<(File, PathBuf), StorageError> {
    let name = segment_name(first_lsn);
    let path = dir.join(&name);
    if path.exists() {
        return Err(StorageError::Corrupt {
            path,
            offset: 0,
            reason: "segment to be created already exists".into(),
        });
    }
    fsutil::write_atomic(dir, &name, &encode_header(first_lsn))?;
    let file = open_append(&path)?;
    Ok((file, path))
}

/// Open an existing segment for appending at its end.
pub(crate) fn open_append(path: &Path) -> Result<File, StorageError> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io_err("open for append", path))
}

/// Append bytes to a segment (one `write` for a whole group).
pub(crate) fn write_all(file: &mut File, path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    file.write_all(bytes).map_err(io_err("write", path))
}

/// The segments in `dir`, sorted by first lsn. Names that look like segments but do not parse
/// are an error (never silently ignored).
pub(crate) fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StorageError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err("list directory", dir))? {
        let entry = entry.map_err(io_err("list directory", dir))?;
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.ends_with(TMP_SUFFIX) {
            continue;
        }
        let Some(stem) = name.strip_suffix(EXT) else {
            continue;
        };
        let lsn = stem
            .parse::<u64>()
            .ok()
            .filter(|_| stem.len() == 20)
            .ok_or_else(|| StorageError::Corrupt {
                path: path.clone(),
                offset: 0,
                reason: "WAL file name is not <20-digit first lsn>.wal".into(),
            })?;
        out.push((lsn, path));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip_and_checks() {
        let p = Path::new("x.wal");
        let h = encode_header(42);
        assert_eq!(decode_header(p, &h).ok(), Some(42));
        let mut bad = h;
        bad[20] ^= 1;
        assert!(matches!(
            decode_header(p, &bad),
            Err(StorageError::Corrupt { .. })
        ));
        let mut newer = h;
        newer[8] = 9;
        assert!(matches!(
            decode_header(p, &newer),
            Err(StorageError::UnsupportedVersion { found: 9, .. })
        ));
        assert!(matches!(
            decode_header(p, b"NOTSHOAL...."),
            Err(StorageError::BadMagic { .. })
        ));
    }

    #[test]
    fn create_and_list_in_lsn_order() {
        let dir = tempfile::tempdir().unwrap();
        create(dir.path(), 11).unwrap();
        create(dir.path(), 2).unwrap();
        assert!(create(dir.path(), 2).is_err(), "never overwrites a segment");
        let names: Vec<u64> = list(dir.path()).unwrap().into_iter().map(|s| s.0).collect();
        assert_eq!(names, vec![2, 11]);
        std::fs::write(dir.path().join("junk.wal"), b"").unwrap();
        assert!(list(dir.path()).is_err());
    }
}
