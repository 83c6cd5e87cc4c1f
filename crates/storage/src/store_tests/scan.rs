//! `scan_stream`: files and row groups pruned by their statistics, only the columns asked for,
//! batch by batch, and the same rows as a whole read wherever pruning cannot tell.

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;

use super::files::{key, multiset};
use super::*;
use crate::chunk_file::ROW_GROUP_ROWS;
use crate::{Bar, ContainerStats, Keep, Prune, ReadOrder, ScanOptions, SortKey, StoreStats};

/// Keeps the containers whose range of the Int64 column `.0` meets `.1..=.2` (unknown
/// statistics: kept).
struct Range(&'static str, i64, i64);

impl Prune for Range {
    fn may_match(&self, stats: &ContainerStats) -> Vec<bool> {
        let Some(c) = stats.column(self.0) else {
            return vec![true; stats.containers()];
        };
        let (min, max) = (
            c.min.as_primitive::<Int64Type>(),
            c.max.as_primitive::<Int64Type>(),
        );
        (0..stats.containers())
            .map(|i| {
                min.is_null(i)
                    || max.is_null(i)
                    || (min.value(i) <= self.2 && max.value(i) >= self.1)
            })
            .collect()
    }

    fn only(&self, columns: &[String]) -> Option<Arc<dyn Prune>> {
        columns
            .iter()
            .any(|c| c == self.0)
            .then(|| Arc::new(Range(self.0, self.1, self.2)) as Arc<dyn Prune>)
    }
}

/// File A: ids 0..3·ROW_GROUP_ROWS-1000 (three row groups of ascending ids); file B: the next
/// 1000 ids; in memory: 10 more. Sorted by `id`.
async fn three_places(dir: &Path) -> (ChunkStore, i64) {
    let store = new_store(dir, opts(false, 64 << 20)).await;
    let a_end = 3 * ROW_GROUP_ROWS as i64 - 1000;
    store.append(1, 1, rows(0..a_end)).await.unwrap();
    store.flush(u64::MAX, &key(&["id"])).await.unwrap();
    store.append(1, 2, rows(a_end..a_end + 1000)).await.unwrap();
    store.flush(u64::MAX, &key(&["id"])).await.unwrap();
    store
        .append(1, 3, rows(a_end + 1000..a_end + 1010))
        .await
        .unwrap();
    (store, a_end + 1010)
}

fn read(store: &ChunkStore, opts: ScanOptions) -> (Vec<RecordBatch>, StoreStats) {
    let before = store.stats();
    let batches = store
        .scan_stream(u64::MAX, &SortKey::default(), opts)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    (batches, scanned_since(store, before))
}

/// The scan counters' growth since `before`.
fn scanned_since(store: &ChunkStore, before: StoreStats) -> StoreStats {
    let after = store.stats();
    StoreStats {
        scan_files_pruned: after.scan_files_pruned - before.scan_files_pruned,
        scan_row_groups_read: after.scan_row_groups_read - before.scan_row_groups_read,
        scan_row_groups_pruned: after.scan_row_groups_pruned - before.scan_row_groups_pruned,
        scan_file_rows_read: after.scan_file_rows_read - before.scan_file_rows_read,
        ..after
    }
}

fn ids(batches: &[RecordBatch]) -> Vec<i64> {
    let mut v: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            let i = b.schema().index_of("id").unwrap();
            b.column(i).as_primitive::<Int64Type>().values().to_vec()
        })
        .collect();
    v.sort_unstable();
    v
}

fn pruned_by(lo: i64, hi: i64) -> ScanOptions {
    ScanOptions {
        columns: None,
        prune: Some(Arc::new(Range("id", lo, hi))),
        order: None,
    }
}

