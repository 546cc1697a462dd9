//! The Worker of the product page, ported: it receives every request and calls a Counter object
//! by RPC. `/increment?name=X`, `/decrement?name=X` and `/?name=X` answer the count as text.

wit_bindgen::generate!({ path: "../../../wit", world: "worker" });

use exports::wdo::object::worker_handler::Guest;
use wdo::object::objects;
use wdo::object::types::{Request, Response};

struct Worker;

fn text(status: u16, body: &str) -> Response {
    Response {
        status,
        headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
        body: body.as_bytes().to_vec(),
    }
}

/// The first `name` parameter of a query string, percent-decoded.
fn name_param(query: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let value = pair.strip_prefix("name=")?;
        let bytes = value.replace('+', " ").into_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match (
                bytes[i],
                bytes.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()),
            ) {
                (b'%', Some(byte)) => {
                    out.push(byte);
                    i += 3;
                }
                (b, _) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        Some(String::from_utf8_lossy(&out).into_owned())
    })
}

impl Guest for Worker {
    fn fetch(request: Request) -> Response {
        let Some(name) = name_param(&request.query).filter(|n| !n.is_empty()) else {
            return text(400, "missing ?name");
        };
        let method = match request.path.as_str() {
            "/increment" => "increment",
            "/decrement" => "decrement",
            "/" => "getCounterValue",
            _ => return text(404, "not found"),
        };
        let id = match objects::id_from_name("counter", &name) {
            Ok(id) => id,
            Err(e) => return text(500, &format!("{e:?}")),
        };
        match objects::call("counter", &id, method, &[]) {
            Ok(count) => text(200, &String::from_utf8_lossy(&count)),
            Err(e) => text(if e.overloaded { 503 } else { 500 }, &e.message),
        }
    }
}

export!(Worker);
