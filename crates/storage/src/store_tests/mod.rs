//! Behaviour tests of [`crate::ChunkStore`] against real files in a temp directory.

mod api;
mod compaction;
mod files;
mod group_commit;
mod keep_duplicates;
mod recovery;
mod replication;
mod scan;
mod snapshot;
mod tail;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use crate::{AppendOutcome, ChunkStore, DEDUP_WINDOW, StorageError, StoreOptions};

pub(crate) fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("ts", DataType::Int64, false),
        Field::new("id", DataType::Int64, false),
        Field::new("note", DataType::Utf8, true),
    ]))
}

/// Rows `ids` of the test schema (a fresh schema Arc, as a client would build).
pub(crate) fn rows(ids: std::ops::Range<i64>) -> RecordBatch {
    let ts: Vec<i64> = ids.clone().map(|i| 1_700_000_000_000 + i).collect();
    let id: Vec<i64> = ids.clone().collect();
    let note: Vec<Option<String>> = ids
        .map(|i| (i % 3 != 0).then(|| format!("row {i}")))
        .collect();
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from(ts)),
            Arc::new(Int64Array::from(id)),
            Arc::new(StringArray::from(note)),
        ],
    )
    .unwrap()
}

pub(crate) fn opts(data_sync: bool, segment_bytes: u64) -> StoreOptions {
    StoreOptions {
        data_sync,
        segment_bytes,
        ..StoreOptions::default()
    }
}

pub(crate) fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    v.sort();
    v
}

pub(crate) fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

pub(crate) fn flip_byte(p: &Path, at: u64) {
    let mut b = std::fs::read(p).unwrap();
    b[at as usize] ^= 0x5a;
    std::fs::write(p, b).unwrap();
}

pub(crate) async fn new_store(dir: &Path, o: StoreOptions) -> ChunkStore {
    ChunkStore::create(dir, schema(), o).await.unwrap()
}

pub(crate) fn applied(lsn: u64) -> AppendOutcome {
    AppendOutcome::Applied { lsn }
}
