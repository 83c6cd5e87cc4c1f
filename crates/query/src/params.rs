//! Parameters of prepared statements (`WHERE id > ?`), bound with Flight SQL's DoPut.
//!
//! The Flight SQL service keeps no state: a prepared statement's handle is its SQL text. Binding
//! parameters (DoPut of `CommandPreparedStatementQuery` with one row of values) answers a new
//! handle holding the SQL and that row, Flight SQL's "updated handle" for stateless servers, so
//! any data node can run it and there is still nothing to clean up. `?` placeholders are
//! numbered `$1`, `$2`, ... in order (DataFusion plans numbered ones); `$n` works directly.

use std::io::Cursor;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use datafusion::common::ScalarValue;
use datafusion::dataframe::DataFrame;
use tonic::Status;

/// Starts a bound handle; SQL text never starts with a NUL byte.
const BOUND: &[u8] = b"\0shoal-bound-params-v1\0";

/// What a prepared statement's handle stands for (a DDL result aside, see `crate::ddl`).
#[derive(Debug, PartialEq)]
pub(crate) struct Bound {
    pub sql: String,
    /// Values for `$1`, `$2`, ...; empty when none were bound.
    pub params: Vec<ScalarValue>,
}

/// `sql` with each `?` outside string literals, quoted identifiers and comments replaced by
/// `$1`, `$2`, ... in order.
pub(crate) fn numbered(sql: &str) -> String {
    #[derive(PartialEq)]
    enum In {
        Code,
        Quote(char),
        LineComment,
        BlockComment,
    }
    let mut out = String::with_capacity(sql.len());
    let mut state = In::Code;
    let mut n = 0;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match state {
            In::Code => match c {
                '?' => {
                    n += 1;
                    out.push_str(&format!("${n}"));
                    continue;
                }
                '\'' | '"' => state = In::Quote(c),
                '-' if chars.peek() == Some(&'-') => state = In::LineComment,
                '/' if chars.peek() == Some(&'*') => state = In::BlockComment,
                _ => {}
            },
            // A doubled quote inside is two quotes in a row: leaving and entering again.
            In::Quote(q) if c == q => state = In::Code,
            In::LineComment if c == '\n' => state = In::Code,
            In::BlockComment if c == '*' && chars.peek() == Some(&'/') => {
                out.push(c);
                out.extend(chars.next());
                state = In::Code;
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

/// The statement's parameters, `$1`, `$2`, ..., with the types DataFusion inferred (`Null`
/// where it could not): a prepared statement's `parameter_schema`.
pub(crate) fn parameter_schema(df: &DataFrame) -> Result<Schema, Status> {
    let types = df
        .logical_plan()
        .get_parameter_types()
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    let mut params: Vec<(usize, String, DataType)> = types
        .into_iter()
        .map(|(name, t)| {
            let index = name
                .strip_prefix('$')
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| {
                    Status::invalid_argument(format!(
                        "parameter {name}: only positional parameters (`?` or `$1`) are supported"
                    ))
                })?;
            Ok((index, name, t.unwrap_or(DataType::Null)))
        })
        .collect::<Result<_, Status>>()?;
    params.sort_unstable_by_key(|(i, _, _)| *i);
    Ok(Schema::new(
        params
            .into_iter()
            .map(|(_, name, t)| Field::new(name, t, true))
            .collect::<Vec<_>>(),
    ))
}

/// The handle of `sql` with the one row of `values` bound to its parameters, in column order.
pub(crate) fn bind(sql: &str, values: &RecordBatch) -> Result<Vec<u8>, Status> {
    if values.num_rows() != 1 {
        return Err(Status::invalid_argument(format!(
            "a query takes one row of parameter values, got {}",
            values.num_rows()
        )));
    }
    let mut handle = BOUND.to_vec();
    let len = u32::try_from(sql.len()).map_err(|_| Status::invalid_argument("SQL too long"))?;
    handle.extend_from_slice(&len.to_le_bytes());
    handle.extend_from_slice(sql.as_bytes());
    let ipc = |e: arrow::error::ArrowError| Status::internal(format!("encode parameters: {e}"));
    let mut w = StreamWriter::try_new(&mut handle, &values.schema()).map_err(ipc)?;
    w.write(values).map_err(ipc)?;
    w.finish().map_err(ipc)?;
    Ok(handle)
}

/// What a (non-DDL) handle stands for: SQL text, or SQL with bound values.
pub(crate) fn parse(handle: &[u8]) -> Result<Bound, Status> {
    let bad = || Status::invalid_argument("the statement handle is not one this service made");
    let Some(rest) = handle.strip_prefix(BOUND) else {
        let sql = String::from_utf8(handle.to_vec())
            .map_err(|_| Status::invalid_argument("the statement handle is not SQL text"))?;
        return Ok(Bound {
            sql,
            params: Vec::new(),
        });
    };
    let (len, rest) = rest.split_first_chunk::<4>().ok_or_else(bad)?;
    let len = u32::from_le_bytes(*len) as usize;
    if rest.len() < len {
        return Err(bad());
    }
    let (sql, ipc) = rest.split_at(len);
    let sql = String::from_utf8(sql.to_vec()).map_err(|_| bad())?;
    let batch = StreamReader::try_new(Cursor::new(ipc), None)
        .ok()
        .and_then(|mut r| r.next()?.ok())
        .ok_or_else(bad)?;
    let params = batch
        .columns()
        .iter()
        .map(|c| ScalarValue::try_from_array(c.as_ref(), 0))
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    Ok(Bound { sql, params })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A one-row batch of `values` named `$1`, `$2`, ...
    fn values_row(values: &[ScalarValue]) -> Result<RecordBatch, Status> {
        let arrays = values
            .iter()
            .map(|v| v.to_array())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let fields: Vec<Field> = arrays
            .iter()
            .enumerate()
            .map(|(i, a)| Field::new(format!("${}", i + 1), a.data_type().clone(), true))
            .collect();
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
            .map_err(|e| Status::invalid_argument(e.to_string()))
    }

    #[test]
    fn question_marks_are_numbered_outside_literals_identifiers_and_comments() {
        assert_eq!(
            numbered("SELECT '?', \"a?\" FROM t WHERE a > ? AND b = 'it''s ?' AND c IN (?, ?)"),
            "SELECT '?', \"a?\" FROM t WHERE a > $1 AND b = 'it''s ?' AND c IN ($2, $3)"
        );
        assert_eq!(
            numbered("SELECT 1 -- why?\n/* or ? */ WHERE x = ?"),
            "SELECT 1 -- why?\n/* or ? */ WHERE x = $1"
        );
        assert_eq!(numbered("SELECT $1"), "SELECT $1");
    }

    #[test]
    fn a_bound_handle_carries_the_sql_and_the_values() {
        let row = values_row(&[
            ScalarValue::Int64(Some(5)),
            ScalarValue::Utf8(Some("Apple".into())),
            ScalarValue::Int32(None),
        ])
        .unwrap();
        let handle = bind("SELECT ?", &row).unwrap();
        assert_eq!(
            parse(&handle).unwrap(),
            Bound {
                sql: "SELECT ?".into(),
                params: vec![
                    ScalarValue::Int64(Some(5)),
                    ScalarValue::Utf8(Some("Apple".into())),
                    ScalarValue::Int32(None),
                ],
            }
        );
        assert_eq!(
            parse(b"SELECT 1").unwrap(),
            Bound {
                sql: "SELECT 1".into(),
                params: vec![],
            }
        );
        assert!(parse(&handle[..handle.len() / 2]).is_err());
        let two = arrow::compute::concat_batches(&row.schema(), [&row, &row]).unwrap();
        assert!(
            bind("SELECT ?", &two)
                .unwrap_err()
                .message()
                .contains("one row")
        );
    }
}
