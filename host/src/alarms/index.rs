//! The host-wide index of pending alarms (`<data>/alarms.sqlite`).

use crate::config::Durability;
use rusqlite::{Connection, params};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use tokio::sync::Notify;

/// A due alarm, as the scheduler hands it out.
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    pub class: String,
    pub id: String,
    pub name: Option<String>,
    pub retry: u32,
}

pub struct AlarmIndex {
    conn: Mutex<Connection>,
    /// Wakes the scheduler when an earlier alarm arrives or the host stops.
    pub wake: Notify,
    /// When the scheduler plans to look next (ms), to know whether a new alarm must wake it.
    next_look: AtomicI64,
}

impl AlarmIndex {
    pub fn open(path: &Path, durability: Durability) -> rusqlite::Result<AlarmIndex> {
        crate::storage::heap::install(); // before SQLite starts: see `storage/heap.rs`
        let conn = Connection::open(path)?;
        let synchronous = if durability == Durability::Full { "FULL" } else { "NORMAL" };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous={synchronous};
             CREATE TABLE IF NOT EXISTS alarms (
                 class TEXT NOT NULL, id TEXT NOT NULL, name TEXT,
                 at_ms INTEGER NOT NULL,        -- the alarm's time
                 due_ms INTEGER NOT NULL,       -- when to deliver it: at_ms, or a retry's time
                 retry INTEGER NOT NULL DEFAULT 0,
                 leased_until INTEGER,          -- in flight until then
                 PRIMARY KEY (class, id)) WITHOUT ROWID;
             CREATE INDEX IF NOT EXISTS alarms_next ON alarms (coalesce(leased_until, due_ms));
             -- Leases of a previous run are void: what was in flight fires again.
             UPDATE alarms SET leased_until = NULL WHERE leased_until IS NOT NULL;"
        ))?;
        Ok(AlarmIndex { conn: Mutex::new(conn), wake: Notify::new(), next_look: AtomicI64::new(i64::MAX) })
    }

    /// Moves the alarms of a renamed class to its new name.
    pub fn rename_class(&self, from: &str, to: &str) -> rusqlite::Result<()> {
        self.conn.lock().unwrap().execute("UPDATE alarms SET class = ?2 WHERE class = ?1", params![from, to])?;
        self.wake.notify_one();
        Ok(())
    }

    /// Forgets the alarms of a deleted class.
    pub fn remove_class(&self, class: &str) -> rusqlite::Result<()> {
        self.conn.lock().unwrap().execute("DELETE FROM alarms WHERE class = ?1", params![class]).map(drop)
    }

    /// Records that an object has an alarm at `at_ms` (a fresh alarm: no retries yet).
    pub fn upsert(&self, class: &str, id: &str, name: Option<&str>, at_ms: i64) -> rusqlite::Result<()> {
        self.conn
            .lock()
            .unwrap()
            .prepare_cached(
                "INSERT INTO alarms (class, id, name, at_ms, due_ms, retry) VALUES (?1, ?2, ?3, ?4, ?4, 0)
             ON CONFLICT (class, id) DO UPDATE SET name = coalesce(excluded.name, name),
                 at_ms = excluded.at_ms, due_ms = excluded.at_ms, retry = 0, leased_until = NULL
             WHERE at_ms != excluded.at_ms OR due_ms != excluded.at_ms OR retry != 0 OR leased_until IS NOT NULL",
            )?
            .execute(params![class, id, name, at_ms])?;
        self.wake_if_before(at_ms);
        Ok(())
    }

    /// The object has no alarm.
    pub fn remove(&self, class: &str, id: &str) -> rusqlite::Result<()> {
        self.conn
            .lock()
            .unwrap()
            .prepare_cached("DELETE FROM alarms WHERE class = ?1 AND id = ?2")?
            .execute(params![class, id])?;
        Ok(())
    }

    /// A failed alarm: try again at `due_ms` as retry number `retry`.
    pub fn retry_at(&self, class: &str, id: &str, retry: u32, due_ms: i64) -> rusqlite::Result<()> {
        self.conn
            .lock()
            .unwrap()
            .prepare_cached(
                "UPDATE alarms SET retry = ?3, due_ms = ?4, leased_until = NULL WHERE class = ?1 AND id = ?2",
            )?
            .execute(params![class, id, retry, due_ms])?;
        self.wake_if_before(due_ms);
        Ok(())
    }

    /// Looks at this row again at `due_ms` (its class is not served, its object was busy).
    pub fn postpone(&self, class: &str, id: &str, due_ms: i64) -> rusqlite::Result<()> {
        self.conn
            .lock()
            .unwrap()
            .prepare_cached("UPDATE alarms SET due_ms = ?3, leased_until = NULL WHERE class = ?1 AND id = ?2")?
            .execute(params![class, id, due_ms])?;
        Ok(())
    }

    /// Takes up to `limit` alarms due at `now`, leasing them until `lease_until`.
    pub fn take_due(&self, now: i64, limit: usize, lease_until: i64) -> rusqlite::Result<Vec<Due>> {
        let mut conn = self.conn.lock().unwrap();
        let tx = conn.transaction()?;
        let due: Vec<Due> = tx
            .prepare_cached(
                "SELECT class, id, name, retry FROM alarms WHERE coalesce(leased_until, due_ms) <= ?1
                 ORDER BY coalesce(leased_until, due_ms) LIMIT ?2",
            )?
            .query_map(params![now, limit as i64], |r| {
                Ok(Due { class: r.get(0)?, id: r.get(1)?, name: r.get(2)?, retry: r.get(3)? })
            })?
            .collect::<rusqlite::Result<_>>()?;
        {
            let mut lease = tx.prepare_cached("UPDATE alarms SET leased_until = ?3 WHERE class = ?1 AND id = ?2")?;
            for d in &due {
                lease.execute(params![d.class, d.id, lease_until])?;
            }
        }
        tx.commit()?;
        Ok(due)
    }

    /// The earliest time the scheduler must look again.
    pub fn next_due(&self) -> rusqlite::Result<Option<i64>> {
        self.conn
            .lock()
            .unwrap()
            .prepare_cached("SELECT min(coalesce(leased_until, due_ms)) FROM alarms")?
            .query_row([], |r| r.get(0))
    }

    /// Pending alarms (for stats).
    pub fn len(&self) -> rusqlite::Result<u64> {
        let n: i64 =
            self.conn.lock().unwrap().prepare_cached("SELECT count(*) FROM alarms")?.query_row([], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// The stored retry count of an object's alarm.
    #[cfg(test)]
    pub fn retry_of(&self, class: &str, id: &str) -> rusqlite::Result<Option<u32>> {
        use rusqlite::OptionalExtension;
        self.conn
            .lock()
            .unwrap()
            .prepare_cached("SELECT retry FROM alarms WHERE class = ?1 AND id = ?2")?
            .query_row(params![class, id], |r| r.get(0))
            .optional()
    }

    pub fn set_next_look(&self, at_ms: i64) {
        self.next_look.store(at_ms, Ordering::SeqCst);
    }

    fn wake_if_before(&self, at_ms: i64) {
        if at_ms < self.next_look.load(Ordering::SeqCst) {
            self.wake.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_alarms_are_leased_once_and_leases_end_with_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alarms.sqlite");
        let index = AlarmIndex::open(&path, Durability::Normal).unwrap();
        index.upsert("c", "a", Some("alice"), 100).unwrap();
        index.upsert("c", "b", None, 200).unwrap();
        index.upsert("c", "z", None, 5_000).unwrap();
        assert_eq!(index.next_due().unwrap(), Some(100));
        let due = index.take_due(250, 10, 60_250).unwrap();
        assert_eq!(due.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(due[0].name.as_deref(), Some("alice"));
        assert!(index.take_due(250, 10, 60_250).unwrap().is_empty(), "leased rows are not taken twice");
        assert_eq!(index.next_due().unwrap(), Some(5_000));
        index.retry_at("c", "b", 1, 2_250).unwrap();
        drop(index);
        let index = AlarmIndex::open(&path, Durability::Normal).unwrap();
        let due = index.take_due(300, 10, 60_300).unwrap();
        assert_eq!(
            due.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            ["a"],
            "a's lease ended; b waits for its retry"
        );
        assert_eq!(index.take_due(2_300, 10, 62_300).unwrap()[0].id, "b");
        assert_eq!(index.retry_of("c", "b").unwrap(), Some(1));
        index.remove("c", "a").unwrap();
        index.upsert("c", "b", None, 400).unwrap();
        assert_eq!(index.retry_of("c", "b").unwrap(), Some(0), "a new alarm starts without retries");
        assert_eq!(index.len().unwrap(), 2);
    }
}
