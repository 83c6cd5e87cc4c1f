//! The primary's side: [`ChunkStore::export_snapshot`] and the bytes it sends.

use std::fs::File;
use std::io::{Cursor, Read};

use xxhash_rust::xxh3::Xxh3;

use super::SnapshotFile;
use crate::error::{StorageError, io_err};
use crate::manifest::{self, FILES_DIR, MANIFEST_FILE};
use crate::meta::STORE_FILE;
use crate::store::{ChunkStore, blocking};

/// A replica's committed flush state, ready to be sent (see the module docs of `snapshot`):
/// the files are open, so what is sent does not change whatever the store does meanwhile.
pub struct SnapshotExport {
    /// The flushed lsn: the copy holds records 1..=`flushed_lsn`.
    pub flushed_lsn: u64,
    /// Rows of those records.
    pub rows: u64,
    /// The replica checksum right after `flushed_lsn`.
    pub checksum: u64,
    files: Vec<SnapshotFile>,
    sources: Vec<Box<dyn Read + Send>>,
    /// The file being read, and how much of it is left.
    at: usize,
    left: u64,
    hasher: Xxh3,
    hashes: Vec<u64>,
}

impl std::fmt::Debug for SnapshotExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotExport")
            .field("flushed_lsn", &self.flushed_lsn)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ChunkStore {
    /// The committed flush state for a replica that must be copied whole: `STORE`, the chunk
    /// files, and a MANIFEST for the copy (position and dedup state at the flushed lsn). `None`
    /// when the store was never flushed (its WAL then holds every record, and record catch-up
    /// serves any replica). Holds the flush lock only to open the files.
    pub async fn export_snapshot(&self) -> Result<Option<SnapshotExport>, StorageError> {
        let shared = self.shared_arc();
        blocking(self.dir(), move || {
            let st = shared.flushed_if_open()?;
            if st.manifest_bytes == 0 {
                return Ok(None);
            }
            let dir = &shared.dir;
            let m = &st.manifest;
            let mut files = Vec::with_capacity(m.files.len() + 2);
            let mut sources: Vec<Box<dyn Read + Send>> = Vec::with_capacity(files.capacity());
            let store = dir.join(STORE_FILE);
            let store = std::fs::read(&store).map_err(io_err("read", &store))?;
            files.push(SnapshotFile {
                name: STORE_FILE.into(),
                bytes: store.len() as u64,
            });
            sources.push(Box::new(Cursor::new(store)));
            for f in &m.files {
                let path = dir.join(FILES_DIR).join(&f.name);
                let file = File::open(&path).map_err(io_err("open", &path))?;
                files.push(SnapshotFile {
                    name: format!("{FILES_DIR}/{}", f.name),
                    bytes: f.bytes,
                });
                sources.push(Box::new(file));
            }
            let mut copy = m.clone();
            copy.dedup = m.dedup.through(m.flushed_lsn);
            copy.dedup_lsn = m.flushed_lsn;
            copy.wal_base = Some([m.flushed_lsn, m.checksum]);
            let copy = manifest::encode(dir, &copy)?;
            files.push(SnapshotFile {
                name: MANIFEST_FILE.into(),
                bytes: copy.len() as u64,
            });
            sources.push(Box::new(Cursor::new(copy)));
            let left = files[0].bytes;
            Ok(Some(SnapshotExport {
                flushed_lsn: m.flushed_lsn,
                rows: m.rows,
                checksum: m.checksum,
                files,
                sources,
                at: 0,
                left,
                hasher: Xxh3::new(),
                hashes: Vec::new(),
            }))
        })
        .await
    }
}

impl SnapshotExport {
    /// The files, in the order [`SnapshotExport::next_part`] reads them.
    pub fn files(&self) -> &[SnapshotFile] {
        &self.files
    }

    /// Bytes of all files.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }

    /// The next at most `max` bytes (> 0), never spanning two files; `None` once every file
    /// was read. Blocking I/O: call it off the async runtime.
    pub fn next_part(&mut self, max: usize) -> Result<Option<Vec<u8>>, StorageError> {
        while self.left == 0 {
            if self.at == self.files.len() {
                return Ok(None);
            }
            self.end_file();
        }
        let n = usize::try_from(self.left).map_or(max, |left| left.min(max));
        let mut part = vec![0u8; n];
        self.sources[self.at]
            .read_exact(&mut part)
            .map_err(io_err("read", &self.files[self.at].name))?;
        self.hasher.update(&part);
        self.left -= n as u64;
        if self.left == 0 {
            self.end_file();
        }
        Ok(Some(part))
    }

    /// Each file's xxh3-64, in file order; complete once `next_part` answered `None`.
    pub fn hashes(&self) -> &[u64] {
        &self.hashes
    }

    fn end_file(&mut self) {
        self.hashes.push(self.hasher.digest());
        self.hasher.reset();
        self.at += 1;
        self.left = self.files.get(self.at).map_or(0, |f| f.bytes);
    }
}
