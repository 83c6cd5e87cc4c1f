//! Directory handling and schema checks.

use super::*;

#[tokio::test]
async fn create_and_open_refuse_the_wrong_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c");
    let store = new_store(&dir, StoreOptions::default()).await;
    let again = ChunkStore::create(&dir, schema(), StoreOptions::default()).await;
    assert!(matches!(again, Err(StorageError::AlreadyExists { .. })));
    let twice = ChunkStore::open(&dir, StoreOptions::default()).await;
    assert!(
        matches!(twice, Err(StorageError::Locked { .. })),
        "{twice:?}"
    );
    drop(store);
    let missing = ChunkStore::open(&tmp.path().join("nope"), StoreOptions::default()).await;
    let err = missing.unwrap_err();
    assert!(matches!(err, StorageError::NotFound { .. }));
    assert!(err.to_string().contains("nope"), "{err}");
}

#[tokio::test]
async fn wrong_schema_is_refused_naming_the_columns() {
    let tmp = tempfile::tempdir().unwrap();
    let store = new_store(tmp.path(), StoreOptions::default()).await;
    store.append(1, 1, rows(0..1)).await.unwrap();
    let size = store.bytes_on_disk();

    let renamed = Arc::new(Schema::new(vec![
        Field::new("ts", DataType::Int64, false),
        Field::new("ident", DataType::Int64, false),
        Field::new("note", DataType::Utf8, true),
    ]));
    let bad = RecordBatch::try_new(renamed, rows(0..2).columns().to_vec()).unwrap();
    let err = store.append(1, 2, bad).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StorageError::SchemaMismatch { .. }), "{msg}");
    assert!(msg.contains("'id'") && msg.contains("'ident'"), "{msg}");

    let narrow = Arc::new(Schema::new(vec![Field::new("ts", DataType::Int32, false)]));
    let bad = RecordBatch::try_new(
        narrow,
        vec![Arc::new(arrow::array::Int32Array::from(vec![1]))],
    )
    .unwrap();
    let msg = store.append(1, 3, bad).await.unwrap_err().to_string();
    assert!(msg.contains("expected 3 columns, got 1"), "{msg}");
    assert!(msg.contains("Int32"), "{msg}");

    // Nulls in a column the chunk declares non-nullable.
    let loose = Arc::new(Schema::new(vec![
        Field::new("ts", DataType::Int64, true),
        Field::new("id", DataType::Int64, false),
        Field::new("note", DataType::Utf8, true),
    ]));
    let cols = rows(0..2).columns().to_vec();
    let with_null = RecordBatch::try_new(
        loose,
        vec![
            Arc::new(Int64Array::from(vec![None, Some(1)])),
            cols[1].clone(),
            cols[2].clone(),
        ],
    )
    .unwrap();
    let err = store.append(1, 4, with_null).await.unwrap_err();
    assert!(matches!(err, StorageError::SchemaMismatch { .. }), "{err}");

    assert_eq!((store.last_lsn(), store.bytes_on_disk()), (1, size));
    // The refused seqs were not consumed.
    assert_eq!(store.append(1, 2, rows(0..1)).await.unwrap(), applied(2));
}
