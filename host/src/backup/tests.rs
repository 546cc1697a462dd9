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
    db.attach_backup(backup.clone(), ObjectRef::new("c", &id), 0, None);
    // The first commit ships a snapshot, which this queue (not empty) cannot hold.
    backup.max_queued.store(0, Ordering::Relaxed);
    assert!(backup.enqueue(Entry::File { time_ms: 0, path: "other".into(), bytes: Some(Vec::new()) }).is_some());
    db.begin().unwrap();
    db.conn().execute("INSERT INTO _wdo_kv (key, value) VALUES ('k', 'v')", []).unwrap();
    db.commit().unwrap();
    assert!(matches!(backup.queue.lock().unwrap().entries[..], [Entry::File { .. }]));
    backup.max_queued.store(MAX_QUEUED, Ordering::Relaxed);
    drop(db);
    assert!(matches!(backup.queue.lock().unwrap().entries[..], [Entry::File { .. }, Entry::Snapshot { .. }]));
    backup.flush().await;
    let said = restore::restore(&BackupStore::open(&url).unwrap(), &restored, None).await.unwrap();
    assert_eq!(said.objects, 1);
    let copy = rusqlite::Connection::open(object_db_path(&restored, "c", &id)).unwrap();
    let value: String = copy.query_row("SELECT value FROM _wdo_kv WHERE key = 'k'", [], |r| r.get(0)).unwrap();
    assert_eq!(value, "v");
}

/// A snapshot larger than the queue's whole bound (an object past it) ships alone once the queue
/// is empty: an object that large is still backed up.
#[tokio::test]
async fn an_entry_larger_than_the_bound_ships_alone_in_an_empty_queue() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("store").display());
    let backup = Backup::new(BackupStore::open(&url).unwrap(), dir.path(), Settings::default());
    backup.max_queued.store(1024, Ordering::Relaxed);
    let big = || Entry::File { time_ms: 0, path: "big".into(), bytes: Some(vec![1; 4096]) };
    assert!(backup.enqueue(big()).is_some(), "alone in an empty queue");
    assert!(backup.enqueue(big()).is_none(), "not beside another");
    backup.flush().await;
    assert!(backup.status().failing.is_none());
    assert!(backup.enqueue(big()).is_some(), "the queue is empty again");
}

/// Fencing (`format.rs`): once an object's entries carry a token, what a host writes under a
/// lower one (it lost the object to another) is skipped by a restore, wherever it lands in the
/// log; a snapshot with no pages says the object has no database.
#[tokio::test]
async fn a_restore_skips_what_a_host_wrote_under_an_older_claim() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("store").display());
    let backup = Backup::new(BackupStore::open(&url).unwrap(), dir.path(), Settings::default());
    let object = ObjectRef { class: "c".into(), id: [3; 32] };
    let page = |byte: u8| vec![byte; 512];
    let snapshot = |token, bytes| Entry::Snapshot { time_ms: 1, object: object.clone(), token, page_size: 512, bytes };
    let transaction = |token, byte| Entry::Transaction {
        time_ms: 2,
        object: object.clone(),
        token,
        page_size: 512,
        db_pages: 1,
        pages: vec![(1, page(byte))],
    };
    // The old owner (token 4) writes; the new owner (token 7) takes over with a snapshot; the
    // old owner, paused meanwhile, writes again; the new owner writes.
    for batch in [vec![snapshot(4, page(1)), transaction(4, 2)], vec![snapshot(7, page(2))], vec![transaction(4, 9)]] {
        for entry in batch {
            backup.enqueue(entry).unwrap();
        }
        backup.flush().await;
    }
    assert_eq!(backup.object_at(&object, None).await.unwrap(), Some(page(2)), "the stale write was applied");
    backup.enqueue(transaction(7, 3)).unwrap();
    backup.flush().await;
    assert_eq!(backup.object_at(&object, None).await.unwrap(), Some(page(3)));
    // A takeover of an object that never committed: it has no database.
    backup.enqueue(snapshot(8, Vec::new())).unwrap();
    backup.flush().await;
    assert_eq!(backup.object_at(&object, None).await.unwrap(), None);
}

/// A cluster's anchor (`cluster/anchor.rs`): one object's state from a base and what one run of
/// a host shipped of it from a batch on, reading only that run's batches from there.
#[tokio::test]
async fn an_anchor_reads_one_runs_batches_from_its_batch_on() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("store").display());
    let host_a = Backup::new(BackupStore::open(&url).unwrap(), dir.path(), Settings::default());
    let host_b = Backup::new(BackupStore::open(&url).unwrap(), dir.path(), Settings::default());
    let (object, other) = (ObjectRef { class: "c".into(), id: [5; 32] }, ObjectRef { class: "c".into(), id: [6; 32] });
    let page = |byte: u8| vec![byte; 512];
    let snapshot = |object: &ObjectRef, token, bytes| Entry::Snapshot {
        time_ms: 1,
        object: object.clone(),
        token,
        page_size: 512,
        bytes,
    };
    let transaction = |object: &ObjectRef, token, byte| Entry::Transaction {
        time_ms: 2,
        object: object.clone(),
        token,
        page_size: 512,
        db_pages: 1,
        pages: vec![(1, page(byte))],
    };
    let ship = |backup: &Arc<Backup>, entries: Vec<Entry>| {
        let backup = backup.clone();
        async move {
            for entry in entries {
                backup.enqueue(entry).unwrap();
            }
            backup.flush().await;
        }
    };
    // Long before the anchor: not even listed. Just before it: listed, not read.
    ship(&host_a, vec![snapshot(&object, 5, page(1))]).await;
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    ship(&host_a, vec![transaction(&object, 5, 6)]).await;
    let (since_ms, batch) = (super::now_ms(), host_a.next_batch());
    ship(&host_a, vec![snapshot(&object, 5, page(2)), transaction(&other, 5, 9)]).await;
    ship(&host_a, vec![transaction(&object, 5, 3)]).await;
    // Another run's entries, and this run's under an older token, are not the anchor's.
    ship(&host_b, vec![transaction(&object, 9, 7)]).await;
    ship(&host_a, vec![transaction(&object, 4, 8)]).await;
    let run = host_a.run_id();
    let since = |token| restore::Since { batch, since_ms, token };
    let (state, batches) = host_b.object_since(&object, None, run, since(5)).await.unwrap();
    assert_eq!(state, Some(page(3)));
    assert_eq!(batches, 3, "only run A's batches from the anchor's on are read");
    // A base, and the commits after it.
    let (state, _) = host_b.object_since(&other, Some(page(4)), run, since(5)).await.unwrap();
    assert_eq!(state, Some(page(9)));
    // A commit with nothing to apply it to: batches are missing.
    let missing = host_b.object_since(&other, None, run, since(5)).await;
    assert!(missing.unwrap_err().contains("batches are missing"));
}
