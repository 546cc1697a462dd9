//! A live instance of an object: one wasmtime `Store` with the component instantiated in it,
//! plus the per-event CPU and memory accounting.
//!
//! The store's data (`HostState`) is what every host import sees. The object's database is lent
//! to it for the duration of each guest call and taken back afterwards, so the actor always
//! owns the transaction, whatever happens inside the guest.

use super::output::GuestOutput;
use crate::bindings::exports::wdo::object::handler::AlarmInfo;
use crate::bindings::{DurableObject, WitRequest, WitResponse};
use crate::engine::EPOCH_TICK;
use crate::ids::ObjectId;
use crate::registry::Version;
use crate::sockets::{Hub, SocketEffects};
use crate::storage::{ObjectDb, StorageLimits};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Who an object is.
pub struct ObjectInfo {
    pub class: Arc<str>,
    pub id: ObjectId,
    pub name: Option<String>,
    /// `class/name`, or `class/<id>` for unnamed objects: how logs and errors name the object.
    pub label: Arc<str>,
}

impl ObjectInfo {
    pub fn key(&self) -> super::ObjectKey {
        super::ObjectKey { class: self.class.clone(), id: self.id }
    }

    pub fn new(class: Arc<str>, id: ObjectId, name: Option<String>) -> Self {
        let label = match &name {
            Some(name) => format!("{class}/{name}"),
            None => format!("{class}/{id}"),
        };
        ObjectInfo { class, id, name, label: label.into() }
    }

    /// Who code of `class` is when it runs for no object (a spare before its object adopts it,
    /// the worker): id 0, no name.
    pub fn nobody(class: Arc<str>) -> Self {
        ObjectInfo::new(class, ObjectId::from_hex(&"0".repeat(64)).expect("a valid id"), None)
    }
}

/// The data of an instance's store: everything host imports reach.
pub struct HostState {
    pub object: Arc<ObjectInfo>,
    /// Lent by the actor during a guest call.
    pub db: Option<ObjectDb>,
    pub storage_limits: StorageLimits,
    /// Set when the current event called `alarms.set` or `alarms.delete`.
    pub alarm_touched: bool,
    /// The WebSocket hub, and what the current event did to sockets (applied after commit).
    pub sockets: Arc<Hub>,
    pub socket_effects: SocketEffects,
    /// The current event is a request asking for a WebSocket upgrade.
    pub upgrade_requested: bool,
    /// The object system, for calls to other objects.
    pub directory: Arc<super::Directory>,
    /// The objects waiting on the current event (for cycle and depth checks).
    pub chain: Vec<super::ObjectKey>,
    /// The guest runs its `warm-up`, for no object: storage traps, calls to objects fail.
    pub warming_up: bool,
    wasi: WasiCtx,
    table: ResourceTable,
    memory: MemoryLimit,
    cpu: CpuBudget,
    output: GuestOutput,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl HostState {
    /// The database of the current event; a guest call always runs with it lent.
    pub fn db(&self) -> wasmtime::Result<&ObjectDb> {
        self.db.as_ref().ok_or_else(|| match self.warming_up {
            true => wasmtime::format_err!("storage used during warm-up, which runs for no object"),
            false => wasmtime::format_err!("internal error: storage used outside of an event"),
        })
    }

    /// The object the guest acts for; a warm-up acts for none.
    pub fn object_or_trap(&self) -> wasmtime::Result<&ObjectInfo> {
        if self.warming_up {
            wasmtime::bail!("the object's identity asked for during warm-up, which runs for no object");
        }
        Ok(&self.object)
    }
}

/// Caps linear memory growth and remembers that it did, for a clear error message.
struct MemoryLimit {
    limit: usize,
    exceeded: bool,
}

impl ResourceLimiter for MemoryLimit {
    fn memory_growing(&mut self, _current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = true;
            return Err(wasmtime::format_err!("memory limit of {} MiB exceeded", self.limit >> 20));
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// Epoch ticks an event may still run before it is stopped.
struct CpuBudget {
    used: u64,
    limit: u64,
}

/// The error an event is stopped with when it runs out of CPU time.
#[derive(Debug)]
struct CpuLimitExceeded;

impl std::fmt::Display for CpuLimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CPU time limit exceeded")
    }
}

impl std::error::Error for CpuLimitExceeded {}

/// Settings every instance of a host shares.
#[derive(Clone)]
pub struct InstanceLimits {
    pub cpu: Duration,
    pub memory: usize,
    pub storage: StorageLimits,
    pub sockets: Arc<Hub>,
}

/// A WebSocket event for the guest.
pub enum SocketEvent {
    Message(u64, crate::bindings::wdo::object::websockets::Message),
    Close(u64, u16, String, bool),
    Error(u64, String),
}

/// Why a guest call failed; the event is rolled back and the instance discarded.
#[derive(Debug)]
pub struct Failure(pub String);

pub struct Instance {
    store: Store<HostState>,
    /// The component instance, for exports the bindings do not cover (`warm-up`).
    raw: wasmtime::component::Instance,
    bindings: DurableObject,
    /// The class version this instance runs.
    pub version: Arc<Version>,
}

impl Instance {
    pub async fn new(
        version: Arc<Version>,
        object: Arc<ObjectInfo>,
        directory: &Arc<super::Directory>,
    ) -> Result<Instance, Failure> {
        let mut store = new_store(version.pre.engine(), object, directory);
        let made = (version.pre.instantiate_async(&mut store).await)
            .and_then(|raw| version.indices.load(&mut store, &raw).map(|bindings| (raw, bindings)));
        match made {
            Ok((raw, bindings)) => Ok(Instance { store, raw, bindings, version }),
            Err(e) => Err(describe_failure(&mut store, "failed to start", e)),
        }
    }

