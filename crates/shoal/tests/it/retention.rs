//! Retention: `ALTER TABLE ... DROP PARTITION` removes whole partitions through the controllers,
//! every replica's files go, the other partitions keep every row, and the partition can be
//! written again (after the moment data nodes may still route writes to the old chunk).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::data::{Data, create_seed_table, runtime, seed_rows};
use crate::harness::{LocalCluster, node, stderr, stdout};
use crate::query::{sql, sql_refused};

const ROWS_PER_DAY: i32 = 10_000;

#[test]
fn dropping_a_partition_deletes_its_replicas_and_keeps_the_others() {
    let cluster = LocalCluster::start();
    create_seed_table(&cluster);
    let rt = runtime();
    let data = Data::connect(&cluster);
    let ids =
        |day: i32| -> Vec<i32> { (1..=ROWS_PER_DAY).map(|k| day * ROWS_PER_DAY + k).collect() };
    rt.block_on(async {
        for day in 0..3 {
            let seq = day as u64 + 1;
            let batch = seed_rows(&ids(day), i64::from(day));
            data.client
                .append("dfs://stock", "stock", 1, seq, &batch)
                .await
                .unwrap();
        }
    });
    let chunks = rt.block_on(data.chunks());
    assert_eq!(chunks.len(), 3);
    let dropped = chunks
        .iter()
        .find(|c| c.partition_key == "2023.01.01")
        .unwrap()
        .clone();
    let holders: Vec<String> = dropped.replicas.iter().map(|r| r.node.clone()).collect();

    // Refused, changing nothing: a value of the wrong kind, a table that does not exist.
    let err = sql_refused(
        &cluster,
        r#"ALTER TABLE "dfs://stock".stock DROP PARTITION 42"#,
    );
    assert!(err.contains("partitioned by dates"), "{err}");
    let err = sql_refused(
        &cluster,
        r#"ALTER TABLE "dfs://stock".nope DROP PARTITION 2023.01.01"#,
    );
    assert!(err.contains("does not exist"), "{err}");
    assert_eq!(rt.block_on(data.chunks()).len(), 3);

    let out = cluster.run(&[
        "sql",
        r#"ALTER TABLE "dfs://stock".stock DROP PARTITION [2023.01.01, 2023.01.09]"#,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("2023.01.01") && stdout(&out).contains("no data in 2023.01.09"),
        "{}",
        stdout(&out)
    );
    let count = r#"SELECT count(*) AS n, min(id) AS lo, max(id) AS hi FROM "dfs://stock".stock"#;
    assert_eq!(
        sql(&cluster, count),
        json!([{"n": 2 * ROWS_PER_DAY, "lo": ROWS_PER_DAY + 1, "hi": 3 * ROWS_PER_DAY}])
    );
    assert_eq!(
        sql(
            &cluster,
            r#"SELECT count(*) AS n FROM cluster.chunks WHERE "partition" = '2023.01.01'"#
        ),
        json!([{"n": 0}])
    );

    // Every replica of the dropped chunk is deleted, its record and its files.
    let status = cluster.status();
    let started = Instant::now();
    loop {
        let positions = rt.block_on(data.positions());
        let left: Vec<&String> = positions
            .keys()
            .filter(|(id, _)| *id == dropped.id)
            .map(|(_, node)| node)
            .collect();
        let records: Vec<&String> = holders
            .iter()
            .filter(|n| {
                let host = node(&status, n)["machine"].as_str().unwrap().to_owned();
                cluster
                    .dir
                    .join(host)
                    .join(n)
                    .join("storage")
                    .join(format!("{}.chunk", dropped.id))
                    .exists()
            })
            .collect();
        if left.is_empty() && records.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "chunk {} still held by {left:?}, records on {records:?}",
            dropped.id
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The day can be written again: a new chunk, once the name is free (the writer retries).
    let again: Vec<i32> = (1..=100).map(|k| 1_000_000 + k).collect();
    let r = rt
        .block_on(
            data.client
                .append("dfs://stock", "stock", 1, 4, &seed_rows(&again, 0)),
        )
        .unwrap();
    assert_eq!((r.rows, r.duplicate), (100, false));
    let chunks = rt.block_on(data.chunks());
    let new = chunks
        .iter()
        .find(|c| c.partition_key == "2023.01.01")
        .unwrap();
    assert_ne!(new.id, dropped.id);
    assert_eq!(
        sql(&cluster, count),
        json!([{"n": 2 * ROWS_PER_DAY + 100, "lo": ROWS_PER_DAY + 1, "hi": 1_000_100}])
    );
}
