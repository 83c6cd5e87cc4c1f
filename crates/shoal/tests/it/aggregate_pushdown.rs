//! Aggregates computed partly on the replicas (`ChunkAggregateExec`): the same answers as when
//! every row travels to the coordinator, over many groups, NULLs, filters on any column, and
//! rows both in chunk files and still in the WAL/memtable; remote replicas send partial states
//! (checked by `shoal_scan_sent_bytes_total`), the coordinator aggregates its own chunks.

use std::time::Duration;

use arrow::array::{
    ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use arrow::util::pretty::pretty_format_batches;
use shoal_query::PUSH_AGGREGATES_HEADER;

use crate::chunk_files::wait_all_flushed;
use crate::data::{DAY_MS, Data, JAN1_MS, runtime};
use crate::harness::{LocalCluster, stderr};
use crate::metrics::datanodes_sample;

const DB: &str = "dfs://agg";
const CREATE: [&str; 2] = [
    r#"CREATE DATABASE "dfs://agg" PARTITIONED BY VALUE(2023.01.01..2023.01.10), ENGINE='TSDB'"#,
    r#"create table "dfs://agg"."trades"(time TIMESTAMP, sym SYMBOL, qty LONG, price DOUBLE) partitioned by time, sortColumns=[`sym], keepDuplicates=ALL"#,
];
const ROWS_PER_APPEND: i64 = 1_500;

/// Rows `first..first+ROWS_PER_APPEND` on `day`: 37 symbols, `qty` NULL every 7th row,
/// `price` NULL every 11th (halves, so that sums in any order are exact).
fn trades(first: i64, day: i64) -> RecordBatch {
    let ids: Vec<i64> = (first..first + ROWS_PER_APPEND).collect();
    let columns: Vec<ArrayRef> = vec![
        std::sync::Arc::new(TimestampMillisecondArray::from_iter_values(
            ids.iter().map(|i| JAN1_MS + day * DAY_MS + i),
        )),
        std::sync::Arc::new(StringArray::from_iter_values(
            ids.iter().map(|i| format!("s{}", i % 37)),
        )),
        std::sync::Arc::new(Int64Array::from_iter(
            ids.iter().map(|i| (i % 7 != 0).then_some(i % 100)),
        )),
        std::sync::Arc::new(Float64Array::from_iter(
            ids.iter().map(|i| (i % 11 != 0).then_some(*i as f64 * 0.5)),
        )),
    ];
    let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new(
            "time",
            arrow::datatypes::DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None),
            false,
        ),
        arrow::datatypes::Field::new("sym", arrow::datatypes::DataType::Utf8, true),
        arrow::datatypes::Field::new("qty", arrow::datatypes::DataType::Int64, true),
        arrow::datatypes::Field::new("price", arrow::datatypes::DataType::Float64, true),
    ]));
    RecordBatch::try_new(schema, columns).unwrap()
}

