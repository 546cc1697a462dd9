//! A real HTTP server on loopback for guests' outbound requests to reach, recording what
//! arrives. Routes: `/echo` (the request as JSON), `/big?bytes=N`, `/slow` (answers after 30 s),
//! `/redirect?to=URL` (302), `/kill?pid=N` (`kill -9` of that process, then an answer).

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
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorded = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| answer(request, recorded.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Upstream { addr, seen, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
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
            tokio::time::sleep(Duration::from_secs(30)).await;
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