    /// Runs the component's `warm-up` export, for no object (see `spares`). Without the export
    /// this does nothing.
    pub async fn warm_up(&mut self) -> Result<(), Failure> {
        let Some(index) = self.version.warm_up else { return Ok(()) };
        self.begin_call(&mut None); // no database: storage traps
        self.store.data_mut().warming_up = true;
        let result = match self.raw.get_typed_func::<(), ()>(&mut self.store, index) {
            Ok(warm_up) => warm_up.call_async(&mut self.store, ()).await,
            Err(e) => Err(e),
        };
        self.store.data_mut().warming_up = false;
        result.map_err(|e| describe_failure(&mut self.store, "warm-up failed", e))
    }

    /// Gives a spare instance (made ahead of need, before any event ran in it) its object.
    pub fn adopt(&mut self, object: Arc<ObjectInfo>) {
        let state = self.store.data_mut();
        state.output.set_label(object.label.clone());
        state.object = object;
    }

    /// Handles an HTTP request. The database is lent to the guest for the call.
    pub async fn fetch(
        &mut self,
        db: &mut Option<ObjectDb>,
        request: WitRequest,
        upgrade: bool,
    ) -> Result<WitResponse, Failure> {
        self.begin_call(db);
        self.store.data_mut().upgrade_requested = upgrade;
        let result = self.bindings.wdo_object_handler().call_fetch(&mut self.store, &request).await;
        self.store.data_mut().upgrade_requested = false;
        self.end_call(db, result)
    }

    /// Handles a WebSocket event (message, close or error).
    pub async fn websocket(&mut self, db: &mut Option<ObjectDb>, event: SocketEvent) -> Result<(), Failure> {
        self.begin_call(db);
        let handler = self.bindings.wdo_object_handler();
        let result = match event {
            SocketEvent::Message(socket, message) => {
                handler.call_websocket_message(&mut self.store, socket, &message).await
            }
            SocketEvent::Close(socket, code, reason, clean) => {
                handler.call_websocket_close(&mut self.store, socket, code, &reason, clean).await
            }
            SocketEvent::Error(socket, error) => handler.call_websocket_error(&mut self.store, socket, &error).await,
        };
        self.end_call(db, result)
    }

    /// What the last event did to sockets, forgetting it.
    pub fn take_socket_effects(&mut self) -> SocketEffects {
        std::mem::take(&mut self.store.data_mut().socket_effects)
    }

