//! `wasi:http` for objects and the worker: wasmtime-wasi-http's handler, with hooks that put the
//! output gate in front of the instance's outbound side (`outbound::Outbound`).

use super::HostState;
use crate::outbound::Outbound;
use crate::storage::ObjectDb;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

/// The current event's database and the network behind it. Holding both in one place lets
/// wasmtime-wasi-http's hooks commit the event's writes before a request leaves.
pub struct OutputGate {
    /// The object's database, lent by the actor during a guest call (none in the worker).
    pub db: Option<ObjectDb>,
    pub network: Outbound,
    /// Why the last gate commit failed: the transaction may be gone, so storage traps.
    pub broken: Option<String>,
}

impl OutputGate {
    pub fn new(network: Outbound) -> OutputGate {
        OutputGate { db: None, network, broken: None }
    }

    /// Commits what the event wrote so far, before a request leaves (see `outbound`'s design note).
    pub fn commit_so_far(&mut self) -> Result<(), String> {
        let Some(db) = &self.db else { return Ok(()) };
        let open = db.open_savepoints();
        if open > 0 {
            return Err(format!(
                "an outbound request cannot leave while a transaction (savepoint) is open ({open} open): \
                 commit or roll it back first, so that nothing the remote side sees can be undone"
            ));
        }
        if let Err(e) = crate::storage::off_the_async_worker(|| db.commit_so_far()) {
            let reason = format!("could not commit the event's writes before an outbound request: {e}");
            self.broken = Some(reason.clone());
            return Err(reason);
        }
        Ok(())
    }
}

/// How long before the event's deadline its outbound requests give up.
const DEADLINE_MARGIN: std::time::Duration = std::time::Duration::from_millis(250);

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;
type Sent = Result<(http::Response<WasiBody>, IoFuture), Error>;

impl WasiHttpHooks for OutputGate {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        body_sent: IoFuture,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        if let Err(message) = self.commit_so_far() {
            return Box::new(async move { Err(Error::InternalError(Some(message))) });
        }
        let unconfirmed = self.db.as_ref().and_then(|db| db.unconfirmed(false));
        let send = self.network.send_request(request, options, body_sent);
        match unconfirmed {
            None => send,
            // Sync backup: the request leaves once what the event wrote is in the store.
            Some(unconfirmed) => Box::new(async move {
                unconfirmed.replicated().await.map_err(|e| Error::InternalError(Some(e)))?;
                Box::into_pin(send).await
            }),
        }
    }
}

impl HostState {
    /// Gives the outbound side the current event's deadline.
    fn arm_outbound_deadline(&mut self) {
        if self.warming_up {
            // Warm-up runs for no object: it must not reach the network.
            self.gate.network.deadline = Some(tokio::time::Instant::now());
        } else {
            // A little before the event's own deadline, so the guest hears why and can answer.
            self.gate.network.deadline = self.deadline.map(|at| at.checked_sub(DEADLINE_MARGIN).unwrap_or(at));
        }
    }

    /// The output gate for a connection that is not an HTTP request (`websockets.connect`).
    pub(crate) async fn commit_before_outbound(&mut self) -> Result<(), String> {
        self.arm_outbound_deadline();
        self.gate.commit_so_far()?;
        match self.gate.db.as_ref().and_then(|db| db.unconfirmed(false)) {
            Some(unconfirmed) => unconfirmed.replicated().await,
            None => Ok(()),
        }
    }

    /// The instance's outbound side, to open a connection through.
    pub(crate) fn outbound(&self) -> &crate::outbound::Outbound {
        &self.gate.network
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        self.arm_outbound_deadline();
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.gate }
    }
}

/// Adds `wasi:http` (types and the outgoing handler) to the linker.
pub fn add_http_to_linker(linker: &mut wasmtime::component::Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)
}
