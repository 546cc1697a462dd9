//! The actor of one object: takes events from its mailbox in order, runs them on the object's
//! instance inside one transaction per batch, commits, then releases the replies.

use super::directory::{ActorControl, Directory};
use super::instance::{Failure, Instance, ObjectInfo};
use super::{Envelope, Event, ObjectKey, Reply};
use crate::config::Durability;
use crate::error::Error;
use crate::registry::Class;
use crate::storage::{ObjectDb, object_db_path};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

pub struct Actor {
    directory: Arc<Directory>,
    class: Arc<Class>,
    key: ObjectKey,
    info: Arc<ObjectInfo>,
    inbox: mpsc::Receiver<Envelope>,
    control: Arc<ActorControl>,
    /// Dropped before `permit`, so the descriptors are free when the permit is.
    db: Option<ObjectDb>,
    permit: Option<OwnedSemaphorePermit>,
    instance: Option<Instance>,
    /// Set by a `Hibernate` event that asked to close storage once its batch is committed.
    close_after_batch: bool,
}

enum Wake {
    Event(Envelope),
    Idle,
    Retire,
    Stop,
}

type Outcome = (oneshot::Sender<Result<Reply, Error>>, Result<Reply, Error>);

impl Actor {
    pub fn new(
        directory: Arc<Directory>,
        class: Arc<Class>,
        key: ObjectKey,
        name: Option<String>,
        inbox: mpsc::Receiver<Envelope>,
        control: Arc<ActorControl>,
    ) -> Self {
        let info = Arc::new(ObjectInfo::new(key.class.clone(), key.id, name));
        Actor {
            directory,
            class,
            key,
            info,
            inbox,
            control,
            db: None,
            permit: None,
            instance: None,
            close_after_batch: false,
        }
    }

    pub async fn run(mut self) {
        loop {
            let idle = if self.instance.is_some() {
                self.directory.config.idle_timeout
            } else {
                self.directory.config.object_idle_timeout
            };
            let wake = tokio::select! {
                biased;
                _ = self.control.retire.notified() => Wake::Retire,
                next = tokio::time::timeout(idle, self.inbox.recv()) => match next {
                    Ok(Some(envelope)) => Wake::Event(envelope),
                    Ok(None) => Wake::Stop,
                    Err(_) => Wake::Idle,
                },
            };
            match wake {
                Wake::Event(envelope) => self.run_batch(envelope).await,
                Wake::Idle if self.instance.is_some() => {
                    self.instance = None;
                    tracing::debug!(object = %self.info.label, "instance dropped after idling");
                }
                Wake::Idle | Wake::Retire => {
                    self.close();
                    if self.directory.leave(&self.key, &self.control, &mut self.inbox) {
                        return;
                    }
                }
                Wake::Stop => return,
            }
        }
    }

    fn close(&mut self) {
        self.instance = None;
        self.db = None;
        self.permit = None;
        self.directory.closed(&self.key);
    }

    /// Runs `first` and whatever else is already queued as one transaction.
    async fn run_batch(&mut self, first: Envelope) {
        let mut batch = vec![first];
        while batch.len() < self.directory.config.max_batch {
            match self.inbox.try_recv() {
                Ok(envelope) => batch.push(envelope),
                Err(_) => break,
            }
        }
        if self.info.name.is_none()
            && self.instance.is_none()
            && let Some(name) = batch.iter().find_map(|e| e.name.clone())
        {
            self.info = Arc::new(ObjectInfo::new(self.key.class.clone(), self.key.id, Some(name)));
        }
        if let Err(reason) = self.open_db().await.and_then(|()| self.db().begin().map_err(|e| e.to_string())) {
            self.close();
            return self.reply_all(batch.into_iter().map(|e| e.reply), &reason);
        }
        self.directory.touch(&self.key);

        let mut outcomes: Vec<Outcome> = Vec::with_capacity(batch.len());
        let mut batch = batch.into_iter();
        for envelope in batch.by_ref() {
            let result = self.run_event(envelope.event).await;
            outcomes.push((envelope.reply, result));
            if !self.db().in_transaction() {
                break; // SQLite abandoned the transaction (I/O error, disk full): see below.
            }
        }

        let committed = if self.db().in_transaction() {
            self.commit().await.map_err(|e| format!("could not commit: {e}"))
        } else {
            Err("the database abandoned the transaction".to_string())
        };
        if let Err(reason) = committed {
            // Nothing of this batch is durable: no success may be acknowledged.
            tracing::error!(object = %self.info.label, "{reason}");
            self.db().rollback();
            self.instance = None;
            let unsent = batch.map(|e| e.reply);
            let acknowledged = outcomes.into_iter().map(|(reply, result)| match result {
                Ok(_) => (reply, Err(self.unavailable(&reason))),
                failed => (reply, failed),
            });
            let acknowledged: Vec<Outcome> = acknowledged.collect();
            self.send_replies(acknowledged);
            return self.reply_all(unsent, &reason);
        }
        self.send_replies(outcomes);
        if std::mem::take(&mut self.close_after_batch) {
            self.close();
        }
    }

