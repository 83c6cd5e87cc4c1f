//! Compaction: merged files hold the same rows in the order one flush would write them, the
//! store reopens the same (also after a crash at each step), scans in progress read on.

use std::time::Instant;

use arrow::util::display::array_value_to_string;

use super::files::{chunk_files, fill, key, multiset, noisy_rows, seed_rows, seed_schema, state};
use super::*;
use crate::chunk_file;
use crate::flush::CrashPoint;
use crate::manifest;
use crate::{COMPACT_MIN_FILES, CompactReport, Compaction, ScanOptions, SortKey};

/// Every row of `batches` as text, in order.
fn sequence(batches: &[RecordBatch]) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        for row in 0..b.num_rows() {
            let cells: Vec<String> = b
                .columns()
                .iter()
                .map(|c| array_value_to_string(c, row).unwrap())
                .collect();
            out.push(cells.join("|"));
        }
    }
    out
}

/// The rows of the store's only chunk file, in file order.
fn only_file_rows(dir: &Path) -> Vec<String> {
    let files = chunk_files(dir);
    assert_eq!(files.len(), 1, "{files:?}");
    sequence(&chunk_file::read(&files[0], &schema()).unwrap())
}

/// 100 records of writer 1 in `flushes` flushes of 10, sorted by `note` only, so the rows whose
/// note is null (a third) tie and must stay in lsn order.
async fn flushed_ten_times(dir: &Path) -> ChunkStore {
    let store = new_store(dir, opts(false, 4000)).await;
    for f in 0..10u64 {
        fill(&store, f * 10 + 1..=f * 10 + 10).await;
        store.flush(u64::MAX, &key(&["note"])).await.unwrap();
    }
    store
}

fn pairs() -> Vec<(u64, u64)> {
    (1..=100).map(|s| (1, s)).collect()
}

#[tokio::test]
async fn ten_flushed_files_merge_into_one_sorted_smaller_file_as_one_flush_writes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    let store = flushed_ten_times(&dir).await;
    assert_eq!(store.file_count(), 10);
    assert!(store.compaction_due());
    let before = state(&store, &pairs()).await;

    let r = store
        .compact(&key(&["note"]), Compaction::Tiered)
        .await
        .unwrap();
    assert_eq!((r.inputs, r.rows, r.level, r.files), (10, 2000, 1, 1));
    assert!(
        r.file_bytes < r.input_bytes,
        "{} >= {}",
        r.file_bytes,
        r.input_bytes
    );
    assert_eq!((store.file_count(), chunk_files(&dir).len()), (1, 1));
    assert!(!store.compaction_due());
    assert_eq!(state(&store, &pairs()).await, before);

    // The same records flushed once: the same rows in the same order (sorted, ties in lsn
    // order).
    let once = new_store(&tmp.path().join("b"), opts(false, 4000)).await;
    fill(&once, 1..=100).await;
    once.flush(u64::MAX, &key(&["note"])).await.unwrap();
    let merged = only_file_rows(&dir);
    assert_eq!(merged, only_file_rows(&tmp.path().join("b")));
    assert!(merged[0].ends_with('|'), "nulls first: {}", merged[0]);

    let m = manifest::read(&dir).unwrap().unwrap().0;
    let f = &m.files[0];
    assert_eq!(
        (f.first_lsn, f.last_lsn, f.rows, f.level),
        (1, 100, 2000, 1)
    );
    assert_eq!(f.columns[1].min.as_deref(), Some("20"));
    assert_eq!(f.columns[1].max.as_deref(), Some("2019"));
    assert_eq!(f.columns[2].nulls, 667);
    let meta = parquet::file::reader::SerializedFileReader::new(
        std::fs::File::open(chunk_files(&dir)[0].clone()).unwrap(),
    )
    .unwrap();
    use parquet::file::reader::FileReader;
    let kv = meta
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .unwrap();
    let get = |k: &str| kv.iter().find(|e| e.key == k).and_then(|e| e.value.clone());
    assert_eq!(get("shoal.format").as_deref(), Some("2"));
    assert_eq!(get("shoal.first_lsn").as_deref(), Some("1"));
    assert_eq!(get("shoal.last_lsn").as_deref(), Some("100"));
    assert_eq!(get("shoal.rows").as_deref(), Some("2000"));
    assert_eq!(get("shoal.sort_key").as_deref(), Some("note"));

    // Nothing more is due.
    let again = store
        .compact(&key(&["note"]), Compaction::All)
        .await
        .unwrap();
    assert_eq!(
        again,
        CompactReport {
            files: 1,
            ..CompactReport::default()
        }
    );
}

