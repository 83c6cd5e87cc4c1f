//! Chunk files (storage format 2) on a cluster this release created: replicas move their rows
//! from memory into sorted Parquet files once idle, every row stays queryable exactly once, the
//! replicas agree, and a restarted machine reopens from its files, replaying only what came
//! after them.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::data::{Data, create_seed_table, runtime, seed_rows, wait_all_complete_and_identical};
use crate::harness::{LocalCluster, kill9, previous_release_binary, shoal_with, stderr};
use crate::query::sql;
use crate::storage::datanode_on;

pub const ROWS_PER_APPEND: i32 = 2_000;

/// Appends `seqs` of writer 1, ids `(seq-1)*ROWS_PER_APPEND+1 ..= seq*ROWS_PER_APPEND`, days
/// alternating; every one must succeed (the client rides out failures itself).
pub fn append_seqs(rt: &tokio::runtime::Runtime, data: &Data, seqs: std::ops::RangeInclusive<u64>) {
    rt.block_on(async {
        for seq in seqs {
            let first = (seq as i32 - 1) * ROWS_PER_APPEND;
            let ids: Vec<i32> = (1..=ROWS_PER_APPEND).map(|k| first + k).collect();
            let batch = seed_rows(&ids, i64::from(seq as i32 % 2));
            let r = data
                .client
                .append("dfs://stock", "stock", 1, seq, &batch)
                .await;
            assert_eq!(
                r.unwrap_or_else(|e| panic!("append {seq}: {e}")).rows,
                ROWS_PER_APPEND as u64
            );
        }
    });
}

