//! Outbound HTTP: the standard `wasi:http/outgoing-handler`, so each language's own HTTP client
//! works, under the host's control.
//!
//! # Design
//!
//! **Deny by default.** A class reaches only what its manifest lists (`rules.rs`). The name a
//! request is addressed to is checked first; then it is resolved, every address is checked
//! (loopback, private, link-local and the host's own listeners need an entry naming the address
//! itself), and the connection goes to a checked address, never to a name resolved again, so
//! DNS rebinding cannot slip past. A guest's HTTP client that follows redirects sends each hop
//! as a new request through here, so each hop is checked the same way. A refusal is an
//! `internal-error` whose text names the host and the manifest key to change.
//!
//! **The output gate** (in `object/outbound.rs`): before a request of an object leaves, the writes
//! its event made so far are committed, so the remote side never sees the effect of a write a
//! crash could still lose. The event goes on in a new transaction: a later failure rolls back
//! only what it wrote after the request.
//!
//! **Bounds.** Connecting (DNS included) has `--outbound-connect-timeout`; the whole exchange
//! ends at the event's deadline; a response body past `--max-outbound-response` fails; at most
//! `--max-outbound-per-object` requests of one instance wait for their answers at once (others wait
//! for a slot, within the deadline), and it holds at most four times that many connections open
//! (answers whose bodies it has not read yet count; past that a request fails at once, since
//! waiting on the guest's own unread bodies could last forever). Host-wide, at most
//! `--max-outbound-connections` connections (requests and WebSocket clients; each a file
//! descriptor) are open at once: each holds a permit for as long as its socket lives. Waiting on the network is wall time: the CPU limit counts only what the
//! guest and SQLite compute.
//!
//! **WebSockets out** (`websockets.connect`, in `sockets/wit.rs`) take the same path: the gate, the
//! name and address checks and the connect timeout (`Outbound::open`), then tungstenite's client
//! handshake; the socket joins the hub at the commit like an accepted one.
//!
//! HTTPS uses rustls with the system's CA roots (`/etc/ssl/certs`, via rustls-native-certs).

mod rules;
mod send;

pub use rules::Allowed;
pub use send::{Network, Outbound, OutboundLimits, Stream, load_tls as tls_config};
