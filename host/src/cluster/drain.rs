//! Draining a host (`wdo cluster drain`): every object it holds handed over to the others
//! without a failed request.

use super::Cluster;
use super::etcd;
use super::ownership::{State, shipped};
use crate::error::Error;
use crate::object::{Directory, ObjectKey};
use futures_util::StreamExt;
use std::sync::Arc;

impl Cluster {
    /// Hands every object this host holds over to the others, without failing a request: the
    /// host leaves the members (so nobody picks it), then, a few objects at a time, closes each
    /// object (events arriving meanwhile wait), lets go of its claim once its commits shipped,
    /// and sends what waited to the host that takes it over. WebSockets are closed (1012) so their
    /// clients reconnect through any host. The host goes on forwarding whatever reaches it.
    /// Returns how many objects it handed over.
    ///
    ///
    /// The caller must let it run to its end (the routes that ask for it run in a task of their
    /// own, `gateway::routing::to_the_end`): cut short between an object's pause and its resume,
    /// it would leave that object's events waiting for good.
    pub(crate) async fn drain(self: &Arc<Self>) -> Result<usize, Error> {
        let directory = self.directory().ok_or_else(|| Error::Internal("the host is gone".into()))?;
        let unreachable = |e: String| Error::Unavailable { object: "the cluster".into(), reason: e };
        self.draining.store(true, std::sync::atomic::Ordering::Relaxed);
        let lease = self.lease_id().ok_or_else(|| unreachable("this host's lease lapsed; drain again".into()))?;
        etcd::register(&self.etcd, &self.listed(), lease).await.map_err(unreachable)?;
        self.refresh_members().await.map_err(unreachable)?;
        let held: Vec<ObjectKey> = self
            .ownership
            .table
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, state)| matches!(state, State::Held { .. }))
            .map(|(key, _)| key.clone())
            .collect();
        let count = held.len();
        let handovers = futures_util::stream::iter(held)
            .map(|key| {
                let (cluster, directory) = (self.clone(), directory.clone());
                async move { cluster.hand_over(&directory, key).await }
            })
            .buffer_unordered(16);
        let failed: Vec<String> = handovers.filter_map(|r| async move { r.err() }).collect().await;
        if let Some(first) = failed.first() {
            return Err(Error::Busy(format!(
                "{} of {count} objects could not be handed over (the first: {first}); drain again",
                failed.len()
            )));
        }
        tracing::info!(objects = count, "cluster: drained: this host holds no object and forwards what reaches it");
        Ok(count)
    }

    async fn hand_over(self: &Arc<Self>, directory: &Arc<Directory>, key: ObjectKey) -> Result<(), String> {
        let Some(paused) = self.pause(&key) else { return Ok(()) };
        let closed = self.close_paused(directory, &key, true).await && shipped(directory).await;
        let released = closed && self.store_and_anchor(directory, &key, paused.token, true).await.is_ok();
        let (queue, _) = self.resume(&key, &paused, !released, false);
        for (envelope, forwarded) in queue {
            if released {
                match self.admit(directory, key.clone(), envelope, forwarded) {
                    Ok(Some(envelope)) => directory.send_here(&key, envelope),
                    Ok(None) => {}
                    Err(e) => tracing::warn!(object = %key.id, "cluster: an event waiting for a handover: {e}"),
                }
            } else {
                directory.send_here(&key, envelope);
            }
        }
        match released {
            true => Ok(()),
            false => Err(format!("{}/{} is still busy here or its commits did not ship", key.class, key.id.to_hex())),
        }
    }
}