    /// Runs one event inside its own savepoint.
    async fn run_event(&mut self, event: Event) -> Result<Reply, Error> {
        if let Err(e) = self.db().begin_event() {
            return Err(self.unavailable(&e.to_string()));
        }
        let result = match event {
            Event::Fetch(request) => self.fetch(request).await,
            Event::Hibernate { close_storage } => {
                self.instance = None;
                self.close_after_batch |= close_storage;
                Ok(Reply::Done)
            }
        };
        let db = self.db();
        match result {
            Ok(reply) => match db.end_event() {
                Ok(()) => Ok(reply),
                Err(e) => Err(self.unavailable(&e.to_string())),
            },
            Err(Failure(reason)) => {
                if db.in_transaction()
                    && let Err(e) = db.undo_event()
                {
                    tracing::error!(object = %self.info.label, "rolling back a failed event: {e}");
                }
                self.instance = None;
                tracing::warn!(object = %self.info.label, "{reason}");
                Err(Error::EventFailed { object: self.info.label.to_string(), reason })
            }
        }
    }

    async fn fetch(&mut self, request: crate::message::Request) -> Result<Reply, Failure> {
        if self.instance.is_none() {
            let instance = Instance::new(&self.class, self.info.clone(), self.directory.limits).await?;
            self.instance = Some(instance);
        }
        let instance = self.instance.as_mut().expect("just created");
        let response = instance.fetch(&mut self.db, request.into()).await?;
        Ok(Reply::Response(response.into()))
    }

    fn db(&self) -> &ObjectDb {
        self.db.as_ref().expect("the database is open during a batch")
    }

    async fn open_db(&mut self) -> Result<(), String> {
        if self.db.is_some() {
            return Ok(());
        }
        let permit = self.directory.admit(&self.key, &self.control).await;
        let config = &self.directory.config;
        let path = object_db_path(&config.data_dir, &self.key.class, &self.key.id);
        match ObjectDb::open(&path, config.durability, &config.storage) {
            Ok(db) => {
                self.db = Some(db);
                self.permit = Some(permit);
                Ok(())
            }
            Err(e) => {
                self.directory.closed(&self.key);
                Err(format!("cannot open its database {}: {e}", path.display()))
            }
        }
    }

    /// Commits the batch; a full-durability commit (fsync) runs off the async threads.
    async fn commit(&mut self) -> rusqlite::Result<()> {
        if self.directory.config.durability == Durability::Normal {
            return self.db().commit();
        }
        let db = self.db.take().expect("open during a batch");
        let (db, result) = tokio::task::spawn_blocking(move || {
            let result = db.commit();
            (db, result)
        })
        .await
        .expect("the commit task does not panic");
        self.db = Some(db);
        result
    }

    fn unavailable(&self, reason: &str) -> Error {
        Error::Unavailable {
            object: self.info.label.to_string(),
            reason: format!("{reason}; nothing of this event was saved, it is safe to retry"),
        }
    }

    fn reply_all(&self, replies: impl Iterator<Item = oneshot::Sender<Result<Reply, Error>>>, reason: &str) {
        for reply in replies {
            let _ = reply.send(Err(self.unavailable(reason)));
        }
    }

    fn send_replies(&self, outcomes: Vec<Outcome>) {
        for (reply, result) in outcomes {
            // The caller may have gone away (client disconnected): its event still happened.
            let _ = reply.send(result);
        }
    }
}