#[tokio::test]
async fn a_compacted_store_reopens_replaying_nothing_and_answers_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = flushed_ten_times(dir).await;
    store
        .compact(&key(&["note"]), Compaction::Tiered)
        .await
        .unwrap();
    let before = state(&store, &pairs()).await;
    let bytes = store.bytes_on_disk();
    drop(store);

    let (store, r) = ChunkStore::open(dir, opts(false, 4000)).await.unwrap();
    assert_eq!((r.records, r.files, r.orphans_removed), (0, 1, 0));
    assert_eq!(state(&store, &pairs()).await, before);
    assert_eq!(store.bytes_on_disk(), bytes);
    assert_eq!(
        store.append(1, 37, rows(0..1)).await.unwrap(),
        AppendOutcome::Duplicate { lsn: Some(37) },
        "a (writer, seq) of a compacted range is still a duplicate after reopen"
    );
    assert_eq!(
        store.append(1, 101, rows(0..1)).await.unwrap(),
        applied(101)
    );
}

/// Crash at `at` during a compaction: the live store is unchanged, and so is the reopened one.
async fn crash_during_compaction(at: CrashPoint) -> crate::OpenReport {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = flushed_ten_times(dir).await;
    fill(&store, 101..=105).await;
    let mut asked = pairs();
    asked.extend((101..=105).map(|s| (1, s)));
    let before = state(&store, &asked).await;
    *store.shared().crash_after.lock().unwrap() = Some(at);
    let err = store
        .compact(&key(&["note"]), Compaction::Tiered)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("injected crash"), "{err}");
    assert_eq!(store.file_count(), 10);
    assert_eq!(state(&store, &asked).await, before);
    drop(store);

    let (store, report) = ChunkStore::open(dir, opts(false, 4000)).await.unwrap();
    assert_eq!(
        state(&store, &asked).await,
        before,
        "after a crash at {at:?}"
    );
    assert_eq!(chunk_files(dir).len() as u64, report.files);
    // And it compacts and reopens on.
    store
        .compact(&key(&["note"]), Compaction::All)
        .await
        .unwrap();
    assert_eq!(store.file_count(), 1);
    drop(store);
    let (store, again) = ChunkStore::open(dir, opts(false, 4000)).await.unwrap();
    assert_eq!((again.files, again.orphans_removed), (1, 0));
    assert_eq!(state(&store, &asked).await, before);
    report
}

#[tokio::test]
async fn crash_after_the_merged_file_before_the_manifest() {
    let r = crash_during_compaction(CrashPoint::MergedFile).await;
    assert_eq!((r.files, r.orphans_removed, r.records), (10, 1, 5));
}

#[tokio::test]
async fn crash_after_the_manifest_before_the_inputs_are_deleted() {
    let r = crash_during_compaction(CrashPoint::MergedManifest).await;
    assert_eq!((r.files, r.orphans_removed, r.records), (1, 10, 5));
}

#[tokio::test]
async fn a_scan_started_before_a_compaction_reads_every_row_of_the_deleted_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = flushed_ten_times(dir).await;
    let want = multiset(&store.scan(u64::MAX).await.unwrap());
    let started = store
        .scan_stream(u64::MAX, &SortKey::default(), ScanOptions::default())
        .unwrap();
    store
        .compact(&key(&["note"]), Compaction::Tiered)
        .await
        .unwrap();
    assert_eq!(chunk_files(dir).len(), 1, "the inputs are unlinked");
    let rows: Vec<RecordBatch> = started.collect::<Result<_, _>>().unwrap();
    assert_eq!(multiset(&rows), want);
}

