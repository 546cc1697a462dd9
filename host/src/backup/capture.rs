//! Taking an object's commits from its WAL, right after each commit, for the shipper.
//!
//! The host controls checkpoints (`storage/db.rs`), and this runs after every commit and before
//! any checkpoint, so every frame a commit wrote is still in the WAL when it is read here: the
//! frames past those already taken, up to the count SQLite reports after the commit (its WAL
//! hook). A checkpoint that folded the whole WAL lets the next commit start the WAL again from
//! its beginning with new salts; the salts in the header tell this apart from a WAL that only
//! grew. The first commit an object makes in a run of the host ships its whole database (a
//! snapshot) instead: the store may not have what came before (commits made without a backup,
//! or lost in the async window of a crash).

use super::Backup;
use super::format::{Entry, ObjectRef};
use std::sync::Arc;

use crate::config::BackupMode;
use crate::storage::{FRAME_HEADER, WAL_HEADER};

/// A commit not yet known to be in the store (sync mode).
#[must_use]
pub struct Unconfirmed(Result<(Arc<Backup>, u64), String>);

impl Unconfirmed {
    /// Waits until the commit is in the store; an error says why it will not be acknowledged.
    pub async fn replicated(self) -> Result<(), String> {
        match self.0 {
            Ok((backup, ticket)) => backup.wait_replicated(ticket).await,
            Err(reason) => Err(reason),
        }
    }
}

/// What an open object's database has shipped.
pub struct Capture {
    backup: Arc<Backup>,
    object: ObjectRef,
    /// The cluster claim this host holds the object under (0 outside a cluster): every entry
    /// carries it (`format.rs`).
    token: u64,
    /// The cluster lease this host held the object under when its database opened (`None`
    /// outside a cluster): a write commits only while this host still holds that lease.
    held_under: Option<i64>,
    /// Frames of the current WAL already taken.
    taken: u32,
    /// The current WAL's salts (bytes 16..24 of its header).
    salts: [u8; 8],
    /// The next commit ships a snapshot.
    snapshot: bool,
    /// A commit of this object is neither in the queue nor in the store: a snapshot is owed
    /// even if no commit follows (it ships when the database closes).
    owed: bool,
    /// The ticket of the last commit taken, until asked for (sync mode waits for it to be in
    /// the store); `Err` when that commit could not be queued.
    unconfirmed: Option<Result<u64, String>>,
}

impl Capture {
    pub fn new(backup: Arc<Backup>, object: ObjectRef, token: u64, held_under: Option<i64>) -> Capture {
        Capture {
            backup,
            object,
            token,
            held_under,
            taken: 0,
            salts: [0; 8],
            snapshot: true,
            owed: false,
            unconfirmed: None,
        }
    }

    /// After a commit that left `frames` frames in the WAL: queues what it wrote. `snapshot`
    /// serializes the whole database (called only when one is due); `wal` reads the WAL (fills
    /// the buffer from the offset), as the connection sees it.
    pub fn committed(
        &mut self,
        frames: u32,
        page_size: u32,
        snapshot: impl FnOnce() -> rusqlite::Result<Vec<u8>>,
        wal: &dyn Fn(&mut [u8], u64) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let result = self.take(frames, page_size, snapshot, wal);
        if let Err(e) = &result {
            // What this commit wrote is not queued: the next one ships the whole database.
            (self.snapshot, self.owed) = (true, true);
            self.unconfirmed = Some(Err(format!("the commit could not be read for the backup: {e}")));
        }
        result
    }

    /// In sync mode, what the last commit taken must wait for before anything it caused leaves
    /// the host; `None` in async mode. `forget`: the caller answers for it (the batch's owner);
    /// otherwise it is still asked for at the end of the batch (an outbound request's gate).
    pub fn unconfirmed(&mut self, forget: bool) -> Option<Unconfirmed> {
        let unconfirmed = if forget { self.unconfirmed.take()? } else { self.unconfirmed.clone()? };
        (self.backup.mode() == BackupMode::Sync)
            .then(|| Unconfirmed(unconfirmed.map(|ticket| (self.backup.clone(), ticket))))
    }

    pub fn backup(&self) -> &Arc<Backup> {
        &self.backup
    }

    /// Why a commit that writes must not happen now (sync mode, the store away; in a cluster,
    /// the lease the object was held under gone).
    pub fn refusing_writes(&self) -> Option<String> {
        self.backup.refusing_writes(self.held_under)
    }

