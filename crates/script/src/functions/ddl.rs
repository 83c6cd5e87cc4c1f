//! Databases and tables through DolphinDB's functions. Each call writes the statement of
//! Shoal's own DDL (`shoal_catalog::ddl`) and runs it on the controllers, so the seed's
//! `database(...)` / `createPartitionedTable(...)` create exactly what the SQL DDL creates.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema};
use shoal_catalog::ColumnType;
use shoal_catalog::table::TYPE_METADATA_KEY;

use super::{Args, unsupported};
use crate::error::{Result, ScriptError};
use crate::eval::Session;
use crate::sql;
use crate::value::Value;

const PARTITION_TYPES: [&str; 5] = ["VALUE", "RANGE", "HASH", "LIST", "COMPO"];

/// `database(path)` opens a database; with a partition type and scheme it creates one.
pub async fn database(session: &mut Session<'_>, args: &Args<'_>) -> Result<Value> {
    args.count(1, 6)?;
    let path = args.text(0, "directory")?;
    let Some(kind) = args.get(1) else {
        if !exists_database(session, &path).await? {
            return Err(ScriptError::invalid(format!(
                "database `{path}` does not exist; create it with database(\"{path}\", VALUE, partitionScheme)"
            )));
        }
        return Ok(Value::Database(path));
    };
    match kind {
        Value::Constant(c) if c == "VALUE" => {}
        Value::Constant(c) if PARTITION_TYPES.contains(&c.as_str()) => {
            return Err(ScriptError::Unsupported {
                construct: format!("{c} partitioning"),
                supported: "VALUE partitioning by dates or integers".into(),
            });
        }
        _ => return Err(args.bad(1, "partitionType", "VALUE")),
    }
    let Some(scheme) = args.get(2) else {
        return Err(args.bad(
            2,
            "partitionScheme",
            "dates or integers, e.g. 2023.01.01..2023.01.10",
        ));
    };
    let keys = partition_values(scheme).ok_or_else(|| {
        args.bad(
            2,
            "partitionScheme",
            "dates or integers, e.g. 2023.01.01..2023.01.10",
        )
    })?;
    if args.get(3).is_some() {
        return Err(unsupported(
            "database's `locations` (Shoal places replicas itself)".into(),
        ));
    }
    let mut statement = format!(
        "CREATE DATABASE {} PARTITIONED BY VALUE([{}])",
        sql::ident(&path),
        keys.join(", ")
    );
    if args.get(4).is_some() {
        statement += &format!(", ENGINE={}", sql::string(&args.text(4, "engine")?));
    }
    if args.get(5).is_some() {
        statement += &format!(", ATOMIC={}", sql::string(&args.text(5, "atomic")?));
    }
    session.ddl(&statement).await?;
    Ok(Value::Database(path))
}

/// Dates or integers (one, a vector, a range) as the DDL writes them; `None` if not that.
fn partition_values(v: &Value) -> Option<Vec<String>> {
    let items = match v {
        Value::Vector(items) => items.as_slice(),
        one => std::slice::from_ref(one),
    };
    items
        .iter()
        .map(|v| matches!(v, Value::Date(_) | Value::Int(_)).then(|| v.to_string()))
        .collect()
}

