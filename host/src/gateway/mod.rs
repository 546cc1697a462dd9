//! The gateway: an HTTP/1.1 server (hyper, keep-alive) that routes each request to an object.
//!
//! Default routing: `/<class>/<object-name>/<rest>` reaches object `<object-name>` of `<class>`,
//! whose `fetch` sees the path `/<rest>`. Paths under `/_wdo/` belong to the host (class names
//! start with a letter, so no class can shadow them); `/_wdo/admin/` is the admin API (deploys),
//! behind its bearer token. Errors become plain-text responses whose
//! status and words come from [`Error`](crate::Error).

mod admin;
mod connections;
mod observe;
mod routing;
pub(crate) mod upgrade;

pub use connections::Connections;
pub use routing::Routes;

use crate::Host;
use crate::error::Result;
use connections::{Activity, OVER_CAPACITY, Watched};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;

/// A connection's place under the bound; an upgraded connection (a WebSocket) keeps it.
#[derive(Clone)]
pub(crate) struct ConnectionPermit(#[allow(dead_code)] Arc<OwnedSemaphorePermit>);

/// Serves `routes` on `listener` until the future is dropped.
pub async fn serve(host: Host, listener: TcpListener, routes: Routes) -> Result<()> {
    if let Ok(address) = listener.local_addr() {
        // Guests' outbound requests must not loop back into the host unless listed by address.
        host.add_listener(address);
    }
    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors or a connection reset before accept: wait a little and go
                // on serving the connections we have.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let Some(permit) = host.connections().admit() else {
            // Answered at once and closed: a fresh socket's send buffer takes this without waiting.
            let _ = stream.try_write(OVER_CAPACITY);
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(host.clone(), stream, permit, routes));
    }
}

/// Serves one connection's requests under the host's timeouts (see `connections.rs`).
async fn serve_connection(host: Host, stream: TcpStream, permit: OwnedSemaphorePermit, routes: Routes) {
    let config = host.config();
    let (header_timeout, keep_alive) = (config.header_timeout, config.keep_alive_timeout);
    let activity = Activity::new(host.connections().clone());
    let permit = ConnectionPermit(Arc::new(permit));
    let requests = activity.clone();
    let service = service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        // Only an upgrade takes the place with it (extensions allocate: not for every request).
        if request.headers().contains_key(hyper::header::UPGRADE) {
            request.extensions_mut().insert(permit.clone());
        }
        let busy = requests.request();
        let host = host.clone();
        async move {
            let answer = routing::handle(host, request, routes).await;
            drop(busy);
            answer
        }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(Watched::new(stream, activity.clone())), service)
        .with_upgrades();
    tokio::pin!(connection);
    let mut check = tokio::time::interval((keep_alive / 4).clamp(Duration::from_millis(50), Duration::from_secs(5)));
    let mut closing = false;
    loop {
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!("connection ended: {e}");
                }
                return;
            }
            _ = check.tick(), if !closing => {
                if activity.idle_for() >= keep_alive {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
