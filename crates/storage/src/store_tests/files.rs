//! Chunk files (storage format 2): flush, reopen from MANIFEST + WAL tail, crash points, WAL
//! truncation, and sizes on the seed schema.

use std::time::Instant;

use arrow::array::{Array, Int32Array, Int64Array, StringArray, TimestampMillisecondArray};
use arrow::datatypes::TimeUnit;
use arrow::util::display::array_value_to_string;

use super::*;
use crate::chunk_file;
use crate::flush::CrashPoint;
use crate::manifest::{self, FILES_DIR, MANIFEST_FILE};
use crate::{FlushReport, OpenReport, Record, ReplicaPosition, SortKey};

/// Every row of `batches` as text, sorted: equal for equal row multisets.
pub(super) fn multiset(batches: &[RecordBatch]) -> Vec<String> {
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
    out.sort();
    out
}

/// A sort key of column names, keeping every row.
pub(super) fn key(columns: &[&str]) -> SortKey {
    SortKey::new(columns.iter().map(|c| (*c).to_owned()).collect())
}

fn store_version(dir: &Path) -> u32 {
    let b = std::fs::read(dir.join("STORE")).unwrap();
    u32::from_le_bytes(b[8..12].try_into().unwrap())
}

pub(super) fn chunk_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir.join(FILES_DIR)) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

/// Records 1..=n from writer 1 (seq = lsn), 20 rows each; notes repeat, so the sort key has ties.
pub(super) async fn fill(store: &ChunkStore, seqs: std::ops::RangeInclusive<u64>) {
    for seq in seqs {
        let i = seq as i64 * 20;
        store.append(1, seq, rows(i..i + 20)).await.unwrap();
    }
}

/// Everything a reopen must reproduce.
#[derive(Debug, PartialEq)]
pub(super) struct State {
    position: ReplicaPosition,
    scan: Vec<String>,
    dedup: Vec<AppendOutcomeOrErr>,
}

#[derive(Debug, PartialEq)]
pub(super) enum AppendOutcomeOrErr {
    Outcome(AppendOutcome),
    OutsideWindow,
}

pub(super) async fn state(store: &ChunkStore, writer_seqs: &[(u64, u64)]) -> State {
    // Dedup answers, asked on the live store with pairs that are all applied (or below the
    // window), so asking changes nothing.
    let mut dedup = Vec::new();
    for &(w, s) in writer_seqs {
        dedup.push(match store.append(w, s, rows(0..1)).await {
            Ok(o) => {
                assert!(
                    matches!(o, AppendOutcome::Duplicate { .. }),
                    "{w}/{s}: {o:?}"
                );
                AppendOutcomeOrErr::Outcome(o)
            }
            Err(StorageError::OutsideDedupWindow { .. }) => AppendOutcomeOrErr::OutsideWindow,
            Err(e) => panic!("{e}"),
        });
    }
    State {
        position: store.position(),
        scan: multiset(&store.scan(u64::MAX).await.unwrap()),
        dedup,
    }
}

#[tokio::test]
async fn flush_then_reopen_replays_only_the_tail_and_keeps_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let o = opts(false, 4000);
    let store = new_store(dir, o.clone()).await;
    fill(&store, 1..=60).await;
    let asked: Vec<(u64, u64)> = (1..=60).map(|s| (1, s)).collect();
    let before_scan = multiset(&store.scan(u64::MAX).await.unwrap());
    let before_pos = store.position();

    let report = store.flush(u64::MAX, &key(&["note", "ts"])).await.unwrap();
    assert_eq!(
        (report.flushed_lsn, report.records, report.rows),
        (60, 60, 1200)
    );
    assert!(report.upgraded_store);
    assert_eq!(
        store.unflushed_records(),
        0,
        "no flushed batch stays in memory"
    );
    assert_eq!(store.view().in_memory(), 0);
    assert_eq!(store.position(), before_pos);
    assert_eq!(multiset(&store.scan(u64::MAX).await.unwrap()), before_scan);
    assert_eq!(store_version(dir), 2);

    // The tail after the flush.
    store.append(2, 1, rows(5000..5007)).await.unwrap();
    store.append(2, 2, rows(6000..6003)).await.unwrap();
    assert_eq!(store.unflushed_records(), 2);
    assert!(store.unflushed_bytes() > 0);
    let mut asked = asked;
    asked.extend([(2, 1), (2, 2)]);
    let before = state(&store, &asked).await;
    assert_eq!(before.position.last_lsn, 62);
    let bytes = store.bytes_on_disk();
    drop(store);

    let (store, report) = ChunkStore::open(dir, o.clone()).await.unwrap();
    assert_eq!(
        (report.flushed_lsn, report.records, report.files),
        (60, 2, 1)
    );
    assert!(report.skipped_segments > 0, "{report:?}");
    assert_eq!(store.bytes_on_disk(), bytes);
    assert_eq!(state(&store, &asked).await, before);
    assert_eq!(
        store.append(1, 7, rows(0..1)).await.unwrap(),
        AppendOutcome::Duplicate { lsn: Some(7) },
        "a flushed (writer, seq) is still a duplicate after reopen"
    );
    assert_eq!(store.append(1, 61, rows(0..1)).await.unwrap(), applied(63));
    assert_eq!(store.checksum_at(0), Some(0));
    assert_eq!(store.checksum_at(59), None, "below the flushed lsn");
    assert!(store.checksum_at(60).is_some());
    assert_eq!(store.checksum_at(62), Some(before.position.checksum));
}

