//! Reading flushed records back from the WAL for `records_since` (catch-up of a replica that is
//! behind the flushed lsn). The segments below the flushed lsn stay on disk until the caller
//! truncates them, so records there are read from disk, frame by frame, skipping the payloads
//! of records before the one asked for.

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read};
use std::path::Path;

use arrow::datatypes::SchemaRef;

use super::record::{FRAME_PREFIX_LEN, RECORD_FORMAT_VERSION, RECORD_HEADER_LEN};
use super::segment::{self, SEGMENT_HEADER_LEN};
use crate::codec;
use crate::error::{StorageError, io_err};
use crate::meta::{le_u32, le_u64};
use crate::types::Record;

/// Append to `out` the records with lsn in `after+1..=upto`, in lsn order, while the total IPC
/// size stays within `max_bytes` (at least one record). `bytes` counts what `out` holds.
/// [`StorageError::BelowRetainedLog`] if the WAL no longer holds `after + 1`.
pub(crate) fn records_between(
    dir: &Path,
    schema: &SchemaRef,
    after: u64,
    upto: u64,
    max_bytes: usize,
    out: &mut Vec<Record>,
    bytes: &mut usize,
) -> Result<(), StorageError> {
    let segs = segment::list(dir)?;
    let below = |first_retained: u64| StorageError::BelowRetainedLog {
        dir: dir.to_path_buf(),
        lsn: after + 1,
        first_retained,
    };
    let Some(start) = segs.iter().rposition(|(first, _)| *first <= after + 1) else {
        return Err(below(segs.first().map_or(upto + 1, |s| s.0)));
    };
    let mut want = after + 1;
    for (i, (first, path)) in segs.iter().enumerate().skip(start) {
        if want > upto {
            break;
        }
        if *first > want {
            // A gap: the WAL lost records that are only in a chunk file now.
            return Err(below(*first));
        }
        let Some(mut r) = open_segment(path)? else {
            // Truncated meanwhile.
            return Err(below(segs.get(i + 1).map_or(upto + 1, |s| s.0)));
        };
        let mut off = SEGMENT_HEADER_LEN as u64;
        let corrupt = |off: u64, reason: String| StorageError::Corrupt {
            path: path.to_path_buf(),
            offset: off,
            reason,
        };
        while want <= upto {
            let Some(prefix) = read_prefix(&mut r, path)? else {
                break;
            };
            let len = le_u32(&prefix[0..4]) as usize;
            let crc = le_u32(&prefix[4..8]);
            let h = &prefix[FRAME_PREFIX_LEN..];
            if len < RECORD_HEADER_LEN || h[0] != RECORD_FORMAT_VERSION {
                return Err(corrupt(off, format!("bad frame (payload length {len})")));
            }
            let lsn = le_u64(&h[4..12]);
            let rest = len - RECORD_HEADER_LEN;
            if lsn < want {
                r.seek_relative(rest as i64).map_err(io_err("seek", path))?;
                off += (FRAME_PREFIX_LEN + len) as u64;
                continue;
            }
            if lsn != want {
                return Err(corrupt(
                    off,
                    format!("record has lsn {lsn}, expected {want}"),
                ));
            }
            if !out.is_empty() && bytes.saturating_add(rest) > max_bytes {
                return Ok(());
            }
            let mut ipc = vec![0u8; rest];
            r.read_exact(&mut ipc).map_err(io_err("read", path))?;
            let mut hasher = crc32fast::Hasher::new();
            hasher.update(h);
            hasher.update(&ipc);
            if hasher.finalize() != crc {
                return Err(corrupt(off, "crc mismatch".into()));
            }
            let batch = codec::decode_batch(&ipc)
                .map_err(|e| corrupt(off, format!("undecodable Arrow IPC batch: {e}")))
                .and_then(|b| {
                    codec::conform(schema, b).map_err(|d| {
                        corrupt(off, format!("batch does not match the store schema: {d}"))
                    })
                })?;
            *bytes = bytes.saturating_add(rest);
            out.push(Record {
                lsn,
                writer_id: le_u64(&h[12..20]),
                seq: le_u64(&h[20..28]),
                batch,
            });
            want += 1;
            off += (FRAME_PREFIX_LEN + len) as u64;
        }
    }
    if want <= upto {
        return Err(below(upto + 1));
    }
    Ok(())
}

