//! A durable object for the end-to-end tests: each route exercises one guarantee of the host.

use serde::Deserialize;
use std::sync::atomic::{AtomicU64, Ordering};
use wdo_sdk::prelude::*;
use wdo_sdk::storage::{List, raw};

/// Events this instance has handled: 1 on a fresh instance.
static EVENTS: AtomicU64 = AtomicU64::new(0);

struct Probe;

/// One key-value operation, as JSON: `{"op": "put-many", "entries": [["a", 1]]}`.
#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
enum KvOp {
    Get {
        key: String,
    },
    GetMany {
        keys: Vec<String>,
    },
    Put {
        key: String,
        value: serde_json::Value,
    },
    PutMany {
        entries: Vec<(String, serde_json::Value)>,
    },
    Delete {
        key: String,
    },
    DeleteMany {
        keys: Vec<String>,
    },
    DeleteAll,
    List {
        prefix: Option<String>,
        start: Option<String>,
        start_after: Option<String>,
        end: Option<String>,
        #[serde(default)]
        reverse: bool,
        limit: Option<u32>,
    },
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn kv(op: KvOp) -> Result<serde_json::Value> {
    use serde_json::{Value, json};
    Ok(match op {
        KvOp::Get { key } => storage::get::<Value>(&key)?.unwrap_or(Value::Null),
        KvOp::GetMany { keys } => json!(storage::get_many::<Value>(&strs(&keys))?),
        KvOp::Put { key, value } => json!(storage::put(&key, &value)?),
        KvOp::PutMany { entries } => {
            let entries: Vec<(&str, Value)> = entries.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
            json!(storage::put_many(&entries)?)
        }
        KvOp::Delete { key } => json!(storage::delete(&key)?),
        KvOp::DeleteMany { keys } => json!(storage::delete_many(&strs(&keys))?),
        KvOp::DeleteAll => json!(storage::delete_all()?),
        KvOp::List { prefix, start, start_after, end, reverse, limit } => {
            let mut list = List::new();
            if let Some(p) = &prefix {
                list = list.prefix(p);
            }
            if let Some(s) = &start {
                list = list.start(s);
            }
            if let Some(s) = &start_after {
                list = list.start_after(s);
            }
            if let Some(e) = &end {
                list = list.end(e);
            }
            if reverse {
                list = list.reverse();
            }
            if let Some(l) = limit {
                list = list.limit(l);
            }
            json!(storage::list::<Value>(list)?)
        }
    })
}

impl DurableObject for Probe {
    fn new() -> Self {
        Probe
    }

    fn fetch(&mut self, request: Request) -> Result<Response> {
        let events = EVENTS.fetch_add(1, Ordering::SeqCst) + 1;
        let key = request.query_param("key").unwrap_or_else(|| "k".into());
        match (request.method(), request.path()) {
            // How many events this instance has served (1 means it is fresh).
            ("GET", "/instance") => Ok(Response::text(events.to_string())),
            ("GET", "/whoami") => Response::json(&serde_json::json!({
                "id": context::id(), "name": context::name(), "class": context::class(),
            })),
            ("GET", "/get") => match raw::get(&key)? {
                Some(value) => Ok(Response::new(200, value)),
                None => Ok(Response::not_found()),
            },
            ("POST", "/put") => {
                raw::put(&key, request.body())?;
                Ok(Response::text("stored"))
            }
            ("POST", "/kv") => Response::json(&kv(request.json()?)?),
            // Writes, then panics: the write must be rolled back.
            ("POST", "/trap") => {
                raw::put(&key, b"written before the trap")?;
                panic!("probe: deliberate panic after writing `{key}`");
            }
            // Writes, then spins forever: the CPU limit must stop it.
            ("POST", "/loop") => {
                raw::put(&key, b"written before the loop")?;
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            // Allocates without bound: the memory limit must stop it.
            ("POST", "/alloc") => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            ("POST", "/bad-status") => Ok(Response::new(1000, "")),
            ("POST", "/log") => {
                context::log(request.text()?);
                Ok(Response::text("logged"))
            }
            _ => Ok(Response::not_found()),
        }
    }
}

export!(Probe);
