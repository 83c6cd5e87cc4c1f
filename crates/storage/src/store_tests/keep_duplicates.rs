//! `keepDuplicates=FIRST|LAST`: flushes and compactions write only the first or last row of
//! each sort key among the records they meet, and `scan_keeping` answers as if every duplicate
//! were gone, whether the rows are in memory, in one file or in several.

use std::collections::BTreeMap;

use super::files::{chunk_files, multiset};
use super::*;
use crate::chunk_file;
use crate::{Compaction, Keep, SortKey};

/// Rows `(note, ts, id)`: the sort key is `(note, ts)`, `id` tells which write a row came from.
fn keyed(rows: &[(&str, i64, i64)]) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
        ],
    )
    .unwrap()
}

fn sort_key(keep: Keep) -> SortKey {
    SortKey::new(vec!["note".into(), "ts".into()]).keeping(keep)
}

/// What the table holds after these appends (in lsn order), as `multiset` shows rows.
fn expected(keep: Keep, appends: &[Vec<(String, i64, i64)>]) -> Vec<String> {
    let mut kept: BTreeMap<(String, i64), i64> = BTreeMap::new();
    let mut all = Vec::new();
    for (note, ts, id) in appends.iter().flatten() {
        all.push(format!("{ts}|{id}|{note}"));
        match keep {
            Keep::First => {
                kept.entry((note.clone(), *ts)).or_insert(*id);
            }
            Keep::Last => {
                kept.insert((note.clone(), *ts), *id);
            }
            Keep::All => {}
        }
    }
    if keep != Keep::All {
        all = kept
            .into_iter()
            .map(|((note, ts), id)| format!("{ts}|{id}|{note}"))
            .collect();
    }
    all.sort();
    all
}

fn owned(rows: &[(&str, i64, i64)]) -> Vec<(String, i64, i64)> {
    rows.iter().map(|&(n, t, i)| (n.to_owned(), t, i)).collect()
}

async fn append_all(store: &ChunkStore, appends: &[Vec<(String, i64, i64)>], seq0: u64) {
    for (i, a) in appends.iter().enumerate() {
        let rows: Vec<(&str, i64, i64)> = a.iter().map(|(n, t, i)| (n.as_str(), *t, *i)).collect();
        store
            .append(1, seq0 + i as u64, keyed(&rows))
            .await
            .unwrap();
    }
}

async fn kept(store: &ChunkStore, key: &SortKey) -> Vec<String> {
    multiset(&store.scan_keeping(u64::MAX, key).await.unwrap())
}

#[tokio::test]
async fn a_flush_writes_the_first_or_last_row_of_each_key_in_lsn_order() {
    // Duplicates within one append and across appends.
    let appends = vec![
        owned(&[("a", 1, 1), ("b", 1, 2), ("a", 1, 3)]),
        owned(&[("a", 1, 4), ("c", 2, 5)]),
        owned(&[("b", 1, 6)]),
    ];
    for keep in [Keep::First, Keep::Last, Keep::All] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let key = sort_key(keep);
        let store = new_store(dir, opts(false, 1 << 20)).await;
        append_all(&store, &appends, 1).await;
        let want = expected(keep, &appends);
        assert_eq!(want.len(), if keep == Keep::All { 6 } else { 3 });
        assert_eq!(kept(&store, &key).await, want, "{keep:?}, in memory");

        let report = store.flush(u64::MAX, &key).await.unwrap();
        assert_eq!(report.rows, want.len() as u64, "{keep:?}");
        let files = chunk_files(dir);
        assert_eq!(files.len(), 1);
        let file_rows = chunk_file::read(&files[0], &schema()).unwrap();
        assert_eq!(multiset(&file_rows), want, "{keep:?}, the file");
        // The position counts the rows written, whatever is kept.
        assert_eq!(store.position().rows, 6);
        assert_eq!(kept(&store, &key).await, want, "{keep:?}, flushed");
        let checksum = store.checksum();
        drop(store);

        let (store, _) = ChunkStore::open(dir, opts(false, 1 << 20)).await.unwrap();
        assert_eq!(kept(&store, &key).await, want, "{keep:?}, reopened");
        assert_eq!(store.checksum(), checksum);
    }
}

