//! `shoal host init`, a machine's first install: the versioned layout and config files it
//! writes, what it refuses (changing nothing), and that an agent started from a bare binary
//! installs that binary as its first version, so the machine's first upgrade has a version to
//! roll back to; the systemd unit in deploy/systemd/ runs that install. The three-host install,
//! upgrade and rollback is `it::hosts`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Spawned, fresh_hosts, shoal, shoal_bin, stderr, stdout, write};
use crate::upgrade::version_of;

/// A cluster.nodes of `hosts` (a controller, an agent and a data node on each).
pub fn cluster_nodes(hosts: &[String]) -> String {
    let mut text = String::from("localSite,mode\n");
    for (port, prefix, mode) in [
        (8920, "ctl", "controller"),
        (8921, "agent", "agent"),
        (8922, "node", "datanode"),
    ] {
        for (i, host) in hosts.iter().enumerate() {
            text.push_str(&format!("{host}:{port}:{prefix}{},{mode}\n", i + 1));
        }
    }
    text
}

/// The cluster-wide files an operator makes once: cluster.nodes and cluster.secret, in `dir`.
pub fn cluster_files(dir: &Path, hosts: &[String]) -> (PathBuf, PathBuf) {
    let nodes = dir.join("cluster.nodes");
    write(&nodes, &cluster_nodes(hosts));
    let secret = dir.join("cluster.secret");
    write(&secret, "0123456789abcdef0123456789abcdef\n");
    (nodes, secret)
}

/// `shoal host init` of machine `host` into `home`, with `extra` arguments.
pub fn host_init(
    home: &Path,
    nodes: &Path,
    secret: &Path,
    host: &str,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec![
        "host",
        "init",
        "--home",
        home.to_str().unwrap(),
        "--cluster-nodes",
        nodes.to_str().unwrap(),
        "--secret-file",
        secret.to_str().unwrap(),
        "--host",
        host,
    ];
    args.extend_from_slice(extra);
    shoal(&args)
}

/// Every entry of `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn host_init_installs_this_binary_as_current_with_the_machines_files_and_refuses_a_second_init() {
    let tmp = tempfile::tempdir().unwrap();
    let hosts = fresh_hosts();
    let (nodes, secret) = cluster_files(tmp.path(), &hosts);
    let version = version_of(Path::new(shoal_bin()));
    let home = tmp.path().join("h2");

    // By agent alias as well as by address.
    let out = host_init(&home, &nodes, &secret, "agent2", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        entries(&home),
        [
            "agent.cfg",
            "cluster.cfg",
            "cluster.nodes",
            "cluster.secret",
            "cluster.users",
            "controller.cfg",
            "current",
            "versions"
        ]
    );
    assert_eq!(
        std::fs::read_link(home.join("current")).unwrap(),
        Path::new("versions").join(&version)
    );
    // A copy, not a link to the operator's binary (which may be overwritten in place).
    let installed = home.join("current/shoal");
    assert_eq!(version_of(&installed), version);
    use std::os::unix::fs::MetadataExt;
    assert_ne!(
        std::fs::metadata(&installed).unwrap().ino(),
        std::fs::metadata(shoal_bin()).unwrap().ino()
    );
    let controller = std::fs::read_to_string(home.join("controller.cfg")).unwrap();
    assert!(
        controller.contains(&format!("localSite={}:8920:ctl2", hosts[1])),
        "{controller}"
    );
    let agent = std::fs::read_to_string(home.join("agent.cfg")).unwrap();
    assert!(
        agent.contains(&format!("localSite={}:8921:agent2", hosts[1])),
        "{agent}"
    );
    assert_eq!(
        std::fs::read_to_string(home.join("cluster.nodes")).unwrap(),
        cluster_nodes(&hosts)
    );

    // Initialised once: a second init changes nothing.
    let before = std::fs::read_to_string(home.join("agent.cfg")).unwrap();
    let out = host_init(&home, &nodes, &secret, &hosts[1], &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("already initialised"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(home.join("agent.cfg")).unwrap(),
        before
    );

    // Bad input is refused before anything is written.
    let fresh = tmp.path().join("h9");
    let out = host_init(&fresh, &nodes, &secret, "10.0.0.9", &[]);
    assert!(
        stderr(&out).contains("no machine `10.0.0.9`"),
        "{}",
        stderr(&out)
    );
    let short = tmp.path().join("short.secret");
    write(&short, "abc\n");
    let out = host_init(&fresh, &nodes, &short, &hosts[0], &[]);
    assert!(!out.status.success());
    let out = host_init(
        &fresh,
        &nodes,
        &secret,
        &hosts[0],
        &["--set", "dfsReplicationFactor=two"],
    );
    assert!(
        stderr(&out).contains("dfsReplicationFactor"),
        "{}",
        stderr(&out)
    );
    // TLS through --set would reach controller.cfg and cluster.cfg but not agent.cfg.
    let out = host_init(
        &fresh,
        &nodes,
        &secret,
        &hosts[0],
        &["--set", "enableSSL=1"],
    );
    assert!(
        stderr(&out).contains("TLS keys go in every file"),
        "{}",
        stderr(&out)
    );
    assert!(!fresh.exists(), "a refused init left {}", fresh.display());
}

