//! Copying a replica whole: snapshot export, staging, commit and swap, crash points on both
//! sides of the commit, restart after an install, and the WAL tail following by records.

use super::files::{fill, key, state};
use super::*;
use crate::flush::CrashPoint;
use crate::{SnapshotExport, SnapshotFile, SnapshotInstall, StagedSnapshot};

/// Pairs every test asks the dedup state about (writer 1's records 1..=60).
fn primary_pairs() -> Vec<(u64, u64)> {
    (1..=60).map(|s| (1, s)).collect()
}

/// A primary holding records 1..=60, flushed through 45, its WAL truncated below that.
async fn primary(dir: &Path) -> ChunkStore {
    let store = new_store(dir, opts(false, 4000)).await;
    fill(&store, 1..=60).await;
    store.flush(45, &key(&["note", "ts"])).await.unwrap();
    let first = store.truncate_wal(u64::MAX).await.unwrap();
    assert!(first > 1, "nothing truncated");
    store
}

/// A replica that diverged: records of another writer at lsns 1..=5.
async fn diverged(dir: &Path) -> ChunkStore {
    let store = new_store(dir, opts(false, 4000)).await;
    for seq in 1..=5 {
        store.append(9, seq, rows(0..3)).await.unwrap();
    }
    store
}

/// Everything of `export` written into `install` in parts of at most `part` bytes; part number
/// `corrupt` (if any) with one byte flipped on the way.
fn send(
    export: &mut SnapshotExport,
    install: &mut SnapshotInstall,
    part: usize,
    corrupt: Option<usize>,
) {
    let mut i = 0;
    while let Some(mut p) = export.next_part(part).unwrap() {
        if corrupt == Some(i) {
            p[0] ^= 0x5a;
        }
        install.write(&p).unwrap();
        i += 1;
    }
}

async fn stage(
    primary: &ChunkStore,
    dir: &Path,
    crash: Option<CrashPoint>,
) -> Result<StagedSnapshot, StorageError> {
    let mut export = primary.export_snapshot().await.unwrap().unwrap();
    let mut install = SnapshotInstall::begin(dir, export.files().to_vec()).unwrap();
    install.crash = crash;
    send(&mut export, &mut install, 1000, None);
    install.finish(export.hashes())
}

fn leftovers(dir: &Path) -> Vec<PathBuf> {
    ["incoming", "replaced"]
        .iter()
        .map(|s| dir.with_extension(s))
        .filter(|p| p.exists())
        .collect()
}

#[tokio::test]
async fn a_snapshot_copies_the_flushed_state_and_the_tail_follows_by_records() {
    let tmp = tempfile::tempdir().unwrap();
    let (p, r) = (tmp.path().join("p"), tmp.path().join("r"));
    let o = opts(false, 4000);
    let primary = primary(&p).await;
    let replica = diverged(&r).await;
    let at_45 = primary.checksum_at(45).unwrap();

    let mut export = primary.export_snapshot().await.unwrap().unwrap();
    assert_eq!((export.flushed_lsn, export.checksum), (45, at_45));
    let names: Vec<&str> = export.files().iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names.first(), Some(&"STORE"));
    assert_eq!(names.last(), Some(&"MANIFEST"));
    assert!(
        names[1].starts_with("f/") && names[1].ends_with(".parquet"),
        "{names:?}"
    );
    let mut install = SnapshotInstall::begin(&r, export.files().to_vec()).unwrap();
    // Parts that split files anywhere (not at a file boundary).
    send(&mut export, &mut install, 777, None);
    let staged = install.finish(export.hashes()).unwrap();
    assert_eq!((staged.flushed_lsn, staged.checksum), (45, at_45));
    replica.close().await.unwrap();
    let (replica, report) = ChunkStore::install_snapshot(staged, o.clone())
        .await
        .unwrap();
    assert_eq!((report.flushed_lsn, report.records), (45, 0));
    assert_eq!(replica.position().last_lsn, 45);
    assert_eq!(replica.checksum(), at_45);
    assert_eq!(replica.checksum_at_retained(45).await.unwrap(), Some(at_45));
    assert!(leftovers(&r).is_empty(), "{:?}", leftovers(&r));

    // The WAL tail the primary kept follows record by record; then both hold the same.
    let tail = primary.records_since(45, usize::MAX).await.unwrap();
    let outcomes = replica.apply_records(tail).await.unwrap();
    assert_eq!(outcomes, (46..=60).map(applied).collect::<Vec<_>>());
    let want = state(&primary, &primary_pairs()).await;
    assert_eq!(state(&replica, &primary_pairs()).await, want);
    // The diverged writer's records are gone with the old replica.
    assert!(matches!(
        replica.append(9, 1, rows(0..1)).await.unwrap(),
        AppendOutcome::Applied { lsn: 61 }
    ));

    // A restart after the install reopens the copy plus its own WAL.
    let pos = replica.position();
    drop(replica);
    let (replica, report) = ChunkStore::open(&r, o).await.unwrap();
    assert_eq!((report.flushed_lsn, report.records), (45, 16));
    assert_eq!(replica.position(), pos);
    assert_eq!(
        replica.checksum_at_retained(50).await.unwrap(),
        primary.checksum_at(50)
    );
}

