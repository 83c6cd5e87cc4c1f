//! Reopen, torn tails, corruption, segment rolls, format versions.

use super::*;

#[tokio::test]
async fn append_reopen_keeps_rows_lsns_checksum_and_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("chunk");
    let store = new_store(&dir, StoreOptions::default()).await;
    assert_eq!((store.last_lsn(), store.checksum()), (0, 0));
    for seq in 1..=10u64 {
        let i = seq as i64 * 10;
        let out = store.append(7, seq, rows(i..i + 10)).await.unwrap();
        assert_eq!(out, applied(seq));
    }
    assert_eq!(
        store.append(7, 3, rows(0..1)).await.unwrap(),
        AppendOutcome::Duplicate { lsn: Some(3) }
    );
    assert_eq!(store.row_count(), 100);
    let before = (store.scan(u64::MAX).await.unwrap(), store.position());
    let size = store.bytes_on_disk();
    assert_eq!(
        size,
        segments(&dir).iter().map(|p| file_len(p)).sum::<u64>() + file_len(&dir.join("STORE"))
    );
    store.close().await.unwrap();

    let (store, report) = ChunkStore::open(&dir, StoreOptions::default())
        .await
        .unwrap();
    assert_eq!((report.records, report.torn_tail_bytes), (10, 0));
    assert_eq!(
        (store.scan(u64::MAX).await.unwrap(), store.position()),
        before
    );
    assert_eq!(store.bytes_on_disk(), size);
    assert_eq!(store.schema().fields(), schema().fields());
    for seq in 1..=10u64 {
        assert_eq!(
            store.append(7, seq, rows(0..1)).await.unwrap(),
            AppendOutcome::Duplicate { lsn: Some(seq) },
            "seq {seq} is remembered across reopen"
        );
    }
    assert_eq!(store.append(7, 11, rows(0..1)).await.unwrap(), applied(11));
    assert_eq!(store.append(8, 1, rows(0..1)).await.unwrap(), applied(12));
    assert_eq!(store.stats().duplicates, 10);
}

/// Appends 5 records; returns (segment path, its length after 4 records, after 5).
async fn five_records(dir: &Path) -> (PathBuf, u64, u64) {
    let store = new_store(dir, StoreOptions::default()).await;
    for seq in 1..=4 {
        store.append(1, seq, rows(0..20)).await.unwrap();
    }
    let seg = segments(dir).pop().unwrap();
    let len4 = file_len(&seg);
    store.append(1, 5, rows(100..120)).await.unwrap();
    let len5 = file_len(&seg);
    (seg, len4, len5)
}

async fn assert_recovers_four(dir: &Path, torn: u64) {
    let (store, report) = ChunkStore::open(dir, StoreOptions::default())
        .await
        .unwrap();
    assert_eq!((report.records, report.torn_tail_bytes), (4, torn));
    assert_eq!((store.last_lsn(), store.row_count()), (4, 80));
    // The dropped record was never acknowledged durably: a retry applies it at lsn 5.
    assert_eq!(
        store.append(1, 5, rows(100..120)).await.unwrap(),
        applied(5)
    );
    assert_eq!(store.append(1, 6, rows(0..1)).await.unwrap(), applied(6));
    drop(store);
    let (store, report) = ChunkStore::open(dir, StoreOptions::default())
        .await
        .unwrap();
    assert_eq!((report.records, report.torn_tail_bytes), (6, 0));
    assert_eq!(store.row_count(), 101);
}

#[tokio::test]
async fn torn_tail_short_record_is_truncated() {
    let tmp = tempfile::tempdir().unwrap();
    let (seg, len4, len5) = five_records(tmp.path()).await;
    let keep = len4 + (len5 - len4) / 2;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(keep)
        .unwrap();
    assert_recovers_four(tmp.path(), keep - len4).await;
}

#[tokio::test]
async fn torn_tail_bad_crc_is_truncated() {
    let tmp = tempfile::tempdir().unwrap();
    let (seg, len4, len5) = five_records(tmp.path()).await;
    flip_byte(&seg, len4 + 60);
    assert_recovers_four(tmp.path(), len5 - len4).await;
}

#[tokio::test]
async fn torn_tail_of_zeros_is_truncated() {
    // A crash after the file grew but before its data reached the disk leaves zeros.
    let tmp = tempfile::tempdir().unwrap();
    let (seg, len4, len5) = five_records(tmp.path()).await;
    let mut b = std::fs::read(&seg).unwrap();
    b.truncate(len4 as usize);
    b.extend(std::iter::repeat_n(0u8, 4096));
    std::fs::write(&seg, b).unwrap();
    assert!(len5 > len4);
    assert_recovers_four(tmp.path(), 4096).await;
}

