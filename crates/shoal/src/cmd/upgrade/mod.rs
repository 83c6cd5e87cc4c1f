//! `shoal upgrade`: the rolling upgrade. Pre-flight checks change nothing; then machine by
//! machine (the controller leader's last) the steps of `machine`, with the record in the
//! controllers after each step, a probe writer watching client impact, and a report.
//!
//! Before each machine is drained and again before it is stopped, `safety` checks that the
//! cluster can lose it; if not, the upgrade pauses with the machine running. Once a machine's
//! nodes may be stopped, any failure returns it to its old version through its agent.
//!
//! Exit status: 0 done (or the asked-for action done), 2 paused (budget, canary, --pause, a
//! machine the cluster cannot lose now), 1 refused or failed.

mod machine;
mod preflight;
mod probe;
mod progress;
mod report;
mod safety;
mod state;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use shoal_proto::NodeMode;

use self::machine::Machine;
use self::progress::{MachineEnd, Progress};
use self::safety::Moment;
use self::state::{RecordChanged, Status, Step, StepRecord, Store, UpgradeState};
use crate::cli::UpgradeArgs;
use crate::target::Target;
use shoal_client::record;
use shoal_client::record::now_ms;

const PAUSED: u8 = 2;

pub async fn run(args: UpgradeArgs) -> anyhow::Result<ExitCode> {
    let target = Target::resolve(&args.target)?;
    let (mut store, recorded) = Store::load(&target.controllers).await?;
    if args.show {
        report::show(recorded.as_ref(), args.json)?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.pause {
        store.request_pause().await?;
        println!("the upgrade will pause before its next machine");
        return Ok(ExitCode::SUCCESS);
    }
    if args.finalize {
        return finalize(&target, &mut store, recorded).await;
    }
    let state = if let Some(package) = &args.package {
        match preflight::new_upgrade(&target, package, recorded.as_ref()).await? {
            Some(st) => st,
            None => return Ok(ExitCode::SUCCESS), // nothing to do
        }
    } else if args.rollback {
        preflight::rollback(&target, recorded).await?
    } else {
        // --resume
        let Some(st) = recorded else {
            bail!("no upgrade is recorded to resume");
        };
        match &st.status {
            Status::Running | Status::Paused(_) => {}
            Status::Failed(why) => bail!(
                "the upgrade to {} failed ({why}); fix the cause and `--rollback`, or build a \
                 new package",
                st.to_version
            ),
            Status::Done | Status::Finalized => {
                println!("the upgrade to {} is already done", st.to_version);
                return Ok(ExitCode::SUCCESS);
            }
        }
        st
    };
    report::plan(&state, args.json);
    if args.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    drive(
        &target,
        &mut store,
        state,
        &args,
        &progress::Terminal::new(),
    )
    .await
}

/// Runs the recorded plan from where it stands, telling `progress` how it goes.
async fn drive(
    target: &Target,
    store: &mut Store<'_>,
    mut st: UpgradeState,
    args: &UpgradeArgs,
    progress: &dyn Progress,
) -> anyhow::Result<ExitCode> {
    let fault = fault_point()?;
    st.status = Status::Running;
    st.pause_requested = false;
    store.save(&mut st).await?;

    let status = target.controllers.cluster_status().await?;
    let sites: Vec<String> = status
        .nodes
        .iter()
        .filter(|n| n.mode() == NodeMode::Datanode)
        .map(|n| n.addr.clone())
        .collect();
    let probe = if args.probe_rate > 0.0 {
        Some(
            probe::start(
                &target.controllers,
                sites,
                target.channels.clone(),
                args.probe_rate,
            )
            .await?,
        )
    } else {
        None
    };

    let mut machines_this_run = 0usize;
    let mut window_start = now_ms();
    for i in 0..st.machines.len() {
        if st.machines[i].finished() {
            continue;
        }
        // Between machines: a --pause from another shell (seen by the last save), the
        // budget, the canary.
        if let Some(p) = &probe {
            st.probe = Some(record::window_stats(&p.records(), 0, u64::MAX));
        }
        store.save(&mut st).await?;
        if st.pause_requested {
            st.status = Status::Paused("paused by `shoal upgrade --pause`".into());
            break;
        }
        if let Some(p) = &probe {
            let seen = record::window_stats(&p.records(), window_start, now_ms());
            if let Some(why) = over_budget(&seen, p.in_flight_ms(), args) {
                st.status = Status::Paused(format!("client-impact budget exceeded: {why}"));
                break;
            }
        }
        if args.canary.is_some_and(|n| machines_this_run >= n) {
            st.status = Status::Paused(format!(
                "canary: stopped after {machines_this_run} machine(s); check them, then --resume"
            ));
            break;
        }
        window_start = now_ms();
        progress.machine(&st.machines[i].machine, st.machines[i].done.len());
        let outcome = upgrade_machine(target, store, &mut st, i, args, progress, fault).await;
        progress.machine_end(
            match &outcome {
                Outcome::Done => MachineEnd::Done,
                Outcome::Paused(_) => MachineEnd::Paused,
                Outcome::Failed(_) => MachineEnd::Failed,
            },
            st.target_version(),
        );
        match outcome {
            Outcome::Done => machines_this_run += 1,
            Outcome::Paused(why) => {
                st.status = Status::Paused(why);
                break;
            }
            Outcome::Failed(why) => {
                st.machines[i].done.clear();
                st.status = Status::Failed(why.clone());
                // The machine runs again; the record must say so, not that it is mid-step.
                // Its controller's return may be what gives the controllers their quorum back.
                if let Err(e) = save_when_reachable(store, &mut st).await {
                    bail!(
                        "{why}\n{} runs its old version again, but the upgrade record could \
                         not be updated ({e:#}): it still shows that machine mid-step",
                        st.machines[i].machine
                    );
                }
                break;
            }
        }
    }
    if st.status == Status::Running {
        st.status = Status::Done;
    }
    let probe_records = match probe {
        Some(p) => p.stop().await,
        None => Vec::new(),
    };
    if !probe_records.is_empty() {
        st.probe = Some(record::window_stats(&probe_records, 0, u64::MAX));
    }
    store.save(&mut st).await?;
    let writer = match &args.writer_record {
        Some(path) => Some(record::load(path)?),
        None => None,
    };
    report::finish(&st, &probe_records, writer.as_deref(), args.json)?;
    Ok(match st.status {
        Status::Done | Status::Finalized => ExitCode::SUCCESS,
        Status::Paused(_) | Status::Running => ExitCode::from(PAUSED),
        Status::Failed(_) => ExitCode::FAILURE,
    })
}

/// How one machine's pass ended.
enum Outcome {
    /// Every step done.
    Done,
    /// The cluster could not lose the machine (why); it was not stopped and runs as before.
    Paused(String),
    /// A step or a record write failed (why); the machine was returned to running the version
    /// it ran.
    Failed(String),
}

/// One machine's remaining steps, with the record saved after each. The machine is stopped
/// only after [`safety::wait_can_lose`] holds just before its drain and again just before its
/// stop; once it may be stopped, any failure (a step, the record) returns it to its old version.
async fn upgrade_machine(
    target: &Target,
    store: &mut Store<'_>,
    st: &mut UpgradeState,
    i: usize,
    args: &UpgradeArgs,
    progress: &dyn Progress,
    fault: Option<Step>,
) -> Outcome {
    let plan = st.machines[i].clone();
    let (to, from) = (
        st.target_version().to_owned(),
        st.source_version().to_owned(),
    );
    let m = Machine {
        target,
        plan: &plan,
        to: &to,
        from: &from,
        node_timeout: args.node_timeout,
    };
    // Resuming a machine that was not stopped yet: from its drain again (its process may
    // have restarted since and no longer be draining, or still be).
    let mut done = plan.done.clone();
    if !done.contains(&Step::StopNodes) {
        let moment = if done.contains(&Step::Drain) {
            Moment::BeforeStop
        } else {
            Moment::BeforeDrain
        };
        done.clear();
        if let Err(why) = safety::wait_can_lose(target, &plan, moment).await {
            return not_stopped(&m, st, i, why, moment).await;
        }
    }
    let todo: Vec<Step> = Step::ALL
        .into_iter()
        .filter(|s| !done.contains(s))
        .collect();
    for step in todo {
        if step == Step::StopNodes
            && let Err(why) = safety::wait_can_lose(target, &plan, Moment::BeforeStop).await
        {
            return not_stopped(&m, st, i, why, Moment::BeforeStop).await;
        }
        progress.step(step);
        let started_ms = now_ms();
        let show = |msg: String| progress.detail(step, &msg);
        let result = m.run(step, &show).await;
        st.steps.push(StepRecord {
            machine: plan.machine.clone(),
            step,
            started_ms,
            ended_ms: now_ms(),
            error: result
                .as_ref()
                .err()
                .map(|e| format!("{e:#}"))
                .unwrap_or_default(),
        });
        let result = match result {
            Ok(()) => {
                done.push(step);
                st.machines[i].done = done.clone();
                progress.step_done(step);
                if fault == Some(step) {
                    Err(anyhow!(
                        "{FAULT_ENV}: the record write after this step fails"
                    ))
                } else {
                    store.save(st).await
                }
                .context("cannot record the step")
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            let why = format!("{}: {}: {e:#}", plan.machine, step.describe());
            progress.notice(&why);
            // Its nodes may be stopped from the stop on; before it, they only drained.
            let undone = if step >= Step::StopNodes {
                progress.notice(&format!("returning {} to {from}", plan.machine));
                m.roll_back(&|msg| progress.notice(&format!("  {msg}")))
                    .await
            } else {
                progress.notice(&format!("restarting the data nodes of {}", plan.machine));
                m.restart_datanodes().await
            };
            return Outcome::Failed(match undone {
                Ok(()) => why,
                Err(e) => format!("{why}; undoing it failed too: {e:#}"),
            });
        }
    }
    Outcome::Done
}

/// The pause of a machine the cluster cannot lose now. A drained one gets its data nodes
/// restarted, which ends the drain: else its replicas could never catch up, and the next
/// check, which wants every chunk COMPLETE, would fail for good.
async fn not_stopped(
    m: &Machine<'_>,
    st: &mut UpgradeState,
    i: usize,
    why: String,
    moment: Moment,
) -> Outcome {
    let why = format!("{} cannot be stopped now: {why}", m.plan.machine);
    st.machines[i].done.clear();
    if moment == Moment::BeforeDrain {
        return Outcome::Paused(why);
    }
    match m.restart_datanodes().await {
        Ok(()) => Outcome::Paused(why),
        Err(e) => Outcome::Failed(format!(
            "{why}; restarting its drained data nodes failed: {e:#}"
        )),
    }
}

/// How long a failed run keeps trying to record that its machine runs again.
const RECORD_WAIT: Duration = Duration::from_secs(60);

/// Saves `st`, retrying while the controllers do not answer (each try already waits for a
/// leader), for at most [`RECORD_WAIT`]; never over another orchestrator's record.
async fn save_when_reachable(store: &mut Store<'_>, st: &mut UpgradeState) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        match store.save(st).await {
            Ok(()) => return Ok(()),
            Err(e)
                if started.elapsed() >= RECORD_WAIT
                    || e.downcast_ref::<RecordChanged>().is_some() =>
            {
                return Err(e);
            }
            Err(e) => tracing::warn!("recording the failure: {e:#}; trying again"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Test-only fault point, named by this variable: the record write right after the named step
/// (`stop_nodes`, `switch`, ...) fails as if the controllers had become unreachable, so tests
/// can fail an upgrade after a machine is stopped. Unset in normal use.
const FAULT_ENV: &str = "SHOAL_UPGRADE_FAIL_RECORD_AFTER";

fn fault_point() -> anyhow::Result<Option<Step>> {
    match std::env::var(FAULT_ENV) {
        Err(_) => Ok(None),
        Ok(name) => serde_json::from_value(serde_json::Value::String(name.clone()))
            .map(Some)
            .map_err(|_| anyhow!("{FAULT_ENV}={name}: not a step name (e.g. stop_nodes)")),
    }
}

/// `in_flight_ms`: how long the probe's current append has been waiting.
fn over_budget(
    seen: &record::WindowStats,
    in_flight_ms: u64,
    args: &UpgradeArgs,
) -> Option<String> {
    if seen.failed > args.max_errors {
        return Some(format!(
            "{} probe appends failed (allowed {})",
            seen.failed, args.max_errors
        ));
    }
    let max_stall = args.max_stall.as_millis() as u64;
    if in_flight_ms > max_stall {
        return Some(format!(
            "a probe append has been waiting {in_flight_ms} ms (allowed {max_stall} ms)"
        ));
    }
    match seen.longest_gap_ms {
        Some(gap) if gap > max_stall => Some(format!(
            "the probe waited {gap} ms between acknowledgements (allowed {max_stall} ms)"
        )),
        _ => None,
    }
}

/// The cluster version a finalize sets: the level of the release every node now runs, as its
/// leader reports it; a leader of a release that does not report one gets one more than today.
/// Never lower than today (a release whose level the cluster already has changes nothing).
fn finalize_target(current: u32, supported: u32) -> u32 {
    match supported {
        0 => current + 1,
        s => s.max(current),
    }
}

async fn finalize(
    target: &Target,
    store: &mut Store<'_>,
    recorded: Option<UpgradeState>,
) -> anyhow::Result<ExitCode> {
    let Some(mut st) = recorded else {
        bail!("no upgrade is recorded to finalize");
    };
    match &st.status {
        Status::Done if !st.rolling_back => {}
        Status::Finalized => {
            println!("{} is already finalized", st.to_version);
            return Ok(ExitCode::SUCCESS);
        }
        other => bail!(
            "cannot finalize: the upgrade to {} is {other:?}; every machine must run it first",
            st.to_version
        ),
    }
    // The target is recorded before it is set, so a rerun after a failure sets the same one.
    let status = target.controllers.cluster_status().await?;
    let wanted = match st.finalize_to {
        Some(v) => v,
        None => {
            let v = finalize_target(status.cluster_version, status.supported_cluster_version);
            st.finalize_to = Some(v);
            store.save(&mut st).await?;
            v
        }
    };
    let raised = target
        .controllers
        .set_cluster_version(wanted, &st.to_version)
        .await?;
    st.status = Status::Finalized;
    store.save(&mut st).await?;
    println!(
        "finalized {}: cluster version {}; rollback is no longer possible",
        st.to_version, raised.cluster_version
    );
    Ok(ExitCode::SUCCESS)
}