#[tokio::test]
async fn closing_a_store_stops_its_compaction_and_it_reopens_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let o = StoreOptions {
        data_sync: false,
        ..StoreOptions::default()
    };
    let store = ChunkStore::create(dir, seed_schema(), o.clone())
        .await
        .unwrap();
    let sort_key = key(&["name", "time"]);
    let (mut state, mut t0) = (11u64, 1_672_531_200_000i64);
    for seq in 1..=10 {
        store
            .append(1, seq, noisy_rows(50_000, &mut state, &mut t0))
            .await
            .unwrap();
        store.flush(u64::MAX, &sort_key).await.unwrap();
    }
    let before = (
        store.position(),
        multiset(&store.scan(u64::MAX).await.unwrap()),
    );
    let store = std::sync::Arc::new(store);
    let compaction = {
        let (store, sort_key) = (store.clone(), sort_key.clone());
        tokio::spawn(async move { store.compact(&sort_key, Compaction::All).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    // Dropping the task drops its handle on the store; the merge runs on until the store is
    // dropped, which stops it at its next batch and waits for that.
    compaction.abort();
    let _ = compaction.await;
    let t = Instant::now();
    drop(std::sync::Arc::into_inner(store).unwrap());
    let closing = t.elapsed();
    assert!(closing.as_millis() < 1000, "closing took {closing:?}");

    let (store, r) = ChunkStore::open(dir, o).await.unwrap();
    assert_eq!(r.files, 10, "the compaction did not commit");
    assert_eq!(chunk_files(dir).len(), 10);
    assert_eq!(
        (
            store.position(),
            multiset(&store.scan(u64::MAX).await.unwrap())
        ),
        before
    );
}

#[tokio::test]
async fn appends_flushes_and_scans_go_on_while_compactions_run() {
    let tmp = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(new_store(tmp.path(), opts(false, 16_000)).await);
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for seq in 1..=400u64 {
                let i = seq as i64 * 10;
                store.append(1, seq, rows(i..i + 10)).await.unwrap();
                if seq % 5 == 0 {
                    store.flush(u64::MAX, &key(&["note", "ts"])).await.unwrap();
                }
            }
        })
    };
    let (mut merged, mut scans) = (0, 0);
    let sort_key = key(&["note", "ts"]);
    while !writer.is_finished() {
        let compaction = store.compact(&sort_key, Compaction::Tiered);
        let scan = async {
            let pos = store.position();
            let n: usize = store
                .scan(u64::MAX)
                .await
                .unwrap()
                .iter()
                .map(|b| b.num_rows())
                .sum();
            assert!(n as u64 >= pos.rows, "{n} < {}", pos.rows);
        };
        let (r, ()) = tokio::join!(compaction, scan);
        merged += r.unwrap().inputs;
        scans += 1;
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
    store.flush(u64::MAX, &key(&["note", "ts"])).await.unwrap();
    assert!(merged > 0 && scans > 1, "merged {merged}, scans {scans}");
    assert!(store.file_count() < 80, "{} files", store.file_count());
    let before = (
        store.position(),
        multiset(&store.scan(u64::MAX).await.unwrap()),
    );
    assert_eq!(before.1.len(), 4000);
    drop(std::sync::Arc::into_inner(store).unwrap());
    let (store, r) = ChunkStore::open(tmp.path(), opts(false, 16_000))
        .await
        .unwrap();
    assert_eq!((r.records, r.orphans_removed), (0, 0));
    assert_eq!(
        (
            store.position(),
            multiset(&store.scan(u64::MAX).await.unwrap())
        ),
        before
    );
}

#[tokio::test]
async fn eight_merged_files_merge_a_level_up_and_a_cold_chunk_into_one() {
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(tmp.path(), opts(false, 1 << 20)).await;
    let mut seq = 0;
    for _ in 0..COMPACT_MIN_FILES {
        for _ in 0..COMPACT_MIN_FILES {
            seq += 1;
            fill(&store, seq..=seq).await;
            store.flush(u64::MAX, &key(&["note", "ts"])).await.unwrap();
        }
        let r = store
            .compact(&key(&["note", "ts"]), Compaction::Tiered)
            .await
            .unwrap();
        assert_eq!(r.level, 1);
    }
    let r = store
        .compact(&key(&["note", "ts"]), Compaction::Tiered)
        .await
        .unwrap();
    assert_eq!((r.inputs, r.level, r.files), (8, 2, 1));
    fill(&store, 65..=66).await;
    store.flush(u64::MAX, &key(&["note", "ts"])).await.unwrap();
    assert!(!store.compaction_due());
    let before = multiset(&store.scan(u64::MAX).await.unwrap());
    let r = store
        .compact(&key(&["note", "ts"]), Compaction::All)
        .await
        .unwrap();
    assert_eq!((r.inputs, r.level, r.files, r.rows), (2, 3, 1, 66 * 20));
    assert_eq!(multiset(&store.scan(u64::MAX).await.unwrap()), before);
}

