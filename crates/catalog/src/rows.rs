//! Rows on their way into a table: Arrow IPC in and out, fitting a client's columns to the
//! table's types, and splitting rows by partition.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::Arc;

use arrow::array::{ArrayRef, UInt32Array};
use arrow::compute::{CastOptions, can_cast_types, cast_with_options, concat_batches, take};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::error::ArrowError;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;

use crate::partition::{PartitionKey, PartitionScheme};
use crate::table::TableDef;

/// Encodes batches as one Arrow IPC stream with `schema`.
pub fn encode_ipc(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>, ArrowError> {
    let mut w = StreamWriter::try_new(Vec::new(), schema)?;
    for b in batches {
        w.write(b)?;
    }
    w.finish()?;
    w.into_inner()
}

/// Decodes an Arrow IPC stream into one batch (its batches concatenated).
pub fn decode_ipc(bytes: &[u8]) -> Result<RecordBatch, ArrowError> {
    let reader = StreamReader::try_new(Cursor::new(bytes), None)?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    concat_batches(&schema, &batches)
}

/// Fits a client's batch to `table`: columns are matched by name (case-insensitive), every
/// column of the table must be present and no other; values are converted where no information
/// is lost or a value that does not fit is refused (Int64 → INT fails on overflow, any string or
/// dictionary-of-string type → SYMBOL/STRING, any timestamp unit → TIMESTAMP). A value of
/// another kind (a string into INT, a number into TIMESTAMP) is refused naming the column.
pub fn fit(table: &TableDef, batch: &RecordBatch) -> Result<RecordBatch, String> {
    let schema = table.schema();
    let got = batch.schema();
    if let Some(extra) = got
        .fields()
        .iter()
        .find(|f| table.column(f.name()).is_none())
    {
        return Err(format!(
            "table `{}` has no column `{}` (columns: {})",
            table.name,
            extra.name(),
            column_list(table)
        ));
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (col, field) in table.columns.iter().zip(schema.fields()) {
        let Some(idx) = got
            .fields()
            .iter()
            .position(|f| f.name().eq_ignore_ascii_case(&col.name))
        else {
            return Err(format!(
                "column `{}` ({}) of table `{}` is missing",
                col.name, col.ty, table.name
            ));
        };
        let array = batch.column(idx);
        let want = field.data_type();
        let array = if array.data_type() == want {
            array.clone()
        } else if compatible(array.data_type(), want) {
            let opts = CastOptions {
                safe: false,
                ..CastOptions::default()
            };
            cast_with_options(array, want, &opts)
                .map_err(|e| format!("column `{}` ({}): {e}", col.name, col.ty))?
        } else {
            return Err(format!(
                "column `{}` is {} ({want}); got values of type {}",
                col.name,
                col.ty,
                array.data_type()
            ));
        };
        if !field.is_nullable() && array.null_count() > 0 {
            return Err(format!(
                "column `{}` is the partition column and cannot hold nulls",
                col.name
            ));
        }
        columns.push(array);
    }
    RecordBatch::try_new(schema, columns).map_err(|e| e.to_string())
}

fn column_list(table: &TableDef) -> String {
    table
        .columns
        .iter()
        .map(|c| format!("{} {}", c.name, c.ty))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Conversions `fit` makes: within integers, within floats, integers to floats, within strings,
/// within timestamps, and timestamps to dates.
fn compatible(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    let family = match (from, to) {
        (f, t) if f.is_integer() && t.is_integer() => true,
        (f, Float64) if f.is_integer() || f.is_floating() => true,
        (Utf8 | LargeUtf8 | Utf8View, Utf8) => true,
        (Dictionary(_, v), Utf8) => matches!(**v, Utf8 | LargeUtf8),
        (Timestamp(_, _), Timestamp(_, _)) | (Timestamp(_, _) | Date64, Date32) => true,
        _ => false,
    };
    family && can_cast_types(from, to)
}

/// Splits a batch that [`fit`] the table into one batch per partition key, in key order.
pub fn split_by_partition(
    scheme: &PartitionScheme,
    table: &TableDef,
    batch: &RecordBatch,
) -> Result<Vec<(PartitionKey, RecordBatch)>, String> {
    let t = table
        .partition_type()
        .ok_or_else(|| format!("table `{}` has no partition column", table.name))?;
    let idx = table
        .columns
        .iter()
        .position(|c| c.name.eq_ignore_ascii_case(&table.partition_column))
        .ok_or_else(|| format!("table `{}` has no partition column", table.name))?;
    let keys = scheme.keys(t, batch.column(idx))?;
    let mut rows: BTreeMap<PartitionKey, Vec<u32>> = BTreeMap::new();
    for (i, k) in keys.into_iter().enumerate() {
        let i = u32::try_from(i).map_err(|_| "batch too large".to_owned())?;
        rows.entry(k).or_default().push(i);
    }
    if rows.len() == 1 {
        let (k, _) = rows.into_iter().next().ok_or("empty")?;
        return Ok(vec![(k, batch.clone())]);
    }
    rows.into_iter()
        .map(|(k, idx)| {
            let idx = UInt32Array::from(idx);
            let cols = batch
                .columns()
                .iter()
                .map(|c| take(c.as_ref(), &idx, None))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            RecordBatch::try_new(Arc::clone(batch.schema_ref()), cols)
                .map(|b| (k, b))
                .map_err(|e| e.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use arrow::array::{Array, Int32Array, Int64Array, StringArray, TimestampMillisecondArray};
    use arrow::datatypes::{Field, Schema, TimeUnit};

    use super::*;
    use crate::ddl::{Statement, parse};

    fn seed() -> (PartitionScheme, TableDef) {
        let Statement::CreateDatabase { scheme, .. } = parse(
            r#"create database "dfs://stock" partitioned by VALUE(2023.01.01..2023.01.10), engine='TSDB'"#,
        )
        .unwrap() else {
            panic!()
        };
        let Statement::CreateTable { table, .. } = parse(
            r#"create table "dfs://stock"."stock"(time TIMESTAMP, name SYMBOL, id INT) partitioned by time"#,
        )
        .unwrap() else {
            panic!()
        };
        (scheme, table)
    }

    const DAY: i64 = 86_400_000;
    const JAN1: i64 = 19_358 * DAY;

    fn client_batch(ids: Vec<i64>, times: Vec<i64>) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, false),
            Field::new(
                "time",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                false,
            ),
        ]);
        let names = StringArray::from(vec!["Apple"; ids.len()]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(names),
                Arc::new(arrow::array::TimestampMicrosecondArray::from(
                    times.iter().map(|t| t * 1000).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    #[test]
    fn fit_reorders_and_converts_lossless_types_and_split_groups_by_day() {
        let (scheme, table) = seed();
        let b = client_batch(vec![1, 2, 3], vec![JAN1, JAN1 + DAY, JAN1 + 5]);
        let fitted = fit(&table, &b).unwrap();
        assert_eq!(fitted.schema(), table.schema());
        let ids = fitted
            .column(2)
            .as_any()
            .downcast_ref::<Int32Array>()
            .unwrap();
        assert_eq!(ids.values(), &[1, 2, 3]);
        let t = fitted
            .column(0)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap();
        assert_eq!(t.value(2), JAN1 + 5);

        let parts = split_by_partition(&scheme, &table, &fitted).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].0.to_string(), "2023.01.01");
        assert_eq!(parts[0].1.num_rows(), 2);
        assert_eq!(parts[1].0.to_string(), "2023.01.02");

        let bytes = encode_ipc(fitted.schema_ref(), &[fitted.clone(), fitted.clone()]).unwrap();
        assert_eq!(decode_ipc(&bytes).unwrap().num_rows(), 6);
    }

    #[test]
    fn fit_refuses_what_does_not_fit_naming_the_column() {
        let (_, table) = seed();
        let overflow = client_batch(vec![i64::from(i32::MAX) + 1], vec![JAN1]);
        assert!(fit(&table, &overflow).unwrap_err().contains("`id`"));

        let wrong = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("time", DataType::Utf8, false),
                Field::new("name", DataType::Utf8, false),
                Field::new("id", DataType::Int32, false),
            ])),
            vec![
                Arc::new(StringArray::from(vec!["today"])),
                Arc::new(StringArray::from(vec!["Apple"])),
                Arc::new(Int32Array::from(vec![1])),
            ],
        )
        .unwrap();
        let e = fit(&table, &wrong).unwrap_err();
        assert!(e.contains("`time` is TIMESTAMP"), "{e}");

        let missing = wrong.project(&[1, 2]).unwrap();
        assert!(fit(&table, &missing).unwrap_err().contains("`time`"));
        let extra = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new(
                "price",
                DataType::Float64,
                true,
            )])),
            vec![Arc::new(arrow::array::Float64Array::from(vec![1.0]))],
        )
        .unwrap();
        let e = fit(&table, &extra).unwrap_err();
        assert!(e.contains("no column `price`"), "{e}");
    }
}
