//! The original request's table, `dfs://stock`.`stock` (time TIMESTAMP, name SYMBOL, id INT):
//! its DDL and rows of it, as the writer, the benchmarks and the tests append them.

use std::sync::Arc;

use arrow::array::{Int32Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

pub const CREATE_DB: &str =
    r#"CREATE DATABASE "dfs://stock" PARTITIONED BY VALUE(2023.01.01..2023.01.10), ENGINE='TSDB'"#;
pub const CREATE_TABLE: &str = r#"create table "dfs://stock"."stock"(time TIMESTAMP, name SYMBOL, id INT) partitioned by time, sortColumns=[`name], keepDuplicates=ALL"#;
pub const DB: &str = "dfs://stock";
pub const TABLE: &str = "stock";

/// The seed's writer picks among these names.
pub const NAMES: [&str; 5] = ["Apple", "Microsoft", "Meta", "Google", "Amazon"];

pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("name", DataType::Utf8, false),
        Field::new("id", DataType::Int32, false),
    ]))
}

/// One row per id: `time = time_ms(id)`, `name` cycling through [`NAMES`] by id.
pub fn rows(ids: &[i32], time_ms: impl Fn(i32) -> i64) -> RecordBatch {
    let times: Vec<i64> = ids.iter().map(|i| time_ms(*i)).collect();
    let names = ids.iter().map(|i| NAMES[i.rem_euclid(5) as usize]);
    let columns: Vec<arrow::array::ArrayRef> = vec![
        Arc::new(TimestampMillisecondArray::from(times)),
        Arc::new(StringArray::from_iter_values(names)),
        Arc::new(Int32Array::from(ids.to_vec())),
    ];
    // Three columns of equal length matching the schema: cannot fail.
    RecordBatch::try_new(schema(), columns).unwrap_or_else(|_| RecordBatch::new_empty(schema()))
}
