//! The cluster of the original request comes up, survives losing its controller leader, and
//! loses and regains one machine.

use std::time::{Duration, Instant};

use crate::harness::{
    Frozen, LocalCluster, all_up, fresh_hosts, kill9, leader, node, nodes, shoal, shoal_bin,
    stderr, stdout, write,
};

#[test]
fn local_cluster_comes_up_with_nine_nodes_and_one_leader() {
    let cluster = LocalCluster::start();
    let status = cluster.status();
    let all = nodes(&status);
    assert_eq!(all.len(), 9, "{status:#}");
    assert!(all_up(&status), "{status:#}");

    let version_line = stdout(&shoal(&["--version"]));
    let (version, build_date) = version_line
        .trim()
        .trim_start_matches("shoal ")
        .split_once(' ')
        .expect("`shoal <version> <date>`");
    for n in all {
        assert_eq!(n["version"], version, "{n}");
        assert_eq!(n["build_date"], build_date, "{n}");
    }

    let controllers: Vec<_> = all.iter().filter(|n| n["mode"] == "controller").collect();
    assert_eq!(controllers.len(), 3);
    let roles: Vec<&str> = controllers
        .iter()
        .map(|n| n["raft_role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles.iter().filter(|r| **r == "leader").count(),
        1,
        "{roles:?}"
    );
    assert_eq!(
        roles.iter().filter(|r| **r == "follower").count(),
        2,
        "{roles:?}"
    );
    assert_eq!(status["leader"], leader(&status).unwrap().as_str());

    // Every machine runs one controller, one agent and one data node.
    for host in &cluster.hosts {
        let mut modes: Vec<&str> = all
            .iter()
            .filter(|n| n["machine"] == host.as_str())
            .map(|n| n["mode"].as_str().unwrap())
            .collect();
        modes.sort();
        assert_eq!(modes, ["agent", "controller", "datanode"], "{host}");
    }

    // The table view names every node too.
    let table = stdout(&cluster.run(&["status"]));
    for n in all {
        assert!(table.contains(n["alias"].as_str().unwrap()), "{table}");
    }
    assert!(table.contains("9/9 nodes up"), "{table}");

    // The seed's pnodeRun(getConfig{`chunkMetaDir}): one row per data node, its own directory.
    let out = cluster.run(&["config", "get", "chunkMetaDir", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    for r in rows {
        let node = r["node"].as_str().unwrap();
        assert!(
            r["value"]
                .as_str()
                .unwrap()
                .contains(&format!("{node}/storage")),
            "{r}"
        );
    }
    let out = cluster.run(&["config", "get", "noSuchKey"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("noSuchKey"), "{}", stderr(&out));
}

#[test]
fn killing_the_leader_elects_a_new_one_and_the_old_one_rejoins() {
    let cluster = LocalCluster::start();
    // Something committed just before the kill must survive it.
    let ddl = cluster.run(&[
        "sql",
        r#"CREATE DATABASE "dfs://survivor" PARTITIONED BY VALUE(1..3)"#,
    ]);
    assert!(ddl.status.success(), "{}", stderr(&ddl));
    let before = cluster.status();
    let old = leader(&before).expect("one leader");
    let old_pid = node(&before, &old)["pid"].as_u64().unwrap();
    let machine = node(&before, &old)["machine"].as_str().unwrap().to_owned();
    let agent_pid = nodes(&before)
        .iter()
        .find(|n| n["mode"] == "agent" && n["machine"] == machine.as_str())
        .and_then(|n| n["pid"].as_u64())
        .unwrap();

    // Freeze the machine's agent so it cannot restart the controller at once: the two other
    // controllers must elect a leader between themselves.
    let frozen = Frozen::new(agent_pid);
    let killed_at = Instant::now();
    kill9(old_pid);
    let after = cluster.wait_status("a new leader", Duration::from_secs(30), |s| {
        leader(s).is_some_and(|l| l != old)
    });
    let elected_in = killed_at.elapsed();
    eprintln!(
        "new leader {} elected {elected_in:?} after kill -9",
        leader(&after).unwrap()
    );

    assert!(
        after["raft_term"].as_u64() > before["raft_term"].as_u64(),
        "{after:#}"
    );

    // Metadata intact: the same nine nodes, the same versions.
    let aliases = |s: &serde_json::Value| {
        let mut v: Vec<(String, String)> = nodes(s)
            .iter()
            .map(|n| (n["alias"].to_string(), n["version"].to_string()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(aliases(&before), aliases(&after));
    let shown = cluster.run(&["sql", "SHOW DATABASES", "--json"]);
    assert!(
        stdout(&shown).contains("dfs://survivor"),
        "{}",
        stderr(&shown)
    );
    // Nothing committed was lost: the new leader's log reaches at least as far.
    let committed_before = node(&before, &old)["raft_matched_index"].as_u64().unwrap();
    let new_leader = leader(&after).unwrap();
    assert!(
        node(&after, &new_leader)["raft_matched_index"]
            .as_u64()
            .unwrap()
            >= committed_before,
        "{after:#}"
    );

    // The agent, thawed, restarts the killed controller; it rejoins as a follower.
    drop(frozen);
    let healed = cluster.wait_status(
        "the old leader back as follower",
        Duration::from_secs(30),
        |s| {
            let n = node(s, &old);
            n["state"] == "UP"
                && n["raft_role"] == "follower"
                && n["pid"].as_u64() != Some(old_pid)
                && n["raft_matched_index"].as_u64() > Some(committed_before)
                && all_up(s)
        },
    );
    assert!(leader(&healed).is_some());
}

#[test]
fn stopping_one_machine_leaves_the_others_working_and_it_comes_back() {
    let cluster = LocalCluster::start();
    let host = cluster.hosts[1].clone();

    let before = cluster.status();
    let out = cluster.run(&["host", "stop", &host, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let processes: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let processes = processes.as_array().unwrap();
    assert_eq!(
        processes.len(),
        2,
        "controller and data node: {processes:?}"
    );
    for p in processes {
        assert_eq!(p["state"], "STOPPED", "{p}");
        assert_eq!(p["pid"], 0, "{p}");
        // The process is gone, not just reported stopped.
        let old_pid = node(&before, p["alias"].as_str().unwrap())["pid"]
            .as_u64()
            .unwrap();
        assert!(
            !std::path::Path::new(&format!("/proc/{old_pid}")).exists(),
            "{p}"
        );
    }

    let stopped = cluster.wait_status("the machine's nodes down", Duration::from_secs(15), |s| {
        nodes(s)
            .iter()
            .filter(|n| n["machine"] == host.as_str() && n["mode"] != "agent")
            .all(|n| n["state"] == "DOWN")
    });
    // The two other machines keep a controller quorum and their nodes.
    assert!(leader(&stopped).is_some(), "{stopped:#}");
    for n in nodes(&stopped)
        .iter()
        .filter(|n| n["machine"] != host.as_str())
    {
        assert_eq!(n["state"], "UP", "{n}");
    }

    let out = cluster.run(&["host", "start", &host]);
    assert!(out.status.success(), "{}\n{}", stderr(&out), cluster.logs());
    let whole = cluster.status();
    assert!(all_up(&whole), "{whole:#}");
    assert!(leader(&whole).is_some());
}

#[test]
fn a_wrong_cluster_secret_is_refused() {
    let cluster = LocalCluster::start();
    let before = cluster.status();
    let controller = format!("{}:8920", cluster.hosts[0]);
    let bad = cluster.dir.join("wrong.secret");
    std::fs::write(&bad, "0123456789abcdef0123456789abcdef\n").unwrap();
    let bad = bad.to_str().unwrap();

    // The controller refuses it...
    let out = shoal(&["status", "--sites", &controller, "--secret-file", bad]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("authentication failed"),
        "{}",
        stderr(&out)
    );
    // ...and so does the agent, reached directly through the local cluster.nodes.
    let out = cluster.run(&["host", "stop", &cluster.hosts[0], "--secret-file", bad]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("authentication failed"),
        "{}",
        stderr(&out)
    );

    // Nothing was stopped: the same processes still run.
    let after = cluster.status();
    assert!(all_up(&after));
    for n in nodes(&before) {
        assert_eq!(
            node(&after, n["alias"].as_str().unwrap())["pid"],
            n["pid"],
            "{n}"
        );
    }
}

#[test]
fn a_crashed_data_node_is_restarted_and_a_silent_one_is_marked_down() {
    let cluster = LocalCluster::start();
    let host = cluster.hosts[2].clone();
    let before = cluster.status();
    let data_node = nodes(&before)
        .iter()
        .find(|n| n["mode"] == "datanode" && n["machine"] == host.as_str())
        .unwrap();
    let alias = data_node["alias"].as_str().unwrap().to_owned();
    let pid = data_node["pid"].as_u64().unwrap();

    // kill -9: the agent restarts it and the controller sees the new process.
    kill9(pid);
    let after = cluster.wait_status("the data node restarted", Duration::from_secs(15), |s| {
        let n = node(s, &alias);
        n["state"] == "UP" && n["pid"].as_u64().is_some_and(|p| p != pid)
    });
    let new_pid = node(&after, &alias)["pid"].as_u64().unwrap();
    let out = cluster.run(&["host", "ps", &host, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ps: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = ps
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["alias"] == alias.as_str())
        .unwrap();
    assert_eq!(p["state"], "RUNNING", "{p}");
    assert_eq!(p["restarts"], 1, "{p}");
    assert_eq!(p["last_exit"], "signal 9", "{p}");
    assert_eq!(p["pid"].as_u64(), Some(new_pid), "{p}");

    // A process that stops answering (SIGSTOP) is marked DOWN once nodeHeartbeatTimeout
    // passes, and UP again when it resumes.
    {
        let _frozen = Frozen::new(new_pid);
        cluster.wait_status("the frozen data node DOWN", Duration::from_secs(15), |s| {
            node(s, &alias)["state"] == "DOWN"
        });
    }
    cluster.wait_status("the thawed data node UP", Duration::from_secs(15), |s| {
        node(s, &alias)["state"] == "UP"
    });
}

/// The names in `dir`, sorted.
fn names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn a_failed_local_up_of_a_new_cluster_takes_away_what_it_made_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cluster");
    let hosts = fresh_hosts();
    std::fs::create_dir_all(&dir).unwrap();
    write(&dir.join("notes.txt"), "the user's");
    let up = || {
        let hosts = hosts.join(",");
        let dir = dir.to_str().unwrap();
        shoal(&[
            "local",
            "up",
            "--dir",
            dir,
            "--hosts",
            &hosts,
            "--timeout",
            "60s",
        ])
    };

    // The third machine's home is a file: it fails after the first two are initialised.
    write(&dir.join(&hosts[2]), "in the way");
    let out = up();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("exists and is not a directory"),
        "{}",
        stderr(&out)
    );
    let mut expected = vec![hosts[2].clone(), "notes.txt".to_owned()];
    expected.sort();
    assert_eq!(names(&dir), expected);
    std::fs::remove_file(dir.join(&hosts[2])).unwrap();

    // The third machine's agent port is taken: its agent exits, the others are stopped with
    // their nodes, and every file of the new cluster goes.
    let agent_port = (hosts[2].as_str(), 8921);
    let taken = std::net::TcpListener::bind(agent_port).unwrap();
    let out = up();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("exited") && err.contains("removed what this `local up` wrote"),
        "{err}"
    );
    assert_eq!(names(&dir), ["notes.txt"]);
    for port in 8920..=8922 {
        std::net::TcpListener::bind((hosts[0].as_str(), port))
            .unwrap_or_else(|e| panic!("{}:{port} still in use: {e}", hosts[0]));
    }
    drop(taken);

    // The same command then starts the cluster.
    let cluster = LocalCluster::start_in(tmp, dir, hosts, std::path::Path::new(shoal_bin()), &[]);
    assert!(all_up(&cluster.status()));
    assert!(cluster.dir.join("notes.txt").exists());
}

#[test]
fn local_up_revives_a_killed_agent_which_replaces_its_orphaned_nodes() {
    let cluster = LocalCluster::start();
    let host = cluster.hosts[1].clone();
    let before = cluster.status();
    let on_host = |s: &serde_json::Value, mode: &str| -> Vec<(String, u64)> {
        nodes(s)
            .iter()
            .filter(|n| n["machine"] == host.as_str() && n["mode"] == mode)
            .map(|n| {
                (
                    n["alias"].as_str().unwrap().to_owned(),
                    n["pid"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let (_, agent_pid) = on_host(&before, "agent")[0].clone();
    let old_nodes: Vec<(String, u64)> =
        [on_host(&before, "controller"), on_host(&before, "datanode")].concat();

    kill9(agent_pid);
    let out = shoal(&["local", "up", "--dir", cluster.dir_str()]);
    assert!(out.status.success(), "{}\n{}", stderr(&out), cluster.logs());

    // The new agent runs new node processes; the orphans of the killed one are gone.
    let after = cluster.status();
    assert!(all_up(&after), "{after:#}");
    assert_ne!(on_host(&after, "agent")[0].1, agent_pid);
    for (alias, old_pid) in &old_nodes {
        assert_ne!(
            node(&after, alias)["pid"].as_u64(),
            Some(*old_pid),
            "{alias}"
        );
        assert!(
            !shoal_agent::process::is_alive(u32::try_from(*old_pid).unwrap()),
            "orphan {alias} (pid {old_pid}) still runs"
        );
    }
}