#[tokio::test]
async fn a_scan_reads_only_the_files_row_groups_and_pages_whose_statistics_can_match() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, end) = three_places(tmp.path()).await;
    let group = ROW_GROUP_ROWS as i64;

    // Inside file A's second row group: file B is skipped by its MANIFEST range, A's other
    // row groups by their footer statistics.
    let (got, stats) = read(&store, pruned_by(group + 10, group + 20));
    assert_eq!(stats.scan_files_pruned, 1);
    assert_eq!(
        (stats.scan_row_groups_read, stats.scan_row_groups_pruned),
        (1, 2)
    );
    // Within it, only the rows of the page holding those ids (pages of at most 20,000 rows
    // here, the Parquet writer's default), by the page index.
    let decoded = stats.scan_file_rows_read;
    assert!(
        (11..=ROW_GROUP_ROWS as u64 / 4).contains(&decoded),
        "decoded {decoded} rows of a {ROW_GROUP_ROWS}-row group"
    );
    let in_range: Vec<i64> = ids(&got)
        .into_iter()
        .filter(|i| (group + 10..=group + 20).contains(i))
        .collect();
    assert_eq!(in_range, (group + 10..=group + 20).collect::<Vec<_>>());
    // The in-memory rows come as they are: the caller filters them.
    assert_eq!(ids(&got).len() as u64, decoded + 10);

    // Nothing in any file: neither is read; the in-memory rows still come.
    let (got, stats) = read(&store, pruned_by(end - 5, end + 100));
    assert_eq!(stats.scan_files_pruned, 2);
    assert_eq!(
        (stats.scan_row_groups_read, stats.scan_file_rows_read),
        (0, 0)
    );
    assert_eq!(ids(&got), (end - 10..end).collect::<Vec<_>>());

    // No pruning: every row once, in the chunk's schema.
    let (got, stats) = read(&store, ScanOptions::default());
    assert_eq!(stats.scan_row_groups_read, 4);
    assert_eq!(ids(&got), (0..end).collect::<Vec<_>>());
    assert_eq!(
        multiset(&got),
        multiset(&store.scan(u64::MAX).await.unwrap())
    );
}

#[tokio::test]
async fn a_scan_decodes_only_its_columns_and_a_reader_that_stops_reads_no_further() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, end) = three_places(tmp.path()).await;

    let only = |columns: &[&str]| ScanOptions {
        columns: Some(columns.iter().map(|c| (*c).to_owned()).collect()),
        prune: None,
        order: None,
    };
    // Asked out of order and twice: answered once each, in the chunk's order.
    let (got, _) = read(&store, only(&["note", "id", "note"]));
    let names: Vec<String> = got[0]
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, ["id", "note"]);
    assert_eq!(ids(&got), (0..end).collect::<Vec<_>>());
    let nulls: usize = got.iter().map(|b| b.column(1).null_count()).sum();
    assert_eq!(
        nulls,
        (0..end).filter(|i| i % 3 == 0).count(),
        "NULLs survive"
    );

    // No column at all (a count): the row counts survive.
    let (got, _) = read(&store, only(&[]));
    assert_eq!(
        got.iter().map(RecordBatch::num_rows).sum::<usize>(),
        end as usize
    );

    let err = store
        .scan_stream(u64::MAX, &SortKey::default(), only(&["nope"]))
        .err()
        .unwrap();
    assert!(matches!(err, StorageError::NoSuchColumn { .. }), "{err}");

    // A reader that takes one batch (a LIMIT met early) has not decoded the chunk.
    let before = store.stats().scan_file_rows_read;
    let mut scan = store
        .scan_stream(u64::MAX, &SortKey::default(), ScanOptions::default())
        .unwrap();
    assert!(scan.next().unwrap().unwrap().num_rows() > 0);
    drop(scan);
    let decoded = store.stats().scan_file_rows_read - before;
    assert!(
        decoded < (end as u64) / 4,
        "decoded {decoded} of {end} rows"
    );
}

/// Ids 0..1000 three times, twice flushed and once in memory, in a table keeping the last row
/// of each id.
async fn ids_three_times_keeping_last(dir: &Path) -> (ChunkStore, SortKey) {
    let store = new_store(dir, opts(false, 64 << 20)).await;
    let keep_last = key(&["id"]).keeping(Keep::Last);
    for seq in 1..=3 {
        store.append(1, seq, rows(0..1000)).await.unwrap();
        if seq < 3 {
            store.flush(u64::MAX, &keep_last).await.unwrap();
        }
    }
    (store, keep_last)
}

