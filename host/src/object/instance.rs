//! A live instance of an object: one wasmtime `Store` with the component instantiated in it,
//! plus the per-event CPU and memory accounting.
//!
//! The store's data (`HostState`) is what every host import sees. The object's database is lent
//! to it for the duration of each guest call and taken back afterwards, so the actor always
//! owns the transaction, whatever happens inside the guest.

use super::output::GuestOutput;
use crate::bindings::exports::wdo::object::handler::AlarmInfo;
use crate::bindings::{DurableObject, WitRequest, WitResponse};
use crate::cpu::{CpuLimitExceeded, CpuMeter};
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

/// A WebSocket upgrade the worker's request asks for, as it goes to an object.
pub enum WorkerUpgrade {
    /// Not an upgrade (or not the worker).
    None,
    /// The client asked for one; the first `objects.fetch` with `Upgrade: websocket` takes it.
    Offered,
    /// That object accepted: the client's connection belongs to this socket.
    Accepted(crate::sockets::AcceptedSocket),
    /// That object, held by another host of the cluster, accepted there: the client's
    /// connection is joined to this one to that host.
    Elsewhere(hyper::upgrade::OnUpgrade),
}

/// The data of an instance's store: everything host imports reach.
pub struct HostState {
    pub object: Arc<ObjectInfo>,
    pub storage_limits: StorageLimits,
    /// Set when the current event called `alarms.set` or `alarms.delete`.
    pub alarm_touched: bool,
    /// The time the current event asked to come back to at the next session
    /// (`storage.restore-on-next-session`): the ask outlives the event failing (an abort).
    pub restore_asked: Option<u64>,
    /// The WebSocket hub, and what the current event did to sockets (applied after commit).
    pub sockets: Arc<Hub>,
    pub socket_effects: SocketEffects,
    /// The current event is a request asking for a WebSocket upgrade.
    pub upgrade_requested: bool,
    /// In the worker: its request asks for an upgrade, which one `objects.fetch` may hand on to
    /// an object; once the object accepted, its socket.
    pub worker_upgrade: WorkerUpgrade,
    /// The object system, for calls to other objects.
    pub directory: Arc<super::Directory>,
    /// The objects waiting on the current event (for cycle and depth checks).
    pub chain: Vec<super::ObjectKey>,
    /// When the current event must be over; calls it makes inherit it.
    pub deadline: Option<tokio::time::Instant>,
    /// The guest runs its `warm-up`, for no object: storage traps, calls to objects fail.
    pub warming_up: bool,
    /// The vars and outbound allow list of the version this instance runs.
    pub profile: Arc<crate::env::Profile>,
    wasi: WasiCtx,
    pub(super) http: wasmtime_wasi_http::WasiHttpCtx,
    /// The event's database (lent by the actor during a guest call) and the network behind it.
    pub(super) gate: super::outbound::OutputGate,
    pub(super) table: ResourceTable,
    memory: MemoryLimit,
    debug_errors: bool,
    /// The CPU time of the current event: guest code (epoch ticks) and SQL (`storage/clock.rs`).
    cpu: Arc<CpuMeter>,
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
        if let Some(reason) = &self.gate.broken {
            return Err(wasmtime::format_err!("{reason}"));
        }
        self.gate.db.as_ref().ok_or_else(|| match self.warming_up {
            true => wasmtime::format_err!("storage used during warm-up, which runs for no object"),
            false => wasmtime::format_err!("internal error: storage used outside of an event"),
        })
    }

    /// Counts `bytes` the host keeps for the current event (a message queued to send) against
    /// the instance's memory budget, with its memories and tables; refused past it.
    pub fn hold_host_copy(&mut self, bytes: usize) -> Result<(), String> {
        let memory = &mut self.memory;
        if !memory.fits(bytes) {
            return Err(format!(
                "{bytes} more bytes held by the host for this event would take the instance past its \
                 memory limit of {} MiB (its memories, tables and queued messages together)",
                memory.limit >> 20
            ));
        }
        memory.host_copies += bytes;
        Ok(())
    }

    /// Whether a result of `bytes` fits in the instance's memory budget as it stands.
    pub fn result_fits(&self, bytes: usize) -> Result<(), String> {
        let memory = &self.memory;
        if !memory.fits(bytes) {
            return Err(format!(
                "a result of {bytes} bytes would take the instance past its memory limit of {} MiB",
                memory.limit >> 20
            ));
        }
        Ok(())
    }

    /// Whether the current event ran out of CPU time.
    pub fn cpu_exceeded(&self) -> bool {
        self.cpu.exceeded()
    }

    /// Readies the instance for its next event (or the worker's next request): the CPU count
    /// starts afresh (a spare's start, or the last event, is not this one's), nothing is held for
    /// it yet, and the last event's output and failed commit are forgotten.
    pub fn begin_event(&mut self) {
        self.gate.broken = None;
        self.socket_effects = SocketEffects::default();
        self.memory.host_copies = 0;
        self.cpu.reset();
        self.output.take_recent();
    }

    /// Outbound connections the instance holds open (see `Outbound::connections_open`).
    pub fn outbound_connections_open(&self) -> usize {
        self.gate.network.connections_open()
    }

    /// Bytes of linear memory and tables the instance holds.
    pub fn memory_held(&self) -> usize {
        self.memory.used
    }

    /// The object the guest acts for; a warm-up acts for none.
    pub fn object_or_trap(&self) -> wasmtime::Result<&ObjectInfo> {
        if self.warming_up {
            wasmtime::bail!("the object's identity asked for during warm-up, which runs for no object");
        }
        Ok(&self.object)
    }
}

