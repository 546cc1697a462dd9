//! The WIT `objects` import: ids, and calls to other objects.

use super::MAX_DEPTH;
use crate::bindings::wdo::object::objects::{self, CallError};
use crate::bindings::{WitError, WitRequest, WitResponse};
use crate::error::Error;
use crate::ids::ObjectId;
use crate::object::{Envelope, Event, HostState, ObjectKey, Reply, WorkerUpgrade};
use crate::registry::Class;
use std::sync::Arc;
use tokio::sync::oneshot;

type Call<T> = wasmtime::Result<Result<T, WitError>>;

fn call_error(message: String, from_callee: bool, retryable: bool, overloaded: bool) -> CallError {
    CallError { message, from_callee, retryable, overloaded }
}

/// How a failed event of the callee looks to its caller.
fn from_host_error(error: Error) -> CallError {
    match error {
        Error::Overloaded { .. } => call_error(error.to_string(), false, true, true),
        Error::Unavailable { .. } => call_error(error.to_string(), false, true, false),
        Error::EventFailed { .. } => call_error(error.to_string(), true, false, false),
        other => call_error(other.to_string(), false, false, false),
    }
}

impl HostState {
    fn class(&self, name: &str) -> Result<Arc<Class>, String> {
        self.directory.registry.get(name).map_err(|e| e.to_string())
    }

    /// The callee, refusing forged ids, cycles and chains that are too deep.
    fn callee(&self, class: &str, id: &str) -> Result<(Arc<Class>, ObjectKey), CallError> {
        let refuse = |message: String| call_error(message, false, false, false);
        if self.warming_up {
            return Err(refuse("a warm-up runs for no object: it cannot call objects".into()));
        }
        let class = self.class(class).map_err(refuse)?;
        let id = class.secret.parse_id(id).map_err(|e| refuse(format!("class `{}`: {e}", class.name)))?;
        let key = ObjectKey { class: class.name.clone(), id };
        let me = self.object.key();
        if key == me || self.chain.contains(&key) {
            let mut cycle: Vec<String> = self.chain.iter().map(|k| format!("{}/{}", k.class, short(&k.id))).collect();
            cycle.push(format!("{}/{}", me.class, short(&me.id)));
            cycle.push(format!("{}/{}", key.class, short(&key.id)));
            return Err(refuse(format!(
                "re-entrant call: {} (an object cannot wait on a call that waits on it)",
                cycle.join(" → ")
            )));
        }
        if self.chain.len() + 1 >= MAX_DEPTH {
            return Err(refuse(format!("call chain deeper than {MAX_DEPTH} objects")));
        }
        Ok((class, key))
    }

    /// Queues an event for the callee, as part of this event's chain; returns where its reply
    /// will come. (Nothing of `self` is held across the wait: the store's data is not `Sync`.)
    fn send_to(
        &self,
        class: &Arc<Class>,
        key: ObjectKey,
        event: Event,
    ) -> Result<oneshot::Receiver<Result<Reply, Error>>, CallError> {
        let mut chain = self.chain.clone();
        chain.push(self.object.key());
        let (reply, answer) = oneshot::channel();
        let held = Default::default();
        self.directory.limits.observe.metrics.rpc_call(&key.class);
        let envelope = Envelope {
            event,
            name: class.name_of(&key.id),
            reply,
            chain,
            deadline: self.deadline,
            held,
            request_id: crate::observe::current_request_id(),
        };
        self.directory.send(class, key, envelope).map_err(from_host_error)?;
        Ok(answer)
    }

    fn check_payload(&self, size: usize) -> Result<(), CallError> {
        let limit = self.directory.config.max_call_payload;
        if size > limit {
            return Err(call_error(format!("a payload of {size} bytes; the limit is {limit}"), false, false, false));
        }
        Ok(())
    }
}

/// The callee's answer, waited for until the calling event's deadline at most.
async fn reply_of(
    answer: oneshot::Receiver<Result<Reply, Error>>,
    deadline: Option<tokio::time::Instant>,
) -> Result<Reply, CallError> {
    let answered = match deadline {
        Some(deadline) => match tokio::time::timeout_at(deadline, answer).await {
            Ok(answered) => answered,
            Err(_) => {
                let message = "the callee did not answer before this event's deadline (--event-timeout)";
                return Err(call_error(message.into(), false, false, false));
            }
        },
        None => answer.await,
    };
    match answered {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(error)) => Err(from_host_error(error)),
        Err(_) => Err(call_error("the callee stopped before answering".into(), false, true, false)),
    }
}

