//! `shoal-bench scale`: the storage engine at the sizes the issue names, on one cluster in one
//! run, with rows that do not compress away (`--payload`) spread over many chunks (`--days`):
//!
//! 1. rows are written until a machine's volume holds `--first-gb`, every replica is flushed, and
//!    `host stop` / `host start` of that machine is timed until its nodes are UP;
//! 2. the same again at `--gb` (the reference is the first restart);
//! 3. the seed's writer (one row per append, `--rate`/s) runs through a baseline window, the
//!    rolling `shoal upgrade` to `--next` of every machine holding that data, and the
//!    `--after` seconds that follow it; its longest stall in each window, against the baseline's.
//!
//! Run with `--set flushIdleTime=2000` so replicas are flushed without waiting a minute.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use comfy_table::{Table, presets::ASCII_MARKDOWN};

use crate::cluster::{Cluster, Conn};
use crate::load::{self, Load};
use crate::restart::{dir_bytes, time_restart, wait_flushed};
use crate::upgrade::stage_package;
use crate::writer::{Phase, measure_phases, table};

/// How long `shoal upgrade` of three machines holding the data may take.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Rounds of "write, flush, measure" to reach a volume size.
const MAX_ROUNDS: usize = 20;
/// The baseline window of the writer, before anything happens.
const BASELINE: Duration = Duration::from_secs(10);

pub struct Scale<'a> {
    pub first_gb: f64,
    pub gb: f64,
    pub next: &'a Path,
    pub rate: f64,
    pub after: Duration,
}

pub fn run(
    cluster: &Cluster,
    conn: &Conn,
    rt: &tokio::runtime::Runtime,
    base: Load,
    s: &Scale,
    host: &str,
) -> Result<()> {
    let chunks = rt.block_on(conn.chunks())?.len();
    let mut restarts = Table::new();
    restarts.load_preset(ASCII_MARKDOWN).set_header([
        "on the machine's volume (GB)",
        "written (GB of Arrow IPC)",
        "rows written",
        "written → flushed (MB/s of IPC)",
        "host start → UP (s)",
        "vs the first",
    ]);
    let mut fill = Fill::default();
    let mut first = None;
    for target in [s.first_gb, s.gb] {
        let started = Instant::now();
        let stored = fill.up_to(cluster, conn, rt, &base, host, target * 1e9)?;
        let took = started.elapsed();
        let up = time_restart(cluster, host)?;
        let reference = *first.get_or_insert(up);
        restarts.add_row([
            format!("{:.2}", stored / 1e9),
            format!("{:.2}", fill.ipc as f64 / 1e9),
            crate::fmt_int(fill.rows as f64),
            format!("{:.1}", fill.round_ipc as f64 / 1e6 / took.as_secs_f64()),
            format!("{up:.2}"),
            format!("{:.2}×", up / reference),
        ]);
        eprintln!("{restarts}");
    }

    let pkg = stage_package(cluster, s.next)?;
    let pkg_s = pkg.to_str().context("UTF-8 path")?;
    let mut report = String::new();
    let phases: Vec<Phase> = vec![
        // Fixed-length measurement windows, not waits for a condition.
        Box::new(|| {
            std::thread::sleep(BASELINE);
            Ok(())
        }),
        Box::new(|| {
            report = cluster.run_within(
                &["upgrade", "--package", pkg_s, "--probe-rate", "0"],
                UPGRADE_TIMEOUT,
            )?;
            Ok(())
        }),
        Box::new(|| {
            std::thread::sleep(s.after);
            Ok(())
        }),
    ];
    let record = cluster.dir.join("writer-scale.jsonl");
    let measured = measure_phases(cluster, &record, s.rate, &[], phases)?;
    let names = [
        format!("(0) nothing happens ({} s)", BASELINE.as_secs()),
        "(a) shoal upgrade, 3 machines".to_owned(),
        format!("(b) the {} s after it", s.after.as_secs()),
    ];
    let rows: Vec<(String, _)> = names.into_iter().zip(measured.iter()).collect();

    println!(
        "\n## scale: {chunks} chunks, rows of {} B payload, machine {host}\n",
        base.payload
    );
    println!("{restarts}\n");
    println!("the seed's writer, 1 row per append at {}/s:\n", s.rate);
    println!("{}\n", table(&rows, 0, "(0)"));
    println!("`shoal upgrade` said:\n{report}");
    Ok(())
}

/// What the scenario has written so far.
#[derive(Default)]
struct Fill {
    rows: u64,
    ipc: u64,
    /// IPC bytes of the last call of [`Fill::up_to`].
    round_ipc: u64,
    rounds: u64,
}

impl Fill {
    /// Writes rows until `host`'s volume holds `target` bytes with every replica flushed;
    /// returns the volume's bytes. Each round writes what the previous ones' bytes per IPC byte
    /// say is missing.
    fn up_to(
        &mut self,
        cluster: &Cluster,
        conn: &Conn,
        rt: &tokio::runtime::Runtime,
        base: &Load,
        host: &str,
        target: f64,
    ) -> Result<f64> {
        let volume = cluster.dir.join(host);
        let mut stored = dir_bytes(&volume)? as f64;
        self.round_ipc = 0;
        for _ in 0..MAX_ROUNDS {
            if stored >= target {
                return Ok(stored);
            }
            // Before anything is known: a machine holds 2 of 3 replicas of rows compressing to
            // about 0.8, so about half of what is written.
            let per_ipc = if self.ipc > 0 {
                stored / self.ipc as f64
            } else {
                0.5
            };
            let missing = ((target - stored) / per_ipc).max(100e6) as u64;
            let load = Load {
                max_bytes: missing,
                max_time: Duration::from_secs(3600),
                writer_base: base.writer_base + 1000 * (self.rounds + 1),
                ..base.clone()
            };
            self.rounds += 1;
            let w = rt.block_on(load::write(conn, &load))?;
            wait_flushed(conn, rt)?;
            self.rows += w.rows;
            self.ipc += w.ipc_bytes;
            self.round_ipc += w.ipc_bytes;
            stored = dir_bytes(&volume)? as f64;
            eprintln!(
                "written {:.2} GB of IPC in all; {host} holds {:.2} GB",
                self.ipc as f64 / 1e9,
                stored / 1e9
            );
        }
        bail!("{host} holds {stored:.0} bytes after {MAX_ROUNDS} rounds, short of {target:.0}")
    }
}
