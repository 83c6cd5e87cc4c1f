//! `shoal chaos run`: one run of the fault tier, start to verdict.
//!
//! ```text
//! namespaces + cluster up ─ DDL ─ workload (c0) ──────────────────────────────┐
//!                                 warm-up │ nemesis 1 held │ quiet │ ... │ tail ┘
//!                                         │ upgrade held beside the next ones │
//! heal ─ wait healthy ─ final reads (c0) ─ merge histories ─ check ─ report
//! ```
//!
//! The verdict fails if the checker finds a violation, or if the cluster is not healthy
//! (every node UP, a controller leading) within [`HEAL_TIMEOUT`] of the workload's end (at
//! least the tail after the last fault was undone).
//!
//! Everything lands in `--out`: `schedule.json`, `workload.jsonl`, `nemesis.jsonl`,
//! `final.jsonl`, the merged `history.jsonl` (what `shoal chaos check` reads), `report.json`,
//! `workload.log`, `final.log` and the cluster's directory with every process log.

use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use shoal_chaos::history::{self, F, Kind, Op, Recorder};
use shoal_client::record::now_ms;

use super::cluster::{NsCluster, wait_output};
use super::firewall;
use super::nemesis::{Active, Nemesis};
use super::rolling_upgrade::{self, Package};
use super::schedule::{QUIET, Schedule, Step, TAIL, WARM_UP};
use super::workload::{DB, create_db, create_table};
use crate::cli::ChaosRunArgs;

/// The exit status when this machine cannot run the tier (not root, no network namespaces):
/// automake's "skipped".
pub const EXIT_UNSUPPORTED: u8 = 77;
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// After healing: nodes UP again, then every chunk recovered.
const HEAL_TIMEOUT: Duration = Duration::from_secs(120);
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(120);

