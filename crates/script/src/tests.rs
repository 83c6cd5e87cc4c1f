//! The evaluator against an in-memory host: the cluster's system tables as DataFusion tables,
//! and DDL kept as the statements the controllers would have run.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, RecordBatch, StringArray, UInt64Array};
use async_trait::async_trait;
use datafusion::catalog::MemorySchemaProvider;
use datafusion::prelude::SessionContext;
use shoal_catalog::ddl::{self, Statement};

use crate::answer::{Answer, FORM_KEY};
use crate::error::ScriptError;
use crate::eval::Interpreter;
use crate::host::{Host, HostError};

/// The seed's SQL DDL, as Shoal's README gives it.
const SQL_CREATE_DB: &str =
    r#"CREATE DATABASE "dfs://stock" PARTITIONED BY VALUE(2023.01.01..2023.01.10), ENGINE='TSDB'"#;
const SQL_CREATE_TABLE: &str = r#"create table "dfs://stock"."stock"(time TIMESTAMP, name SYMBOL, id INT) partitioned by time, sortColumns=[`name], keepDuplicates=ALL"#;

const SEED_DDL: &str = "db = database(\"dfs://stock\",VALUE,2023.01.01..2023.01.10,,'TSDB')
tmp = table(1:0,[`time,`name,`id],[TIMESTAMP,SYMBOL,INT])
pt = db.createPartitionedTable(tmp,`stock,`time,,`name,ALL)";

struct FakeHost {
    ctx: SessionContext,
    /// Every DDL statement run, in order.
    ddl: Mutex<Vec<String>>,
    /// Database → its tables.
    databases: Mutex<BTreeMap<String, Vec<String>>>,
}

fn text(values: &[&str]) -> ArrayRef {
    Arc::new(StringArray::from(values.to_vec()))
}

impl FakeHost {
    /// Two controllers (ctl1 leads), three data nodes at 0.2.0; chunks in `states`.
    fn new(states: &[&str]) -> Self {
        let ctx = SessionContext::new();
        ctx.catalog("datafusion")
            .unwrap()
            .register_schema("cluster", Arc::new(MemorySchemaProvider::new()))
            .unwrap();
        let nodes = RecordBatch::try_from_iter([
            ("node", text(&["ctl1", "ctl2", "node1", "node2", "node3"])),
            (
                "mode",
                text(&[
                    "controller",
                    "controller",
                    "datanode",
                    "datanode",
                    "datanode",
                ]),
            ),
            ("raft_role", text(&["leader", "follower", "", "", ""])),
            ("version", text(&["0.2.0"; 5])),
            ("build_date", text(&["2026.11.25"; 5])),
        ])
        .unwrap();
        let config = RecordBatch::try_from_iter([
            ("node", text(&["ctl1", "node1", "node2", "node3", "node1"])),
            (
                "name",
                text(&[
                    "dfsMetaDir",
                    "chunkMetaDir",
                    "chunkMetaDir",
                    "chunkMetaDir",
                    "dataSync",
                ]),
            ),
            (
                "value",
                text(&[
                    "/data/ctl1/dfsMeta",
                    "/data/node1/storage",
                    "/data/node2/storage",
                    "/data/node3/storage",
                    "1",
                ]),
            ),
        ])
        .unwrap();
        let n = states.len() as u64;
        let chunks = RecordBatch::try_from_iter([
            (
                "chunk_id",
                Arc::new(UInt64Array::from_iter_values(1..=n)) as ArrayRef,
            ),
            ("path", text(&vec!["/stock/20230101/stock"; states.len()])),
            (
                "bytes",
                Arc::new(UInt64Array::from_iter_values((1..=n).map(|i| i * 100))) as ArrayRef,
            ),
            (
                "version",
                Arc::new(UInt64Array::from_iter_values(1..=n)) as ArrayRef,
            ),
            ("state", text(states)),
            (
                "replicas",
                text(&vec!["node1:in_sync,node2:in_sync"; states.len()]),
            ),
        ])
        .unwrap();
        ctx.register_batch("cluster.nodes", nodes).unwrap();
        ctx.register_batch("cluster.config", config).unwrap();
        ctx.register_batch("cluster.chunks", chunks).unwrap();
        Self {
            ctx,
            ddl: Mutex::new(Vec::new()),
            databases: Mutex::new(BTreeMap::new()),
        }
    }

    fn ddl_run(&self) -> Vec<String> {
        self.ddl.lock().unwrap().clone()
    }
}

#[async_trait]
impl Host for FakeHost {
    fn local_node(&self) -> &str {
        "node1"
    }

    async fn query(&self, sql: &str) -> Result<RecordBatch, HostError> {
        let failed = |e: datafusion::error::DataFusionError| HostError::Refused(e.to_string());
        let df = self.ctx.sql(sql).await.map_err(failed)?;
        let schema = Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await.map_err(failed)?;
        Ok(arrow::compute::concat_batches(&schema, &batches).unwrap())
    }

    async fn ddl(&self, statement: &str) -> Result<RecordBatch, HostError> {
        let parsed = ddl::parse(statement).map_err(|e| HostError::Refused(e.to_string()))?;
        let mut dbs = self.databases.lock().unwrap();
        let message = match parsed {
            Statement::ShowDatabases => {
                let names: Vec<&str> = dbs.keys().map(String::as_str).collect();
                return Ok(RecordBatch::try_from_iter([("database", text(&names))]).unwrap());
            }
            Statement::ShowTables { db_path } => {
                let tables = dbs
                    .get(&db_path)
                    .ok_or_else(|| HostError::Refused(format!("no {db_path}")))?;
                let names: Vec<&str> = tables.iter().map(String::as_str).collect();
                return Ok(RecordBatch::try_from_iter([("table", text(&names))]).unwrap());
            }
            Statement::CreateDatabase { path, .. } => {
                dbs.insert(path.clone(), Vec::new());
                format!("created database {path}")
            }
            Statement::CreateTable { db_path, table } => {
                dbs.get_mut(&db_path).unwrap().push(table.name.clone());
                format!("created table {db_path}.{}", table.name)
            }
            Statement::DropDatabase { path } => {
                dbs.remove(&path);
                format!("dropped database {path}")
            }
            other => format!("ran {other:?}"),
        };
        self.ddl.lock().unwrap().push(statement.to_owned());
        Ok(RecordBatch::try_from_iter([("message", text(&[&message]))]).unwrap())
    }
}

/// Runs `script` on a fresh interpreter.
async fn run(host: &FakeHost, script: &str) -> Result<Answer, ScriptError> {
    Interpreter::new(host).run(script).await
}

fn rows(answer: Answer) -> (String, RecordBatch) {
    let Answer::Rows(batch) = answer else {
        panic!("{answer:?}")
    };
    let form = batch
        .schema()
        .metadata()
        .get(FORM_KEY)
        .cloned()
        .unwrap_or_default();
    (form, batch)
}

fn column(batch: &RecordBatch, name: &str) -> Vec<String> {
    crate::sql::column_text(batch, name)
        .unwrap()
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect()
}

#[tokio::test]
async fn version_and_pnode_run_answer_in_the_seeds_shapes() {
    let host = FakeHost::new(&["COMPLETE"]);
    let (form, batch) = rows(run(&host, "version()").await.unwrap());
    assert_eq!(form, "scalar");
    assert_eq!(column(&batch, "value"), ["0.2.0 2026.11.25"]);

    let (form, batch) = rows(run(&host, "pnodeRun(version)").await.unwrap());
    assert_eq!(form, "table");
    assert_eq!(column(&batch, "node"), ["node1", "node2", "node3"]);
    assert_eq!(column(&batch, "value"), ["0.2.0 2026.11.25"; 3]);

    let (_, batch) = rows(
        run(&host, "pnodeRun(getConfig{`chunkMetaDir})")
            .await
            .unwrap(),
    );
    assert_eq!(column(&batch, "node"), ["node1", "node2", "node3"]);
    assert_eq!(
        column(&batch, "value"),
        [
            "/data/node1/storage",
            "/data/node2/storage",
            "/data/node3/storage"
        ]
    );

    let (form, batch) = rows(
        run(&host, "rpc(getControllerAlias(),getConfig{`dfsMetaDir})")
            .await
            .unwrap(),
    );
    assert_eq!(form, "scalar");
    assert_eq!(column(&batch, "value"), ["/data/ctl1/dfsMeta"]);
    let (_, batch) = rows(run(&host, "getConfig(`chunkMetaDir)").await.unwrap());
    assert_eq!(column(&batch, "value"), ["/data/node1/storage"]);
    let (_, batch) = rows(
        run(&host, "pnodeRun(getNodeAlias, [\"node2\"])")
            .await
            .unwrap(),
    );
    assert_eq!(column(&batch, "value"), ["node2"]);
}

#[tokio::test]
async fn chunk_status_is_empty_when_all_are_complete_and_lists_the_others() {
    let check = r#"select * from rpc(getControllerAlias(), getClusterChunksStatus) where state != "COMPLETE""#;
    let host = FakeHost::new(&["COMPLETE", "COMPLETE"]);
    let batch = queried(&host, run(&host, check).await.unwrap()).await;
    assert_eq!(batch.num_rows(), 0);
    let names: Vec<String> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        names,
        ["chunkId", "file", "size", "version", "state", "replicas"]
    );

    let host = FakeHost::new(&["COMPLETE", "RECOVERING", "COMPLETE"]);
    let batch = queried(&host, run(&host, check).await.unwrap()).await;
    assert_eq!(column(&batch, "chunkId"), ["2"]);
    assert_eq!(column(&batch, "state"), ["RECOVERING"]);
    let top = "select chunkId, size from getClusterChunksStatus() where size >= 200 order by size desc limit 1";
    let batch = queried(&host, run(&host, top).await.unwrap()).await;
    assert_eq!(column(&batch, "size"), ["300"]);
}

