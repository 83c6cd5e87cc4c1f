//! A chunk far larger than one gRPC message is queryable: 20 million rows written in 10,000-row
//! appends to one partition (the previous release refused every query on such a table:
//! "decoded message length too large: found 56410573 bytes, the limit is: 4194304 bytes"), with
//! most of it in chunk files by then.

use std::time::Instant;

use serde_json::json;

use crate::data::{Data, create_seed_table, runtime, seed_rows};
use crate::harness::LocalCluster;
use crate::query::sql;

const ROWS: i32 = 20_000_000;
const ROWS_PER_APPEND: i32 = 10_000;
const WRITERS: i32 = 4;

#[test]
fn a_chunk_of_twenty_million_rows_is_queryable() {
    let cluster = LocalCluster::start();
    create_seed_table(&cluster);
    let rt = runtime();
    let data = Data::connect(&cluster);

    // Each writer sends its share of the appends in order, all to 2023-01-01 (one chunk).
    let appends = ROWS / ROWS_PER_APPEND;
    let started = Instant::now();
    rt.block_on(async {
        let writers = (0..WRITERS).map(|w| {
            let client = &data.client;
            async move {
                for (seq, a) in (w..appends).step_by(WRITERS as usize).enumerate() {
                    let ids: Vec<i32> = (1..=ROWS_PER_APPEND)
                        .map(|k| a * ROWS_PER_APPEND + k)
                        .collect();
                    let r = client
                        .append(
                            "dfs://stock",
                            "stock",
                            w as u64 + 1,
                            seq as u64 + 1,
                            &seed_rows(&ids, 0),
                        )
                        .await
                        .unwrap();
                    // `duplicate` may be true: an attempt that failed over (here, or inside the
                    // cluster when a busy primary missed a liveness probe) may have been applied
                    // already. Exactly once is what the counts below check.
                    assert_eq!(r.rows, ROWS_PER_APPEND as u64, "{r:?}");
                }
            }
        });
        futures::future::join_all(writers).await;
    });
    eprintln!("{ROWS} rows appended in {:?}", started.elapsed());
    let chunks = rt.block_on(data.chunks());
    assert_eq!(chunks.len(), 1, "one partition, one chunk: {chunks:?}");
    // Far past the 64 MiB flush trigger: the queries below read chunk files, not only memory.
    let positions = rt.block_on(data.positions());
    assert!(
        positions.len() == 2 && positions.values().all(|p| p.flushed_lsn > 0),
        "both replicas should have flushed rows to chunk files: {positions:?}"
    );

    let started = Instant::now();
    let mut names = shoal_client::seed::NAMES;
    names.sort_unstable();
    assert_eq!(
        sql(
            &cluster,
            r#"SELECT count(*) AS n, count(DISTINCT id) AS ids, min(id) AS lo, max(id) AS hi FROM "dfs://stock".stock"#
        ),
        json!([{"n": ROWS, "ids": ROWS, "lo": 1, "hi": ROWS}])
    );
    assert_eq!(
        sql(
            &cluster,
            r#"SELECT name, count(*) AS n FROM "dfs://stock".stock GROUP BY name ORDER BY name"#
        ),
        json!(
            names
                .iter()
                .map(|name| json!({"name": name, "n": ROWS / 5}))
                .collect::<Vec<_>>()
        )
    );
    // Rows themselves, not only aggregates, come back from the whole chunk.
    let every_millionth: Vec<i32> = (1..=ROWS / 1_000_000).map(|k| k * 1_000_000).collect();
    assert_eq!(
        sql(
            &cluster,
            r#"SELECT id FROM "dfs://stock".stock WHERE id % 1000000 = 0 ORDER BY id"#
        ),
        json!(
            every_millionth
                .iter()
                .map(|id| json!({"id": id}))
                .collect::<Vec<_>>()
        )
    );
    eprintln!("three queries over {ROWS} rows in {:?}", started.elapsed());
}
