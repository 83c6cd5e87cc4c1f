//! `shoal-bench snapshot`: recovery of a machine whose replicas fell behind their primaries'
//! truncated WAL, so each is copied whole (`InstallSnapshot`: the primary's chunk files as they
//! are, then the records after them), against a plain sequential copy of the same bytes with an
//! fdatasync at the end, measured in the same run. Everything written is flushed to chunk files
//! before the machine stops, and what is written while it is down is flushed too (and the WAL
//! below it deleted) before it starts again. Run with `--set flushIdleTime=2000`.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::cluster::{Cluster, Conn};
use crate::load::{self, Load};
use crate::restart::wait_flushed;
use crate::{MB, RateTable, rate, reference, settled};

/// What a replica logs when it installed a snapshot (see `shoal-datanode`'s `snapshot`).
const INSTALLED: &str = "installed a snapshot from its primary";

#[allow(clippy::too_many_arguments)]
pub fn run(
    cluster: &Cluster,
    conn: &Conn,
    rt: &tokio::runtime::Runtime,
    base: Load,
    mb: u64,
    missed_mb: u64,
    host: &str,
    timeout: Duration,
) -> Result<()> {
    let down = conn.datanode_on(host)?;
    let load = Load {
        max_bytes: mb * 1_000_000,
        ..base.clone()
    };
    let before = rt.block_on(load::write(conn, &load))?.ipc_bytes;
    wait_flushed(conn, rt)?;
    cluster.run(&["host", "stop", host])?;
    let load = Load {
        max_bytes: missed_mb.max(1) * 1_000_000,
        writer_base: base.writer_base + 1000,
        ..base
    };
    let missed = rt.block_on(load::write(conn, &load))?.ipc_bytes;
    wait_flushed(conn, rt)?;
    // The WAL is truncated right after each flush; give the last ones a moment.
    std::thread::sleep(Duration::from_secs(2));

    let t_start = Instant::now();
    cluster.run(&["host", "start", host])?;
    let t_up = Instant::now();
    let (final_pos, done) = loop {
        let chunks = rt.block_on(conn.chunks())?;
        let pos = rt.block_on(conn.positions());
        if settled(&chunks, &pos) {
            break (pos, Instant::now());
        }
        if t_up.elapsed() > timeout {
            bail!("not COMPLETE with identical replicas after {timeout:?}: {chunks:#?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let recovered = done - t_up;
    let stored: u64 = final_pos
        .iter()
        .filter(|((_, node), _)| *node == down)
        .map(|(_, p)| p.bytes)
        .sum();
    let (installs, sent, install_secs) = installs(&cluster.log_lines(INSTALLED).join("\n"));
    if installs == 0 {
        bail!("no replica on {down} was recovered by a snapshot (is flushIdleTime set?)");
    }
    let reference = reference::copy_fsync(&cluster.dir, sent.max(1), u64::MAX)?;
    let ref_mbps = rate(sent as f64 / MB, reference);

    println!(
        "\n## snapshot: stop {host} ({down}) after {:.1} MB, write {:.1} MB, flush and truncate, \
         start it again\n",
        before as f64 / MB,
        missed as f64 / MB
    );
    let mut t = RateTable::new(ref_mbps);
    let mut row = |label: &str, bytes: u64, took: Duration| t.row(label, bytes, took);
    row(
        &format!(
            "snapshot install: {installs} replicas, stream received → installed (seconds summed)"
        ),
        sent,
        Duration::from_secs_f64(install_secs),
    );
    row(
        "recovery: node UP → all COMPLETE, checksums equal (its replicas' bytes)",
        stored,
        recovered,
    );
    row("same, from `host start` issued", stored, done - t_start);
    row(
        "reference: sequential copy of the snapshot bytes, fdatasync at end",
        sent,
        reference,
    );
    println!("{t}\n");
    Ok(())
}

/// The snapshot installs logged: how many, their bytes and seconds (summed).
fn installs(logs: &str) -> (u32, u64, f64) {
    let mut n = 0;
    let (mut bytes, mut secs) = (0u64, 0f64);
    for line in logs.lines().filter(|l| l.contains(INSTALLED)) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(i) = words.iter().position(|w| *w == "bytes") else {
            continue;
        };
        let b = i.checked_sub(1).and_then(|j| words[j].parse::<u64>().ok());
        let s = words.get(i + 2).and_then(|w| w.parse::<f64>().ok());
        if let (Some(b), Some(s)) = (b, s) {
            n += 1;
            bytes += b;
            secs += s;
        }
    }
    (n, bytes, secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_lines_are_summed() {
        let logs = "x INFO chunk 3: installed a snapshot from its primary through lsn 9: 2000000 \
                    bytes in 0.500 s (4.0 MB/s)\nother line\n\
                    y INFO chunk 4: installed a snapshot from its primary through lsn 2: 1000000 \
                    bytes in 0.250 s (4.0 MB/s)\n";
        assert_eq!(installs(logs), (2, 3_000_000, 0.75));
    }
}