/// A home `host init` (with `extra` arguments) made in `dir` for the first of three machines,
/// and what it printed.
fn initialised_home(dir: &Path, extra: &[&str]) -> (PathBuf, std::process::Output) {
    let hosts = fresh_hosts();
    let (nodes, secret) = cluster_files(dir, &hosts);
    let home = dir.join("home");
    let out = host_init(&home, &nodes, &secret, &hosts[0], extra);
    assert!(out.status.success(), "{}", stderr(&out));
    (home, out)
}

#[test]
fn an_agent_started_from_a_bare_binary_installs_it_as_the_version_to_roll_back_to() {
    let tmp = tempfile::tempdir().unwrap();
    let (home, _) = initialised_home(tmp.path(), &[]);
    // A machine set up by hand: the config files, no versioned install.
    std::fs::remove_file(home.join("current")).unwrap();
    std::fs::remove_dir_all(home.join("versions")).unwrap();

    let log = std::fs::File::create(tmp.path().join("agent.log")).unwrap();
    let _agent = Spawned(
        Command::new(shoal_bin())
            .args(["agent", "--no-start", "--home", home.to_str().unwrap()])
            .env_remove("SHOAL_CLUSTER_SECRET")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let version = version_of(Path::new(shoal_bin()));
    let started = Instant::now();
    // Without it `shoal upgrade` would switch `current` to the new version with nothing to
    // switch back to: `--rollback` would fail with "version <old> is not installed".
    while !home.join("current/shoal").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the agent installed no version in 30 s; its log:\n{}",
            std::fs::read_to_string(tmp.path().join("agent.log")).unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        std::fs::read_link(home.join("current")).unwrap(),
        Path::new("versions").join(&version)
    );
    assert_eq!(version_of(&home.join("current/shoal")), version);
}

#[test]
fn the_systemd_unit_runs_the_agent_from_current_and_lets_it_stop_its_nodes() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("shoal-agent.service");
    let (home, out) = initialised_home(tmp.path(), &["--systemd-unit", file.to_str().unwrap()]);
    let unit = std::fs::read_to_string(&file).unwrap();
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= in the unit"))
            .to_owned()
    };
    // What host init told the operator to run, so a reboot after an upgrade runs the new
    // version.
    let start = format!("{}/current/shoal agent --home {0}", home.display());
    assert_eq!(value("ExecStart"), start);
    assert!(stdout(&out).contains(&start), "{}", stdout(&out));
    assert_eq!(value("KillMode"), "process");
    assert_eq!(value("WorkingDirectory"), home.to_str().unwrap());
    // An existing unit is never overwritten, and the refusal writes nothing.
    let second = tmp.path().join("second");
    let (nodes, secret) = (
        tmp.path().join("cluster.nodes"),
        tmp.path().join("cluster.secret"),
    );
    let out = host_init(
        &second,
        &nodes,
        &secret,
        "agent2",
        &["--systemd-unit", file.to_str().unwrap()],
    );
    assert!(stderr(&out).contains("exists already"), "{}", stderr(&out));
    assert!(!second.exists());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), unit);
    // systemd's own check of the unit (its ExecStart must exist), where systemd is installed.
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED systemd-analyze verify: not installed"
        );
        return;
    }
    // The unit's user may not exist here.
    let checked = tmp.path().join("checked.service");
    write(
        &checked,
        &unit
            .replace("User=shoal", "User=root")
            .replace("Group=shoal", "Group=root"),
    );
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&checked)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}

