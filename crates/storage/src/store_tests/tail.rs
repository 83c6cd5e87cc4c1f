//! Cutting a diverged replica back to the prefix it shares with its primary (`cut_tail`).

use super::files::{fill, key, multiset};
use super::*;
use crate::Record;

/// Applies `records` on `store` at their lsns, each answered Applied.
async fn apply(store: &ChunkStore, records: Vec<Record>) {
    let lsns: Vec<u64> = records.iter().map(|r| r.lsn).collect();
    let outcomes = store.apply_records(records).await.unwrap();
    let want: Vec<AppendOutcome> = lsns.into_iter().map(applied).collect();
    assert_eq!(outcomes, want);
}

#[tokio::test]
async fn a_diverged_tail_is_cut_and_the_primarys_records_follow_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (p_dir, r_dir) = (tmp.path().join("p"), tmp.path().join("r"));
    // Small segments, so the cut crosses segment boundaries.
    let o = || opts(true, 4000);
    let primary = new_store(&p_dir, o()).await;
    let replica = new_store(&r_dir, o()).await;
    fill(&primary, 1..=40).await;
    apply(
        &replica,
        primary.records_since(0, usize::MAX).await.unwrap(),
    )
    .await;
    assert_eq!(replica.position(), primary.position());
    // The replica, primary for a while, took writes nobody else received: writer 1's seq 41
    // and writer 2's seqs 1..=15. The new primary took seq 41 again (a retry), then others.
    let wal_before = segments(&r_dir).len();
    for seq in 41..=41 {
        replica.append(1, seq, rows(9000..9020)).await.unwrap();
    }
    for seq in 1..=15 {
        replica.append(2, seq, rows(0..20)).await.unwrap();
    }
    assert!(
        segments(&r_dir).len() > wal_before,
        "the tail spans segments"
    );
    fill(&primary, 41..=45).await;
    primary.append(3, 1, rows(5..7)).await.unwrap();
    assert_eq!(replica.checksum_at(40), primary.checksum_at(40));
    assert_ne!(replica.checksum_at(41), primary.checksum_at(41));

    let pos = replica.cut_tail(40).await.unwrap();
    assert_eq!(pos.last_lsn, 40);
    assert_eq!(pos.checksum, primary.checksum_at(40).unwrap());
    assert_eq!(pos.rows, 800);
    assert_eq!(replica.position(), pos);
    assert_eq!(replica.unflushed_records(), 40);
    // Cutting at or past the end changes nothing.
    assert_eq!(replica.cut_tail(40).await.unwrap(), pos);
    assert_eq!(replica.cut_tail(99).await.unwrap(), pos);

    // The primary's records follow, writer 1's seq 41 included: the cut one is forgotten.
    apply(
        &replica,
        primary.records_since(40, usize::MAX).await.unwrap(),
    )
    .await;
    assert_eq!(replica.position(), primary.position());
    let scan = multiset(&replica.scan(u64::MAX).await.unwrap());
    assert_eq!(scan, multiset(&primary.scan(u64::MAX).await.unwrap()));
    // Writer 2's seqs were cut too: new again.
    assert_eq!(replica.append(2, 1, rows(0..1)).await.unwrap(), applied(47));

    // The WAL on disk was cut as well: a reopen replays the same records.
    let pos = replica.position();
    drop(replica);
    let (replica, report) = ChunkStore::open(&r_dir, o()).await.unwrap();
    assert_eq!(report.records, 47);
    assert_eq!(replica.position(), pos);
    assert_eq!(
        multiset(&replica.scan(u64::MAX).await.unwrap()).len(),
        scan.len() + 1
    );
}

#[tokio::test]
async fn records_in_chunk_files_are_not_cut_and_nothing_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = new_store(dir, opts(false, 4000)).await;
    fill(&store, 1..=50).await;
    store.flush(30, &key(&["note", "ts"])).await.unwrap();
    let pos = store.position();
    let err = store.cut_tail(20).await.unwrap_err();
    assert!(
        matches!(&err, StorageError::CannotCutTail { lsn: 20, reason, .. }
            if reason.contains("records up to 30 are in chunk files")),
        "{err}"
    );
    assert_eq!(store.position(), pos);
    // At the flushed lsn itself, the records after it can go.
    let at = store.cut_tail(30).await.unwrap();
    assert_eq!((at.last_lsn, at.rows), (30, 600));
    assert_eq!(at.checksum, store.checksum_at(30).unwrap());
    assert_eq!(store.unflushed_records(), 0);
    drop(store);
    let (store, report) = ChunkStore::open(dir, opts(false, 4000)).await.unwrap();
    assert_eq!((report.flushed_lsn, report.records), (30, 0));
    assert_eq!(store.position(), at);
    fill(&store, 31..=32).await;
    assert_eq!(store.last_lsn(), 32);
}
