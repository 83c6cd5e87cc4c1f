//! SQL over the distributed table through `shoal sql` (Arrow Flight SQL on the data nodes,
//! DataFusion underneath): aggregates, filters, ordering, partition pruning seen in EXPLAIN,
//! the system tables, the same answers with a machine down, clear errors.

use std::collections::BTreeMap;

use arrow::array::AsArray;
use serde_json::{Value, json};

use crate::data::{Data, create_seed_table, runtime, seed_rows};
use crate::harness::{LocalCluster, stderr, stdout};
use crate::metrics::{get, http_addr, sample};

pub fn sql(cluster: &LocalCluster, q: &str) -> Value {
    let out = cluster.run(&["sql", q, "--json"]);
    assert!(out.status.success(), "{q}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{q}: {e}: {}", stdout(&out)))
}

/// Runs a statement that must be refused; answers what `shoal sql` said.
pub fn sql_refused(cluster: &LocalCluster, q: &str) -> String {
    let out = cluster.run(&["sql", q]);
    assert!(
        !out.status.success(),
        "{q} was not refused: {}",
        stdout(&out)
    );
    stderr(&out)
}

/// 4 days × 25 rows: ids 1..=100, day = (id - 1) / 25; a chunk per day.
async fn append_four_days(data: &Data) {
    for day in 0..4i64 {
        let ids: Vec<i32> = (1..=25).map(|k| (day * 25 + k) as i32).collect();
        let seq = day as u64 + 1;
        data.client
            .append("dfs://stock", "stock", 1, seq, &seed_rows(&ids, day))
            .await
            .unwrap();
    }
}