/// `shoal cert` makes a CA and one certificate per machine; `host init --tls-dir` puts the
/// machine's in HOME/tls and names it in every config file. A certificate for another machine,
/// or one the CA did not sign, is refused with nothing written; so is an existing HOME/tls.
#[test]
fn host_init_takes_a_machines_certificate_from_shoal_cert_and_refuses_a_wrong_one() {
    let tmp = tempfile::tempdir().unwrap();
    let hosts = fresh_hosts();
    let (nodes, secret) = cluster_files(tmp.path(), &hosts);
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    let ca = tmp.path().join("ca");
    let ok = |args: &[&str]| {
        let out = shoal(args);
        assert!(out.status.success(), "shoal {args:?}: {}", stderr(&out));
        out
    };
    // `shoal cert create-node` by CA `ca` for `host` into `out`.
    let create_node = |ca: &Path, host: &str, out: &Path| {
        ok(&[
            "cert",
            "create-node",
            "--ca-dir",
            &path(ca),
            "--host",
            host,
            "--out",
            &path(out),
        ]);
    };
    ok(&["cert", "create-ca", "--ca-dir", &path(&ca)]);
    assert_eq!(entries(&ca), ["ca.key", "ca.pem"]);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(ca.join("ca.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "the CA key is private: {mode:o}");
    // Never overwritten.
    let out = shoal(&["cert", "create-ca", "--ca-dir", &path(&ca)]);
    assert!(stderr(&out).contains("exists already"), "{}", stderr(&out));

    let node1 = tmp.path().join("node1");
    create_node(&ca, &hosts[0], &node1);
    assert_eq!(entries(&node1), ["ca.pem", "node.key", "node.pem"]);

    let home = tmp.path().join("h1");
    let out = host_init(
        &home,
        &nodes,
        &secret,
        &hosts[0],
        &["--tls-dir", &path(&node1)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        entries(&home.join("tls")),
        ["ca.pem", "node.key", "node.pem"]
    );
    for file in ["controller.cfg", "agent.cfg", "cluster.cfg"] {
        let text = std::fs::read_to_string(home.join(file)).unwrap();
        for line in [
            "enableSSL=1",
            "sslCertFile=tls/node.pem",
            "sslKeyFile=tls/node.key",
            "sslCAFile=tls/ca.pem",
            "sslMutualAuth=0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{file} lacks {line}:\n{text}"
            );
        }
    }

    // Machine 1's certificate on machine 2: its clients would refuse it.
    let h2 = tmp.path().join("h2");
    let out = host_init(
        &h2,
        &nodes,
        &secret,
        &hosts[1],
        &["--tls-dir", &path(&node1)],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("clients dialling {} would refuse it", hosts[1])),
        "{}",
        stderr(&out)
    );
    assert!(!h2.exists(), "a refused init left {}", h2.display());

    // A certificate of another CA beside this CA's ca.pem.
    let other = tmp.path().join("other-ca");
    ok(&["cert", "create-ca", "--ca-dir", &path(&other)]);
    let foreign = tmp.path().join("foreign");
    create_node(&other, &hosts[1], &foreign);
    std::fs::copy(ca.join("ca.pem"), foreign.join("ca.pem")).unwrap();
    let out = host_init(
        &h2,
        &nodes,
        &secret,
        &hosts[1],
        &["--tls-dir", &path(&foreign)],
    );
    assert!(stderr(&out).contains("would refuse it"), "{}", stderr(&out));
    assert!(!h2.exists(), "a refused init left {}", h2.display());

    // HOME/tls is never overwritten.
    let node2 = tmp.path().join("node2");
    create_node(&ca, &hosts[1], &node2);
    std::fs::create_dir_all(h2.join("tls")).unwrap();
    let out = host_init(
        &h2,
        &nodes,
        &secret,
        &hosts[1],
        &["--tls-dir", &path(&node2)],
    );
    assert!(stderr(&out).contains("exists already"), "{}", stderr(&out));
    assert_eq!(entries(&h2), ["tls"]);
    assert!(entries(&h2.join("tls")).is_empty());

    // A client certificate for mutual TLS, from the same CA.
    let client = tmp.path().join("client");
    ok(&[
        "cert",
        "create-client",
        "--ca-dir",
        &path(&ca),
        "--out",
        &path(&client),
    ]);
    assert_eq!(entries(&client), ["ca.pem", "client.key", "client.pem"]);
}
