//! A machine's disk lost (its data node's chunkMetaDir and volumes removed while it is stopped,
//! as when a disk is replaced or fails to mount) loses no acknowledged row: the restarted data
//! node rejoins out of sync and is filled again by the replica that holds the data, for each
//! machine in turn, whether it held primaries or not; no chunk is reported COMPLETE while one
//! of its replicas lacks rows that were acknowledged. The replicas hold chunk files (flushed
//! once idle for a second) when the disk goes, so the refill reads from files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::chunk_files::wait_all_flushed;
use crate::data::{Data, create_seed_table, runtime, seed_rows, wait_all_complete_and_identical};
use crate::harness::{LocalCluster, stderr};
use crate::storage::datanode_on;

const DB: &str = "dfs://stock";
const TABLE: &str = "stock";
const ROWS_PER_APPEND: i32 = 5_000;

#[test]
fn losing_one_machines_disk_loses_no_acknowledged_row() {
    let cluster = LocalCluster::start_with(&["--set", "flushIdleTime=1000"]);
    create_seed_table(&cluster);
    let rt = runtime();
    let data = Data::connect(&cluster);
    let mut seq = 0u64;
    // `n` appends spread over `days` (days after 2023-01-01, one chunk each); answers the
    // last seq, which is also the number of appends so far.
    let mut append = |n: u64, days: &[i64]| {
        let first = seq;
        seq += n;
        rt.block_on(async {
            for s in first + 1..=first + n {
                let ids: Vec<i32> = (1..=ROWS_PER_APPEND)
                    .map(|k| (s as i32 - 1) * ROWS_PER_APPEND + k)
                    .collect();
                let day = days[s as usize % days.len()];
                let r = data
                    .client
                    .append(DB, TABLE, 1, s, &seed_rows(&ids, day))
                    .await
                    .unwrap();
                assert_eq!((r.rows, r.duplicate), (ROWS_PER_APPEND as u64, false));
            }
        });
        seq
    };
    append(30, &[0, 1, 2]);
    wait_all_flushed(&rt, &data, Duration::from_secs(60));

    let mut lost = BTreeSet::new(); // "primary" / "replica": what the wiped nodes held
    for host in cluster.hosts.clone() {
        let (alias, _) = datanode_on(&cluster, &host);
        let chunks = rt.block_on(data.chunks());
        for c in chunks
            .iter()
            .filter(|c| c.replicas.iter().any(|r| r.node == alias))
        {
            let primary = c.replicas.iter().find(|r| r.in_sync).unwrap();
            lost.insert(if primary.node == alias {
                "primary"
            } else {
                "replica"
            });
        }
        let out = cluster.run(&["host", "stop", &host]);
        assert!(out.status.success(), "{}", stderr(&out));
        // Rows acknowledged while it is down live on one replica only; the chunks of days 1
        // and 2 get none, so the stopped node's replicas of them are still in sync when it
        // returns with nothing (a cold partition: the case that lost everything).
        let acked = append(6, &[0]);
        // Rows every replica must hold from now on, by chunk.
        let held = rt.block_on(most_rows_by_chunk(&data));
        wipe(&cluster.dir.join(&host).join(&alias));
        let out = cluster.run(&["host", "start", &host]);
        assert!(out.status.success(), "{}", stderr(&out));
        rt.block_on(async {
            if let Err(e) = never_complete_while_short(&data, &held, Duration::from_secs(90)).await
            {
                panic!("after wiping {alias}: {e}\n{}", cluster.logs());
            }
            wait_all_complete_and_identical(&data, Duration::from_secs(90)).await;
        });
        let want: Vec<i32> = (1..=acked as i32 * ROWS_PER_APPEND).collect();
        assert_eq!(rt.block_on(data.table_ids()), want, "after wiping {alias}");
    }
    assert_eq!(
        lost,
        BTreeSet::from(["primary", "replica"]),
        "the wiped machines held both primaries and other replicas"
    );
    // Whichever replica serves, the answer is every acknowledged id once.
    rt.block_on(data.assert_replicas_agree());
}

/// Removes a stopped data node's chunkMetaDir and volumes (`local up` puts them in its home).
fn wipe(home: &Path) {
    for dir in ["storage", "volumes"] {
        let path = home.join(dir);
        assert!(
            path.is_dir(),
            "{} should exist before the wipe",
            path.display()
        );
        std::fs::remove_dir_all(&path).unwrap();
    }
}

/// The most rows any replica of each chunk holds.
async fn most_rows_by_chunk(data: &Data) -> BTreeMap<u64, u64> {
    let mut most = BTreeMap::new();
    for ((chunk, _), p) in data.positions().await {
        let m = most.entry(chunk).or_insert(0);
        *m = (*m).max(p.rows);
    }
    most
}

/// Until every chunk is COMPLETE: a chunk reported COMPLETE has every replica holding at least
/// the rows acknowledged before the wipe.
async fn never_complete_while_short(
    data: &Data,
    held: &BTreeMap<u64, u64>,
    timeout: Duration,
) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let chunks = data.chunks().await;
        let positions = data.positions().await;
        for c in chunks.iter().filter(|c| c.state == "COMPLETE") {
            for r in &c.replicas {
                // A replica of a node that does not answer yet is not checked this round.
                if let Some(p) = positions.get(&(c.id, r.node.clone())) {
                    // Positions are read after the state: a replica only gains rows meanwhile.
                    if p.rows < held[&c.id] {
                        return Err(format!(
                            "chunk {} is COMPLETE but the replica on {} holds {} of {} rows:\n\
                             {c:?}\n{positions:#?}",
                            c.id, r.node, p.rows, held[&c.id]
                        ));
                    }
                }
            }
        }
        if chunks.iter().all(|c| c.state == "COMPLETE") {
            return Ok(());
        }
        if started.elapsed() > timeout {
            return Err(format!(
                "chunks not COMPLETE after {timeout:?}: {chunks:#?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