#[test]
fn queries_aggregate_filter_prune_and_survive_a_machine_down() {
    let cluster = LocalCluster::start();
    create_seed_table(&cluster);
    let rt = runtime();
    let data = Data::connect(&cluster);
    rt.block_on(append_four_days(&data));

    let count = r#"SELECT count(*) AS n, min(id) AS lo, max(id) AS hi FROM "dfs://stock".stock"#;
    assert_eq!(
        sql(&cluster, count),
        json!([{"n": 100, "lo": 1, "hi": 100}])
    );
    let by_name_sql = r#"SELECT name, count(*) AS n FROM "dfs://stock".stock WHERE id > 50 GROUP BY name ORDER BY name LIMIT 3"#;
    let by_name = sql(&cluster, by_name_sql);
    assert_eq!(
        by_name,
        json!([{"name": "Amazon", "n": 10}, {"name": "Apple", "n": 10}, {"name": "Google", "n": 10}])
    );
    let one_day = r#"SELECT count(*) AS n FROM "dfs://stock".stock WHERE time >= TIMESTAMP '2023-01-02 00:00:00' AND time < TIMESTAMP '2023-01-03 00:00:00'"#;
    assert_eq!(sql(&cluster, one_day), json!([{"n": 25}]));
    // Partition pruning: one of the four chunks is read.
    let out = cluster.run(&["sql", &format!("EXPLAIN {one_day}")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("chunks=1 of 4"), "{}", stdout(&out));
    // A filter on any column goes to the replicas, which send only the rows it keeps (the
    // answer above counts them after DataFusion applied it once more).
    let out = cluster.run(&["sql", &format!("EXPLAIN {}", by_name_sql)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("filters=[") && stdout(&out).contains("id > 50"),
        "{}",
        stdout(&out)
    );

    // System tables: the seed's checks.
    let nodes = sql(&cluster, "SELECT node, version FROM cluster.nodes");
    assert_eq!(nodes.as_array().unwrap().len(), 9, "{nodes}");
    let not_complete = sql(
        &cluster,
        "SELECT * FROM cluster.chunks WHERE state <> 'COMPLETE'",
    );
    assert_eq!(not_complete, json!([]));
    let chunks = sql(
        &cluster,
        r#"SELECT path, "rows", checksums FROM cluster.chunks"#,
    );
    for c in chunks.as_array().unwrap() {
        assert_eq!(c["rows"], 25, "{c}");
        let sums: Vec<&str> = c["checksums"]
            .as_str()
            .unwrap()
            .split(',')
            .map(|s| s.split_once('=').unwrap().1)
            .collect();
        assert_eq!(sums.len(), 2, "{c}");
        assert_eq!(sums[0], sums[1], "replicas differ: {c}");
    }
    let config = sql(
        &cluster,
        "SELECT node, value FROM cluster.config WHERE name = 'chunkMetaDir'",
    );
    assert_eq!(config.as_array().unwrap().len(), 3, "{config}");
    let out = cluster.run(&["chunks", "--not-complete"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Bad SQL and unknown tables: clear errors.
    let out = cluster.run(&["sql", r#"SELECT nope FROM "dfs://stock".stock"#]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
    let out = cluster.run(&["sql", "SELEC 1"]);
    assert!(!out.status.success());
    assert!(!stderr(&out).is_empty());

    // A machine down: every chunk still has an in-sync replica, the answer is the same.
    let host = cluster.hosts[2].clone();
    let out = cluster.run(&["host", "stop", &host]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        sql(&cluster, count),
        json!([{"n": 100, "lo": 1, "hi": 100}])
    );
    let out = cluster.run(&["host", "start", &host]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A query past `memLimitOfQueryResult` fails alone with a clear error; the node goes on
/// answering, and a query within the limit (or one that spills) still gets the right answer.
#[test]
fn a_query_over_its_memory_limit_fails_alone_and_the_node_goes_on() {
    // About 2 MiB per query.
    let cluster = LocalCluster::start_with(&["--set", "memLimitOfQueryResult=0.002"]);
    create_seed_table(&cluster);
    let rt = runtime();
    let data = Data::connect(&cluster);
    const ROWS: i32 = 200_000;
    rt.block_on(async {
        for (seq, first) in (0..ROWS).step_by(20_000).enumerate() {
            let ids: Vec<i32> = (first + 1..=first + 20_000).collect();
            data.client
                .append(
                    "dfs://stock",
                    "stock",
                    1,
                    seq as u64 + 1,
                    &seed_rows(&ids, 0),
                )
                .await
                .unwrap();
        }
    });
    // A hash join builds a table of every row of one side in memory, which cannot spill.
    let said = sql_refused(
        &cluster,
        r#"SELECT count(*) FROM "dfs://stock".stock a JOIN "dfs://stock".stock b ON a.id = b.id AND a.name = b.name"#,
    );
    assert!(
        said.contains("Resources exhausted") && said.contains("memLimitOfQueryResult"),
        "{said}"
    );
    // The node is still up and answers what fits: an aggregate, and the top rows of a sort.
    assert_eq!(
        sql(&cluster, r#"SELECT count(*) AS n FROM "dfs://stock".stock"#),
        json!([{"n": ROWS}])
    );
    assert_eq!(
        sql(
            &cluster,
            r#"SELECT id FROM "dfs://stock".stock ORDER BY id DESC LIMIT 2"#
        ),
        json!([{"id": ROWS}, {"id": ROWS - 1}])
    );
}

/// A data node coordinating a query reads the replicas it holds in sync itself, in-process,
/// and only the other chunks over gRPC; a count alone (answered from row counts) agrees with
/// the rows whichever node coordinates.
#[test]
fn a_coordinator_reads_its_own_replicas_in_process_and_the_rest_over_grpc() {
    let cluster = LocalCluster::start();
    create_seed_table(&cluster);
    let rt = runtime();
    let data = Data::connect(&cluster);
    rt.block_on(append_four_days(&data));
    let chunks = rt.block_on(data.chunks());
    assert_eq!(chunks.len(), 4);
    // (local, grpc) chunk scans each data node served so far.
    let scans = || -> BTreeMap<String, (f64, f64)> {
        data.datanodes
            .iter()
            .map(|(alias, addr)| {
                let (code, text) = get(&http_addr(addr), "/metrics");
                assert_eq!(code, 200, "{alias}");
                let via = |v: &str| sample(&text, "shoal_chunk_scans_total", &[v]);
                (alias.clone(), (via(r#"via="local""#), via(r#"via="grpc""#)))
            })
            .collect()
    };
    let query = |addr: &str, q: &str| -> Vec<i64> {
        let (_, batches) = rt
            .block_on(async { shoal_query::query(data.channels.get(addr).unwrap(), q).await })
            .unwrap();
        assert_eq!(
            batches.iter().map(|b| b.num_rows()).sum::<usize>(),
            1,
            "{q}"
        );
        let b = batches.iter().find(|b| b.num_rows() == 1).unwrap();
        b.columns()
            .iter()
            .map(|c| {
                let c = arrow::compute::cast(c, &arrow::datatypes::DataType::Int64).unwrap();
                c.as_primitive::<arrow::datatypes::Int64Type>().value(0)
            })
            .collect()
    };
    for (alias, addr) in &data.datanodes {
        let before = scans();
        let summary =
            r#"SELECT count(*) AS n, min(id) AS lo, max(id) AS hi FROM "dfs://stock".stock"#;
        assert_eq!(query(addr, summary), [100, 1, 100], "through {alias}");
        let count = r#"SELECT count(*) AS n FROM "dfs://stock".stock"#;
        assert_eq!(query(addr, count), [100], "through {alias}");
        let after = scans();

        let held = chunks
            .iter()
            .filter(|c| c.replicas.iter().any(|r| r.node == *alias && r.in_sync))
            .count();
        assert!(held > 0, "{alias} holds no chunk: {chunks:?}");
        let (local, grpc) = (
            after[alias].0 - before[alias].0,
            after[alias].1 - before[alias].1,
        );
        assert_eq!(
            local,
            2.0 * held as f64,
            "{alias} read its own replicas in-process"
        );
        assert_eq!(
            grpc, 0.0,
            "{alias} was not called over gRPC for its own replicas"
        );
        let elsewhere: f64 = after
            .iter()
            .filter(|(a, _)| *a != alias)
            .map(|(a, (l, g))| {
                assert_eq!(*l, before[a].0, "{a} coordinated nothing");
                g - before[a].1
            })
            .sum();
        assert_eq!(
            elsewhere,
            2.0 * (chunks.len() - held) as f64,
            "through {alias}"
        );
    }
}
