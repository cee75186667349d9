//! The per-request filter: strip spoofed identity, serve metadata, verify,
//! stamp — or pause the request until its issuer's keys are known.

use super::root::{Vm, Waiter};
use super::{log, now_ms, stream};
use crate::RESOURCE_METADATA_PATH;
use crate::assertion::{self, ASSERTION_HEADER};
use crate::identity::{self, Identity, SESSION_HEADER, USER_HEADER};
use crate::memory::capture::Capture;
use crate::memory::routes::match_route;
use crate::reply;
use crate::request_head::RequestHead;
use crate::verify::{self, Verdict};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, LogLevel};
use std::cell::RefCell;
use std::rc::Rc;

/// Assertions are short-lived: they only need to survive the hop behind the gateway.
const ASSERTION_TTL_SECS: u64 = 60;

/// What one request remembers between its callbacks (and across a wait).
#[derive(Default)]
pub struct RequestState {
    head: RequestHead,
    /// The identity stamped upstream, echoed on the response.
    stamped: Option<(String, String)>,
    /// An unknown-kid refetch was already granted for this request.
    refetched: bool,
    /// A model exchange being mirrored to memory.
    capture: Option<Capture>,
}

pub struct Gate {
    vm: Option<Rc<Vm>>,
    context_id: u32,
    state: Rc<RefCell<RequestState>>,
}

impl Gate {
    pub fn new(vm: Option<Rc<Vm>>, context_id: u32) -> Self {
        Gate {
            vm,
            context_id,
            state: Rc::default(),
        }
    }
}

impl Context for Gate {}

impl HttpContext for Gate {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let head = RequestHead::from_pairs(stream::request_headers());
        // Only the gateway may speak for the caller: drop every inbound
        // X-Attach-* header first, whatever happens next.
        for name in &head.reserved {
            stream::set_request_header(name, None);
        }
        let Some(vm) = &self.vm else {
            // The plugin failed to configure: fail closed.
            stream::send(&reply::unavailable());
            return Action::Pause;
        };
        if head.bare_path() == RESOURCE_METADATA_PATH
            && matches!(head.method.as_str(), "GET" | "HEAD")
        {
            stream::send(&reply::resource_metadata(
                &vm.config,
                &resource_url(vm, &head),
            ));
            return Action::Pause;
        }
        if vm.config.is_public(&head.path) || head.is_preflight() {
            return Action::Continue;
        }
        self.state.borrow_mut().head = head;
        match decide(vm, &self.state, false) {
            Step::Continue => Action::Continue,
            Step::Replied => Action::Pause,
            Step::Wait { issuer } => {
                vm.wait(Waiter::new(
                    self.context_id,
                    issuer,
                    vm.completed(issuer),
                    now_ms().saturating_add(vm.config.jwks.wait_ms),
                    self.state.clone(),
                ));
                Action::Pause
            }
        }
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if let Some(capture) = &mut self.state.borrow_mut().capture {
            capture.request_chunk(
                &stream::body_chunk(BufferType::HttpRequestBody, size),
                end_of_stream,
            );
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, size: usize, _: bool) -> Action {
        if let Some(capture) = &mut self.state.borrow_mut().capture {
            capture.response_chunk(&stream::body_chunk(BufferType::HttpResponseBody, size));
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        if let Some(capture) = &mut self.state.borrow_mut().capture {
            let (mut status, mut content_type, mut encoding) = (None, None, None);
            for (name, value) in stream::response_headers() {
                let text = || String::from_utf8(value).ok();
                match name.as_str() {
                    ":status" => status = text().and_then(|s| s.parse().ok()),
                    "content-type" => content_type = text(),
                    "content-encoding" => encoding = text(),
                    _ => {}
                }
            }
            capture.response_head(status, content_type.as_deref(), encoding.as_deref());
        }
        let stamp = self
            .vm
            .as_ref()
            .is_some_and(|vm| vm.config.response_headers);
        if let (true, Some((user, session))) = (stamp, &self.state.borrow().stamped) {
            stream::set_response_header(USER_HEADER, user);
            stream::set_response_header(SESSION_HEADER, session);
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        let Some(vm) = &self.vm else { return };
        vm.forget(self.context_id);
        let capture = self.state.borrow_mut().capture.take();
        if let (Some(capture), Some(mirror)) = (capture, &vm.mirror) {
            mirror.enqueue(&vm.config, &capture.finish(now_ms()));
        }
    }
}

fn resource_url(vm: &Vm, head: &RequestHead) -> String {
    reply::resource_url(
        &vm.config,
        head.scheme.as_deref(),
        head.authority.as_deref(),
    )
}

pub enum Step {
    Continue,
    Replied,
    Wait { issuer: usize },
}

/// Verifies the current stream's token and acts on the verdict. Runs in the
/// request's callback, and again from the root context when a wait ends
/// (`waited`: a second wait is then answered with a 503).
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
            stamp(vm, state, &identity);
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
            log(LogLevel::Debug, &format!("attach: refused: {refused:?}"));
            let resource = resource_url(vm, &state.borrow().head);
            if let Some(r) = reply::refusal(&refused, &resource) {
                stream::send(&r);
            }
            Step::Replied
        }
    }
}

fn stamp(vm: &Vm, state: &RefCell<RequestState>, identity: &Identity) {
    let mut st = state.borrow_mut();
    let now_secs = now_ms() / 1_000;
    let continued = vm.config.assertion_key.as_deref().and_then(|key| {
        assertion::continued_session(
            key,
            st.head.assertion.as_deref(),
            st.head.session.as_deref(),
            &identity.user,
            now_secs,
        )
    });
    let session = match continued {
        Some(s) => s.to_string(),
        None => identity::session_id(&identity.user, &st.head.user_agent),
    };
    stream::set_request_header(USER_HEADER, Some(&identity.user));
    stream::set_request_header(SESSION_HEADER, Some(&session));
    let audience = vm.config.assertion_audience(&st.head.path);
    if let (Some(key), Some(audience)) = (&vm.config.assertion_key, audience) {
        let exp = now_secs + ASSERTION_TTL_SECS;
        let value = assertion::sign(key, audience, exp, &identity.user, &session);
        stream::set_request_header(ASSERTION_HEADER, Some(&value));
    }
    if !vm.config.forward_authorization {
        stream::set_request_header("authorization", None);
    }
    if let (Some(memory), Some(mirror)) = (&vm.config.memory, &vm.mirror) {
        if let Some(route) = match_route(&memory.routes, &st.head.path) {
            let request_id = st
                .head
                .request_id
                .clone()
                .unwrap_or_else(|| format!("{}-{}", now_ms(), identity.user));
            st.capture = Some(Capture::new(
                route.clone(),
                &identity.user,
                &session,
                &request_id,
                now_ms(),
                memory.max_bytes,
                mirror.budget.clone(),
            ));
            // The mirror reads replies as text: ask the engine for no compression.
            if st.head.accepts_encoding {
                stream::set_request_header("accept-encoding", None);
            }
        }
    }
    st.stamped = Some((identity.user.clone(), session));
}
