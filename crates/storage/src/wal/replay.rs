//! Open-time replay: read every segment in lsn order, verify, decode, and cut a torn tail.
//!
//! Rules:
//! - Every segment header must verify and its first lsn must equal the file name's and continue
//!   the previous segment; every record's lsn must be the next one. Anything else is
//!   [`StorageError::Corrupt`] naming the file and offset.
//! - A short or CRC-invalid record in a **sealed** segment (any but the last) is corruption.
//! - In the **last** segment it is a torn tail: the file is truncated at that record's offset
//!   (and fsync'd) and the dropped byte count is reported — unless a CRC-valid record with a
//!   later lsn follows it. That is reported as corruption: it may be damage to acknowledged
//!   records, and only the caller knows whether an in-sync peer can refill them (then it opens
//!   with `TailPolicy::TruncateAtFirstBadRecord`).
//! - A CRC-valid record with an unknown version or kind is refused
//!   ([`StorageError::UnsupportedVersion`]), never truncated.
//! - With a flushed lsn `F` (storage format 2), segments whose records are all ≤ `F` (the next
//!   segment starts at or below `F + 1`) are not read at all, and the records ≤ `F` of the
//!   first segment read are checked (CRC, lsn) but not decoded: they are in chunk files. The
//!   first segment read must start at or below `F + 1`, else records are missing.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use super::record::{self, FRAME_PREFIX_LEN, Parsed, RECORD_HEADER_LEN, RecordHeader};
use super::segment::{self, SEGMENT_HEADER_LEN};
use crate::codec;
use crate::error::{StorageError, io_err};
use crate::meta::le_u64;

/// One record read back from the WAL.
pub(crate) struct ReplayedRecord {
    pub header: RecordHeader,
    pub batch: RecordBatch,
    pub ipc_len: usize,
}

/// A segment as found (after any truncation).
pub(crate) struct SegmentState {
    pub first_lsn: u64,
    pub path: PathBuf,
    pub len: u64,
    /// Lsn of its last record (`first_lsn - 1` when it holds none).
    pub last_lsn: u64,
}

/// Everything replay found.
pub(crate) struct Replay {
    /// The records after the flushed lsn.
    pub records: Vec<ReplayedRecord>,
    pub segments: Vec<SegmentState>,
    pub torn_tail_bytes: u64,
    /// Segments skipped without being read (all their records were flushed).
    pub skipped_segments: u64,
}

/// What to do with a bad record in the last segment that is followed by a valid one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TailPolicy {
    /// Refuse to open ([`StorageError::Corrupt`]).
    Strict,
    /// Truncate there anyway (drops the later records too).
    TruncateAtFirstBadRecord,
}

/// Offset and lsn of the first CRC-valid record after `from` whose lsn is above `expected`.
/// Candidate offsets are filtered on the version, kind and lsn fields before any CRC is computed,
/// so this is a linear scan.
fn later_record(buf: &[u8], from: usize, expected: u64) -> Option<(usize, u64)> {
    let min = FRAME_PREFIX_LEN + RECORD_HEADER_LEN;
    let last = buf.len().checked_sub(min)?;
    let max_lsn = expected.saturating_add((buf.len() / min) as u64);
    (from..=last).find_map(|o| {
        let p = &buf[o..];
        if p[8] != record::RECORD_FORMAT_VERSION || p[9] != record::KIND_APPEND {
            return None;
        }
        let lsn = le_u64(&p[12..20]);
        if lsn <= expected || lsn > max_lsn {
            return None;
        }
        match record::parse_frame(buf, o) {
            Parsed::Record { header, .. } if header.lsn == lsn => Some((o, lsn)),
            _ => None,
        }
    })
}

