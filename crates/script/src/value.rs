//! What a script computes: DolphinDB's scalars, vectors and pairs, functions as values
//! (`version`, `getConfig{`key}`), tables in memory, and handles of the cluster's databases and
//! tables.

use std::fmt;

use arrow::array::RecordBatch;
use shoal_catalog::PartitionKey;

const MS_PER_DAY: i64 = 86_400_000;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Nothing: an assignment, a DDL call, an argument left out.
    Void,
    Bool(bool),
    Int(i64),
    Double(f64),
    Str(String),
    Symbol(String),
    /// Days since 1970-01-01.
    Date(i32),
    /// Milliseconds since 1970-01-01T00:00:00.
    Timestamp(i64),
    Vector(Vec<Value>),
    Pair(Box<Value>, Box<Value>),
    /// A DolphinDB constant: a partition type (`VALUE`), a column type (`TIMESTAMP`), `ALL`.
    Constant(String),
    /// A function, with its first arguments fixed by partial application.
    Function {
        name: String,
        bound: Vec<Value>,
    },
    /// A table in memory (`table(1:0, ...)`, `getClusterChunksStatus()`, a select over them).
    Table(RecordBatch),
    /// `database("dfs://...")`: a database of the cluster.
    Database(String),
    /// `loadTable(...)`, `createPartitionedTable(...)`: a table of the cluster.
    DfsTable {
        db: String,
        table: String,
    },
    /// A select over the cluster's tables, as SQL not run yet: it runs where it is used.
    Query(String),
}

impl Value {
    /// The kind of value, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Void => "nothing",
            Value::Bool(_) => "a BOOL",
            Value::Int(_) => "an INT",
            Value::Double(_) => "a DOUBLE",
            Value::Str(_) => "a STRING",
            Value::Symbol(_) => "a SYMBOL",
            Value::Date(_) => "a DATE",
            Value::Timestamp(_) => "a TIMESTAMP",
            Value::Vector(_) => "a vector",
            Value::Pair(..) => "a pair",
            Value::Constant(_) => "a constant",
            Value::Function { .. } => "a function",
            Value::Table(_) => "a table",
            Value::Database(_) => "a database handle",
            Value::DfsTable { .. } => "a DFS table",
            Value::Query(_) => "a select",
        }
    }

    /// A string or a symbol, as text.
    pub fn text(&self) -> Option<&str> {
        match self {
            Value::Str(s) | Value::Symbol(s) => Some(s),
            _ => None,
        }
    }

    /// The one-element vector `[x]` read as `x`; anything else as it is.
    pub fn scalar(self) -> Value {
        match self {
            Value::Vector(mut v) if v.len() == 1 => v.remove(0),
            other => other,
        }
    }

    pub fn is_scalar(&self) -> bool {
        matches!(
            self,
            Value::Bool(_)
                | Value::Int(_)
                | Value::Double(_)
                | Value::Str(_)
                | Value::Symbol(_)
                | Value::Date(_)
                | Value::Timestamp(_)
        )
    }
}

/// DolphinDB's way of writing a value: `2023.01.01`, `2023.01.01T10:00:00.000`, `1:0`.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Void => Ok(()),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(n) => write!(f, "{n}"),
            Value::Double(d) => write!(f, "{d}"),
            Value::Str(s) | Value::Symbol(s) | Value::Constant(s) => f.write_str(s),
            Value::Date(d) => write!(f, "{}", PartitionKey::Date(*d)),
            Value::Timestamp(ms) => {
                let day = i32::try_from(ms.div_euclid(MS_PER_DAY)).map_err(|_| fmt::Error)?;
                let t = ms.rem_euclid(MS_PER_DAY);
                write!(
                    f,
                    "{}T{:02}:{:02}:{:02}.{:03}",
                    PartitionKey::Date(day),
                    t / 3_600_000,
                    t / 60_000 % 60,
                    t / 1000 % 60,
                    t % 1000
                )
            }
            Value::Vector(items) => {
                let items: Vec<String> = items.iter().map(ToString::to_string).collect();
                write!(f, "[{}]", items.join(","))
            }
            Value::Pair(a, b) => write!(f, "{a}:{b}"),
            Value::Function { name, .. } => f.write_str(name),
            Value::Table(t) => write!(f, "table of {} rows", t.num_rows()),
            Value::Database(path) => write!(f, "DB[{path}]"),
            Value::DfsTable { db, table } => write!(f, "{db}/{table}"),
            Value::Query(sql) => f.write_str(sql),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_print_as_dolphindb_writes_them() {
        let day = shoal_catalog::partition::parse_date("2023.01.02").unwrap();
        assert_eq!(Value::Date(day).to_string(), "2023.01.02");
        let ms = i64::from(day) * MS_PER_DAY + 3_723_004;
        assert_eq!(Value::Timestamp(ms).to_string(), "2023.01.02T01:02:03.004");
        let pair = Value::Pair(Box::new(Value::Int(1)), Box::new(Value::Int(0)));
        assert_eq!(pair.to_string(), "1:0");
    }
}
