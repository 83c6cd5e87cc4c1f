//! Group commit, fsync counts, write failures.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_shares_fsyncs() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(new_store(tmp.path(), opts(true, 64 << 20)).await);
    let tasks: Vec<_> = (0..200u64)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move { store.append(w, 1, rows(0..5)).await })
        })
        .collect();
    let mut lsns = Vec::new();
    for t in tasks {
        match t.await.unwrap().unwrap() {
            AppendOutcome::Applied { lsn } => lsns.push(lsn),
            other => panic!("unexpected {other:?}"),
        }
    }
    lsns.sort();
    assert_eq!(lsns, (1..=200).collect::<Vec<_>>());
    let stats = store.stats();
    assert_eq!(stats.applied, 200);
    // Without any hook, groups form while the previous fsync runs (typically 30-50 fsyncs
    // here in a debug build; encoding, not the disk, limits the group size).
    assert!(
        stats.fsyncs < 100,
        "200 concurrent durable appends took {} fsyncs in {} groups",
        stats.fsyncs,
        stats.groups
    );
    eprintln!(
        "200 appends: {} fsyncs, {} groups",
        stats.fsyncs, stats.groups
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_appends_are_committed_as_one_group() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(new_store(tmp.path(), opts(true, 64 << 20)).await);
    // Hold the commit thread while 200 appends queue up, as they would behind a slow fsync.
    let held = store.shared().gate.lock().unwrap();
    let tasks: Vec<_> = (0..200u64)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move { store.append(w, 1, rows(0..5)).await })
        })
        .collect();
    while store
        .shared()
        .queued
        .load(std::sync::atomic::Ordering::SeqCst)
        < 200
    {
        // Blocking sleep: the appends run on the runtime's worker threads, not this one.
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(
        store.last_lsn(),
        0,
        "nothing is visible before its group is durable"
    );
    drop(held);
    for t in tasks {
        assert!(matches!(
            t.await.unwrap().unwrap(),
            AppendOutcome::Applied { .. }
        ));
    }
    let stats = store.stats();
    assert_eq!((stats.applied, store.last_lsn()), (200, 200));
    // The first request may have been taken alone before the rest arrived.
    assert!(stats.fsyncs <= 2, "{stats:?}");
}

#[tokio::test]
async fn data_sync_off_does_not_fsync_per_append() {
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(tmp.path(), opts(false, 64 << 20)).await;
    for seq in 1..=20 {
        store.append(1, seq, rows(0..2)).await.unwrap();
    }
    assert_eq!(store.stats().fsyncs, 0);
    drop(store);
    let store = new_store(&tmp.path().join("b"), opts(true, 64 << 20)).await;
    for seq in 1..=20 {
        store.append(1, seq, rows(0..2)).await.unwrap();
    }
    assert_eq!(
        store.stats().fsyncs,
        20,
        "sequential durable appends sync each"
    );
}

#[tokio::test]
async fn a_failed_sync_cuts_its_group_poisons_the_store_and_tells_the_hook() {
    let tmp = tempfile::tempdir().unwrap();
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = failures.clone();
    let o = StoreOptions {
        // Small segments: the failing group rolls to a new segment, which must go too.
        segment_bytes: 4000,
        on_failure: Some(Arc::new(move |e: &StorageError| {
            seen.lock().unwrap().push(e.to_string())
        })),
        ..StoreOptions::default()
    };
    let store = new_store(tmp.path(), o.clone()).await;
    assert_eq!(store.append(1, 1, rows(0..3)).await.unwrap(), applied(1));
    let segments_before = segments(tmp.path());
    let bytes_before: Vec<u64> = segments_before.iter().map(|p| file_len(p)).collect();
    store
        .shared()
        .fail_next_sync
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let err = store.append(1, 2, rows(0..200)).await.unwrap_err();
    assert!(matches!(err, StorageError::Failed { .. }), "{err}");
    assert!(err.to_string().contains("injected failure"), "{err}");
    assert_eq!(
        store.stats().segments_created,
        1,
        "the failed group rolled to a new segment"
    );
    assert_eq!(failures.lock().unwrap().len(), 1, "the hook fires once");
    assert!(failures.lock().unwrap()[0].contains("injected failure"));
    // The group's bytes, written before the failure, are gone again: files as before it.
    assert_eq!(segments(tmp.path()), segments_before);
    let bytes_after: Vec<u64> = segments_before.iter().map(|p| file_len(p)).collect();
    assert_eq!(bytes_after, bytes_before);
    // Later writes are refused too (the disk state is unknown), without firing the hook
    // again; reads still work.
    let err = store.append(1, 3, rows(0..3)).await.unwrap_err();
    assert!(matches!(err, StorageError::Failed { .. }), "{err}");
    assert_eq!(failures.lock().unwrap().len(), 1);
    assert_eq!((store.last_lsn(), store.row_count()), (1, 3));
    drop(store);
    // A reopen does not find the failed group; a retry applies it.
    let (store, report) = ChunkStore::open(tmp.path(), o).await.unwrap();
    assert_eq!((report.records, report.torn_tail_bytes), (1, 0));
    assert_eq!(store.append(1, 2, rows(0..3)).await.unwrap(), applied(2));
}