#[tokio::test]
async fn a_table_dropping_duplicates_is_pruned_only_by_conditions_on_its_key() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, keep_last) = ids_three_times_keeping_last(tmp.path()).await;
    let want = store.scan_keeping(u64::MAX, &keep_last).await.unwrap();
    assert_eq!(ids(&want), (0..1000).collect::<Vec<_>>());
    let scan = |prune: Range| {
        let before = store.stats().scan_files_pruned;
        let opts = ScanOptions {
            columns: Some(vec!["id".into()]),
            prune: Some(Arc::new(prune)),
            order: None,
        };
        let got = store
            .scan_stream(u64::MAX, &keep_last, opts)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        (got, store.stats().scan_files_pruned - before)
    };
    // On the key: both files skipped, the in-memory duplicates still merged.
    let (got, pruned) = scan(Range("id", 5000, 6000));
    assert_eq!(pruned, 2);
    assert_eq!(got[0].num_columns(), 1);
    assert_eq!(ids(&got), (0..1000).collect::<Vec<_>>());
    // On another column: nothing skipped (it could drop the duplicate that survives).
    let (got, pruned) = scan(Range("ts", 0, 1));
    assert_eq!(pruned, 0);
    assert_eq!(multiset(&got), multiset(&project_id(&want)));
}

fn project_id(batches: &[RecordBatch]) -> Vec<RecordBatch> {
    batches.iter().map(|b| b.project(&[1]).unwrap()).collect()
}

#[tokio::test]
async fn a_count_opens_no_file_stops_at_its_lsn_and_counts_one_row_per_kept_key() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, end) = three_places(tmp.path()).await;
    let a_end = end - 1010;
    let no_column = || ScanOptions {
        columns: Some(Vec::new()),
        prune: None,
        order: None,
    };
    let count = |store: &ChunkStore, last: u64, key: &SortKey| {
        store
            .scan_stream(last, key, no_column())
            .unwrap()
            .map(|b| b.unwrap().num_rows() as i64)
            .sum::<i64>()
    };

    let before = store.stats();
    assert_eq!(count(&store, u64::MAX, &SortKey::default()), end);
    let after = store.stats();
    assert_eq!(
        (after.scan_row_groups_read, after.scan_file_rows_read),
        (before.scan_row_groups_read, before.scan_file_rows_read),
        "a count is answered from the MANIFEST"
    );
    // Only the records up to the bound: file A is record 1, file B record 2, memory record 3.
    assert_eq!(count(&store, 1, &SortKey::default()), a_end);
    assert_eq!(count(&store, 2, &SortKey::default()), a_end + 1000);
    assert_eq!(count(&store, 0, &SortKey::default()), 0);

    // A table keeping one row per key counts what it keeps, not what its files hold.
    let tmp = tempfile::tempdir().unwrap();
    let (store, keep_last) = ids_three_times_keeping_last(tmp.path()).await;
    assert_eq!(count(&store, u64::MAX, &keep_last), 1000);
    assert_eq!(count(&store, u64::MAX, &SortKey::default()), 2000 + 1000);
}

