//! The active end of the WAL: appends groups of frames, rolls segments, fdatasyncs.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::replay::SegmentState;
use super::segment::{self, SEGMENT_HEADER_LEN};
use crate::error::{StorageError, io_err};
use crate::fsutil;
use crate::stats::Counters;

/// Where the WAL ended before a group was written: what [`WalWriter::cut_back`] returns to.
pub(crate) struct Mark {
    first_lsn: u64,
    path: PathBuf,
    seg_len: u64,
    seg_records: u64,
    sealed_bytes: u64,
}

/// One frame inside a group buffer.
pub(crate) struct FrameSpan {
    pub lsn: u64,
    pub start: usize,
    pub end: usize,
}

/// Appends to the last segment; owned by the group-commit thread.
pub(crate) struct WalWriter {
    dir: PathBuf,
    segment_bytes: u64,
    file: File,
    /// First lsn of the last segment (`path`).
    first_lsn: u64,
    path: PathBuf,
    seg_len: u64,
    seg_records: u64,
    sealed_bytes: u64,
}

impl WalWriter {
    /// Continue the WAL found by replay, or start it with a first segment at `next_lsn`. If the
    /// WAL ends below `next_lsn - 1` (its tail was lost after those records were flushed to a
    /// chunk file, which only `data_sync = false` allows), the last segment is sealed and a new
    /// one starts at `next_lsn`, so lsns stay dense inside every segment.
    pub(crate) fn resume(
        dir: &Path,
        segment_bytes: u64,
        segments: &[SegmentState],
        next_lsn: u64,
    ) -> Result<Self, StorageError> {
        let mut sealed_bytes = segments.iter().rev().skip(1).map(|s| s.len).sum::<u64>();
        let (file, first_lsn, path, seg_len, seg_records) = match segments.last() {
            Some(last) if last.last_lsn + 1 != next_lsn => {
                let old = segment::open_append(&last.path)?;
                old.sync_data()
                    .map_err(io_err("fdatasync before sealing", &last.path))?;
                sealed_bytes += last.len;
                let (f, p) = segment::create(dir, next_lsn)?;
                tracing::warn!(segment = %p.display(), after = last.last_lsn,
                    "WAL ended below the flushed lsn; started a new segment");
                (f, next_lsn, p, SEGMENT_HEADER_LEN as u64, 0)
            }
            Some(last) => (
                segment::open_append(&last.path)?,
                last.first_lsn,
                last.path.clone(),
                last.len,
                next_lsn - last.first_lsn,
            ),
            None => {
                let (f, p) = segment::create(dir, next_lsn)?;
                (f, next_lsn, p, SEGMENT_HEADER_LEN as u64, 0)
            }
        };
        Ok(WalWriter {
            dir: dir.to_path_buf(),
            segment_bytes,
            file,
            first_lsn,
            path,
            seg_len,
            seg_records,
            sealed_bytes,
        })
    }

    /// Bytes of all segments.
    pub(crate) fn bytes_on_disk(&self) -> u64 {
        self.sealed_bytes + self.seg_len
    }

    /// Write the frames in `buf` (described by `spans`, in lsn order), rolling to a new segment
    /// before a frame that would push a non-empty segment past `segment_bytes`. A segment being
    /// sealed is fdatasync'd before its successor is created, whatever `sync` says, so sealed
    /// segments never have torn tails. With `sync`, the last segment is fdatasync'd at the end.
    pub(crate) fn write_group(
        &mut self,
        buf: &[u8],
        spans: &[FrameSpan],
        sync: bool,
        counters: &Counters,
    ) -> Result<(), StorageError> {
        let mut pending_from = 0usize;
        let mut pending_len = 0u64;
        for span in spans {
            let flen = (span.end - span.start) as u64;
            if self.seg_records > 0 && self.seg_len + pending_len + flen > self.segment_bytes {
                self.flush(&buf[pending_from..span.start])?;
                self.sync(counters)?;
                self.sealed_bytes += self.seg_len;
                let (file, path) = segment::create(&self.dir, span.lsn)?;
                tracing::debug!(segment = %path.display(), "rolled WAL segment");
                counters.add_segment();
                self.file = file;
                self.first_lsn = span.lsn;
                self.path = path;
                self.seg_len = SEGMENT_HEADER_LEN as u64;
                self.seg_records = 0;
                pending_from = span.start;
                pending_len = 0;
            }
            pending_len += flen;
            self.seg_records += 1;
        }
        self.flush(&buf[pending_from..])?;
        if sync {
            self.sync(counters)?;
        }
        Ok(())
    }

    /// Seal the last segment (fdatasync) and start a new one at the next lsn, unless it holds no
    /// record yet (a flush: the records it freezes then end a segment, which open and
    /// `truncate_through` can skip or delete whole). Everything written is durable afterwards.
    pub(crate) fn roll(&mut self, counters: &Counters) -> Result<(), StorageError> {
        self.sync(counters)?;
        if self.seg_records == 0 {
            return Ok(());
        }
        let next = self.first_lsn + self.seg_records;
        let (file, path) = segment::create(&self.dir, next)?;
        counters.add_segment();
        self.sealed_bytes += self.seg_len;
        self.file = file;
        self.first_lsn = next;
        self.path = path;
        self.seg_len = SEGMENT_HEADER_LEN as u64;
        self.seg_records = 0;
        Ok(())
    }

