//! Copying a replica whole (storage format 2), for a replica too far behind its primary to catch
//! up record by record (the primary truncated the WAL it would need) or one that diverged.
//!
//! The primary [`ChunkStore::export_snapshot`]s its committed flush state: `STORE`, every
//! chunk file the MANIFEST lists (opened under the flush lock, so a compaction deleting them
//! afterwards does not matter: Linux keeps an open file readable), and a MANIFEST for the copy.
//! That MANIFEST is the primary's with the dedup state cut back to the flushed lsn `F` (the
//! copy holds no record after `F`; see `DedupSnapshot::through`) and `wal_base = (F, checksum
//! at F)` (the copy's WAL starts empty at `F + 1`). The bytes go out file after file, in parts
//! of at most [`SNAPSHOT_PART_BYTES`], each file's xxh3-64 computed as it is read.
//!
//! The replica writes them with a [`SnapshotInstall`] into the staging directory
//! `<dir>.incoming` (next to the store's directory `<dir>`, so the store stays open and untouched
//! meanwhile), checks each file's size and xxh3 against the sender's, checks that the MANIFEST
//! lists exactly the chunk files received, then commits and swaps:
//!
//! ```text
//! 1. staged    <dir>.incoming/{STORE, f/*} written, verified, fsync'd (files and directories)
//! 2. MANIFEST  <dir>.incoming/MANIFEST (tmp, fsync, rename, fsync)       <- the commit point
//! 3. aside     <dir> renamed to <dir>.replaced (the caller closed the store first)
//! 4. swap      <dir>.incoming renamed to <dir>
//! 5. cleanup   <dir>.replaced deleted
//! ```
//!
//! [`ChunkStore::finish_install`] (run by `open`, and by a data node before it looks at its
//! replica directories) makes a crash anywhere land on one side: before step 2 the staging
//! directory is deleted and the old replica opens as it was; from step 2 on the install is
//! rolled forward (steps 3–5, each skipped when already done) and the copy opens at `F`. Every
//! step is durable (directory fsync'd) before the next. The store then continues from `(F,
//! rows, checksum)` and the dedup state at `F`, exactly as a replica that applied records
//! 1..=F and flushed them, so the primary's records after `F` follow by `apply_at`.

mod export;
mod install;

use std::path::{Path, PathBuf};

pub use export::SnapshotExport;
pub use install::{SnapshotInstall, StagedSnapshot};
pub(crate) use install::{discard_before_create, recover};

/// Largest part [`SnapshotExport::next_part`] returns by default (callers may ask for less).
pub const SNAPSHOT_PART_BYTES: usize = 1 << 20;

/// One file of a snapshot, in the order its bytes are sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    /// Path inside the store directory: `STORE`, `MANIFEST`, or `f/<chunk file>`.
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// Where a snapshot for the store in `dir` is staged.
fn staging_dir(dir: &Path) -> PathBuf {
    sibling(dir, "incoming")
}

/// Where the replaced store is put aside during the swap.
fn replaced_dir(dir: &Path) -> PathBuf {
    sibling(dir, "replaced")
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(suffix);
    dir.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_and_replaced_directories_sit_next_to_the_store() {
        let dir = Path::new("/v/chunks/17");
        assert_eq!(staging_dir(dir), Path::new("/v/chunks/17.incoming"));
        assert_eq!(replaced_dir(dir), Path::new("/v/chunks/17.replaced"));
    }
}