/// The rows of an answer that is SQL, as the engine would stream them.
async fn queried(host: &FakeHost, answer: Answer) -> RecordBatch {
    let Answer::Sql(sql) = answer else {
        panic!("{answer:?}")
    };
    host.query(&sql).await.unwrap()
}

/// The seed's three lines run the same DDL as the SQL statements the README gives.
#[tokio::test]
async fn the_seeds_ddl_creates_what_the_sql_ddl_creates() {
    let host = FakeHost::new(&[]);
    let (form, batch) = rows(run(&host, SEED_DDL).await.unwrap());
    assert_eq!(form, "void");
    assert_eq!(
        column(&batch, "message"),
        [
            "created database dfs://stock",
            "created table dfs://stock.stock"
        ]
    );
    let ran: Vec<Statement> = host
        .ddl_run()
        .iter()
        .map(|s| ddl::parse(s).unwrap())
        .collect();
    assert_eq!(
        ran,
        [
            ddl::parse(SQL_CREATE_DB).unwrap(),
            ddl::parse(SQL_CREATE_TABLE).unwrap()
        ]
    );

    let (_, batch) = rows(
        run(&host, "[existsDatabase(\"dfs://stock\"), existsTable(\"dfs://stock\", `stock), existsTable(\"dfs://stock\", `nope)]")
            .await
            .unwrap(),
    );
    assert_eq!(column(&batch, "value"), ["true", "true", "false"]);
    // Shoal's SQL DDL in a script: every statement's message, SHOW's table.
    let (_, batch) = rows(
        run(&host, "CREATE DATABASE \"dfs://m\" PARTITIONED BY VALUE(1..3);\nCREATE TABLE \"dfs://m\".t(k INT) PARTITIONED BY k")
            .await
            .unwrap(),
    );
    assert_eq!(
        column(&batch, "message"),
        ["created database dfs://m", "created table dfs://m.t"]
    );
    let (form, batch) = rows(run(&host, "SHOW DATABASES").await.unwrap());
    assert_eq!(form, "table");
    assert_eq!(column(&batch, "database"), ["dfs://m", "dfs://stock"]);
    let e = run(&host, "loadTable(\"dfs://stock\", `nope)")
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "loadTable: no table `nope` in database `dfs://stock`"
    );
}