#[tokio::test]
async fn ties_across_files_and_memory_are_settled_by_scans_and_by_compaction() {
    let appends = vec![
        owned(&[("a", 1, 1)]),
        owned(&[("a", 1, 2), ("b", 1, 3)]),
        owned(&[("b", 1, 4), ("a", 1, 5)]),
    ];
    for keep in [Keep::First, Keep::Last] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let key = sort_key(keep);
        let store = new_store(dir, opts(false, 1 << 20)).await;
        let want = expected(keep, &appends);
        assert_eq!(want.len(), 2);
        for (i, a) in appends.iter().enumerate() {
            append_all(&store, std::slice::from_ref(a), i as u64 + 1).await;
            if i < 2 {
                store.flush(u64::MAX, &key).await.unwrap();
            }
        }
        // Two files and memory each hold a row of key a.
        assert_eq!((store.file_count(), store.unflushed_records()), (2, 1));
        assert_eq!(kept(&store, &key).await, want, "{keep:?}: files + memory");
        store.flush(u64::MAX, &key).await.unwrap();
        assert_eq!(store.scan(u64::MAX).await.unwrap().len(), 3, "three files");
        assert_eq!(kept(&store, &key).await, want, "{keep:?}: three files");

        let r = store.compact(&key, Compaction::All).await.unwrap();
        assert_eq!((r.inputs, r.rows, r.files), (3, 2, 1), "{keep:?}");
        // One file holds every record: it is the answer as stored.
        assert_eq!(multiset(&store.scan(u64::MAX).await.unwrap()), want);
        assert_eq!(kept(&store, &key).await, want, "{keep:?}: compacted");
    }
}

/// Many duplicates per key across records, files and the merge's output batches (runs of a
/// key cut by batch boundaries), on two replicas that flush at different lsns: both keep the
/// same rows at every step, and their compacted files are identical row for row.
#[tokio::test]
async fn replicas_flushed_at_different_lsns_keep_the_same_rows_through_compaction() {
    // 24 appends of 1,000 rows over 1,500 keys: each key about 16 times.
    let appends: Vec<Vec<(String, i64, i64)>> = (0..24i64)
        .map(|a| {
            (0..1000i64)
                .map(|r| {
                    let n = (a * 7919 + r * 104_729) % 1500;
                    (format!("k{}", n % 50), n / 50, a * 1000 + r)
                })
                .collect()
        })
        .collect();
    for keep in [Keep::First, Keep::Last] {
        let tmp = tempfile::tempdir().unwrap();
        let key = sort_key(keep);
        let want = expected(keep, &appends);
        assert_eq!(want.len(), 1500);
        let mut replicas = Vec::new();
        for (name, every) in [("a", 3), ("b", 7)] {
            let dir = tmp.path().join(name);
            let store = new_store(&dir, opts(false, 1 << 20)).await;
            for (i, a) in appends.iter().enumerate() {
                append_all(&store, std::slice::from_ref(a), i as u64 + 1).await;
                if (i + 1) % every == 0 {
                    store.flush(u64::MAX, &key).await.unwrap();
                    assert_eq!(
                        kept(&store, &key).await,
                        expected(keep, &appends[..=i]),
                        "{keep:?} {name} after {} appends",
                        i + 1
                    );
                }
            }
            store.compact(&key, Compaction::Tiered).await.unwrap();
            assert_eq!(kept(&store, &key).await, want, "{keep:?} {name}");
            store.flush(u64::MAX, &key).await.unwrap();
            store.compact(&key, Compaction::All).await.unwrap();
            assert_eq!(store.file_count(), 1);
            replicas.push((dir, store));
        }
        let [(a_dir, a), (b_dir, b)] = &replicas[..] else {
            unreachable!()
        };
        assert_eq!(a.checksum(), b.checksum());
        let rows = |dir: &Path| {
            let f = chunk_files(dir);
            let batches = chunk_file::read(&f[0], &schema()).unwrap();
            concat(&batches)
        };
        let (a_rows, b_rows) = (rows(a_dir), rows(b_dir));
        assert_eq!(a_rows, b_rows, "{keep:?}: same rows in the same order");
        assert_eq!(multiset(&[a_rows]), want);
    }
}

fn concat(batches: &[RecordBatch]) -> RecordBatch {
    arrow::compute::concat_batches(&schema(), batches).unwrap()
}
