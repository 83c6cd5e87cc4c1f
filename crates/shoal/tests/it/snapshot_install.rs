//! A replica that fell behind its primary's truncated WAL recovers by a copy of the primary's
//! chunk files (`InstallSnapshot`), then the records after them: its machine is stopped while
//! rows are written, flushed to files and the WAL below them deleted; once it is back every
//! acknowledged row is there exactly once and the replicas agree.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use shoal_client::record::now_ms;

use crate::chunk_files::wait_all_flushed;
use crate::data::{Data, create_seed_table, runtime, wait_all_complete_and_identical};
use crate::harness::{LocalCluster, nodes, stderr, stdout};

const ROWS_PER_APPEND: i32 = 5_000;

#[test]
fn a_replica_behind_the_truncated_wal_recovers_by_snapshot() {
    let cluster = LocalCluster::start_with(&["--set", "flushIdleTime=500"]);
    create_seed_table(&cluster);
    let rt = runtime();
    let data = Data::connect(&cluster);
    let mut seq = 0u64;
    // `n` appends of rows timed now (today's chunk), ids going on from the last append's.
    let mut append = |n: u64| {
        rt.block_on(async {
            for _ in 0..n {
                seq += 1;
                let first = (seq as i32 - 1) * ROWS_PER_APPEND;
                let ids: Vec<i32> = (1..=ROWS_PER_APPEND).map(|k| first + k).collect();
                let now = now_ms() as i64;
                let batch = shoal_client::seed::rows(&ids, |_| now);
                let r = data
                    .client
                    .append("dfs://stock", "stock", 1, seq, &batch)
                    .await;
                assert_eq!(r.unwrap().rows, ROWS_PER_APPEND as u64);
            }
        });
    };
    append(20);
    wait_all_flushed(&rt, &data, Duration::from_secs(60));

    // Stop the machine of a replica that is not its chunk's primary.
    let chunk = rt.block_on(data.chunks()).remove(0);
    let (primary, behind) = crate::data::primary_and_other(&chunk);
    let held = rt.block_on(data.positions())[&(chunk.id, behind.clone())].last_lsn;
    let behind_host = machine_of(&cluster, &behind);
    let primary_dir = cluster
        .dir
        .join(machine_of(&cluster, &primary))
        .join(&primary)
        .join("volumes/chunks")
        .join(chunk.id.to_string());
    let out = cluster.run(&["host", "stop", &behind_host]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Rows acknowledged by the primary alone, flushed, and the WAL the stopped replica would
    // need deleted.
    append(20);
    let started = Instant::now();
    while first_wal_lsn(&primary_dir) <= held + 1 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the primary's WAL in {} still starts at lsn {} (the stopped replica holds {held})",
            primary_dir.display(),
            first_wal_lsn(&primary_dir)
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let out = cluster.run(&["host", "start", &behind_host]);
    assert!(out.status.success(), "{}", stderr(&out));
    rt.block_on(wait_all_complete_and_identical(
        &data,
        Duration::from_secs(90),
    ));
    append(2); // and writes go on through both replicas
    rt.block_on(wait_all_complete_and_identical(
        &data,
        Duration::from_secs(30),
    ));

    let installed = cluster
        .logs()
        .lines()
        .filter(|l| l.contains("installed a snapshot from its primary"))
        .count();
    assert!(
        installed >= 1,
        "no snapshot was installed:\n{}",
        cluster.logs()
    );
    let want: Vec<i32> = (1..=42 * ROWS_PER_APPEND).collect();
    assert_eq!(rt.block_on(data.table_ids()), want);
    rt.block_on(data.assert_replicas_agree());
    let out = cluster.run(&["verify", "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(report["ok"], true, "{}{}", stdout(&out), stderr(&out));
}

/// The machine a node runs on.
fn machine_of(cluster: &LocalCluster, alias: &str) -> String {
    let status = cluster.status();
    let n = nodes(&status).iter().find(|n| n["alias"] == alias).unwrap();
    n["machine"].as_str().unwrap().to_owned()
}

/// The first lsn of the oldest WAL segment in a replica's directory.
fn first_wal_lsn(dir: &Path) -> u64 {
    let segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    segments
        .iter()
        .filter_map(|p| p.file_stem()?.to_str()?.parse().ok())
        .min()
        .unwrap_or(0)
}
