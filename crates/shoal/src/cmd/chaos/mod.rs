//! `shoal chaos`: the fault tier. A three-machine cluster in network namespaces, clients in
//! their own namespace recording a history, nemeses (partitions, pauses, kills, wiped disks, a
//! full disk, fsync errors, clock jumps, frozen machines, DDL churn) started and stopped on a schedule, and the checker of `shoal-chaos` judging the
//! history once the faults are healed.
//!
//! - [`cluster`]: the cluster in network namespaces (`shoal_netns`) (the files of `shoal local up`, agents via `ip netns exec`).
//! - [`firewall`]: nft rules inside a namespace.
//! - [`shim`]: the LD_PRELOAD fault shim (fsync EIO, clock jumps) and its control files.
//! - [`freezer`]: a whole machine frozen in a cgroup.
//! - [`rolling_upgrade`]: the package and orchestrator of the `upgrade` nemesis.
//! - [`nemesis`]: each fault, its target and its undo.
//! - [`schedule`]: a scenario, or a random sequence from a seed.
//! - [`workload`]: writers and readers (`shoal chaos workload`, run inside the client namespace).
//! - [`final_state`]: reads after healing (`shoal chaos final`, likewise).
//! - [`churn`]: DDL beside the workload (`shoal chaos churn`, likewise).
//! - [`run`]: one run, start to verdict.

mod churn;
mod cluster;
mod final_state;
mod firewall;
mod freezer;
mod nemesis;
mod rolling_upgrade;
mod run;
mod schedule;
mod shim;
mod workload;

use std::process::ExitCode;

use crate::cli::{ChaosCheckArgs, ChaosCommand};
pub use nemesis::Nemesis;

pub async fn run(command: ChaosCommand) -> anyhow::Result<ExitCode> {
    match command {
        // Blocking by nature (child processes, sleeps for nemesis holds): off the runtime.
        ChaosCommand::Run(a) => tokio::task::spawn_blocking(move || run::run(a)).await?,
        ChaosCommand::Check(a) => check(a),
        ChaosCommand::Workload(a) => workload::run(a).await.map(|()| ExitCode::SUCCESS),
        ChaosCommand::Final(a) => final_state::run(a).await.map(|()| ExitCode::SUCCESS),
        ChaosCommand::Churn(a) => churn::run(a).await.map(|()| ExitCode::SUCCESS),
    }
}

/// `shoal chaos check HISTORY`: the verdict on a recorded history.
fn check(args: ChaosCheckArgs) -> anyhow::Result<ExitCode> {
    let ops = shoal_chaos::history::load(&args.history)?;
    let report = shoal_chaos::check::check(&ops);
    crate::output::verdict(args.json, report.ok(), || report.json(), || report.text())
}