/// `table(1:0, colNames, colTypes)`: an empty table, the schema of a partitioned table.
pub fn table(args: &Args<'_>) -> Result<Value> {
    args.count(3, 3)?;
    let size = match args.get(0) {
        Some(Value::Pair(_, size)) => (**size).clone(),
        Some(other) => other.clone(),
        None => Value::Void,
    };
    if size != Value::Int(0) {
        return Err(unsupported(
            "table() with rows (Shoal makes empty tables, `table(1:0, names, types)`; rows are appended by clients)"
                .into(),
        ));
    }
    let names = texts(args, 1, "colNames")?;
    let types = texts(args, 2, "colTypes")?;
    if names.len() != types.len() {
        return Err(ScriptError::invalid(format!(
            "table: {} column names but {} types",
            names.len(),
            types.len()
        )));
    }
    let fields = names
        .iter()
        .zip(&types)
        .map(|(name, ty)| {
            let ty: ColumnType = ty.parse().map_err(ScriptError::Invalid)?;
            Ok(Field::new(name, ty.arrow_type(), true)
                .with_metadata([(TYPE_METADATA_KEY.to_owned(), ty.name().to_owned())].into()))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Value::Table(RecordBatch::new_empty(Arc::new(Schema::new(
        fields,
    )))))
}

/// Argument `i` as a list of names: `` `a`b ``, `[`a, `b]`, `[INT, SYMBOL]`, or one.
fn texts(args: &Args<'_>, i: usize, param: &str) -> Result<Vec<String>> {
    let bad = || {
        args.bad(
            i,
            param,
            "names, e.g. [`time, `name] or [TIMESTAMP, SYMBOL]",
        )
    };
    let items = match args.get(i) {
        Some(Value::Vector(items)) => items.clone(),
        Some(one) => vec![one.clone()],
        None => return Err(bad()),
    };
    items
        .into_iter()
        .map(|v| match v {
            Value::Str(s) | Value::Symbol(s) | Value::Constant(s) => Ok(s),
            _ => Err(bad()),
        })
        .collect()
}

/// `db.createPartitionedTable(table, name, partitionColumn, compressMethods, sortColumns,
/// keepDuplicates)`. `compressMethods` is accepted and ignored: chunk files are compressed
/// with ZSTD.
pub async fn create_partitioned_table(session: &mut Session<'_>, args: &Args<'_>) -> Result<Value> {
    args.count(4, 7)?;
    let Some(Value::Database(db)) = args.get(0) else {
        return Err(args.bad(
            0,
            "dbHandle",
            "a database, e.g. db = database(\"dfs://stock\")",
        ));
    };
    let Some(Value::Table(schema)) = args.get(1) else {
        return Err(args.bad(1, "table", "a table, e.g. table(1:0, [`time], [TIMESTAMP])"));
    };
    let name = args.text(2, "tableName")?;
    let partition = texts(args, 3, "partitionColumns")?;
    let [partition] = partition.as_slice() else {
        return Err(unsupported(
            "partitioning by several columns (COMPO)".into(),
        ));
    };
    let columns =
        schema
            .schema()
            .fields()
            .iter()
            .map(|f| {
                let ty = f
                .metadata()
                .get(TYPE_METADATA_KEY)
                .and_then(|t| t.parse::<ColumnType>().ok())
                .or_else(|| ColumnType::ALL.into_iter().find(|t| t.arrow_type() == *f.data_type()))
                .ok_or_else(|| {
                    ScriptError::invalid(format!(
                        "createPartitionedTable: column `{}` has a type Shoal does not store ({})",
                        f.name(),
                        f.data_type()
                    ))
                })?;
                Ok(format!("{} {ty}", sql::ident(f.name())))
            })
            .collect::<Result<Vec<_>>>()?;
    let mut statement = format!(
        "CREATE TABLE {}({}) PARTITIONED BY {}",
        sql::table(db, &name),
        columns.join(", "),
        sql::ident(partition)
    );
    if args.get(5).is_some() {
        let sort: Vec<String> = texts(args, 5, "sortColumns")?
            .iter()
            .map(|c| sql::ident(c))
            .collect();
        statement += &format!(", sortColumns=[{}]", sort.join(", "));
    }
    if args.get(6).is_some() {
        statement += &format!(
            ", keepDuplicates={}",
            texts(args, 6, "keepDuplicates")?.join("")
        );
    }
    session.ddl(&statement).await?;
    Ok(Value::DfsTable {
        db: db.clone(),
        table: name,
    })
}

/// A database given as a handle or a path.
fn db_path(args: &Args<'_>, i: usize) -> Result<String> {
    match args.get(i) {
        Some(Value::Database(path)) => Ok(path.clone()),
        _ => args.text(i, "dbHandle"),
    }
}

pub async fn load_table(session: &mut Session<'_>, args: &Args<'_>) -> Result<Value> {
    args.count(2, 2)?;
    let (db, table) = (db_path(args, 0)?, args.text(1, "tableName")?);
    if !exists_table(session, &db, &table).await? {
        return Err(ScriptError::invalid(format!(
            "loadTable: no table `{table}` in database `{db}`"
        )));
    }
    Ok(Value::DfsTable { db, table })
}

pub async fn exists_database(session: &mut Session<'_>, path: &str) -> Result<bool> {
    let databases = session.ddl("SHOW DATABASES").await?;
    Ok(sql::column_text(&databases, "database")?
        .iter()
        .any(|d| d.as_deref() == Some(path)))
}

pub async fn exists_table(session: &mut Session<'_>, db: &str, table: &str) -> Result<bool> {
    if !exists_database(session, db).await? {
        return Ok(false);
    }
    let tables = session
        .ddl(&format!("SHOW TABLES FROM {}", sql::ident(db)))
        .await?;
    Ok(sql::column_text(&tables, "table")?
        .iter()
        .any(|t| t.as_deref() == Some(table)))
}

pub async fn drop_database(session: &mut Session<'_>, args: &Args<'_>) -> Result<Value> {
    args.count(1, 1)?;
    let path = db_path(args, 0)?;
    session
        .ddl(&format!("DROP DATABASE {}", sql::ident(&path)))
        .await?;
    Ok(Value::Void)
}

pub async fn drop_table(session: &mut Session<'_>, args: &Args<'_>) -> Result<Value> {
    args.count(2, 2)?;
    let (db, table) = (db_path(args, 0)?, args.text(1, "tableName")?);
    session
        .ddl(&format!("DROP TABLE {}", sql::table(&db, &table)))
        .await?;
    Ok(Value::Void)
}

/// `dropPartition(db, values, tableName)`: partitions named by their values (`2023.01.01`,
/// a vector, a range), not by paths.
pub async fn drop_partition(session: &mut Session<'_>, args: &Args<'_>) -> Result<Value> {
    args.count(3, 4)?;
    let db = db_path(args, 0)?;
    let wanted = "partition values, e.g. 2023.01.01 or 2023.01.01..2023.01.03 (not paths)";
    let keys = args
        .get(1)
        .and_then(partition_values)
        .ok_or_else(|| args.bad(1, "partitionPaths", wanted))?;
    let table = args.text(2, "tableName")?;
    session
        .ddl(&format!(
            "ALTER TABLE {} DROP PARTITION [{}]",
            sql::table(&db, &table),
            keys.join(", ")
        ))
        .await?;
    Ok(Value::Void)
}
