//! Outbound HTTP over the standard `wasi:http/outgoing-handler`: the host sends the request if
//! the class's `outbound` list in `wdo.toml` allows its host, after the event's writes so far
//! are committed (the output gate).
//!
//! ```ignore
//! use wdo_sdk::http;
//! let reply = http::fetch(http::get("https://status.example.com/api"))?;
//! let status: serde_json::Value = reply.json()?;
//! http::post("https://hooks.example.com/x").json(&status)?.send()?;
//! ```

use crate::{Error, Result};
use wasip2::http::outgoing_handler;
use wasip2::http::types::{ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme};

/// A request to send: method, URL, headers and body.
pub struct FetchRequest {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    follow: bool,
}

const MAX_REDIRECTS: usize = 5;

/// A `GET` of `url`.
pub fn get(url: &str) -> FetchRequest {
    request("GET", url)
}

/// A `POST` to `url`.
pub fn post(url: &str) -> FetchRequest {
    request("POST", url)
}

/// A request with any method.
pub fn request(method: &str, url: &str) -> FetchRequest {
    let method = method.to_ascii_uppercase();
    FetchRequest { method, url: url.to_string(), headers: Vec::new(), body: Vec::new(), follow: true }
}

/// What the remote side answered.
#[derive(Debug, Clone)]
pub struct FetchResponse {
    pub status: u16,
    /// Names are lower-case; a name may repeat.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl FetchResponse {
    /// The first value of a header (name in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::new(502, format!("the response is not the JSON expected: {e}")))
    }
}

impl FetchRequest {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// A JSON body, with its content type.
    pub fn json<T: serde::Serialize>(self, value: &T) -> Result<Self> {
        let body = serde_json::to_vec(value)?;
        Ok(self.header("content-type", "application/json").body(body))
    }

    /// Don't follow redirects: a 3xx answer comes back as it is.
    pub fn manual_redirects(mut self) -> Self {
        self.follow = false;
        self
    }

    /// Sends the request and reads the whole response, following up to five redirects (each
    /// hop is a new request, checked by the host like the first). A refusal (a host not listed
    /// in `outbound`, an address that is not public), a timeout or a network failure is an
    /// `Err` (status 502) whose message says which.
    pub fn send(mut self) -> Result<FetchResponse> {
        for _ in 0..=MAX_REDIRECTS {
            let response = self.send_once()?;
            let location = response.header("location").map(str::to_string);
            let redirect = matches!(response.status, 301 | 302 | 303 | 307 | 308);
            let (true, true, Some(location)) = (self.follow, redirect, location) else { return Ok(response) };
            self.url = resolve(&self.url, &location)?;
            if response.status == 303 || (matches!(response.status, 301 | 302) && self.method == "POST") {
                self.method = "GET".into();
                self.body.clear();
                self.headers.retain(|(name, _)| !name.eq_ignore_ascii_case("content-type"));
            }
        }
        Err(Error::new(502, format!("more than {MAX_REDIRECTS} redirects, the last to {}", self.url)))
    }

