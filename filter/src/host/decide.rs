//! One request's decision: verify its token and act on the verdict — stamp
//! and let it through, refuse it, or ask to wait for its issuer's keys. Runs
//! in the request's own callback, and again from the root context when a
//! wait ends.

use super::abi::Status;
use super::clock::now_ms;
use super::log::log;
use super::metering;
use super::request::RequestState;
use super::stream;
use super::vm::Vm;
use crate::mcp::config::ToolsList;
use crate::mcp::{self, Admission};
use crate::memory::capture::Capture;
use crate::memory::tool_capture::{self, ToolCapture};
use crate::reply::{self, Challenge};
use crate::request_head::RequestHead;
use crate::stamp;
use crate::verify::{self, Binding, Verdict};
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
    let at_ms = now_ms();
    let now = i64::try_from(at_ms / 1_000).unwrap_or(i64::MAX);
    let server = state.borrow().mcp.as_ref().map(|m| m.server);
    let server = server.and_then(|i| Some((i, vm.config.mcp.as_ref()?.servers.get(i)?)));
    let verdict = {
        let st = state.borrow();
        verify::verify(
            &vm.config,
            st.head.authorization.as_deref(),
            server.map(|(i, s)| Binding {
                server: i,
                audience: &s.canonical_uri,
            }),
            now,
            &*vm.keys.borrow(),
            &mut vm.cache.borrow_mut(),
            st.refetched,
        )
    };
    match verdict {
        Verdict::Allow(identity) => {
            if let Some((i, server)) = server {
                let admission = match state.borrow().mcp.as_ref().and_then(|m| m.request.as_ref()) {
                    Some(request) => mcp::admit(server, &identity, request),
                    None => Admission::Refuse(mcp::reply::not_a_message()),
                };
                match admission {
                    Admission::Forward(call) => {
                        vm.mcp_counters.allowed(i);
                        if let Some(m) = state.borrow_mut().mcp.as_mut() {
                            m.call = call;
                            let lists = m.request.as_ref().is_some_and(mcp::Request::lists_tools);
                            if lists && server.tools_list == ToolsList::Callable {
                                m.list_for = Some(identity.clone());
                            }
                        }
                    }
                    Admission::Refuse(reply) => {
                        vm.mcp_counters.denied(i);
                        stream::send(&reply);
                        return Step::Replied;
                    }
                }
            }
            let mut st = state.borrow_mut();
            let plan = stamp::plan(
                &identity,
                &st.head,
                &vm.config,
                (vm.mirror.is_some(), &mut vm.identity_tokens.borrow_mut()),
                at_ms,
            );
            if let Err((what, status)) = apply(&plan) {
                stream::fail_closed(what, status);
                return Step::Replied;
            }
            if !metering::admit(vm, &mut st, &identity, at_ms) {
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
            let call = st.mcp.as_mut().and_then(|m| m.call.take());
            if let (Some(call), Some(memory), Some(mirror), Some((_, server))) =
                (call, &vm.config.memory, &vm.mirror, server)
            {
                let by = tool_capture::Caller {
                    user: &identity.user,
                    session: &plan.session,
                    actor: &identity.actors.header_value(),
                    request_id: &stamp::request_id(&st.head, &identity.user, at_ms),
                    route: &attach_contract::mcp::route(&server.name),
                };
                let capture = ToolCapture::new(call, &by, at_ms, memory.max_bytes, &mirror.budget);
                st.tool_capture = Some(capture);
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
            let sent = match server {
                Some((i, server)) => {
                    vm.mcp_counters.denied(i);
                    let tool =
                        state.borrow().mcp.as_ref().and_then(|m| {
                            m.request.as_ref().and_then(|r| r.tool().map(str::to_owned))
                        });
                    let scope = mcp::policy::needed_scopes(server, tool.as_deref());
                    reply::refusal(&refused, &mcp::challenge(server, &scope))
                }
                None => {
                    let url = reply::metadata_url(&resource_url(vm, &state.borrow().head));
                    let to = Challenge {
                        metadata_url: &url,
                        scope: &[],
                    };
                    reply::refusal(&refused, &to)
                }
            };
            if let Some(r) = sent {
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