#[tokio::test]
async fn selects_over_cluster_tables_become_sql() {
    let host = FakeHost::new(&[]);
    run(&host, SEED_DDL).await.unwrap();
    let answer = run(
        &host,
        "pt = loadTable(\"dfs://stock\", \"stock\")\nstart = 2023.01.02\n\
         select name, count(*) as rows from pt\n  where time >= start and name in [`Apple, `Meta]\n  group by name order by rows desc limit 3",
    )
    .await
    .unwrap();
    let Answer::Sql(sql) = answer else {
        panic!("{answer:?}")
    };
    assert_eq!(
        sql,
        "SELECT \"name\", count(*) AS \"rows\" FROM \"dfs://stock\".\"stock\" \
         WHERE ((\"time\" >= DATE '2023-01-02') AND (\"name\" IN ('Apple', 'Meta'))) \
         GROUP BY \"name\" ORDER BY \"rows\" DESC LIMIT 3"
    );
    let Answer::Sql(sql) = run(&host, "loadTable(\"dfs://stock\", `stock)")
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(sql, "SELECT * FROM \"dfs://stock\".\"stock\"");
}

#[tokio::test]
async fn variables_last_across_runs_of_one_interpreter() {
    let host = FakeHost::new(&[]);
    let mut session = Interpreter::new(&host);
    session
        .run("d = 2023.01.01 + 9; nodes = [`node2, `node3]")
        .await
        .unwrap();
    let (form, batch) = rows(session.run("[d, d - 1]").await.unwrap());
    assert_eq!(form, "vector");
    assert_eq!(column(&batch, "value"), ["2023-01-10", "2023-01-09"]);
    let (_, batch) = rows(session.run("pnodeRun(version, nodes)").await.unwrap());
    assert_eq!(column(&batch, "node"), ["node2", "node3"]);
    let (_, batch) = rows(
        session
            .run("f = getConfig{`chunkMetaDir}\nf()")
            .await
            .unwrap(),
    );
    assert_eq!(column(&batch, "value"), ["/data/node1/storage"]);
}

