//! Counters for tests, benchmarks and metrics.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A snapshot of a store's counters since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStats {
    /// Records applied (appended or applied at an lsn).
    pub applied: u64,
    /// Requests answered `Duplicate`.
    pub duplicates: u64,
    /// Commit groups processed by the writer thread.
    pub groups: u64,
    /// fdatasync calls on WAL segments (group commits plus segment seals).
    pub fsyncs: u64,
    /// WAL segments created since open.
    pub segments_created: u64,
    /// Bytes appended to the WAL since open.
    pub wal_bytes_written: u64,
    /// Chunk files scans skipped whole: by their MANIFEST statistics, or because pruning
    /// ruled out every row group.
    pub scan_files_pruned: u64,
    /// Row groups scans decoded.
    pub scan_row_groups_read: u64,
    /// Row groups scans skipped by their statistics.
    pub scan_row_groups_pruned: u64,
    /// Rows scans decoded from chunk files.
    pub scan_file_rows_read: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    /// [`crate::StoreOptions::on_sync`].
    on_sync: Option<crate::types::SyncHook>,
    applied: AtomicU64,
    duplicates: AtomicU64,
    groups: AtomicU64,
    fsyncs: AtomicU64,
    segments_created: AtomicU64,
    wal_bytes_written: AtomicU64,
    scan_files_pruned: AtomicU64,
    scan_row_groups_read: AtomicU64,
    scan_row_groups_pruned: AtomicU64,
    scan_file_rows_read: AtomicU64,
}

impl Counters {
    pub(crate) fn new(on_sync: Option<crate::types::SyncHook>) -> Self {
        Self {
            on_sync,
            ..Self::default()
        }
    }
    pub(crate) fn add_applied(&self, n: u64, bytes: u64) {
        self.applied.fetch_add(n, Relaxed);
        self.wal_bytes_written.fetch_add(bytes, Relaxed);
    }
    pub(crate) fn add_duplicate(&self) {
        self.duplicates.fetch_add(1, Relaxed);
    }
    pub(crate) fn add_group(&self) {
        self.groups.fetch_add(1, Relaxed);
    }
    pub(crate) fn add_fsync(&self, took: std::time::Duration) {
        self.fsyncs.fetch_add(1, Relaxed);
        if let Some(hook) = &self.on_sync {
            hook(took);
        }
    }
    pub(crate) fn add_segment(&self) {
        self.segments_created.fetch_add(1, Relaxed);
    }
    pub(crate) fn add_files_pruned(&self, n: u64) {
        self.scan_files_pruned.fetch_add(n, Relaxed);
    }
    pub(crate) fn add_row_groups(&self, read: u64, pruned: u64) {
        self.scan_row_groups_read.fetch_add(read, Relaxed);
        self.scan_row_groups_pruned.fetch_add(pruned, Relaxed);
    }
    pub(crate) fn add_file_rows_read(&self, n: u64) {
        self.scan_file_rows_read.fetch_add(n, Relaxed);
    }
    pub(crate) fn snapshot(&self) -> StoreStats {
        StoreStats {
            applied: self.applied.load(Relaxed),
            duplicates: self.duplicates.load(Relaxed),
            groups: self.groups.load(Relaxed),
            fsyncs: self.fsyncs.load(Relaxed),
            segments_created: self.segments_created.load(Relaxed),
            wal_bytes_written: self.wal_bytes_written.load(Relaxed),
            scan_files_pruned: self.scan_files_pruned.load(Relaxed),
            scan_row_groups_read: self.scan_row_groups_read.load(Relaxed),
            scan_row_groups_pruned: self.scan_row_groups_pruned.load(Relaxed),
            scan_file_rows_read: self.scan_file_rows_read.load(Relaxed),
        }
    }
}
