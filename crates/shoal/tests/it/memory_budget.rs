//! The data nodes' memory budget (`TSDBCacheEngineSize`) on real processes: with a budget far
//! below what is written, replicas flush while the writer goes on (never idle long enough for
//! the idle flush), appends held or refused at the budget are retried by the client, and every
//! row is there exactly once, the replicas agreeing.

use serde_json::json;

use crate::chunk_files::{ROWS_PER_APPEND, append_seqs};
use crate::data::{Data, create_seed_table, runtime};
use crate::harness::LocalCluster;
use crate::query::sql;

#[test]
fn a_budget_far_below_the_data_flushes_under_writes_and_loses_or_repeats_no_row() {
    // 2 MB: replicas are flushed above 1 MB, appends held above 2 MB; no idle flush in 10 min.
    let cluster = LocalCluster::start_with(&[
        "--set",
        "TSDBCacheEngineSize=0.002",
        "--set",
        "flushIdleTime=600000",
    ]);
    create_seed_table(&cluster);
    let rt = runtime();
    let data = Data::connect(&cluster);
    // About 10 MB of rows over two chunks: several times each data node's budget.
    let appends = 200;
    append_seqs(&rt, &data, 1..=appends);
    let written = appends as i32 * ROWS_PER_APPEND;

    let positions = rt.block_on(data.positions());
    assert_eq!(positions.len(), 4, "2 chunks × 2 replicas: {positions:?}");
    assert!(
        positions.values().all(|p| p.flushed_lsn > 0),
        "a replica flushed nothing under a budget it passed: {positions:?}"
    );
    let count = r#"SELECT count(*) AS n, count(DISTINCT id) AS ids, min(id) AS lo, max(id) AS hi FROM "dfs://stock".stock"#;
    assert_eq!(
        sql(&cluster, count),
        json!([{"n": written, "ids": written, "lo": 1, "hi": written}])
    );
    rt.block_on(data.assert_replicas_agree());
}
