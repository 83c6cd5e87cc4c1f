//! The seed's DolphinDB commands, typed as the runbook has them, through `shoal sql` and
//! `shoal script FILE`: answers in the runbook's shapes, the seed's DDL making the table the
//! SQL DDL makes, the runbook's checks before and after a rolling upgrade, and scripts
//! outside the subset refused by name without changing anything.

use std::time::Duration;

use serde_json::{Value, json};

use crate::data::{CREATE_TABLE, Data, runtime, seed_rows, wait_all_complete_and_identical};
use crate::harness::{LocalCluster, leader, next_binary, nodes, shoal, stderr, stdout};
use crate::query::{sql, sql_refused};
use crate::upgrade::{package, upgrade, version_of};

/// The seed's DDL, its three lines as the runbook has them.
const SEED_DDL: &str = "db = database(\"dfs://stock\",VALUE,2023.01.01..2023.01.10,,'TSDB')
tmp = table(1:0,[`time,`name,`id],[TIMESTAMP,SYMBOL,INT])
pt = db.createPartitionedTable(tmp,`stock,`time,,`name,ALL)
";

const CHUNKS_NOT_COMPLETE: &str =
    r#"select * from rpc(getControllerAlias(), getClusterChunksStatus) where state != "COMPLETE""#;

/// `shoal sql TEXT` as a table, trimmed: what an operator reads.
fn plain(cluster: &LocalCluster, text: &str) -> String {
    let out = cluster.run(&["sql", text]);
    assert!(out.status.success(), "{text}: {}", stderr(&out));
    stdout(&out).trim().to_owned()
}

#[test]
fn the_seeds_commands_run_as_typed() {
    let cluster = LocalCluster::start();
    let status = cluster.status();
    let mut data_nodes: Vec<String> = nodes(&status)
        .iter()
        .filter(|n| n["mode"] == "datanode")
        .map(|n| n["alias"].as_str().unwrap().to_owned())
        .collect();
    data_nodes.sort();

    // version(): "0.x.y yyyy.mm.dd", as `shoal --version` prints it.
    let version = plain(&cluster, "version()");
    let binary = stdout(&shoal(&["--version"]));
    assert_eq!(binary.trim(), format!("shoal {version}"));
    assert_eq!(sql(&cluster, "version()"), json!(version));

    // pnodeRun(version): one `node, value` row per data node.
    let rows = sql(&cluster, "pnodeRun(version)");
    let expected: Vec<Value> = data_nodes
        .iter()
        .map(|n| json!({"node": n, "value": version}))
        .collect();
    assert_eq!(rows, json!(expected));

    // pnodeRun(getConfig{`chunkMetaDir}): each data node's metadata directory, which exists.
    let rows = sql(&cluster, "pnodeRun(getConfig{`chunkMetaDir})");
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), data_nodes.len(), "{rows:?}");
    for (row, node) in rows.iter().zip(&data_nodes) {
        assert_eq!(row["node"], json!(node));
        let dir = row["value"].as_str().unwrap();
        assert!(std::path::Path::new(dir).is_dir(), "{row}");
    }
    let same = sql(
        &cluster,
        "SELECT node, value FROM cluster.config WHERE name = 'chunkMetaDir' ORDER BY node",
    );
    assert_eq!(json!(rows), same);

    // rpc(getControllerAlias(), getConfig{`dfsMetaDir}): the leader's metadata directory.
    let dfs_meta = plain(&cluster, "rpc(getControllerAlias(),getConfig{`dfsMetaDir})");
    let leader = leader(&status).unwrap();
    assert_eq!(plain(&cluster, "getControllerAlias()"), leader);
    let leaders = sql(
        &cluster,
        &format!(
            "SELECT value FROM cluster.config WHERE node = '{leader}' AND name = 'dfsMetaDir'"
        ),
    );
    assert_eq!(leaders, json!([{ "value": dfs_meta }]));

    // The seed's DDL, as a script file, and the same through `shoal sql -f`.
    let file = cluster.dir.join("seed.dos");
    std::fs::write(&file, SEED_DDL).unwrap();
    let out = cluster.run(&["script", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        "created database dfs://stock\ncreated table dfs://stock.stock"
    );
    let out = cluster.run(&["sql", "-f", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));

    // Exactly what the SQL DDL makes: the same table in a database made by SQL.
    sql(
        &cluster,
        &crate::data::CREATE_DB.replace("dfs://stock", "dfs://by_sql"),
    );
    sql(
        &cluster,
        &CREATE_TABLE.replace("dfs://stock", "dfs://by_sql"),
    );
    let dbs = sql(&cluster, "SHOW DATABASES");
    assert_eq!(dbs[0]["database"], "dfs://by_sql");
    assert_eq!(dbs[1]["database"], "dfs://stock");
    assert_eq!(dbs[0]["partitioning"], dbs[1]["partitioning"]);
    assert_eq!(dbs[0]["engine"], dbs[1]["engine"]);
    assert_eq!(
        sql(&cluster, r#"SHOW TABLES FROM "dfs://stock""#),
        sql(&cluster, r#"SHOW TABLES FROM "dfs://by_sql""#)
    );
    assert_eq!(
        sql(
            &cluster,
            r#"[existsDatabase("dfs://stock"), existsTable("dfs://stock", `stock), existsTable("dfs://stock", `nope)]"#
        ),
        json!([{"value": true}, {"value": true}, {"value": false}])
    );

    // Rows in, then the runbook's check: nothing that is not COMPLETE.
    let rt = runtime();
    let data = Data::connect(&cluster);
    rt.block_on(async {
        for day in 0..3i64 {
            let ids: Vec<i32> = (1..=10).map(|k| (day * 10 + k) as i32).collect();
            data.client
                .append(
                    "dfs://stock",
                    "stock",
                    1,
                    day as u64 + 1,
                    &seed_rows(&ids, day),
                )
                .await
                .unwrap();
        }
        wait_all_complete_and_identical(&data, Duration::from_secs(30)).await;
    });
    assert_eq!(sql(&cluster, CHUNKS_NOT_COMPLETE), json!([]));
    let all = sql(
        &cluster,
        "select chunkId, file, state from rpc(getControllerAlias(), getClusterChunksStatus) order by file",
    );
    let files: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["file"].as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        [
            "/stock/20230101/stock",
            "/stock/20230102/stock",
            "/stock/20230103/stock"
        ]
    );
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .all(|c| c["state"] == "COMPLETE")
    );

    // select over the DFS table, through loadTable and through a variable.
    assert_eq!(
        sql(
            &cluster,
            r#"select count(*) as n, max(id) as hi from loadTable("dfs://stock", "stock") where id > 25"#
        ),
        json!([{"n": 5, "hi": 30}])
    );
    assert_eq!(
        sql(
            &cluster,
            "pt = loadTable(\"dfs://stock\", `stock)\nselect id from pt where time >= 2023.01.03T00:00:00.028 order by id",
        ),
        json!([{"id": 28}, {"id": 29}, {"id": 30}])
    );
    // Plain SQL is answered as before.
    assert_eq!(
        sql(&cluster, r#"SELECT count(*) AS n FROM "dfs://stock".stock"#),
        json!([{"n": 30}])
    );
}

/// The runbook around `shoal upgrade`: its checks before, the upgrade, its checks after
/// (every data node on the new version, no chunk that is not COMPLETE, the rows all there).
#[test]
fn the_runbooks_checks_hold_before_and_after_a_rolling_upgrade() {
    let next = next_binary();
    let (old, new) = (
        version_of(std::path::Path::new(crate::harness::shoal_bin())),
        version_of(&next),
    );
    let cluster = LocalCluster::start();
    let file = cluster.dir.join("seed.dos");
    std::fs::write(&file, SEED_DDL).unwrap();
    let out = cluster.run(&["script", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cluster.run(&["write", "--count", "40", "--rate", "200"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rt = runtime();
    rt.block_on(wait_all_complete_and_identical(
        &Data::connect(&cluster),
        Duration::from_secs(30),
    ));
    let on = |version: &str| -> Vec<String> {
        let rows = sql(&cluster, "pnodeRun(version)");
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let value = r["value"].as_str().unwrap();
                assert!(value.starts_with(&format!("{version} ")), "{rows}");
                r["node"].as_str().unwrap().to_owned()
            })
            .collect()
    };
    let count = r#"select count(*) as n from loadTable("dfs://stock", `stock)"#;
    assert_eq!(on(&old).len(), 3);
    assert_eq!(sql(&cluster, CHUNKS_NOT_COMPLETE), json!([]));
    assert_eq!(sql(&cluster, count), json!([{ "n": 40 }]));

    let tmp = tempfile::tempdir().unwrap();
    let pkg = package(tmp.path(), &next);
    let out = upgrade(
        &cluster,
        &["--package", pkg.to_str().unwrap(), "--probe-rate", "0"],
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    assert_eq!(on(&new).len(), 3);
    assert_eq!(sql(&cluster, CHUNKS_NOT_COMPLETE), json!([]));
    assert_eq!(sql(&cluster, count), json!([{ "n": 40 }]));
    assert!(plain(&cluster, "version()").starts_with(&format!("{new} ")));
}

#[test]
fn scripts_outside_the_subset_are_refused_by_name_and_change_nothing() {
    let cluster = LocalCluster::start();
    for (script, says) in [
        (
            "db = database(\"dfs://x\",VALUE,1..3)\nsubmitJob(`a, `b, run)",
            "function `submitJob` is not supported in Shoal's DolphinDB script; supported: ",
        ),
        (
            "pnodeRun(getClusterChunksStatus)",
            "pnodeRun with `getClusterChunksStatus` is not supported",
        ),
        (
            "db = database(\"dfs://x\",HASH,[INT, 3])",
            "HASH partitioning is not supported in Shoal's DolphinDB script; supported: VALUE partitioning",
        ),
        (
            "for (i in 1..3) { print(i) }",
            "`for` loops is not supported",
        ),
        ("x = (1", "syntax error at line 1, column 7: expected `)`"),
    ] {
        let said = sql_refused(&cluster, script);
        assert!(
            said.contains(says),
            "{script}\n  said: {said}\n  want: {says}"
        );
        assert!(!said.contains("DataFusion"), "{said}");
    }
    assert_eq!(sql(&cluster, "SHOW DATABASES"), json!([]));
    // The SQL path's own errors are unchanged.
    let said = sql_refused(&cluster, r#"SELECT * FROM "dfs://nope".t"#);
    assert!(said.contains("dfs://nope"), "{said}");
}
