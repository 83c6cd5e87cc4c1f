//! The seed's writer and checker against real processes: `shoal write` keeps every append
//! acknowledged while the data node it talks to is `kill -9`ed again and again (the agent
//! restarts it), and `shoal verify` confirms every acknowledged row is there exactly once; and
//! `verify` fails, naming them, on a table with a gap and a duplicate.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use serde_json::Value;

use crate::data::{Data, create_seed_table, runtime};
use crate::harness::{LocalCluster, Spawned, kill9, node, nodes, shoal_bin, stderr, stdout};
use shoal_client::record::now_ms;

const KILLS: usize = 3;
const KILL_EVERY: Duration = Duration::from_secs(6);

/// The record's lines so far (the last one may be half written).
fn record_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The data node the writer talks to now: the site of its latest acknowledgement.
fn writer_site(record: &Path) -> Option<String> {
    record_lines(record)
        .iter()
        .rev()
        .find_map(|l| l["site"].as_str().map(str::to_owned))
}

#[test]
fn the_writer_survives_repeated_kills_of_its_data_node_and_verify_confirms_every_row() {
    let cluster = LocalCluster::start();
    create_seed_table(&cluster);
    let tmp = tempfile::tempdir().unwrap();
    let record = tmp.path().join("record.jsonl");
    let summary = tmp.path().join("summary.json");
    let log = tmp.path().join("writer.log");
    let mut writer = Spawned(
        Command::new(shoal_bin())
            .args(["write", "--dir", cluster.dir_str(), "--rate", "200"])
            .args(["--duration", "30s", "--json", "--progress", "--record"])
            .arg(&record)
            .env_remove("SHOAL_CLUSTER_SECRET")
            .stdout(std::fs::File::create(&summary).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    // The writer starts on the first data node of cluster.nodes (DataClient tries its sites in
    // order) and stays on whichever answered last: kill that one each time.
    let mut killed = Vec::new();
    for k in 1..=KILLS {
        let at = KILL_EVERY * k as u32;
        std::thread::sleep(at.saturating_sub(started.elapsed()));
        let site = writer_site(&record).expect("the writer acknowledged nothing yet");
        let status = cluster.status();
        let victim = nodes(&status)
            .iter()
            .find(|n| n["mode"] == "datanode" && n["addr"] == site.as_str())
            .unwrap_or_else(|| panic!("no data node at {site}: {status:#}"));
        let alias = victim["alias"].as_str().unwrap().to_owned();
        let pid = victim["pid"].as_u64().unwrap();
        kill9(pid);
        let at_ms = now_ms();
        eprintln!(
            "kill {k}: {alias} ({site}, pid {pid}) at {:?}",
            started.elapsed()
        );
        cluster.wait_status(&format!("{alias} back up"), Duration::from_secs(20), |s| {
            let n = node(s, &alias);
            n["state"] == "UP" && n["pid"].as_u64().is_some_and(|p| p != pid)
        });
        killed.push((alias, at_ms));
    }
    let exit = writer.wait(Duration::from_secs(75));
    let writer_log = std::fs::read_to_string(&log).unwrap();
    assert!(exit.success(), "writer failed ({exit}): {writer_log}");
    let summary: Value = serde_json::from_slice(&std::fs::read(&summary).unwrap())
        .unwrap_or_else(|e| panic!("writer summary: {e}; log: {writer_log}"));
    eprintln!("writer summary: {summary:#}");
    assert_eq!(summary["appends_failed"], 0, "{summary:#}");

    // The record: one line per append, all acknowledged, and the kills were felt.
    let lines = record_lines(&record);
    assert_eq!(Some(lines.len() as u64), summary["appends"].as_u64());
    assert!(lines.iter().all(|l| l["outcome"] == "ok"));
    let acked_rows: u64 = lines
        .iter()
        .map(|l| l["last_id"].as_u64().unwrap() - l["first_id"].as_u64().unwrap() + 1)
        .sum();
    assert_eq!(Some(acked_rows), summary["rows_ok"].as_u64());
    let retried = lines.iter().filter(|l| l["retries"] != 0).count();
    assert!(retried > 0, "no append noticed the kills");
    // 200 appends/s for 30 s, minus what the failovers cost: most of them got through.
    // (The bound is loose: a loaded 2-core machine halves the rate.)
    assert!(acked_rows > 1_000, "only {acked_rows} rows in 30 s");
    // What the failovers cost, for whoever reads the test's output.
    let t0 = lines
        .iter()
        .filter_map(|l| l["sent_at_ms"].as_u64())
        .min()
        .unwrap();
    let mut slowest: Vec<&Value> = lines.iter().collect();
    slowest.sort_by_key(|l| std::cmp::Reverse(l["latency_us"].as_u64()));
    for l in slowest.iter().take(5) {
        eprintln!(
            "slow: seq {} sent at {} ms took {} ms, {} retries, acked by {}",
            l["seq"],
            l["sent_at_ms"].as_u64().unwrap() - t0,
            l["latency_us"].as_u64().unwrap() / 1000,
            l["retries"],
            l["site"]
        );
    }
    eprintln!(
        "kills at (ms into the run): {:?}",
        killed
            .iter()
            .map(|(a, at)| (a, at - t0))
            .collect::<Vec<_>>()
    );

    let verify = cluster.run(&["verify", "--json", "--record", record.to_str().unwrap()]);
    assert!(
        verify.status.success(),
        "verify: {}\n{}",
        stdout(&verify),
        stderr(&verify)
    );
    let report: Value = serde_json::from_slice(&verify.stdout).unwrap();
    assert_eq!(report["rows"].as_u64(), Some(acked_rows), "{report:#}");
    let count = cluster.run(&[
        "sql",
        r#"SELECT count(*) AS n FROM "dfs://stock".stock"#,
        "--json",
    ]);
    assert!(count.status.success(), "{}", stderr(&count));
    let count: Value = serde_json::from_slice(&count.stdout).unwrap();
    assert_eq!(
        count[0]["n"].as_u64(),
        Some(acked_rows),
        "rows in the table"
    );
}

/// Rows stamped now with the given ids.
fn rows_now(ids: &[i32]) -> RecordBatch {
    let now = now_ms() as i64;
    shoal_client::seed::rows(ids, |_| now)
}

#[test]
fn verify_fails_on_a_gap_and_a_duplicate_and_names_them() {
    let cluster = LocalCluster::start();
    create_seed_table(&cluster);
    let data = Data::connect(&cluster);
    runtime().block_on(async {
        // Id 2 twice under different (writer, seq): two real rows, not a retry.
        for (seq, ids) in [(1, [1, 2]), (2, [2, 4])] {
            let batch = rows_now(&ids);
            data.client
                .append("dfs://stock", "stock", 7, seq, &batch)
                .await
                .unwrap();
        }
    });

    let out = cluster.run(&["verify", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["rows"], 4);
    assert_eq!(
        report["missing"]["first_ranges"],
        serde_json::json!([[3, 3]])
    );
    assert_eq!(
        report["doubled"]["first_ranges"],
        serde_json::json!([{ "first": 2, "last": 2, "copies": 2 }])
    );
    let current = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "latest time current")
        .unwrap();
    assert_eq!(current["ok"], true, "{report:#}");

    let out = cluster.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("missing 3 (1 id)"), "{text}");
    assert!(text.contains("doubled 2 ×2 (1 id)"), "{text}");
    assert!(text.contains("NOT verified"), "{text}");
}
