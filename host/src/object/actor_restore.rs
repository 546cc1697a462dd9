//! A restore of one object from the backup store, run by its actor apart from any batch: asked
//! by the admin API (`Host::restore_object`), or by the object itself for its next session
//! (`storage.restore-on-next-session`).

use super::Actor;
use crate::error::Error;
use crate::object::{Envelope, Event, Reply};
use crate::storage::object_db_path;

impl Actor {
    /// Puts a database from the backup store in place of the object's: the instance goes (its
    /// memory holds the state being replaced), the database closes (checkpointed, so no WAL is
    /// left to replay over the new file), the file is replaced whole, and the reopened database
    /// ships a snapshot, so the restore is a change like any other and can itself be undone.
    pub(super) async fn run_restore(&mut self, envelope: Envelope) {
        let Event::Restore { database } = envelope.event else { unreachable!("only restores come here") };
        let result = self.restore(database).await.map_err(|reason| {
            tracing::error!(object = %self.info.label, "restore failed: {reason}");
            Error::Unavailable { object: self.info.label.to_string(), reason }
        });
        let _ = envelope.reply.send(result);
    }

    async fn restore(&mut self, database: Vec<u8>) -> Result<Reply, String> {
        if let Some(db) = self.db.take() {
            db.close_idle();
        }
        self.close();
        let path = object_db_path(&self.directory.config.data_dir, &self.key.class, &self.key.id);
        crate::storage::off_the_async_worker(|| crate::storage::replace_database(&path, &database))
            .map_err(|e| format!("cannot put the restored database in place: {e}"))?;
        self.open_db(false).await?;
        self.db().ship_snapshot();
        self.alarm_touched = true;
        self.alarm_retry = None;
        let recorded = self.reconcile_alarm();
        if let Some(unconfirmed) = self.db().unconfirmed(true) {
            unconfirmed.replicated().await?;
        }
        if let Some(recorded) = recorded {
            recorded.done().await?;
        }
        tracing::info!(object = %self.info.label, bytes = database.len(), "restored from the backup store");
        Ok(Reply::Done)
    }

    /// When a session starts and `storage.restore-on-next-session` asked for it: the object comes
    /// back as it was at that time (empty, if that was before its first commit), and the ask is
    /// forgotten by a commit of its own (the restored state may hold the ask itself).
    pub(super) async fn restore_if_asked(&mut self) -> Result<(), String> {
        let Some(at_ms) = self.db().restore_asked().map_err(|e| e.to_string())? else { return Ok(()) };
        let backup = self.directory.backup.clone().expect("only asked with a backup store");
        let object = crate::backup::format::ObjectRef::new(&self.key.class, &self.key.id);
        let (database, refused) = match backup.object_at(&object, Some(at_ms)).await {
            Ok(database) => (database, None),
            // The store is away: this batch is refused (safe to retry) and the ask stays.
            Err(reason) if backup.status().failing.is_some() => return Err(reason),
            // The store answers but cannot give that state (history past the retention, a
            // damaged batch): asking again each session would fail the same way.
            Err(reason) => (None, Some(reason)),
        };
        let empty = database.is_none() && refused.is_none();
        if let Some(database) = database {
            self.restore(database).await?;
        }
        if let Some(reason) = &refused {
            tracing::error!(object = %self.info.label, at_ms, "cannot come back to the bookmark asked for; the ask is dropped: {reason}");
        }
        let db = self.db();
        let forgotten = (|| -> Result<(), String> {
            db.begin().map_err(|e| e.to_string())?;
            if empty {
                crate::storage::delete_everything(db).map_err(|e| e.to_string())?;
            }
            db.ask_restore(None).map_err(|e| e.to_string())?;
            db.commit().map_err(|e| e.to_string())
        })();
        if let Err(e) = forgotten {
            db.rollback();
            return Err(format!("cannot finish the restore asked for this session: {e}"));
        }
        self.alarm_touched = true;
        let recorded = self.reconcile_alarm();
        if let Some(unconfirmed) = self.db().unconfirmed(true) {
            unconfirmed.replicated().await?;
        }
        if let Some(recorded) = recorded {
            recorded.done().await?;
        }
        if refused.is_none() {
            tracing::info!(object = %self.info.label, at_ms, empty, "came back as it was at the bookmark asked for");
        }
        Ok(())
    }
}
