//! The `STORE` file: marks a directory as a chunk store, carries the store format version and
//! the chunk's Arrow schema. Created whole (temp + fsync + rename + fsync(dir)); replaced whole
//! once, by the first flush, to raise the format from 1 to 2.
//!
//! Layout (little endian):
//! ```text
//! [magic "SHOALCHK" 8][format version u32][crc32 of body u32][body len u32][body]
//! body (versions 1 and 2) = Arrow IPC stream holding only the schema message
//! ```
//! Format 1: the WAL holds every record. Format 2: the records up to the MANIFEST's flushed lsn
//! are in chunk files, the WAL below it may be truncated. The body is the same; the version
//! tells a reader what else to read, and makes a build that knows only format 1 refuse the
//! directory by name ([`StorageError::UnsupportedVersion`]) instead of replaying a WAL whose
//! beginning may be gone. The version is checked before anything else.

use std::path::Path;

use arrow::datatypes::SchemaRef;

use crate::codec;
use crate::error::{StorageError, arrow_err, io_err};
use crate::fsutil;

/// Name of the store marker/schema file.
pub const STORE_FILE: &str = "STORE";
/// Name of the lock file held while a `ChunkStore` has the directory open.
pub const LOCK_FILE: &str = "LOCK";
/// Highest store format version this build reads (and writes, once a store is flushed).
pub const STORE_FORMAT_VERSION: u32 = 2;
/// Format of a store that was never flushed: what [`crate::ChunkStore::create`] writes, and what
/// every earlier release reads.
pub const STORE_FORMAT_V1: u32 = 1;
/// Format of a store with chunk files and a MANIFEST (written by the first flush).
pub const STORE_FORMAT_V2: u32 = 2;

const MAGIC: &[u8; 8] = b"SHOALCHK";
const PREFIX_LEN: usize = 8 + 4 + 4 + 4;

/// Write the `STORE` file (whole, durably) in format `version`; returns its size.
pub(crate) fn write_store_file(
    dir: &Path,
    schema: &SchemaRef,
    version: u32,
) -> Result<u64, StorageError> {
    let body = codec::encode_schema(schema).map_err(arrow_err("encode schema", dir))?;
    let len = u32::try_from(body.len()).map_err(|_| StorageError::InvalidOptions {
        dir: dir.to_path_buf(),
        detail: format!("schema encodes to {} bytes, too large", body.len()),
    })?;
    let mut out = Vec::with_capacity(PREFIX_LEN + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&body);
    fsutil::write_atomic(dir, STORE_FILE, &out)?;
    Ok(out.len() as u64)
}

/// Read and verify the `STORE` file; returns the chunk schema and the format version.
pub(crate) fn read_store_file(dir: &Path) -> Result<(SchemaRef, u32), StorageError> {
    let path = dir.join(STORE_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StorageError::NotFound {
                dir: dir.to_path_buf(),
            });
        }
        Err(e) => return Err(io_err("read", &path)(e)),
    };
    let corrupt = |reason: &str| StorageError::Corrupt {
        path: path.clone(),
        offset: 0,
        reason: reason.to_string(),
    };
    if bytes.len() < 12 || &bytes[..8] != MAGIC {
        return Err(StorageError::BadMagic {
            path: path.clone(),
            what: "chunk store",
        });
    }
    let version = le_u32(&bytes[8..12]);
    if version == 0 || version > STORE_FORMAT_VERSION {
        return Err(StorageError::UnsupportedVersion {
            path,
            what: "store",
            found: version,
            supported: STORE_FORMAT_VERSION,
        });
    }
    if bytes.len() < PREFIX_LEN {
        return Err(corrupt("STORE file truncated"));
    }
    let crc = le_u32(&bytes[12..16]);
    let len = le_u32(&bytes[16..20]) as usize;
    let body = bytes
        .get(PREFIX_LEN..PREFIX_LEN + len)
        .ok_or_else(|| corrupt("STORE file truncated"))?;
    if crc32fast::hash(body) != crc {
        return Err(corrupt("STORE file crc mismatch"));
    }
    let schema = codec::decode_schema(body).map_err(arrow_err("decode schema", &path))?;
    Ok((schema, version))
}

pub(crate) fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

pub(crate) fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}
