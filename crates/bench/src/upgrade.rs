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
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use comfy_table::{Table, presets::ASCII_MARKDOWN};
use shoal_client::record::{self, WindowStats, now_ms};

use crate::cluster::Cluster;

/// How long to wait for the writer's first acknowledgements, and for recovery.
const WAIT: Duration = Duration::from_secs(120);

pub fn run(cluster: &Cluster, next: &Path, rate: f64) -> Result<()> {
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
    // Pre-flight stages the package on every agent; done first, so (a) times the roll itself
    // (on one VM the three "machines" share a disk, unlike real ones).
    cluster.run(&["upgrade", "--package", pkg_s, "--dry-run"])?;
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
        let mut writer = Writer::start(cluster, &record, rate)?;
        writer.wait_acks(&record, 50)?;
        let started = Instant::now();
        let from = now_ms();
        let outcome = scenario();
        let to = now_ms();
        let elapsed = started.elapsed();
        // A little after the end, so an append stalled by the last step is counted.
        writer.wait_acks_after(&record, to + 1000)?;
        drop(writer);
        outcome.with_context(|| name.to_string())?;
        let stats = record::window_stats(&record::load(&record)?, from, to + 1000);
        eprintln!("{name}: {:.1} s, {stats:?}", elapsed.as_secs_f64());
        results.push((name, elapsed, stats));
    }
    print_table(rate, &results);
    Ok(())
}

fn print_table(rate: f64, results: &[(&&str, Duration, WindowStats)]) {
    println!("\n## upgrade: the seed's writer, 1 row per append at {rate}/s, 3 machines\n");
    let reference = results
        .last()
        .and_then(|(_, _, s)| s.longest_gap_ms)
        .unwrap_or(1)
        .max(1) as f64;
    let mut t = Table::new();
    t.load_preset(ASCII_MARKDOWN);
    t.set_header(vec![
        "scenario",
        "seconds",
        "appends",
        "failed",
        "retried",
        "p99 ms",
        "max ms",
        "longest stall ms",
        "stall vs (c)",
    ]);
    let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
    for (name, elapsed, s) in results {
        t.add_row(vec![
            (**name).to_owned(),
            format!("{:.1}", elapsed.as_secs_f64()),
            s.appends.to_string(),
            s.failed.to_string(),
            s.retried.to_string(),
            ms(s.p99_ms),
            ms(s.max_ms),
            s.longest_gap_ms.map_or("-".into(), |g| g.to_string()),
            s.longest_gap_ms
                .map_or("-".into(), |g| format!("{:.3}×", g as f64 / reference)),
        ]);
    }
    println!("{t}\n");
}

fn wait_complete(cluster: &Cluster) -> Result<()> {
    let started = Instant::now();
    loop {
        let out = cluster.run(&["chunks", "--not-complete", "--json"])?;
        let v: serde_json::Value = serde_json::from_str(&out)?;
        if v.as_array().is_some_and(Vec::is_empty) {
            return Ok(());
        }
        if started.elapsed() > WAIT {
            bail!("chunks not COMPLETE after {WAIT:?}: {out}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `shoal write` in the background, killed when dropped (its record is flushed line by line).
struct Writer(Child);

impl Writer {
    fn start(cluster: &Cluster, record: &PathBuf, rate: f64) -> Result<Self> {
        let child = Command::new(&cluster.bin)
            .args([
                "write",
                "--dir",
                cluster.dir_str()?,
                "--rate",
                &rate.to_string(),
            ])
            .args(["--duration", "900s", "--record"])
            .arg(record)
            .env_remove("SHOAL_CLUSTER_SECRET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(Self(child))
    }

    /// Until the record holds `n` acknowledged appends.
    fn wait_acks(&mut self, record: &Path, n: usize) -> Result<()> {
        self.wait_for(record, |r| r.len() >= n)
    }

    /// Until an append acknowledged at or after `at_ms` is recorded.
    fn wait_acks_after(&mut self, record: &Path, at_ms: u64) -> Result<()> {
        self.wait_for(record, |r| r.iter().any(|a| a.acked_at_ms >= at_ms))
    }

    fn wait_for(
        &mut self,
        record: &Path,
        done: impl Fn(&[record::AppendRecord]) -> bool,
    ) -> Result<()> {
        let started = Instant::now();
        loop {
            if let Some(exit) = self.0.try_wait()? {
                bail!("the writer exited early ({exit})");
            }
            if record::load(record).is_ok_and(|r| done(&r)) {
                return Ok(());
            }
            if started.elapsed() > WAIT {
                bail!("the writer made no progress within {WAIT:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