/// 20 flushes of 50k rows of the seed schema, all merged: sizes and times before and after.
async fn twenty_flushes_of_50k_rows_compacted(
    what: &str,
    mut rows: impl FnMut(i32) -> RecordBatch,
) {
    let tmp = tempfile::tempdir().unwrap();
    let o = StoreOptions {
        data_sync: false,
        ..StoreOptions::default()
    };
    let store = ChunkStore::create(tmp.path(), seed_schema(), o)
        .await
        .unwrap();
    let sort_key = key(&["name", "time"]);
    let mut sizes = Vec::new();
    for seq in 0..20 {
        store.append(1, seq as u64 + 1, rows(seq)).await.unwrap();
        sizes.push(store.flush(u64::MAX, &sort_key).await.unwrap().file_bytes);
    }
    let before = multiset(&store.scan(u64::MAX).await.unwrap());
    let scan = async || {
        let t = Instant::now();
        let n: usize = store
            .scan(u64::MAX)
            .await
            .unwrap()
            .iter()
            .map(|b| b.num_rows())
            .sum();
        assert_eq!(n, 1_000_000);
        t.elapsed()
    };
    let scan_before = scan().await;
    let t = Instant::now();
    let r = store.compact(&sort_key, Compaction::All).await.unwrap();
    let took = t.elapsed();
    let scan_after = scan().await;
    assert_eq!(multiset(&store.scan(u64::MAX).await.unwrap()), before);
    assert_eq!((r.inputs, r.rows, r.files), (20, 1_000_000, 1));
    assert_eq!(r.input_bytes, sizes.iter().sum::<u64>());
    println!(
        "20 flushes of 50k {what}: files of {}..={} B, {} B in all; compacted in {took:?} into \
         one of {} B ({:.3}× the inputs, {:.3} B/row); scan {scan_before:?} before, \
         {scan_after:?} after (debug build)",
        sizes.iter().min().unwrap(),
        sizes.iter().max().unwrap(),
        r.input_bytes,
        r.file_bytes,
        r.file_bytes as f64 / r.input_bytes as f64,
        r.file_bytes as f64 / 1e6,
    );
    assert!(r.file_bytes < r.input_bytes);
}

#[tokio::test]
async fn twenty_flushes_of_50k_seed_rows_compact_into_one_smaller_file() {
    twenty_flushes_of_50k_rows_compacted("seed rows", |i| seed_rows(i * 50_000..(i + 1) * 50_000))
        .await;
}

#[tokio::test]
async fn twenty_flushes_of_50k_noisy_rows_compact_into_one_smaller_file() {
    let (mut state, mut t0) = (7u64, 1_672_531_200_000i64);
    twenty_flushes_of_50k_rows_compacted("noisy seed-schema rows (random ids and names)", |_| {
        noisy_rows(50_000, &mut state, &mut t0)
    })
    .await;
}

#[tokio::test]
async fn a_compaction_counts_its_merge_in_the_memory_gauge_and_gives_it_back() {
    let tmp = tempfile::tempdir().unwrap();
    let gauge = crate::MemoryGauge::default();
    let store = new_store(
        &tmp.path().join("a"),
        StoreOptions {
            memory: gauge.clone(),
            ..opts(false, 4000)
        },
    )
    .await;
    // No wake-up stored by the appends and flushes.
    gauge.set_mark(u64::MAX);
    for f in 0..10u64 {
        fill(&store, f * 10 + 1..=f * 10 + 10).await;
        store.flush(u64::MAX, &key(&["note"])).await.unwrap();
    }
    assert_eq!(gauge.bytes(), 0, "everything is in files");
    // Any byte the merge holds crosses this mark, which stores a wake-up.
    gauge.set_mark(0);
    store
        .compact(&key(&["note"]), Compaction::Tiered)
        .await
        .unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(1), gauge.above_mark())
        .await
        .expect("the merge's batches were counted in the gauge");
    assert_eq!(gauge.bytes(), 0, "and given back when it ended");
}
