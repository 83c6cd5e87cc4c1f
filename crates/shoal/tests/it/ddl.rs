//! The seed's database and table, created with DolphinDB-style SQL DDL through the controllers.

use crate::harness::{LocalCluster, stderr, stdout};

const CREATE_DB: &str =
    r#"CREATE DATABASE "dfs://stock" PARTITIONED BY VALUE(2023.01.01..2023.01.10), ENGINE='TSDB'"#;
const CREATE_TABLE: &str = r#"create table "dfs://stock"."stock"(time TIMESTAMP, name SYMBOL, id INT) partitioned by time, sortColumns=[`name], keepDuplicates=ALL"#;

fn json(cluster: &LocalCluster, sql: &str) -> serde_json::Value {
    let out = cluster.run(&["sql", sql, "--json"]);
    assert!(out.status.success(), "{sql}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_seed_database_and_table_are_created_listed_refused_twice_and_dropped() {
    let cluster = LocalCluster::start();
    assert_eq!(
        json(&cluster, CREATE_DB)["message"],
        "created database dfs://stock"
    );
    assert_eq!(
        json(&cluster, CREATE_TABLE)["message"],
        "created table dfs://stock.stock"
    );

    let dbs = json(&cluster, "SHOW DATABASES");
    assert_eq!(dbs[0]["database"], "dfs://stock");
    assert_eq!(dbs[0]["engine"], "TSDB");
    assert_eq!(
        dbs[0]["partitioning"],
        "VALUE(2023.01.01..2023.01.10, 10 initial)"
    );
    let tables = json(&cluster, r#"SHOW TABLES FROM "dfs://stock""#);
    assert_eq!(tables[0]["table"], "stock");
    assert_eq!(tables[0]["columns"], "time TIMESTAMP, name SYMBOL, id INT");
    assert_eq!(tables[0]["partition column"], "time");
    assert_eq!(tables[0]["sort columns"], "name");

    // Refusals name the problem and change nothing.
    let out = cluster.run(&["sql", CREATE_DB]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    let out = cluster.run(&[
        "sql",
        r#"create table "dfs://nope".t(x INT) partitioned by x"#,
    ]);
    assert!(
        stderr(&out).contains("`dfs://nope` does not exist"),
        "{}",
        stderr(&out)
    );
    let out = cluster.run(&[
        "sql",
        r#"create table "dfs://stock".t2(x INT) partitioned by x"#,
    ]);
    assert!(
        stderr(&out).contains("partitioned by Date"),
        "{}",
        stderr(&out)
    );
    let out = cluster.run(&[
        "sql",
        r#"create table "dfs://stock".t3(x DECIMAL) partitioned by x"#,
    ]);
    assert!(
        stderr(&out).contains("unknown type `DECIMAL`"),
        "{}",
        stderr(&out)
    );
    let out = cluster.run(&["sql", "SELECT 1"]);
    assert!(stderr(&out).contains("only DDL"), "{}", stderr(&out));
    let tables = json(&cluster, r#"SHOW TABLES FROM "dfs://stock""#);
    assert_eq!(tables.as_array().unwrap().len(), 1, "{tables}");

    // The table view, then dropping.
    let out = cluster.run(&["sql", "SHOW DATABASES"]);
    assert!(stdout(&out).contains("dfs://stock"), "{}", stdout(&out));
    assert_eq!(
        json(&cluster, r#"DROP TABLE "dfs://stock"."stock""#)["message"],
        "dropped table dfs://stock.stock"
    );
    assert_eq!(
        json(&cluster, r#"DROP DATABASE "dfs://stock""#)["message"],
        "dropped database dfs://stock"
    );
    assert_eq!(json(&cluster, "SHOW DATABASES"), serde_json::json!([]));
}
