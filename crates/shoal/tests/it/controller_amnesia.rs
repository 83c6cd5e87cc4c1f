//! A controller whose metadata store is lost (finding F7, "controller amnesia"): the scenario of
//! the fault notes, with real processes. Entries E commit on controllers {A, K} while L is
//! frozen (lagging); A's `dfsMeta` is wiped; with K frozen, only A (empty) and L (without E)
//! run, and L campaigns. A must not vote for it (nor controller 1 form a new group): no leader
//! until K returns. Then the leader makes A a learner, finds it caught up, admits it, makes it a
//! voter; E is intact, and every controller, made leader in turn, answers the same catalog.
//! Before the fix A voted for L, which led without E and overwrote it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use shoal_proto::ClusterStatusRequest;
use shoal_proto::controller_client::ControllerClient as RawControllerClient;

use crate::data::{Data, create_seed_table, runtime, seed_rows};
use crate::harness::{
    Frozen, LocalCluster, kill9, leader, node, nodes, previous_release_binary, shoal_with, stderr,
    stdout,
};
use crate::upgrade::version_of;

const DB: &str = "dfs://stock";
const TABLE: &str = "stock";

#[test]
fn the_first_controller_losing_its_store_neither_forms_a_group_nor_votes_and_rejoins_as_learner() {
    lose_a_controllers_store("ctl1");
}

#[test]
fn another_controller_losing_its_store_does_not_vote_and_rejoins_as_learner() {
    lose_a_controllers_store("ctl2");
}

/// A follower's store lost while the other follower is down: the leader cannot make it a
/// learner (the joint configuration would need the one that is down), so the group keeps
/// committing with its acknowledgements while it never votes; once the other is back it is
/// made a learner, admitted and a voter, with everything committed meanwhile.
#[test]
fn a_store_lost_while_another_controller_is_down_waits_for_it_then_rejoins() {
    let cluster = LocalCluster::start();
    let status = cluster.status();
    let lead = leader(&status).unwrap();
    let followers: Vec<String> = controllers(&status)
        .into_iter()
        .filter(|c| *c != lead)
        .collect();
    let (wiped, down) = (followers[0].clone(), followers[1].clone());
    let frozen_down_agent = Frozen::new(agent_pid(&status, &down));
    kill9(pid(&status, &down));
    let frozen_agent = Frozen::new(agent_pid(&status, &wiped));
    kill9(pid(&status, &wiped));
    std::thread::sleep(Duration::from_millis(300));
    let logs_at_wipe = controller_log(&cluster, &lead).len();
    let since_wipe = || controller_log(&cluster, &lead)[logs_at_wipe..].to_owned();
    empty_dir(&meta_dir(&cluster, &status, &wiped));
    drop(frozen_agent);

    // The leader and the wiped controller (which acknowledges what it holds) commit.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = cluster.run(&[
            "sql",
            r#"CREATE DATABASE "dfs://during" PARTITIONED BY VALUE(1..3)"#,
        ]);
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}\n{}",
            stderr(&out),
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let blocked =
        format!("admitting controller {wiped}: its store was lost; not made a learner yet");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !since_wipe().contains(&blocked) {
        assert!(Instant::now() < deadline, "{lead} never logged `{blocked}`");
        std::thread::sleep(Duration::from_millis(200));
    }
    let s = cluster.status();
    assert_eq!(node(&s, &wiped)["raft_role"], "follower", "{s:#}");
    let rt = runtime();
    let data = Data::connect(&cluster);
    // It refuses votes, so the leader does not hand it leadership.
    let refused = rt.block_on(data.controllers.transfer_leadership(&wiped));
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("has not been re-admitted")),
        "{refused:?}"
    );

    // The other follower returns (its agent restarts it): the wiped one is re-admitted.
    drop(frozen_down_agent);
    cluster.wait_status(
        "every controller a voter, the wiped one re-admitted",
        Duration::from_secs(60),
        |s| {
            controllers(s).iter().all(|c| {
                matches!(
                    node(s, c)["raft_role"].as_str(),
                    Some("leader" | "follower")
                )
            }) && since_wipe().contains(&format!(
                "controller {wiped} (raft id {}) is a voter",
                raft_id(&wiped)
            ))
        },
    );
    for c in controllers(&s) {
        let to = rt.block_on(data.controllers.transfer_leadership(&c));
        assert_eq!(to.as_deref().ok(), Some(c.as_str()), "{to:?}");
        assert_eq!(
            databases(&cluster),
            BTreeSet::from(["dfs://during".to_owned()]),
            "databases with {c} leading"
        );
    }
}

