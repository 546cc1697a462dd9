//! The hub: every open socket, per object.

use crate::budget::{Held, InputBudget};
use crate::object::{Event, ObjectKey};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

pub type SocketId = u64;

#[derive(Debug, Clone, Copy)]
pub struct HubLimits {
    /// Largest message a client may send, in bytes.
    pub max_message: usize,
    /// Bytes that may wait to be written to one client before it is cut off. At least
    /// `max_message`, so that any message an object may send fits an empty buffer.
    pub max_buffer: usize,
    /// Sockets one object may hold open.
    pub max_sockets_per_object: usize,
    /// Bytes of its clients' messages one object may have waiting before its sockets are read
    /// no further.
    pub max_object_input: usize,
    /// A client silent this long is pinged; silent as long again, its socket is closed.
    pub ping_interval: std::time::Duration,
    /// Bytes of messages one event may queue for sending (a message sent to many sockets counts
    /// once: its bytes are shared).
    pub max_event_sends: usize,
}

/// Something to write to a client.
#[derive(Debug)]
pub enum Outgoing {
    Message(Message),
    Close(u16, String),
}

impl Outgoing {
    fn size(&self) -> usize {
        match self {
            Outgoing::Message(m) => m.len(),
            Outgoing::Close(_, reason) => reason.len(),
        }
    }
}

/// The socket a `fetch` accepted, before it reaches the hub.
pub struct Accepted {
    pub id: SocketId,
    pub tags: Vec<String>,
    pub attachment: Option<Vec<u8>>,
    /// The object's instance stays in memory while this socket is open (`hold-instance`).
    pub holds_instance: bool,
}

/// A WebSocket this object opened as a client (`websockets.connect`), handshake done.
pub struct Connected {
    pub socket: Accepted,
    pub ws: tokio_tungstenite::WebSocketStream<Box<dyn crate::outbound::Stream>>,
}

/// What one event did to sockets, applied only once its transaction committed.
#[derive(Default)]
pub struct SocketEffects {
    pub accepted: Option<Accepted>,
    /// Client sockets it opened: they join the object at the commit (closed if it fails).
    pub connected: Vec<Connected>,
    pub outbox: Vec<(SocketId, Outgoing)>,
    /// `Some(pair)` when the event set (or, with `None` inside, cleared) the auto-response.
    pub auto_response: Option<Option<(String, String)>>,
    /// Bytes of distinct messages in `outbox` (shared ones count once).
    pub queued: usize,
}

impl SocketEffects {
    pub fn is_empty(&self) -> bool {
        self.accepted.is_none() && self.connected.is_empty() && self.outbox.is_empty() && self.auto_response.is_none()
    }
}

/// What waits to be written to one client. (A deque allocates nothing while empty, unlike a
/// channel's first block: it matters for thousands of quiet sockets.)
#[derive(Default)]
pub(super) struct Outbox {
    queue: Mutex<VecDeque<Outgoing>>,
    ready: Notify,
}

impl Outbox {
    fn push(&self, outgoing: Outgoing) {
        self.queue.lock().unwrap().push_back(outgoing);
        self.ready.notify_one();
    }

    /// The next thing to write, waiting for one.
    pub async fn pop(&self) -> Outgoing {
        loop {
            {
                let mut queue = self.queue.lock().unwrap();
                if let Some(outgoing) = queue.pop_front() {
                    if queue.is_empty() && queue.capacity() > 16 {
                        queue.shrink_to_fit();
                    }
                    return outgoing;
                }
            }
            self.ready.notified().await;
        }
    }
}

pub(super) struct Socket {
    pub tags: Vec<String>,
    pub attachment: Option<Vec<u8>>,
    outbox: Arc<Outbox>,
    /// Whether a connection task took the outbox.
    attached: bool,
    pub buffered: Arc<AtomicUsize>,
    /// Tells the connection task to drop a client that does not read.
    cut_off: Arc<Notify>,
    /// Closed sockets stay readable (tags, attachment) until the object's close event ran.
    pub closed: bool,
    /// The object's instance stays in memory while this socket is open.
    pub holds_instance: bool,
    /// When the hub last answered this socket with the auto-response (ms since the epoch).
    pub auto_responded_at: Option<u64>,
}

#[derive(Default)]
struct ObjectSockets {
    name: Option<String>,
    sockets: BTreeMap<SocketId, Socket>,
    auto_response: Option<(String, String)>,
    /// The object's share of buffered input: its clients' messages waiting for it.
    inbound: Option<Arc<InputBudget>>,
}

/// Sends an event to an object (set by the host: looks the class up and uses the directory),
/// with the input bytes it holds until it has run.
pub type Dispatch = Box<dyn Fn(ObjectKey, Option<String>, Event, Held) -> bool + Send + Sync>;