    /// Runs the export `call`; `Ok(Err(_))` is the guest's own error (the instance stays).
    pub async fn call(
        &mut self,
        db: &mut Option<ObjectDb>,
        method: &str,
        args: &[u8],
    ) -> Result<Result<Vec<u8>, String>, Failure> {
        self.begin_call(db);
        let result = self.bindings.wdo_object_handler().call_call(&mut self.store, method, args).await;
        self.end_call(db, result)
    }

    /// Sets the chain of objects waiting on the next event.
    pub fn set_chain(&mut self, chain: Vec<super::ObjectKey>) {
        self.store.data_mut().chain = chain;
    }

    /// Runs the alarm handler; `Ok(Err(_))` is the guest's own error (the instance stays).
    pub async fn alarm(&mut self, db: &mut Option<ObjectDb>, info: AlarmInfo) -> Result<Result<(), String>, Failure> {
        self.begin_call(db);
        let result = self.bindings.wdo_object_handler().call_alarm(&mut self.store, info).await;
        self.end_call(db, result)
    }

    /// Whether the last event touched the alarm, forgetting it.
    pub fn take_alarm_touched(&mut self) -> bool {
        std::mem::take(&mut self.store.data_mut().alarm_touched)
    }

    /// Takes the database back from the guest, whatever the call did, and explains a failure.
    fn end_call<T>(&mut self, db: &mut Option<ObjectDb>, result: wasmtime::Result<T>) -> Result<T, Failure> {
        *db = self.store.data_mut().db.take();
        result.map_err(|e| describe_failure(&mut self.store, "failed", e))
    }

    fn begin_call(&mut self, db: &mut Option<ObjectDb>) {
        let state = self.store.data_mut();
        state.db = db.take();
        state.socket_effects = SocketEffects::default();
        state.cpu.used = 0;
        state.output.take_recent();
        self.store.set_epoch_deadline(1);
    }
}

/// A store for one instance (of an object, or of the stateless worker), with the host's CPU and
/// memory limits applied.
pub fn new_store(
    engine: &wasmtime::Engine,
    object: Arc<ObjectInfo>,
    directory: &Arc<super::Directory>,
) -> Store<HostState> {
    let limits = &directory.limits;
    let output = GuestOutput::new(object.label.clone());
    let wasi = WasiCtxBuilder::new().stdout(output.clone()).stderr(output.clone()).build();
    let state = HostState {
        object,
        db: None,
        storage_limits: limits.storage,
        alarm_touched: false,
        sockets: limits.sockets.clone(),
        socket_effects: SocketEffects::default(),
        upgrade_requested: false,
        directory: directory.clone(),
        chain: Vec::new(),
        warming_up: false,
        wasi,
        table: ResourceTable::new(),
        memory: MemoryLimit { limit: limits.memory, exceeded: false },
        cpu: CpuBudget { used: 0, limit: ticks(limits.cpu) },
        output,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.memory);
    store.epoch_deadline_callback(|mut ctx| {
        let cpu = &mut ctx.data_mut().cpu;
        cpu.used += 1;
        if cpu.used >= cpu.limit {
            return Err(wasmtime::Error::new(CpuLimitExceeded));
        }
        // Yield at every tick so one busy object cannot keep a worker thread from the others.
        Ok(UpdateDeadline::Yield(1))
    });
    store.set_epoch_deadline(1);
    store
}

fn ticks(limit: Duration) -> u64 {
    (limit.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
}

/// Turns a wasmtime error into a message a user can act on.
pub fn describe_failure(store: &mut Store<HostState>, what: &str, error: wasmtime::Error) -> Failure {
    let state = store.data_mut();
    let recent = state.output.take_recent();
    let mut message = if error.downcast_ref::<CpuLimitExceeded>().is_some() {
        format!("stopped: the event used more than the CPU time limit of {:?}", EPOCH_TICK * state.cpu.limit as u32)
    } else if state.memory.exceeded {
        format!("stopped: the instance exceeded the memory limit of {} MiB", state.memory.limit >> 20)
    } else if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
        format!("{what}: the guest trapped ({trap})")
    } else {
        format!("{what}: {error:#}")
    };
    if !recent.is_empty() {
        message.push_str("\nguest output:\n");
        message.push_str(&recent);
    }
    Failure(message)
}
