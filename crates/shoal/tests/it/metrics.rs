//! Every role's HTTP endpoints, as Prometheus and a load balancer use them: `/health`, `/ready`
//! and `/metrics` on the node's port + 1000, with the build, Raft and append figures a user
//! would graph.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::harness::{LocalCluster, nodes, shoal_bin, stderr};

/// `GET path` on `addr`: the status code and the body.
pub(crate) fn get(addr: &str, path: &str) -> (u16, String) {
    try_get(addr, path, Duration::from_secs(10)).unwrap_or_else(|e| panic!("{e}"))
}

/// `GET path` on `addr`, waiting at most `timeout` for the answer: the status code and the
/// body, or why there is none (a node that is down, or stops mid-answer).
pub(crate) fn try_get(addr: &str, path: &str, timeout: Duration) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(timeout)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut out = String::new();
    s.read_to_string(&mut out)
        .map_err(|e| format!("read {addr}{path}: {e}"))?;
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line from {addr}{path}: {out}"))?;
    Ok((code, body.to_owned()))
}

pub(crate) fn http_addr(grpc: &str) -> String {
    let (host, port) = grpc.rsplit_once(':').unwrap();
    format!("{host}:{}", port.parse::<u16>().unwrap() + 1000)
}

/// `sample` of every data node's metrics, summed.
pub(crate) fn datanodes_sample(data: &crate::data::Data, name: &str, labels: &[&str]) -> f64 {
    data.datanodes
        .values()
        .map(|a| sample(&get(&http_addr(a), "/metrics").1, name, labels))
        .sum()
}

/// The value of the sample `name{labels}` (labels as written, `""` for none), summed over
/// every sample whose labels contain each of `labels`.
pub(crate) fn sample(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(key, _)| {
            let (n, rest) = key.split_once('{').unwrap_or((key, ""));
            n == name && labels.iter().all(|want| rest.contains(want))
        })
        .map(|(_, v)| v.parse::<f64>().unwrap())
        .sum()
}