#[tokio::test]
async fn export_of_a_store_never_flushed_is_none() {
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(tmp.path(), opts(false, 4000)).await;
    fill(&store, 1..=3).await;
    assert!(store.export_snapshot().await.unwrap().is_none());
}

/// Installs a snapshot of [`primary`] over [`diverged`], stopping at `at` as if the process
/// died there; answers whether the store reopened as the copy (else as the old replica).
async fn crash_during_install(at: CrashPoint) -> bool {
    let tmp = tempfile::tempdir().unwrap();
    let (p, r) = (tmp.path().join("p"), tmp.path().join("r"));
    let o = opts(false, 4000);
    let primary = primary(&p).await;
    let replica = diverged(&r).await;
    let old_pairs: Vec<(u64, u64)> = (1..=5).map(|s| (9, s)).collect();
    let old = state(&replica, &old_pairs).await;

    let crashed = match stage(&primary, &r, Some(at)).await {
        Err(e) => {
            drop(replica);
            e
        }
        Ok(staged) => {
            replica.close().await.unwrap();
            ChunkStore::install_snapshot(staged, o.clone())
                .await
                .unwrap_err()
        }
    };
    assert!(crashed.to_string().contains("injected crash"), "{crashed}");
    assert!(ChunkStore::finish_install(&r).await.is_ok());
    let (replica, _) = ChunkStore::open(&r, o).await.unwrap();
    assert!(
        leftovers(&r).is_empty(),
        "after {at:?}: {:?}",
        leftovers(&r)
    );
    let copy = replica.position().last_lsn == 45;
    if copy {
        assert_eq!(replica.checksum(), primary.checksum_at(45).unwrap());
        let tail = primary.records_since(45, usize::MAX).await.unwrap();
        replica.apply_records(tail).await.unwrap();
        let want = state(&primary, &primary_pairs()).await;
        assert_eq!(
            state(&replica, &primary_pairs()).await,
            want,
            "after {at:?}"
        );
    } else {
        assert_eq!(state(&replica, &old_pairs).await, old, "after {at:?}");
    }
    copy
}

#[tokio::test]
async fn a_crash_before_the_staged_manifest_leaves_the_old_replica() {
    assert!(!crash_during_install(CrashPoint::SnapshotStaged).await);
}

#[tokio::test]
async fn a_crash_after_the_staged_manifest_completes_the_install_at_open() {
    assert!(crash_during_install(CrashPoint::SnapshotCommitted).await);
}

#[tokio::test]
async fn a_crash_with_the_old_replica_moved_aside_completes_the_install_at_open() {
    assert!(crash_during_install(CrashPoint::SnapshotMovedAside).await);
}

#[tokio::test]
async fn a_crash_before_the_old_replica_is_deleted_completes_the_install_at_open() {
    assert!(crash_during_install(CrashPoint::SnapshotSwapped).await);
}

#[tokio::test]
async fn a_damaged_or_short_snapshot_is_refused_and_the_replica_is_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let (p, r) = (tmp.path().join("p"), tmp.path().join("r"));
    let primary = primary(&p).await;
    let replica = diverged(&r).await;
    let before = replica.position();

    let mut export = primary.export_snapshot().await.unwrap().unwrap();
    let mut install = SnapshotInstall::begin(&r, export.files().to_vec()).unwrap();
    send(&mut export, &mut install, 1000, Some(3));
    let err = install.finish(export.hashes()).unwrap_err();
    assert!(
        matches!(&err, StorageError::SnapshotRefused { reason, .. } if reason.contains("xxh3")),
        "{err}"
    );

    let mut export = primary.export_snapshot().await.unwrap().unwrap();
    let mut install = SnapshotInstall::begin(&r, export.files().to_vec()).unwrap();
    let part = export.next_part(1000).unwrap().unwrap();
    install.write(&part).unwrap();
    let err = install.finish(export.hashes()).unwrap_err();
    assert!(err.to_string().contains("short"), "{err}");

    for name in ["f/../STORE", "../STORE", "f/", "WAL", "f/a/b"] {
        let files = vec![
            SnapshotFile {
                name: "STORE".into(),
                bytes: 1,
            },
            SnapshotFile {
                name: "MANIFEST".into(),
                bytes: 1,
            },
            SnapshotFile {
                name: name.into(),
                bytes: 1,
            },
        ];
        let err = SnapshotInstall::begin(&r, files).unwrap_err();
        assert!(
            matches!(err, StorageError::SnapshotRefused { .. }),
            "{name}: {err}"
        );
    }
    assert_eq!(replica.position(), before);
    drop(replica);
    let (replica, _) = ChunkStore::open(&r, opts(false, 4000)).await.unwrap();
    assert_eq!(replica.position(), before);
    assert!(leftovers(&r).is_empty(), "{:?}", leftovers(&r));
}
