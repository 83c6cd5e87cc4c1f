//! `keepDuplicates=FIRST|LAST` (DolphinDB's TSDB semantics): a query sees exactly one row per
//! sort key, the first or the last written, whether the rows are in memory, in several chunk
//! files or compacted into one; `ALL` keeps every row. Bad DDL is refused and changes nothing.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::chunk_files::wait_all_flushed;
use crate::data::{Data, JAN1_MS, runtime};
use crate::harness::{LocalCluster, stderr};
use crate::query::{sql, sql_refused};

const DB: &str = "dfs://dedup";
/// Sort keys `k` in 0..KEYS: name `NAMES[k % 5]`, time 2023-01-01 plus k ms (one partition).
const KEYS: i32 = 100;
/// Every append writes every key once, with id `append * 1000 + k`.
const APPENDS: i32 = 6;

fn create(cluster: &LocalCluster, sql: &str) {
    let out = cluster.run(&["sql", sql]);
    assert!(out.status.success(), "{sql}: {}", stderr(&out));
}

fn table_sql(table: &str, options: &str) -> String {
    format!(
        r#"create table "{DB}"."{table}"(time TIMESTAMP, name SYMBOL, id INT) partitioned by time{options}"#
    )
}

/// Count, distinct keys, smallest, largest and sum of ids of a table.
fn summary(cluster: &LocalCluster, table: &str) -> Value {
    sql(
        cluster,
        &format!(
            r#"SELECT count(*) AS n, count(DISTINCT time) AS keys, min(id) AS lo, max(id) AS hi, sum(id) AS total FROM "{DB}".{table}"#
        ),
    )
}

/// What a table holds once appends `1..=appends` are written.
fn expected(table: &str, appends: i32) -> Value {
    let ids: Vec<i64> = match table {
        "first" => (0..KEYS).map(|k| 1000 + i64::from(k)).collect(),
        "last" => (0..KEYS)
            .map(|k| i64::from(appends) * 1000 + i64::from(k))
            .collect(),
        _ => (1..=appends)
            .flat_map(|a| (0..KEYS).map(move |k| i64::from(a) * 1000 + i64::from(k)))
            .collect(),
    };
    json!([{
        "n": ids.len(),
        "keys": KEYS,
        "lo": ids.iter().min(),
        "hi": ids.iter().max(),
        "total": ids.iter().sum::<i64>(),
    }])
}

#[test]
fn first_and_last_keep_one_row_per_key_in_memory_across_files_and_after_compaction() {
    let cluster = LocalCluster::start_with(&["--set", "flushIdleTime=2000"]);
    create(
        &cluster,
        &format!(r#"CREATE DATABASE "{DB}" PARTITIONED BY VALUE(2023.01.01..2023.01.02)"#),
    );

    // Refused, creating nothing: no sort key to be equal on, an unknown value.
    let err = sql_refused(&cluster, &table_sql("bad", ", keepDuplicates=LAST"));
    assert!(
        err.contains("keepDuplicates=LAST needs sortColumns"),
        "{err}"
    );
    let err = sql_refused(
        &cluster,
        &table_sql("bad", ", sortColumns=[`name], keepDuplicates=NEWEST"),
    );
    assert!(
        err.contains("unknown keepDuplicates value `NEWEST`"),
        "{err}"
    );

    let tables = ["first", "last", "all"];
    for t in tables {
        let keep = t.to_uppercase();
        create(
            &cluster,
            &table_sql(t, &format!(", sortColumns=[`name], keepDuplicates={keep}")),
        );
    }
    let shown = sql(&cluster, &format!(r#"SHOW TABLES FROM "{DB}""#));
    let keeps: Vec<(&str, &str)> = shown
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["table"].as_str().unwrap(),
                r["keep duplicates"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        keeps,
        [("all", "ALL"), ("first", "FIRST"), ("last", "LAST")]
    );

    let rt = runtime();
    let data = Data::connect(&cluster);
    let append = |a: i32| {
        rt.block_on(async {
            for (i, t) in tables.iter().enumerate() {
                let ids: Vec<i32> = (0..KEYS).map(|k| a * 1000 + k).collect();
                let batch = shoal_client::seed::rows(&ids, |id| JAN1_MS + i64::from(id % 1000));
                let seq = (a as u64) * 10 + i as u64;
                let r = data.client.append(DB, t, 7, seq, &batch).await.unwrap();
                assert_eq!(r.rows, KEYS as u64);
            }
        });
    };
    let check = |appends: i32, when: &str| {
        for t in tables {
            let want = expected(t, appends);
            assert_eq!(
                summary(&cluster, t),
                want,
                "{t} after {appends} appends, {when}"
            );
            // A count alone reads no column: from row counts where every row is kept, never
            // from the files of a table whose files still hold duplicates.
            let count = sql(
                &cluster,
                &format!(r#"SELECT count(*) AS n FROM "{DB}".{t}"#),
            );
            assert_eq!(
                count,
                json!([{"n": want[0]["n"]}]),
                "{t} after {appends} appends, {when}"
            );
        }
        // Duplicates go before the filters: the table holds no older row for a filter on
        // another column to find.
        let older = sql(
            &cluster,
            &format!(
                r#"SELECT count(*) AS n FROM "{DB}".last WHERE id < {}"#,
                appends * 1000
            ),
        );
        assert_eq!(older, json!([{"n": 0}]), "{when}");
        let newer = sql(
            &cluster,
            &format!(r#"SELECT count(*) AS n FROM "{DB}".first WHERE id >= 2000"#),
        );
        assert_eq!(newer, json!([{"n": 0}]), "{when}");
    };

    // Three appends, then each replica flushes its rows into a file.
    for a in 1..=3 {
        append(a);
    }
    check(3, "just written");
    wait_all_flushed(&rt, &data, Duration::from_secs(60));
    check(3, "in one file per replica");

    // Two more appends in a second file, one more (queried at once, within flushIdleTime, so
    // normally still in memory): every key is in both files and in memory.
    for a in 4..=5 {
        append(a);
    }
    wait_all_flushed(&rt, &data, Duration::from_secs(60));
    append(APPENDS);
    check(APPENDS, "in two files and in memory");
    rt.block_on(data.assert_replicas_agree());

    // Idle for 10 × flushIdleTime, each replica merges its three files into one.
    wait_all_flushed(&rt, &data, Duration::from_secs(60));
    wait_compacted(&cluster, Duration::from_secs(90));
    check(APPENDS, "compacted");
    rt.block_on(crate::data::wait_all_complete_and_identical(
        &data,
        Duration::from_secs(30),
    ));
    rt.block_on(data.assert_replicas_agree());
}

/// Waits until every replica of the cluster holds exactly one chunk file.
fn wait_compacted(cluster: &LocalCluster, within: Duration) {
    let started = Instant::now();
    loop {
        let counts: Vec<usize> = crate::chunk_files::replica_dirs(&cluster.dir)
            .iter()
            .map(|d| std::fs::read_dir(d.join("f")).map_or(0, Iterator::count))
            .collect();
        if !counts.is_empty() && counts.iter().all(|&n| n == 1) {
            return;
        }
        assert!(
            started.elapsed() < within,
            "replicas not compacted: {counts:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