pub struct Hub {
    objects: Mutex<HashMap<ObjectKey, ObjectSockets>>,
    next_id: AtomicU64,
    pub limits: HubLimits,
    /// The host's budget of buffered input, which messages from clients take from.
    pub(super) budget: Arc<InputBudget>,
    dispatch: OnceLock<Dispatch>,
    /// Counts messages in and out.
    pub(super) observe: Arc<crate::observe::Observe>,
}

impl Hub {
    pub fn new(limits: HubLimits, budget: Arc<InputBudget>, observe: Arc<crate::observe::Observe>) -> Self {
        let (objects, next_id, dispatch) = (Mutex::default(), AtomicU64::new(1), OnceLock::new());
        Hub { objects, next_id, limits, budget, dispatch, observe }
    }

    pub fn set_dispatch(&self, dispatch: Dispatch) {
        let _ = self.dispatch.set(dispatch);
    }

    /// Sends an event to the object; false if it could not be queued.
    pub(super) fn dispatch(&self, key: &ObjectKey, event: Event) -> bool {
        self.dispatch_holding(key, event, Held::default())
    }

    /// Sends an event that holds input bytes until it has run.
    pub(super) fn dispatch_holding(&self, key: &ObjectKey, event: Event, held: Held) -> bool {
        let name = self.objects.lock().unwrap().get(key).and_then(|o| o.name.clone());
        self.dispatch.get().is_some_and(|d| d(key.clone(), name, event, held))
    }

    pub fn new_id(&self) -> SocketId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Applies the effects of a committed event.
    pub fn apply(self: &Arc<Self>, key: &ObjectKey, name: Option<&str>, effects: SocketEffects) {
        let mut objects = self.objects.lock().unwrap();
        let object = objects.entry(key.clone()).or_default();
        if object.name.is_none() {
            object.name = name.map(str::to_string);
        }
        let mut connected = Vec::new();
        let opened = effects.connected.into_iter().map(|c| {
            connected.push((c.socket.id, c.ws));
            c.socket
        });
        for Accepted { id, tags, attachment, holds_instance } in effects.accepted.into_iter().chain(opened) {
            let socket = Socket {
                tags,
                attachment,
                outbox: Arc::default(),
                attached: false,
                buffered: Arc::default(),
                cut_off: Arc::default(),
                closed: false,
                holds_instance,
                auto_responded_at: None,
            };
            object.sockets.insert(id, socket);
        }
        if let Some(pair) = effects.auto_response {
            object.auto_response = pair;
        }
        let mut cut_off = Vec::new();
        for (id, outgoing) in effects.outbox {
            let Some(socket) = object.sockets.get_mut(&id).filter(|s| !s.closed) else { continue };
            let size = outgoing.size();
            if socket.buffered.load(Ordering::Relaxed) + size > self.limits.max_buffer {
                cut_off.push(id);
                continue;
            }
            socket.buffered.fetch_add(size, Ordering::Relaxed);
            // A socket the object closed is no longer listed or sendable from this commit on,
            // even before its close frame is written.
            socket.closed |= matches!(outgoing, Outgoing::Close(..));
            socket.outbox.push(outgoing);
        }
        for id in cut_off {
            if let Some(socket) = object.sockets.get_mut(&id)
                && !socket.closed
            {
                tracing::warn!(socket = id, "cutting off a WebSocket client that does not read (send buffer full)");
                // Not through the queue: the connection task is stuck behind what is queued.
                socket.cut_off.notify_one();
            }
        }
        if object.sockets.is_empty() && object.auto_response.is_none() {
            objects.remove(key);
        }
        drop(objects);
        // The connection task of each client socket, as the gateway starts one per accepted socket.
        for (id, ws) in connected {
            tokio::spawn(self.clone().serve_socket(key.clone(), id, ws));
        }
    }

    /// Takes the queue of an accepted socket, for its connection task.
    pub(super) fn take_pending(
        &self,
        key: &ObjectKey,
        id: SocketId,
    ) -> Option<(Arc<Outbox>, Arc<AtomicUsize>, Arc<Notify>)> {
        let mut objects = self.objects.lock().unwrap();
        let socket = objects.get_mut(key)?.sockets.get_mut(&id)?;
        if std::mem::replace(&mut socket.attached, true) {
            return None;
        }
        Some((socket.outbox.clone(), socket.buffered.clone(), socket.cut_off.clone()))
    }

    /// The reply the hub gives socket `id` without waking the object, if `text` is its
    /// request; the socket remembers when.
    pub(super) fn auto_response(&self, key: &ObjectKey, id: SocketId, text: &str) -> Option<String> {
        let mut objects = self.objects.lock().unwrap();
        let object = objects.get_mut(key)?;
        let (request, response) = object.auto_response.as_ref()?;
        if request != text {
            return None;
        }
        let response = response.clone();
        if let Some(socket) = object.sockets.get_mut(&id) {
            socket.auto_responded_at = Some(crate::alarms::now_ms().max(0) as u64);
        }
        Some(response)
    }