/// One memory budget per instance: every linear memory of the component (a component may have
/// several) and every table element count against it. Remembers a refusal, for a clear message.
struct MemoryLimit {
    limit: usize,
    /// Bytes of linear memory and tables the instance holds.
    used: usize,
    /// Bytes the host holds for the current event: messages it queued to send.
    host_copies: usize,
    exceeded: bool,
}

/// What one table element is charged (a reference: wasmtime keeps a pointer per element).
const TABLE_ELEMENT: usize = 8;

impl MemoryLimit {
    fn new(limit: usize) -> MemoryLimit {
        MemoryLimit { limit, used: 0, host_copies: 0, exceeded: false }
    }

    /// Whether `more` bytes fit beside the memories, tables and host copies held now.
    fn fits(&self, more: usize) -> bool {
        self.used.saturating_add(self.host_copies).saturating_add(more) <= self.limit
    }

    fn grow(&mut self, current: usize, desired: usize) -> wasmtime::Result<bool> {
        let before = self.used;
        self.used = before.saturating_sub(current);
        if !self.fits(desired) {
            self.used = before;
            self.exceeded = true;
            return Err(wasmtime::format_err!("memory limit of {} MiB exceeded", self.limit >> 20));
        }
        self.used += desired;
        Ok(true)
    }
}

impl ResourceLimiter for MemoryLimit {
    fn memory_growing(&mut self, current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        self.grow(current, desired)
    }

    fn table_growing(&mut self, current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        self.grow(current.saturating_mul(TABLE_ELEMENT), desired.saturating_mul(TABLE_ELEMENT))
    }
}

/// The error an event is stopped with when it runs past its wall-clock deadline.
#[derive(Debug)]
struct DeadlineExceeded;

impl std::fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the event's deadline passed")
    }
}

impl std::error::Error for DeadlineExceeded {}

/// Settings every instance of a host shares.
#[derive(Clone)]
pub struct InstanceLimits {
    pub cpu: Duration,
    pub memory: usize,
    pub storage: StorageLimits,
    pub sockets: Arc<Hub>,
    /// Failures also tell clients the guest's recent output (for development only).
    pub debug_errors: bool,
    /// What outbound requests share: limits, TLS roots, the host's listeners.
    pub network: Arc<crate::outbound::Network>,
    /// Every class's secrets.
    pub vault: Arc<crate::env::Vault>,
    /// Metrics and the tail.
    pub observe: Arc<crate::observe::Observe>,
}

/// A WebSocket event for the guest.
pub enum SocketEvent {
    Message(u64, crate::bindings::wdo::object::websockets::Message),
    Close(u64, u16, String, bool),
    Error(u64, String),
}

/// Why a guest call failed; the event is rolled back and the instance discarded.
#[derive(Debug)]
pub struct Failure {
    pub reason: String,
    /// Which of trap, CPU limit, memory limit or deadline it was.
    pub outcome: crate::observe::Outcome,
}

impl Failure {
    pub fn into_error(self, object: impl Into<String>) -> crate::Error {
        crate::Error::EventFailed { object: object.into(), reason: self.reason, outcome: self.outcome }
    }
}

pub struct Instance {
    store: Store<HostState>,
    /// The component instance, for exports the bindings do not cover (`warm-up`).
    raw: wasmtime::component::Instance,
    bindings: DurableObject,
    /// The class version this instance runs.
    pub version: Arc<Version>,
    /// Its place under the bound on live instances (none for a spare or a worker's instance).
    /// Declared after the store, so the pool slot is free before the permit is.
    slot: Option<super::directory::InstanceSlot>,
}

