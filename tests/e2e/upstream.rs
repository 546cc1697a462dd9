//! A real HTTP server on loopback for guests' outbound requests to reach (plain or HTTPS),
//! recording what arrives and how many requests it held at once. Routes: `/echo` (the request
//! as JSON), `/big?bytes=N`, `/slow` (answers after 30 s, or `?ms=N`), `/redirect?to=URL` (302),
//! `/kill?pid=N` (`kill -9` of that process, then an answer).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
}

pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Requests in progress now, and the most at once.
    load: Arc<Mutex<(usize, usize)>>,
    https: bool,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    pub async fn start() -> Upstream {
        Upstream::serve(None).await
    }

    /// Serves HTTPS with this certificate chain and key (PEM files).
    pub async fn start_tls(chain: &std::path::Path, key: &std::path::Path) -> Upstream {
        use rustls::pki_types::pem::PemObject;
        let chain: Vec<_> =
            rustls::pki_types::CertificateDer::pem_file_iter(chain).unwrap().map(Result::unwrap).collect();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        Upstream::serve(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn serve(tls: Option<tokio_rustls::TlsAcceptor>) -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let load = Arc::new(Mutex::new((0, 0)));
        let (recorded, counted) = (seen.clone(), load.clone());
        let https = tls.is_some();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (recorded, counted, tls) = (recorded.clone(), counted.clone(), tls.clone());
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |request| answer(request, recorded.clone(), counted.clone()));
                    let http = hyper::server::conn::http1::Builder::new();
                    let _ = match tls {
                        Some(tls) => match tls.accept(stream).await {
                            Ok(stream) => http.serve_connection(TokioIo::new(stream), service).await,
                            Err(_) => return,
                        },
                        None => http.serve_connection(TokioIo::new(stream), service).await,
                    };
                });
            }
        });
        Upstream { addr, seen, load, https, task }
    }

    pub fn url(&self, path: &str) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// The most requests it held at once.
    pub fn peak(&self) -> usize {
        self.load.lock().unwrap().1
    }

    /// What arrived so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn query<'a>(path: &'a str, name: &str) -> Option<&'a str> {
    let query = path.split_once('?')?.1;
    query.split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

async fn answer(
    request: hyper::Request<Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
    load: Arc<Mutex<(usize, usize)>>,
) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    {
        let mut load = load.lock().unwrap();
        load.0 += 1;
        load.1 = load.1.max(load.0);
    }
    let response = respond(request, seen).await;
    load.lock().unwrap().0 -= 1;
    response
}

async fn respond(
    request: hyper::Request<Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    let method = request.method().to_string();
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
    let headers: serde_json::Map<String, serde_json::Value> = request
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned().into()))
        .collect();
    seen.lock().unwrap().push(Seen { method: method.clone(), path: path.clone() });
    let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let route = path.split('?').next().unwrap_or("");
    let response = hyper::Response::builder().header("x-upstream", "yes");
    let response = match route {
        "/echo" => {
            let echo = serde_json::json!({
                "method": method, "path": path, "headers": headers, "body": String::from_utf8_lossy(&body),
            });
            response.status(200).body(Full::new(Bytes::from(echo.to_string())))
        }
        "/big" => {
            let bytes: usize = query(&path, "bytes").and_then(|n| n.parse().ok()).unwrap_or(0);
            response.status(200).body(Full::new(Bytes::from(vec![b'x'; bytes])))
        }
        "/slow" => {
            let ms = query(&path, "ms").and_then(|ms| ms.parse().ok()).unwrap_or(30_000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            response.status(200).body(Full::new(Bytes::from("late")))
        }
        "/redirect" => {
            let to = query(&path, "to").unwrap_or("/");
            let to = percent_encoding::percent_decode_str(to).decode_utf8_lossy().into_owned();
            response.status(302).header("location", to).body(Full::new(Bytes::new()))
        }
        "/kill" => {
            let pid = query(&path, "pid").unwrap_or("0").to_string();
            let _ = std::process::Command::new("kill").args(["-9", &pid]).status();
            response.status(200).body(Full::new(Bytes::from("killed")))
        }
        _ => response.status(404).body(Full::new(Bytes::from("no such route"))),
    };
    Ok(response.unwrap())
}

/// A WebSocket server on loopback: greets each client with `hello`, answers each text message
/// `m` with `echo:m`, sends `late` N ms after `later:N`, and closes when it gets `bye`.
pub struct WsUpstream {
    pub addr: SocketAddr,
    /// The messages it received, from every client, in order.
    received: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WsUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WsUpstream {
    pub async fn start() -> WsUpstream {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let log = log.clone();
                tokio::spawn(async move {
                    // The first subprotocol the client offers is the one it gets. (The error type
                    // is tungstenite's, whatever its size.)
                    #[allow(clippy::result_large_err)]
                    let pick = |request: &tokio_tungstenite::tungstenite::handshake::server::Request,
                                mut response: tokio_tungstenite::tungstenite::handshake::server::Response| {
                        if let Some(offered) = request.headers().get("sec-websocket-protocol") {
                            let first = offered.to_str().unwrap_or("").split(',').next().unwrap_or("").trim();
                            response.headers_mut().insert("sec-websocket-protocol", first.parse().unwrap());
                        }
                        Ok(response)
                    };
                    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, pick).await else { return };
                    let (mut sink, mut source) = ws.split();
                    let (to_client, mut outgoing) = tokio::sync::mpsc::unbounded_channel::<Message>();
                    tokio::spawn(async move {
                        while let Some(message) = outgoing.recv().await {
                            let close = matches!(message, Message::Close(_));
                            if sink.send(message).await.is_err() || close {
                                break;
                            }
                        }
                    });
                    let _ = to_client.send(Message::text("hello"));
                    while let Some(Ok(message)) = source.next().await {
                        let Message::Text(text) = message else { continue };
                        log.lock().unwrap().push(text.to_string());
                        if text.as_str() == "bye" {
                            let _ = to_client.send(Message::Close(None));
                            break;
                        }
                        if let Some(ms) = text.strip_prefix("later:").and_then(|ms| ms.parse().ok()) {
                            let to_client = to_client.clone();
                            tokio::spawn(async move {
                                tokio::time::sleep(Duration::from_millis(ms)).await;
                                let _ = to_client.send(Message::text("late"));
                            });
                            continue;
                        }
                        let _ = to_client.send(Message::text(format!("echo:{text}")));
                    }
                });
            }
        });
        WsUpstream { addr, received, task }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/feed", self.addr)
    }

    pub fn received(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }
}