pub fn run(args: ChaosRunArgs) -> anyhow::Result<ExitCode> {
    if let Err(why) = shoal_netns::supported() {
        eprintln!("chaos: this machine cannot run the fault tier: {why}");
        return Ok(ExitCode::from(EXIT_UNSUPPORTED));
    }
    if !firewall::available() {
        bail!("nft not found: install nftables (apt-get install -y nftables)");
    }
    let schedule = match (&args.nemesis[..], args.seed) {
        ([], Some(seed)) => Schedule::random(seed, args.duration, &args.exclude)?,
        ([], None) => bail!("say what to do: --nemesis NAME,... or --seed N"),
        (nemeses, None) => Schedule::scenario(nemeses, args.hold),
        (_, Some(_)) => bail!("--nemesis and --seed exclude each other"),
    };
    let out = args.out.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("shoal-chaos-{}-{}", std::process::id(), now_ms()))
    });
    if out.join("cluster").exists() {
        bail!("{} already holds a run", out.display());
    }
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("schedule.json"),
        serde_json::to_string_pretty(&schedule)?,
    )?;
    eprintln!("chaos: run in {}", out.display());

    let started = Instant::now();
    let with_shim = schedule.steps.iter().any(|s| s.nemesis.needs_shim());
    // First, so that an explicit `--set dfsReplicationFactor=` still wins.
    let set: Vec<String> = std::iter::once(format!("dfsReplicationFactor={}", args.replicas))
        .chain(args.set.iter().cloned())
        .collect();
    // Before the cluster: a missing build to upgrade to fails the run at once.
    let upgrade_to = if schedule.steps.iter().any(|s| s.nemesis == Nemesis::Upgrade) {
        let binary = match &args.upgrade_to {
            Some(b) => b.clone(),
            None => rolling_upgrade::default_binary()?,
        };
        Some(Package::build(&binary, &out)?)
    } else {
        None
    };
    let mut cluster = NsCluster::start(&out.join("cluster"), &set, with_shim, START_TIMEOUT)?;
    cluster.upgrade_to = upgrade_to;
    eprintln!(
        "chaos: cluster up in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    for ddl in [create_db(DB), create_table(DB)] {
        let o = cluster.client_output(&["sql", &ddl])?;
        if !o.status.success() {
            bail!("{ddl}: {}", String::from_utf8_lossy(&o.stderr).trim());
        }
    }
    if let Some(package) = &cluster.upgrade_to {
        package.stage(&cluster)?;
    }

    let workload = spawn_workload(&cluster, &out, &schedule, &args)?;
    // The workload's writes end then: a fault started later meets no client operation.
    let writes_end = Instant::now() + schedule.duration() - TAIL;
    let mut nemesis_log = Recorder::create(&out.join("nemesis.jsonl"))?;
    std::thread::sleep(WARM_UP);
    // The nemesis running beside the others, and until when it is held.
    let mut beside: Option<(Held, Instant)> = None;
    for step in &schedule.steps {
        if step.nemesis.runs_beside()
            && let Some((held, until)) = beside.take()
        {
            held.stop_at(until, &cluster, &mut nemesis_log)?;
        }
        if Instant::now() >= writes_end {
            eprintln!(
                "chaos: warning: {} starts after the workload's writes ended (a nemesis \
                 beside the others ran past its hold): its window holds no append",
                step.nemesis.name()
            );
        }
        let starting = Instant::now();
        let held = match Held::start(step, &cluster, &mut nemesis_log)? {
            Some(h) => h,
            None => {
                std::thread::sleep(QUIET);
                continue;
            }
        };
        if step.nemesis.runs_beside() {
            beside = Some((held, starting + step.hold));
            continue;
        }
        std::thread::sleep(step.hold);
        held.stop(&cluster, &mut nemesis_log)?;
        std::thread::sleep(QUIET);
        // Between faults, only one whose hold is over and whose process has ended: the next
        // faults do not wait for an orchestrator still at work.
        if let Some((held, _)) =
            beside.take_if(|(held, until)| *until <= Instant::now() && held.active.finished())
        {
            held.stop(&cluster, &mut nemesis_log)?;
        }
    }
    if let Some((held, until)) = beside.take() {
        held.stop_at(until, &cluster, &mut nemesis_log)?;
        std::thread::sleep(QUIET);
    }
    let workload_status = wait_output(workload, TAIL + Duration::from_secs(120))?;
    if !workload_status.status.success() {
        bail!(
            "the workload failed ({}); see {}",
            workload_status.status,
            out.join("workload.log").display()
        );
    }

    // A fault (or an upgrade that failed beside one) must never leave a machine stopped: the
    // data may all be there with one replica down, so this is a verdict of its own. Counted
    // from the workload's end, at least `TAIL` after the last fault was undone.
    let healthy = cluster.wait_healthy(HEAL_TIMEOUT);
    if let Err(e) = &healthy {
        eprintln!("chaos: not healthy {HEAL_TIMEOUT:?} after the workload ended: {e:#}");
    }
    final_reads(&cluster, &out)?;
    drop(cluster);

    let parts = ["workload.jsonl", "nemesis.jsonl", "final.jsonl"]
        .iter()
        .map(|f| history::load(&out.join(f)))
        .collect::<Result<Vec<_>, _>>()?;
    let ops = history::merge(parts);
    let mut merged = Recorder::create(&out.join("history.jsonl"))?;
    for op in &ops {
        merged.record(op)?;
    }
    let report = shoal_chaos::check::check(&ops);
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(&report.json())?,
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.json())?);
    } else {
        print!("{}", report.text());
        println!("history: {}", out.join("history.jsonl").display());
    }
    if let Err(e) = &healthy {
        println!("NOT HEALTHY {HEAL_TIMEOUT:?} after the workload ended: {e:#}");
    }
    Ok(if report.ok() && healthy.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A nemesis started and recorded in the history.
struct Held {
    nemesis: Nemesis,
    active: Active,
    what: String,
    started_ms: u64,
}

impl Held {
    /// `None` when it could not start (e.g. no chunk to aim at yet): said, not recorded.
    fn start(step: &Step, c: &NsCluster, log: &mut Recorder) -> anyhow::Result<Option<Self>> {
        // Before it starts: an upgrade's first step may come right after.
        let started_ms = now_ms();
        let active = match step.nemesis.start(c, step.hold) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("chaos: {} could not start: {e:#}", step.nemesis.name());
                return Ok(None);
            }
        };
        let what = format!("{} for {} s", active.what, step.hold.as_secs());
        eprintln!("chaos: {what}");
        log.record(&nemesis_op(F::NemesisStart, &what, started_ms))?;
        Ok(Some(Self {
            nemesis: step.nemesis,
            active,
            what,
            started_ms,
        }))
    }

    /// [`Held::stop`] once its hold runs out at `until`.
    fn stop_at(self, until: Instant, c: &NsCluster, log: &mut Recorder) -> anyhow::Result<()> {
        std::thread::sleep(until.saturating_duration_since(Instant::now()));
        self.stop(c, log)
    }

    /// Undoes it; after an upgrade, each machine it went through becomes a window too.
    fn stop(self, c: &NsCluster, log: &mut Recorder) -> anyhow::Result<()> {
        let stopped = self.active.stop();
        log.record(&nemesis_op(F::NemesisStop, &self.what, now_ms()))?;
        if self.nemesis == Nemesis::Upgrade {
            let record = c.upgrade_record().unwrap_or_else(|e| {
                eprintln!("chaos: cannot read the upgrade's record: {e:#}");
                serde_json::Value::Null
            });
            for w in rolling_upgrade::machine_windows(&record, self.started_ms) {
                log.record(&nemesis_op(F::NemesisStart, &w.what(), w.from_ms))?;
                log.record(&nemesis_op(F::NemesisStop, &w.what(), w.to_ms))?;
            }
        }
        stopped
    }
}