#[test]
fn idle_replicas_flush_to_files_and_a_restart_replays_only_the_tail() {
    let cluster = LocalCluster::start_with(&["--set", "flushIdleTime=1000"]);
    create_seed_table(&cluster);
    let rt = runtime();
    let data = Data::connect(&cluster);
    let mut seq = 0u64;
    let mut append = |n: u64| {
        append_seqs(&rt, &data, seq + 1..=seq + n);
        seq += n;
        seq as i32 * ROWS_PER_APPEND
    };
    let written = append(100);

    // Every replica of both chunks moves all it holds into files within seconds of going idle.
    let flushed = wait_all_flushed(&rt, &data, Duration::from_secs(60));
    assert_eq!(flushed.len(), 4, "2 chunks × 2 replicas: {flushed:?}");
    for dir in replica_dirs(&cluster.dir) {
        assert!(
            dir.join("MANIFEST").is_file(),
            "{} has no MANIFEST",
            dir.display()
        );
        let files = std::fs::read_dir(dir.join("f")).unwrap().count();
        assert!(files >= 1, "{} has no chunk file", dir.display());
    }
    let count = r#"SELECT count(*) AS n, count(DISTINCT id) AS ids, min(id) AS lo, max(id) AS hi FROM "dfs://stock".stock"#;
    let all = |n: i32| json!([{"n": n, "ids": n, "lo": 1, "hi": n}]);
    assert_eq!(sql(&cluster, count), all(written));
    rt.block_on(data.assert_replicas_agree());

    // A machine restarted: its replicas reopen from their files with nothing to replay, and
    // rows written after that go to the WAL and then to new files again.
    let host = cluster.hosts[0].clone();
    let out = cluster.run(&["host", "stop", &host]);
    assert!(out.status.success(), "host stop: {}", stderr(&out));
    // Meanwhile the previous release, run on that machine's data node, refuses the converted
    // replicas by their format version (not as damage) and changes nothing.
    let (alias, _) = datanode_on(&cluster, &host);
    let before = tree(&cluster.dir.join(&host).join(&alias));
    // The key this test set is new in this release: the previous one refuses it by name, so
    // it goes for this run, as an operator rolling back would take it out.
    let cfg = cluster.dir.join(&host).join("cluster.cfg");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let old_keys: String = text
        .lines()
        .filter(|l| !l.starts_with("flushIdleTime"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&cfg, old_keys).unwrap();
    let old = shoal_with(
        &previous_release_binary(),
        &[
            "datanode",
            "--home",
            cluster.dir.join(&host).to_str().unwrap(),
            "--alias",
            &alias,
        ],
    );
    let said = stderr(&old) + &crate::harness::stdout(&old);
    assert!(
        !old.status.success(),
        "the previous release served it: {said}"
    );
    eprintln!("the previous release on a converted data node: {said}");
    assert!(
        said.contains("format") && said.contains('2') && !said.to_lowercase().contains("corrupt"),
        "the previous release should name the format version: {said}"
    );
    assert_eq!(tree(&cluster.dir.join(&host).join(&alias)), before);
    std::fs::write(&cfg, text).unwrap();
    let out = cluster.run(&["host", "start", &host]);
    assert!(out.status.success(), "host start: {}", stderr(&out));
    let reopened = reopen_lines(&cluster.dir.join(&host).join("log"));
    assert!(!reopened.is_empty(), "{host} reopened no replica");
    for line in &reopened {
        assert!(
            line.contains(" 0 WAL records replayed") && !line.contains("through lsn 0,"),
            "a replica replayed records its files hold: {line}"
        );
    }
    let written = append(20);
    assert_eq!(sql(&cluster, count), all(written));
    wait_all_flushed(&rt, &data, Duration::from_secs(60));
    rt.block_on(data.assert_replicas_agree());
    assert_eq!(sql(&cluster, count), all(written));
}

#[test]
fn a_data_node_killed_mid_ingest_loses_no_acked_row_and_replays_only_its_tail() {
    const BEFORE: u64 = 60;
    const TOTAL: u64 = 200;
    let cluster = LocalCluster::start_with(&["--set", "flushIdleTime=1000"]);
    create_seed_table(&cluster);
    let rt = runtime();
    let data = Data::connect(&cluster);
    append_seqs(&rt, &data, 1..=BEFORE);
    wait_all_flushed(&rt, &data, Duration::from_secs(60));

    // Appends go on while the first machine's data node is killed: what it held is part in
    // files, part in the WAL only.
    let host = cluster.hosts[0].clone();
    let (victim, pid) = datanode_on(&cluster, &host);
    let writer = {
        let data = Data::connect(&cluster);
        std::thread::spawn(move || append_seqs(&runtime(), &data, BEFORE + 1..=TOTAL))
    };
    let started = Instant::now();
    while rt
        .block_on(data.positions())
        .values()
        .map(|p| p.last_lsn)
        .sum::<u64>()
        < 2 * (BEFORE + 20)
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "appends stalled"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    kill9(pid);
    writer.join().expect("the writer failed");

    let written = TOTAL as i32 * ROWS_PER_APPEND;
    let count = r#"SELECT count(*) AS n, count(DISTINCT id) AS ids, min(id) AS lo, max(id) AS hi FROM "dfs://stock".stock"#;
    assert_eq!(
        sql(&cluster, count),
        json!([{"n": written, "ids": written, "lo": 1, "hi": written}])
    );
    rt.block_on(wait_all_complete_and_identical(
        &data,
        Duration::from_secs(60),
    ));
    rt.block_on(data.assert_replicas_agree());

    // The restarted node opened each replica from its files and replayed only what followed.
    let reopened = reopen_lines(&cluster.dir.join(&host).join("log"));
    assert!(!reopened.is_empty(), "{victim} reopened no replica");
    let from_files = reopened
        .iter()
        .filter(|l| !l.contains("through lsn 0,"))
        .count();
    assert_eq!(
        from_files,
        reopened.len(),
        "a replica flushed before the kill replayed its whole WAL: {reopened:#?}"
    );
    let tail: u64 = reopened.iter().map(|l| replayed(l)).sum();
    assert!(
        tail > 0 && tail < TOTAL - BEFORE,
        "replayed {tail} WAL records, expected the unflushed tail only: {reopened:#?}"
    );
}

/// `R` of "... R WAL records replayed ...".
fn replayed(line: &str) -> u64 {
    let before = line
        .split(" WAL records replayed")
        .next()
        .unwrap_or_default();
    before
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no record count in {line}"))
}

/// Waits until every replica's records are all in files; answers each replica's flushed lsn.
pub fn wait_all_flushed(
    rt: &tokio::runtime::Runtime,
    data: &Data,
    within: Duration,
) -> BTreeMap<(u64, String), u64> {
    let started = Instant::now();
    loop {
        let positions = rt.block_on(data.positions());
        if !positions.is_empty()
            && positions
                .values()
                .all(|p| p.last_lsn > 0 && p.flushed_lsn == p.last_lsn)
        {
            return positions
                .into_iter()
                .map(|(k, p)| (k, p.flushed_lsn))
                .collect();
        }
        assert!(
            started.elapsed() < within,
            "replicas not flushed: {positions:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What each replica reopened at a data node's start said (see `LocalReplicas::open`).
fn reopen_lines(log_dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for f in std::fs::read_dir(log_dir).unwrap().flatten() {
        let text = std::fs::read_to_string(f.path()).unwrap_or_default();
        lines.extend(
            text.lines()
                .filter(|l| l.contains("WAL records replayed"))
                .map(str::to_owned),
        );
    }
    lines
}

/// Every chunk replica's directory under the cluster's machines.
pub fn replica_dirs(cluster: &Path) -> Vec<std::path::PathBuf> {
    let mut dirs = Vec::new();
    for machine in std::fs::read_dir(cluster).unwrap().flatten() {
        for node in std::fs::read_dir(machine.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let chunks = node.path().join("volumes").join("chunks");
            for c in std::fs::read_dir(&chunks).into_iter().flatten().flatten() {
                dirs.push(c.path());
            }
        }
    }
    dirs
}

/// Every file under `dir` with its size, to show something changed nothing.
fn tree(dir: &Path) -> BTreeMap<std::path::PathBuf, u64> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                files.insert(entry.path(), meta.len());
            }
        }
    }
    files
}
