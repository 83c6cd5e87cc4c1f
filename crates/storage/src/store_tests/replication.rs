//! Idempotency window, catch-up of a stale replica, checksums.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_seqs_in_the_window_apply_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(new_store(tmp.path(), opts(false, 1 << 20)).await);
    // A deterministic permutation of 1..=500, every seq sent twice, concurrently.
    let mut seqs: Vec<u64> = (1..=500u64).map(|i| (i * 211) % 500 + 1).collect();
    seqs.extend(seqs.clone().into_iter().rev());
    let tasks: Vec<_> = seqs
        .into_iter()
        .map(|seq| {
            let store = store.clone();
            tokio::spawn(async move {
                let i = seq as i64;
                (seq, store.append(42, seq, rows(i..i + 1)).await.unwrap())
            })
        })
        .collect();
    let mut applied_seqs = Vec::new();
    for t in tasks {
        let (seq, out) = t.await.unwrap();
        if let AppendOutcome::Applied { .. } = out {
            applied_seqs.push(seq);
        }
    }
    applied_seqs.sort();
    assert_eq!(applied_seqs, (1..=500).collect::<Vec<_>>());
    assert_eq!((store.row_count(), store.stats().duplicates), (500, 500));
    let mut ids: Vec<i64> = store
        .scan(u64::MAX)
        .await
        .unwrap()
        .iter()
        .map(|b| {
            b.column(1)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .value(0)
        })
        .collect();
    ids.sort();
    assert_eq!(ids, (1..=500).collect::<Vec<_>>());

    // Far ahead, then seqs older than the window, never applied or applied (seq 1): refused
    // alike, naming writer, seq and window, and nothing is written.
    let far = 500 + DEDUP_WINDOW + 100;
    assert_eq!(
        store.append(42, far, rows(0..1)).await.unwrap(),
        applied(501)
    );
    for old in [far - DEDUP_WINDOW - 1, 1] {
        let err = store.append(42, old, rows(0..1)).await.unwrap_err();
        assert!(
            matches!(err, StorageError::OutsideDedupWindow { writer_id: 42, seq, highest, window, .. }
                if seq == old && highest == far && window == DEDUP_WINDOW),
            "{err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("writer 42 seq {old} is older than")) && msg.contains("window"),
            "{msg}"
        );
        // A replica applying such a record refuses it the same way.
        let err = store.apply_at(502, 42, old, rows(0..1)).await.unwrap_err();
        assert!(
            matches!(err, StorageError::OutsideDedupWindow { .. }),
            "{err}"
        );
    }
    assert_eq!(store.last_lsn(), 501);
    // A retry inside the window is still a duplicate with its lsn.
    assert_eq!(
        store.append(42, far, rows(0..1)).await.unwrap(),
        AppendOutcome::Duplicate { lsn: Some(501) }
    );
    // At the window's edge: tracked exactly, so applied.
    assert_eq!(
        store
            .append(42, far - DEDUP_WINDOW, rows(0..1))
            .await
            .unwrap(),
        applied(502)
    );
}

#[tokio::test]
async fn replica_catch_up_with_records_since_and_apply_at() {
    let tmp = tempfile::tempdir().unwrap();
    let primary = new_store(&tmp.path().join("a"), StoreOptions::default()).await;
    for seq in 1..=20u64 {
        let i = seq as i64 * 7;
        primary.append(seq % 3, seq, rows(i..i + 7)).await.unwrap();
    }
    let replica = new_store(&tmp.path().join("b"), StoreOptions::default()).await;
    for r in primary
        .records_since(0, usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .take(5)
    {
        let out = replica
            .apply_at(r.lsn, r.writer_id, r.seq, r.batch)
            .await
            .unwrap();
        assert_eq!(out, applied(r.lsn));
    }
    // A gap is refused, naming the expected lsn; nothing is written.
    let r10 = primary.records_since(9, 1).await.unwrap().remove(0);
    let err = replica
        .apply_at(r10.lsn, r10.writer_id, r10.seq, r10.batch)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::LsnMismatch {
                expected: 6,
                got: 10,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("expected lsn 6"), "{err}");
    assert_eq!(replica.last_lsn(), 5);
    // A resent record is a duplicate, not an error.
    let r3 = primary.records_since(2, 1).await.unwrap().remove(0);
    assert_eq!(
        replica
            .apply_at(3, r3.writer_id, r3.seq, r3.batch)
            .await
            .unwrap(),
        AppendOutcome::Duplicate { lsn: Some(3) }
    );
    // Catch up in small pages (bounded by bytes).
    let one_record = primary.records_since(0, 0).await.unwrap();
    assert_eq!(one_record.len(), 1, "max_bytes 0 still returns one record");
    let mut pages = 0;
    loop {
        let page = primary
            .records_since(replica.last_lsn(), 3000)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        pages += 1;
        let (n, fsyncs) = (page.len() as u64, replica.stats().fsyncs);
        let outcomes = replica.apply_records(page).await.unwrap();
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, AppendOutcome::Applied { .. }))
        );
        // Queued together, a page shares commit groups instead of an fdatasync per record.
        if n >= 4 {
            assert!(replica.stats().fsyncs - fsyncs < n, "{n} records");
        }
    }
    assert!(pages > 1, "pages are bounded by max_bytes");
    assert_eq!(replica.position(), primary.position());
    assert_eq!(
        replica.scan(u64::MAX).await.unwrap(),
        primary.scan(u64::MAX).await.unwrap()
    );
    assert!(
        primary
            .records_since(20, usize::MAX)
            .await
            .unwrap()
            .is_empty()
    );
    // The replica remembers the writers' seqs too (replicated with the data).
    assert_eq!(
        replica.append(20 % 3, 20, rows(0..1)).await.unwrap(),
        AppendOutcome::Duplicate { lsn: Some(20) }
    );
}

#[tokio::test]
async fn checksum_depends_on_values_not_memory_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let a = new_store(&tmp.path().join("a"), StoreOptions::default()).await;
    let b = new_store(&tmp.path().join("b"), StoreOptions::default()).await;
    // Same rows: a slice of a bigger batch vs. a freshly built one.
    a.append(1, 1, rows(0..100).slice(10, 5)).await.unwrap();
    b.apply_at(1, 1, 1, rows(10..15)).await.unwrap();
    assert_eq!(a.checksum(), b.checksum());
    a.append(1, 2, rows(0..1)).await.unwrap();
    b.append(1, 2, rows(1..2)).await.unwrap();
    assert_ne!(
        a.checksum(),
        b.checksum(),
        "different values, different checksum"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checksum_at_tells_a_replica_behind_from_one_that_diverged() {
    let tmp = tempfile::tempdir().unwrap();
    let a = new_store(&tmp.path().join("a"), opts(false, 1 << 20)).await;
    let b = new_store(&tmp.path().join("b"), opts(false, 1 << 20)).await;
    for seq in 1..=3 {
        a.append(1, seq, rows(0..2)).await.unwrap();
    }
    b.append(1, 1, rows(0..2)).await.unwrap();
    // b is behind: its checksum at its own last lsn equals a's there.
    assert_eq!(a.checksum_at(1), b.checksum_at(1));
    assert_eq!(a.checksum_at(0), Some(0));
    assert_eq!(a.checksum_at(3), Some(a.checksum()));
    assert_eq!(a.checksum_at(4), None);
    // b diverges at lsn 2 (another record there): the checksums at lsn 2 differ.
    b.append(9, 1, rows(0..2)).await.unwrap();
    assert_ne!(a.checksum_at(2), b.checksum_at(2));
    assert_eq!(a.checksum_at(1), b.checksum_at(1));
}
