//! The HTTP request and response an object sees, independent of any HTTP library.

/// A request for an object. `path` is the path inside the object (`/increment`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Raw query string without `?`.
    pub query: String,
    /// Lower-case header names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn new(method: &str, path: &str) -> Self {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        Request {
            method: method.to_ascii_uppercase(),
            path: if path.starts_with('/') { path.to_string() } else { format!("/{path}") },
            query: query.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn get(path: &str) -> Self {
        Request::new("GET", path)
    }

    pub fn post(path: &str, body: impl Into<Vec<u8>>) -> Self {
        Request { body: body.into(), ..Request::new("POST", path) }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.to_string()));
        self
    }
}

/// An object's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl From<Request> for crate::bindings::WitRequest {
    fn from(r: Request) -> Self {
        crate::bindings::WitRequest { method: r.method, path: r.path, query: r.query, headers: r.headers, body: r.body }
    }
}

impl From<crate::bindings::WitResponse> for Response {
    fn from(r: crate::bindings::WitResponse) -> Self {
        Response { status: r.status, headers: r.headers, body: r.body }
    }
}

/// Whether header values (each a comma-separated list, like `Connection` and `Upgrade`) name
/// `token`, in any case.
pub fn lists_token<'a>(values: impl IntoIterator<Item = &'a str>, token: &str) -> bool {
    values.into_iter().any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}
