//! A replica's pruned, projected read of a real chunk store answers what filtering every row
//! answers, over many files, row groups and in-memory rows, with NULLs, and for a table that
//! keeps only the last row of each key.

use std::sync::Arc;

use arrow::array::{AsArray, Int32Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef, TimeUnit};
use shoal_storage::{ChunkStore, Keep, Prune, ScanOptions, SortKey, StoreOptions, StoreStats};

use crate::pushdown::Filter;

const JAN1_MS: i64 = 1_672_531_200_000;
/// Rows per append; each flushed file holds two appends, so it has two row groups and more.
const APPEND_ROWS: i32 = 100_000;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("name", DataType::Utf8, true),
        Field::new("id", DataType::Int32, false),
    ]))
}

/// Ids `first..first + n`: one second apart, names cycling, NULL for every 11th id.
fn rows(first: i32, n: i32, id_of: impl Fn(i32) -> i32) -> RecordBatch {
    let ids: Vec<i32> = (first..first + n).collect();
    let names = ["Apple", "Microsoft", "Meta", "Google", "Amazon"];
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(TimestampMillisecondArray::from_iter_values(
                ids.iter().map(|&i| JAN1_MS + i64::from(i) * 1000),
            )),
            Arc::new(StringArray::from_iter(ids.iter().map(|&i| {
                (i % 11 != 0).then(|| names[i.rem_euclid(5) as usize])
            }))),
            Arc::new(Int32Array::from_iter_values(ids.iter().map(|&i| id_of(i)))),
        ],
    )
    .unwrap()
}

fn options() -> StoreOptions {
    StoreOptions {
        data_sync: false,
        ..StoreOptions::default()
    }
}

/// Three files of two appends each, then one append in memory.
async fn store(dir: &std::path::Path, key: &SortKey, id_of: fn(i32) -> i32) -> ChunkStore {
    let store = ChunkStore::create(dir, schema(), options()).await.unwrap();
    for seq in 0..7u64 {
        let first = seq as i32 * APPEND_ROWS;
        store
            .append(1, seq + 1, rows(first, APPEND_ROWS, id_of))
            .await
            .unwrap();
        if seq % 2 == 1 {
            store.flush(u64::MAX, key).await.unwrap();
        }
    }
    store
}

/// Ids of the rows `sql` keeps, sorted: read pruned and projected (`true`) or whole.
fn ids(store: &ChunkStore, key: &SortKey, sql: &str, pruned: bool) -> Vec<i32> {
    let filter = Arc::new(Filter::compile(&schema(), &[sql.to_owned()]).unwrap());
    let opts = if pruned {
        let mut columns: Vec<String> = filter.columns().into_iter().collect();
        columns.push("id".into());
        ScanOptions {
            columns: Some(columns),
            prune: Some(Arc::clone(&filter) as Arc<dyn Prune>),
            order: None,
        }
    } else {
        ScanOptions::default()
    };
    let batches = store.scan_stream(u64::MAX, key, opts).unwrap();
    let on = filter.on(batches.schema()).unwrap();
    let mut out: Vec<i32> = batches
        .flat_map(|b| {
            let kept = on.apply(&b.unwrap()).unwrap();
            let id = kept.schema().index_of("id").unwrap();
            kept.column(id)
                .as_primitive::<Int32Type>()
                .values()
                .to_vec()
        })
        .collect();
    out.sort_unstable();
    out
}

fn since(before: StoreStats, after: StoreStats) -> (u64, u64, u64) {
    (
        after.scan_files_pruned - before.scan_files_pruned,
        after.scan_row_groups_read - before.scan_row_groups_read,
        after.scan_row_groups_pruned - before.scan_row_groups_pruned,
    )
}

const FILTERS: [&str; 10] = [
    "id BETWEEN 1000 AND 2000",
    "name = 'Apple' AND id > 400000",
    "time >= CAST('2023-01-07 10:00:00' AS TIMESTAMP)",
    "time < CAST('2023-01-01 00:10:00' AS TIMESTAMP) OR id IN (5, 650000, 699999)",
    "name IS NULL AND id < 300000",
    "name IS NOT NULL AND id >= 690000",
    "name IN ('Meta', 'Google') AND id < 120000",
    "name <> 'Apple' AND id % 7 = 3",
    "id > 10000000",
    "id % 1000 = 0",
];

