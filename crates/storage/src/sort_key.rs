//! [`SortKey`]: how a chunk's rows are ordered in its files, and which rows equal on that order
//! it keeps (DolphinDB's `sortColumns` and `keepDuplicates`), and [`KeepFilter`], which drops
//! the others from rows arriving in key order.
//!
//! Rows equal on the key arrive in lsn order (a flush sorts stably, a merge takes equal keys
//! from the earlier file first, and files hold disjoint lsn ranges in order), so "first" and
//! "last" written are the first and last of each run of equal keys. Keeping them is therefore
//! a function of the records alone: however a replica's records were cut into flushes and
//! merges, it keeps the same rows, and any number of passes keep what one pass keeps.

use arrow::array::{ArrayRef, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::row::{OwnedRow, RowConverter};
use std::path::{Path, PathBuf};

use crate::chunk_file::{key_columns, key_converter};
use crate::error::{StorageError, arrow_err};

/// Which of the rows equal on the whole sort key a chunk keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Keep {
    /// Every row.
    #[default]
    All,
    /// The first row written (lowest lsn, then the order within the append).
    First,
    /// The last row written.
    Last,
}

impl Keep {
    /// As DolphinDB spells it (and a chunk file's `shoal.keep_duplicates` metadata).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Keep::All => "ALL",
            Keep::First => "FIRST",
            Keep::Last => "LAST",
        }
    }
}

/// The order of a chunk's rows in its files (the table's `sortColumns`, then its time column),
/// and which duplicates of it the chunk keeps. The store does not keep it: it is the table's,
/// which a store reopened at start does not know, so callers pass it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SortKey {
    /// Column names, most significant first; empty: lsn order.
    pub columns: Vec<String>,
    /// With no column every row is kept, whatever this says.
    pub keep: Keep,
}

impl SortKey {
    /// Sorted by `columns`, every row kept.
    pub fn new(columns: Vec<String>) -> Self {
        SortKey {
            columns,
            keep: Keep::All,
        }
    }

    /// The same order, keeping `keep`.
    pub fn keeping(self, keep: Keep) -> Self {
        SortKey { keep, ..self }
    }

    /// Whether rows equal on the key are dropped.
    pub fn drops_duplicates(&self) -> bool {
        self.keep != Keep::All && !self.columns.is_empty()
    }
}

/// Passes on, from batches whose rows come in key order (equal keys in lsn order), the rows
/// the key keeps: every row, or the first or the last of each key, across batch boundaries.
/// For [`Keep::Last`] the last row seen is held back until the next batch (or
/// [`KeepFilter::finish`]) shows whether its key goes on.
pub(crate) struct KeepFilter {
    dir: PathBuf,
    /// `None` when every row is kept.
    dedup: Option<Dedup>,
}

struct Dedup {
    last: bool,
    conv: RowConverter,
    keys: Vec<usize>,
    /// The key of the last row seen.
    prev: Option<OwnedRow>,
    /// [`Keep::Last`]: the last row seen, not passed on yet.
    held: Option<RecordBatch>,
}

impl KeepFilter {
    /// The filter for `key` over rows of `schema` in store `dir`. An unknown column is
    /// [`StorageError::InvalidOptions`].
    pub(crate) fn new(dir: &Path, schema: &SchemaRef, key: &SortKey) -> Result<Self, StorageError> {
        let dedup = if key.drops_duplicates() {
            let keys = key_columns(dir, schema, &key.columns)?;
            Some(Dedup {
                last: key.keep == Keep::Last,
                conv: key_converter(dir, schema, &keys, "keeping the first or last duplicate")?,
                keys,
                prev: None,
                held: None,
            })
        } else {
            None
        };
        Ok(KeepFilter {
            dir: dir.to_path_buf(),
            dedup,
        })
    }

    /// Pass on to `sink` the rows of `batch` (which continues the rows pushed so far) that are
    /// kept, as far as known now.
    pub(crate) fn push(
        &mut self,
        batch: &RecordBatch,
        sink: &mut impl FnMut(RecordBatch) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let n = batch.num_rows();
        let Some(d) = self.dedup.as_mut() else {
            return sink(batch.clone());
        };
        if n == 0 {
            return Ok(());
        }
        let dir = &self.dir;
        let cols: Vec<ArrayRef> = d.keys.iter().map(|&k| batch.column(k).clone()).collect();
        let rows = d
            .conv
            .convert_columns(&cols)
            .map_err(arrow_err("encode sort keys", dir))?;
        let continues = d.prev.as_ref().is_some_and(|p| p.row() == rows.row(0));
        let differs = |a: usize, b: usize| rows.row(a) != rows.row(b);
        let kept: Vec<u32> = if d.last {
            // A row is the last of its key when the next row's key differs; the batch's last
            // row waits for the next batch.
            if let Some(held) = d.held.take()
                && !continues
            {
                sink(held)?;
            }
            d.held = Some(batch.slice(n - 1, 1));
            (0..n - 1)
                .filter(|&i| differs(i, i + 1))
                .map(|i| i as u32)
                .collect()
        } else {
            (0..n)
                .filter(|&i| {
                    if i == 0 {
                        !continues
                    } else {
                        differs(i - 1, i)
                    }
                })
                .map(|i| i as u32)
                .collect()
        };
        d.prev = Some(rows.row(n - 1).owned());
        if kept.len() == n {
            sink(batch.clone())
        } else if kept.is_empty() {
            Ok(())
        } else {
            let kept = UInt32Array::from(kept);
            sink(take_record_batch(batch, &kept).map_err(arrow_err("keep rows", dir))?)
        }
    }

    /// Pass on the row still held back ([`Keep::Last`]): the last of its key, since no row
    /// follows.
    pub(crate) fn finish(
        self,
        sink: &mut impl FnMut(RecordBatch) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        match self.dedup.and_then(|d| d.held) {
            Some(held) => sink(held),
            None => Ok(()),
        }
    }
}
