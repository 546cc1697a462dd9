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