/// Outside the subset: refused by name, with what is supported, before anything runs.
#[tokio::test]
async fn unsupported_scripts_are_refused_by_name_and_change_nothing() {
    let host = FakeHost::new(&[]);
    for (script, construct) in [
        (
            "db = database(\"dfs://stock\",VALUE,2023.01.01..2023.01.10)\nsubmitJob(`j, `j, f)",
            "function `submitJob`",
        ),
        (
            "db = database(\"dfs://stock\",RANGE,2023.01.01..2023.01.10)",
            "RANGE partitioning",
        ),
        (
            "pnodeRun(getClusterChunksStatus)",
            "pnodeRun with `getClusterChunksStatus`",
        ),
        (
            "select bar(x) from getClusterChunksStatus()",
            "function `bar` in select",
        ),
        ("def f() { }", "function definitions (`def`)"),
        (
            "tmp = table(10:10, [`a], [INT])",
            "table() with rows (Shoal makes empty tables, `table(1:0, names, types)`; rows are appended by clients)",
        ),
    ] {
        let e = run(&host, script).await.unwrap_err();
        let ScriptError::Unsupported {
            construct: got,
            supported,
        } = &e
        else {
            panic!("{script}: {e}")
        };
        assert_eq!(got, construct, "{script}");
        assert!(!supported.is_empty());
    }
    assert!(host.ddl_run().is_empty(), "{:?}", host.ddl_run());

    for (script, message) in [
        (
            "pnodeRun(1)",
            "pnodeRun: argument 1 (function) must be a function such as version or getConfig{`key}, got an INT; usage: pnodeRun(function[, nodes])",
        ),
        ("version(1)", "version takes no arguments: version()"),
        (
            "x + 1",
            "`x` is not a variable, a function or a constant this script knows",
        ),
        ("rpc(`nowhere, version)", "no node `nowhere` in the cluster"),
        (
            "getConfig(`nope)",
            "node `node1` reports no configuration key `nope` (an unknown key, an unknown node, or a node that does not answer)",
        ),
    ] {
        assert_eq!(
            run(&host, script).await.unwrap_err().to_string(),
            message,
            "{script}"
        );
    }
}
