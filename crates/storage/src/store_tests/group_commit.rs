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

fn idle_after(commit_idle: std::time::Duration) -> StoreOptions {
    StoreOptions {
        commit_idle,
        ..opts(true, 64 << 20)
    }
}

/// Waits (bounded) until the commit thread has parked.
async fn parked(store: &ChunkStore) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.commit_thread_running() {
        assert!(
            std::time::Instant::now() < deadline,
            "the commit thread did not park"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn an_idle_store_holds_no_thread_and_wakes_on_the_next_write() {
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(tmp.path(), idle_after(std::time::Duration::from_millis(20))).await;
    store.append(1, 1, rows(0..5)).await.unwrap();
    parked(&store).await;
    // Every kind of message starts it again: an append, a duplicate, a flush's freeze.
    assert_eq!(
        store.append(1, 2, rows(5..10)).await.unwrap(),
        AppendOutcome::Applied { lsn: 2 }
    );
    parked(&store).await;
    assert_eq!(
        store.append(1, 2, rows(5..10)).await.unwrap(),
        AppendOutcome::Duplicate { lsn: Some(2) }
    );
    parked(&store).await;
    store
        .flush(2, &crate::SortKey::new(Vec::new()))
        .await
        .unwrap();
    parked(&store).await;
    assert_eq!(store.commit_thread_starts(), 4);
    store.close().await.unwrap();
    let (store, _) = ChunkStore::open(tmp.path(), opts(true, 64 << 20))
        .await
        .unwrap();
    assert_eq!((store.last_lsn(), store.flushed_lsn()), (2, 2));
}

/// Appends arriving just as the thread parks are never lost: with a 1 ms idle time the thread
/// parks and restarts between most of these.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_racing_a_parking_thread_are_all_committed() {
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(tmp.path(), idle_after(std::time::Duration::from_millis(1))).await;
    for seq in 1..=300u64 {
        let outcome = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            store.append(7, seq, rows(0..1)),
        )
        .await
        .expect("an append queued as the thread parked was never committed")
        .unwrap();
        assert_eq!(outcome, AppendOutcome::Applied { lsn: seq });
        if seq % 3 == 0 {
            tokio::time::sleep(std::time::Duration::from_micros(900 + seq * 3)).await;
        }
    }
    assert_eq!(store.last_lsn(), 300);
    let starts = store.commit_thread_starts();
    assert!(starts > 20, "the thread parked only {} times", starts - 1);
    eprintln!("300 appends, {starts} commit threads");
}