/// `q` with `FROM t` naming `table` of `dfs://agg`, run on the data node at `addr` with call
/// `headers`, printed.
fn query(
    rt: &tokio::runtime::Runtime,
    data: &Data,
    addr: &str,
    q: &str,
    table: &str,
    headers: &[(&str, &str)],
) -> String {
    let q = q.replace("FROM t", &format!(r#"FROM "dfs://agg".{table}"#));
    let (_, batches) = rt
        .block_on(shoal_query::query_with_headers(
            data.channels.get(addr).unwrap(),
            &q,
            headers,
        ))
        .unwrap_or_else(|e| panic!("{q}: {e}"));
    pretty_format_batches(&batches).unwrap().to_string()
}

/// Some replica holds rows not flushed yet (a loaded machine may flush them before the
/// comparisons start).
fn assert_some_in_memory(rt: &tokio::runtime::Runtime, data: &Data) {
    let in_memory = rt
        .block_on(data.positions())
        .values()
        .filter(|p| p.flushed_lsn < p.last_lsn)
        .count();
    assert!(
        in_memory > 0,
        "every row was in files before the comparisons started"
    );
}

/// The queries compared, each over the four days' chunks.
const QUERIES: [&str; 8] = [
    "SELECT count(*), count(qty), sum(qty), min(price), max(price), avg(price), min(time), max(time) FROM t",
    "SELECT sym, count(*) AS n, sum(qty), avg(price), avg(qty), min(qty), max(time) FROM t GROUP BY sym ORDER BY sym",
    "SELECT sym, count(price), max(price) FROM t WHERE qty > 50 GROUP BY sym ORDER BY sym",
    "SELECT qty, count(*), sum(price) FROM t GROUP BY qty ORDER BY qty NULLS FIRST",
    "SELECT sym, qty, count(*) FROM t WHERE price IS NULL AND sym IN ('s1', 's2', 's36') GROUP BY sym, qty ORDER BY sym, qty",
    "SELECT count(*), sum(qty) FROM t WHERE time >= TIMESTAMP '2023-01-02 00:00:00' AND qty BETWEEN 10 AND 20",
    // Not computed on the replicas (DISTINCT, an expression): the same answer all the same.
    "SELECT count(DISTINCT sym), sum(qty * 2) FROM t",
    "SELECT avg(price) FROM t WHERE sym = 'nope'",
];

#[test]
fn aggregates_pushed_to_the_replicas_answer_as_rows_shipped_would() {
    // Idle replicas flush after 20 s: the comparisons start while the last appends are still
    // in memory (checked below; a loaded machine may flush them before the last one ends).
    let cluster = LocalCluster::start_with(&["--set", "flushIdleTime=20000"]);
    for sql in CREATE {
        let out = cluster.run(&["sql", sql]);
        assert!(out.status.success(), "{sql}: {}", stderr(&out));
    }
    let rt = runtime();
    let data = Data::connect(&cluster);
    let append = |seq: u64, first: i64, day: i64| {
        rt.block_on(async {
            data.client
                .append(DB, "trades", 1, seq, &trades(first, day))
                .await
                .unwrap_or_else(|e| panic!("append {seq}: {e}"));
        });
    };
    // Four days in files, then more rows of three of them still in the WAL and memtable.
    for seq in 1..=8u64 {
        append(seq, seq as i64 * ROWS_PER_APPEND, seq as i64 % 4);
    }
    wait_all_flushed(&rt, &data, Duration::from_secs(60));
    for seq in 9..=11u64 {
        append(seq, seq as i64 * ROWS_PER_APPEND, seq as i64 % 3);
    }

    // A coordinator holding some chunks but not all: those it reads in-process it aggregates
    // itself, the others' replicas send partial states.
    let chunks = rt.block_on(data.chunks());
    let held = |alias: &str| {
        chunks
            .iter()
            .filter(|c| c.replicas.iter().any(|r| r.node == alias))
            .count()
    };
    let (_, addr) = data
        .datanodes
        .iter()
        .max_by_key(|(alias, _)| (1..chunks.len()).contains(&held(alias)))
        .unwrap();
    let addr = addr.clone();
    let states_sent = || {
        let states = [r#"answer="partial_aggregate""#];
        datanodes_sample(&data, "shoal_scan_sent_bytes_total", &states)
    };
    let before = states_sent();
    let run = |q: &str, headers: &[(&str, &str)]| query(&rt, &data, &addr, q, "trades", headers);
    assert_some_in_memory(&rt, &data);
    let off = [(PUSH_AGGREGATES_HEADER, "false")];
    for q in QUERIES {
        let rows = run(q, &off);
        let pushed = run(q, &[]);
        assert_eq!(pushed, rows, "{q}");
        assert!(rows.lines().count() > 4, "{q}: {rows}");
    }
    assert!(states_sent() > before, "no replica sent partial states");

    // EXPLAIN shows which way each went.
    let explain = |q: &str, headers: &[(&str, &str)]| run(&format!("EXPLAIN {q}"), headers);
    let grouped = explain(QUERIES[2], &[]);
    assert!(
        grouped.contains("ChunkAggregateExec: gby=[sym] aggr=[count(price), max(price)]")
            && grouped.contains("qty > 50"),
        "{grouped}"
    );
    assert!(!explain(QUERIES[2], &off).contains("ChunkAggregateExec"));
    for (i, q) in QUERIES.iter().enumerate() {
        let pushed = explain(q, &[]).contains("ChunkAggregateExec");
        assert_eq!(pushed, i != 6, "{q}");
    }
}

/// `batch` written again: the same keys (time, sym), other quantities.
fn revised(batch: &RecordBatch) -> RecordBatch {
    let qty = batch
        .column(2)
        .as_primitive::<arrow::datatypes::Int64Type>();
    let qty: Int64Array = qty.iter().map(|q| Some(q.unwrap_or(0) + 1_000)).collect();
    let mut columns = batch.columns().to_vec();
    columns[2] = std::sync::Arc::new(qty);
    RecordBatch::try_new(batch.schema(), columns).unwrap()
}

/// Answered from metadata (no GROUP BY, no filter): each chunk file's statistics plus the
/// rows still in memory, unless the table drops duplicates and the column is off its key.
const FROM_STATISTICS: [&str; 5] = [
    "SELECT min(time), max(time) FROM t",
    "SELECT count(*) FROM t",
    "SELECT count(*), count(qty), min(time), max(time), min(sym), max(sym), min(qty), max(qty) FROM t",
    // A float's statistics are not kept exactly: read.
    "SELECT count(price), min(price), max(price), max(time) FROM t",
    // A filter: read.
    "SELECT count(*), min(time), max(qty) FROM t WHERE sym = 's1'",
];

#[test]
fn counts_and_extremes_from_statistics_answer_as_rows_would() {
    let cluster = LocalCluster::start_with(&["--set", "flushIdleTime=20000"]);
    let create_last = r#"create table "dfs://agg"."latest"(time TIMESTAMP, sym SYMBOL, qty LONG, price DOUBLE) partitioned by time, sortColumns=[`sym], keepDuplicates=LAST"#;
    // A table of one chunk, answered the same way.
    let create_one = r#"create table "dfs://agg"."one"(time TIMESTAMP, sym SYMBOL, qty LONG, price DOUBLE) partitioned by time, sortColumns=[`sym], keepDuplicates=ALL"#;
    for sql in CREATE.into_iter().chain([create_last, create_one]) {
        let out = cluster.run(&["sql", sql]);
        assert!(out.status.success(), "{sql}: {}", stderr(&out));
    }
    let rt = runtime();
    let data = Data::connect(&cluster);
    let append = |table: &str, seq: u64, batch: &RecordBatch| {
        rt.block_on(data.client.append(DB, table, 1, seq, batch))
            .unwrap_or_else(|e| panic!("append {table} {seq}: {e}"));
    };
    // Two days in chunk files; then, in memory, new rows and (in `latest`) the first day's
    // rows again with other quantities, which replace the flushed ones.
    for (seq, day) in [(1, 0), (2, 1)] {
        let batch = trades(seq as i64 * ROWS_PER_APPEND, day);
        append("trades", seq, &batch);
        append("latest", seq, &batch);
    }
    append("one", 1, &trades(ROWS_PER_APPEND, 1));
    wait_all_flushed(&rt, &data, Duration::from_secs(60));
    append("one", 2, &trades(20 * ROWS_PER_APPEND, 1));
    let more = trades(10 * ROWS_PER_APPEND, 1);
    append("trades", 3, &more);
    append("latest", 3, &more);
    append("latest", 4, &revised(&trades(ROWS_PER_APPEND, 0)));

    let addr = data.datanodes.values().next().unwrap().clone();
    let answered = || datanodes_sample(&data, "shoal_scan_answer_rows_total", &[]);
    let run = |q: &str, table: &str, headers: &[(&str, &str)]| {
        query(&rt, &data, &addr, q, table, headers)
    };
    assert_some_in_memory(&rt, &data);
    let off = [(PUSH_AGGREGATES_HEADER, "false")];
    for table in ["trades", "latest", "one"] {
        for q in FROM_STATISTICS {
            assert_eq!(run(q, table, &[]), run(q, table, &off), "{table}: {q}");
        }
    }
    // The duplicates were dropped (the comparison above saw them), and stale maxima did not
    // survive them.
    let counts = run(FROM_STATISTICS[1], "latest", &[]);
    assert!(
        counts.contains(&format!("| {} ", 3 * ROWS_PER_APPEND)),
        "{counts}"
    );

    // Answered from statistics, the replicas produce a row per file and per chunk's memory,
    // not the 4,500 rows: a coordinator reading the rows itself would count them all.
    let before = answered();
    run(FROM_STATISTICS[0], "trades", &[]);
    let pushed = answered() - before;
    let before = answered();
    run(FROM_STATISTICS[0], "trades", &off);
    let read = answered() - before;
    assert!(pushed <= 10.0 && read >= 4_500.0, "{pushed} vs {read}");
    let before = answered();
    run(FROM_STATISTICS[0], "one", &[]);
    let pushed = answered() - before;
    assert!(pushed <= 4.0, "{pushed} rows answered for one chunk");

    // Where the statistics do not answer (a float's), the chunk is read instead: one chunk
    // scan, also when the coordinator holds it and first asked its replica for statistics.
    let chunks = rt.block_on(data.chunks());
    let one = chunks.iter().find(|c| c.table == "one").unwrap();
    let holder = &one.replicas[0].node;
    let at = data.datanodes[holder].clone();
    let scans = || datanodes_sample(&data, "shoal_chunk_scans_total", &[]);
    let before = scans();
    query(&rt, &data, &at, FROM_STATISTICS[3], "one", &[]);
    assert_eq!(
        scans() - before,
        1.0,
        "chunk scans of one chunk through {holder}"
    );
}
