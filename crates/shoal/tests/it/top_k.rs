//! `ORDER BY … LIMIT k` kept by the replicas (`ScanChunkRequest.top_k`): the same rows as the
//! whole order cut after k, from chunk files and unflushed rows, with filters, in either
//! direction, by ranked (time, id) and unranked (name) columns; each replica answers at most k
//! rows.

use std::time::Duration;

use serde_json::Value;

use crate::chunk_files::wait_all_flushed;
use crate::data::{Data, create_seed_table, runtime, seed_rows};
use crate::harness::LocalCluster;
use crate::metrics::datanodes_sample;
use crate::query::sql;

const T: &str = r#""dfs://stock".stock"#;

/// (query without its LIMIT, k)
const QUERIES: [(&str, usize); 7] = [
    ("SELECT time, name, id FROM t ORDER BY time DESC", 10),
    ("SELECT time, id FROM t ORDER BY time", 7),
    (
        "SELECT time, id FROM t WHERE name = 'Apple' ORDER BY time DESC",
        5,
    ),
    (
        "SELECT id, time FROM t WHERE id % 3 = 1 ORDER BY id DESC, time",
        4,
    ),
    (
        "SELECT name, time, id FROM t ORDER BY name DESC, time DESC",
        6,
    ),
    ("SELECT * FROM t ORDER BY time DESC", 3_000),
    // One chunk (a plan of one partition, shaped otherwise).
    (
        "SELECT time, id FROM t WHERE time < TIMESTAMP '2023-01-02 00:00:00' ORDER BY time DESC",
        5,
    ),
];

#[test]
fn replicas_keep_the_top_k_and_answer_as_the_whole_order_would() {
    // Idle replicas flush after 20 s: the queries start while the last rows are in memory.
    let cluster = LocalCluster::start_with(&["--set", "flushIdleTime=20000"]);
    create_seed_table(&cluster);
    let rt = runtime();
    let data = Data::connect(&cluster);
    let append = |seq: u64, ids: std::ops::Range<i32>, day: i64| {
        let ids: Vec<i32> = ids.collect();
        rt.block_on(
            data.client
                .append("dfs://stock", "stock", 1, seq, &seed_rows(&ids, day)),
        )
        .unwrap_or_else(|e| panic!("append {seq}: {e}"));
    };
    // Four days of 2,000 rows in files; then later rows of three days in memory.
    for day in 0..4 {
        append(day as u64 + 1, 0..2_000, day);
    }
    wait_all_flushed(&rt, &data, Duration::from_secs(60));
    append(5, 5_000..5_500, 1);
    append(6, 2_000..2_500, 3);
    append(7, 2_000..2_300, 2);

    let answered = || datanodes_sample(&data, "shoal_scan_answer_rows_total", &[]);
    for (q, k) in QUERIES {
        let q = q.replace("FROM t", &format!("FROM {T}"));
        let Value::Array(all) = sql(&cluster, &q) else {
            panic!("{q}: not rows");
        };
        let explain = sql(&cluster, &format!("EXPLAIN {q} LIMIT {k}")).to_string();
        assert!(explain.contains(&format!("top_k={k} by [")), "{explain}");
        let before = answered();
        let top = sql(&cluster, &format!("{q} LIMIT {k}"));
        let sent = answered() - before;
        assert_eq!(
            top,
            Value::Array(all[..k.min(all.len())].to_vec()),
            "{q} LIMIT {k}"
        );
        // Four chunks, each at most k rows.
        assert!(
            sent <= 4.0 * k as f64,
            "{q} LIMIT {k}: {sent} rows answered"
        );
        let explain = sql(&cluster, &format!("EXPLAIN {q} LIMIT {k}")).to_string();
        assert!(explain.contains(&format!("top_k={k} by [")), "{explain}");
    }
    // Without a LIMIT nothing is pushed: every row.
    let explain = sql(
        &cluster,
        &format!("EXPLAIN SELECT id FROM {T} ORDER BY time"),
    )
    .to_string();
    assert!(!explain.contains("top_k"), "{explain}");
}
