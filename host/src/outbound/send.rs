//! Sending one outbound request: the `WasiHttpHooks` an instance gives wasmtime-wasi-http.

use bytes::Bytes;
use http::uri::Scheme;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep, timeout_at};
use wasmtime_wasi_http::{Error, RequestOptions, WasiHttpHooks};

/// Bounds every outbound request has (see the module's design note).
#[derive(Debug, Clone, Copy)]
pub struct OutboundLimits {
    pub connect_timeout: Duration,
    pub max_response: u64,
    pub per_object: usize,
    /// Outbound connections (requests and WebSocket clients) open at once, host-wide: each
    /// holds a file descriptor.
    pub max_connections: usize,
}

/// What every instance's outbound requests share: the limits, the TLS roots (loaded once) and
/// the host's own listeners (refused as destinations).
pub struct Network {
    pub limits: OutboundLimits,
    /// One permit per outbound connection open in the whole host.
    connections: Arc<Semaphore>,
    tls: OnceLock<Result<Arc<rustls::ClientConfig>, String>>,
    listeners: Mutex<Vec<SocketAddr>>,
    /// Counts requests by class and outcome.
    observe: Arc<crate::observe::Observe>,
}

impl Network {
    pub fn new(limits: OutboundLimits, observe: Arc<crate::observe::Observe>) -> Network {
        let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
        Network { limits, connections, tls: OnceLock::new(), listeners: Mutex::new(Vec::new()), observe }
    }

    /// Records a listener of this host: requests to it are refused unless listed by address.
    pub fn add_listener(&self, address: SocketAddr) {
        self.listeners.lock().unwrap().push(address);
    }

    fn tls(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        self.tls.get_or_init(load_tls).clone()
    }
}

/// The TLS client settings: the machine's CA certificates, ring. Outbound requests load them
/// once per host (`Network::tls`); the backup store's client once per store.
pub fn load_tls() -> Result<Arc<rustls::ClientConfig>, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    for cert in found.certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(format!("no CA certificates found on this machine (install ca-certificates): {:?}", found.errors));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Connections one instance may hold open: four per request slot, so responses being read do
/// not stop new requests, and unread ones cannot pile up without end (file descriptors).
fn open_connections(limits: &OutboundLimits) -> usize {
    limits.per_object.max(1).saturating_mul(4)
}

/// One instance's outbound side: its allow list, its request slots and the current event's
/// deadline. wasmtime-wasi-http calls it for every request the guest sends.
pub struct Outbound {
    network: Arc<Network>,
    profile: Arc<crate::env::Profile>,
    slots: Arc<Semaphore>,
    /// Connections open for this instance: requests in flight and responses whose bodies are
    /// not read yet.
    open: Arc<Semaphore>,
    /// When the current event must be over: the request cannot outlive it.
    pub deadline: Option<Instant>,
    /// How logs name the instance.
    label: Arc<str>,
    /// The instance's class, for metrics.
    class: Arc<str>,
    /// Why the last request failed, in words (`context.last-request-error`).
    last_error: LastError,
}

type LastError = Arc<Mutex<Option<String>>>;

impl Outbound {
    pub fn new(
        network: Arc<Network>,
        profile: Arc<crate::env::Profile>,
        object: &crate::object::ObjectInfo,
    ) -> Outbound {
        let slots = Arc::new(Semaphore::new(network.limits.per_object.max(1)));
        let open = Arc::new(Semaphore::new(open_connections(&network.limits)));
        let (label, class, last_error) = (object.label.clone(), object.class.clone(), LastError::default());
        Outbound { network, profile, slots, open, deadline: None, label, class, last_error }
    }

    /// Outbound connections this instance holds open now (requests in flight, responses not
    /// read to the end or dropped, WebSocket clients).
    pub fn connections_open(&self) -> usize {
        open_connections(&self.network.limits).saturating_sub(self.open.available_permits())
    }

    /// Opens a connection for a WebSocket client of this instance: `host:port` checked against
    /// the allow list like a request, TLS for `tls`, within the connect timeout and the
    /// deadline. Answers the stream and when its handshake must be over; the error is the
    /// reason in words.
    pub async fn open(&self, host: &str, port: u16, tls: bool) -> Result<(Box<dyn Stream>, Instant), String> {
        let exchange = self.exchange();
        let fail = |e: Error| {
            let reason = describe(&e);
            *self.last_error.lock().unwrap() = Some(reason.clone());
            reason
        };
        exchange.check_name(host, port).map_err(fail)?;
        let by = exchange.by(Some(self.network.limits.connect_timeout));
        exchange.connect(host, port, tls, by).await.map(|stream| (stream, by)).map_err(fail)
    }