#[tokio::test]
async fn scan_and_checksum_match_an_unflushed_replica() {
    // Two replicas with the same records, one flushed twice: same checksum, same rows.
    let tmp = tempfile::tempdir().unwrap();
    let a = new_store(&tmp.path().join("a"), opts(false, 4000)).await;
    let b = new_store(&tmp.path().join("b"), opts(false, 4000)).await;
    for s in [&a, &b] {
        fill(s, 1..=30).await;
    }
    a.flush(12, &key(&["note", "ts"])).await.unwrap();
    for s in [&a, &b] {
        fill(s, 31..=40).await;
    }
    assert_eq!(
        a.flush(u64::MAX, &key(&["note", "ts"]))
            .await
            .unwrap()
            .flushed_lsn,
        40
    );
    assert_eq!(a.flushed_lsn(), 40);
    assert_eq!(a.position(), b.position());
    assert_eq!(a.checksum_at(40), b.checksum_at(40));
    assert_eq!(
        multiset(&a.scan(u64::MAX).await.unwrap()),
        multiset(&b.scan(u64::MAX).await.unwrap())
    );
    // Every returned batch has the store's schema.
    for batch in a.scan(u64::MAX).await.unwrap() {
        assert_eq!(batch.schema().fields(), a.schema().fields());
    }
    // Nothing new: a no-op.
    let again = a.flush(u64::MAX, &key(&["note", "ts"])).await.unwrap();
    assert_eq!((again.records, again.files.is_empty()), (0, true));
    assert_eq!(chunk_files(&tmp.path().join("a")).len(), 2);
}

#[tokio::test]
async fn records_since_across_the_flushed_boundary_matches() {
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(tmp.path(), opts(false, 4000)).await;
    fill(&store, 1..=40).await;
    let cases = [
        (0, usize::MAX),
        (0, 1),
        (5, 3000),
        (17, 10_000),
        (29, 1),
        (39, 0),
    ];
    let mut before = Vec::new();
    for &(after, max) in &cases {
        before.push(store.records_since(after, max).await.unwrap());
    }
    store.flush(30, &key(&["note", "ts"])).await.unwrap();
    for (&(after, max), want) in cases.iter().zip(&before) {
        let got: Vec<Record> = store.records_since(after, max).await.unwrap();
        assert_eq!(&got, want, "records_since({after}, {max})");
    }
    // Also after a reopen, from the WAL on disk.
    drop(store);
    let (store, _) = ChunkStore::open(tmp.path(), opts(false, 4000))
        .await
        .unwrap();
    for (&(after, max), want) in cases.iter().zip(&before) {
        assert_eq!(&store.records_since(after, max).await.unwrap(), want);
    }
}

#[tokio::test]
async fn truncated_wal_answers_below_retained_log_and_reopens() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = new_store(dir, opts(false, 4000)).await;
    fill(&store, 1..=60).await;
    let segs_before = segments(dir).len();
    // Nothing flushed: nothing to truncate.
    assert_eq!(store.truncate_wal(u64::MAX).await.unwrap(), 1);
    assert_eq!(segments(dir).len(), segs_before);
    store.flush(45, &key(&["note", "ts"])).await.unwrap();
    let first = store.truncate_wal(u64::MAX).await.unwrap();
    assert!(first > 1 && first <= 46, "first retained {first}");
    assert!(segments(dir).len() < segs_before);
    assert_eq!(
        store.bytes_on_disk(),
        segments(dir).iter().map(|p| file_len(p)).sum::<u64>()
            + file_len(&dir.join("STORE"))
            + file_len(&dir.join(MANIFEST_FILE))
            + chunk_files(dir).iter().map(|p| file_len(p)).sum::<u64>()
    );
    let err = store.records_since(0, usize::MAX).await.unwrap_err();
    assert!(
        matches!(err, StorageError::BelowRetainedLog { first_retained, lsn: 1, .. } if first_retained == first),
        "{err}"
    );
    let tail = store.records_since(first - 1, usize::MAX).await.unwrap();
    assert_eq!(tail.first().map(|r| r.lsn), Some(first));
    assert_eq!(tail.last().map(|r| r.lsn), Some(60));
    let pos = store.position();
    drop(store);
    let (store, report) = ChunkStore::open(dir, opts(false, 4000)).await.unwrap();
    assert_eq!((report.flushed_lsn, report.records), (45, 15));
    assert_eq!(store.position(), pos);
    assert_eq!(store.row_count(), 1200);
}

