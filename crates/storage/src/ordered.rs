//! Scans for a top-k (`ORDER BY time DESC LIMIT 10`): [`ReadOrder`] makes a scan read its rows
//! best first by one column's statistics and stop once nothing left can beat the caller's k-th
//! best row ([`Bar`]). The in-memory rows come first (usually the newest, and without
//! statistics), then the row groups of the chunk files by the best value their statistics
//! allow: files by their MANIFEST entry (a file is opened only when reached), their row groups
//! by the footer's. Before each file or row group the bar is checked: one whose best possible
//! row ranks below it is skipped, and so is everything after it.
//!
//! Files are sorted by `sortColumns` then time, so a row group's rows are not in time order,
//! but its min and max still bound them. Within a row group, when every row the scan yields
//! counts (the caller applies no filter after it, [`ReadOrder::rows_count`]), the order column
//! is decoded first and the other columns only for the rows that may still be among the best k
//! (a Parquet row filter): the scan itself raises the bar as it reads.
//!
//! Values compare as ranks: an `i128`, larger is better (the value for a descending order, its
//! negation for an ascending one; NULL the best or the worst as the order puts NULLs). Only
//! columns whose values are integers (integers, dates, timestamps) are ranked; a scan of
//! another order column reads as if unordered.

use std::collections::BinaryHeap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type, SchemaRef};
use arrow::error::ArrowError;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowPredicateFn, ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
    RowFilter,
};

use crate::chunk_file::parquet_err;
use crate::error::{StorageError, arrow_err};
use crate::scan::{
    Batches, ColumnStats, ContainerStats, Prune, project, read_groups, row_group_stats,
};
use crate::store::Shared;

/// The best row a top-k has not beaten yet: the rank of its k-th best row so far (none before
/// it holds k rows). Shared between the scan, which skips what ranks below it, and whoever
/// keeps the top k. It only rises.
#[derive(Debug, Default)]
pub struct Bar(Mutex<Option<i128>>);

impl Bar {
    /// The bar, if set.
    pub fn get(&self) -> Option<i128> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Raises the bar to `rank` if that is higher.
    pub fn raise(&self, rank: i128) {
        let mut bar = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if bar.is_none_or(|b| rank > b) {
            *bar = Some(rank);
        }
    }

    /// Whether something whose best row ranks `best` cannot beat the bar.
    fn rules_out(&self, best: i128) -> bool {
        self.get().is_some_and(|bar| best < bar)
    }
}

/// The order a scan reads in, best first (see the module docs).
#[derive(Clone, Debug)]
pub struct ReadOrder {
    /// The column ordered by.
    pub column: String,
    pub descending: bool,
    pub nulls_first: bool,
    /// The caller's k-th best rank so far.
    pub bar: Arc<Bar>,
    /// `Some(k)` when every row the scan yields counts towards the caller's top `k` (no filter
    /// after the scan): the scan then raises the bar itself and decodes the other columns only
    /// of the rows that may make it.
    pub rows_count: Option<usize>,
}

impl ReadOrder {
    /// Whether values of `t` are ranked (integers, dates, timestamps).
    pub fn ranks(t: &DataType) -> bool {
        matches!(
            t,
            DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::UInt8
                | DataType::UInt16
                | DataType::UInt32
                | DataType::Date32
                | DataType::Date64
                | DataType::Timestamp(_, _)
        )
    }

    /// The rank of each value of `values` (of a ranked type).
    pub fn rank_all(&self, values: &ArrayRef) -> Result<Vec<i128>, ArrowError> {
        let ints = cast(values, &DataType::Int64)?;
        let ints = ints.as_primitive_opt::<Int64Type>().ok_or_else(|| {
            ArrowError::CastError(format!("{} is not ranked", values.data_type()))
        })?;
        Ok(ints.iter().map(|v| self.rank(v)).collect())
    }

    fn rank(&self, value: Option<i64>) -> i128 {
        match value {
            None if self.nulls_first => i128::MAX,
            None => i128::MIN,
            Some(v) if self.descending => i128::from(v),
            Some(v) => -i128::from(v),
        }
    }

    /// The best rank any row of each container of `stats` may have (unknown: the highest).
    pub(crate) fn best(&self, stats: &ContainerStats) -> Vec<i128> {
        let unknown = vec![i128::MAX; stats.containers()];
        let Some(c) = stats.column(&self.column) else {
            return unknown;
        };
        let bound = if self.descending { &c.max } else { &c.min };
        let Ok(bound) = self.rank_all(bound) else {
            return unknown;
        };
        (0..stats.containers())
            .map(|i| self.container_best(c, stats.rows().value(i), bound[i], i))
            .collect()
    }

