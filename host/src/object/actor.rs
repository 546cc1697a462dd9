//! The actor of one object: takes events from its mailbox in order, runs them on the object's
//! instance inside one transaction per batch, commits, then releases the replies.

use super::directory::{ActorControl, Directory};
use super::instance::{Failure, Instance, ObjectInfo, SocketEvent};
use super::spares;
use super::{Envelope, Event, ObjectKey, Reply};
use crate::alarms;
use crate::bindings::exports::wdo::object::handler::AlarmInfo;
use crate::config::Durability;
use crate::error::Error;
use crate::observe::{Context, Outcome};
use crate::registry::Class;
use crate::sockets::{AcceptedSocket, SocketEffects, SocketId};
use crate::storage::{ObjectDb, object_db_path};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

pub struct Actor {
    directory: Arc<Directory>,
    class: Arc<Class>,
    key: ObjectKey,
    info: Arc<ObjectInfo>,
    inbox: mpsc::Receiver<Envelope>,
    control: Arc<ActorControl>,
    /// Dropped before `permit`, so the descriptors are free when the permit is.
    db: Option<ObjectDb>,
    permit: Option<super::residency::Permit>,
    instance: Option<Instance>,
    /// Set by a `Hibernate` event that asked to close storage once its batch is committed.
    close_after_batch: bool,
    /// The batch changed (or delivered) the alarm: the alarm index must follow.
    alarm_touched: bool,
    /// A failed alarm of this batch is to be retried: (retry number, when).
    alarm_retry: Option<(u32, i64)>,
    /// What the batch's successful events did to sockets, for after the commit.
    socket_effects: Vec<SocketEffects>,
    /// Sockets whose close event ran in this batch: the hub forgets them after the commit.
    sockets_closed: Vec<SocketId>,
    /// The objects waiting on the event being run, and when it must be over.
    chain: Vec<ObjectKey>,
    deadline: Option<tokio::time::Instant>,
    /// This batch took a spare instance (or started a slow one): make a spare once it answered.
    refill_spares: Option<Arc<crate::registry::Version>>,
    /// The open database has been told (or has told) the object's name.
    name_known: bool,
    /// In a cluster: the lease this host held the object under when its database opened
    /// (`Cluster::held_under`); a write is acknowledged only while that lease lasts.
    held_under: Option<i64>,
    /// A restore met while gathering a batch: it runs once the batch is done.
    deferred: Option<Envelope>,
    /// The database was open before the current batch (the inspector's "live").
    was_open: bool,
    /// This class's counters and histogram.
    metrics: Arc<crate::observe::ClassMetrics>,
    /// What the batch's events were, in order, for metrics and the tail once they are answered.
    finished: Vec<Finished>,
    /// How the alarm handler of the last event ended, when it failed (its event succeeds: the
    /// failure is the retry's business).
    alarm_failed: Option<(Outcome, String)>,
}

// One lives on the actor's stack per wake-up; boxing the envelope would allocate per event.
#[allow(clippy::large_enum_variant)]
enum Wake {
    Event(Envelope),
    Idle,
    Retire,
    Shed,
    Stop,
}