/// Replay the segments of the store in `dir`, returning the records after `flushed` (0: all).
pub(crate) fn replay(
    dir: &Path,
    schema: &SchemaRef,
    policy: TailPolicy,
    flushed: u64,
) -> Result<Replay, StorageError> {
    let listed = segment::list(dir)?;
    let mut out = Replay {
        records: Vec::new(),
        segments: Vec::new(),
        torn_tail_bytes: 0,
        skipped_segments: 0,
    };
    let mut expected = 1u64;
    let mut first_read = true;
    for (i, (name_lsn, path)) in listed.iter().enumerate() {
        let is_last = i + 1 == listed.len();
        if let Some((next_first, _)) = listed.get(i + 1)
            && *next_first <= flushed.saturating_add(1)
        {
            let len = std::fs::metadata(path).map_err(io_err("stat", path))?.len();
            out.segments.push(SegmentState {
                first_lsn: *name_lsn,
                path: path.clone(),
                len,
                last_lsn: next_first.saturating_sub(1),
            });
            out.skipped_segments += 1;
            continue;
        }
        let buf = std::fs::read(path).map_err(io_err("read", path))?;
        let corrupt = |offset: usize, reason: String| StorageError::Corrupt {
            path: path.clone(),
            offset: offset as u64,
            reason,
        };
        let first = segment::decode_header(path, &buf)?;
        if first != *name_lsn {
            return Err(corrupt(
                0,
                format!("header says first lsn {first}, file name says {name_lsn}"),
            ));
        }
        if first_read && flushed > 0 && (1..=flushed + 1).contains(&first) {
            // The WAL may begin anywhere up to the flushed lsn (older segments were truncated).
            expected = first;
        }
        first_read = false;
        if first != expected {
            return Err(corrupt(
                0,
                format!("segment starts at lsn {first}, expected {expected} (segment missing?)"),
            ));
        }
        let mut off = SEGMENT_HEADER_LEN;
        while off < buf.len() {
            match record::parse_frame(&buf, off) {
                Parsed::Record { header, ipc, next } => {
                    if header.lsn != expected {
                        return Err(corrupt(
                            off,
                            format!("record has lsn {}, expected {expected}", header.lsn),
                        ));
                    }
                    if header.lsn <= flushed {
                        // In a chunk file: verified (CRC, lsn), not decoded.
                        expected += 1;
                        off = next;
                        continue;
                    }
                    let batch = codec::decode_batch(ipc)
                        .map_err(|e| corrupt(off, format!("undecodable Arrow IPC batch: {e}")))
                        .and_then(|b| {
                            codec::conform(schema, b).map_err(|d| {
                                corrupt(off, format!("batch does not match the store schema: {d}"))
                            })
                        })?;
                    out.records.push(ReplayedRecord {
                        header,
                        batch,
                        ipc_len: ipc.len(),
                    });
                    expected += 1;
                    off = next;
                }
                Parsed::Unsupported { what, found } => {
                    return Err(StorageError::UnsupportedVersion {
                        path: path.clone(),
                        what,
                        found,
                        supported: u32::from(record::RECORD_FORMAT_VERSION),
                    });
                }
                Parsed::Invalid { reason } => {
                    if !is_last {
                        return Err(corrupt(off, format!("{reason} in sealed segment")));
                    }
                    if policy == TailPolicy::Strict
                        && let Some((at, lsn)) = later_record(&buf, off + 1, expected)
                    {
                        return Err(corrupt(
                            off,
                            format!(
                                "{reason} (expected lsn {expected}), but a valid record with lsn \
                                 {lsn} follows at offset {at}: damaged records, not a torn tail"
                            ),
                        ));
                    }
                    let dropped = (buf.len() - off) as u64;
                    tracing::warn!(
                        file = %path.display(),
                        offset = off,
                        dropped_bytes = dropped,
                        %reason,
                        "truncating torn tail of the last WAL segment"
                    );
                    let f = OpenOptions::new()
                        .write(true)
                        .open(path)
                        .map_err(io_err("open to truncate torn tail", path))?;
                    f.set_len(off as u64)
                        .map_err(io_err("truncate torn tail", path))?;
                    f.sync_all()
                        .map_err(io_err("fsync after truncation", path))?;
                    out.torn_tail_bytes = dropped;
                    break;
                }
            }
        }
        out.segments.push(SegmentState {
            first_lsn: first,
            path: path.clone(),
            len: off.min(buf.len()) as u64,
            last_lsn: expected - 1,
        });
    }
    Ok(out)
}
