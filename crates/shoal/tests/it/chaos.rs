//! The fault tier's CI smoke set: `shoal chaos run` with one nemesis on a fresh three-machine
//! cluster in network namespaces, under writers and readers; the checker must find no
//! violation. Needs root, network namespaces and nft (`scripts/test` installs it): without root
//! or namespaces each test prints SKIPPED with the reason (the run exits 77), uncaptured. The long tier with
//! every nemesis and random schedules is `scripts/chaos`.

use std::io::Write;
use std::sync::Mutex;

use serde_json::Value;

use crate::harness::{shoal, stderr};

/// One run at a time: each is a cluster of nine processes and the timing of its faults
/// matters; the rest of the suite still runs beside it.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
/// `shoal chaos run`'s exit status where the tier cannot run.
const UNSUPPORTED: i32 = 77;

/// Runs `nemesis` held `hold` and asserts the checker found nothing. The run's directory is
/// kept when it fails, for its history and logs.
fn run_clean(nemesis: &str, hold: &str) {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("run");
    let out = shoal(&[
        "chaos",
        "run",
        "--nemesis",
        nemesis,
        "--hold",
        hold,
        "--json",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    if out.status.code() == Some(UNSUPPORTED) {
        // Straight to stderr: libtest captures `eprintln!` of passing tests, and a skip must
        // be seen.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED it::chaos {nemesis}: {}",
            stderr(&out).trim()
        );
        return;
    }
    let report: Option<Value> = serde_json::from_slice(&out.stdout).ok();
    if out.status.success() && report.as_ref().is_some_and(|r| r["ok"] == true) {
        return;
    }
    let kept = tmp.keep();
    panic!(
        "chaos {nemesis}: {}\nreport: {:#}\nrun kept in {}\n{}",
        out.status,
        report.unwrap_or(Value::Null),
        kept.display(),
        stderr(&out),
    );
}

#[test]
fn a_primary_cut_from_its_replica_loses_nothing() {
    // Past the 17 s primary timeout: the coordinator or the primary removes the other side.
    run_clean("partition-primary-replica", "25s");
}

#[test]
fn a_primary_paused_for_20_s_loses_nothing() {
    run_clean("pause-primary", "20s");
}

#[test]
fn a_primary_killed_and_restarted_on_a_wiped_volume_loses_nothing() {
    run_clean("wipe-primary", "20s");
}

#[test]
fn a_full_disk_on_a_primary_loses_nothing() {
    run_clean("disk-full", "20s");
}

#[test]
fn a_primary_whose_fsyncs_fail_loses_nothing() {
    // Each restart's first sync fails again: 12 s is several poisoned stores and restarts.
    run_clean("fsync-eio", "12s");
}