fn nemesis_op(f: F, what: &str, t: u64) -> Op {
    let mut op = Op::new("nemesis", Kind::Info, f, t);
    op.value = Some(what.to_owned());
    op
}

fn spawn_workload(
    cluster: &NsCluster,
    out: &Path,
    schedule: &Schedule,
    args: &ChaosRunArgs,
) -> anyhow::Result<std::process::Child> {
    let history = path_arg(&out.join("workload.jsonl"))?;
    let duration = format!("{}ms", schedule.duration().as_millis());
    let (writers, readers) = (args.writers.to_string(), args.readers.to_string());
    let read_every = format!("{}ms", args.read_every.as_millis());
    let seed = schedule.seed.unwrap_or(0).to_string();
    let log = std::fs::File::create(out.join("workload.log"))?;
    let child = cluster
        .client(&[
            "chaos",
            "workload",
            "--out",
            &history,
            "--duration",
            &duration,
            "--writers",
            &writers,
            "--readers",
            &readers,
            "--read-every",
            &read_every,
            "--seed",
            &seed,
        ])?
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .context("cannot start the workload")?;
    Ok(child)
}

fn final_reads(cluster: &NsCluster, out: &Path) -> anyhow::Result<()> {
    let path = path_arg(&out.join("final.jsonl"))?;
    let timeout = format!("{}s", RECOVERY_TIMEOUT.as_secs());
    let log = std::fs::File::create(out.join("final.log"))?;
    let child = cluster
        .client(&["chaos", "final", "--out", &path, "--timeout", &timeout])?
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()?;
    let done = wait_output(child, RECOVERY_TIMEOUT + Duration::from_secs(120))?;
    if !done.status.success() {
        bail!(
            "the final reads failed; see {}",
            out.join("final.log").display()
        );
    }
    Ok(())
}

fn path_arg(p: &Path) -> anyhow::Result<String> {
    p.to_str()
        .map(str::to_owned)
        .with_context(|| format!("{} is not UTF-8", p.display()))
}