    /// Whether an open socket of the object asked to keep its instance in memory.
    pub fn holds_instance(&self, key: &ObjectKey) -> bool {
        let objects = self.objects.lock().unwrap();
        objects.get(key).is_some_and(|o| o.sockets.values().any(|s| s.holds_instance && !s.closed))
    }

    /// The connection ended: the socket is no longer listed or sendable, but stays readable
    /// until `remove` (after the object's close event).
    pub(super) fn mark_closed(&self, key: &ObjectKey, id: SocketId) {
        if let Some(socket) = self.objects.lock().unwrap().get_mut(key).and_then(|o| o.sockets.get_mut(&id)) {
            socket.closed = true;
        }
    }

    /// Forgets a closed socket.
    pub fn remove(&self, key: &ObjectKey, id: SocketId) {
        let mut objects = self.objects.lock().unwrap();
        if let Some(object) = objects.get_mut(key) {
            if object.sockets.get(&id).is_some_and(|s| s.closed) {
                object.sockets.remove(&id);
            }
            if object.sockets.is_empty() && object.auto_response.is_none() {
                objects.remove(key);
            }
        }
    }

    /// What an object's sockets are, for the inspector: id, tags, bytes waiting to be sent,
    /// attachment size, and whether the socket is closing.
    pub fn describe(&self, key: &ObjectKey) -> Vec<serde_json::Value> {
        let objects = self.objects.lock().unwrap();
        let Some(object) = objects.get(key) else { return Vec::new() };
        let described = object.sockets.iter().map(|(id, socket)| {
            serde_json::json!({
                "id": id,
                "tags": socket.tags,
                "buffered_bytes": socket.buffered.load(Ordering::Relaxed),
                "attachment_bytes": socket.attachment.as_ref().map_or(0, Vec::len),
                "closing": socket.closed,
            })
        });
        described.collect()
    }

    /// Open sockets of an object, optionally only those with `tag`.
    pub fn list(&self, key: &ObjectKey, tag: Option<&str>) -> Vec<SocketId> {
        let objects = self.objects.lock().unwrap();
        let Some(object) = objects.get(key) else { return Vec::new() };
        object
            .sockets
            .iter()
            .filter(|(_, s)| !s.closed && tag.is_none_or(|t| s.tags.iter().any(|x| x == t)))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Reads (or with `f` changes) one socket of an object.
    pub(super) fn with_socket<T>(&self, key: &ObjectKey, id: SocketId, f: impl FnOnce(&mut Socket) -> T) -> Option<T> {
        self.objects.lock().unwrap().get_mut(key).and_then(|o| o.sockets.get_mut(&id)).map(f)
    }

    /// Closes every socket of a class (deleted or renamed by a deploy) with `code` and `reason`;
    /// its objects hear no close event, since they no longer run.
    pub fn close_class(&self, class: &str, code: u16, reason: &str) {
        self.close_where(|key| &*key.class == class, code, reason);
    }

    /// Closes every socket of one object (its host lost it to another in a cluster): the
    /// clients reconnect, through any host, to wherever it runs now.
    pub fn close_object(&self, object: &ObjectKey, code: u16, reason: &str) {
        self.close_where(|key| key == object, code, reason);
    }

    fn close_where(&self, matches: impl Fn(&ObjectKey) -> bool, code: u16, reason: &str) {
        let mut objects = self.objects.lock().unwrap();
        for (_, object) in objects.iter_mut().filter(|(key, _)| matches(key)) {
            object.auto_response = None;
            for socket in object.sockets.values_mut().filter(|s| !s.closed) {
                socket.closed = true;
                socket.outbox.push(Outgoing::Close(code, reason.to_string()));
            }
        }
    }

    /// The object's share of buffered input, which its clients' messages take from before the
    /// host's budget (see `budget.rs`).
    pub(super) fn inbound_share(&self, key: &ObjectKey) -> Arc<InputBudget> {
        let share = || Arc::new(InputBudget::new(self.limits.max_object_input));
        match self.objects.lock().unwrap().get_mut(key) {
            Some(object) => object.inbound.get_or_insert_with(share).clone(),
            None => share(), // its sockets are gone: nothing to share with
        }
    }

    /// Sockets an object holds (open, or closing until its close event ran).
    pub fn count(&self, key: &ObjectKey) -> usize {
        self.objects.lock().unwrap().get(key).map_or(0, |o| o.sockets.len())
    }

    /// Sockets held, for stats.
    pub fn len(&self) -> usize {
        self.objects.lock().unwrap().values().map(|o| o.sockets.len()).sum()
    }
}
