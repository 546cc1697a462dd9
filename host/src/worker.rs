//! The worker: an optional stateless front component (world `wdo:object/worker`) that receives
//! every HTTP request when the manifest names one, and reaches objects through `objects`.
//!
//! It keeps no state: each request gets a fresh instance from the `InstancePre` (tens of
//! microseconds with the pooling allocator), so nothing of one request reaches the next. (For
//! JavaScript and Python workers that fresh instance is the cost: it copies each page of its
//! 12-19 MB memory image that the request writes; reusing instances, as Cloudflare's isolates
//! do, served 2.3x the requests of the Cloudflare counter in `make bench`, but would break
//! this contract; spare instances made ahead of need are issue 19's way.) It runs under the
//! same CPU and memory limits as objects, and a trap fails only its request.

use crate::bindings::worker::WorkerPre;
use crate::engine::{ComponentCache, WORKER};
use crate::error::{Error, Result};
use crate::message::{Request, Response};
use crate::object::{Directory, Failure, HostState, ObjectInfo, ObjectKey, WorkerUpgrade, describe_failure, new_store};
use crate::sockets::SocketId;
use std::sync::Arc;
use wasmtime::component::Linker;

pub struct Worker {
    pre: WorkerPre<HostState>,
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
        Ok(Worker { pre: linked.pre, info, hash: linked.hash, compiled: linked.compiled, profile })
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
        let mut store = new_store(self.pre.engine(), self.info.clone(), directory, self.profile.clone());
        // Like an object's event: the calls it makes inherit its deadline.
        store.data_mut().deadline = Some(tokio::time::Instant::now() + directory.config.event_timeout);
        if upgrade {
            store.data_mut().worker_upgrade = WorkerUpgrade::Offered;
        }
        let bindings = match self.pre.instantiate_async(&mut store).await {
            Ok(bindings) => bindings,
            Err(e) => return Err(fail(describe_failure(&mut store, "failed to start", e))),
        };
        let accepted = |store: &mut wasmtime::Store<HostState>| match &store.data().worker_upgrade {
            WorkerUpgrade::Accepted(key, socket) => Some((key.clone(), *socket)),
            _ => None,
        };
        match bindings.wdo_object_worker_handler().call_fetch(&mut store, &request.into()).await {
            Ok(response) => Ok((response.into(), accepted(&mut store))),
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
