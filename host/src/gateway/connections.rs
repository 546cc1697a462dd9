//! The connections the gateway holds: how many at once, and how long each may take.
//!
//! # Design
//!
//! A client costs the host a file descriptor and a task for as long as it keeps a connection,
//! whether or not it ever sends a request, so each of these is bounded:
//!
//! - **Open connections.** At most `max_connections` at once (a WebSocket counts for as long as
//!   it is open). Past it, a new connection is answered `503` with `Retry-After` and closed at
//!   once: the ones already open keep working, and the process keeps descriptors for databases.
//! - **Request heads.** hyper's header timer: a request head must be complete within
//!   `header_timeout` of the connection starting to wait for it (this also ends a keep-alive
//!   connection that sent nothing for that long).
//! - **Idle keep-alive.** A connection that sent nothing since its last response for
//!   `keep_alive_timeout` is closed.
//! - **Bodies.** A body must keep up a minimum rate (`routing::read_body`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What every connection needs to know of the host's bounds.
pub struct Connections {
    permits: Arc<Semaphore>,
    pub max: usize,
    started: Instant,
}

impl Connections {
    pub fn new(max: usize) -> Connections {
        Connections { permits: Arc::new(Semaphore::new(max)), max, started: Instant::now() }
    }

    /// A place for a new connection, if there is one.
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.max - self.permits.available_permits()
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

/// What a connection did last, for the idle check.
pub struct Activity {
    connections: Arc<Connections>,
    /// Milliseconds (since the gateway started) of the last byte read or response given.
    last: AtomicU64,
    /// A request is being handled (its body read, its object running).
    busy: AtomicBool,
}

impl Activity {
    pub fn new(connections: Arc<Connections>) -> Arc<Activity> {
        let last = AtomicU64::new(connections.now_ms());
        Arc::new(Activity { connections, last, busy: AtomicBool::new(false) })
    }

    fn touch(&self) {
        self.last.store(self.connections.now_ms(), Ordering::Relaxed);
    }

    /// Marks a request as being handled until the returned guard is dropped.
    pub fn request(self: &Arc<Self>) -> Busy {
        self.busy.store(true, Ordering::Relaxed);
        Busy(self.clone())
    }

    /// How long the connection has been idle (no request being handled, nothing read).
    pub fn idle_for(&self) -> Duration {
        if self.busy.load(Ordering::Relaxed) {
            return Duration::ZERO;
        }
        Duration::from_millis(self.connections.now_ms().saturating_sub(self.last.load(Ordering::Relaxed)))
    }
}

/// A request in progress; when it is dropped the connection's idle time starts again.
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.store(false, Ordering::Relaxed);
    }
}

/// A connection's stream, noting when bytes arrive.
pub struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    pub fn new(inner: S, activity: Arc<Activity>) -> Self {
        Watched { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The answer to a connection past the bound, written straight to the socket.
pub const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 56\r\n\r\n\
the host has too many open connections; try again later\n";

#[cfg(test)]
mod tests {
    #[test]
    fn the_over_capacity_answer_is_well_formed() {
        let text = std::str::from_utf8(super::OVER_CAPACITY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).unwrap().parse().unwrap();
        assert_eq!(body.len(), length);
    }
}