#[tokio::test]
async fn pruned_reads_answer_what_filtering_every_row_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let key = SortKey::new(vec!["name".into(), "time".into()]);
    let store = store(tmp.path(), &key, |i| i).await;
    for sql in FILTERS {
        let want = ids(&store, &key, sql, false);
        let before = store.stats();
        assert_eq!(ids(&store, &key, sql, true), want, "{sql}");
        let (files, _, groups) = since(before, store.stats());
        // Each file holds 200,000 consecutive ids sorted by (name, time), NULL names first:
        // its first row group holds NULL, Amazon, Apple and Google, its second Meta and
        // Microsoft, each over the file's whole id range.
        if sql.starts_with("id BETWEEN") {
            assert_eq!(
                files, 2,
                "{sql}: the last two files hold no id below 200,000"
            );
        }
        if sql.starts_with("name = 'Apple'") {
            assert_eq!(
                (files, groups),
                (2, 1),
                "{sql}: the last file's Meta/Microsoft group"
            );
        }
        if sql.starts_with("id > 1") {
            assert_eq!(files, 3, "{sql}: every file is pruned");
            assert!(want.is_empty());
        }
    }
}

#[tokio::test]
async fn within_a_row_group_only_the_pages_both_conditions_keep_are_decoded() {
    let tmp = tempfile::tempdir().unwrap();
    let key = SortKey::new(vec!["name".into(), "time".into()]);
    let store = store(tmp.path(), &key, |i| i).await;
    // In the first file, Apple's rows (ids 0..200,000, in time order) sit in its first row
    // group of 131,072 rows, among other names; pages hold 20,480 rows (the writer checks its
    // 20,000-row limit every 1,024). The pages of `name` that may hold Apple and those of `id`
    // that may hold 1000..2000 meet in at most two.
    let sql = "name = 'Apple' AND id BETWEEN 1000 AND 2000";
    let want = ids(&store, &key, sql, false);
    assert_eq!(
        want.len(),
        (1000..=2000).filter(|i| i % 5 == 0 && i % 11 != 0).count()
    );
    let before = store.stats().scan_file_rows_read;
    assert_eq!(ids(&store, &key, sql, true), want, "{sql}");
    let decoded = store.stats().scan_file_rows_read - before;
    assert!(decoded <= 2 * 20_480, "{sql}: decoded {decoded} rows");
}

#[tokio::test]
async fn a_table_keeping_the_last_row_of_each_key_is_pruned_only_by_its_key() {
    let tmp = tempfile::tempdir().unwrap();
    let key = SortKey::new(vec!["name".into(), "time".into()]).keeping(Keep::Last);
    // The keys of ids 0..1000 written again with ids from 5,000,000 and flushed, so the row
    // that survives is in a file whose ids a filter on `id` would rule out; those of ids
    // 1000..1010 again in memory.
    let store = store(tmp.path(), &key, |i| i).await;
    let again = |first, n, base| rows(first, n, move |i| i - first + base);
    store
        .append(1, 100, again(0, 1000, 5_000_000))
        .await
        .unwrap();
    store.flush(u64::MAX, &key).await.unwrap();
    store
        .append(1, 101, again(1000, 10, 6_000_000))
        .await
        .unwrap();
    let five_minutes = "time < CAST('2023-01-01 00:05:00' AS TIMESTAMP)";
    let cases: [(String, Vec<i32>); 4] = [
        ("id < 1000".into(), vec![]),
        (
            "id >= 5000000".into(),
            (5_000_000..5_001_000).chain(6_000_000..6_000_010).collect(),
        ),
        (five_minutes.into(), (5_000_000..5_000_300).collect()),
        (
            format!("name = 'Apple' AND {five_minutes} AND id < 1000"),
            vec![],
        ),
    ];
    for (sql, answer) in cases {
        let want = ids(&store, &key, &sql, false);
        assert_eq!(want, answer, "{sql}: the table's rows");
        let before = store.stats();
        assert_eq!(ids(&store, &key, &sql, true), want, "{sql}");
        let (files, _, _) = since(before, store.stats());
        if sql == five_minutes {
            assert!(
                files >= 2,
                "{sql}: files after the first minutes are skipped"
            );
        }
        if sql.starts_with("id") {
            assert_eq!(files, 0, "{sql}: `id` is not in the key");
        }
    }
}