/// Every controller stopped and started again with its store (`local down`, `local up`): the
/// same group comes back (no new one is formed), with everything committed.
#[test]
fn a_cold_restart_of_every_controller_keeps_the_group_and_its_metadata() {
    let cluster = LocalCluster::start();
    create_seed_table(&cluster);
    let before = cluster.status();
    let term = before["raft_term"].as_u64().unwrap();
    let out = cluster.run(&["local", "down"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cluster.run(&["local", "up", "--timeout", "60s"]);
    assert!(out.status.success(), "{}\n{}", stderr(&out), cluster.logs());
    let after = cluster.status();
    assert!(after["raft_term"].as_u64().unwrap() >= term, "{after:#}");
    assert!(
        after["raft_commit_index"].as_u64() >= before["raft_commit_index"].as_u64(),
        "{after:#}"
    );
    assert_eq!(databases(&cluster), BTreeSet::from([DB.to_owned()]));
    assert_eq!(
        controller_log(&cluster, "ctl1")
            .matches("forming group")
            .count(),
        1,
        "the group is formed once, at the first start"
    );
    for c in controllers(&after) {
        let role = node(&after, &c)["raft_role"].as_str().unwrap().to_owned();
        assert!(role == "leader" || role == "follower", "{c}: {role}");
    }
}

/// A rollback before the finalize, of the controllers' stores: a group the previous release
/// formed, then run by this code (which records its identity in a table the previous release
/// never opens, and writes its state only with Raft snapshots, so the stores' applied state
/// lags their logs) while it commits a database, is run again by the previous release, with
/// everything committed. (A group this code forms starts at cluster version 2 and logs commands
/// the previous release cannot read, such as the users table's seed: no rollback goes there,
/// as the cluster version refuses it.)
#[test]
fn the_previous_release_runs_again_a_group_this_code_ran_before_the_finalize() {
    let previous = previous_release_binary();
    let cluster = LocalCluster::start_from(&previous, &[]);
    let run_with = |binary: &Path, version: &str| {
        let out = cluster.run(&["local", "down"]);
        assert!(out.status.success(), "{}", stderr(&out));
        for host in &cluster.hosts {
            let versions = cluster.dir.join(host).join("versions");
            for v in std::fs::read_dir(&versions).unwrap() {
                // `local up` installed the binary as a hard link: a new file, never a write
                // through that link.
                let installed = v.unwrap().path().join("shoal");
                std::fs::remove_file(&installed).unwrap();
                std::fs::copy(binary, &installed).unwrap();
            }
        }
        let out = shoal_with(
            binary,
            &[
                "local",
                "up",
                "--dir",
                cluster.dir_str(),
                "--timeout",
                "60s",
            ],
        );
        assert!(out.status.success(), "{}\n{}", stderr(&out), cluster.logs());
        let status = cluster.status();
        for c in controllers(&status) {
            let n = node(&status, &c);
            assert_eq!(n["version"].as_str(), Some(version), "{n}");
            assert!(matches!(
                n["raft_role"].as_str(),
                Some("leader" | "follower")
            ));
        }
        status
    };
    let this = Path::new(crate::harness::shoal_bin());
    let status = run_with(this, &version_of(this));
    assert_eq!(status["cluster_version"].as_u64(), Some(1), "{status:#}");
    create_seed_table(&cluster);
    run_with(&previous, &version_of(&previous));
    assert_eq!(databases(&cluster), BTreeSet::from([DB.to_owned()]));
}

fn lose_a_controllers_store(wiped: &str) {
    let started = Instant::now();
    let cluster = LocalCluster::start();
    let rt = runtime();
    let out = cluster.run(&[
        "sql",
        r#"CREATE DATABASE "dfs://before" PARTITIONED BY VALUE(1..3)"#,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status = cluster.status();
    // The laggard L: a controller other than A, the leader's partner if A leads.
    let ctls = controllers(&status);
    let others: Vec<String> = ctls.iter().filter(|c| *c != wiped).cloned().collect();
    let lead = leader(&status).unwrap();
    let laggard = others.iter().find(|c| **c != lead).unwrap().clone();
    let keeper = others.iter().find(|c| **c != laggard).unwrap().clone();
    eprintln!("wiped A={wiped}, laggard L={laggard}, keeper K={keeper}, leader {lead}");

    // E: committed on {A, K} while L is frozen.
    let frozen_laggard = Frozen::new(pid(&status, &laggard));
    create_seed_table(&cluster);
    let data = Data::connect(&cluster);
    rt.block_on(async {
        for seq in 1..=3u64 {
            let ids: Vec<i32> = (1..=100).map(|i| (seq as i32 - 1) * 100 + i).collect();
            let r = data
                .client
                .append(DB, TABLE, 7, seq, &seed_rows(&ids, seq as i64))
                .await
                .unwrap();
            assert_eq!(r.rows, 100);
        }
    });
    let chunks_before = chunk_ids(&rt, &data);
    assert_eq!(chunks_before.len(), 3, "{chunks_before:?}");
    let term_before = cluster.status()["raft_term"].as_u64().unwrap();

    // A's disk is lost: killed while its agent is frozen, its dfsMeta emptied.
    let status = cluster.status();
    let logs_at_wipe: std::collections::BTreeMap<String, usize> = ctls
        .iter()
        .map(|c| (c.clone(), controller_log(&cluster, c).len()))
        .collect();
    let agent = agent_pid(&status, wiped);
    let frozen_agent = Frozen::new(agent);
    kill9(pid(&status, wiped));
    std::thread::sleep(Duration::from_millis(300));
    let meta = meta_dir(&cluster, &status, wiped);
    empty_dir(&meta);
    // Only A (empty, restarted by its agent) and L (without E) run: L campaigns.
    let frozen_keeper = Frozen::new(pid(&status, &keeper));
    drop(frozen_laggard);
    let window = Instant::now();
    drop(frozen_agent);

    let addrs = controller_addrs(&status);
    let log_from = logs_at_wipe[wiped];
    loop {
        for (c, addr) in &addrs {
            if *c == keeper {
                continue;
            }
            assert!(
                !rt.block_on(answers_as_leader(&data, addr)),
                "{c} leads while the only controllers running are {wiped} (store lost) and \
                 {laggard} (without the latest entries): {wiped} voted although it forgot \
                 everything\n{}",
                cluster.logs()
            );
        }
        let log = controller_log(&cluster, wiped);
        let refused = log.get(log_from..).unwrap_or("").contains(&format!(
            "vote request from controller {}",
            raft_id(&laggard)
        ));
        if refused && window.elapsed() > Duration::from_secs(6) {
            break;
        }
        assert!(
            window.elapsed() < Duration::from_secs(40),
            "{wiped} never refused a vote of {laggard}\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    if wiped == "ctl1" {
        let log = controller_log(&cluster, wiped);
        assert!(
            log.get(log_from..)
                .unwrap_or("")
                .contains("not forming a new group"),
            "{log}"
        );
    }

    // K returns: it leads (it holds E), A is made a learner, then a voter once caught up.
    drop(frozen_keeper);
    let mut roles_seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let after = loop {
        let out = cluster.run(&["status", "--json"]);
        if out.status.success() {
            let s: Value = serde_json::from_slice(&out.stdout).unwrap();
            let role = node(&s, wiped)["raft_role"].as_str().unwrap().to_owned();
            if roles_seen.last() != Some(&role) {
                roles_seen.push(role.clone());
            }
            let voters = controllers(&s)
                .iter()
                .filter(|c| {
                    matches!(
                        node(&s, c)["raft_role"].as_str(),
                        Some("leader" | "follower")
                    )
                })
                .count();
            if role == "follower" && voters == 3 && roles_seen.contains(&"learner".to_owned()) {
                break s;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{wiped} did not become a learner and then a voter: roles seen {roles_seen:?}\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("{wiped}'s roles after the keeper returned: {roles_seen:?}");
    // The laggard may lead by now, but only after the keeper gave it E: checked below.
    assert!(
        after["raft_term"].as_u64().unwrap() >= term_before,
        "{after:#}"
    );
    // Whichever leader did it logged each step (status can show the new membership before
    // the call that made it has returned and logged).
    let since = || -> String {
        ctls.iter()
            .map(|c| {
                let log = controller_log(&cluster, c);
                log.get(logs_at_wipe[c]..).unwrap_or("").to_owned()
            })
            .collect()
    };
    let id = raft_id(wiped);
    for line in [
        format!("controller {wiped} (raft id {id}) answers that its metadata store is new"),
        format!("controller {wiped} (raft id {id}) is a learner"),
        format!("controller {wiped} (raft id {id}) caught up to log index"),
        format!("controller {wiped} (raft id {id}) is a voter"),
    ] {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !since().contains(&line) {
            assert!(
                Instant::now() < deadline,
                "no leader logged `{line}`:\n{}",
                since()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // E intact, and the same catalog from each controller as leader, A included.
    assert_eq!(
        databases(&cluster),
        BTreeSet::from(["dfs://before".to_owned(), DB.to_owned()])
    );
    for c in &ctls {
        let to = rt.block_on(data.controllers.transfer_leadership(c));
        assert_eq!(to.as_deref().ok(), Some(c.as_str()), "{to:?}");
        assert_eq!(
            chunk_ids(&rt, &data),
            chunks_before,
            "catalog with {c} leading"
        );
        assert_eq!(
            databases(&cluster),
            BTreeSet::from(["dfs://before".to_owned(), DB.to_owned()]),
            "databases with {c} leading"
        );
    }
    let count = cluster.run(&[
        "sql",
        r#"SELECT count(*) AS n FROM "dfs://stock".stock"#,
        "--json",
    ]);
    assert!(
        stdout(&count).contains("300"),
        "{}{}",
        stdout(&count),
        stderr(&count)
    );
    eprintln!("lose {wiped}'s store: {:?}", started.elapsed());
}

fn controllers(status: &Value) -> Vec<String> {
    nodes(status)
        .iter()
        .filter(|n| n["mode"] == "controller")
        .map(|n| n["alias"].as_str().unwrap().to_owned())
        .collect()
}

fn controller_addrs(status: &Value) -> Vec<(String, String)> {
    nodes(status)
        .iter()
        .filter(|n| n["mode"] == "controller")
        .map(|n| {
            (
                n["alias"].as_str().unwrap().to_owned(),
                n["addr"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// `ctlN` is Raft id N (`local up` declares them in order).
fn raft_id(alias: &str) -> &str {
    alias.trim_start_matches("ctl")
}

fn pid(status: &Value, alias: &str) -> u64 {
    node(status, alias)["pid"].as_u64().unwrap()
}

fn agent_pid(status: &Value, alias: &str) -> u64 {
    let machine = node(status, alias)["machine"].as_str().unwrap().to_owned();
    nodes(status)
        .iter()
        .find(|n| n["mode"] == "agent" && n["machine"] == machine.as_str())
        .and_then(|n| n["pid"].as_u64())
        .unwrap()
}

fn machine_dir(cluster: &LocalCluster, status: &Value, alias: &str) -> PathBuf {
    cluster
        .dir
        .join(node(status, alias)["machine"].as_str().unwrap())
}

fn meta_dir(cluster: &LocalCluster, status: &Value, alias: &str) -> PathBuf {
    let dir = machine_dir(cluster, status, alias).join("dfsMeta");
    assert!(dir.join("raft.redb").exists(), "{}", dir.display());
    dir
}

fn controller_log(cluster: &LocalCluster, alias: &str) -> String {
    let status_dir = cluster.hosts.iter().find_map(|h| {
        let p = cluster.dir.join(h).join("log").join(format!("{alias}.log"));
        p.exists().then_some(p)
    });
    status_dir
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .unwrap_or_default()
}

fn empty_dir(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path).unwrap();
        } else {
            std::fs::remove_file(&path).unwrap();
        }
    }
}

/// Whether the controller at `addr` answers `ClusterStatus`, which only a leader does.
async fn answers_as_leader(data: &Data, addr: &str) -> bool {
    let Ok(channel) = data.channels.get(addr) else {
        return false;
    };
    let mut c = RawControllerClient::new(channel);
    matches!(
        tokio::time::timeout(
            Duration::from_secs(2),
            c.cluster_status(ClusterStatusRequest {})
        )
        .await,
        Ok(Ok(_))
    )
}

fn chunk_ids(rt: &tokio::runtime::Runtime, data: &Data) -> BTreeSet<(u64, String)> {
    rt.block_on(data.chunks())
        .into_iter()
        .map(|c| (c.id, c.partition_key))
        .collect()
}

fn databases(cluster: &LocalCluster) -> BTreeSet<String> {
    let out = cluster.run(&["sql", "SHOW DATABASES", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| r["database"].as_str().unwrap().to_owned())
        .collect()
}