    fn container_best(&self, c: &ColumnStats, rows: u64, bound: i128, i: usize) -> i128 {
        let nulls = c.nulls.is_valid(i).then(|| c.nulls.value(i));
        match nulls {
            // Its NULLs come first: as good as anything.
            _ if self.nulls_first && nulls != Some(0) => i128::MAX,
            // Nothing but NULLs, last.
            Some(n) if n == rows => i128::MIN,
            // A value unknown: ranked as a NULL first would be, the highest.
            _ if bound == self.rank(None) => i128::MAX,
            _ => bound,
        }
    }
}

/// One thing to read, ranked by its best row.
struct Pending {
    best: i128,
    what: Part,
}

enum Part {
    /// A chunk file not opened yet.
    File(PathBuf, File),
    /// One row group of an opened file.
    Group(PathBuf, File, ArrowReaderMetadata, usize),
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.best == other.best
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.best.cmp(&other.best)
    }
}

/// The unmerged scan in [`ReadOrder`]: the in-memory rows, then the best pending part first.
pub(crate) struct Ordered {
    shared: Arc<Shared>,
    schema: SchemaRef,
    indices: Vec<usize>,
    prune: Option<Arc<dyn Prune>>,
    order: ReadOrder,
    mem: std::vec::IntoIter<RecordBatch>,
    pending: BinaryHeap<Pending>,
    current: Option<Batches>,
    /// The k best ranks seen, when the scan keeps them itself.
    seen: Option<Arc<Mutex<TopRanks>>>,
}

impl Ordered {
    /// `files` (opened, each with the best rank its MANIFEST statistics allow, see
    /// [`ReadOrder::best`]) and the in-memory batches `mem`.
    pub(crate) fn new(
        shared: Arc<Shared>,
        schema: SchemaRef,
        indices: Vec<usize>,
        prune: Option<Arc<dyn Prune>>,
        order: ReadOrder,
        files: Vec<(PathBuf, File, i128)>,
        mem: Vec<RecordBatch>,
    ) -> Self {
        let pending = files
            .into_iter()
            .map(|(path, file, best)| Pending {
                best,
                what: Part::File(path, file),
            })
            .collect();
        let seen = order
            .rows_count
            .map(|k| Arc::new(Mutex::new(TopRanks::new(k, Arc::clone(&order.bar)))));
        Self {
            shared,
            schema,
            indices,
            prune,
            order,
            mem: mem.into_iter(),
            pending,
            current: None,
            seen,
        }
    }

    /// Nothing more is read: what is pending is skipped.
    fn stop(&mut self) {
        let (mut files, mut groups) = (0, 0);
        for p in self.pending.drain() {
            match p.what {
                Part::File(..) => files += 1,
                Part::Group(..) => groups += 1,
            }
        }
        self.shared.counters.add_files_pruned(files);
        self.shared.counters.add_row_groups(0, groups);
        self.current = None;
    }

    /// The row groups of the file `path` that the prune keeps, pending by their best rows.
    fn open(&mut self, path: PathBuf, file: File) -> Result<(), StorageError> {
        let meta = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new())
            .map_err(parquet_err("open", &path))?;
        let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(
            file.try_clone()
                .map_err(crate::error::io_err("open", &path))?,
            meta.clone(),
        );
        let stats = row_group_stats(&builder, &self.schema);
        let groups = stats.containers();
        let kept = match &self.prune {
            Some(p) => p.may_match(&stats),
            None => Vec::new(),
        };
        let best = self.order.best(&stats);
        let mut pruned = 0;
        for (g, best) in best.into_iter().enumerate() {
            if !kept.get(g).copied().unwrap_or(true) {
                pruned += 1;
                continue;
            }
            let file = file
                .try_clone()
                .map_err(crate::error::io_err("open", &path))?;
            self.pending.push(Pending {
                best,
                what: Part::Group(path.clone(), file, meta.clone(), g),
            });
        }
        self.shared.counters.add_row_groups(0, pruned);
        if pruned == groups as u64 {
            self.shared.counters.add_files_pruned(1);
        }
        Ok(())
    }

    /// The batches of row group `g`, only the scan's columns; with the scan keeping the best
    /// ranks, only the rows that may be among them.
    fn read(
        &self,
        path: PathBuf,
        file: File,
        meta: ArrowReaderMetadata,
        g: usize,
    ) -> Result<Batches, StorageError> {
        let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta);
        let at = builder.schema().index_of(&self.order.column);
        let filter = match (&self.seen, at) {
            (Some(seen), Ok(at)) => {
                let only = ProjectionMask::roots(builder.parquet_schema(), [at]);
                let (seen, order) = (Arc::clone(seen), self.order.clone());
                let predicate = ArrowPredicateFn::new(only, move |b: RecordBatch| {
                    let ranks = order.rank_all(b.column(0))?;
                    let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
                    Ok(seen.keep(&ranks))
                });
                Some(RowFilter::new(vec![Box::new(predicate)]))
            }
            _ => None,
        };
        self.shared.counters.add_row_groups(1, 0);
        read_groups(
            &self.shared,
            &path,
            builder,
            &self.schema,
            vec![g],
            |b| match filter {
                Some(f) => b.with_row_filter(f),
                None => b,
            },
        )
    }

    /// The in-memory batch, counted by the scan's own top k when it keeps one.
    fn in_memory(&self, batch: &RecordBatch) -> Result<RecordBatch, StorageError> {
        let rows = project(&self.shared.dir, batch, &self.indices, &self.schema)?;
        if let (Some(seen), Some(values)) = (&self.seen, rows.column_by_name(&self.order.column)) {
            let ranks = self
                .order
                .rank_all(values)
                .map_err(arrow_err("rank rows", &self.shared.dir))?;
            seen.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .keep(&ranks);
        }
        Ok(rows)
    }
}