#[tokio::test]
async fn rows_in_a_chunk_file_are_sorted_by_the_key_stably() {
    let tmp = tempfile::tempdir().unwrap();
    let o = opts(false, 1 << 20);
    let store = new_store(tmp.path(), o).await;
    // Descending ids, so lsn order and id order disagree; notes repeat (and are null for
    // every third id).
    for seq in 1..=30u64 {
        let i = 3000 - seq as i64 * 100;
        let batch = rows(i..i + 100);
        let notes: StringArray = (0..100)
            .map(|r| (r % 7 != 0).then(|| format!("n{}", r % 5)))
            .collect();
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                batch.column(0).clone(),
                batch.column(1).clone(),
                std::sync::Arc::new(notes),
            ],
        )
        .unwrap();
        store.append(1, seq, batch).await.unwrap();
    }
    let report = store.flush(u64::MAX, &key(&["note"])).await.unwrap();
    let file = tmp.path().join(FILES_DIR).join(&report.files[0]);
    let back = chunk_file::read(&file, &schema()).unwrap();
    let (mut prev_note, mut prev_pos): (Option<Option<String>>, (i64, i64)) = (None, (0, 0));
    let mut n = 0;
    for b in &back {
        let ts = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        let id = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
        let note = b.column(2).as_any().downcast_ref::<StringArray>().unwrap();
        for r in 0..b.num_rows() {
            n += 1;
            let cur = note.is_valid(r).then(|| note.value(r).to_string());
            // The lsn of a row: ids of record `seq` are 3000 - 100 * seq .. +100, so a smaller
            // id block means a later record; within a record, row order is id order.
            let pos = (-(id.value(r).div_euclid(100)), id.value(r));
            if let Some(p) = &prev_note {
                assert!(p <= &cur, "not sorted: {p:?} then {cur:?}");
                if p == &cur {
                    assert!(prev_pos < pos, "equal keys out of lsn order");
                }
            }
            assert_eq!(ts.value(r), 1_700_000_000_000 + id.value(r));
            prev_note = Some(cur);
            prev_pos = pos;
        }
    }
    assert_eq!(n, 3000);
    // The metadata the issue asks for.
    let meta =
        parquet::file::reader::SerializedFileReader::new(std::fs::File::open(&file).unwrap())
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
    assert_eq!(get("shoal.last_lsn").as_deref(), Some("30"));
    let m = manifest::read(tmp.path()).unwrap().unwrap().0;
    assert_eq!(m.files[0].columns[1].min.as_deref(), Some("0"));
    assert_eq!(m.files[0].columns[1].max.as_deref(), Some("2999"));
}

#[tokio::test]
async fn a_format_1_store_opens_as_before_and_stays_format_1_until_the_first_flush() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = new_store(dir, opts(false, 4000)).await;
    fill(&store, 1..=20).await;
    drop(store);
    let (store, report) = ChunkStore::open(dir, opts(false, 4000)).await.unwrap();
    assert_eq!(
        (report.records, report.flushed_lsn, report.skipped_segments),
        (20, 0, 0)
    );
    fill(&store, 21..=25).await;
    assert_eq!(store_version(dir), 1);
    assert!(!dir.join(MANIFEST_FILE).exists());
    assert!(!dir.join(FILES_DIR).exists());
    store.flush(u64::MAX, &key(&["note", "ts"])).await.unwrap();
    // The previous release reads STORE versions 1..=1: it refuses this directory by version.
    assert_eq!(store_version(dir), 2);
    assert!(dir.join(MANIFEST_FILE).exists());
}

#[tokio::test]
async fn an_unknown_sort_column_is_refused_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let o = opts(false, 4000);
    let store = new_store(tmp.path(), o).await;
    fill(&store, 1..=3).await;
    let err = store.flush(u64::MAX, &key(&["nope"])).await.unwrap_err();
    assert!(matches!(err, StorageError::InvalidOptions { .. }), "{err}");
    assert_eq!(store.unflushed_records(), 3);
    assert_eq!(store_version(tmp.path()), 1);
}

