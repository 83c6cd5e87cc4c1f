//! WAL record framing.
//!
//! ```text
//! frame   = [len u32 LE][crc32 u32 LE][payload: len bytes]      crc32 (IEEE) covers the payload
//! payload = [record version u8][kind u8][flags u16 LE = 0]
//!           [lsn u64][writer_id u64][seq u64][content digest u64]   (all LE; 36 bytes)
//!           [Arrow IPC stream of the batch: schema message, one record batch, end-of-stream]
//! ```
//! A payload shorter than the 36-byte header is invalid, so a run of zero bytes (a file extended
//! but never written, as after a crash) never parses as a record.

use crate::meta::{le_u32, le_u64};

/// Bytes before the payload: length and crc.
pub(crate) const FRAME_PREFIX_LEN: usize = 8;
/// Bytes of the payload header.
pub(crate) const RECORD_HEADER_LEN: usize = 36;
/// Record format version written by this build (and the highest it reads).
pub const RECORD_FORMAT_VERSION: u8 = 1;
/// Record kind: one appended batch.
pub(crate) const KIND_APPEND: u8 = 1;
/// Largest payload a frame can carry.
pub(crate) const MAX_PAYLOAD: u64 = u32::MAX as u64;

/// The fixed fields of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    pub lsn: u64,
    pub writer_id: u64,
    pub seq: u64,
    /// Digest of the batch's logical content (see `codec::content_digest`).
    pub digest: u64,
}

/// Total frame size for an IPC body of `ipc_len` bytes.
pub(crate) fn frame_len(ipc_len: usize) -> u64 {
    (FRAME_PREFIX_LEN + RECORD_HEADER_LEN) as u64 + ipc_len as u64
}

/// Append one frame to `out`. The caller has checked the size against [`MAX_PAYLOAD`].
pub(crate) fn encode_frame(out: &mut Vec<u8>, h: &RecordHeader, ipc: &[u8]) {
    let payload_len = RECORD_HEADER_LEN + ipc.len();
    let start = out.len();
    out.reserve(FRAME_PREFIX_LEN + payload_len);
    out.extend_from_slice(&(payload_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]); // crc, filled below
    out.push(RECORD_FORMAT_VERSION);
    out.push(KIND_APPEND);
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&h.lsn.to_le_bytes());
    out.extend_from_slice(&h.writer_id.to_le_bytes());
    out.extend_from_slice(&h.seq.to_le_bytes());
    out.extend_from_slice(&h.digest.to_le_bytes());
    out.extend_from_slice(ipc);
    let crc = crc32fast::hash(&out[start + FRAME_PREFIX_LEN..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Result of parsing the frame at some offset.
#[derive(Debug)]
pub(crate) enum Parsed<'a> {
    /// A complete, CRC-valid record of a known version.
    Record {
        header: RecordHeader,
        ipc: &'a [u8],
        /// Offset just past this frame.
        next: usize,
    },
    /// Short or CRC-invalid: either a torn write or corruption; the caller decides which.
    Invalid { reason: String },
    /// CRC-valid, but written in a format this build does not know. Never a torn write.
    Unsupported { what: &'static str, found: u32 },
}

/// Parse the frame starting at `off` in `buf` (which ends where the file ends).
pub(crate) fn parse_frame(buf: &[u8], off: usize) -> Parsed<'_> {
    let rest = &buf[off.min(buf.len())..];
    if rest.len() < FRAME_PREFIX_LEN {
        return Parsed::Invalid {
            reason: format!(
                "truncated frame prefix ({} of {FRAME_PREFIX_LEN} bytes)",
                rest.len()
            ),
        };
    }
    let len = le_u32(&rest[0..4]) as usize;
    let crc = le_u32(&rest[4..8]);
    if len < RECORD_HEADER_LEN {
        return Parsed::Invalid {
            reason: format!("invalid payload length {len} (minimum {RECORD_HEADER_LEN})"),
        };
    }
    let Some(payload) = rest.get(FRAME_PREFIX_LEN..FRAME_PREFIX_LEN + len) else {
        return Parsed::Invalid {
            reason: format!(
                "truncated record: payload length {len}, only {} bytes left",
                rest.len() - FRAME_PREFIX_LEN
            ),
        };
    };
    let actual = crc32fast::hash(payload);
    if actual != crc {
        return Parsed::Invalid {
            reason: format!("crc mismatch (stored {crc:#010x}, computed {actual:#010x})"),
        };
    }
    let version = payload[0];
    if version == 0 || version > RECORD_FORMAT_VERSION {
        return Parsed::Unsupported {
            what: "WAL record",
            found: u32::from(version),
        };
    }
    let kind = payload[1];
    if kind != KIND_APPEND {
        return Parsed::Unsupported {
            what: "WAL record kind",
            found: u32::from(kind),
        };
    }
    Parsed::Record {
        header: RecordHeader {
            lsn: le_u64(&payload[4..12]),
            writer_id: le_u64(&payload[12..20]),
            seq: le_u64(&payload[20..28]),
            digest: le_u64(&payload[28..36]),
        },
        ipc: &payload[RECORD_HEADER_LEN..],
        next: off + FRAME_PREFIX_LEN + len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(lsn: u64) -> RecordHeader {
        RecordHeader {
            lsn,
            writer_id: 3,
            seq: 9,
            digest: 0xfeed,
        }
    }

    #[test]
    fn roundtrip_two_frames() {
        let mut buf = Vec::new();
        encode_frame(&mut buf, &header(1), b"abc");
        encode_frame(&mut buf, &header(2), b"");
        assert_eq!(buf.len() as u64, frame_len(3) + frame_len(0));
        let Parsed::Record {
            header: h,
            ipc,
            next,
        } = parse_frame(&buf, 0)
        else {
            panic!("first frame");
        };
        assert_eq!((h, ipc), (header(1), &b"abc"[..]));
        let Parsed::Record {
            header: h,
            next: end,
            ..
        } = parse_frame(&buf, next)
        else {
            panic!("second frame");
        };
        assert_eq!((h.lsn, end), (2, buf.len()));
    }

    #[test]
    fn zeros_short_and_flipped_are_invalid() {
        assert!(matches!(parse_frame(&[0; 64], 0), Parsed::Invalid { .. }));
        let mut buf = Vec::new();
        encode_frame(&mut buf, &header(1), b"abcdef");
        assert!(matches!(
            parse_frame(&buf[..buf.len() - 1], 0),
            Parsed::Invalid { .. }
        ));
        let last = buf.len() - 1;
        buf[last] ^= 0x40;
        assert!(matches!(parse_frame(&buf, 0), Parsed::Invalid { .. }));
    }

    #[test]
    fn newer_version_is_unsupported_not_torn() {
        let mut buf = Vec::new();
        encode_frame(&mut buf, &header(1), b"x");
        buf[8] = RECORD_FORMAT_VERSION + 1;
        let crc = crc32fast::hash(&buf[8..]);
        buf[4..8].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            parse_frame(&buf, 0),
            Parsed::Unsupported { found: 2, .. }
        ));
    }
}
