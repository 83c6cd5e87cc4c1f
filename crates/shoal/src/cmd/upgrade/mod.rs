//! `shoal upgrade`: the rolling upgrade. Pre-flight checks change nothing; then machine by
//! machine (the controller leader's last) the steps of `machine`, with the record in the
//! controllers after each step, a probe writer watching client impact, and a report.
//!
//! Exit status: 0 done (or the asked-for action done), 2 paused (budget, canary, --pause),
//! 1 refused or failed.

mod machine;
mod preflight;
mod probe;
mod report;
mod state;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::bail;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use shoal_proto::NodeMode;

use self::machine::Machine;
use self::state::{Status, Step, StepRecord, Store, UpgradeState};
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
    drive(&target, &mut store, state, &args).await
}

/// Runs the recorded plan from where it stands.
async fn drive(
    target: &Target,
    store: &mut Store<'_>,
    mut st: UpgradeState,
    args: &UpgradeArgs,
) -> anyhow::Result<ExitCode> {
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

    let bars = MultiProgress::new();
    let quiet = !std::io::stderr().is_terminal();
    let mut machines_this_run = 0usize;
    let mut window_start = now_ms();
    for i in 0..st.machines.len() {
        if st.machines[i].finished() {
            continue;
        }
        // Between machines: a --pause from another shell (seen by the last save), the
        // budget, the canary.
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
        let plan = st.machines[i].clone();
        let bar = bars.add(ProgressBar::new(Step::ALL.len() as u64));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>12} [{bar:18}] {pos}/{len} {wide_msg} [{elapsed}]",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix(plan.machine.clone());
        bar.set_position(plan.done.len() as u64);
        let to = st.target_version().to_owned();
        let from = st.source_version().to_owned();
        let m = Machine {
            target,
            plan: &plan,
            to: &to,
            from: &from,
            node_timeout: args.node_timeout,
        };
        // Resuming a machine that was not stopped yet: drain it again (its process may have
        // restarted since and no longer be draining).
        let mut done = plan.done.clone();
        if !done.contains(&Step::StopNodes) {
            done.clear();
        }
        let mut failure = None;
        let todo: Vec<Step> = Step::ALL
            .into_iter()
            .filter(|s| !done.contains(s))
            .collect();
        for step in todo {
            bar.set_message(step.describe());
            if quiet {
                eprintln!("{}: {}", plan.machine, step.describe());
            }
            let started_ms = now_ms();
            let show = |msg: String| bar.set_message(format!("{}: {msg}", step.describe()));
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
            match result {
                Ok(()) => {
                    done.push(step);
                    st.machines[i].done = done.clone();
                    bar.inc(1);
                    store.save(&mut st).await?;
                }
                Err(e) => {
                    failure = Some((step, e));
                    break;
                }
            }
        }
        match failure {
            None => {
                bar.finish_with_message(format!("on {to}"));
                machines_this_run += 1;
            }
            Some((step, e)) => {
                bar.abandon_with_message(format!("{}: failed", step.describe()));
                let why = format!("{}: {}: {e:#}", plan.machine, step.describe());
                // Whatever the step, the machine goes back to running the version it ran (its
                // nodes restarted: a drained node stops draining, a stopped one starts).
                eprintln!("{why}\nreturning {} to {from}", plan.machine);
                let show = |msg: String| eprintln!("  {msg}");
                if let Err(e) = m.roll_back(&show).await {
                    eprintln!("returning {} to {from} failed too: {e:#}", plan.machine);
                }
                st.machines[i].done.clear();
                st.status = Status::Failed(why);
                break;
            }
        }
    }
    if st.status == Status::Running {
        st.status = Status::Done;
    }
    store.save(&mut st).await?;
    let probe_records = match probe {
        Some(p) => p.stop().await,
        None => Vec::new(),
    };
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
            st.finalize_to = Some(status.cluster_version + 1);
            store.save(&mut st).await?;
            status.cluster_version + 1
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
