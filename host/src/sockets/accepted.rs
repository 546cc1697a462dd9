//! A socket an object accepted, on its way to its connection.

use super::{Hub, SocketId};
use crate::object::ObjectKey;
use std::sync::Arc;

/// A socket an object accepted, from the event's reply until the client's connection is switched
/// to it. Its connection must come, or the object must hear it close: dropped untaken (the
/// client hung up, the worker that asked failed, the caller went away), it is abandoned, so the
/// object hears `websocket-close` and its place under the per-object bound comes free.
pub struct AcceptedSocket {
    /// `None` once taken.
    socket: Option<(ObjectKey, SocketId)>,
    hub: Arc<Hub>,
}

impl AcceptedSocket {
    pub fn new(key: ObjectKey, socket: SocketId, hub: Arc<Hub>) -> Self {
        AcceptedSocket { socket: Some((key, socket)), hub }
    }

    /// The object and socket, for the connection that came.
    pub fn take(mut self) -> (ObjectKey, SocketId) {
        self.socket.take().expect("an accepted socket is taken once")
    }

    /// Lets it go without a close event: its accept never reached the hub (the event's batch
    /// failed to commit).
    pub fn forget(mut self) {
        self.socket = None;
    }
}

impl Drop for AcceptedSocket {
    fn drop(&mut self) {
        if let Some((key, socket)) = self.socket.take() {
            self.hub.abandon(key, socket);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::Event;
    use crate::sockets::SocketEffects;
    use crate::sockets::hub::{Accepted, HubLimits};
    use std::sync::Mutex;
    use std::time::Duration;

    /// A hub whose object `probe/0…0` has one socket pending (accepted, no connection yet), and
    /// the events the hub sends to objects.
    fn hub_with_a_pending_socket() -> (Arc<Hub>, ObjectKey, SocketId, Arc<Mutex<Vec<Event>>>) {
        let limits = HubLimits {
            max_message: 1 << 20,
            max_buffer: 1 << 20,
            max_sockets_per_object: 8,
            max_object_input: 1 << 20,
            ping_interval: Duration::from_secs(30),
            max_event_sends: 1 << 20,
        };
        let budget = Arc::new(crate::budget::InputBudget::new(1 << 20));
        let hub = Arc::new(Hub::new(limits, budget, Arc::new(crate::observe::Observe::new(false))));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let record = sent.clone();
        hub.set_dispatch(Box::new(move |_, _, event, _| {
            record.lock().unwrap().push(event);
            true
        }));
        let key = ObjectKey { class: "probe".into(), id: crate::ids::ObjectId::from_hex(&"0".repeat(64)).unwrap() };
        let id = hub.new_id();
        let accepted = Accepted { id, tags: Vec::new(), attachment: None, holds_instance: false };
        hub.apply(&key, None, SocketEffects { accepted: Some(accepted), ..SocketEffects::default() });
        (hub, key, id, sent)
    }

    fn closes(sent: &Mutex<Vec<Event>>) -> Vec<(SocketId, u16)> {
        let sent = sent.lock().unwrap();
        sent.iter()
            .filter_map(|event| match event {
                Event::WebSocketClose { socket, code, .. } => Some((*socket, *code)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn dropped_untaken_the_object_hears_its_socket_close() {
        let (hub, key, id, sent) = hub_with_a_pending_socket();
        drop(AcceptedSocket::new(key.clone(), id, hub.clone()));
        assert_eq!(closes(&sent), [(id, 1006)]);
        assert!(hub.list(&key, None).is_empty(), "closed, until its close event has run");
    }

    #[test]
    fn taken_or_forgotten_it_closes_nothing() {
        let (hub, key, id, sent) = hub_with_a_pending_socket();
        assert_eq!(AcceptedSocket::new(key.clone(), id, hub.clone()).take(), (key.clone(), id));
        AcceptedSocket::new(key.clone(), id, hub.clone()).forget();
        assert!(closes(&sent).is_empty());
        assert_eq!(hub.list(&key, None), [id], "the socket is still open");
    }
}