#[tokio::test]
async fn a_summary_is_the_files_statistics_and_the_rows_in_memory_up_to_an_lsn() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path(), opts(false, 64 << 20)).await;
    store.append(1, 1, rows(0..100)).await.unwrap();
    store.flush(u64::MAX, &key(&["id"])).await.unwrap();
    store.append(1, 2, rows(100..110)).await.unwrap();
    store.append(1, 3, rows(110..115)).await.unwrap();
    let columns = ["note".to_owned(), "id".to_owned()];
    let summary = store.summary(u64::MAX, &columns).unwrap();
    let files = &summary.files;
    assert_eq!(files.rows().values().to_vec(), [100]);
    let id = files.column("id").unwrap();
    assert_eq!(
        (
            id.min.as_primitive::<Int64Type>().value(0),
            id.max.as_primitive::<Int64Type>().value(0),
            id.nulls.value(0)
        ),
        (0, 99, 0)
    );
    // Every third note is NULL: 0, 3, ..., 99.
    assert_eq!(files.column("note").unwrap().nulls.value(0), 34);
    assert_eq!(summary.memory.schema().fields().len(), 2);
    let memory: Vec<RecordBatch> = summary.memory.collect::<Result<_, _>>().unwrap();
    assert_eq!(ids(&memory), (100..115).collect::<Vec<_>>());
    // Up to lsn 2: the file and the first in-memory record only.
    let memory: Vec<RecordBatch> = store
        .summary(2, &columns)
        .unwrap()
        .memory
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(ids(&memory), (100..110).collect::<Vec<_>>());
    assert!(matches!(
        store.summary(2, &["nope".to_owned()]),
        Err(StorageError::NoSuchColumn { .. })
    ));
}

/// A scan of `store` in `order` whose consumer keeps the best `k` rows by `ts` and raises the
/// bar after each batch; answers the ids read and the scan's counters.
fn read_top(store: &ChunkStore, order: &ReadOrder, k: usize) -> (Vec<i64>, StoreStats) {
    let before = store.stats();
    let opts = ScanOptions {
        columns: Some(vec!["ts".into(), "id".into()]),
        prune: None,
        order: Some(order.clone()),
    };
    let mut ranks = Vec::new();
    let mut read = Vec::new();
    for b in store
        .scan_stream(u64::MAX, &SortKey::default(), opts)
        .unwrap()
    {
        let b = b.unwrap();
        ranks.extend(order.rank_all(b.column(0)).unwrap());
        ranks.sort_unstable_by(|a, b| b.cmp(a));
        if let Some(&kth) = ranks.get(k - 1) {
            order.bar.raise(kth);
        }
        read.extend(ids(&[b]));
    }
    read.sort_unstable();
    (read, scanned_since(store, before))
}

fn by_ts(descending: bool, rows_count: Option<usize>) -> ReadOrder {
    ReadOrder {
        column: "ts".into(),
        descending,
        nulls_first: false,
        bar: Arc::new(Bar::default()),
        rows_count,
    }
}

#[tokio::test]
async fn a_top_k_scan_reads_its_best_row_groups_first_and_stops_when_none_left_can_beat_it() {
    let dir = tempfile::tempdir().unwrap();
    let (store, end) = three_places(dir.path()).await;
    let b_start = end - 1010;
    let group = ROW_GROUP_ROWS as i64;

    // The latest 2,000 (filtered after the scan: the caller raises the bar): memory (10), file
    // B (1,000), then A's last row group; its other two cannot beat the 2,000th row.
    let (read, counted) = read_top(&store, &by_ts(true, None), 2_000);
    assert_eq!(read, (2 * group..end).collect::<Vec<_>>());
    assert_eq!(
        (counted.scan_row_groups_read, counted.scan_row_groups_pruned),
        (2, 2)
    );

    // The latest 10 with every row counting: memory holds them, no file is opened.
    let (read, counted) = read_top(&store, &by_ts(true, Some(10)), 10);
    assert_eq!(read, (end - 10..end).collect::<Vec<_>>());
    assert_eq!(
        (counted.scan_row_groups_read, counted.scan_files_pruned),
        (0, 2)
    );

    // The earliest 5: memory first (no statistics), then A's first row group, of which only
    // the rows that can still make it are decoded whole.
    let (read, counted) = read_top(&store, &by_ts(false, Some(5)), 5);
    let mut want: Vec<i64> = (0..5).chain(b_start + 1000..end).collect();
    want.sort_unstable();
    assert_eq!(read, want);
    assert_eq!(
        (counted.scan_row_groups_read, counted.scan_file_rows_read),
        (1, 5)
    );
}
