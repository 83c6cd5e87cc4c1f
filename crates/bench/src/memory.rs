//! `shoal-bench memory`: what a data node holds in memory while the cluster ingests `--factor`
//! times its memory budget (`TSDBCacheEngineSize`, set by this command) with flushes and
//! compaction running. Prints each data node's peak RSS against the budget + 0.5 GiB, the
//! peaks of its allocator's statistics (from its log), its threads, the ingest rate against fdatasync'd appends to one local file measured in the same
//! run (the reference `ingest` uses, so the two ratios compare), and the bytes per row in chunk
//! files against the WAL's; then the appends slower than a second and what they waited on.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Result;
use comfy_table::{Table, presets::ASCII_MARKDOWN};

use crate::cluster::{Cluster, Conn};
use crate::load::{self, Load};
use crate::restart::wait_flushed;
use crate::{MB, fmt_int, print_written, rate, reference};

/// The allowance over the budget the issue sets for the peak: 0.5 GiB.
const OVER_BUDGET: u64 = 512 << 20;
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// Peak resident bytes and threads of one process.
#[derive(Clone, Copy, Default)]
struct Peak {
    rss: u64,
    threads: u64,
}

/// `TSDBCacheEngineSize` for a budget of `budget_gb`, as `local up --set` takes it.
pub fn budget_setting(budget_gb: f64) -> String {
    format!("TSDBCacheEngineSize={budget_gb}")
}

pub fn run(
    cluster: &Cluster,
    conn: &Conn,
    rt: &tokio::runtime::Runtime,
    base: Load,
    budget_gb: f64,
    factor: u64,
) -> Result<()> {
    let budget = (budget_gb * f64::from(1u32 << 30)) as u64;
    let datanodes: BTreeMap<u64, String> = cluster.status()?["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n["mode"] == "datanode")
        .filter_map(|n| Some((n["pid"].as_u64()?, n["alias"].as_str()?.to_owned())))
        .collect();
    // Each data node holds 2 of the 3 machines' worth of replicas: write enough that every one
    // receives `factor` times its budget.
    let write_bytes = budget * factor * 3 / 2;
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        let pids: Vec<u64> = datanodes.keys().copied().collect();
        std::thread::spawn(move || sample_peaks(&pids, &stop))
    };
    let load = Load {
        max_bytes: write_bytes,
        max_time: Duration::from_secs(1800),
        ..base
    };
    let written = rt.block_on(load::write(conn, &load));
    stop.store(true, Ordering::Relaxed);
    let peaks = sampler.join().unwrap_or_default();
    let w = written?;
    wait_flushed(conn, rt)?;
    let (files, wal) = stored_bytes(&cluster.dir)?;

    let r = reference::ipc_append_fsync(
        &cluster.dir.join("reference.arrows"),
        &load,
        w.rows,
        Duration::from_secs(120),
    )?;
    let cluster_rps = rate(w.rows as f64, w.elapsed);
    let ref_rps = rate(r.rows as f64, r.elapsed);

    println!(
        "\n## memory: {:.0} MB of Arrow IPC ingested, {factor}× a budget of {:.0} MiB per data node\n",
        w.ipc_bytes as f64 / MB,
        budget as f64 / f64::from(1u32 << 20),
    );
    let mut t = Table::new();
    t.load_preset(ASCII_MARKDOWN).set_header([
        "data node",
        "peak RSS (MiB)",
        "budget + 0.5 GiB (MiB)",
        "within",
        "jemalloc peak allocated / resident / retained (MiB)",
        "peak threads",
    ]);
    let limit = budget + OVER_BUDGET;
    for ((_, alias), peak) in datanodes.iter().zip(&peaks) {
        let [allocated, resident, retained] = allocator_peaks(cluster, alias);
        t.add_row([
            alias.clone(),
            format!("{}", peak.rss >> 20),
            format!("{}", limit >> 20),
            if peak.rss <= limit { "yes" } else { "NO" }.to_owned(),
            format!("{allocated} / {resident} / {retained}"),
            peak.threads.to_string(),
        ]);
    }
    println!("{t}\n");

    let mut t = Table::new();
    t.load_preset(ASCII_MARKDOWN).set_header([
        "ingest",
        "rows",
        "MB (IPC)",
        "seconds",
        "rows/s",
        "vs reference",
    ]);
    t.add_row([
        "cluster, flushing and compacting".to_owned(),
        fmt_int(w.rows as f64),
        format!("{:.1}", w.ipc_bytes as f64 / MB),
        format!("{:.1}", w.elapsed.as_secs_f64()),
        fmt_int(cluster_rps),
        format!("{:.2}×", cluster_rps / ref_rps.max(1e-9)),
    ]);
    t.add_row([
        "reference: IPC + fdatasync per batch, 1 file".to_owned(),
        fmt_int(r.rows as f64),
        format!("{:.1}", r.bytes as f64 / MB),
        format!("{:.2}", r.elapsed.as_secs_f64()),
        fmt_int(ref_rps),
        "1.00×".to_owned(),
    ]);
    println!("{t}\n");
    // A retried attempt is also what a memory-full refusal costs the client.
    print_written(&w);
    print_slow(&w);
    let replica_rows = 2.0 * w.rows as f64;
    println!(
        "on disk per replica row: chunk files {:.2} B, WAL {:.2} B ({:.2}×)",
        files as f64 / replica_rows,
        wal as f64 / replica_rows,
        files as f64 / (wal as f64).max(1.0)
    );
    Ok(())
}