#[tokio::test]
async fn bad_record_followed_by_a_valid_one_is_corruption_not_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let (seg, len4, len5) = five_records(tmp.path()).await;
    // Corrupt record 4 (lsn 4), which is followed by the intact record 5.
    let store_len3 = {
        // Records 1..=4 have equal size: 20 rows each of the same shape.
        let header = 32;
        header + (len4 - header) / 4 * 3
    };
    flip_byte(&seg, store_len3 + 60);
    let err = ChunkStore::open(tmp.path(), StoreOptions::default())
        .await
        .unwrap_err();
    match &err {
        StorageError::Corrupt { path, offset, .. } => {
            assert_eq!((path, *offset), (&seg, store_len3));
        }
        other => panic!("expected Corrupt, got {other}"),
    }
    assert!(err.to_string().contains("not a torn tail"), "{err}");
    // Corrupting the length field instead (so the bad record's extent is unknown) is caught too.
    flip_byte(&seg, store_len3 + 60);
    flip_byte(&seg, store_len3 + 2);
    let err = ChunkStore::open(tmp.path(), StoreOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("valid record with lsn 5"), "{err}");
    // When a peer can refill them, the caller may cut the damaged tail explicitly.
    let (store, report) =
        ChunkStore::open_discarding_damaged_tail(tmp.path(), StoreOptions::default())
            .await
            .unwrap();
    assert_eq!(report.records, 3);
    assert_eq!(report.torn_tail_bytes, len5 - store_len3);
    assert_eq!(store.last_lsn(), 3);
}

#[tokio::test]
async fn corruption_in_a_sealed_segment_fails_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(tmp.path(), opts(false, 4000)).await;
    for seq in 1..=30 {
        store.append(1, seq, rows(0..20)).await.unwrap();
    }
    drop(store);
    let segs = segments(tmp.path());
    assert!(segs.len() >= 3, "{segs:?}");
    let victim = &segs[1];
    flip_byte(victim, file_len(victim) / 2);
    let err = ChunkStore::open(tmp.path(), StoreOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StorageError::Corrupt { path, .. } if path == victim),
        "{err}"
    );
    let name = victim.file_name().unwrap().to_str().unwrap();
    assert!(err.to_string().contains(name), "{err}");
    assert!(err.to_string().contains("sealed segment"), "{err}");
}

#[tokio::test]
async fn segments_roll_and_reopen_across_them() {
    let tmp = tempfile::tempdir().unwrap();
    let o = opts(true, 4000);
    let store = new_store(tmp.path(), o.clone()).await;
    for seq in 1..=40u64 {
        let i = seq as i64 * 20;
        assert_eq!(
            store.append(1, seq, rows(i..i + 20)).await.unwrap(),
            applied(seq)
        );
    }
    let stats = store.stats();
    let segs = segments(tmp.path());
    assert!(segs.len() >= 5, "{segs:?}");
    assert_eq!(stats.segments_created as usize, segs.len() - 1);
    for s in &segs[..segs.len() - 1] {
        assert!(file_len(s) <= 4000, "{s:?} exceeds segment_bytes");
    }
    let before = (store.scan(u64::MAX).await.unwrap(), store.position());
    drop(store);
    let (store, report) = ChunkStore::open(tmp.path(), o.clone()).await.unwrap();
    assert_eq!((report.records, report.segments), (40, segs.len() as u64));
    assert_eq!(
        (store.scan(u64::MAX).await.unwrap(), store.position()),
        before
    );
    assert_eq!(store.append(1, 41, rows(0..20)).await.unwrap(), applied(41));
    drop(store);
    let (store, report) = ChunkStore::open(tmp.path(), o).await.unwrap();
    assert_eq!(report.records, 41);
    assert_eq!(store.row_count(), 41 * 20);
}

#[tokio::test]
async fn a_record_larger_than_a_segment_gets_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(tmp.path(), opts(false, 64)).await;
    for seq in 1..=3 {
        store.append(1, seq, rows(0..50)).await.unwrap();
    }
    assert_eq!(segments(tmp.path()).len(), 3);
    drop(store);
    let (store, _) = ChunkStore::open(tmp.path(), opts(false, 64)).await.unwrap();
    assert_eq!(store.row_count(), 150);
}

#[tokio::test]
async fn empty_batches_take_an_lsn_and_survive_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(tmp.path(), StoreOptions::default()).await;
    assert_eq!(store.append(1, 1, rows(0..0)).await.unwrap(), applied(1));
    let pos = store.position();
    drop(store);
    let (store, _) = ChunkStore::open(tmp.path(), StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(store.position(), pos);
    assert_eq!(pos.rows, 0);
}

#[tokio::test]
async fn unknown_store_version_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    drop(new_store(tmp.path(), StoreOptions::default()).await);
    let store_file = tmp.path().join("STORE");
    let mut b = std::fs::read(&store_file).unwrap();
    b[8..12].copy_from_slice(&3u32.to_le_bytes());
    std::fs::write(&store_file, b).unwrap();
    let err = ChunkStore::open(tmp.path(), StoreOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::UnsupportedVersion {
                found: 3,
                supported: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("STORE"), "{err}");
}
