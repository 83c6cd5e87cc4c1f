//! The seed's writer (`shoal write`, one row per append, recording every append) running while
//! a scenario disturbs the cluster, and what it felt: the scenarios of `upgrade` and `pause`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use comfy_table::{Table, presets::ASCII_MARKDOWN};
use shoal_client::record::{self, WindowStats, now_ms};

use crate::cluster::Cluster;

/// How long to wait for the writer's first acknowledgements, and for recovery.
pub const WAIT: Duration = Duration::from_secs(120);
/// Acknowledgements the writer must have before a scenario starts (it is connected and warm).
const WARM_ACKS: usize = 50;
/// Acknowledgements after a scenario still counted, so an append it stalled is in the window.
const AFTER_MS: u64 = 1000;

/// One scenario's outcome as the writer saw it.
pub struct Measured {
    pub elapsed: Duration,
    pub stats: WindowStats,
}

/// Runs `scenario` under a fresh writer recording to `record`, sending to `sites` in that order
/// (empty: every data node of the cluster directory, in cluster.nodes order). The window is
/// from the scenario's start to [`AFTER_MS`] after its end.
pub fn measure(
    cluster: &Cluster,
    record: &Path,
    rate: f64,
    sites: &[String],
    scenario: impl FnOnce() -> Result<()>,
) -> Result<Measured> {
    let mut phases = measure_phases(cluster, record, rate, sites, vec![Box::new(scenario)])?;
    Ok(phases.remove(0))
}

/// One step of a scenario measured as its own window.
pub type Phase<'a> = Box<dyn FnOnce() -> Result<()> + 'a>;

/// Runs `phases` one after the other under one writer, as [`measure`] runs one scenario: each
/// phase's window runs from its start to the next one's (the last to [`AFTER_MS`] after its
/// end), so a stall that starts in one phase and ends in the next counts in the next. Stops at
/// the first phase that fails.
pub fn measure_phases(
    cluster: &Cluster,
    record: &Path,
    rate: f64,
    sites: &[String],
    phases: Vec<Phase>,
) -> Result<Vec<Measured>> {
    let mut writer = Writer::start(cluster, record, rate, sites)?;
    writer.wait_for(record, |r| r.len() >= WARM_ACKS)?;
    let mut spans = Vec::new();
    let mut failed = None;
    for phase in phases {
        let (started, from) = (Instant::now(), now_ms());
        let outcome = phase();
        spans.push((started.elapsed(), from, now_ms()));
        if let Err(e) = outcome {
            failed = Some(e);
            break;
        }
    }
    let to = spans.last().map_or(now_ms(), |s| s.2);
    writer.wait_for(record, |r| r.iter().any(|a| a.acked_at_ms >= to + AFTER_MS))?;
    drop(writer);
    if let Some(e) = failed {
        return Err(e);
    }
    let records = record::load(record)?;
    let ends: Vec<u64> = spans
        .iter()
        .skip(1)
        .map(|s| s.1)
        .chain([to + AFTER_MS])
        .collect();
    Ok(spans
        .iter()
        .zip(ends)
        .map(|(&(elapsed, from, _), end)| Measured {
            elapsed,
            stats: record::window_stats(&records, from, end),
        })
        .collect())
}

/// Polls `shoal chunks` until every chunk is COMPLETE.
pub fn wait_complete(cluster: &Cluster) -> Result<()> {
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

/// The writer's figures per scenario, with the longest stall against the `reference` row's.
pub fn table(rows: &[(String, &Measured)], reference: usize, ref_name: &str) -> Table {
    let ref_gap = rows
        .get(reference)
        .and_then(|(_, m)| m.stats.longest_gap_ms)
        .unwrap_or(1)
        .max(1) as f64;
    let mut t = Table::new();
    t.load_preset(ASCII_MARKDOWN);
    t.set_header(vec![
        "scenario".to_owned(),
        "seconds".to_owned(),
        "appends".to_owned(),
        "failed".to_owned(),
        "retried".to_owned(),
        "p99 ms".to_owned(),
        "max ms".to_owned(),
        "longest stall ms".to_owned(),
        format!("stall vs {ref_name}"),
    ]);
    let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
    for (name, m) in rows {
        let s = &m.stats;
        t.add_row(vec![
            name.clone(),
            format!("{:.1}", m.elapsed.as_secs_f64()),
            s.appends.to_string(),
            s.failed.to_string(),
            s.retried.to_string(),
            ms(s.p99_ms),
            ms(s.max_ms),
            s.longest_gap_ms.map_or("-".into(), |g| g.to_string()),
            s.longest_gap_ms
                .map_or("-".into(), |g| format!("{:.3}×", g as f64 / ref_gap)),
        ]);
    }
    t
}

/// `shoal write` in the background, killed when dropped (its record is flushed line by line).
struct Writer(Child);

impl Writer {
    fn start(cluster: &Cluster, record: &Path, rate: f64, sites: &[String]) -> Result<Self> {
        let mut cmd = Command::new(&cluster.bin);
        cmd.args(["write", "--rate", &rate.to_string()]);
        if sites.is_empty() {
            cmd.args(["--dir", cluster.dir_str()?]);
        } else {
            // Without --dir the writer takes --sites as its data nodes, in this order.
            cmd.args(["--sites", &sites.join(",")])
                .arg("--secret-file")
                .arg(cluster.dir.join(shoal_common::secret::SECRET_FILE));
        }
        let child = cmd
            .args(["--duration", "900s", "--record"])
            .arg(record)
            .env_remove("SHOAL_CLUSTER_SECRET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(Self(child))
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
