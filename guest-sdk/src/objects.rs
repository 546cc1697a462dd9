//! Other objects: ids, and calls to them.
//!
//! ```ignore
//! let counter = objects::Stub::by_name("counter", "alice")?;
//! let value: i64 = counter.call("increment", &1)?;        // serde (JSON) arguments and result
//! let page = counter.fetch(wdo_sdk::Request::get("/"))?;   // or its HTTP interface
//! ```
//!
//! A call is an event of the callee, serialized with its other events, and commits on its own:
//! if the caller fails afterwards, the callee's call stands.

use crate::bindings::wdo::object::objects as wit;
use crate::bindings::wdo::object::types;
use crate::{Error, Response, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The id of the object named `name` of `class`.
pub fn id_from_name(class: &str, name: &str) -> Result<String> {
    wit::id_from_name(class, name).map_err(Error::from_host)
}

/// A fresh id of `class` that no name maps to.
pub fn new_unique_id(class: &str) -> Result<String> {
    wit::new_unique_id(class).map_err(Error::from_host)
}

/// Checks that `id` is an id of `class`.
pub fn id_from_string(class: &str, id: &str) -> Result<String> {
    wit::id_from_string(class, id).map_err(Error::from_host)
}

/// Why a call failed: 503 when it is safe to retry (overloaded, not run), 500 when the callee
/// failed, 400 for a bad call (unknown class, forged id, a re-entrant call, too deep a chain).
fn call_error(error: wit::CallError) -> Error {
    let status = if error.retryable {
        503
    } else if error.from_callee {
        500
    } else {
        400
    };
    Error::new(status, error.message)
}

/// Another object, to call.
pub struct Stub {
    class: String,
    id: String,
}

impl Stub {
    pub fn by_name(class: &str, name: &str) -> Result<Stub> {
        Ok(Stub { class: class.to_string(), id: id_from_name(class, name)? })
    }

    pub fn by_id(class: &str, id: &str) -> Result<Stub> {
        Ok(Stub { class: class.to_string(), id: id_from_string(class, id)? })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Calls `method` with `args` as JSON; decodes the result from JSON.
    pub fn call<A: Serialize + ?Sized, R: DeserializeOwned>(&self, method: &str, args: &A) -> Result<R> {
        let bytes = self.call_raw(method, &serde_json::to_vec(args)?)?;
        serde_json::from_slice(&bytes).map_err(|e| Error::new(500, format!("{method} answered something else: {e}")))
    }

    /// Calls `method` with raw bytes.
    pub fn call_raw(&self, method: &str, args: &[u8]) -> Result<Vec<u8>> {
        wit::call(&self.class, &self.id, method, args).map_err(call_error)
    }

    /// Sends an HTTP request to the object's `fetch`.
    pub fn fetch(&self, request: crate::Request) -> Result<Response> {
        let response = wit::fetch(&self.class, &self.id, &request.into_wit()).map_err(call_error)?;
        Ok(Response { status: response.status, headers: response.headers, body: response.body })
    }
}

impl crate::Request {
    /// A request to send to another object.
    pub fn get(path: &str) -> Self {
        crate::Request::build("GET", path, Vec::new())
    }

    pub fn post(path: &str, body: impl Into<Vec<u8>>) -> Self {
        crate::Request::build("POST", path, body.into())
    }

    fn build(method: &str, path: &str, body: Vec<u8>) -> Self {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        crate::Request::from_wit(types::Request {
            method: method.to_string(),
            path: path.to_string(),
            query: query.to_string(),
            headers: Vec::new(),
            body,
        })
    }
}

/// Declares the methods a class serves, once, for both sides of a call:
///
/// ```ignore
/// wdo_sdk::rpc! {
///     /// Calls to counters.
///     pub interface Counter: CounterMethods ("counter") {
///         fn increment(amount: i64) -> i64;
///         fn value() -> i64;
///     }
/// }
///
/// // The caller: typed arguments and result (JSON on the wire).
/// let now = Counter::by_name("alice")?.increment(1)?;
///
/// // The callee implements the trait and hands its calls to `serve`.
/// impl CounterMethods for MyCounter { fn increment(&mut self, amount: i64) -> Result<i64> { ... } ... }
/// fn call(&mut self, method: &str, args: &[u8]) -> Result<Vec<u8>> { Counter::serve(self, method, args) }
/// ```
#[macro_export]
macro_rules! rpc {
    (
        $(#[$meta:meta])*
        $vis:vis interface $name:ident : $methods:ident ($class:literal) {
            $( $(#[$mmeta:meta])* fn $method:ident ( $($arg:ident : $ty:ty),* $(,)? ) -> $ret:ty ; )*
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            stub: $crate::objects::Stub,
        }

        impl $name {
            /// The object of this class with this name.
            pub fn by_name(name: &str) -> $crate::Result<Self> {
                Ok($name { stub: $crate::objects::Stub::by_name($class, name)? })
            }

            /// The object of this class with this id.
            pub fn by_id(id: &str) -> $crate::Result<Self> {
                Ok($name { stub: $crate::objects::Stub::by_id($class, id)? })
            }

            $(
                $(#[$mmeta])*
                pub fn $method(&self, $($arg: $ty),*) -> $crate::Result<$ret> {
                    self.stub.call(stringify!($method), &($($arg,)*))
                }
            )*

            /// Runs a call on `object`: decodes the arguments, calls the method, encodes the result.
            pub fn serve<T: $methods>(object: &mut T, method: &str, args: &[u8]) -> $crate::Result<Vec<u8>> {
                match method {
                    $(
                        stringify!($method) => {
                            #[allow(unused_parens)]
                            let ($($arg,)*): ($($ty,)*) = $crate::__private::serde_json::from_slice(args)
                                .map_err(|e| $crate::Error::bad_request(format!("arguments of `{}`: {e}", method)))?;
                            let result = object.$method($($arg),*)?;
                            Ok($crate::__private::serde_json::to_vec(&result)?)
                        }
                    )*
                    other => Err($crate::Error::new(404, format!("{} has no method `{other}`", $class))),
                }
            }
        }

        /// The methods of the class, for the object that serves them.
        $vis trait $methods {
            $( fn $method(&mut self, $($arg: $ty),*) -> $crate::Result<$ret>; )*
        }
    };
}
