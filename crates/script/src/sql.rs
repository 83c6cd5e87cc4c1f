//! Writing SQL text for the host, and reading the text of its answers.

use arrow::array::{Array, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;

use crate::error::{Result, ScriptError};

/// `'text'`, quotes doubled.
pub fn string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `"name"`: exactly this name, whatever its case.
pub fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A table of a `dfs://` database, as the SQL engine names it.
pub fn table(db: &str, table: &str) -> String {
    format!("{}.{}", ident(db), ident(table))
}

/// Column `name` of `batch` as text (nulls as `None`).
pub fn column_text(batch: &RecordBatch, name: &str) -> Result<Vec<Option<String>>> {
    let column = batch.column_by_name(name).ok_or_else(|| {
        ScriptError::invalid(format!("the cluster's answer has no column `{name}`"))
    })?;
    let text = cast(column, &DataType::Utf8)
        .map_err(|e| ScriptError::invalid(format!("column `{name}` as text: {e}")))?;
    let text = text
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| ScriptError::invalid(format!("column `{name}` is not text")))?;
    Ok((0..text.len())
        .map(|i| (!text.is_null(i)).then(|| text.value(i).to_owned()))
        .collect())
}
