//! The root context's side of the memory mirror: one delivery (or a check
//! of Weaviate's schema) on the wire at a time per worker, started on the
//! tick or when a full batch waits, and the next one started by the answer.

use super::callout::{self, Response};
use super::clock::now_ms;
use super::log::log;
use super::mirror::Schema;
use super::vm::Vm;
use crate::memory::sink::Outgoing;
use proxy_wasm::types::LogLevel;
use std::time::Duration;

/// A mirror callout in flight.
pub enum Pending {
    /// Weaviate's schema check (`creating`: its creation).
    Schema {
        creating: bool,
    },
    Batch,
}

/// Sends the next memory batch (or Weaviate's schema check) if this worker
/// has nothing on the wire.
pub fn pump(vm: &Vm) -> Option<(u32, Pending)> {
    let mirror = vm.mirror.as_ref()?;
    let out = match mirror.schema() {
        Schema::Ready => mirror.next_batch(&vm.config)?,
        Schema::Unknown { next_ms } if now_ms() >= next_ms => {
            vm.config.memory.as_ref()?.sink.schema_check()?
        }
        _ => return None,
    };
    let batch = mirror.schema() == Schema::Ready;
    match send(vm, &out) {
        Ok(token) if batch => {
            mirror.sending();
            Some((token, Pending::Batch))
        }
        Ok(token) => {
            mirror.set_schema(Schema::Checking);
            Some((token, Pending::Schema { creating: false }))
        }
        Err(why) if batch => {
            log(LogLevel::Warn, &format!("attach: memory delivery: {why}"));
            mirror.delivered(&vm.config, None, None);
            None
        }
        Err(why) => {
            mirror.schema_failed(&why);
            None
        }
    }
}

/// Handles an answer; the next callout, if one follows at once.
pub fn on_response(vm: &Vm, pending: Pending, response: &Response) -> Option<(u32, Pending)> {
    let mirror = vm.mirror.as_ref()?;
    match pending {
        Pending::Batch => {
            let code = response.code();
            let ok = code.is_some_and(|c| (200..300).contains(&c));
            // An unreadable body reads as no answer to the batch: retried.
            let body = (ok && !response.too_large())
                .then(|| response.body().ok())
                .flatten();
            mirror.delivered(&vm.config, code, body.as_deref());
            pump(vm)
        }
        Pending::Schema { creating } => {
            match (creating, response.status.as_deref().unwrap_or("none")) {
                // 422: created meanwhile by another worker or gateway.
                (false, "200") | (true, "200") | (true, "422") => {
                    mirror.set_schema(Schema::Ready);
                    None
                }
                (false, "404") => {
                    let out = vm.config.memory.as_ref()?.sink.schema_create();
                    match send(vm, &out) {
                        Ok(token) => Some((token, Pending::Schema { creating: true })),
                        Err(why) => {
                            mirror.schema_failed(&why);
                            None
                        }
                    }
                }
                (_, status) => {
                    mirror.schema_failed(&format!("HTTP status {status:?}"));
                    None
                }
            }
        }
    }
}

/// Sends `out` to the sink.
fn send(vm: &Vm, out: &Outgoing) -> Result<u32, String> {
    let memory = vm.config.memory.as_ref().ok_or("memory mirror is off")?;
    let request = callout::Request {
        method: out.method,
        path: &out.path,
        headers: out.headers.iter().map(|(k, v)| (*k, v.as_str())).collect(),
        body: out.body.as_deref(),
        timeout: Duration::from_millis(memory.timeout_ms),
    };
    callout::send(&vm.config, &memory.sink.url, request)
}
