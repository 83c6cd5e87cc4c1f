//! The seed's database and table, created with DolphinDB-style SQL DDL through the controllers.

use crate::data::{CREATE_DB, CREATE_TABLE};
use crate::harness::{LocalCluster, stderr, stdout};

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
    let out = cluster.run(&["sql", r#"SELECT count(*) FROM "dfs://stock".nope"#]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
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

/// What a coordinating data node will do before writing a new partition: ask the controllers
/// for the partition's chunk, which they create and place on the first request.
#[test]
fn chunks_are_placed_on_distinct_machines_once_and_avoid_a_stopped_machine() {
    let cluster = LocalCluster::start();
    json(&cluster, CREATE_DB);
    json(&cluster, CREATE_TABLE);
    let controllers = controllers(&cluster);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ensure =
        |keys: &[&str]| rt.block_on(controllers.ensure_chunks("dfs://stock", "stock", keys));

    let days = ["2023.01.01", "2023.01.02", "2023.01.03", "2026.11.24"];
    let chunks = ensure(&days).unwrap();
    assert_eq!(chunks.len(), 4);
    let machine_of = |addr: &str| addr.rsplit_once(':').unwrap().0.to_owned();
    let mut load = std::collections::BTreeMap::<String, usize>::new();
    for (c, day) in chunks.iter().zip(days) {
        assert_eq!(c.partition_key, day);
        assert_eq!(c.state, "CONSTRUCTING");
        assert_eq!(c.replicas.len(), 2, "{c:?}");
        assert_ne!(
            machine_of(&c.replicas[0].addr),
            machine_of(&c.replicas[1].addr),
            "{c:?}"
        );
        assert!(c.replicas.iter().all(|r| r.in_sync));
        for r in &c.replicas {
            *load.entry(r.node.clone()).or_default() += 1;
        }
    }
    assert_eq!(chunks[0].path, "/stock/20230101/stock");
    // 8 replicas over 3 data nodes, least loaded first: 3, 3, 2.
    assert!(load.values().all(|n| (2..=3).contains(n)), "{load:?}");

    // Asking again creates nothing: same ids, same replicas.
    let again = ensure(&["2026.11.24", "2023.01.01"]).unwrap();
    assert_eq!(again[0].id, chunks[0].id);
    assert_eq!(again[1].replicas, chunks[3].replicas);

    // Bad requests are refused.
    let err = ensure(&["tomorrow"]).unwrap_err().to_string();
    assert!(err.contains("`tomorrow` is not a date"), "{err}");
    let err = rt
        .block_on(controllers.ensure_chunks("dfs://stock", "nope", &["2023.01.01"]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("table `nope` does not exist"), "{err}");

    // With one machine stopped, a new partition goes to the two others.
    let down = cluster.hosts[0].clone();
    let out = cluster.run(&["host", "stop", &down]);
    assert!(out.status.success(), "{}", stderr(&out));
    cluster.wait_status(
        "the machine's data node DOWN",
        std::time::Duration::from_secs(15),
        |s| {
            crate::harness::nodes(s).iter().any(|n| {
                n["machine"] == down.as_str() && n["mode"] == "datanode" && n["state"] == "DOWN"
            })
        },
    );
    let c = &ensure(&["2023.01.04"]).unwrap()[0];
    assert!(
        c.replicas.iter().all(|r| machine_of(&r.addr) != down),
        "{c:?}"
    );
}

fn controllers(cluster: &LocalCluster) -> shoal_client::controller::ControllerClient {
    let secret = shoal_common::secret::load(&cluster.dir.join("cluster.secret")).unwrap();
    let sites = cluster.hosts.iter().map(|h| format!("{h}:8920")).collect();
    shoal_client::controller::ControllerClient::new(
        sites,
        shoal_client::channel::Channels::new(secret.signing()).unwrap(),
    )
}