/// Crash at `at` during a flush: the reopened store equals the store before the crash.
async fn crash_during_flush(at: CrashPoint) -> OpenReport {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let o = opts(false, 4000);
    let store = new_store(dir, o.clone()).await;
    fill(&store, 1..=25).await;
    store.flush(10, &key(&["note", "ts"])).await.unwrap();
    fill(&store, 26..=40).await;
    let asked: Vec<(u64, u64)> = (1..=40).map(|s| (1, s)).collect();
    let before = state(&store, &asked).await;
    *store.shared().crash_after.lock().unwrap() = Some(at);
    let err = store
        .flush(u64::MAX, &key(&["note", "ts"]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("injected crash"), "{err}");
    // The live store is unchanged by the failed flush.
    assert_eq!(store.flushed_lsn(), 10);
    assert_eq!(state(&store, &asked).await, before);
    drop(store);

    let (store, report) = ChunkStore::open(dir, o.clone()).await.unwrap();
    assert_eq!(
        state(&store, &asked).await,
        before,
        "after a crash at {at:?}"
    );
    assert_eq!(store_version(dir), 2);
    // And it flushes and reopens on.
    store.flush(u64::MAX, &key(&["note", "ts"])).await.unwrap();
    fill(&store, 41..=42).await;
    let after = store.position();
    drop(store);
    let (store, again) = ChunkStore::open(dir, o).await.unwrap();
    assert_eq!(
        (store.position(), again.records, again.orphans_removed),
        (after, 2, 0)
    );
    report
}

#[tokio::test]
async fn crash_after_the_file_before_the_manifest() {
    let r = crash_during_flush(CrashPoint::File).await;
    assert_eq!((r.flushed_lsn, r.records, r.orphans_removed), (10, 30, 1));
}

#[tokio::test]
async fn crash_after_the_manifest_before_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = new_store(dir, opts(false, 4000)).await;
    fill(&store, 1..=5).await;
    *store.shared().crash_after.lock().unwrap() = Some(CrashPoint::Manifest);
    store
        .flush(u64::MAX, &key(&["note", "ts"]))
        .await
        .unwrap_err();
    drop(store);
    // STORE still says 1 (a format-1 build would replay the complete WAL); open finishes it.
    assert_eq!(store_version(dir), 1);
    let (_, r) = ChunkStore::open(dir, opts(false, 4000)).await.unwrap();
    assert_eq!((r.flushed_lsn, r.records), (5, 0));
    assert_eq!(store_version(dir), 2);

    let r = crash_during_flush(CrashPoint::Manifest).await;
    assert_eq!((r.flushed_lsn, r.records, r.orphans_removed), (40, 0, 0));
}

#[tokio::test]
async fn crash_after_store_before_memory_drop() {
    let r = crash_during_flush(CrashPoint::Store).await;
    assert_eq!((r.flushed_lsn, r.records, r.files), (40, 0, 2));
}

#[tokio::test]
async fn dedup_window_survives_flush_and_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let o = opts(false, 1 << 20);
    let store = new_store(tmp.path(), o.clone()).await;
    let hi = DEDUP_WINDOW + 100;
    for seq in (1..=hi).step_by(50) {
        store.append(9, seq, rows(0..1)).await.unwrap();
    }
    store.flush(u64::MAX, &key(&["note", "ts"])).await.unwrap();
    drop(store);
    let (store, _) = ChunkStore::open(tmp.path(), o).await.unwrap();
    assert!(matches!(
        store.append(9, 1, rows(0..1)).await,
        Err(StorageError::OutsideDedupWindow { .. })
    ));
    assert_eq!(
        store.append(9, 4051, rows(0..1)).await.unwrap(),
        AppendOutcome::Duplicate { lsn: Some(82) }
    );
    assert!(matches!(
        store.append(9, 4052, rows(0..1)).await.unwrap(),
        AppendOutcome::Applied { .. }
    ));
}

pub(super) fn seed_schema() -> SchemaRef {
    std::sync::Arc::new(Schema::new(vec![
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("name", DataType::Utf8, false),
        Field::new("id", DataType::Int32, false),
    ]))
}

/// The seed table's rows (`time TIMESTAMP, name SYMBOL, id INT`): one per id, a millisecond
/// apart, `name` cycling through five values.
pub(super) fn seed_rows(ids: std::ops::Range<i32>) -> RecordBatch {
    const NAMES: [&str; 5] = ["Apple", "Microsoft", "Meta", "Google", "Amazon"];
    let times: Vec<i64> = ids
        .clone()
        .map(|i| 1_672_531_200_000 + i64::from(i))
        .collect();
    let names = ids.clone().map(|i| NAMES[i.rem_euclid(5) as usize]);
    RecordBatch::try_new(
        seed_schema(),
        vec![
            std::sync::Arc::new(TimestampMillisecondArray::from(times)),
            std::sync::Arc::new(StringArray::from_iter_values(names)),
            std::sync::Arc::new(Int32Array::from_iter_values(ids)),
        ],
    )
    .unwrap()
}

