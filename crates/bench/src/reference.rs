//! Same-run references: what this machine's disk does without the database in the way.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::load::Load;

pub struct RefResult {
    pub rows: u64,
    pub bytes: u64,
    /// Time spent in write + fdatasync only (encoding excluded).
    pub elapsed: Duration,
}

/// The rows `load` writes, in its batches, encoded as Arrow IPC (outside the clock) and appended
/// to one file with an fdatasync after every batch, until `max_rows` or `max_time`.
pub fn ipc_append_fsync(
    path: &Path,
    load: &Load,
    max_rows: u64,
    max_time: Duration,
) -> Result<RefResult> {
    let mut f = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(path)?;
    let mut r = RefResult {
        rows: 0,
        bytes: 0,
        elapsed: Duration::ZERO,
    };
    let batch_rows = load.batch_rows;
    let mut seq = 0i64;
    let wall = Instant::now();
    while r.rows < max_rows && r.elapsed < max_time && wall.elapsed() < max_time * 3 {
        seq += 1;
        let batch = load.rows(seq * batch_rows as i64, batch_rows, seq % load.days)?;
        let ipc =
            shoal_catalog::rows::encode_ipc(batch.schema_ref(), std::slice::from_ref(&batch))?;
        let t = Instant::now();
        f.write_all(&ipc)?;
        f.sync_data()?;
        r.elapsed += t.elapsed();
        r.rows += batch_rows as u64;
        r.bytes += ipc.len() as u64;
    }
    drop(f);
    std::fs::remove_file(path)?;
    Ok(r)
}

/// Copies `bytes` bytes from one file to a new one in `buf` pieces, fdatasync every `sync_every`
/// bytes and at the end (the source is written and synced first, outside the clock; it is then
/// in the page cache, as a primary's recent WAL is).
pub fn copy_fsync(dir: &Path, bytes: u64, sync_every: u64) -> Result<Duration> {
    const BUF: usize = 1 << 20;
    let src = dir.join("copy-src");
    let dst = dir.join("copy-dst");
    {
        let mut f = File::create(&src)?;
        let block: Vec<u8> = (0..BUF).map(|i| (i * 31 % 251) as u8).collect();
        let mut left = bytes;
        while left > 0 {
            let n = left.min(BUF as u64) as usize;
            f.write_all(&block[..n])?;
            left -= n as u64;
        }
        f.sync_all()?;
    }
    let t = Instant::now();
    let mut from = File::open(&src)?;
    let mut to = OpenOptions::new().create_new(true).write(true).open(&dst)?;
    let mut buf = vec![0u8; BUF];
    let mut since_sync = 0u64;
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            break;
        }
        to.write_all(&buf[..n])?;
        since_sync += n as u64;
        if since_sync >= sync_every {
            to.sync_data()?;
            since_sync = 0;
        }
    }
    to.sync_data()?;
    let elapsed = t.elapsed();
    drop(to);
    std::fs::remove_file(&src)?;
    std::fs::remove_file(&dst)?;
    Ok(elapsed)
}
