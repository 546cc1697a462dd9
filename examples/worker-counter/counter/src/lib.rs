//! The Counter of the product page: a durable object whose methods are called by RPC.

use wdo_sdk::prelude::*;

struct Counter;

fn amount(args: &[u8]) -> Result<i64> {
    if args.is_empty() { Ok(1) } else { Ok(serde_json::from_slice(args)?) }
}

impl DurableObject for Counter {
    fn new() -> Self {
        Counter
    }

    fn fetch(&mut self, _request: Request) -> Result<Response> {
        Ok(Response::not_found())
    }

    fn call(&mut self, method: &str, args: &[u8]) -> Result<Vec<u8>> {
        let mut value: i64 = storage::get("value")?.unwrap_or(0);
        match method {
            "getCounterValue" => {}
            "increment" => value += amount(args)?,
            "decrement" => value -= amount(args)?,
            other => return Err(Error::new(404, format!("Counter has no method `{other}`"))),
        }
        storage::put("value", &value)?;
        Ok(serde_json::to_vec(&value)?)
    }
}

export!(Counter);
