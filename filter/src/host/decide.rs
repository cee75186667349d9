//! One request's decision: verify its token and act on the verdict — stamp
//! and let it through, refuse it, or ask to wait for its issuer's keys. Runs
//! in the request's own callback, and again from the root context when a
//! wait ends.

use super::abi::Status;
use super::clock::now_ms;
use super::log::log;
use super::request::RequestState;
use super::stream;
use super::vm::Vm;
use crate::memory::capture::Capture;
use crate::reply;
use crate::request_head::RequestHead;
use crate::stamp;
use crate::verify::{self, Verdict};
use proxy_wasm::types::LogLevel;
use std::cell::RefCell;

pub enum Step {
    Continue,
    Replied,
    Wait { issuer: usize },
}

/// Verifies the current stream's token and acts on the verdict. `waited`:
/// the request already waited once, so a second wait is answered with a 503.
pub fn decide(vm: &Vm, state: &RefCell<RequestState>, waited: bool) -> Step {
    let now = i64::try_from(now_ms() / 1_000).unwrap_or(i64::MAX);
    let verdict = {
        let st = state.borrow();
        verify::verify(
            &vm.config,
            st.head.authorization.as_deref(),
            now,
            &*vm.keys.borrow(),
            &mut vm.cache.borrow_mut(),
            st.refetched,
        )
    };
    match verdict {
        Verdict::Allow(identity) => {
            let mut st = state.borrow_mut();
            let plan = stamp::plan(
                &identity,
                &st.head,
                &vm.config,
                (vm.mirror.is_some(), &mut vm.identity_tokens.borrow_mut()),
                now_ms(),
            );
            if let Err((what, status)) = apply(&plan) {
                stream::fail_closed(what, status);
                return Step::Replied;
            }
            if let (Some(start), Some(memory), Some(mirror)) =
                (plan.capture, &vm.config.memory, &vm.mirror)
            {
                st.capture = Some(
                    Capture::new(
                        start.route,
                        &identity.user,
                        &plan.session,
                        &start.request_id,
                        start.start_ms,
                        memory.max_bytes,
                        mirror.budget.clone(),
                    )
                    .acted_by(&identity.actors),
                );
            }
            st.stamped = Some((identity.user, plan.session));
            Step::Continue
        }
        Verdict::AwaitKeys { issuer } if !waited => Step::Wait { issuer },
        Verdict::UnknownKid { issuer }
            if !state.borrow().refetched && vm.request_refetch(issuer) =>
        {
            state.borrow_mut().refetched = true;
            Step::Wait { issuer }
        }
        refused => {
            log(
                LogLevel::Debug,
                &format!("attach: refused: {}", reply::outcome(&refused)),
            );
            let resource = resource_url(vm, &state.borrow().head);
            if let Some(r) = reply::refusal(&refused, &resource) {
                stream::send(&r);
            }
            Step::Replied
        }
    }
}

/// Writes the plan's headers; the first one the host refuses stops the
/// request (an unstamped or half-stamped request must not go upstream).
fn apply(plan: &stamp::Plan) -> Result<(), (&'static str, Status)> {
    for (name, value) in &plan.set {
        stream::set_request_header(name, value).map_err(|s| ("setting a request header", s))?;
    }
    for name in &plan.remove {
        stream::remove_request_header(name).map_err(|s| ("removing a request header", s))?;
    }
    Ok(())
}

pub fn resource_url(vm: &Vm, head: &RequestHead) -> String {
    reply::resource_url(
        &vm.config,
        head.scheme.as_deref(),
        head.authority.as_deref(),
    )
}
