//! `select ... from ... where ...` as SQL. Over a table in memory (`pnodeRun(...)`,
//! `getConfig()`, `table(...)`) it runs here, with DataFusion; over the cluster's tables
//! (`loadTable(...)`, `getClusterChunksStatus()`, both SQL) it stays SQL text
//! ([`Value::Query`]) that the SQL engine runs where the answer is needed, so a large result
//! streams instead of being held by the script.
//!
//! In a select, a name is a column, unless a script variable of that name holds a scalar
//! (then its value is used); strings in double quotes are strings, as in DolphinDB.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use datafusion::prelude::SessionContext;

use crate::ast::{BinaryOp, Expr, Select};
use crate::error::{Result, ScriptError};
use crate::eval::Interpreter;
use crate::sql;
use crate::value::Value;

/// The name a table in memory has in the SQL run over it.
const LOCAL_TABLE: &str = "t";

/// Functions a select may use, DolphinDB's name → SQL's.
const SQL_FUNCTIONS: [(&str, &str); 10] = [
    ("count", "count"),
    ("sum", "sum"),
    ("avg", "avg"),
    ("min", "min"),
    ("max", "max"),
    ("first", "first_value"),
    ("last", "last_value"),
    ("abs", "abs"),
    ("upper", "upper"),
    ("lower", "lower"),
];

fn unsupported(construct: String) -> ScriptError {
    let functions: Vec<&str> = SQL_FUNCTIONS.iter().map(|(d, _)| *d).collect();
    ScriptError::Unsupported {
        construct,
        supported: format!(
            "in select: columns, literals, variables, comparisons, and/or/not, + - * /, like, \
             in [...], and the functions {}",
            functions.join(", ")
        ),
    }
}

pub async fn run(interp: &mut Interpreter<'_>, s: &Select) -> Result<Value> {
    let source = interp.eval(&s.from).await?;
    let from = match &source {
        Value::Table(_) => LOCAL_TABLE.to_owned(),
        Value::DfsTable { db, table } => sql::table(db, table),
        Value::Query(q) => format!("({q}) AS q"),
        other => {
            return Err(ScriptError::invalid(format!(
                "select reads a table (loadTable(...), a table variable, or a function that \
                 returns one such as getClusterChunksStatus), not {}",
                other.kind()
            )));
        }
    };
    let query = translate(interp, s, &from)?;
    match source {
        Value::Table(batch) => in_memory(batch, &query).await.map(Value::Table),
        _ => Ok(Value::Query(query)),
    }
}

fn translate(interp: &Interpreter<'_>, s: &Select, from: &str) -> Result<String> {
    let expr = |e: &Expr| to_sql(interp, e);
    let list = |items: &[Expr]| -> Result<String> {
        Ok(items
            .iter()
            .map(expr)
            .collect::<Result<Vec<_>>>()?
            .join(", "))
    };
    let columns = s
        .columns
        .iter()
        .map(|(e, alias)| {
            let e = expr(e)?;
            Ok(match alias {
                Some(a) => format!("{e} AS {}", sql::ident(a)),
                None => e,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut query = format!("SELECT {} FROM {from}", columns.join(", "));
    if let Some(f) = &s.filter {
        query += &format!(" WHERE {}", expr(f)?);
    }
    if !s.group_by.is_empty() {
        query += &format!(" GROUP BY {}", list(&s.group_by)?);
    }
    if !s.order_by.is_empty() {
        let order = s
            .order_by
            .iter()
            .map(|(e, desc)| Ok(format!("{}{}", expr(e)?, if *desc { " DESC" } else { "" })))
            .collect::<Result<Vec<_>>>()?;
        query += &format!(" ORDER BY {}", order.join(", "));
    }
    if let Some(n) = s.limit {
        query += &format!(" LIMIT {n}");
    }
    Ok(query)
}

fn to_sql(interp: &Interpreter<'_>, e: &Expr) -> Result<String> {
    let sql_of = |e: &Expr| to_sql(interp, e);
    Ok(match e {
        Expr::Lit(l) => literal(&crate::eval::literal(l))?,
        Expr::Name { name, .. } => match interp.var(name) {
            Some(v) if v.is_scalar() || matches!(v, Value::Vector(_)) => literal(v)?,
            _ => sql::ident(name),
        },
        Expr::Star => "*".into(),
        Expr::Call { name, args, .. } => {
            let Some((_, f)) = SQL_FUNCTIONS
                .iter()
                .find(|(d, _)| d.eq_ignore_ascii_case(name))
            else {
                return Err(unsupported(format!("function `{name}` in select")));
            };
            let args = args.iter().map(sql_of).collect::<Result<Vec<_>>>()?;
            format!("{f}({})", args.join(", "))
        }
        Expr::Binary { op, left, right } => {
            let (l, r) = (sql_of(left)?, sql_of(right)?);
            let op = match op {
                BinaryOp::Eq => "=",
                BinaryOp::Ne => "<>",
                BinaryOp::Lt => "<",
                BinaryOp::Le => "<=",
                BinaryOp::Gt => ">",
                BinaryOp::Ge => ">=",
                BinaryOp::And => "AND",
                BinaryOp::Or => "OR",
                BinaryOp::Add => "+",
                BinaryOp::Sub => "-",
                BinaryOp::Mul => "*",
                BinaryOp::Div => "/",
                BinaryOp::Like => "LIKE",
                BinaryOp::In => "IN",
            };
            format!("({l} {op} {r})")
        }
        Expr::Vector(items) => {
            let items = items.iter().map(sql_of).collect::<Result<Vec<_>>>()?;
            format!("({})", items.join(", "))
        }
        Expr::Not(e) => format!("(NOT {})", sql_of(e)?),
        Expr::Neg(e) => format!("(-{})", sql_of(e)?),
        Expr::Select(_) => return Err(unsupported("a select inside a select".into())),
        Expr::Range(..) | Expr::Pair(..) | Expr::Partial { .. } => {
            return Err(unsupported(
                "ranges, pairs and partial application in select".into(),
            ));
        }
    })
}

/// A value as a SQL literal: `'text'`, `DATE '2023-01-01'`, `(1, 2)`.
fn literal(v: &Value) -> Result<String> {
    Ok(match v {
        Value::Int(_) | Value::Double(_) | Value::Bool(_) => v.to_string(),
        Value::Str(s) | Value::Symbol(s) => sql::string(s),
        Value::Date(_) => format!("DATE '{}'", v.to_string().replace('.', "-")),
        Value::Timestamp(_) => {
            let text = v.to_string();
            let (day, time) = text.split_once('T').unwrap_or((&text, ""));
            format!("TIMESTAMP '{} {time}'", day.replace('.', "-"))
        }
        Value::Vector(items) => {
            let items = items.iter().map(literal).collect::<Result<Vec<_>>>()?;
            format!("({})", items.join(", "))
        }
        other => {
            return Err(ScriptError::invalid(format!(
                "{} cannot be used in a select",
                other.kind()
            )));
        }
    })
}

/// Runs `query` over `batch` (named [`LOCAL_TABLE`]) with DataFusion, in this process.
async fn in_memory(batch: RecordBatch, query: &str) -> Result<RecordBatch> {
    let failed = |e: datafusion::error::DataFusionError| {
        ScriptError::invalid(format!("select: {e} (as SQL: {query})"))
    };
    let ctx = SessionContext::new();
    ctx.register_batch(LOCAL_TABLE, batch).map_err(failed)?;
    let df = ctx.sql(query).await.map_err(failed)?;
    let schema = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await.map_err(failed)?;
    concat_batches(&schema, &batches).map_err(|e| failed(e.into()))
}
