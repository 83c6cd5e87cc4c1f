//! `shoal-bench restart`: how long a machine takes from `host start` until its nodes are UP,
//! with some data stored and then with `--factor` times as much, all of it flushed to chunk
//! files (a cluster this release creates uses them from the start). A data node reopens a
//! replica from its MANIFEST and replays only the WAL after its files, so start-up should not
//! grow with what is stored; the reference is the first, smaller restart in the same run.
//! Run with `--set flushIdleTime=2000` so replicas are flushed without waiting a minute.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use comfy_table::{Table, presets::ASCII_MARKDOWN};

use crate::cluster::{Cluster, Conn};
use crate::load::{self, Load};

/// How long replicas may take to flush everything they hold.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(900);

pub fn run(
    cluster: &Cluster,
    conn: &Conn,
    rt: &tokio::runtime::Runtime,
    base: Load,
    mb: u64,
    factor: u64,
    host: &str,
) -> Result<()> {
    let mut table = Table::new();
    table.load_preset(ASCII_MARKDOWN).set_header([
        "written (MB of Arrow IPC)",
        "on the machine's volume (MB)",
        "host start → UP (s)",
        "vs the first",
    ]);
    let mut written = 0u64;
    let mut first = None;
    for target in [mb, mb * factor] {
        let load = Load {
            max_bytes: (target - written) * 1_000_000,
            ..base.clone()
        };
        written += rt.block_on(load::write(conn, &load))?.ipc_bytes / 1_000_000;
        wait_flushed(conn, rt)?;
        let stored = dir_bytes(&cluster.dir.join(host))? as f64 / 1e6;
        let up = time_restart(cluster, host)?;
        let reference = *first.get_or_insert(up);
        table.add_row([
            written.to_string(),
            format!("{stored:.0}"),
            format!("{up:.2}"),
            format!("{:.2}×", up / reference),
        ]);
    }
    println!("{table}");
    Ok(())
}

/// Stops `host`'s machine, then times `host start` (which returns once its nodes are UP).
pub fn time_restart(cluster: &Cluster, host: &str) -> Result<f64> {
    cluster.run(&["host", "stop", host])?;
    let t = Instant::now();
    cluster.run(&["host", "start", host])?;
    Ok(t.elapsed().as_secs_f64())
}

/// Waits until every replica holds all its records in chunk files.
pub fn wait_flushed(conn: &Conn, rt: &tokio::runtime::Runtime) -> Result<()> {
    let started = Instant::now();
    loop {
        let positions = rt.block_on(conn.positions());
        if !positions.is_empty() && positions.values().all(|p| p.flushed_lsn == p.last_lsn) {
            return Ok(());
        }
        if started.elapsed() > FLUSH_TIMEOUT {
            bail!("replicas not flushed within {FLUSH_TIMEOUT:?} (is flushIdleTime set?)");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Bytes of the files under `dir`.
pub fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}
