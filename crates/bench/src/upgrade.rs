//! `shoal-bench upgrade`: what the seed's writer (one row per append, 200 appends/s) feels
//! while every machine of the cluster is replaced, three ways, in one run on one cluster:
//!
//! - (a) `shoal upgrade` to the next version: drain, leadership hand-over, one machine at a time;
//! - (b) the machines restarted one by one with `shoal host stop/start`, no drain, no hand-over
//!   (what a plain rolling restart does), each followed by recovery to COMPLETE;
//! - (c) stop-the-world: every machine stopped, then every machine started.
//!
//! (0) is the same writer while nothing happens, for its normal latency.
//! (b) and (c) restart the same binaries without switching versions: the version switch itself
//! takes milliseconds, the stall comes from stopping and starting. The reference is (c).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::cluster::Cluster;
use crate::writer::{Measured, measure, table, wait_complete};

pub fn run(cluster: &Cluster, next: &Path, rate: f64) -> Result<()> {
    let pkg = stage_package(cluster, next)?;
    let pkg_s = pkg.to_str().context("UTF-8 path")?;
    let hosts = cluster.hosts.clone();
    type Scenario<'a> = (&'a str, Box<dyn Fn() -> Result<()> + 'a>);
    let scenarios: Vec<Scenario> = vec![
        (
            "(0) nothing happens (5 s baseline)",
            // A measurement window of fixed length, not a wait for a condition.
            Box::new(|| {
                std::thread::sleep(Duration::from_secs(5));
                Ok(())
            }),
        ),
        (
            "(a) shoal upgrade (drain, hand-over)",
            Box::new(|| {
                cluster.run(&["upgrade", "--package", pkg_s, "--probe-rate", "0"])?;
                Ok(())
            }),
        ),
        (
            "(b) restart one by one, no drain",
            Box::new(|| {
                for h in &hosts {
                    cluster.run(&["host", "stop", h])?;
                    cluster.run(&["host", "start", h])?;
                    wait_complete(cluster)?;
                }
                Ok(())
            }),
        ),
        (
            "(c) stop the world",
            Box::new(|| {
                for h in &hosts {
                    cluster.run(&["host", "stop", h])?;
                }
                // Together: one machine's nodes cannot be UP before a controller quorum is.
                std::thread::scope(|s| {
                    let starts: Vec<_> = hosts
                        .iter()
                        .map(|h| s.spawn(move || cluster.run(&["host", "start", h])))
                        .collect();
                    starts.into_iter().try_for_each(|t| {
                        t.join().map_err(|_| anyhow::anyhow!("panicked"))?.map(drop)
                    })
                })?;
                wait_complete(cluster)?;
                Ok(())
            }),
        ),
    ];
    let mut results = Vec::new();
    for (i, (name, scenario)) in scenarios.iter().enumerate() {
        let record = cluster.dir.join(format!("writer-{i}.jsonl"));
        let m = measure(cluster, &record, rate, &[], scenario).with_context(|| name.to_string())?;
        eprintln!("{name}: {:.1} s, {:?}", m.elapsed.as_secs_f64(), m.stats);
        results.push((name.to_string(), m));
    }
    let rows: Vec<(String, &Measured)> = results.iter().map(|(n, m)| (n.clone(), m)).collect();
    println!("\n## upgrade: the seed's writer, 1 row per append at {rate}/s, 3 machines\n");
    println!("{}\n", table(&rows, rows.len() - 1, "(c)"));
    Ok(())
}

/// Builds a package of the `next` binary and stages it on every agent (`upgrade --dry-run`'s
/// pre-flight), so a timed `shoal upgrade --package` then measures the roll itself (on one VM
/// the three "machines" share a disk, unlike real ones). Returns the package's path.
pub fn stage_package(cluster: &Cluster, next: &Path) -> Result<PathBuf> {
    let pkg = cluster.dir.join("next.pkg");
    let pkg_s = pkg.to_str().context("UTF-8 path")?;
    let next_s = next.to_str().context("UTF-8 path")?;
    let out = crate::cluster::shoal(
        &cluster.bin,
        &["package", "build", "--binary", next_s, "--out", pkg_s],
    )?;
    if !out.status.success() {
        bail!("package build: {}", crate::cluster::stderr(&out));
    }
    cluster.run(&["upgrade", "--package", pkg_s, "--dry-run"])?;
    Ok(pkg)
}
