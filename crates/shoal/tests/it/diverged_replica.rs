//! F10: a replica holding a record no other replica has (a deposed primary's write that was
//! never replicated, so never acknowledged) is cut back to the prefix it shares with its
//! primary and caught up from there: not rebuilt from empty or copied whole. The diverged
//! record is made for real: while its machine is stopped, a record of another writer is
//! appended to the replica's store on disk, and the primary then acknowledges other records at
//! the same lsns.

use std::time::Duration;

use shoal_storage::{ChunkStore, StoreOptions};

use crate::data::{Data, create_seed_table, runtime, seed_rows, wait_all_complete_and_identical};
use crate::harness::{LocalCluster, nodes, stderr};
use crate::metrics::{get, http_addr, sample};

const DB: &str = "dfs://stock";
const TABLE: &str = "stock";
const ROWS: i32 = 100;
/// The writer whose record only the stopped replica holds.
const STRAY_WRITER: u64 = 999;

#[test]
fn a_diverged_replica_is_cut_back_to_the_common_prefix_not_rebuilt() {
    let cluster = LocalCluster::start();
    create_seed_table(&cluster);
    let rt = runtime();
    let data = Data::connect(&cluster);
    let append = |writer: u64, seq: u64| {
        let ids: Vec<i32> = (1..=ROWS)
            .map(|k| (writer as i32 * 10_000 + seq as i32) * ROWS + k)
            .collect();
        let r = rt
            .block_on(
                data.client
                    .append(DB, TABLE, writer, seq, &seed_rows(&ids, 0)),
            )
            .unwrap();
        assert_eq!((r.rows, r.duplicate), (ROWS as u64, false));
        ids
    };
    let mut acked: Vec<i32> = (1..=20).flat_map(|s| append(1, s)).collect();
    let chunk = rt.block_on(data.chunks()).remove(0);
    let replica = chunk.replicas[1].node.clone();
    let status = cluster.status();
    let host = nodes(&status)
        .iter()
        .find(|n| n["alias"] == replica.as_str())
        .and_then(|n| n["machine"].as_str())
        .unwrap()
        .to_owned();

    let out = cluster.run(&["host", "stop", &host]);
    assert!(out.status.success(), "{}", stderr(&out));
    let store_dir = cluster
        .dir
        .join(&host)
        .join(&replica)
        .join("volumes/chunks")
        .join(chunk.id.to_string());
    let stray: Vec<i32> = (1..=ROWS).map(|k| 900_000 + k).collect();
    rt.block_on(async {
        let (store, _) = ChunkStore::open(&store_dir, StoreOptions::default())
            .await
            .unwrap_or_else(|e| panic!("open {}: {e}", store_dir.display()));
        assert_eq!(store.last_lsn(), 20);
        store
            .append(STRAY_WRITER, 1, seed_rows(&stray, 0))
            .await
            .unwrap();
        store.close().await.unwrap();
    });
    // Acknowledged by the primary alone, at lsns 21.., where the replica holds the stray one.
    acked.extend((21..=30).flat_map(|s| append(1, s)));
    let out = cluster.run(&["host", "start", &host]);
    assert!(out.status.success(), "{}", stderr(&out));

    rt.block_on(wait_all_complete_and_identical(
        &data,
        Duration::from_secs(90),
    ));
    let chunk = rt.block_on(data.chunks()).remove(0);
    acked.sort_unstable();
    for r in &chunk.replicas {
        let mut ids = rt.block_on(data.replica_ids(&chunk, &r.node));
        ids.sort_unstable();
        assert!(
            ids == acked,
            "replica on {}: {} ids, {} acknowledged; stray ids present: {}",
            r.node,
            ids.len(),
            acked.len(),
            ids.iter().any(|i| stray.contains(i))
        );
    }
    let (code, metrics) = get(&http_addr(&data.datanodes[&replica]), "/metrics");
    assert_eq!(code, 200);
    let repairs = |how: &str| {
        sample(
            &metrics,
            "shoal_replica_repairs_total",
            &[&format!("how=\"{how}\"")],
        )
    };
    assert_eq!(
        (repairs("cut"), repairs("snapshot"), repairs("reset")),
        (1.0, 0.0, 0.0),
        "{}",
        cluster.logs()
    );
    // What it caught up by: the ten records it lacked, shipped as records.
    let received = sample(
        &metrics,
        "shoal_recovery_bytes_total",
        &[r#"how="records""#],
    );
    assert!(received > 0.0, "{metrics}");
}
