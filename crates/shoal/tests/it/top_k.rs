//! `ORDER BY … LIMIT k` kept by the replicas (`ScanChunkRequest.top_k`): the same rows as the
//! whole order cut after k, from chunk files and unflushed rows, with filters, in either
//! direction, by ranked (time, id) and unranked (name) columns; each replica answers at most k
//! rows.

use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;

use crate::chunk_files::wait_all_flushed;
use crate::data::{Data, create_seed_table, runtime, seed_rows};
use crate::harness::LocalCluster;
use crate::metrics::datanodes_sample;

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

    // A coordinator holding as few chunks as any: the others' replicas answer over ScanChunk.
    let chunks = rt.block_on(data.chunks());
    let held = |alias: &str| {
        let holds = |c: &&shoal_proto::ChunkInfo| c.replicas.iter().any(|r| r.node == alias);
        chunks.iter().filter(holds).count()
    };
    let (_, addr) = data
        .datanodes
        .iter()
        .min_by_key(|(alias, _)| held(alias))
        .unwrap();
    let run = |q: &str| -> RecordBatch {
        let (schema, batches) = rt
            .block_on(shoal_query::query(data.channels.get(addr).unwrap(), q))
            .unwrap_or_else(|e| panic!("{q}: {e}"));
        concat_batches(&schema, &batches).unwrap()
    };
    let answered = || datanodes_sample(&data, "shoal_scan_answer_rows_total", &[]);
    let sent = || datanodes_sample(&data, "shoal_scan_sent_bytes_total", &[]);
    let sent_before = sent();
    for (q, k) in QUERIES {
        let q = q.replace("FROM t", &format!("FROM {T}"));
        let all = run(&q);
        let want = all.slice(0, k.min(all.num_rows()));
        let before = answered();
        let top = run(&format!("{q} LIMIT {k}"));
        let answered = answered() - before;
        assert_eq!(pretty(&top), pretty(&want), "{q} LIMIT {k}");
        // Four chunks, each at most k rows.
        assert!(
            answered <= 4.0 * k as f64,
            "{q} LIMIT {k}: {answered} rows answered"
        );
        let explain = pretty(&run(&format!("EXPLAIN {q} LIMIT {k}")));
        assert!(explain.contains(&format!("top_k={k} by [")), "{explain}");
    }
    assert!(sent() > sent_before, "no replica answered over ScanChunk");
    // Without a LIMIT nothing is pushed: every row.
    let explain = pretty(&run(&format!("EXPLAIN SELECT id FROM {T} ORDER BY time")));
    assert!(!explain.contains("top_k"), "{explain}");
}

fn pretty(batch: &RecordBatch) -> String {
    arrow::util::pretty::pretty_format_batches(std::slice::from_ref(batch))
        .unwrap()
        .to_string()
}
