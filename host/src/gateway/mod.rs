//! The gateway: an HTTP/1.1 server (hyper, keep-alive) that routes each request to an object.
//!
//! Default routing: `/<class>/<object-name>/<rest>` reaches object `<object-name>` of `<class>`,
//! whose `fetch` sees the path `/<rest>`. Paths under `/_wdo/` belong to the host (class names
//! start with a letter, so no class can shadow them); `/_wdo/admin/` is the admin API (deploys),
//! behind its bearer token. Errors become plain-text responses whose
//! status and words come from [`Error`](crate::Error).

mod admin;
mod routing;
mod upgrade;

use crate::Host;
use crate::error::Result;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::net::TcpListener;

pub async fn serve(host: Host, listener: TcpListener) -> Result<()> {
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
        let _ = stream.set_nodelay(true);
        let host = host.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| routing::handle(host.clone(), request));
            let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service).with_upgrades();
            if let Err(e) = connection.await {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
}
