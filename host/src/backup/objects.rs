//! What the store holds of single objects, read and written whole: one object's restore
//! (`wdo restore --server`, bookmarks), and what a cluster (`cluster/`) asks of the store for
//! an object it takes over, checkpoints or lets go: its latest state (asks made together share
//! one walk), its state from an anchor, its fenced snapshot, and stored copies.

use super::format::{Entry, ObjectRef};
use super::{Backup, page_size_of, restore};
use std::collections::HashSet;
use std::sync::atomic::Ordering;

impl Backup {
    /// One object's latest state in the store (after what is queued here has shipped): what a
    /// cluster host that takes an object over restores. Asks made together (a host's objects
    /// moving after it died) share one walk of the store: whoever walks answers every ask
    /// queued before it started, and asks made meanwhile go together in the next walk.
    pub async fn latest(&self, object: &ObjectRef) -> Result<Option<Vec<u8>>, String> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.latest_asks.lock().unwrap().push((object.clone(), answer));
        {
            let _walking = self.latest_walk.lock().await;
            let asks = std::mem::take(&mut *self.latest_asks.lock().unwrap());
            if !asks.is_empty() {
                let wanted: HashSet<ObjectRef> = asks.iter().map(|(object, _)| object.clone()).collect();
                let walked = match self.flush_checked().await {
                    Err(e) => Err(e),
                    Ok(()) => restore::objects_at(&self.store, &wanted, None).await,
                };
                for (object, answer) in asks {
                    let _ =
                        answer.send(walked.as_ref().map(|found| found.get(&object).cloned()).map_err(String::clone));
                }
            }
        }
        answered.await.unwrap_or_else(|_| Err("the restore was dropped".into()))
    }

    /// A cluster host took `object` over under `token`: ships its state (`None`: it has no
    /// database) as a snapshot fenced with that token, and waits until the store has it. From
    /// then on a restore skips what the previous owner writes, should it still write.
    pub async fn fence(&self, object: &ObjectRef, token: u64, database: Option<Vec<u8>>) -> Result<(), String> {
        let (page_size, bytes) = match database {
            Some(bytes) if bytes.len() >= 100 => (page_size_of(&bytes), bytes),
            _ => (crate::storage::PAGE_SIZE, Vec::new()),
        };
        let entry = Entry::Snapshot { time_ms: self.commit_time(), object: object.clone(), token, page_size, bytes };
        let ticket = self.enqueue(entry).ok_or("the backup queue is full: the store is slow or away")?;
        self.queued.notify_one();
        self.wait_replicated(ticket).await
    }

    /// One object's database as of `at_ms` (`None`: the latest), from the store, after what is
    /// queued has shipped; `None` when it had no commit by then.
    /// At most [`OBJECT_RESTORES`] run at once: each reads the store's snapshot and log, and a
    /// guest can ask for one per session (`restore-on-next-session`, then failing on purpose), so
    /// objects that do so wait for each other, not the host's other work.
    pub async fn object_at(&self, object: &ObjectRef, at_ms: Option<u64>) -> Result<Option<Vec<u8>>, String> {
        let _one_of_few = self.object_restores.acquire().await.expect("never closed");
        self.flush_checked().await?;
        restore::object_at(&self.store, object, at_ms).await
    }

    /// Stores an object's whole database apart (`objects/<class>/<id>/<tag>.db`), for a
    /// cluster's anchor (`cluster/anchor.rs`): the next host to hold it reads that instead of
    /// walking the log. Returns its name; `None` for no database (nothing stored).
    pub async fn put_object(
        &self,
        object: &ObjectRef,
        tag: &str,
        database: Option<Vec<u8>>,
    ) -> Result<Option<String>, String> {
        let Some(bytes) = database else { return Ok(None) };
        let name = format!("objects/{}/{}/{tag}.db", object.class, hex::encode(object.id));
        self.store.put(&name, bytes).await.map_err(|e| format!("cannot write {name} to {}: {e}", self.store.url))?;
        Ok(Some(name))
    }

    /// Removes what [`Backup::put_object`] stored (no longer named by any anchor).
    pub async fn delete_object(&self, name: &str) -> Result<(), String> {
        self.store.delete(name).await.map_err(|e| format!("cannot delete {name} from {}: {e}", self.store.url))
    }

    /// This run of the host, as the names of its batches say it.
    pub fn run_id(&self) -> &str {
        &self.run
    }

    /// The number the next batch written will have: whatever is queued from now on ships in
    /// batches numbered from it.
    pub fn next_batch(&self) -> u64 {
        self.sequence.load(Ordering::Relaxed)
    }

    /// One object's latest state from a base and what run `run` of a host shipped of it after
    /// (`restore::objects_in_run`), and how many batches that read. Asks made together (the
    /// objects of a host that died) share one reading of the run's batches, like
    /// [`Backup::latest`].
    pub async fn object_since(
        &self,
        object: &ObjectRef,
        base: Option<Vec<u8>>,
        run: &str,
        since: restore::Since,
    ) -> Result<(Option<Vec<u8>>, usize), String> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let ask = restore::RunAsk { object: object.clone(), base, since };
        self.run_asks.lock().unwrap().entry(run.to_string()).or_default().push((ask, answer));
        {
            let _walking = self.run_walk.lock().await;
            let asks = self.run_asks.lock().unwrap().remove(run).unwrap_or_default();
            if !asks.is_empty() {
                let (asks, answers): (Vec<_>, Vec<_>) = asks.into_iter().unzip();
                match restore::objects_in_run(&self.store, run, asks).await {
                    Ok((states, batches)) => {
                        for (state, answer) in states.into_iter().zip(answers) {
                            let _ = answer.send(state.map(|state| (state, batches)));
                        }
                    }
                    Err(e) => {
                        for answer in answers {
                            let _ = answer.send(Err(e.clone()));
                        }
                    }
                }
            }
        }
        answered.await.unwrap_or_else(|_| Err("the restore was dropped".into()))
    }

    /// What [`Backup::put_object`] stored under `name`.
    pub async fn get_object(&self, name: &str) -> Result<Vec<u8>, String> {
        let bytes =
            self.store.get(name).await.map_err(|e| format!("cannot read {name} from {}: {e}", self.store.url))?;
        Ok(bytes.to_vec())
    }
}