    /// One request's (or connection's) share of this instance's outbound side.
    fn exchange(&self) -> Exchange {
        Exchange {
            network: self.network.clone(),
            profile: self.profile.clone(),
            slots: self.slots.clone(),
            open: self.open.clone(),
            deadline: self.deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)),
            label: self.label.clone(),
            last_error: self.last_error.clone(),
        }
    }

    /// Why the last outbound request failed, if it did.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap().clone()
    }

    pub fn set_label(&mut self, label: Arc<str>) {
        self.label = label;
    }
}

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;
type Sent = Result<(http::Response<wasmtime_wasi_http::WasiBody>, IoFuture), Error>;

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<RequestOptions>,
        _body_sent: IoFuture,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        let exchange = self.exchange();
        *self.last_error.lock().unwrap() = None;
        let class = self.class.clone();
        Box::new(async move {
            let last_error = exchange.last_error.clone();
            let network = exchange.network.clone();
            let sent = exchange.send(request, options).await;
            use crate::observe::Outcome;
            let outcome = match &sent {
                Ok(_) => Outcome::Ok,
                Err(Error::InternalError(Some(_))) => Outcome::BadRequest, // refused by the host's bounds
                Err(Error::ConnectionTimeout | Error::ConnectionReadTimeout | Error::DnsTimeout) => Outcome::Deadline,
                Err(_) => Outcome::Unavailable,
            };
            network.observe.metrics.outbound(&class, outcome);
            if let Err(e) = &sent {
                *last_error.lock().unwrap() = Some(describe(e));
            }
            sent
        })
    }
}

/// A refusal the guest reads: wasi:http's free-text error.
fn refused(message: String) -> Error {
    Error::InternalError(Some(message))
}

struct Exchange {
    network: Arc<Network>,
    profile: Arc<crate::env::Profile>,
    slots: Arc<Semaphore>,
    open: Arc<Semaphore>,
    deadline: Instant,
    label: Arc<str>,
    last_error: LastError,
}

/// An outbound failure in words, for guests whose HTTP client cannot say it.
fn describe(error: &Error) -> String {
    match error {
        Error::InternalError(Some(message)) => message.clone(),
        Error::HttpResponseBodySize(Some(limit)) => {
            format!("the response is larger than the host allows ({limit} bytes, --max-outbound-response)")
        }
        Error::ConnectionTimeout => "connecting timed out (--outbound-connect-timeout)".into(),
        Error::ConnectionReadTimeout => "no answer in time: the event's deadline came (--event-timeout)".into(),
        Error::DnsTimeout => "resolving the host name timed out".into(),
        Error::DnsError { rcode, .. } => format!("the host name did not resolve: {}", rcode.as_deref().unwrap_or("")),
        Error::Connect(e) => format!("could not connect: {e}"),
        Error::Tls(e) => format!("TLS failed: {e}"),
        Error::Hyper(e) => format!("HTTP failed: {e}"),
        other => format!("{other:?}"),
    }
}

/// A connection to a remote host: TCP, or TLS over it.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

impl Exchange {
    /// The earlier of the deadline and `timeout` from now.
    fn by(&self, timeout: Option<Duration>) -> Instant {
        timeout.map_or(self.deadline, |t| self.deadline.min(Instant::now() + t))
    }