/// Seed-schema rows less regular than the seed's: random ids and names, times a random
/// 0-3 ms apart (starting at `t0`).
pub(super) fn noisy_rows(n: usize, state: &mut u64, t0: &mut i64) -> RecordBatch {
    const NAMES: [&str; 5] = ["Apple", "Microsoft", "Meta", "Google", "Amazon"];
    let mut next = || {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *state >> 33
    };
    let mut times = Vec::with_capacity(n);
    let mut names = Vec::with_capacity(n);
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        *t0 += (next() % 4) as i64;
        times.push(*t0);
        names.push(NAMES[(next() % 5) as usize]);
        ids.push(next() as i32);
    }
    RecordBatch::try_new(
        seed_schema(),
        vec![
            std::sync::Arc::new(TimestampMillisecondArray::from(times)),
            std::sync::Arc::new(StringArray::from(names)),
            std::sync::Arc::new(Int32Array::from(ids)),
        ],
    )
    .unwrap()
}

#[tokio::test]
async fn a_million_noisy_seed_schema_rows_flush_to_under_a_third_of_the_wal() {
    let tmp = tempfile::tempdir().unwrap();
    let o = StoreOptions {
        data_sync: false,
        ..StoreOptions::default()
    };
    let store = ChunkStore::create(tmp.path(), seed_schema(), o)
        .await
        .unwrap();
    let (mut state, mut t0) = (7u64, 1_672_531_200_000i64);
    for seq in 1..=1000u64 {
        let batch = noisy_rows(1000, &mut state, &mut t0);
        store.append(1, seq, batch).await.unwrap();
    }
    let wal_bytes: u64 = segments(tmp.path()).iter().map(|p| file_len(p)).sum();
    // One-row appends of another writer go on during the flush: how long does one wait?
    let store = std::sync::Arc::new(store);
    let flushing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let appender = {
        let (store, flushing) = (store.clone(), flushing.clone());
        tokio::spawn(async move {
            let (mut n, mut worst) = (0u64, std::time::Duration::ZERO);
            while flushing.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                let t = Instant::now();
                store.append(2, n, seed_rows(0..1)).await.unwrap();
                worst = worst.max(t.elapsed());
            }
            (n, worst)
        })
    };
    let t = Instant::now();
    let report = store.flush(1000, &key(&["name", "time"])).await.unwrap();
    let flush_time = t.elapsed();
    flushing.store(false, std::sync::atomic::Ordering::SeqCst);
    let (appends, worst) = appender.await.unwrap();
    let file_bytes = report.file_bytes;
    assert_eq!(report.rows, 1_000_000);
    let ratio = file_bytes as f64 / wal_bytes as f64;
    println!(
        "1 M noisy seed-schema rows (random ids and names): WAL {wal_bytes} B, Parquet \
         {file_bytes} B ({:.2} B/row), ratio {ratio:.3}; flush {flush_time:?}, meanwhile \
         {appends} one-row appends, the slowest {worst:?} (debug build)",
        file_bytes as f64 / 1e6
    );
    assert!(ratio <= 0.3, "Parquet/WAL = {ratio:.3}");
}

/// 1 M seed rows in 1,000-row appends: Parquet bytes against WAL bytes, open time with and
/// without the flush.
#[tokio::test]
async fn a_million_seed_rows_flush_to_under_a_third_of_the_wal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let o = StoreOptions {
        data_sync: false,
        ..StoreOptions::default()
    };
    let store = ChunkStore::create(dir, seed_schema(), o.clone())
        .await
        .unwrap();
    for seq in 0..1000u64 {
        let i = seq as i32 * 1000;
        store
            .append(1, seq + 1, seed_rows(i..i + 1000))
            .await
            .unwrap();
    }
    let wal_bytes: u64 = segments(dir).iter().map(|p| file_len(p)).sum();
    let pos = store.position();
    drop(store);

    let t = Instant::now();
    let (store, report) = ChunkStore::open(dir, o.clone()).await.unwrap();
    let open_unflushed = t.elapsed();
    assert_eq!(report.records, 1000);
    let t = Instant::now();
    let FlushReport {
        rows, file_bytes, ..
    } = store
        .flush(u64::MAX, &key(&["name", "time"]))
        .await
        .unwrap();
    let flush_time = t.elapsed();
    assert_eq!(rows, 1_000_000);
    assert_eq!(store.position(), pos);
    drop(store);

    let t = Instant::now();
    let (store, report) = ChunkStore::open(dir, o).await.unwrap();
    let open_flushed = t.elapsed();
    assert_eq!((report.records, report.flushed_lsn), (0, 1000));
    assert_eq!(
        report.skipped_segments + 1,
        report.segments,
        "the flush rolled the WAL: only the new, empty segment is read"
    );
    assert_eq!(store.position(), pos);
    let t = Instant::now();
    let scanned: usize = store
        .scan(u64::MAX)
        .await
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum();
    let scan_time = t.elapsed();
    assert_eq!(scanned, 1_000_000);
    assert_eq!(store.truncate_wal(u64::MAX).await.unwrap(), 1001);
    let wal_left: u64 = segments(dir).iter().map(|p| file_len(p)).sum();
    let ratio = file_bytes as f64 / wal_bytes as f64;
    println!(
        "1 M seed rows in 1,000-row appends: WAL {wal_bytes} B ({:.2} B/row), Parquet \
         {file_bytes} B ({:.2} B/row), ratio {ratio:.3}; open without flush {open_unflushed:?}, \
         flush {flush_time:?}, open after flush {open_flushed:?}, scan of the file \
         {scan_time:?}, WAL after truncate_wal {wal_left} B (debug build)",
        wal_bytes as f64 / 1e6,
        file_bytes as f64 / 1e6,
    );
    assert!(ratio <= 0.3, "Parquet/WAL = {ratio:.3}");
}

