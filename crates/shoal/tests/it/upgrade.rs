//! Rolling upgrades with real processes: `shoal upgrade` moves every node of a running cluster
//! to another build while the seed's writer appends at 200/s (nothing failed, lost or
//! doubled; every node's `/metrics` and `/ready`, scraped meanwhile, follow it machine by
//! machine, see `upgrade_watch`), refuses bad packages and unhealthy clusters before touching anything, resumes
//! after its orchestrator is killed, rolls back a version that cannot start, and `--rollback`
//! returns every machine to the old version with the data intact.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shoal_common::version::CLUSTER_VERSION;

use crate::chunk_files::{replica_dirs, wait_all_flushed};
use crate::data::{Data, create_seed_table, runtime};
use crate::harness::{
    Frozen, LocalCluster, Spawned, all_up, kill9, leader, next_binary, node, nodes,
    previous_release_binary, shoal_bin, shoal_with, shoal_with_env, stderr, stdout,
};
use crate::query::sql_refused;
use crate::upgrade_watch::Watch;

/// The version a binary reports (`build-info`).
pub fn version_of(binary: &Path) -> String {
    let out = shoal_with(binary, &["build-info"]);
    assert!(out.status.success(), "build-info: {}", stderr(&out));
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    info["version"].as_str().unwrap().to_owned()
}

