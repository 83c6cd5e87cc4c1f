//! What a chunk holds, told without reading its files' rows ([`ChunkStore::summary`]): each
//! chunk file's MANIFEST statistics (rows, and per column min, max and nulls) and the rows
//! still in memory. Enough to answer `count(*)` or `min(time)` from metadata.

use arrow::datatypes::FieldRef;

use crate::error::StorageError;
use crate::manifest::FileMeta;
use crate::scan::{ContainerStats, ScanBatches, file_stats, project, read_columns};
use crate::store::ChunkStore;

/// The rows of a chunk up to some lsn: its files' statistics and its in-memory rows.
pub struct Summary {
    /// One container per chunk file, with the MANIFEST statistics of the columns asked for.
    pub files: ContainerStats,
    /// The in-memory records' rows (not flushed yet), only the columns asked for.
    pub memory: ScanBatches,
}

impl ChunkStore {
    /// The rows a [`ChunkStore::scan_stream`] up to lsn `last` reads in a table keeping every
    /// row (the chunk files holding any record ≤ `last`, then the in-memory records ≤ `last`),
    /// as the files' statistics of `columns` and the in-memory rows of `columns`. Both are
    /// taken under one look at the view: a flush in between would otherwise count its records
    /// twice or not at all. No file is opened.
    pub fn summary(&self, last: u64, columns: &[String]) -> Result<Summary, StorageError> {
        let shared = self.shared_arc();
        let (indices, schema) = read_columns(&shared, Some(columns))?;
        let fields: Vec<FieldRef> = schema.fields().iter().cloned().collect();
        let v = self.view();
        let listed: Vec<&FileMeta> = v.files.iter().filter(|f| f.first_lsn <= last).collect();
        let files = file_stats(&listed, &fields);
        let mem = v.batches_through(last);
        drop(v);
        let out = schema.clone();
        let rows = mem
            .into_iter()
            .map(move |b| project(&shared.dir, &b, &indices, &out));
        Ok(Summary {
            files,
            memory: ScanBatches::new(schema, rows),
        })
    }
}