impl Instance {
    pub async fn new(
        version: Arc<Version>,
        object: Arc<ObjectInfo>,
        directory: &Arc<super::Directory>,
    ) -> Result<Instance, Failure> {
        let mut store = new_store(version.pre.engine(), object, directory, version.profile.clone());
        let made = (version.pre.instantiate_async(&mut store).await)
            .and_then(|raw| version.indices.load(&mut store, &raw).map(|bindings| (raw, bindings)));
        match made {
            Ok((raw, bindings)) => Ok(Instance { store, raw, bindings, version, slot: None }),
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
        state.gate.network.set_label(object.label.clone());
        state.object = object;
    }

    /// Holds `slot` for as long as the instance lives.
    pub fn hold(&mut self, slot: super::directory::InstanceSlot) {
        self.slot = Some(slot);
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

    /// Sets the chain of objects waiting on the next event, and when it must be over.
    pub fn set_caller(&mut self, chain: Vec<super::ObjectKey>, deadline: Option<tokio::time::Instant>) {
        let state = self.store.data_mut();
        state.chain = chain;
        state.deadline = deadline;
    }

    /// Runs the alarm handler; `Ok(Err(_))` is the guest's own error (the instance stays).
    pub async fn alarm(&mut self, db: &mut Option<ObjectDb>, info: AlarmInfo) -> Result<Result<(), String>, Failure> {
        self.begin_call(db);
        let result = self.bindings.wdo_object_handler().call_alarm(&mut self.store, info).await;
        self.end_call(db, result)
    }

    /// What the last event asked its object to come back to at the next session, forgetting it.
    pub fn take_restore_asked(&mut self) -> Option<u64> {
        self.store.data_mut().restore_asked.take()
    }

    /// Whether the last event touched the alarm, forgetting it.
    pub fn take_alarm_touched(&mut self) -> bool {
        std::mem::take(&mut self.store.data_mut().alarm_touched)
    }

    /// Takes the database back from the guest, whatever the call did, and explains a failure.
    fn end_call<T>(&mut self, db: &mut Option<ObjectDb>, result: wasmtime::Result<T>) -> Result<T, Failure> {
        *db = self.store.data_mut().gate.db.take();
        if let Some(db) = db {
            db.detach_cpu();
        }
        result.map_err(|e| describe_failure(&mut self.store, "failed", e))
    }

    fn begin_call(&mut self, db: &mut Option<ObjectDb>) {
        let state = self.store.data_mut();
        state.begin_event();
        state.gate.db = db.take();
        if let Some(db) = &state.gate.db {
            db.attach_cpu(state.cpu.clone());
        }
        self.store.set_epoch_deadline(1);
    }
}

/// A store for one instance (of an object, or of the stateless worker), with the host's CPU and
/// memory limits applied.
pub fn new_store(
    engine: &wasmtime::Engine,
    object: Arc<ObjectInfo>,
    directory: &Arc<super::Directory>,
    profile: Arc<crate::env::Profile>,
) -> Store<HostState> {
    let limits = &directory.limits;
    let outbound = crate::outbound::Outbound::new(limits.network.clone(), profile.clone(), &object);
    let output = GuestOutput::new(object.label.clone());
    let wasi = WasiCtxBuilder::new().stdout(output.clone()).stderr(output.clone()).build();
    let state = HostState {
        object,
        storage_limits: limits.storage,
        alarm_touched: false,
        restore_asked: None,
        sockets: limits.sockets.clone(),
        socket_effects: SocketEffects::default(),
        upgrade_requested: false,
        worker_upgrade: WorkerUpgrade::None,
        directory: directory.clone(),
        chain: Vec::new(),
        deadline: None,
        warming_up: false,
        profile,
        wasi,
        http: wasmtime_wasi_http::WasiHttpCtx::new(),
        gate: super::outbound::OutputGate::new(outbound),
        table: ResourceTable::new(),
        memory: MemoryLimit::new(limits.memory),
        debug_errors: limits.debug_errors,
        cpu: Arc::new(CpuMeter::new(limits.cpu.max(EPOCH_TICK))),
        output,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.memory);
    store.epoch_deadline_callback(|ctx| {
        if ctx.data().cpu.charge(EPOCH_TICK) {
            return Err(wasmtime::Error::new(CpuLimitExceeded));
        }
        if ctx.data().deadline.is_some_and(|at| tokio::time::Instant::now() >= at) {
            return Err(wasmtime::Error::new(DeadlineExceeded));
        }
        // Yield at every tick so one busy object cannot keep a worker thread from the others.
        Ok(UpdateDeadline::Yield(1))
    });
    store.set_epoch_deadline(1);
    store
}

/// Turns a wasmtime error into a message a user can act on: the kind of failure and the
/// guest's own message (a panic's, an exception's). What the guest printed before it goes to the
/// host's log, and to clients only with `debug_errors`: it may hold other requests' data.
pub fn describe_failure(store: &mut Store<HostState>, what: &str, error: wasmtime::Error) -> Failure {
    let state = store.data_mut();
    let recent = state.output.take_recent();
    use crate::observe::Outcome;
    let (mut message, outcome) = if error.downcast_ref::<DeadlineExceeded>().is_some() {
        (
            "stopped: the event ran past its deadline (--event-timeout; a call has its caller's)".to_string(),
            Outcome::Deadline,
        )
    } else if error.downcast_ref::<CpuLimitExceeded>().is_some() || state.cpu.exceeded() {
        (format!("stopped: the event used more than the CPU time limit of {:?}", state.cpu.limit()), Outcome::CpuLimit)
    } else if let Some(sql) = error.downcast_ref::<crate::storage::SqlMemoryExceeded>() {
        (sql.to_string(), Outcome::MemoryLimit)
    } else if state.memory.exceeded {
        let limit = state.memory.limit >> 20;
        (
            format!("stopped: the instance exceeded the memory limit of {limit} MiB (all its memories and tables)"),
            Outcome::MemoryLimit,
        )
    } else if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
        (format!("{what}: the guest trapped ({trap})"), Outcome::Trap)
    } else {
        (format!("{what}: {error:#}"), Outcome::Trap)
    };
    if let Some(own) = super::output::own_message(&recent) {
        message.push_str(": ");
        message.push_str(&own);
    }
    if !recent.is_empty() {
        tracing::warn!(object = %state.object.label, "{message}; the guest's output before it:\n{recent}");
        if state.debug_errors {
            message.push_str("\nguest output:\n");
            message.push_str(&recent);
        }
    }
    Failure { reason: message, outcome }
}

#[cfg(test)]
mod tests {
    use super::MemoryLimit;
    use wasmtime::component::{Component, Linker};
    use wasmtime::{Engine, Store};