    fn queued(&mut self, ticket: Option<u64>) -> bool {
        self.unconfirmed = Some(ticket.ok_or_else(|| {
            "the backup queue is full (the store is slow or away): this commit ships with the object's \
             next one"
                .to_string()
        }));
        ticket.is_some()
    }

    /// Queues the whole database now (it was just put in place by a restore). The next commit
    /// ships a snapshot too: what the WAL holds is not known to this capture.
    pub fn ship_now(&mut self, page_size: u32, snapshot: impl FnOnce() -> rusqlite::Result<Vec<u8>>) {
        self.snapshot = true;
        match snapshot() {
            Ok(bytes) => {
                let entry = self.snapshot_entry(page_size, bytes);
                let ticket = self.backup.enqueue(entry);
                self.owed = !self.queued(ticket);
            }
            Err(e) => {
                self.owed = true;
                self.unconfirmed = Some(Err(format!("cannot read the restored database for the backup: {e}")));
            }
        }
    }

    /// The whole database as an entry, dated now.
    fn snapshot_entry(&self, page_size: u32, bytes: Vec<u8>) -> Entry {
        let (time_ms, object, token) = (self.backup.commit_time(), self.object.clone(), self.token);
        Entry::Snapshot { time_ms, object, token, page_size, bytes }
    }

    /// When the database closes (not inside a transaction): ships the snapshot owed, if any.
    pub fn closing(&mut self, page_size: u32, snapshot: impl FnOnce() -> rusqlite::Result<Vec<u8>>) {
        if !self.owed && !self.backup.take_stale(&self.object) {
            return;
        }
        match snapshot() {
            Ok(bytes) => {
                let entry = self.snapshot_entry(page_size, bytes);
                self.owed = self.backup.enqueue(entry).is_none();
            }
            Err(e) => tracing::warn!(object = ?self.object, "backup: cannot take the snapshot owed at close: {e}"),
        }
    }

    fn take(
        &mut self,
        frames: u32,
        page_size: u32,
        snapshot: impl FnOnce() -> rusqlite::Result<Vec<u8>>,
        wal: &dyn Fn(&mut [u8], u64) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let time_ms = self.backup.commit_time();
        if self.snapshot || self.backup.take_stale(&self.object) {
            let bytes = snapshot().map_err(std::io::Error::other)?;
            self.salts = read_salts(wal)?;
            self.taken = frames;
            let (object, token) = (self.object.clone(), self.token);
            let ticket = self.backup.enqueue(Entry::Snapshot { time_ms, object, token, page_size, bytes });
            self.snapshot = !self.queued(ticket);
            self.owed = self.snapshot;
            return Ok(());
        }
        let salts = read_salts(wal)?;
        if salts != self.salts {
            (self.salts, self.taken) = (salts, 0);
        }
        if frames <= self.taken {
            return Ok(());
        }
        let frame_size = FRAME_HEADER + u64::from(page_size);
        let count = frames - self.taken;
        let mut bytes = vec![0; count as usize * frame_size as usize];
        wal(&mut bytes, WAL_HEADER + u64::from(self.taken) * frame_size)?;
        let mut pages = Vec::new();
        for frame in bytes.chunks_exact(frame_size as usize) {
            let number = u32::from_be_bytes(frame[0..4].try_into().expect("4 bytes"));
            let db_pages = u32::from_be_bytes(frame[4..8].try_into().expect("4 bytes"));
            pages.push((number, frame[FRAME_HEADER as usize..].to_vec()));
            // A commit frame ends a transaction (one per commit, unless an earlier commit was not
            // taken here: then each ships as its own).
            if db_pages > 0 {
                let entry = Entry::Transaction {
                    time_ms,
                    object: self.object.clone(),
                    token: self.token,
                    page_size,
                    db_pages,
                    pages: std::mem::take(&mut pages),
                };
                let ticket = self.backup.enqueue(entry);
                if !self.queued(ticket) {
                    // Over the queue's bound: the next commit (or the close) ships a snapshot,
                    // and no later transaction ships without this one under it.
                    (self.snapshot, self.owed) = (true, true);
                    break;
                }
            }
        }
        self.taken = frames;
        Ok(())
    }
}

/// The salts of the WAL `wal` reads (bytes 16..24 of its header).
fn read_salts(wal: &dyn Fn(&mut [u8], u64) -> std::io::Result<()>) -> std::io::Result<[u8; 8]> {
    let mut salts = [0; 8];
    wal(&mut salts, 16)?;
    Ok(salts)
}