/// The replica checksum right after `to`, chained from `checksum` at lsn `from` (`from <= to`)
/// over the headers of the records `from+1..=to` in the WAL, without reading their batches.
/// `None` if the WAL no longer holds them all. Frame CRCs are not checked (the payload is not
/// read): a damaged header gives a wrong checksum or an lsn out of sequence (`None`), which a
/// caller comparing replicas takes for a divergence, the safe side.
pub(crate) fn chain_through(
    dir: &Path,
    from: u64,
    mut checksum: u64,
    to: u64,
) -> Result<Option<u64>, StorageError> {
    let segs = segment::list(dir)?;
    let Some(start) = segs.iter().rposition(|(first, _)| *first <= from + 1) else {
        return Ok(None);
    };
    let mut want = from + 1;
    for (first, path) in segs.iter().skip(start) {
        if want > to {
            break;
        }
        if *first > want {
            return Ok(None);
        }
        let Some(mut r) = open_segment(path)? else {
            return Ok(None);
        };
        while want <= to {
            let Some(prefix) = read_prefix(&mut r, path)? else {
                break;
            };
            let len = le_u32(&prefix[0..4]) as usize;
            let h = &prefix[FRAME_PREFIX_LEN..];
            if len < RECORD_HEADER_LEN {
                return Ok(None);
            }
            let lsn = le_u64(&h[4..12]);
            r.seek_relative((len - RECORD_HEADER_LEN) as i64)
                .map_err(io_err("seek", path))?;
            if lsn < want {
                continue;
            }
            if lsn != want {
                return Ok(None);
            }
            checksum = crate::index::chain(
                checksum,
                lsn,
                le_u64(&h[12..20]),
                le_u64(&h[20..28]),
                le_u64(&h[28..36]),
            );
            want += 1;
        }
    }
    Ok((want > to).then_some(checksum))
}

/// A WAL segment opened for reading past its header; `None` if it was deleted (truncated).
fn open_segment(path: &Path) -> Result<Option<BufReader<File>>, StorageError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("open", path)(e)),
    };
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut head = [0u8; SEGMENT_HEADER_LEN];
    r.read_exact(&mut head).map_err(io_err("read", path))?;
    segment::decode_header(path, &head)?;
    Ok(Some(r))
}

/// The next frame's prefix and record header; `None` at the end of the segment.
fn read_prefix(
    r: &mut BufReader<File>,
    path: &Path,
) -> Result<Option<[u8; FRAME_PREFIX_LEN + RECORD_HEADER_LEN]>, StorageError> {
    let mut prefix = [0u8; FRAME_PREFIX_LEN + RECORD_HEADER_LEN];
    match r.read_exact(&mut prefix) {
        Ok(()) => Ok(Some(prefix)),
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(io_err("read", path)(e)),
    }
}

/// The byte offset in the segment at `path` (records from `first`) of the frame of record
/// `lsn`: where the segment is cut so that it ends right before that record. The offset past
/// the last frame if the segment ends at `lsn - 1`.
pub(crate) fn frame_offset(path: &Path, first: u64, lsn: u64) -> Result<u64, StorageError> {
    let corrupt = |offset: u64, reason: String| StorageError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    let Some(mut r) = open_segment(path)? else {
        return Err(corrupt(0, "WAL segment vanished while it was cut".into()));
    };
    let mut off = SEGMENT_HEADER_LEN as u64;
    let mut want = first;
    while want < lsn {
        let Some(prefix) = read_prefix(&mut r, path)? else {
            break;
        };
        let len = le_u32(&prefix[0..4]) as usize;
        let h = &prefix[FRAME_PREFIX_LEN..];
        if len < RECORD_HEADER_LEN || le_u64(&h[4..12]) != want {
            return Err(corrupt(off, format!("expected the frame of record {want}")));
        }
        r.seek_relative((len - RECORD_HEADER_LEN) as i64)
            .map_err(io_err("seek", path))?;
        off += (FRAME_PREFIX_LEN + len) as u64;
        want += 1;
    }
    if want < lsn {
        return Err(corrupt(off, format!("segment ends before record {lsn}")));
    }
    Ok(off)
}
