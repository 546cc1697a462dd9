//! Requests and responses as an object sees them, and outbound requests ([`fetch`]).

use crate::bindings::wdo::object::types;
use crate::{Error, Result};

pub use crate::fetch::{FetchRequest, FetchResponse, get, post, request};

/// Sends an outbound request (see [`get`], [`post`] and [`request`] to make one).
pub fn fetch(request: FetchRequest) -> Result<FetchResponse> {
    request.send()
}

/// An HTTP request addressed to this object. `path()` is the path inside the object.
pub struct Request(types::Request);

impl Request {
    pub(crate) fn from_wit(request: types::Request) -> Self {
        Request(request)
    }

    pub(crate) fn into_wit(self) -> types::Request {
        self.0
    }

    /// Upper-case method: `GET`, `POST`, ...
    pub fn method(&self) -> &str {
        &self.0.method
    }

    /// Path inside the object, starting with `/`.
    pub fn path(&self) -> &str {
        &self.0.path
    }

    /// The raw query string, without `?`.
    pub fn query(&self) -> &str {
        &self.0.query
    }

    /// The first value of a query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.0.query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key) == name).then(|| decode(value))
        })
    }

    /// The first value of a header (names are case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.0.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn body(&self) -> &[u8] {
        &self.0.body
    }

    /// The body as UTF-8 text, or a 400 error.
    pub fn text(&self) -> Result<&str> {
        std::str::from_utf8(&self.0.body).map_err(|_| Error::bad_request("the body is not UTF-8 text"))
    }

    /// The body parsed as JSON, or a 400 error.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.0.body).map_err(|e| Error::bad_request(format!("invalid JSON body: {e}")))
    }
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (bytes[i], hex) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 2;
            }
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An HTTP response.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Response { status, headers: Vec::new(), body: body.into() }
    }

    /// 200 with a `text/plain` body.
    pub fn text(body: impl Into<String>) -> Self {
        Response::new(200, body.into()).header("content-type", "text/plain; charset=utf-8")
    }

    /// 200 with a JSON body.
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Self> {
        Ok(Response::new(200, serde_json::to_vec(value)?).header("content-type", "application/json"))
    }

    /// The answer to an accepted WebSocket upgrade (the host sends 101 Switching Protocols).
    pub fn upgraded() -> Self {
        Response::new(101, Vec::new())
    }

    /// 404 Not Found.
    pub fn not_found() -> Self {
        Response::text("not found\n").with_status(404)
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    pub(crate) fn into_wit(self) -> types::Response {
        types::Response { status: self.status, headers: self.headers, body: self.body }
    }
}