fn short(id: &ObjectId) -> String {
    id.to_hex()[..8].to_string()
}

impl objects::Host for HostState {
    async fn id_from_name(&mut self, class: String, name: String) -> Call<String> {
        Ok(self.class(&class).map(|c| c.id_from_name(&name).to_hex()).map_err(WitError::InvalidArgument))
    }

    async fn new_unique_id(&mut self, class: String) -> Call<String> {
        Ok(self.class(&class).map(|c| c.secret.new_unique_id().to_hex()).map_err(WitError::InvalidArgument))
    }

    async fn id_from_string(&mut self, class: String, id: String) -> Call<String> {
        let checked = self
            .class(&class)
            .and_then(|c| c.secret.parse_id(&id).map(|id| id.to_hex()).map_err(|e| format!("class `{class}`: {e}")));
        Ok(checked.map_err(WitError::InvalidArgument))
    }

    async fn call(
        &mut self,
        class: String,
        id: String,
        method: String,
        args: Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, CallError>> {
        let sent = self
            .check_payload(args.len())
            .and_then(|()| self.callee(&class, &id))
            .and_then(|(class, key)| self.send_to(&class, key, Event::Call { method, args }));
        let answer = match sent {
            Ok(answer) => answer,
            Err(e) => return Ok(Err(e)),
        };
        Ok(match reply_of(answer, self.deadline).await {
            Ok(Reply::Called(Ok(result))) => Ok(result),
            Ok(Reply::Called(Err(message))) => Err(call_error(message, true, false, false)),
            Ok(_) => Err(call_error("the callee answered a call with something else".into(), false, false, false)),
            Err(e) => Err(e),
        })
    }

    async fn fetch(
        &mut self,
        class: String,
        id: String,
        request: WitRequest,
    ) -> wasmtime::Result<Result<WitResponse, CallError>> {
        let request = crate::message::Request {
            method: request.method,
            path: request.path,
            query: request.query,
            headers: request.headers,
            body: request.body,
        };
        // The worker hands its client's WebSocket upgrade on to the object it fetches with one.
        let upgrade = matches!(self.worker_upgrade, WorkerUpgrade::Offered) && asks_for_websocket(&request.headers);
        if upgrade && let Some(cluster) = self.directory.cluster.get().cloned() {
            // An object held by another host accepts there: the client's connection goes to it.
            let owner = match self.callee(&class, &id) {
                Ok((_, key)) => cluster.remote_owner(&key).map(|owner| (owner, key)),
                Err(e) => return Ok(Err(e)),
            };
            if let Some((owner, key)) = owner {
                use crate::gateway::upgrade::{Handed, hand_to_owner};
                return Ok(match hand_to_owner(&cluster, owner, &key, &request).await {
                    Ok(Handed::Accepted(upstream)) => {
                        self.worker_upgrade = WorkerUpgrade::Elsewhere(upstream);
                        Ok(WitResponse { status: 101, headers: Vec::new(), body: Vec::new() })
                    }
                    Ok(Handed::Refused(r)) => Ok(WitResponse { status: r.status, headers: r.headers, body: r.body }),
                    Err(e) => Err(from_host_error(e)),
                });
            }
        }
        let sent =
            self.check_payload(request.body.len()).and_then(|()| self.callee(&class, &id)).and_then(|(class, key)| {
                let event = if upgrade { Event::Upgrade(request) } else { Event::Fetch(request) };
                self.send_to(&class, key, event)
            });
        let answer = match sent {
            Ok(answer) => answer,
            Err(e) => return Ok(Err(e)),
        };
        Ok(match reply_of(answer, self.deadline).await {
            Ok(Reply::Upgrade(accepted)) if upgrade => {
                self.worker_upgrade = WorkerUpgrade::Accepted(accepted);
                Ok(WitResponse { status: 101, headers: Vec::new(), body: Vec::new() })
            }
            Ok(Reply::Response(r)) => Ok(WitResponse { status: r.status, headers: r.headers, body: r.body }),
            Ok(_) => Err(call_error("the callee answered a fetch with something else".into(), false, false, false)),
            Err(e) => Err(e),
        })
    }
}

fn asks_for_websocket(headers: &[(String, String)]) -> bool {
    let upgrade = headers.iter().filter(|(name, _)| name.eq_ignore_ascii_case("upgrade"));
    crate::message::lists_token(upgrade.map(|(_, value)| value.as_str()), "websocket")
}