#[tokio::test]
async fn a_flush_cancelled_midway_then_drop_leaves_a_consistent_store() {
    let tmp = tempfile::tempdir().unwrap();
    let o = opts(false, 1 << 20);
    let store = new_store(tmp.path(), o.clone()).await;
    fill(&store, 1..=200).await;
    let before = (
        store.position(),
        multiset(&store.scan(u64::MAX).await.unwrap()),
    );
    // The future is dropped while its blocking part may be running: drop waits for it, and
    // nothing writes to the directory afterwards.
    for micros in [1, 200, 2000] {
        let _ = tokio::time::timeout(
            std::time::Duration::from_micros(micros),
            store.flush(u64::MAX, &key(&["note", "ts"])),
        )
        .await;
    }
    drop(store);
    let listed = std::fs::read_dir(tmp.path()).unwrap().count();
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), listed);
    let (store, _) = ChunkStore::open(tmp.path(), o).await.unwrap();
    assert_eq!(
        (
            store.position(),
            multiset(&store.scan(u64::MAX).await.unwrap())
        ),
        before
    );
}

#[tokio::test]
async fn records_without_rows_move_the_flushed_lsn_without_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let o = opts(false, 4000);
    let store = new_store(tmp.path(), o.clone()).await;
    for seq in 1..=3 {
        store.append(1, seq, rows(0..0)).await.unwrap();
    }
    let r = store.flush(u64::MAX, &key(&["note", "ts"])).await.unwrap();
    assert_eq!((r.flushed_lsn, r.records, r.files.is_empty()), (3, 3, true));
    assert!(chunk_files(tmp.path()).is_empty());
    fill(&store, 4..=5).await;
    let pos = store.position();
    drop(store);
    let (store, report) = ChunkStore::open(tmp.path(), o).await.unwrap();
    assert_eq!(
        (report.flushed_lsn, report.records, report.files),
        (3, 2, 0)
    );
    assert_eq!(store.position(), pos);
    assert_eq!(
        store.append(1, 2, rows(0..1)).await.unwrap(),
        AppendOutcome::Duplicate { lsn: Some(2) }
    );
}

/// The restart cost the issue is about: many one-row appends. Open replays and decodes every
/// record before a flush, none after.
#[tokio::test]
async fn open_after_a_flush_of_100k_one_row_appends_replays_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let o = StoreOptions {
        data_sync: false,
        ..StoreOptions::default()
    };
    let store = std::sync::Arc::new(
        ChunkStore::create(dir, seed_schema(), o.clone())
            .await
            .unwrap(),
    );
    // 8 concurrent writers, so appends share commit groups as they do in a data node.
    let mut tasks = Vec::new();
    for w in 0..8u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for seq in 1..=12_500u64 {
                let id = (w * 12_500 + seq) as i32;
                store
                    .append(w + 1, seq, seed_rows(id..id + 1))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let wal_bytes: u64 = segments(dir).iter().map(|p| file_len(p)).sum();
    let store = std::sync::Arc::into_inner(store).unwrap();
    store.close().await.unwrap();
    let t = Instant::now();
    let (store, report) = ChunkStore::open(dir, o.clone()).await.unwrap();
    let open_unflushed = t.elapsed();
    assert_eq!(report.records, 100_000);
    let pos = store.position();
    let t = Instant::now();
    let flushed = store
        .flush(u64::MAX, &key(&["name", "time"]))
        .await
        .unwrap();
    let flush_time = t.elapsed();
    store.close().await.unwrap();
    let t = Instant::now();
    let (store, report) = ChunkStore::open(dir, o).await.unwrap();
    let open_flushed = t.elapsed();
    assert_eq!((report.records, store.position()), (0, pos));
    assert!(matches!(
        store.append(3, 12_500, seed_rows(0..1)).await.unwrap(),
        AppendOutcome::Duplicate { lsn: Some(_) }
    ));
    println!(
        "100k one-row appends: WAL {wal_bytes} B, Parquet {} B; open without flush \
         {open_unflushed:?}, flush {flush_time:?}, open after flush {open_flushed:?} (debug build)",
        flushed.file_bytes
    );
}

