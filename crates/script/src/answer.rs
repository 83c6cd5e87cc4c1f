//! A script's answer as a client receives it: rows, or SQL for the engine to stream. Rows
//! carry their DolphinDB form in the schema metadata ([`FORM_KEY`]), so a client can give
//! back a scalar as a scalar (`version()` → `"0.2.0 2026.11.25"`) and nothing as nothing.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::Schema;
use datafusion::scalar::ScalarValue;

use crate::error::{Result, ScriptError};
use crate::sql;
use crate::value::Value;

/// Schema metadata key: `scalar`, `vector`, `table`, or `void` (the rows are the messages of
/// the DDL the script ran).
pub const FORM_KEY: &str = "shoal.script.form";

#[derive(Debug)]
pub enum Answer {
    Rows(RecordBatch),
    /// A select over the cluster's tables: SQL to run as any query is.
    Sql(String),
}

/// The answer for a script's last value; `messages` answer a script that ends without one.
pub fn of(value: Value, messages: &[String]) -> Result<Answer> {
    let (form, batch) = match value {
        Value::Query(q) => return Ok(Answer::Sql(q)),
        Value::DfsTable { db, table } => {
            return Ok(Answer::Sql(format!(
                "SELECT * FROM {}",
                sql::table(&db, &table)
            )));
        }
        Value::Void => {
            let rows: Vec<Value> = messages.iter().cloned().map(Value::Str).collect();
            ("void", one_column("message", &rows)?)
        }
        Value::Table(batch) => ("table", batch),
        Value::Vector(items) => ("vector", one_column("value", &items)?),
        scalar => ("scalar", one_column("value", &[scalar])?),
    };
    let metadata = HashMap::from([(FORM_KEY.to_owned(), form.to_owned())]);
    let schema = Arc::new(Schema::clone(&batch.schema()).with_metadata(metadata));
    let batch = batch
        .with_schema(schema)
        .map_err(|e| ScriptError::invalid(format!("answer: {e}")))?;
    Ok(Answer::Rows(batch))
}

fn one_column(name: &str, values: &[Value]) -> Result<RecordBatch> {
    RecordBatch::try_from_iter([(name, array(values))])
        .map_err(|e| ScriptError::invalid(format!("answer: {e}")))
}

/// One Arrow column of `values`: typed when they are all of one kind, else text.
fn array(values: &[Value]) -> ArrayRef {
    let scalars = values.iter().map(|v| match v {
        Value::Int(n) => ScalarValue::Int64(Some(*n)),
        Value::Double(d) => ScalarValue::Float64(Some(*d)),
        Value::Bool(b) => ScalarValue::Boolean(Some(*b)),
        Value::Date(d) => ScalarValue::Date32(Some(*d)),
        Value::Timestamp(t) => ScalarValue::TimestampMillisecond(Some(*t), None),
        other => ScalarValue::Utf8(Some(other.to_string())),
    });
    // Values of several kinds (or none) do not make one typed column.
    ScalarValue::iter_to_array(scalars).unwrap_or_else(|_| {
        Arc::new(StringArray::from_iter_values(
            values.iter().map(ToString::to_string),
        ))
    })
}