type Answered = (oneshot::Sender<Result<Reply, Error>>, Result<Reply, Error>);

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
        let metrics = directory.limits.observe.metrics.class(&key.class);
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
            alarm_touched: false,
            alarm_retry: None,
            socket_effects: Vec::new(),
            sockets_closed: Vec::new(),
            chain: Vec::new(),
            deadline: None,
            refill_spares: None,
            name_known: false,
            held_under: None,
            deferred: None,
            was_open: false,
            metrics,
            finished: Vec::new(),
            alarm_failed: None,
        }
    }

    pub async fn run(mut self) {
        // One idle timer, pushed later after each event. A timer made afresh for every wait
        // registers with tokio's timer driver each time, which can wake the worker thread parked
        // on the driver; pushing a registered deadline later touches nothing but the entry.
        let idle_timer = tokio::time::sleep(self.idle_timeout());
        tokio::pin!(idle_timer);
        loop {
            idle_timer.as_mut().reset(tokio::time::Instant::now() + self.idle_timeout());
            let wake = tokio::select! {
                biased;
                _ = self.control.retire.notified() => Wake::Retire,
                _ = self.control.shed.notified() => Wake::Shed,
                next = self.inbox.recv() => match next {
                    Some(envelope) => Wake::Event(envelope),
                    None => Wake::Stop,
                },
                () = &mut idle_timer => Wake::Idle,
            };
            match wake {
                Wake::Event(envelope) if self.class.is_removed() => {
                    // The class was deleted or renamed: nothing more runs here; the deploy waits
                    // for this actor to leave before it moves or deletes the data.
                    let reason = format!("class `{}` was removed by a deploy while this event waited", self.class.name);
                    self.reply_all(std::iter::once(envelope.reply), &reason);
                    while let Ok(envelope) = self.inbox.try_recv() {
                        self.reply_all(std::iter::once(envelope.reply), &reason);
                    }
                    self.close();
                    if self.directory.leave(&self.key, &self.control, &mut self.inbox) {
                        return;
                    }
                }
                Wake::Event(envelope) => {
                    if matches!(envelope.event, Event::Restore { .. }) {
                        self.run_restore(envelope).await;
                    } else {
                        self.run_batch(envelope).await;
                    }
                    if let Some(restore) = self.deferred.take() {
                        self.run_restore(restore).await;
                    }
                }
                // A socket that keeps its state in the instance (`hold-instance`) keeps it.
                Wake::Idle if self.instance.is_some() && self.directory.limits.sockets.holds_instance(&self.key) => {}
                Wake::Idle if self.instance.is_some() => {
                    self.instance = None;
                    if let Some(db) = &self.db {
                        db.release_memory();
                    }
                    tracing::debug!(object = %self.info.label, "instance dropped after idling");
                }
                Wake::Idle => {
                    // Idle for good: its WAL goes into the database, leaving one file.
                    if let Some(db) = self.db.take() {
                        db.close_idle();
                    }
                    self.close();
                    if self.directory.leave(&self.key, &self.control, &mut self.inbox) {
                        return;
                    }
                }
                // Asked to make room for another object's instance. An instance a socket holds
                // (`hold-instance`) goes too, as it does when the database closes to make room:
                // the bound holds, and the socket's next event finds a fresh instance.
                Wake::Shed => self.instance = None,
                Wake::Retire => {
                    self.close();
                    if self.directory.leave(&self.key, &self.control, &mut self.inbox) {
                        return;
                    }
                }
                Wake::Stop => return,
            }
        }
    }

    /// How long the actor waits for an event before it drops its instance (or, without one,
    /// closes the object).
    fn idle_timeout(&self) -> std::time::Duration {
        if self.instance.is_some() {
            self.directory.config.idle_timeout
        } else {
            self.directory.config.object_idle_timeout
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
                Ok(envelope) if matches!(envelope.event, Event::Restore { .. }) => {
                    self.deferred = Some(envelope);
                    break;
                }
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
        let called = batch.iter().any(|e| !e.chain.is_empty());
        self.was_open = self.db.is_some();
        let opened = match self.open_db(called).await {
            // A new session: storage.restore-on-next-session may have asked for an older state.
            Ok(()) if self.instance.is_none() && self.directory.backup.is_some() => self.restore_if_asked().await,
            opened => opened,
        };
        if let Err(reason) = opened.and_then(|()| self.db().begin().map_err(|e| e.to_string())) {
            self.close();
            return self.reply_all(batch.into_iter().map(|e| e.reply), &reason);
        }
        self.directory.touch(&self.key);
        if !self.name_known {
            self.remember_name();
        }
        let write_mark = self.db().write_mark();

        let mut outcomes: Vec<Answered> = Vec::with_capacity(batch.len());
        let mut batch = batch.into_iter();
        for envelope in batch.by_ref() {
            self.chain = envelope.chain;
            // Its own deadline, or its caller's if that comes first: a callee never outlives it.
            let own = tokio::time::Instant::now() + self.directory.config.event_timeout;
            let deadline = envelope.deadline.map_or(own, |caller| caller.min(own));
            self.deadline = Some(deadline);
            let kind = envelope.event.kind();
            self.control.events.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let lines = self.directory.limits.observe.tail.watched().then(crate::observe::tail::Lines::default);
            let context = Context {
                request_id: envelope.request_id.clone(),
                object: Some(self.info.clone()),
                kind: Some(kind),
                lines: lines.clone(),
            };
            let started = std::time::Instant::now();
            let result = if deadline <= tokio::time::Instant::now() {
                Err(Error::EventFailed {
                    object: self.info.label.to_string(),
                    reason: "not run: its caller's deadline passed while it waited (--event-timeout)".into(),
                    outcome: crate::observe::Outcome::Deadline,
                })
            } else {
                // Pinned in place: passing the (large) future by value would copy it per event.
                let event = std::pin::pin!(self.run_event(envelope.event));
                context.scope(event).await
            };
            let (took, alarm_failed) = (started.elapsed(), self.alarm_failed.take());
            self.finished.push(Finished { kind, took, request_id: envelope.request_id, lines, alarm_failed });
            outcomes.push((envelope.reply, result));
            if !self.db().in_transaction() {
                break; // SQLite abandoned the transaction (I/O error, disk full): see below.
            }
        }

        if self.alarm_touched {
            self.index_pending_alarm();
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
            let acknowledged: Vec<Answered> = acknowledged.collect();
            self.socket_effects.clear();
            self.send_replies(acknowledged);
            let _ = self.reconcile_alarm();
            self.forget_closed_sockets();
            return self.reply_all(unsent, &reason);
        }
        self.metrics.written(self.db().bytes_written_since(write_mark));
        let alarm_recorded = self.reconcile_alarm();
        // Sync backup: nothing the batch caused leaves before its commit is in the store (and,
        // in a cluster, its alarm in etcd).
        let unconfirmed = self.db().unconfirmed(true);
        let replicated = match unconfirmed {
            Some(unconfirmed) => unconfirmed.replicated().await.and_then(|()| {
                self.still_held().map_err(|e| {
                    format!(
                        "{e}; the event's write was committed here before that was known, so it is not \
                         acknowledged (it is kept only if no other host took the object over meanwhile)"
                    )
                })
            }),
            None => Ok(()),
        };
        let recorded = match alarm_recorded {
            Some(recorded) => recorded.done().await,
            None => Ok(()),
        };
        if let Err(reason) = replicated.and(recorded) {
            tracing::warn!(object = %self.info.label, "{reason}");
            self.socket_effects.clear();
            for (_, result) in &mut outcomes {
                if result.is_ok() {
                    let failed =
                        Err(Error::Unavailable { object: self.info.label.to_string(), reason: reason.clone() });
                    // A socket accepted in the batch never reached the hub (its effects are cleared).
                    if let Ok(Reply::Upgrade(accepted)) = std::mem::replace(result, failed) {
                        accepted.forget();
                    }
                }
            }
        }
        let hub = &self.directory.limits.sockets;
        for effects in self.socket_effects.drain(..) {
            hub.apply(&self.key, self.info.name.as_deref(), effects);
        }
        self.forget_closed_sockets();
        self.send_replies(outcomes);
        if std::mem::take(&mut self.close_after_batch) {
            self.close();
        }
    }

    /// In a cluster: whether the lease this host held the object under still lasts. A host
    /// paused past its lease (or cut off from etcd) drops its objects and takes a new lease when
    /// it comes back; an event that was running then must not be acknowledged under the new
    /// one, as the object may have been taken over meanwhile.
    fn still_held(&self) -> Result<(), String> {
        match self.directory.cluster.get() {
            Some(cluster) => cluster.check_held_under(self.held_under),
            None => Ok(()),
        }
    }

    /// Runs one event inside its own savepoint.
    async fn run_event(&mut self, event: Event) -> Result<Reply, Error> {
        if let Err(e) = self.db().begin_event() {
            return Err(self.unavailable(&e.to_string()));
        }
        let result = match event {
            Event::Fetch(request) => self.fetch(request, false).await,
            Event::Upgrade(request) => self.fetch(request, true).await,
            Event::WebSocketMessage { socket, message } => self.websocket(SocketEvent::Message(socket, message)).await,
            Event::WebSocketClose { socket, code, reason, was_clean } => {
                self.sockets_closed.push(socket);
                self.websocket(SocketEvent::Close(socket, code, reason, was_clean)).await
            }
            Event::WebSocketError { socket, error } => self.websocket(SocketEvent::Error(socket, error)).await,
            Event::Alarm { retry } => return self.alarm(retry).await,
            Event::Call { method, args } => self.call(&method, &args).await,
            Event::Hibernate { close_storage } => {
                self.instance = None;
                self.close_after_batch |= close_storage;
                Ok(Reply::Done)
            }
            Event::Restore { .. } => unreachable!("a restore runs apart from batches (run_restore)"),
            Event::Inspect(ask) => return self.inspect(&ask),
        };
        if self.instance.as_mut().is_some_and(|i| i.take_alarm_touched()) {
            self.alarm_touched = true;
            self.alarm_retry = None; // a new alarm (or none) replaces a pending retry
        }
        let effects = self.instance.as_mut().map(|i| i.take_socket_effects()).unwrap_or_default();
        let restore_asked = self.instance.as_mut().and_then(|i| i.take_restore_asked());
        let db = self.db();
        match result {
            Ok(reply) => match db.end_event() {
                Ok(()) => {
                    let reply = match (reply, &effects.accepted) {
                        (Reply::Response(_), Some(accepted)) => Reply::Upgrade(AcceptedSocket::new(
                            self.key.clone(),
                            accepted.id,
                            self.directory.limits.sockets.clone(),
                        )),
                        (reply, _) => reply,
                    };
                    if !effects.is_empty() {
                        self.socket_effects.push(effects);
                    }
                    Ok(reply)
                }
                Err(e) => Err(self.unavailable(&e.to_string())),
            },
            Err(Failure { reason, outcome }) => {
                if db.in_transaction()
                    && let Err(e) = db.undo_event()
                {
                    tracing::error!(object = %self.info.label, "rolling back a failed event: {e}");
                }
                // Asking for a restore, then failing on purpose (Cloudflare's `ctx.abort()`),
                // is how an object comes back at once: the ask stays.
                if let Some(at_ms) = restore_asked
                    && db.in_transaction()
                    && let Err(e) = db.ask_restore(Some(at_ms))
                {
                    tracing::error!(object = %self.info.label, "keeping the restore asked for: {e}");
                }
                self.instance = None;
                Err(Error::EventFailed { object: self.info.label.to_string(), reason, outcome })
            }
        }
    }

    async fn fetch(&mut self, request: crate::message::Request, upgrade: bool) -> Result<Reply, Failure> {
        self.start_instance().await?;
        let instance = self.instance.as_mut().expect("started");
        let response = instance.fetch(&mut self.db, request.into(), upgrade).await?;
        Ok(Reply::Response(response.into()))
    }

    async fn websocket(&mut self, event: SocketEvent) -> Result<Reply, Failure> {
        self.start_instance().await?;
        self.instance.as_mut().expect("started").websocket(&mut self.db, event).await?;
        Ok(Reply::Done)
    }

    fn forget_closed_sockets(&mut self) {
        for socket in self.sockets_closed.drain(..) {
            self.directory.limits.sockets.remove(&self.key, socket);
        }
    }

    async fn start_instance(&mut self) -> Result<(), Failure> {
        let version = self.class.version();
        if self.instance.as_ref().is_some_and(|i| !Arc::ptr_eq(&i.version, &version)) {
            // A deploy switched the class: this event is the first to run the new version.
            tracing::debug!(object = %self.info.label, version = version.number, "instance replaced by a deploy");
            self.instance = None;
        }
        if self.instance.is_none() {
            let called = !self.chain.is_empty();
            let directory = self.directory.clone();
            let made = directory.instance(&self.key, &self.control, called, version.clone(), self.info.clone());
            let (instance, refill) = made.await?;
            self.instance = Some(instance);
            if refill {
                self.refill_spares = Some(version);
            }
        }
        let chain = std::mem::take(&mut self.chain);
        self.instance.as_mut().expect("started").set_caller(chain, self.deadline);
        Ok(())
    }

    async fn call(&mut self, method: &str, args: &[u8]) -> Result<Reply, Failure> {
        self.start_instance().await?;
        let result = self.instance.as_mut().expect("started").call(&mut self.db, method, args).await?;
        if let Ok(bytes) = &result
            && bytes.len() > self.directory.config.max_call_payload
        {
            let limit = self.directory.config.max_call_payload;
            return Ok(Reply::Called(Err(format!("the result is {} bytes; the limit is {limit}", bytes.len()))));
        }
        Ok(Reply::Called(result))
    }

    /// Delivers the alarm if the object really has one due; inside the event's savepoint
    /// (already open). A failure rolls the event back and schedules a retry, or drops the alarm
    /// after the last retry.
    async fn alarm(&mut self, retry: u32) -> Result<Reply, Error> {
        self.alarm_touched = true;
        let due = match self.db().alarm() {
            Ok(Some(at)) if at <= alarms::now_ms() => at,
            Ok(_) => return self.end_event_with(Reply::Done), // stale index row: reconciled after commit
            Err(e) => return Err(self.unavailable(&e.to_string())),
        };
        // Cleared before the handler runs: it stays cleared unless the handler sets a new one.
        if let Err(e) = self.db().set_alarm(None) {
            return Err(self.unavailable(&e.to_string()));
        }
        let info = AlarmInfo { retry_count: retry, is_retry: retry > 0 };
        let result = match self.start_instance().await {
            Ok(()) => self.instance.as_mut().expect("started").alarm(&mut self.db, info).await,
            Err(failure) => Err(failure),
        };
        if self.instance.as_mut().is_some_and(|i| i.take_alarm_touched()) {
            self.alarm_retry = None;
        }
        let metrics = &self.directory.limits.observe.metrics;
        let (reason, outcome) = match result {
            Ok(Ok(())) => {
                metrics.count(&metrics.alarms_fired);
                return self.end_event_with(Reply::Done);
            }
            Ok(Err(message)) => (format!("the alarm handler returned an error: {message}"), Outcome::ErrorResponse),
            Err(Failure { reason, outcome }) => {
                self.instance = None;
                (reason, outcome)
            }
        };
        self.alarm_failed = Some((outcome, reason.clone()));
        let db = self.db();
        if let Err(e) = db.undo_event() {
            return Err(self.unavailable(&e.to_string()));
        }
        if retry >= alarms::MAX_RETRIES {
            metrics.count(&metrics.alarms_dropped);
            tracing::error!(object = %self.info.label, "alarm of {due} dropped after {} retries: {reason}", retry);
            if let Err(e) = db.set_alarm(None) {
                return Err(self.unavailable(&e.to_string()));
            }
        } else {
            metrics.count(&metrics.alarms_retried);
            let wait = alarms::backoff(self.directory.config.alarm_retry_base, retry);
            tracing::warn!(object = %self.info.label, "alarm failed, retry {} in {wait:?}: {reason}", retry + 1);
            self.alarm_retry = Some((retry + 1, alarms::now_ms() + wait.as_millis() as i64));
        }
        Ok(Reply::Done)
    }

    /// Answers an operator's question about the object's storage (`inspect.rs`).
    fn inspect(&mut self, ask: &super::inspect::Inspect) -> Result<Reply, Error> {
        let config = &self.directory.config;
        let answer = super::inspect::run(self.db(), &config.storage, config.cpu_limit, ask);
        let answer = answer.map(|mut value| {
            if matches!(ask, super::inspect::Inspect::Summary) {
                let path = object_db_path(&config.data_dir, &self.key.class, &self.key.id);
                let on_disk = |path: &std::path::Path| std::fs::metadata(path).map_or(0, |m| m.len());
                let mut wal = path.clone().into_os_string();
                wal.push("-wal");
                value["file_bytes"] = (on_disk(&path) + on_disk(std::path::Path::new(&wal))).into();
                value["instance_live"] = self.instance.is_some().into();
                value["was_open"] = self.was_open.into();
                value["sockets"] = self.directory.limits.sockets.describe(&self.key).into();
            }
            serde_json::to_vec(&value).expect("serializable")
        });
        self.end_event_with(Reply::Called(answer))
    }

    fn end_event_with(&self, reply: Reply) -> Result<Reply, Error> {
        self.db().end_event().map(|()| reply).map_err(|e| self.unavailable(&e.to_string()))
    }

    /// Before the commit: make sure the index knows the alarm this batch leaves (if any), so a
    /// crash right after the commit cannot lose it.
    fn index_pending_alarm(&self) {
        if self.alarm_retry.is_some() {
            // A failed alarm keeps its row (it came from the index); upserting its old time here
            // would make it due at once as a first attempt, racing the retry set after commit.
            return;
        }
        if let Ok(Some(at)) = self.db().alarm() {
            let (class, id) = (&*self.key.class, self.key.id.to_hex());
            if let Err(e) = self.directory.alarms.upsert(class, &id, self.info.name.as_deref(), at) {
                tracing::error!(object = %self.info.label, "updating the alarm index: {e}");
            }
        }
    }

    /// After the commit (or its failure): the index follows what the object's database says.
    /// In a cluster, etcd is told too: what comes back is that write, which the event's
    /// acknowledgement waits for.
    fn reconcile_alarm(&mut self) -> Option<crate::cluster::AlarmRecorded> {
        if !std::mem::take(&mut self.alarm_touched) {
            return None;
        }
        let (class, id) = (&*self.key.class, self.key.id.to_hex());
        let index = &self.directory.alarms;
        let alarm = self.db().alarm();
        let mut recorded = None;
        if let (Some(cluster), Ok(at)) = (self.directory.cluster.get(), &alarm) {
            let due = self.alarm_retry.map_or(*at, |(_, retry_at)| at.map(|_| retry_at));
            recorded = cluster.alarm_changed(&self.key, due);
        }
        let result = match (self.alarm_retry.take(), alarm) {
            (Some((retry, at)), Ok(Some(_))) => index.retry_at(class, &id, retry, at),
            (_, Ok(Some(at))) => index.upsert(class, &id, self.info.name.as_deref(), at),
            (_, Ok(None)) => index.remove(class, &id),
            (_, Err(e)) => Err(e),
        };
        if let Err(e) = result {
            tracing::error!(object = %self.info.label, "updating the alarm index: {e}");
        }
        recorded
    }

    /// Once per open, inside the batch's transaction (not a write of its own): the database
    /// remembers the object's name, for events that arrive by id.
    fn remember_name(&mut self) {
        self.name_known = true;
        match self.db().remember_name(self.info.name.as_deref()) {
            Ok(Some(name)) if self.info.name.is_none() && self.instance.is_none() => {
                self.info = Arc::new(ObjectInfo::new(self.key.class.clone(), self.key.id, Some(name)));
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(object = %self.info.label, "remembering the object's name: {e}"),
        }
    }

    fn db(&self) -> &ObjectDb {
        self.db.as_ref().expect("the database is open during a batch")
    }

    /// Opens the object's database; `called`: an object waits on this batch (see `admit`).
    async fn open_db(&mut self, called: bool) -> Result<(), String> {
        if self.db.is_some() {
            if self.still_held().is_ok() {
                return Ok(());
            }
            // Opened under a cluster lease this host no longer holds: open it again under its
            // claim now, if it has one.
            self.close();
        }
        // In a cluster an object runs only where it is held: an actor that was asked to close
        // when its host lost its lease (or handed the object on) may still find events queued.
        let cluster = self.directory.cluster.get();
        let held_under = cluster.and_then(|cluster| cluster.held_under(&self.key));
        if cluster.is_some() && held_under.is_none() {
            return Err("this host no longer holds the object in the cluster (it lost its lease, or the object \
                        moved to another host), so it runs none of its events"
                .into());
        }
        let permit = self.directory.admit(&self.key, &self.control, called).await;
        let config = &self.directory.config;
        let path = object_db_path(&config.data_dir, &self.key.class, &self.key.id);
        match ObjectDb::open(&path, config.durability, &config.storage) {
            Ok(db) => {
                self.held_under = held_under;
                if let Some(backup) = &self.directory.backup {
                    let token = cluster.map_or(0, |cluster| cluster.token(&self.key));
                    db.attach_backup(
                        backup.clone(),
                        crate::backup::format::ObjectRef::new(&self.key.class, &self.key.id),
                        token,
                        held_under,
                    );
                }
                self.name_known = false;
                self.db = Some(db);
                self.permit = permit;
                Ok(())
            }
            Err(e) => {
                self.directory.closed(&self.key);
                // The path is the host's business: the log has it, clients only with debug_errors.
                tracing::error!(object = %self.info.label, "cannot open its database {}: {e}", path.display());
                Err(match config.debug_errors {
                    true => format!("cannot open its database {}: {e}", path.display()),
                    false => "cannot open its database (the host's log says why)".to_string(),
                })
            }
        }
    }

    /// Commits the batch; a full-durability commit (fsync) and a checkpoint run off the async
    /// threads.
    async fn commit(&mut self) -> rusqlite::Result<()> {
        if self.directory.config.durability == Durability::Normal {
            return self.db().commit_and_checkpoint();
        }
        let db = self.db.take().expect("open during a batch");
        let (db, result) = tokio::task::spawn_blocking(move || {
            let result = db.commit_and_checkpoint();
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

    fn send_replies(&mut self, outcomes: Vec<Answered>) {
        // Only now that the batch is done: a spare made while an event runs slows it (`spares`).
        if let Some(version) = self.refill_spares.take() {
            spares::refill(&self.directory, self.key.class.clone(), version);
        }
        let finished = std::mem::take(&mut self.finished);
        for ((reply, result), finished) in outcomes.into_iter().zip(finished) {
            self.observe(finished, &result);
            // The caller may have gone away (client disconnected): its event still happened (a
            // socket it accepted is abandoned as the reply drops).
            let _ = reply.send(result);
        }
    }
}

#[path = "actor_restore.rs"]
mod restore;

#[path = "actor_observe.rs"]
mod observe;
use observe::Finished;