#[tokio::test]
async fn checksum_at_retained_answers_below_the_flushed_lsn_while_the_wal_holds_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let o = opts(false, 4000);
    let store = new_store(dir, o.clone()).await;
    fill(&store, 1..=60).await;
    let want: Vec<Option<u64>> = (0..=61).map(|l| store.checksum_at(l)).collect();
    store.flush(45, &key(&["note", "ts"])).await.unwrap();
    fill(&store, 61..=61).await;
    for lsn in 0..=60u64 {
        assert_eq!(
            store.checksum_at_retained(lsn).await.unwrap(),
            want[lsn as usize],
            "lsn {lsn}"
        );
    }
    assert_eq!(store.checksum_at(20), None);
    assert_eq!(store.checksum_at_retained(62).await.unwrap(), None);
    drop(store);
    let (store, _) = ChunkStore::open(dir, o.clone()).await.unwrap();
    for lsn in 0..=60u64 {
        assert_eq!(
            store.checksum_at_retained(lsn).await.unwrap(),
            want[lsn as usize],
            "lsn {lsn}"
        );
    }
    let first = store.truncate_wal(u64::MAX).await.unwrap();
    assert!(first > 1);
    for lsn in 1..first - 1 {
        assert_eq!(
            store.checksum_at_retained(lsn).await.unwrap(),
            None,
            "lsn {lsn}"
        );
    }
    for lsn in first - 1..=60 {
        assert_eq!(
            store.checksum_at_retained(lsn).await.unwrap(),
            want[lsn as usize],
            "lsn {lsn}"
        );
    }
    drop(store);
    let (store, _) = ChunkStore::open(dir, o).await.unwrap();
    for lsn in first - 1..=60 {
        assert_eq!(
            store.checksum_at_retained(lsn).await.unwrap(),
            want[lsn as usize],
            "lsn {lsn}"
        );
    }
    assert_eq!(store.checksum_at_retained(0).await.unwrap(), Some(0));
}

#[tokio::test]
async fn a_missing_manifest_or_chunk_file_is_refused_and_nothing_is_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let o = opts(false, 4000);
    let store = new_store(dir, o.clone()).await;
    fill(&store, 1..=30).await;
    store.flush(u64::MAX, &key(&["note", "ts"])).await.unwrap();
    store.truncate_wal(u64::MAX).await.unwrap();
    drop(store);
    let files = chunk_files(dir);
    assert_eq!(files.len(), 1);

    let saved = std::fs::read(dir.join(MANIFEST_FILE)).unwrap();
    std::fs::remove_file(dir.join(MANIFEST_FILE)).unwrap();
    let err = ChunkStore::open(dir, o.clone()).await.unwrap_err();
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
    assert_eq!(chunk_files(dir), files, "no chunk file deleted");
    std::fs::write(dir.join(MANIFEST_FILE), &saved).unwrap();

    let data = std::fs::read(&files[0]).unwrap();
    std::fs::write(&files[0], &data[..data.len() - 1]).unwrap();
    let err = ChunkStore::open(dir, o.clone()).await.unwrap_err();
    assert!(err.to_string().contains("MANIFEST says"), "{err}");
    std::fs::write(&files[0], &data).unwrap();

    let (store, _) = ChunkStore::open(dir, o).await.unwrap();
    assert_eq!(store.row_count(), 600);
}

