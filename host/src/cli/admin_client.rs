//! A small HTTP/1.1 client for the host's admin API (one connection per request).

use bytes::Bytes;
use futures_util::stream;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use std::path::Path;

pub type Failure = Box<dyn std::error::Error>;

/// Where the admin API is and how to prove the right to use it.
pub struct AdminClient {
    /// `host:port` to connect to.
    authority: String,
    token: String,
}

/// How the connection options of `deploy`, `versions` and `rollback` are spelled.
#[derive(clap::Args)]
pub struct Connection {
    /// The host's address.
    #[arg(long, env = "WDO_SERVER", default_value = "http://127.0.0.1:8787")]
    server: String,
    /// The host's admin token (default: the host's data folder's `admin-token`).
    #[arg(long, env = "WDO_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The host's data folder, to read its `admin-token` when no token is given.
    #[arg(long, default_value = ".wdo")]
    data: std::path::PathBuf,
}

impl Connection {
    pub fn new(server: &str, token: Option<String>, data: std::path::PathBuf) -> Connection {
        Connection { server: server.to_string(), token, data }
    }

    pub fn server(&self) -> &str {
        &self.server
    }
}

/// A response: status and body.
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON, or the host's own words as the error.
    pub fn json<T: serde::de::DeserializeOwned>(self) -> Result<T, Failure> {
        if !(200..300).contains(&self.status) {
            return Err(String::from_utf8_lossy(&self.body).trim_end().to_string().into());
        }
        serde_json::from_slice(&self.body).map_err(|e| format!("the host answered something unexpected: {e}").into())
    }
}

impl AdminClient {
    pub fn connect(options: &Connection) -> Result<AdminClient, Failure> {
        let authority = match options.server.trim_end_matches('/').strip_prefix("http://") {
            Some(authority) if !authority.is_empty() && !authority.contains('/') => authority.to_string(),
            _ if options.server.starts_with("https://") => {
                return Err("only http:// servers are supported: reach a remote host through an SSH tunnel \
                            or a TLS proxy in front of it"
                    .into());
            }
            _ => return Err(format!("`{}` is not a server address like http://127.0.0.1:8787", options.server).into()),
        };
        let token = match &options.token {
            Some(token) => token.clone(),
            None => read_token(&options.data)?,
        };
        Ok(AdminClient { authority, token })
    }

    pub async fn get(&self, path: &str) -> Result<Reply, Failure> {
        self.send("GET", path, Full::new(Bytes::new()).map_err(|e| match e {}).boxed(), None).await
    }

    pub async fn head(&self, path: &str) -> Result<Reply, Failure> {
        self.send("HEAD", path, Full::new(Bytes::new()).map_err(|e| match e {}).boxed(), None).await
    }

    pub async fn post_json(&self, path: &str, value: &serde_json::Value) -> Result<Reply, Failure> {
        let body = Full::new(Bytes::from(serde_json::to_vec(value)?)).map_err(|e| match e {}).boxed();
        self.send("POST", path, body, None).await
    }

    pub async fn post_text(&self, path: &str, text: &str) -> Result<Reply, Failure> {
        let length = text.len();
        let body = Full::new(Bytes::from(text.to_string())).map_err(|e| match e {}).boxed();
        self.send("POST", path, body, Some(length)).await
    }

    /// GETs `path` and hands back the response as it comes (a tail): the body is read by the
    /// caller, frame by frame. A status other than 200 is the error, in the host's words.
    pub async fn stream(&self, path: &str) -> Result<hyper::body::Incoming, Failure> {
        let response =
            self.exchange("GET", path, Full::new(Bytes::new()).map_err(|e| match e {}).boxed(), None).await?;
        if response.status() != 200 {
            let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            return Err(String::from_utf8_lossy(&body).trim_end().to_string().into());
        }
        Ok(response.into_body())
    }

    pub async fn put(&self, path: &str, bytes: Vec<u8>) -> Result<Reply, Failure> {
        let length = bytes.len();
        self.send("PUT", path, Full::new(Bytes::from(bytes)).map_err(|e| match e {}).boxed(), Some(length)).await
    }

    pub async fn delete(&self, path: &str) -> Result<Reply, Failure> {
        self.send("DELETE", path, Full::new(Bytes::new()).map_err(|e| match e {}).boxed(), None).await
    }

    /// PUTs `bytes` in chunks, calling `progress(sent, total)` as they go out.
    pub async fn put_with_progress(
        &self,
        path: &str,
        bytes: Vec<u8>,
        mut progress: impl FnMut(usize, usize) + Send + Sync + 'static,
    ) -> Result<Reply, Failure> {
        const CHUNK: usize = 64 << 10;
        let total = bytes.len();
        let bytes = Bytes::from(bytes);
        let chunks = stream::iter((0..total).step_by(CHUNK).map(move |start| {
            let end = (start + CHUNK).min(total);
            progress(end, total);
            Ok::<_, std::convert::Infallible>(Frame::data(bytes.slice(start..end)))
        }));
        let body = StreamBody::new(chunks).map_err(|e| match e {}).boxed();
        self.send("PUT", path, body, Some(total)).await
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: BoxBody<Bytes, std::convert::Infallible>,
        length: Option<usize>,
    ) -> Result<Reply, Failure> {
        let response = self.exchange(method, path, body, length).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.map_err(|e| self.unreachable(&e))?.to_bytes().to_vec();
        Ok(Reply { status, body })
    }

    fn unreachable(&self, e: &dyn std::fmt::Display) -> String {
        format!("cannot reach the host at http://{}: {e}", self.authority)
    }

    async fn exchange(
        &self,
        method: &str,
        path: &str,
        body: BoxBody<Bytes, std::convert::Infallible>,
        length: Option<usize>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, Failure> {
        let unreachable =
            |e: &dyn std::fmt::Display| format!("cannot reach the host at http://{}: {e}", self.authority);
        let stream = tokio::net::TcpStream::connect(&self.authority).await.map_err(|e| unreachable(&e))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| unreachable(&e))?;
        tokio::spawn(connection);
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(format!("/_wdo/admin/{path}"))
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::AUTHORIZATION, format!("Bearer {}", self.token));
        if let Some(length) = length {
            request = request.header(hyper::header::CONTENT_LENGTH, length);
        }
        Ok(sender.send_request(request.body(body)?).await.map_err(|e| unreachable(&e))?)
    }
}

fn read_token(data: &Path) -> Result<String, Failure> {
    let path = data.join("admin-token");
    match std::fs::read_to_string(&path) {
        Ok(token) => Ok(token.trim().to_string()),
        Err(e) => Err(format!(
            "no admin token: pass --token or set WDO_ADMIN_TOKEN (the host keeps it in <data>/admin-token; \
             {} cannot be read: {e})",
            path.display()
        )
        .into()),
    }
}