    async fn send(
        self,
        mut request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<RequestOptions>,
    ) -> Sent {
        let uri = request.uri().clone();
        let https = uri.scheme() == Some(&Scheme::HTTPS);
        let host = uri.host().ok_or(Error::HttpRequestUriInvalid)?.to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        self.check_name(&host, port)?;
        // A connection for this request, held until its response body is read or dropped. A
        // guest that leaves bodies unread runs out of these at once, with a message: waiting for
        // one could wait forever.
        let Ok(open) = self.open.clone().try_acquire_owned() else {
            return Err(refused(format!(
                "outbound request to {host}:{port} not sent: this object has {} outbound connections open; \
                 read (or drop) the bodies of earlier responses",
                open_connections(&self.network.limits)
            )));
        };
        // A slot while the request waits for its answer (`--max-outbound-per-object`).
        let slot = match timeout_at(self.deadline, self.slots.clone().acquire_owned()).await {
            Ok(Ok(slot)) => slot,
            _ => {
                return Err(refused(format!(
                    "outbound request to {host}:{port} not sent: all {} outbound request slots of this object \
                     stayed busy until the event's deadline",
                    self.network.limits.per_object
                )));
            }
        };
        let connect_timeout = options.and_then(|o| o.connect_timeout).unwrap_or(self.network.limits.connect_timeout);
        let connect_by = self.by(Some(connect_timeout.min(self.network.limits.connect_timeout)));
        let stream = self.connect(&host, port, https, connect_by).await?;
        let (mut sender, connection) =
            match timeout_at(connect_by, hyper::client::conn::http1::handshake(TokioIo::new(stream))).await {
                Ok(Ok(handshake)) => handshake,
                Ok(Err(e)) => return Err(Error::Hyper(e)),
                Err(_) => return Err(Error::ConnectionTimeout),
            };
        // The connection is driven on its own; it cannot outlive the event's deadline (by more
        // than the moment the request's own timeouts need to report first).
        let deadline = self.deadline + Duration::from_secs(1);
        tokio::spawn(async move {
            let _ = timeout_at(deadline, connection).await;
        });
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        *request.uri_mut() =
            http::Uri::builder().path_and_query(path).build().map_err(|_| Error::HttpRequestUriInvalid)?;
        let first_byte_by = self.by(options.and_then(|o| o.first_byte_timeout));
        let response = match timeout_at(first_byte_by, sender.send_request(request)).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => return Err(Error::Hyper(e)),
            Err(_) => return Err(Error::ConnectionReadTimeout),
        };
        // Answered: the next request may go while the guest reads this body.
        drop(slot);
        let limit = self.network.limits.max_response;
        if let Some(length) = response.headers().get(http::header::CONTENT_LENGTH)
            && length.to_str().ok().and_then(|l| l.parse::<u64>().ok()).is_some_and(|l| l > limit)
        {
            return Err(Error::HttpResponseBodySize(Some(limit)));
        }
        let sleep = Box::pin(tokio::time::sleep_until(self.deadline));
        let response = response.map(|incoming| {
            let last_error = self.last_error.clone();
            Bounded { incoming, seen: 0, limit, deadline: sleep, _open: open, last_error }.boxed_unsync()
        });
        let done: IoFuture = Box::new(async { Ok(()) });
        Ok((response, done))
    }

    /// Whether the allow list passes the name `host:port` (its addresses are checked later).
    fn check_name(&self, host: &str, port: u16) -> Result<(), Error> {
        self.profile.outbound.check_name(host, port).map_err(|message| {
            tracing::warn!(object = &*self.label, "{message}");
            refused(message)
        })
    }

    /// A connection to `host:port` (TLS for `tls`), to an address the allow list passes, by `by`.
    async fn connect(&self, host: &str, port: u16, tls: bool, by: Instant) -> Result<Box<dyn Stream>, Error> {
        let Ok(permit) = self.network.connections.clone().try_acquire_owned() else {
            return Err(refused(format!(
                "outbound connection to {host}:{port} not opened: the host has {} outbound connections \
                 open (--max-outbound-connections)",
                self.network.limits.max_connections
            )));
        };
        let stream = self.connect_counted(host, port, tls, by).await?;
        Ok(Box::new(Counted { stream, _permit: permit }))
    }

    async fn connect_counted(&self, host: &str, port: u16, tls: bool, by: Instant) -> Result<Box<dyn Stream>, Error> {
        let address = self.resolve(host, port, by).await?;
        let tcp = match timeout_at(by, TcpStream::connect(address)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(Error::Connect(e)),
            Err(_) => return Err(Error::ConnectionTimeout),
        };
        let _ = tcp.set_nodelay(true);
        if !tls {
            return Ok(Box::new(tcp));
        }
        let config = self.network.tls().map_err(refused)?;
        let name = match host.parse::<IpAddr>() {
            Ok(ip) => rustls::pki_types::ServerName::from(ip),
            Err(_) => {
                rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|_| Error::HttpRequestUriInvalid)?
            }
        };
        match timeout_at(by, tokio_rustls::TlsConnector::from(config).connect(name, tcp)).await {
            Ok(Ok(tls)) => Ok(Box::new(tls)),
            Ok(Err(e)) => Err(Error::Tls(e)),
            Err(_) => Err(Error::ConnectionTimeout),
        }
    }

    /// The address to connect to: the first one `host` resolves to that the allow list passes.
    async fn resolve(&self, host: &str, port: u16, by: Instant) -> Result<SocketAddr, Error> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addresses: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => match timeout_at(by, tokio::net::lookup_host((bare, port))).await {
                Ok(Ok(found)) => found.collect(),
                Ok(Err(e)) => {
                    return Err(Error::DnsError { rcode: Some(format!("{host}: {e}")), info_code: None });
                }
                Err(_) => return Err(Error::DnsTimeout),
            },
        };
        let listeners = self.network.listeners.lock().unwrap().clone();
        let mut refusal = None;
        for address in &addresses {
            match self.profile.outbound.check_address(host, *address, &listeners) {
                Ok(()) => return Ok(*address),
                Err(message) => {
                    refusal.get_or_insert(message);
                }
            }
        }
        let message = refusal.unwrap_or_else(|| format!("outbound request to {host}:{port}: the name has no address"));
        tracing::warn!(object = &*self.label, "{message}");
        Err(refused(message))
    }
}

/// A connection that holds its place in the host's count of outbound connections while open.
struct Counted {
    stream: Box<dyn Stream>,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A response body that fails past the size limit or the event's deadline, and holds the
/// request's connection until it is read or dropped.
struct Bounded {
    incoming: hyper::body::Incoming,
    seen: u64,
    limit: u64,
    deadline: Pin<Box<Sleep>>,
    _open: OwnedSemaphorePermit,
    last_error: LastError,
}

impl Bounded {
    fn fail(&self, error: Error) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        *self.last_error.lock().unwrap() = Some(describe(&error));
        Poll::Ready(Some(Err(error)))
    }
}

impl Body for Bounded {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.seen += data.len() as u64;
                    if this.seen > this.limit {
                        return this.fail(Error::HttpResponseBodySize(Some(this.limit)));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => this.fail(Error::Hyper(e)),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => this.fail(Error::ConnectionReadTimeout),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}
