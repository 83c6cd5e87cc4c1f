//! SHA-256 computed while data streams past, so a file is read once per pass and never held
//! in memory.

use std::io::{self, Read};

use sha2::{Digest, Sha256};

/// A reader that hashes and counts every byte read through it, and remembers whether it
/// failed, so a copy error can be blamed on the right side (source or destination).
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    pub(crate) failed: bool,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
            failed: false,
        }
    }

    /// Bytes read and their SHA-256 as lowercase hex.
    pub(crate) fn finish(self) -> (u64, String) {
        (self.count, hex::encode(self.hasher.finalize()))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).inspect_err(|_| self.failed = true)?;
        let read = buf.get(..n).unwrap_or_default();
        self.hasher.update(read);
        self.count += read.len() as u64;
        Ok(n)
    }
}