    /// Delete the sealed segments whose records all have lsn ≤ `through`, oldest first (a
    /// segment ends just below the next one's first lsn; the last segment is never deleted).
    /// Returns the first lsn of the oldest segment left.
    pub(crate) fn truncate_through(&mut self, through: u64) -> Result<u64, StorageError> {
        let segs = segment::list(&self.dir)?;
        let mut removed = false;
        let mut first_retained = self.first_lsn;
        for (i, (first, path)) in segs.iter().enumerate() {
            let Some((next_first, _)) = segs.get(i + 1) else {
                first_retained = *first;
                break;
            };
            if *path == self.path || next_first - 1 > through {
                first_retained = *first;
                break;
            }
            let len = std::fs::metadata(path).map_err(io_err("stat", path))?.len();
            std::fs::remove_file(path).map_err(io_err("remove flushed WAL segment", path))?;
            tracing::debug!(segment = %path.display(), "removed flushed WAL segment");
            self.sealed_bytes = self.sealed_bytes.saturating_sub(len);
            removed = true;
        }
        if removed {
            fsutil::sync_dir(&self.dir)?;
        }
        Ok(first_retained)
    }

    /// Where the WAL ends now; taken before writing a group.
    pub(crate) fn mark(&self) -> Mark {
        Mark {
            first_lsn: self.first_lsn,
            path: self.path.clone(),
            seg_len: self.seg_len,
            seg_records: self.seg_records,
            sealed_bytes: self.sealed_bytes,
        }
    }

    /// Where the WAL ended right after record `lsn` (`lsn` ≤ the last lsn written, and the
    /// segments from `lsn + 1` on still there): the mark [`WalWriter::cut_back`] cuts a replica's
    /// diverged tail back to.
    pub(crate) fn mark_after(&self, lsn: u64) -> Result<Mark, StorageError> {
        let segs = segment::list(&self.dir)?;
        let idx = segs
            .iter()
            .rposition(|(first, _)| *first <= lsn + 1)
            .ok_or_else(|| StorageError::Corrupt {
                path: self.dir.clone(),
                offset: 0,
                reason: format!("no WAL segment holds record {}", lsn + 1),
            })?;
        let (first, path) = &segs[idx];
        let mut sealed_bytes = 0;
        for (_, p) in &segs[..idx] {
            sealed_bytes += std::fs::metadata(p).map_err(io_err("stat", p))?.len();
        }
        Ok(Mark {
            first_lsn: *first,
            path: path.clone(),
            seg_len: super::read::frame_offset(path, *first, lsn + 1)?,
            seg_records: lsn + 1 - first,
            sealed_bytes,
        })
    }

    /// After a failed [`WalWriter::write_group`], or to cut a diverged tail
    /// ([`WalWriter::mark_after`]): cut everything written since `mark`. Segments
    /// created since are deleted, newest first, then the segment that was last at the mark is
    /// truncated back to its length then and fdatasync'd. After a failed fdatasync the page
    /// cache may hold bytes the disk does not; once they are cut, a reopen in this boot cannot
    /// replay records that were never durable (with `data_sync`, everything before the mark
    /// was fdatasync'd by an earlier group).
    pub(crate) fn cut_back(&mut self, mark: &Mark) -> Result<(), StorageError> {
        let newer: Vec<PathBuf> = segment::list(&self.dir)?
            .into_iter()
            .filter(|(first, _)| *first > mark.first_lsn)
            .map(|(_, p)| p)
            .collect();
        for p in newer.iter().rev() {
            std::fs::remove_file(p).map_err(io_err("remove segment of a failed group", p))?;
        }
        if !newer.is_empty() {
            fsutil::sync_dir(&self.dir)?;
        }
        if self.path != mark.path {
            self.file = segment::open_append(&mark.path)?;
            self.path = mark.path.clone();
            self.first_lsn = mark.first_lsn;
        }
        self.file
            .set_len(mark.seg_len)
            .map_err(io_err("truncate the failed group from", &self.path))?;
        self.file
            .sync_data()
            .map_err(io_err("fdatasync after truncating", &self.path))?;
        self.seg_len = mark.seg_len;
        self.seg_records = mark.seg_records;
        self.sealed_bytes = mark.sealed_bytes;
        Ok(())
    }

    fn flush(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        if !bytes.is_empty() {
            segment::write_all(&mut self.file, &self.path, bytes)?;
            self.seg_len += bytes.len() as u64;
        }
        Ok(())
    }

    fn sync(&mut self, counters: &Counters) -> Result<(), StorageError> {
        let started = std::time::Instant::now();
        self.file
            .sync_data()
            .map_err(io_err("fdatasync", &self.path))?;
        counters.add_fsync(started.elapsed());
        Ok(())
    }
}
