use super::*;
use crate::config::Durability;
use crate::ids::ClassSecret;
use crate::storage::{ObjectDb, StorageLimits, object_db_path};

/// A commit that does not fit the queue is owed: the store gets the object's whole database
/// when it closes, though no commit follows, and a restore has the data.
#[tokio::test]
async fn a_commit_that_did_not_fit_the_queue_ships_as_a_snapshot_when_the_database_closes() {
    let dir = tempfile::tempdir().unwrap();
    let (data, restored) = (dir.path().join("data"), dir.path().join("restored"));
    let url = format!("file://{}", dir.path().join("store").display());
    let backup = Backup::new(
        BackupStore::open(&url).unwrap(),
        &data,
        Settings { interval: Duration::from_secs(3600), ..Settings::default() },
    );
    let id = ClassSecret::random().new_unique_id();
    let path = object_db_path(&data, "c", &id);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let db = ObjectDb::open(&path, Durability::Normal, &StorageLimits::default()).unwrap();
    db.attach_backup(backup.clone(), ObjectRef::new("c", &id));
    // The first commit ships a snapshot, which this queue cannot hold.
    backup.max_queued.store(0, Ordering::Relaxed);
    db.begin().unwrap();
    db.conn().execute("INSERT INTO _wdo_kv (key, value) VALUES ('k', 'v')", []).unwrap();
    db.commit().unwrap();
    assert!(backup.queue.lock().unwrap().entries.is_empty());
    backup.max_queued.store(MAX_QUEUED, Ordering::Relaxed);
    drop(db);
    assert!(matches!(backup.queue.lock().unwrap().entries[..], [Entry::Snapshot { .. }]));
    backup.flush().await;
    let said = restore::restore(&BackupStore::open(&url).unwrap(), &restored, None).await.unwrap();
    assert_eq!(said.objects, 1);
    let copy = rusqlite::Connection::open(object_db_path(&restored, "c", &id)).unwrap();
    let value: String = copy.query_row("SELECT value FROM _wdo_kv WHERE key = 'k'", [], |r| r.get(0)).unwrap();
    assert_eq!(value, "v");
}
