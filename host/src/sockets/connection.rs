//! One task per socket: reads from the client and writes what the object sends.

use super::hub::{Hub, Outgoing, SocketId};
use crate::bindings::wdo::object::websockets::Message as WitMessage;
use crate::object::{Event, ObjectKey};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

impl Hub {
    /// Runs the connection of an accepted socket until it closes.
    pub async fn serve_socket<S>(self: Arc<Self>, key: ObjectKey, id: SocketId, mut ws: WebSocketStream<S>)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let Some((outbox, buffered, cut_off)) = self.take_pending(&key, id) else {
            let _ = ws.close(None).await;
            return;
        };
        // What the object hears when the connection ends, unless it ended by the object's close.
        let mut close_event: Option<(u16, String, bool)> = None;
        let slow = format!("send buffer over {} bytes: the client is not reading", self.limits.max_buffer);
        // A client silent for a ping interval is pinged; silent for another, it is gone (a peer
        // that vanished without closing would otherwise hold its socket forever).
        let every = self.limits.ping_interval;
        let silence = tokio::time::sleep(every);
        tokio::pin!(silence);
        let mut pinged = false;
        loop {
            tokio::select! {
                _ = cut_off.notified() => {
                    close_event = Some((1008, slow.clone(), false));
                    break;
                }
                () = &mut silence => {
                    if pinged {
                        let reason = format!("no answer to the host's ping within {every:?}");
                        let close = ws.close(Some(close_frame(1001, &reason)));
                        let _ = tokio::time::timeout(std::time::Duration::from_millis(200), close).await;
                        close_event = Some((1006, reason, false));
                        break;
                    }
                    pinged = true;
                    silence.as_mut().reset(tokio::time::Instant::now() + every);
                    let ping = ws.send(Message::Ping(Default::default()));
                    if tokio::time::timeout(every, ping).await.is_err() {
                        continue; // the client does not read either: the next silence ends it
                    }
                }
                incoming = ws.next() => match incoming.inspect(|_| {
                    pinged = false;
                    silence.as_mut().reset(tokio::time::Instant::now() + every);
                }) {
                    Some(Ok(Message::Text(text))) => {
                        self.observe.metrics.count(&self.observe.metrics.socket_messages_in);
                        if let Some(reply) = self.auto_response(&key, id, text.as_str()) {
                            if ws.send(Message::text(reply)).await.is_err() {
                                close_event = Some((1006, String::new(), false));
                                break;
                            }
                            continue;
                        }
                        self.deliver(&key, id, WitMessage::Text(text.as_str().to_string()), &mut ws).await;
                    }
                    Some(Ok(Message::Binary(bytes))) => {
                        self.observe.metrics.count(&self.observe.metrics.socket_messages_in);
                        self.deliver(&key, id, WitMessage::Binary(bytes.to_vec()), &mut ws).await;
                    }
                    Some(Ok(Message::Close(frame))) => {
                        // tungstenite answers the close; the object hears it once.
                        let (code, reason) = frame.map_or((1005, String::new()), |f| (u16::from(f.code), f.reason.to_string()));
                        close_event.get_or_insert((code, reason, true));
                    }
                    Some(Ok(_)) => {} // ping/pong: answered by tungstenite
                    Some(Err(WsError::Capacity(e))) => {
                        let reason = format!("message too big: {e}");
                        let _ = ws.close(Some(close_frame(1009, &reason))).await;
                        close_event = Some((1009, reason, false));
                        break;
                    }
                    Some(Err(WsError::ConnectionClosed)) | None => {
                        close_event.get_or_insert((1006, String::new(), false));
                        break;
                    }
                    Some(Err(e)) => {
                        self.dispatch(&key, Event::WebSocketError { socket: id, error: e.to_string() });
                        close_event.get_or_insert((1006, e.to_string(), false));
                        break;
                    }
                },
                outgoing = outbox.pop() => match outgoing {
                    Outgoing::Message(message) => {
                        let size = message.len();
                        self.observe.metrics.count(&self.observe.metrics.socket_messages_out);
                        let sent = tokio::select! {
                            sent = send_shared(&mut ws, message) => sent.is_ok(),
                            _ = cut_off.notified() => {
                                close_event = Some((1008, slow.clone(), false));
                                break;
                            }
                        };
                        buffered.fetch_sub(size, Ordering::Relaxed);
                        if !sent {
                            close_event.get_or_insert((1006, String::new(), false));
                            break;
                        }
                    }
                    Outgoing::Close(code, reason) => {
                        let _ = ws.close(Some(close_frame(code, &reason))).await;
                        // A close the object asked for is its own doing: it hears no close event.
                        self.mark_closed(&key, id);
                        // Wait (briefly) for the client's answer, then end.
                        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                            while let Some(Ok(_)) = ws.next().await {}
                        })
                        .await;
                        if close_event.is_none() {
                            self.remove(&key, id);
                            return;
                        }
                        break;
                    }
                },
            }
        }
        self.mark_closed(&key, id);
        if let Some((1008, reason, _)) = &close_event {
            // Try to say why, briefly: the client may not be reading at all.
            let close = ws.close(Some(close_frame(1008, reason)));
            let _ = tokio::time::timeout(std::time::Duration::from_millis(200), close).await;
        }
        if let Some((code, reason, was_clean)) = close_event {
            // The socket is removed by the actor once this event ran (it may read the attachment).
            if !self.dispatch(&key, Event::WebSocketClose { socket: id, code, reason, was_clean }) {
                self.remove(&key, id);
            }
        } else {
            self.remove(&key, id);
        }
    }

    /// The client went away before its connection was switched: the object hears a close.
    pub fn abandon(&self, key: ObjectKey, id: SocketId) {
        self.mark_closed(&key, id);
        let event = Event::WebSocketClose {
            socket: id,
            code: 1006,
            reason: "the upgrade did not complete".into(),
            was_clean: false,
        };
        if !self.dispatch(&key, event) {
            self.remove(&key, id);
        }
    }

    /// Hands a message to the object; an object that cannot take it closes the socket.
    async fn deliver<S>(&self, key: &ObjectKey, id: SocketId, message: WitMessage, ws: &mut WebSocketStream<S>)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        // The socket is not read again until its object's share, then the host's budget, have
        // room for this message.
        let size = match &message {
            WitMessage::Text(text) => text.len(),
            WitMessage::Binary(bytes) => bytes.len(),
        };
        let mut held = self.inbound_share(key).take(size).await;
        held.join(self.budget.take(size).await);
        if !self.dispatch_holding(key, Event::WebSocketMessage { socket: id, message }, held) {
            let _ = ws.close(Some(close_frame(1013, "the object is overloaded; try again later"))).await;
        }
    }
}

/// Past this size a message is written in fragments of this size.
const FRAGMENT: usize = 64 << 10;

/// Writes a message without copying all of it into the socket's write buffer: tungstenite
/// copies each frame it writes there, so a large message sent to a thousand sockets (a
/// broadcast, whose bytes the sockets share) would be copied a thousand times over. In
/// fragments, each socket holds one fragment's copy at a time.
async fn send_shared<S>(ws: &mut WebSocketStream<S>, message: Message) -> Result<(), WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let first = match &message {
        Message::Text(_) if message.len() > FRAGMENT => Data::Text,
        Message::Binary(_) if message.len() > FRAGMENT => Data::Binary,
        _ => return ws.send(message).await,
    };
    let bytes = message.into_data();
    let mut at = 0;
    while at < bytes.len() {
        let end = (at + FRAGMENT).min(bytes.len());
        let opcode = OpCode::Data(if at == 0 { first } else { Data::Continue });
        ws.send(Message::Frame(Frame::message(bytes.slice(at..end), opcode, end == bytes.len()))).await?;
        at = end;
    }
    Ok(())
}

fn close_frame(code: u16, reason: &str) -> CloseFrame {
    CloseFrame { code: CloseCode::from(code), reason: reason.to_string().into() }
}
