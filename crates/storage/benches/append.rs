//! Append throughput of one chunk store, side by side in one run:
//! data_sync on/off × 1 / 8 / 64 concurrent appenders, 1-row and 100-row batches.
//! Reports appends/s, rows/s and fdatasyncs per append (group commit at work).
//!
//! Run: `cargo bench -p shoal-storage --bench append` (set `SHOAL_BENCH_APPENDS` to change the
//! number of appends per configuration, default 4000).

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Float64Array, Int64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use shoal_storage::{ChunkStore, StoreOptions};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("ts", DataType::Int64, false),
        Field::new("id", DataType::Int64, false),
        Field::new("price", DataType::Float64, false),
    ]))
}

fn batch(schema: &SchemaRef, rows: usize) -> RecordBatch {
    let ids: Vec<i64> = (0..rows as i64).collect();
    RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(ids.clone())),
            Arc::new(Int64Array::from(ids)),
            Arc::new(Float64Array::from(vec![1.5; rows])),
        ],
    )
    .expect("batch")
}

async fn run(data_sync: bool, appenders: u64, rows: usize, total: u64) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let schema = schema();
    let opts = StoreOptions {
        data_sync,
        ..StoreOptions::default()
    };
    let store = Arc::new(
        ChunkStore::create(tmp.path(), schema.clone(), opts)
            .await
            .expect("create"),
    );
    let per = total / appenders;
    let start = Instant::now();
    let tasks: Vec<_> = (0..appenders)
        .map(|w| {
            let store = store.clone();
            let b = batch(&schema, rows);
            tokio::spawn(async move {
                for seq in 1..=per {
                    store.append(w, seq, b.clone()).await.expect("append");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let secs = start.elapsed().as_secs_f64();
    let n = per * appenders;
    let s = store.stats();
    println!(
        "data_sync={:<5} appenders={:>3} rows/batch={:>3}: {:>8.0} appends/s {:>10.0} rows/s  \
         fsyncs/append={:.3} avg group={:.1}",
        data_sync,
        appenders,
        rows,
        n as f64 / secs,
        (n as usize * rows) as f64 / secs,
        s.fsyncs as f64 / n as f64,
        n as f64 / s.groups.max(1) as f64,
    );
}

fn main() {
    let total: u64 = std::env::var("SHOAL_BENCH_APPENDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        for rows in [1, 100] {
            for data_sync in [true, false] {
                for appenders in [1, 8, 64] {
                    run(data_sync, appenders, rows, total).await;
                }
            }
        }
    });
}