#[test]
fn every_role_serves_health_readiness_and_metrics() {
    // Idle replicas flush after a second, so the writes below are flushed during the test.
    let cluster = LocalCluster::start_with(&["--set", "flushIdleTime=1000"]);
    let status = cluster.status();
    let version = crate::upgrade::version_of(std::path::Path::new(shoal_bin()));
    for n in nodes(&status) {
        let (alias, mode) = (n["alias"].as_str().unwrap(), n["mode"].as_str().unwrap());
        let addr = http_addr(n["addr"].as_str().unwrap());
        assert_eq!(get(&addr, "/health").0, 200, "{alias}");
        // Ready once serving: a data node after its restart check, a controller once it knows
        // a leader.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (code, body) = get(&addr, "/ready");
            if code == 200 {
                break;
            }
            assert_eq!(code, 503, "{alias}: {body}");
            assert!(body.starts_with("not ready: "), "{alias}: {body}");
            assert!(Instant::now() < deadline, "{alias} never ready: {body}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let (code, metrics) = get(&addr, "/metrics");
        assert_eq!(code, 200, "{alias}");
        let role = match mode {
            "controller" => "controller",
            "agent" => "agent",
            _ => "datanode",
        };
        let build = [
            format!(r#"role="{role}""#),
            format!(r#"alias="{alias}""#),
            format!(r#"version="{version}""#),
        ];
        let build: Vec<&str> = build.iter().map(String::as_str).collect();
        assert_eq!(
            sample(&metrics, "shoal_build_info", &build),
            1.0,
            "{metrics}"
        );
    }

    // Writes show up on the data nodes that coordinated them, and in the controllers' chunks.
    crate::data::create_seed_table(&cluster);
    let out = cluster.run(&["write", "--count", "50", "--rate", "200"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let scrape = |mode: &str| -> Vec<String> {
        nodes(&status)
            .iter()
            .filter(|n| n["mode"] == mode)
            .map(|n| get(&http_addr(n["addr"].as_str().unwrap()), "/metrics").1)
            .collect()
    };
    let data = scrape("datanode");
    let appends: f64 = data
        .iter()
        .map(|m| sample(m, "shoal_appends_total", &[r#"outcome="ok""#]))
        .sum();
    let timed: f64 = data
        .iter()
        .map(|m| sample(m, "shoal_append_duration_seconds_count", &[]))
        .sum();
    assert!(
        appends >= 50.0,
        "{appends} appends counted:\n{}",
        data.join("\n")
    );
    assert!(timed >= appends, "{timed} timed, {appends} counted");

    // Queries are counted, by outcome, by the data node that answered them: one that
    // succeeds, one that names a table that does not exist.
    let queries = |name: &str, outcome: &str| -> f64 {
        let outcome = format!(r#"outcome="{outcome}""#);
        scrape("datanode")
            .iter()
            .map(|m| sample(m, name, &[r#"kind="query""#, &outcome]))
            .sum()
    };
    let (ok, failed) = (
        queries("shoal_queries_total", "ok"),
        queries("shoal_queries_total", "InvalidArgument"),
    );
    let out = cluster.run(&["sql", r#"SELECT count(*) FROM "dfs://stock".stock"#]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cluster.run(&["sql", r#"SELECT * FROM "dfs://stock".no_such_table"#]);
    assert!(!out.status.success());
    assert_eq!(queries("shoal_queries_total", "ok"), ok + 1.0);
    assert_eq!(
        queries("shoal_queries_total", "InvalidArgument"),
        failed + 1.0
    );
    let timed: f64 = scrape("datanode")
        .iter()
        .map(|m| {
            sample(
                m,
                "shoal_query_duration_seconds_count",
                &[r#"kind="query""#],
            )
        })
        .sum();
    assert_eq!(timed, ok + failed + 2.0);
    // DDL over Flight SQL (as ADBC and Python send it) is counted as its own kind.
    let ddl = || -> f64 {
        let ok = [r#"kind="ddl""#, r#"outcome="ok""#];
        scrape("datanode")
            .iter()
            .map(|m| sample(m, "shoal_queries_total", &ok))
            .sum()
    };
    let before = ddl();
    let rt = crate::data::runtime();
    let data = crate::data::Data::connect(&cluster);
    let node = data.datanodes.values().next().unwrap();
    rt.block_on(async {
        let channel = data.channels.get(node).unwrap();
        shoal_query::query(channel, "SHOW DATABASES").await.unwrap()
    });
    assert_eq!(ddl(), before + 1.0);

    // Idle, the replicas flush (the WAL is fdatasync'd as each flush seals its segment).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let data = scrape("datanode");
        let total = |name: &str, labels: &[&str]| -> f64 {
            data.iter().map(|m| sample(m, name, labels)).sum()
        };
        let flushes = total("shoal_flushes_total", &[r#"outcome="ok""#]);
        if flushes >= 2.0 {
            assert!(total("shoal_flushed_bytes_total", &[]) > 0.0);
            assert_eq!(total("shoal_flush_duration_seconds_count", &[]), flushes);
            assert_eq!(total("shoal_flushes_total", &[r#"outcome="failed""#]), 0.0);
            assert!(total("shoal_wal_fsync_duration_seconds_count", &[]) >= flushes);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{flushes} flushes after 30 s:\n{}",
            data.join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Exactly one controller leads, all in one term; the chunk the writes made is counted
    // (sampled each second: wait for the sample after the writes).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ctl = scrape("controller");
        let leaders: f64 = ctl
            .iter()
            .map(|m| sample(m, "shoal_raft_is_leader", &[]))
            .sum();
        let terms: Vec<f64> = ctl
            .iter()
            .map(|m| sample(m, "shoal_raft_term", &[]))
            .collect();
        let complete = sample(&ctl[0], "shoal_chunks", &[r#"state="COMPLETE""#]);
        if leaders == 1.0 && terms.windows(2).all(|w| w[0] == w[1]) && complete >= 1.0 {
            assert!(terms[0] >= 1.0, "{terms:?}");
            assert_eq!(sample(&ctl[0], "shoal_nodes", &[r#"state="UP""#]), 9.0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leaders {leaders}, terms {terms:?}, complete chunks {complete}:\n{}",
            ctl.join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