/// The appends slower than [`load::SLOW_APPEND`] and the attempts each failed over from.
fn print_slow(w: &load::Written) {
    println!(
        "appends over {} ms: {}{}",
        load::SLOW_APPEND.as_millis(),
        w.slow_total,
        if w.slow.is_empty() {
            ""
        } else {
            "; the slowest:"
        }
    );
    for s in &w.slow {
        println!(
            "  ({}, {}) {} ms, {} failed attempts",
            s.writer,
            s.seq,
            s.latency.as_millis(),
            s.failures.len()
        );
        for f in &s.failures {
            println!("    {}", f.chars().take(240).collect::<String>());
        }
    }
}

/// The highest jemalloc `allocated`, `resident` and `retained` (MiB) data node `alias` logged
/// (the `shoal` binary's allocator statistics, logged when `resident` moves); zero if none.
fn allocator_peaks(cluster: &Cluster, alias: &str) -> [u64; 3] {
    let mut peaks = [0; 3];
    for host in &cluster.hosts {
        let log = cluster
            .dir
            .join(host)
            .join("log")
            .join(format!("{alias}.log"));
        let Ok(text) = std::fs::read_to_string(log) else {
            continue;
        };
        for line in text.lines().filter(|l| l.contains("resident_mib=")) {
            for (peak, key) in
                peaks
                    .iter_mut()
                    .zip(["allocated_mib=", "resident_mib=", "retained_mib="])
            {
                let value = line
                    .split_whitespace()
                    .find_map(|t| t.strip_prefix(key)?.parse::<u64>().ok());
                *peak = (*peak).max(value.unwrap_or(0));
            }
        }
    }
    peaks
}

/// Samples each process's resident set and thread count until `stop`; answers the peaks.
fn sample_peaks(pids: &[u64], stop: &AtomicBool) -> Vec<Peak> {
    let mut peaks = vec![Peak::default(); pids.len()];
    while !stop.load(Ordering::Relaxed) {
        for (pid, peak) in pids.iter().zip(&mut peaks) {
            let now = sample(*pid);
            peak.rss = peak.rss.max(now.rss);
            peak.threads = peak.threads.max(now.threads);
        }
        std::thread::sleep(SAMPLE_EVERY);
    }
    peaks
}

/// `VmRSS` and `Threads` of `/proc/<pid>/status` (zero for a process that is gone).
fn sample(pid: u64) -> Peak {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Peak {
        rss: field("VmRSS:") << 10,
        threads: field("Threads:"),
    }
}

/// Bytes of chunk files (under each replica's `f/`) and of WAL segments (`*.wal`) under `dir`.
fn stored_bytes(dir: &Path) -> Result<(u64, u64)> {
    let (mut files, mut wal) = (0, 0);
    let mut stack = vec![(dir.to_path_buf(), false)];
    while let Some((d, in_files)) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push((entry.path(), in_files || entry.file_name() == "f"));
            } else if in_files {
                files += meta.len();
            } else if entry.path().extension().is_some_and(|e| e == "wal") {
                wal += meta.len();
            }
        }
    }
    Ok((files, wal))
}