#[tokio::test]
async fn appends_go_on_while_flushes_run() {
    let tmp = tempfile::tempdir().unwrap();
    let o = opts(false, 16_000);
    let store = std::sync::Arc::new(new_store(tmp.path(), o.clone()).await);
    let writers: Vec<_> = (1..=4u64)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for seq in 1..=150u64 {
                    let i = (w * 1000 + seq) as i64 * 10;
                    store.append(w, seq, rows(i..i + 10)).await.unwrap();
                }
            })
        })
        .collect();
    let mut flushes = 0;
    while writers.iter().any(|w| !w.is_finished()) {
        let r = store.flush(u64::MAX, &key(&["note", "ts"])).await.unwrap();
        flushes += u64::from(r.records > 0);
        // Every record is either in a file or in memory, never both or neither.
        let pos = store.position();
        let scanned: usize = store
            .scan(u64::MAX)
            .await
            .unwrap()
            .iter()
            .map(|b| b.num_rows())
            .sum();
        assert!(scanned as u64 >= pos.rows, "{scanned} < {}", pos.rows);
        tokio::task::yield_now().await;
    }
    for w in writers {
        w.await.unwrap();
    }
    store.flush(u64::MAX, &key(&["note", "ts"])).await.unwrap();
    assert!(flushes > 1, "flushes {flushes}");
    let before = (
        store.position(),
        multiset(&store.scan(u64::MAX).await.unwrap()),
    );
    assert_eq!(before.0.rows, 4 * 150 * 10);
    assert_eq!(before.1.len(), 6000);
    let mut dedup = before.1.clone();
    dedup.dedup();
    assert_eq!(dedup.len(), 6000, "no row twice");
    drop(std::sync::Arc::into_inner(store).unwrap());
    let (store, report) = ChunkStore::open(tmp.path(), o).await.unwrap();
    assert_eq!(report.records, 0);
    assert_eq!(
        (
            store.position(),
            multiset(&store.scan(u64::MAX).await.unwrap())
        ),
        before
    );
}

#[tokio::test]
async fn a_flush_failing_after_its_manifest_is_redone_without_replacing_the_listed_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let o = opts(false, 4000);
    let store = new_store(dir, o.clone()).await;
    fill(&store, 1..=10).await;
    *store.shared().crash_after.lock().unwrap() = Some(CrashPoint::Manifest);
    store
        .flush(u64::MAX, &key(&["note", "ts"]))
        .await
        .unwrap_err();
    let listed = manifest::read(dir).unwrap().unwrap().0.files[0].clone();
    // The store goes on and flushes the same lsns again.
    let r = store.flush(u64::MAX, &key(&["note", "ts"])).await.unwrap();
    assert_ne!(r.files.first(), Some(&listed.name));
    assert_eq!(
        file_len(&dir.join(FILES_DIR).join(&listed.name)),
        listed.bytes
    );
    let pos = store.position();
    drop(store);
    let (store, report) = ChunkStore::open(dir, o).await.unwrap();
    assert_eq!((report.files, report.orphans_removed), (1, 1));
    assert_eq!((store.position(), store.row_count()), (pos, 200));
}

#[tokio::test]
async fn a_flush_writes_runs_of_bounded_bytes_and_the_gauge_counts_what_memory_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let gauge = crate::MemoryGauge::default();
    let o = |run: u64| StoreOptions {
        memory: gauge.clone(),
        flush_run_bytes: run,
        ..opts(false, 4000)
    };
    let other = new_store(&tmp.path().join("other"), o(u64::MAX)).await;
    fill(&other, 1..=5).await;
    let held_by_other = gauge.bytes();
    assert!(held_by_other > 0);

    let dir = tmp.path().join("a");
    let a = new_store(&dir, o(u64::MAX)).await;
    fill(&a, 1..=40).await;
    let held = gauge.bytes() - held_by_other;
    assert_eq!(a.unflushed_bytes(), held);
    drop(a);
    assert_eq!(
        gauge.bytes(),
        held_by_other,
        "a closed store gives its memory back"
    );

    // Replayed batches are decoded from the WAL (one allocation each), so they may hold less
    // than the appended ones did.
    let (a, _) = ChunkStore::open(&dir, o(u64::MAX)).await.unwrap();
    let replayed = a.unflushed_bytes();
    assert!(replayed > 0);
    assert_eq!(gauge.bytes(), held_by_other + replayed);
    drop(a);

    // Runs of about a quarter of the records each.
    let (a, _) = ChunkStore::open(&dir, o(replayed / 4)).await.unwrap();
    let before = multiset(&a.scan(u64::MAX).await.unwrap());
    let r = a.flush(u64::MAX, &key(&["note", "ts"])).await.unwrap();
    assert_eq!((r.flushed_lsn, r.records, r.rows), (40, 40, 800));
    assert!((4..=5).contains(&r.files.len()), "{:?}", r.files);
    assert_eq!(chunk_files(&dir).len(), r.files.len());
    assert_eq!(
        gauge.bytes(),
        held_by_other,
        "flushed records and the working set are gone"
    );
    let position = a.position();
    drop(a);

    let (a, _) = ChunkStore::open(&dir, o(u64::MAX)).await.unwrap();
    assert_eq!(a.position(), position);
    assert_eq!(multiset(&a.scan(u64::MAX).await.unwrap()), before);
    assert_eq!(gauge.bytes(), held_by_other);
}
