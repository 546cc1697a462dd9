//! The worker: an optional stateless front component (world `wdo:object/worker`) that receives
//! every HTTP request when the manifest names one, and reaches objects through `objects`.
//!
//! An instance serves one request at a time; after a request that went well it goes back to a
//! small pool for the next one, as a Cloudflare isolate serves request after request (so its
//! globals live on between requests; an instance that failed is dropped). Reuse matters for
//! JavaScript and Python workers: a fresh instance copies every page of its 12-19 MB memory
//! image that a request writes (a Cloudflare-style worker served ~970 requests/s that way,
//! see `make bench`). It runs under the same CPU and memory limits as objects, and a trap
//! fails only its request.

use crate::bindings::worker::WorkerPre;
use crate::engine::{ComponentCache, WORKER};
use crate::error::{Error, Result};
use crate::message::{Request, Response};
use crate::object::{
    Directory, Failure, HostState, ObjectInfo, ObjectKey, WorkerUpgrade, begin_request, describe_failure, new_store,
};
use crate::sockets::SocketId;
use std::sync::Arc;
use wasmtime::component::Linker;

/// Idle instances kept for the next requests, at most this many.
const POOL: usize = 16;
/// Requests one instance serves before it is dropped (what its heap gathered goes with it).
const REUSES: u32 = 1000;

/// An idle instance and how many requests it served.
type Pooled = (wasmtime::Store<HostState>, crate::bindings::worker::Worker, u32);

pub struct Worker {
    pre: WorkerPre<HostState>,
    idle: std::sync::Mutex<Vec<Pooled>>,
    /// Who the worker is to `context`: class `worker`, no name, id 0.
    info: Arc<ObjectInfo>,
    pub hash: String,
    /// Whether preparing it compiled code (false: from the cache).
    pub compiled: bool,
    profile: Arc<crate::env::Profile>,
}

impl Worker {
    pub fn prepare(
        cache: &ComponentCache,
        linker: &Linker<HostState>,
        bytes: &[u8],
        settings: &crate::manifest::Settings,
    ) -> Result<Worker> {
        let profile = Arc::new(crate::env::Profile::new(crate::env::WORKER_SECRETS, settings)?);
        let linked = crate::registry::link(cache, linker, "worker", bytes, WORKER, WorkerPre::new)?;
        let info = Arc::new(ObjectInfo::nobody("worker".into()));
        Ok(Worker {
            pre: linked.pre,
            idle: Default::default(),
            info,
            hash: linked.hash,
            compiled: linked.compiled,
            profile,
        })
    }

    /// Runs the worker for `request`. With `upgrade` (the client asked for a WebSocket), the
    /// worker may hand the upgrade on to an object through `objects.fetch`: the socket that
    /// object accepted comes back with the response.
    pub async fn fetch(
        &self,
        directory: &Arc<Directory>,
        request: Request,
        upgrade: bool,
    ) -> Result<(Response, Option<(ObjectKey, SocketId)>)> {
        let fail = |Failure(reason)| Error::EventFailed { object: "worker".into(), reason };
        let pooled = self.idle.lock().unwrap().pop();
        let (mut store, bindings, served) = match pooled {
            Some(pooled) => pooled,
            None => {
                let mut store = new_store(self.pre.engine(), self.info.clone(), directory, self.profile.clone());
                match self.pre.instantiate_async(&mut store).await {
                    Ok(bindings) => (store, bindings, 0),
                    Err(e) => return Err(fail(describe_failure(&mut store, "failed to start", e))),
                }
            }
        };
        // Like an object's event: the calls it makes inherit its deadline.
        begin_request(&mut store, Some(tokio::time::Instant::now() + directory.config.event_timeout));
        store.data_mut().worker_upgrade = if upgrade { WorkerUpgrade::Offered } else { WorkerUpgrade::None };
        let accepted = |store: &mut wasmtime::Store<HostState>| match &store.data().worker_upgrade {
            WorkerUpgrade::Accepted(key, socket) => Some((key.clone(), *socket)),
            _ => None,
        };
        match bindings.wdo_object_worker_handler().call_fetch(&mut store, &request.into()).await {
            Ok(response) => {
                let accepted = accepted(&mut store);
                if served + 1 < REUSES && !store.data().holds_resources() {
                    let mut idle = self.idle.lock().unwrap();
                    if idle.len() < POOL {
                        idle.push((store, bindings, served + 1));
                    }
                }
                Ok((response.into(), accepted))
            }
            Err(e) => {
                // An object accepted the socket, but the worker failed: nobody will connect it.
                if let Some((key, socket)) = accepted(&mut store) {
                    directory.limits.sockets.abandon(key, socket);
                }
                Err(fail(describe_failure(&mut store, "failed", e)))
            }
        }
    }
}
