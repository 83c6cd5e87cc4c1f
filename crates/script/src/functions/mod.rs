//! The functions a script may call, by name: `cluster` (versions, configuration, chunk status,
//! run on nodes) and `ddl` (databases and tables).

mod cluster;
mod ddl;

use crate::error::{Result, ScriptError};
use crate::eval::Session;
use crate::value::Value;

/// Every function, with how it is called (what errors show).
const SIGNATURES: [(&str, &str); 16] = [
    ("version", "version()"),
    ("getNodeAlias", "getNodeAlias()"),
    ("getConfig", "getConfig([key])"),
    ("pnodeRun", "pnodeRun(function[, nodes])"),
    ("rpc", "rpc(nodeAlias, function[, args...])"),
    ("getControllerAlias", "getControllerAlias()"),
    ("getClusterChunksStatus", "getClusterChunksStatus()"),
    (
        "database",
        "database(directory[, VALUE, partitionScheme, locations (not supported), engine, atomic])",
    ),
    ("table", "table(1:0, colNames, colTypes)"),
    (
        "createPartitionedTable",
        "createPartitionedTable(dbHandle, table, tableName, partitionColumns[, compressMethods, sortColumns, keepDuplicates])",
    ),
    ("loadTable", "loadTable(database, tableName)"),
    ("existsDatabase", "existsDatabase(dbUrl)"),
    ("existsTable", "existsTable(dbUrl, tableName)"),
    ("dropDatabase", "dropDatabase(dbUrl)"),
    ("dropTable", "dropTable(dbHandle, tableName)"),
    (
        "dropPartition",
        "dropPartition(dbHandle, partitionValues, tableName)",
    ),
];

/// What the script front end runs, for errors about what it does not.
pub fn supported() -> String {
    let functions: Vec<&str> = SIGNATURES.iter().map(|(_, s)| *s).collect();
    format!(
        "assignments `x = ...`; literals (numbers, \"strings\", `symbols, dates 2023.01.01, \
         timestamps 2023.01.01T10:00:00.000, [vectors], a..b ranges, a:b pairs, true/false); \
         calls f(x), partial application f{{x}}, method calls x.f(y); \
         `select ... from ... [where ...] [group by ...] [order by ...] [limit n]`; \
         Shoal's SQL DDL statements; the functions {}",
        functions.join(", ")
    )
}

pub fn is_function(name: &str) -> bool {
    SIGNATURES.iter().any(|(n, _)| *n == name)
}

fn signature(name: &str) -> &'static str {
    SIGNATURES
        .iter()
        .find(|(n, _)| *n == name)
        .map_or("", |(_, s)| *s)
}

fn unsupported(construct: String) -> ScriptError {
    ScriptError::Unsupported {
        construct,
        supported: supported(),
    }
}

/// Calls function `name` with `args` (partial application's first).
pub async fn call(session: &mut Session<'_>, name: &str, args: Vec<Value>) -> Result<Value> {
    let args = Args {
        func: name,
        values: args,
    };
    match name {
        "version" | "getNodeAlias" | "getConfig" => {
            let node = session.host.local_node().to_owned();
            cluster::on_node(session.host, &node, &args).await
        }
        "pnodeRun" => cluster::pnode_run(session.host, &args).await,
        "rpc" => {
            args.count(2, usize::MAX)?;
            let node = args.text(0, "nodeAlias")?;
            let Some(Value::Function { name: f, bound }) = args.get(1) else {
                return Err(args.bad(1, "function", "a function such as getClusterChunksStatus"));
            };
            let mut f_args = bound.clone();
            f_args.extend(args.values[2..].iter().cloned());
            if cluster::NODE_FUNCTIONS.contains(&f.as_str()) {
                let f_args = Args {
                    func: f,
                    values: f_args,
                };
                return cluster::on_node(session.host, &node, &f_args).await;
            }
            // These answer for the whole cluster: the same on whichever node they run.
            if [
                "getClusterChunksStatus",
                "getControllerAlias",
                "existsDatabase",
                "existsTable",
            ]
            .contains(&f.as_str())
            {
                return Box::pin(call(session, f, f_args)).await;
            }
            Err(unsupported(format!("rpc with `{f}`")))
        }
        "getControllerAlias" => {
            args.count(0, 0)?;
            cluster::controller_alias(session.host)
                .await
                .map(Value::Str)
        }
        "getClusterChunksStatus" => {
            args.count(0, 0)?;
            Ok(cluster::chunks_status())
        }
        "database" => ddl::database(session, &args).await,
        "table" => ddl::table(&args),
        "createPartitionedTable" => ddl::create_partitioned_table(session, &args).await,
        "loadTable" => ddl::load_table(session, &args).await,
        "existsDatabase" => {
            args.count(1, 1)?;
            ddl::exists_database(session, &args.text(0, "dbUrl")?)
                .await
                .map(Value::Bool)
        }
        "existsTable" => {
            args.count(2, 2)?;
            let (db, table) = (args.text(0, "dbUrl")?, args.text(1, "tableName")?);
            ddl::exists_table(session, &db, &table)
                .await
                .map(Value::Bool)
        }
        "dropDatabase" => ddl::drop_database(session, &args).await,
        "dropTable" => ddl::drop_table(session, &args).await,
        "dropPartition" => ddl::drop_partition(session, &args).await,
        _ => Err(unsupported(format!("function `{name}`"))),
    }
}

/// A call's arguments, read with errors that name the function and the parameter.
struct Args<'a> {
    func: &'a str,
    values: Vec<Value>,
}

impl Args<'_> {
    fn count(&self, min: usize, max: usize) -> Result<()> {
        // Trailing arguments left out count as absent.
        let given = self
            .values
            .iter()
            .rposition(|v| *v != Value::Void)
            .map_or(0, |i| i + 1);
        if given < min || self.values.len() > max {
            return Err(ScriptError::invalid(format!(
                "{} takes {}: {}",
                self.func,
                match (min, max) {
                    (0, 0) => "no arguments".to_owned(),
                    (a, b) if a == b => format!("{a} argument(s)"),
                    (a, usize::MAX) => format!("at least {a} arguments"),
                    (a, b) => format!("{a} to {b} arguments"),
                },
                signature(self.func)
            )));
        }
        Ok(())
    }

    /// Argument `i`, unless it was left out.
    fn get(&self, i: usize) -> Option<&Value> {
        self.values.get(i).filter(|v| **v != Value::Void)
    }

    /// Argument `i` (a string or a symbol) as text.
    fn text(&self, i: usize, param: &str) -> Result<String> {
        match self.get(i).map(|v| v.clone().scalar()) {
            Some(Value::Str(s) | Value::Symbol(s)) => Ok(s),
            _ => Err(self.bad(i, param, "a string or a symbol")),
        }
    }

    fn bad(&self, i: usize, param: &str, wanted: &str) -> ScriptError {
        let got = self.get(i).map_or("nothing", Value::kind);
        ScriptError::invalid(format!(
            "{}: argument {} ({param}) must be {wanted}, got {got}; usage: {}",
            self.func,
            i + 1,
            signature(self.func)
        ))
    }
}