    /// A component of `memories` core instances, each with a memory of `pages` 64 KiB pages.
    fn with_memories(memories: usize, pages: u32) -> String {
        let instances: String = (0..memories)
            .map(|i| format!("(core module $m{i} (memory {pages})) (core instance (instantiate $m{i}))"))
            .collect();
        format!("(component {instances})")
    }

    #[test]
    fn the_memory_limit_holds_for_all_of_an_instances_memories_together() {
        let engine = Engine::default();
        let linker = Linker::<MemoryLimit>::new(&engine);
        let instantiate = |memories: usize, pages: u32| {
            let component = Component::new(&engine, wat::parse_str(with_memories(memories, pages)).unwrap()).unwrap();
            let mut store = Store::new(&engine, MemoryLimit::new(64 << 20));
            store.limiter(|limit| limit);
            let result = linker.instantiate(&mut store, &component).map(drop);
            (result, store.data().used, store.data().exceeded)
        };
        // One memory of 40 MiB fits; two of them (80 MiB in one instance) do not.
        let (one, used, _) = instantiate(1, 640);
        assert!(one.is_ok() && used >= 40 << 20, "{one:?} {used}");
        let (two, _, exceeded) = instantiate(2, 640);
        assert!(two.is_err() && exceeded, "two memories of 40 MiB passed a 64 MiB limit");
        // Eight small ones fit.
        assert!(instantiate(8, 16).0.is_ok());
    }

    #[test]
    fn what_the_host_holds_for_an_event_counts_with_the_memories() {
        let mut limit = MemoryLimit::new(64 << 20);
        assert!(limit.grow(0, 40 << 20).is_ok());
        limit.host_copies = 20 << 20;
        assert!(limit.grow(40 << 20, 50 << 20).is_err(), "40 + 20 held fits, 50 + 20 does not");
    }

    #[test]
    fn table_elements_count_against_the_same_budget() {
        let mut limit = MemoryLimit::new(64 << 20);
        assert!(limit.grow(0, 60 << 20).is_ok());
        let elements = (8 << 20) / super::TABLE_ELEMENT;
        assert!(wasmtime::ResourceLimiter::table_growing(&mut limit, 0, elements, None).is_err());
        assert!(wasmtime::ResourceLimiter::table_growing(&mut limit, 0, 1000, None).unwrap());
    }
}