    fn send_once(&self) -> Result<FetchResponse> {
        let (scheme, authority, path) = split_url(&self.url)?;
        let entries: Vec<(String, Vec<u8>)> =
            self.headers.iter().map(|(n, v)| (n.to_ascii_lowercase(), v.as_bytes().to_vec())).collect();
        let fields = Fields::from_list(&entries).map_err(|e| Error::bad_request(format!("bad header: {e:?}")))?;
        let request = OutgoingRequest::new(fields);
        let method = match self.method.as_str() {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_string()),
        };
        let invalid = |what: &str| Error::bad_request(format!("{what} of {} is not valid", self.url));
        request.set_method(&method).map_err(|()| invalid("the method"))?;
        request.set_scheme(Some(&scheme)).map_err(|()| invalid("the scheme"))?;
        request.set_authority(Some(authority)).map_err(|()| invalid("the host"))?;
        request.set_path_with_query(Some(path)).map_err(|()| invalid("the path"))?;
        let body = request.body().map_err(|()| Error::new(500, "the request body was already taken"))?;
        let pending = outgoing_handler::handle(request, None).map_err(|e| failed(&self.url, e))?;
        {
            let stream = body.write().map_err(|()| Error::new(500, "the request body stream was already taken"))?;
            for chunk in self.body.chunks(4096) {
                stream
                    .blocking_write_and_flush(chunk)
                    .map_err(|e| Error::new(502, format!("sending the body: {e:?}")))?;
            }
        }
        OutgoingBody::finish(body, None).map_err(|e| failed(&self.url, e))?;
        pending.subscribe().block();
        let response = match pending.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(e))) => return Err(failed(&self.url, e)),
            _ => return Err(Error::new(502, format!("request to {} ended without a response", self.url))),
        };
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned()))
            .collect();
        let incoming = response.consume().map_err(|()| Error::new(500, "the response body was already taken"))?;
        let mut body = Vec::new();
        {
            let stream =
                incoming.stream().map_err(|()| Error::new(500, "the response body stream was already taken"))?;
            loop {
                match stream.blocking_read(64 << 10) {
                    Ok(chunk) => body.extend_from_slice(&chunk),
                    Err(wasip2::io::streams::StreamError::Closed) => break,
                    Err(wasip2::io::streams::StreamError::LastOperationFailed(e)) => {
                        let detail = wasip2::http::types::http_error_code(&e);
                        return Err(match detail {
                            Some(code) => failed(&self.url, code),
                            None => Error::new(
                                502,
                                format!("reading the response of {}: {}", self.url, e.to_debug_string()),
                            ),
                        });
                    }
                }
            }
        }
        if let Some(code) = finish(incoming) {
            return Err(failed(&self.url, code));
        }
        Ok(FetchResponse { status, headers, body })
    }
}

/// Ends a response body, with the error its trailers future reports, if any.
fn finish(incoming: IncomingBody) -> Option<ErrorCode> {
    let trailers = IncomingBody::finish(incoming);
    trailers.subscribe().block();
    match trailers.get() {
        Some(Ok(Err(code))) => Some(code),
        _ => None,
    }
}

/// The host's words for why a request failed.
fn failed(url: &str, code: ErrorCode) -> Error {
    let message = match code {
        ErrorCode::InternalError(Some(message)) => message,
        ErrorCode::HttpResponseBodySize(Some(limit)) => {
            format!("the response of {url} is larger than the host allows ({limit} bytes)")
        }
        ErrorCode::ConnectionTimeout => format!("connecting for {url} timed out"),
        ErrorCode::ConnectionReadTimeout => format!("{url} did not answer in time (the event's deadline)"),
        ErrorCode::ConnectionRefused => format!("{url}: the connection was refused"),
        ErrorCode::DnsError(e) => format!("{url}: the name did not resolve ({})", e.rcode.unwrap_or_default()),
        other => format!("request to {url} failed: {other:?}"),
    };
    Error::new(502, message)
}

/// Where a redirect's `location` points, from the URL that answered it.
fn resolve(from: &str, location: &str) -> Result<String> {
    if location.starts_with("http://") || location.starts_with("https://") {
        return Ok(location.to_string());
    }
    let (scheme, authority, _) = split_url(from)?;
    let scheme = if matches!(scheme, Scheme::Https) { "https" } else { "http" };
    match location.starts_with('/') {
        true => Ok(format!("{scheme}://{authority}{location}")),
        false => Err(Error::new(502, format!("{from} redirected to `{location}`, which is not a URL or a path"))),
    }
}

fn split_url(url: &str) -> Result<(Scheme, &str, &str)> {
    let bad = || Error::bad_request(format!("`{url}` is not an http:// or https:// URL"));
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else {
        return Err(bad());
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(at) if rest[at..].starts_with('/') => (&rest[..at], &rest[at..]),
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(bad());
    }
    Ok((scheme, authority, path))
}