/// A release package of `binary`, built in `dir`.
pub fn package(dir: &Path, binary: &Path) -> PathBuf {
    let out_file = dir.join(format!("shoal-{}.pkg", version_of(binary)));
    let out = shoal_with(
        Path::new(shoal_bin()),
        &[
            "package",
            "build",
            "--binary",
            binary.to_str().unwrap(),
            "--out",
            out_file.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "package build: {}", stderr(&out));
    out_file
}

/// Every node's version, by alias.
fn versions(cluster: &LocalCluster) -> Vec<(String, String, String)> {
    nodes(&cluster.status())
        .iter()
        .map(|n| {
            (
                n["alias"].as_str().unwrap().to_owned(),
                n["version"].as_str().unwrap().to_owned(),
                n["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn assert_all_on(cluster: &LocalCluster, version: &str) {
    let v = versions(cluster);
    assert!(
        v.iter()
            .all(|(_, ver, state)| ver == version && state == "UP"),
        "not every node UP on {version}: {v:?}"
    );
}

/// `shoal upgrade ARGS` on `cluster`.
pub fn upgrade(cluster: &LocalCluster, args: &[&str]) -> Output {
    let mut all = vec!["upgrade"];
    all.extend_from_slice(args);
    cluster.run(&all)
}

/// The machines an upgrade report's steps went through, in order.
fn recorded_machines(report: &Value) -> Vec<&Value> {
    let mut machines: Vec<&Value> = Vec::new();
    for step in report["steps"].as_array().into_iter().flatten() {
        if !machines.contains(&&step["machine"]) {
            machines.push(&step["machine"]);
        }
    }
    machines
}

fn recorded(cluster: &LocalCluster) -> Value {
    let out = upgrade(cluster, &["--show", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The seed's writer at 200 appends/s for `secs`, recording every outcome.
fn start_writer(cluster: &LocalCluster, dir: &Path, secs: u32) -> Spawned {
    Spawned(
        Command::new(shoal_bin())
            .args(["write", "--dir", cluster.dir_str(), "--rate", "200"])
            .args(["--duration", &format!("{secs}s"), "--json", "--record"])
            .arg(dir.join("record.jsonl"))
            .env_remove("SHOAL_CLUSTER_SECRET")
            .stdout(std::fs::File::create(dir.join("summary.json")).unwrap())
            .stderr(std::fs::File::create(dir.join("writer.log")).unwrap())
            .spawn()
            .unwrap(),
    )
}

/// Waits for the writer, then checks it failed nothing and `verify --record` holds.
fn finish_writer(cluster: &LocalCluster, dir: &Path, mut writer: Spawned) -> Value {
    let exit = writer.wait(Duration::from_secs(120));
    let log = std::fs::read_to_string(dir.join("writer.log")).unwrap();
    assert!(exit.success(), "writer failed ({exit}): {log}");
    let summary: Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["appends_failed"], 0, "{summary:#}");
    // Rows exactly once (a retried append the cluster had applied is not a second row).
    verify(cluster, dir);
    summary
}

fn verify(cluster: &LocalCluster, dir: &Path) {
    let record = dir.join("record.jsonl");
    let out = cluster.run(&[
        "verify",
        "--record",
        record.to_str().unwrap(),
        "--max-age",
        "10m",
    ]);
    assert!(
        out.status.success(),
        "verify: {}{}",
        stdout(&out),
        stderr(&out)
    );
}

/// A cluster of this build with the seed's table, a scratch directory, the next-version build,
/// and both versions.
struct Setup {
    cluster: LocalCluster,
    tmp: tempfile::TempDir,
    next: PathBuf,
    old: String,
    new: String,
}

fn setup() -> Setup {
    let next = next_binary();
    let (old, new) = (version_of(Path::new(shoal_bin())), version_of(&next));
    let cluster = LocalCluster::start();
    create_seed_table(&cluster);
    Setup {
        cluster,
        tmp: tempfile::tempdir().unwrap(),
        next,
        old,
        new,
    }
}

#[test]
fn a_rolling_upgrade_under_writes_fails_no_append_and_rollback_returns_every_machine() {
    let Setup {
        cluster,
        tmp,
        next,
        old,
        new,
    } = setup();
    let pkg = package(tmp.path(), &next);

    let writer = start_writer(&cluster, tmp.path(), 45);
    std::thread::sleep(Duration::from_secs(2));
    let record = tmp.path().join("record.jsonl");
    let watch = Watch::start(&cluster.status());
    let out = upgrade(
        &cluster,
        &[
            "--package",
            pkg.to_str().unwrap(),
            "--probe-rate",
            "50",
            "--writer-record",
            record.to_str().unwrap(),
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "upgrade failed: {}{}\n{}",
        stdout(&out),
        stderr(&out),
        cluster.logs()
    );
    let seen = watch.stop();
    eprintln!(
        "scraped: not ready {:#?}, at most {} chunks RECOVERING",
        seen.not_ready, seen.recovering_max
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("upgrade report: {report:#}");
    assert_eq!(report["status"]["status"], "done");
    assert_eq!(report["probe"]["failed"], 0, "{report:#}");
    assert_all_on(&cluster, &new);
    // Scraped meanwhile: every node's build info switched to the new version machine by
    // machine in the plan's order (and so in no other), a data node's /ready said it was
    // draining before its stop, and the drains left chunks RECOVERING for a while.
    let order: Vec<&str> = recorded_machines(&report)
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    seen.check_versions(&order, &old, &new)
        .unwrap_or_else(|e| panic!("{e}: {seen:#?}"));
    let reversed: Vec<&str> = order.iter().rev().copied().collect();
    assert!(seen.check_versions(&reversed, &old, &new).is_err());
    assert!(!seen.seen_draining().is_empty(), "{:#?}", seen.not_ready);
    assert!(seen.recovering_max > 0.0, "no chunk seen RECOVERING");
    // The record, as SQL sees it: every machine done, in the plan's order.
    let out = cluster.run(&[
        "sql",
        "SELECT position, machine, state, steps_done, status, to_version FROM cluster.upgrade ORDER BY position",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let plan: Vec<&Value> = recorded_machines(&report);
    assert_eq!(rows.as_array().map(Vec::len), Some(plan.len()), "{rows:#}");
    for (row, machine) in rows.as_array().unwrap().iter().zip(plan) {
        assert_eq!(&row["machine"], machine, "{rows:#}");
        assert_eq!(
            (&row["state"], &row["status"], &row["to_version"]),
            (&json!("done"), &json!("done"), &json!(new)),
            "{rows:#}"
        );
        assert!(
            row["steps_done"].as_str().unwrap().ends_with("recovered"),
            "{rows:#}"
        );
    }
    // And as the controllers' metrics say, once they sampled the final record (each second):
    // nothing running, every machine done, no chunk RECOVERING.
    for n in nodes(&cluster.status())
        .iter()
        .filter(|n| n["mode"] == "controller")
    {
        let addr = crate::metrics::http_addr(n["addr"].as_str().unwrap());
        let started = Instant::now();
        loop {
            let (_, m) = crate::metrics::get(&addr, "/metrics");
            let running = crate::metrics::sample(&m, "shoal_upgrade_running", &[]);
            let done = crate::metrics::sample(&m, "shoal_upgrade_machines", &[r#"state="done""#]);
            let recovering = crate::metrics::sample(&m, "shoal_chunks", &[r#"state="RECOVERING""#]);
            if (running, done, recovering) == (0.0, 3.0, 0.0) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "{m}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let summary = finish_writer(&cluster, tmp.path(), writer);
    eprintln!("writer: {summary:#}");

    // The machines' metadata was backed up before each was changed.
    for host in &cluster.hosts {
        let backups = cluster.dir.join(host).join("backups");
        let n = std::fs::read_dir(&backups).map_or(0, |d| d.count());
        assert_eq!(n, 1, "{}", backups.display());
    }

    // Not finalized yet: --rollback brings every machine back, data intact.
    let out = upgrade(&cluster, &["--rollback", "--probe-rate", "0"]);
    assert!(
        out.status.success(),
        "rollback failed: {}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_all_on(&cluster, &old);
    verify(&cluster, tmp.path());
    let out = upgrade(&cluster, &["--finalize"]);
    assert!(
        !out.status.success(),
        "finalize after a rollback must be refused"
    );

    // Upgrade again and finalize: rollback is refused from then on. A cluster this release
    // created runs at its level from the start, and a release of the same level keeps it.
    let out = upgrade(
        &cluster,
        &["--package", pkg.to_str().unwrap(), "--probe-rate", "0"],
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let level = Some(u64::from(CLUSTER_VERSION));
    assert_eq!(cluster.status()["cluster_version"].as_u64(), level);
    let out = upgrade(&cluster, &["--finalize"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(cluster.status()["cluster_version"].as_u64(), level);
    let out = upgrade(&cluster, &["--rollback"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("finalized"), "{}", stderr(&out));
    assert_all_on(&cluster, &new);
    verify(&cluster, tmp.path());
}

/// A stand-in `shoal` that says it is `version` (upgrading from `min`) and fails at anything
/// else: a release that cannot start.
fn fake_binary(dir: &Path, version: &str, min: &str) -> PathBuf {
    let path = dir.join(format!("fake-{version}"));
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nif [ \"$1\" = build-info ]; then echo '{{\"version\":\"{version}\",\
             \"build_date\":\"2026.01.01\",\"min_upgrade_from\":\"{min}\",\"wire_version\":1,\
             \"storage_format_version\":1}}'; exit 0; fi\necho cannot start >&2\nexit 3\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Nothing staged on any machine, no upgrade recorded, every node on `version`.
fn assert_untouched(cluster: &LocalCluster, version: &str) {
    assert_eq!(recorded(cluster), Value::Null);
    assert_all_on(cluster, version);
    for host in &cluster.hosts {
        let installed: Vec<String> = std::fs::read_dir(cluster.dir.join(host).join("versions"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(installed, vec![version.to_owned()], "{host}");
    }
}

#[test]
fn bad_packages_and_an_unhealthy_cluster_are_refused_before_anything_changes() {
    let old = version_of(Path::new(shoal_bin()));
    let cluster = LocalCluster::start();
    create_seed_table(&cluster);
    let tmp = tempfile::tempdir().unwrap();

    // A flipped byte inside the binary: the checksum names it.
    let pkg = package(tmp.path(), &next_binary());
    let mut bytes = std::fs::read(&pkg).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    let bad = tmp.path().join("damaged.pkg");
    std::fs::write(&bad, bytes).unwrap();
    let out = upgrade(&cluster, &["--package", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("sha256") && stderr(&out).contains("shoal"),
        "{}",
        stderr(&out)
    );
    assert_untouched(&cluster, &old);

    // Older than what runs, and a jump the package does not support.
    for (version, min, expect) in [
        ("0.0.1", "0.0.1", "downgrade"),
        ("9.0.0", "8.0.0", "intermediate release"),
    ] {
        let pkg = package(tmp.path(), &fake_binary(tmp.path(), version, min));
        let out = upgrade(&cluster, &["--package", pkg.to_str().unwrap()]);
        assert!(!out.status.success(), "{version} accepted");
        assert!(stderr(&out).contains(expect), "{version}: {}", stderr(&out));
        assert_untouched(&cluster, &old);
    }

    // A machine down while rows are written: the chunk it holds a replica of is not COMPLETE.
    let out = cluster.run(&["write", "--count", "20", "--rate", "100"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let data = crate::data::Data::connect(&cluster);
    let chunks = crate::data::runtime().block_on(data.chunks());
    let holder = &chunks[0].replicas[0].node;
    let status = cluster.status();
    let host = nodes(&status)
        .iter()
        .find(|n| n["alias"] == holder.as_str())
        .unwrap()["machine"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = cluster.run(&["host", "stop", &host]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cluster.run(&["write", "--count", "20", "--rate", "100"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = upgrade(&cluster, &["--package", pkg.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("every chunk must be COMPLETE"),
        "{}",
        stderr(&out)
    );
    assert_eq!(recorded(&cluster), Value::Null);
}

#[test]
fn a_paused_or_killed_orchestrator_resumes_and_a_version_that_cannot_start_is_rolled_back() {
    let Setup {
        cluster,
        tmp,
        next,
        old,
        new,
    } = setup();

    // A version whose nodes cannot start: the first machine goes back to the old version and
    // the upgrade stops, failed, with every node UP.
    let broken = package(tmp.path(), &fake_binary(tmp.path(), "9.9.9", &old));
    let out = upgrade(
        &cluster,
        &[
            "--package",
            broken.to_str().unwrap(),
            "--node-timeout",
            "10s",
            "--probe-rate",
            "0",
        ],
    );
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).contains("failed"), "{}", stdout(&out));
    assert_eq!(recorded(&cluster)["status"]["status"], "failed");
    assert_all_on(&cluster, &old);
    // A failed upgrade is rolled back (nothing to undo: the machine is back) before another.
    let out = upgrade(&cluster, &["--rollback", "--probe-rate", "0"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    // Canary: one machine, then stop (exit 2) with the record saying so.
    let pkg = package(tmp.path(), &next);
    let out = upgrade(
        &cluster,
        &[
            "--package",
            pkg.to_str().unwrap(),
            "--canary",
            "1",
            "--probe-rate",
            "0",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let on_new = versions(&cluster)
        .iter()
        .filter(|(_, v, _)| *v == new)
        .count();
    assert_eq!(
        on_new,
        3,
        "one machine (3 nodes) on {new}: {:?}",
        versions(&cluster)
    );

    // Resume; a --pause from another shell stops it before the third machine (exit 2).
    let mut orchestrator = resume_in_background(&cluster);
    // The second machine drained (the canary took 9 steps): the pause lands before it ends.
    wait_steps(&cluster, 10);
    let out = upgrade(&cluster, &["--pause"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(orchestrator.wait(Duration::from_secs(120)).code(), Some(2));
    let st = recorded(&cluster);
    assert_eq!(st["status"]["status"], "paused", "{st:#}");
    let finished = st["machines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["done"].as_array().unwrap().len() == 9)
        .count();
    assert_eq!(finished, 2, "{st:#}");

    // Resume, and kill -9 the orchestrator once the last machine is under way.
    let mut orchestrator = resume_in_background(&cluster);
    wait_steps(&cluster, 19); // the last machine drained
    kill9(u64::from(orchestrator.0.id()));
    orchestrator.wait(Duration::from_secs(10));
    let out = upgrade(&cluster, &["--resume", "--probe-rate", "0"]);
    assert!(
        out.status.success(),
        "resume failed: {}{}\n{}",
        stdout(&out),
        stderr(&out),
        cluster.logs()
    );
    assert_all_on(&cluster, &new);
    assert_eq!(recorded(&cluster)["status"]["status"], "done");
}

/// `pid` of a node in a status JSON.
fn pid(status: &Value, alias: &str) -> u64 {
    node(status, alias)["pid"].as_u64().unwrap()
}

/// Every controller acknowledges the leader (or is it).
fn controllers_answer(status: &Value) -> bool {
    nodes(status)
        .iter()
        .filter(|n| n["mode"] == "controller")
        .all(|n| n["raft_role"] == "leader" || n["raft_role"] == "follower")
}

#[test]
fn the_upgrade_pauses_rather_than_stop_a_machine_whose_loss_would_cost_the_controller_quorum() {
    let Setup {
        cluster,
        tmp,
        next,
        new,
        ..
    } = setup();
    let pkg = package(tmp.path(), &next);
    let writer = start_writer(&cluster, tmp.path(), 45);
    let out = upgrade(
        &cluster,
        &[
            "--package",
            pkg.to_str().unwrap(),
            "--canary",
            "1",
            "--probe-rate",
            "0",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );

    // The leader's machine is upgraded last, so its controller is one the next machine's
    // stop would need. Kill it with its agent frozen: nothing restarts it.
    let before = cluster.status();
    let killed = leader(&before).expect("one leader");
    let machine = node(&before, &killed)["machine"]
        .as_str()
        .unwrap()
        .to_owned();
    let agent = nodes(&before)
        .iter()
        .find(|n| n["mode"] == "agent" && n["machine"] == machine.as_str())
        .unwrap()["alias"]
        .as_str()
        .unwrap()
        .to_owned();
    let frozen = Frozen::new(pid(&before, &agent));
    kill9(pid(&before, &killed));
    // As soon as another leads, status no longer shows the dead controller UP.
    let elected = cluster.wait_status("a new leader", Duration::from_secs(30), |s| {
        leader(s).is_some_and(|l| l != killed)
    });
    assert_eq!(node(&elected, &killed)["state"], "DOWN", "{elected:#}");

    let started = Instant::now();
    let out = upgrade(&cluster, &["--resume", "--probe-rate", "0"]);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    eprintln!("--resume ended in {:?}: {said}", started.elapsed());
    assert_eq!(out.status.code(), Some(2), "{said}\n{}", cluster.logs());
    let expected = format!("controller {killed} on {machine} does not answer");
    assert!(said.contains(&expected), "{said}");
    assert!(said.contains("would leave 1 of 3 controllers"), "{said}");
    let st = recorded(&cluster);
    assert_eq!(st["status"]["status"], "paused", "{st:#}");
    assert!(
        st["status"]["reason"].as_str().unwrap().contains(&expected),
        "{st:#}"
    );
    // No machine was stopped: every node but the killed controller (and the frozen agent)
    // UP as the same process.
    let after = cluster.status();
    for n in nodes(&before) {
        let alias = n["alias"].as_str().unwrap();
        if alias == killed || alias == agent {
            continue;
        }
        assert_eq!(node(&after, alias)["state"], "UP", "{alias}: {after:#}");
        assert_eq!(pid(&after, alias), pid(&before, alias), "{alias} restarted");
    }

    // The agent, thawed, restarts the controller; then the upgrade goes on.
    drop(frozen);
    cluster.wait_status(
        "every node UP and every controller answering",
        Duration::from_secs(60),
        |s| all_up(s) && controllers_answer(s),
    );
    let out = upgrade(&cluster, &["--resume", "--probe-rate", "0"]);
    assert!(
        out.status.success(),
        "resume failed: {}{}\n{}",
        stdout(&out),
        stderr(&out),
        cluster.logs()
    );
    assert_all_on(&cluster, &new);
    finish_writer(&cluster, tmp.path(), writer);
}

#[test]
fn a_failed_step_never_leaves_a_machine_stopped_and_the_record_says_so() {
    let Setup {
        cluster,
        tmp,
        next,
        old,
        ..
    } = setup();
    let pkg = package(tmp.path(), &next);
    let writer = start_writer(&cluster, tmp.path(), 40);
    // The test-only fault point: the record cannot be written once the first machine is
    // stopped and switched to the new version (as when the controllers become unreachable).
    let out = upgrade_failing_after(&cluster, &pkg, "switch");
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("SHOAL_UPGRADE_FAIL_RECORD_AFTER") && said.contains("returning"),
        "{said}"
    );
    // Back on the old version, nodes and agent alike, and the record says so.
    assert_all_on(&cluster, &old);
    let st = recorded(&cluster);
    assert_eq!(st["status"]["status"], "failed", "{st:#}");
    for m in st["machines"].as_array().unwrap() {
        assert_eq!(m["done"], serde_json::json!([]), "{st:#}");
    }
    for host in &cluster.hosts {
        let current = std::fs::read_link(cluster.dir.join(host).join("current")).unwrap();
        assert!(current.ends_with(&old), "{host}: {}", current.display());
    }

    // A failure before the stop: the drained data node is restarted, the controller and agent
    // of its machine keep running.
    let out = upgrade(&cluster, &["--rollback", "--probe-rate", "0"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let before = cluster.status();
    let out = upgrade_failing_after(&cluster, &pkg, "drain");
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("restarting the data nodes"), "{said}");
    let st = recorded(&cluster);
    assert_eq!(st["status"]["status"], "failed", "{st:#}");
    let first = &st["machines"][0];
    assert_eq!(first["done"], serde_json::json!([]), "{st:#}");
    let after = cluster.wait_status("every node UP", Duration::from_secs(60), all_up);
    for n in nodes(&before) {
        let alias = n["alias"].as_str().unwrap();
        let on_first = n["machine"] == first["machine"];
        if on_first && n["mode"] == "datanode" {
            assert_ne!(
                pid(&after, alias),
                pid(&before, alias),
                "{alias} not restarted"
            );
        } else {
            assert_eq!(pid(&after, alias), pid(&before, alias), "{alias} restarted");
        }
    }
    assert_all_on(&cluster, &old);
    finish_writer(&cluster, tmp.path(), writer);
}

#[test]
fn controllers_losing_their_quorum_after_a_machine_stopped_get_it_back_from_that_machine() {
    let Setup {
        cluster,
        tmp,
        next,
        old,
        ..
    } = setup();
    let pkg = package(tmp.path(), &next);
    // The plan's first machine (the lowest address but the leader's), its controller, and the
    // controller of the machine that is neither: freezing that one while the first is stopped
    // leaves the leader alone.
    let before = cluster.status();
    let leading = node(&before, &leader(&before).unwrap())["machine"].clone();
    let controllers: Vec<&Value> = nodes(&before)
        .iter()
        .filter(|n| n["mode"] == "controller" && n["machine"] != leading)
        .collect();
    let (first, other) = match controllers.as_slice() {
        [a, b] if a["machine"].as_str() < b["machine"].as_str() => (a, b),
        [a, b] => (b, a),
        _ => panic!("{before:#}"),
    };
    let first_pid = first["pid"].as_u64().unwrap();

    let mut orchestrator = Spawned(
        Command::new(shoal_bin())
            .args(["upgrade", "--package", pkg.to_str().unwrap()])
            .args(["--probe-rate", "0", "--dir", cluster.dir_str()])
            .env_remove("SHOAL_CLUSTER_SECRET")
            .stdout(std::fs::File::create(tmp.path().join("out")).unwrap())
            .stderr(std::fs::File::create(tmp.path().join("err")).unwrap())
            .spawn()
            .unwrap(),
    );
    // The moment the first machine's controller has exited, freeze the other one.
    let started = Instant::now();
    while exists(first_pid) {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "never stopped"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let frozen = Frozen::new(other["pid"].as_u64().unwrap());
    let frozen_at = Instant::now();
    let exit = orchestrator.wait(Duration::from_secs(240));
    let said = format!(
        "{}{}",
        std::fs::read_to_string(tmp.path().join("out")).unwrap(),
        std::fs::read_to_string(tmp.path().join("err")).unwrap()
    );
    eprintln!(
        "orchestrator exited {exit} {:?} after the freeze: {said}",
        frozen_at.elapsed()
    );
    assert_eq!(exit.code(), Some(1), "{said}");
    assert!(said.contains("returning"), "{said}");
    // Its machine runs the old version again, and the record says the upgrade failed with no
    // machine mid-step, written once its controller gave the others their quorum back.
    let alias = first["alias"].as_str().unwrap();
    let st = cluster.status();
    assert_eq!(node(&st, alias)["state"], "UP", "{st:#}");
    assert_eq!(node(&st, alias)["version"], old.as_str(), "{st:#}");
    let rec = recorded(&cluster);
    assert_eq!(rec["status"]["status"], "failed", "{rec:#}");
    for m in rec["machines"].as_array().unwrap() {
        assert_eq!(m["done"], serde_json::json!([]), "{rec:#}");
    }
    drop(frozen);
    cluster.wait_status("every node UP", Duration::from_secs(60), all_up);
    assert_all_on(&cluster, &old);
}

/// A live process (not a zombie).
fn exists(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_owned())
        })
        .is_some_and(|rest| !rest.starts_with('Z'))
}

/// `shoal upgrade --package PKG` with the test-only fault point: the record write right after
/// `step` fails.
fn upgrade_failing_after(cluster: &LocalCluster, pkg: &Path, step: &str) -> Output {
    shoal_with_env(
        Path::new(shoal_bin()),
        &[
            "upgrade",
            "--package",
            pkg.to_str().unwrap(),
            "--probe-rate",
            "0",
            "--dir",
            cluster.dir_str(),
        ],
        &[("SHOAL_UPGRADE_FAIL_RECORD_AFTER", step)],
    )
}

fn resume_in_background(cluster: &LocalCluster) -> Spawned {
    Spawned(
        Command::new(shoal_bin())
            .args([
                "upgrade",
                "--resume",
                "--probe-rate",
                "0",
                "--dir",
                cluster.dir_str(),
            ])
            .env_remove("SHOAL_CLUSTER_SECRET")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Until the upgrade record holds `n` finished steps.
fn wait_steps(cluster: &LocalCluster, n: usize) {
    let started = Instant::now();
    loop {
        let st = recorded(cluster);
        if st["steps"].as_array().map_or(0, Vec::len) >= n {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no progress: {st:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_previous_release_is_upgraded_to_this_code_under_writes() {
    let previous = previous_release_binary();
    let current = Path::new(shoal_bin());
    let cluster = LocalCluster::start_from(&previous, &[]);
    assert_all_on(&cluster, &version_of(&previous));
    create_seed_table(&cluster);
    let tmp = tempfile::tempdir().unwrap();
    let pkg = package(tmp.path(), current);
    let writer = start_writer(&cluster, tmp.path(), 30);
    std::thread::sleep(Duration::from_secs(2));
    let out = upgrade(&cluster, &["--package", pkg.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "upgrade failed: {}{}\n{}",
        stdout(&out),
        stderr(&out),
        cluster.logs()
    );
    assert_all_on(&cluster, &version_of(current));
    finish_writer(&cluster, tmp.path(), writer);

    // The previous release's cluster stays at its level until the finalize raises it to ours;
    // until then what its controllers would not know is refused (and `verify` below finds
    // every row still there), and no replica is written in a format it could not read.
    assert_eq!(cluster.status()["cluster_version"].as_u64(), Some(1));
    let replicas = replica_dirs(&cluster.dir);
    assert!(!replicas.is_empty());
    for dir in &replicas {
        assert!(
            !dir.join("MANIFEST").exists(),
            "{} converted before finalize",
            dir.display()
        );
    }
    let err = sql_refused(
        &cluster,
        r#"ALTER TABLE "dfs://stock".stock DROP PARTITION 2023.01.01"#,
    );
    assert!(err.contains("shoal upgrade --finalize"), "{err}");
    // A data node of the previous release would keep and serve every duplicate.
    let keep_last = r#"create table "dfs://stock".latest(time TIMESTAMP, name SYMBOL, id INT) partitioned by time, sortColumns=[`name], keepDuplicates=LAST"#;
    let err = sql_refused(&cluster, keep_last);
    assert!(
        err.contains("keepDuplicates=LAST needs cluster version 2")
            && err.contains("shoal upgrade --finalize"),
        "{err}"
    );
    // Nor are replicas asked for partial aggregate states, which the previous release would
    // answer with rows; from the finalize on (once the heartbeats bring it), they are.
    // Nor for a top k (which it would ignore, sending every row).
    let grouped = r#"EXPLAIN SELECT name, count(*) FROM "dfs://stock".stock GROUP BY name"#;
    let latest = r#"EXPLAIN SELECT time, id FROM "dfs://stock".stock ORDER BY time DESC LIMIT 3"#;
    let explains = |q: &str, what: &str| {
        let out = cluster.run(&["sql", q]);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).contains(what)
    };
    let pushed = || explains(grouped, "ChunkAggregateExec") && explains(latest, "top_k=3");
    assert!(
        !explains(grouped, "ChunkAggregateExec"),
        "aggregates pushed before the finalize"
    );
    assert!(
        !explains(latest, "top_k="),
        "top k pushed before the finalize"
    );
    // Users stay in cluster.users (which the previous release reads) until the finalize.
    let add_user = || {
        crate::users::user(
            &cluster,
            &["add", "app", "--role", "reader"],
            "app-password",
        )
    };
    let err = crate::users::refused(&add_user());
    assert!(
        err.contains("managing users through the cluster needs cluster version 2")
            && err.contains("shoal upgrade --finalize"),
        "{err}"
    );
    let out = upgrade(&cluster, &["--finalize"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(
        cluster.status()["cluster_version"].as_u64(),
        Some(u64::from(CLUSTER_VERSION))
    );
    // Then the controllers take the users over from the file, and manage them.
    crate::users::ok(&add_user());
    let users = crate::users::ok(&crate::users::user(&cluster, &["list"], ""));
    assert!(users.contains("admin") && users.contains("app"), "{users}");
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while !pushed() {
        assert!(
            std::time::Instant::now() < until,
            "aggregates or the top k not pushed after the finalize: {}",
            stdout(&cluster.run(&["sql", latest]))
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Accepted now (and so not created by the refused attempt, or it would exist already).
    let out = cluster.run(&["sql", keep_last]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Then each replica converts once idle (`flushIdleTime`, 60 s by default), losing nothing.
    let rt = runtime();
    wait_all_flushed(&rt, &Data::connect(&cluster), Duration::from_secs(150));
    for dir in replica_dirs(&cluster.dir) {
        assert!(
            dir.join("MANIFEST").is_file(),
            "{} not converted",
            dir.display()
        );
    }
    verify(&cluster, tmp.path());
}