impl Iterator for Ordered {
    type Item = Result<RecordBatch, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(batch) = self.mem.next() {
            return Some(self.in_memory(&batch));
        }
        loop {
            if let Some(batch) = self.current.as_mut().and_then(Iterator::next) {
                if batch.is_err() {
                    self.stop();
                }
                return Some(batch);
            }
            self.current = None;
            let next = self.pending.pop()?;
            // The best of what is left cannot beat the bar: neither can the rest.
            if self.order.bar.rules_out(next.best) {
                self.pending.push(next);
                self.stop();
                return None;
            }
            let step = match next.what {
                Part::File(path, file) => self.open(path, file),
                Part::Group(path, file, meta, g) => self
                    .read(path, file, meta, g)
                    .map(|b| self.current = Some(b)),
            };
            if let Err(e) = step {
                self.stop();
                return Some(Err(e));
            }
        }
    }
}

/// The `k` best ranks seen by a scan that counts every row it yields; raises the bar to the
/// k-th.
struct TopRanks {
    k: usize,
    best: Vec<i128>,
    bar: Arc<Bar>,
}

impl TopRanks {
    fn new(k: usize, bar: Arc<Bar>) -> Self {
        Self {
            k: k.max(1),
            best: Vec::new(),
            bar,
        }
    }

    /// Which of `ranks` may be among the k best, taking them into account: those not below
    /// the k-th best of them and of every rank seen before (ties kept).
    fn keep(&mut self, ranks: &[i128]) -> BooleanArray {
        // Once the bar is set most rows are below it: only the others can change the k best.
        let bar = self.bar.get();
        let above = |r: &&i128| bar.is_none_or(|b| **r >= b);
        self.best.extend(ranks.iter().filter(above));
        if self.best.len() > self.k {
            self.best
                .select_nth_unstable_by(self.k - 1, |a, b| b.cmp(a));
            self.best.truncate(self.k);
        }
        if self.best.len() == self.k
            && let Some(&kth) = self.best.iter().min()
        {
            self.bar.raise(kth);
        }
        let bar = self.bar.get();
        ranks
            .iter()
            .map(|r| Some(bar.is_none_or(|b| *r >= b)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scan_keeping_its_top_k_lets_through_only_rows_that_may_make_it() {
        let bar = Arc::new(Bar::default());
        let mut top = TopRanks::new(2, Arc::clone(&bar));
        let kept = |b: BooleanArray| b.iter().map(Option::unwrap).collect::<Vec<_>>();
        assert_eq!(kept(top.keep(&[5])), [true], "fewer than k: all");
        assert_eq!(bar.get(), None);
        assert_eq!(kept(top.keep(&[1, 9, 7, 7])), [false, true, true, true]);
        assert_eq!(bar.get(), Some(7));
        assert_eq!(kept(top.keep(&[6, 8])), [false, true]);
        assert_eq!(bar.get(), Some(8));
        // A bar raised by someone else (after a filter) counts too.
        bar.raise(100);
        assert_eq!(kept(top.keep(&[99, 100])), [false, true]);
    }

    #[test]
    fn ranks_put_the_wanted_end_and_nulls_where_the_order_says() {
        let order = |descending, nulls_first| ReadOrder {
            column: "t".into(),
            descending,
            nulls_first,
            bar: Arc::default(),
            rows_count: None,
        };
        let values: ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![Some(3), None]));
        assert_eq!(order(true, true).rank_all(&values).unwrap(), [3, i128::MAX]);
        assert_eq!(
            order(false, false).rank_all(&values).unwrap(),
            [-3, i128::MIN]
        );
        assert!(ReadOrder::ranks(&DataType::Timestamp(
            arrow::datatypes::TimeUnit::Millisecond,
            None
        )));
        assert!(!ReadOrder::ranks(&DataType::Utf8));
        assert!(!ReadOrder::ranks(&DataType::UInt64), "may not fit an i64");
    }
}
