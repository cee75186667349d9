//! The root context's side of the memory mirror: one delivery (or a step
//! of Weaviate's schema check) on the wire at a time per worker, started on
//! the tick or when a full batch waits, and the next one started by the
//! answer.

use super::callout::{self, Response};
use super::clock::now_ms;
use super::log::log;
use super::mirror::Mirror;
use super::mirror::Schema;
use super::vm::Vm;
use crate::memory::sink::Outgoing;
use crate::memory::weaviate_upgrade;
use attach_contract::weaviate::{CLASS, Property};
use proxy_wasm::types::LogLevel;
use std::time::Duration;

/// A mirror callout in flight.
pub enum Pending {
    /// A step of Weaviate's schema check.
    Schema(Step),
    Batch,
}

/// The schema check: a read of the class, then its creation or the
/// properties it lacks, one at a time.
pub enum Step {
    Read,
    Create,
    /// `property` is on the wire, `rest` follow.
    Add {
        property: Property,
        rest: std::vec::IntoIter<Property>,
    },
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
            Some((token, Pending::Schema(Step::Read)))
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
        Pending::Schema(step) => {
            let sink = &vm.config.memory.as_ref()?.sink;
            let status = response.status.as_deref().unwrap_or("none");
            let next = match (step, status) {
                (Step::Read, "200") => Ok(missing(mirror, response)),
                (Step::Read, "404") => Ok(Some(Step::Create)),
                // 422: created meanwhile by another worker or gateway.
                (Step::Create, "200" | "422") => Ok(None),
                (Step::Add { property, mut rest }, "200" | "422") => {
                    if status == "422" {
                        refused(&property, response);
                    }
                    Ok(rest.next().map(|property| Step::Add { property, rest }))
                }
                (_, status) => Err(format!("HTTP status {status:?}")),
            };
            let sent = next.and_then(|next| match next {
                Some(step) => {
                    let out = match &step {
                        Step::Read => sink.schema_check(),
                        Step::Create => Some(sink.schema_create()),
                        Step::Add { property, .. } => Some(sink.schema_add(property)),
                    };
                    let out = out.ok_or("the sink has no schema")?;
                    send(vm, &out).map(|token| Some((token, Pending::Schema(step))))
                }
                None => Ok(None),
            });
            match sent {
                Ok(Some(next)) => Some(next),
                Ok(None) => {
                    mirror.set_schema(Schema::Ready);
                    None
                }
                Err(why) => {
                    mirror.schema_failed(&why);
                    None
                }
            }
        }
    }
}

/// The properties the class read back lacks, to add next. A definition
/// that cannot be read leaves the class as it is (writes go on, and what
/// fails is counted); a property in another shape cannot be changed in
/// place, so it is only reported.
fn missing(mirror: &Mirror, response: &Response) -> Option<Step> {
    let Some(Ok(upgrade)) = readable_body(response).map(|body| weaviate_upgrade::plan(&body))
    else {
        log(
            LogLevel::Warn,
            &format!(
                "attach: Weaviate's definition of {CLASS} is unreadable; its properties are left as they are"
            ),
        );
        return None;
    };
    mirror.report_conflicts(&upgrade.conflicts);
    let mut rest = upgrade.missing.into_iter();
    rest.next().map(|property| Step::Add { property, rest })
}

/// Weaviate refused to add `property`: asking again would not help
/// (another worker may have added it meanwhile), so the next one follows.
fn refused(property: &Property, response: &Response) {
    let reason = readable_body(response).and_then(|body| weaviate_upgrade::refusal_reason(&body));
    log(
        LogLevel::Warn,
        &format!(
            "attach: Weaviate did not add property {} to {CLASS} (HTTP 422: {})",
            property.name,
            reason.as_deref().unwrap_or("no reason given")
        ),
    );
}

/// An answer's body, unless it is too large or cannot be read.
fn readable_body(response: &Response) -> Option<Vec<u8>> {
    (!response.too_large())
        .then(|| response.body().ok())
        .flatten()
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
