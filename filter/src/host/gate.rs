//! The per-request filter: strip spoofed identity, serve metadata, verify
//! and stamp (see [`super::decide`]) — or park the request until its
//! issuer's keys are known — then feed the memory capture.

use super::abi::Status;
use super::clock::now_ms;
use super::decide::{self, Step, decide};
use super::log::log;
use super::metering::{self, BodyStep};
use super::request::{McpExchange, Metered, RequestState};
use super::stream;
use super::token_endpoint;
use super::vm::Vm;
use super::wake;
use crate::mcp;
use crate::memory::capture::Capture;
use crate::reply;
use crate::request_head::RequestHead;
use crate::token_exchange;
use crate::{RESOURCE_METADATA_PATH, TOKEN_PATH};
use attach_contract::headers::{SESSION_HEADER, USER_HEADER};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, LogLevel};
use std::cell::RefCell;
use std::rc::Rc;

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

    /// The capture's next body chunk; a chunk the host cannot hand over
    /// ends the capture (a gap would mirror an exchange that never was).
    fn feed(&self, buffer: BufferType, size: usize, feed: impl FnOnce(&mut Capture, &[u8])) {
        let mut st = self.state.borrow_mut();
        let Some(capture) = &mut st.capture else {
            return;
        };
        match stream::body_chunk(buffer, size) {
            Ok(chunk) => feed(capture, &chunk),
            Err(status) => {
                not_mirrored("a body chunk", status);
                st.capture = None;
            }
        }
    }

    /// The tool call capture's next answer chunk; like [`Gate::feed`].
    fn feed_tool_capture(&self, size: usize) {
        let mut st = self.state.borrow_mut();
        match stream::body_chunk(BufferType::HttpResponseBody, size) {
            Ok(chunk) => {
                if let Some(capture) = &mut st.tool_capture {
                    capture.response_chunk(&chunk);
                }
            }
            Err(status) => {
                not_mirrored("a body chunk", status);
                st.tool_capture = None;
            }
        }
    }

    /// The reply's status and framing for the capture; a head the host
    /// cannot hand over ends the capture, like an unreadable body chunk.
    fn capture_response_head(&self) {
        let mut st = self.state.borrow_mut();
        let metered = st.metered.as_ref().is_some_and(|m| m.admitted.is_some());
        if st.capture.is_none() && st.tool_capture.is_none() && !metered {
            return;
        }
        let headers = match stream::response_headers() {
            Ok(headers) => headers,
            Err(status) => {
                not_mirrored("response headers", status);
                st.capture = None;
                st.tool_capture = None;
                metering::response_head(&mut st, None, None, Some("unreadable"));
                return;
            }
        };
        let (mut status, mut content_type, mut encoding) = (None, None, None);
        for (name, value) in headers {
            let text = || String::from_utf8(value).ok();
            match name.as_str() {
                ":status" => status = text().and_then(|s| s.parse().ok()),
                "content-type" => content_type = text(),
                "content-encoding" => encoding = text(),
                _ => {}
            }
        }
        let (content_type, encoding) = (content_type.as_deref(), encoding.as_deref());
        if let Some(capture) = &mut st.capture {
            capture.response_head(status, content_type, encoding);
        }
        if let Some(capture) = &mut st.tool_capture {
            capture.response_head(status, content_type, encoding);
        }
        metering::response_head(&mut st, status, content_type, encoding);
    }

    /// A budgeted reply's chunk, read once for the memory capture and the
    /// meter (which may rewrite it). One the host cannot hand over ends
    /// both: the call is then charged its estimate.
    fn meter_response(&self, vm: &Vm, size: usize, end_of_stream: bool) {
        let mut st = self.state.borrow_mut();
        match stream::body_chunk(BufferType::HttpResponseBody, size) {
            Ok(chunk) => {
                if let Some(capture) = &mut st.capture {
                    capture.response_chunk(&chunk);
                }
                metering::response_chunk(vm, &mut st, &chunk, end_of_stream, now_ms());
            }
            Err(status) => {
                not_mirrored("a body chunk", status);
                st.capture = None;
                metering::unreadable(&mut st);
            }
        }
    }
}

impl Gate {
    /// Keeps the body of a request that is not let through (yet): it
    /// waits for its issuer's keys, or was refused. The host hands each
    /// callback all of the body buffered so far; with the memory mirror on
    /// it is kept for the capture, which starts only when the request is
    /// let through.
    fn hold_body(&self, size: usize, end_of_stream: bool) -> Action {
        if self.vm.as_ref().is_some_and(|vm| vm.mirror.is_some()) {
            let body = stream::body_chunk(BufferType::HttpRequestBody, size).ok();
            self.state.borrow_mut().held_body = body.map(|b| (b, end_of_stream));
        }
        Action::Pause
    }

    /// Verifies and decides on the request in this request's state: let
    /// through, answered, or parked until its issuer's keys are known.
    fn decide_now(&self, vm: &Rc<Vm>) -> Action {
        match decide(vm, &self.state, false) {
            Step::Continue => {
                self.state.borrow_mut().let_through = true;
                Action::Continue
            }
            Step::Replied => Action::Pause,
            Step::Wait { issuer } => {
                vm.wait(self.context_id, issuer, self.state.clone());
                Action::Pause
            }
        }
    }

    /// Answers the token request now whole in this request's state, or
    /// parks it until its tokens' keys are known.
    fn answer_token_request(&self, vm: &Rc<Vm>) -> Action {
        if let Step::Wait { issuer } = token_endpoint::answer(vm, &self.state, false) {
            vm.wait(self.context_id, issuer, self.state.clone());
        }
        Action::Pause
    }
}

impl Gate {
    /// A request to a budgeted model route: decided once its body is whole
    /// (held until then, never passed on), so the estimate it reserves
    /// reads it.
    fn metered_request(&self, vm: &Rc<Vm>, head: RequestHead, route: usize, end: bool) -> Action {
        let mut st = self.state.borrow_mut();
        st.head = head;
        st.metered = Some(Metered {
            route,
            body: end.then(Vec::new),
            asked_for_usage: false,
            admitted: None,
        });
        drop(st);
        if end {
            return self.decide_now(vm);
        }
        Action::Pause
    }

    /// The budgeted request's body so far: once whole, decided on; the
    /// memory capture, if any, then gets it as the client sent it.
    fn metered_body(&self, vm: &Rc<Vm>, size: usize, end_of_stream: bool) -> Action {
        let mut st = self.state.borrow_mut();
        match metering::body(vm, &mut st, size, end_of_stream) {
            BodyStep::Wait | BodyStep::Answered => return Action::Pause,
            BodyStep::Whole => {}
        }
        if vm.mirror.is_some() {
            let body = st.metered.as_ref().and_then(|m| m.body.clone());
            st.held_body = body.map(|b| (b, true));
        }
        drop(st);
        let action = self.decide_now(vm);
        if self.state.borrow().let_through {
            wake::let_through(&self.state);
        }
        action
    }

    /// A request to an MCP route: decided once its JSON-RPC message is
    /// whole (the body is held until then, never passed on), or at once
    /// when it has none.
    fn mcp_request(&self, vm: &Rc<Vm>, head: RequestHead, server: usize, end: bool) -> Action {
        let posts = head.method == "POST";
        let mut st = self.state.borrow_mut();
        st.head = head;
        st.mcp = Some(McpExchange {
            server,
            request: None,
            call: None,
            list_for: None,
            list_is_stream: false,
            list_unreadable: false,
        });
        drop(st);
        match (posts, end) {
            (true, false) => Action::Pause,
            (true, true) => self.mcp_decide(vm, Some(&[])),
            (false, _) => self.mcp_decide(vm, None),
        }
    }

    /// The MCP request's body so far: whole, it is decided on; too large,
    /// refused (the host hands each callback all of the body buffered).
    fn mcp_body(&self, vm: &Rc<Vm>, size: usize, end_of_stream: bool) -> Action {
        let cap = vm.config.mcp.as_ref().map_or(0, |m| m.max_body_bytes);
        if size > cap {
            if let Some(m) = &self.state.borrow().mcp {
                vm.mcp_counters.denied(m.server);
            }
            stream::send(&mcp::reply::too_large());
            return Action::Pause;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        match stream::body_chunk(BufferType::HttpRequestBody, size) {
            Ok(body) => self.mcp_decide(vm, Some(&body)),
            Err(status) => {
                stream::fail_closed("reading an MCP request", status);
                Action::Pause
            }
        }
    }

    /// Reads the MCP request (refusing what is no message, or whose headers
    /// disagree with it), then verifies and decides as for any request.
    fn mcp_decide(&self, vm: &Rc<Vm>, body: Option<&[u8]>) -> Action {
        let headers = self.state.borrow().head.mcp.clone();
        let request = match mcp::Request::read(headers, body) {
            Ok(request) => request,
            Err(reply) => {
                if let Some(m) = &self.state.borrow().mcp {
                    vm.mcp_counters.denied(m.server);
                }
                stream::send(&reply);
                return Action::Pause;
            }
        };
        if let Some(m) = self.state.borrow_mut().mcp.as_mut() {
            m.request = Some(request);
        }
        self.decide_now(vm)
    }
}

impl Gate {
    /// A `tools/list` answer to be cut changes length: its length header
    /// goes, and so does the cut when the header cannot (the answer is then
    /// refused, never shown whole).
    fn prepare_tools_list(&self) {
        let mut st = self.state.borrow_mut();
        let Some(m) = st.mcp.as_mut().filter(|m| m.list_for.is_some()) else {
            return;
        };
        let event_stream = match stream::response_headers() {
            Ok(headers) => headers.iter().any(|(name, value)| {
                name == "content-type" && value.starts_with(b"text/event-stream")
            }),
            Err(_) => false,
        };
        m.list_is_stream = event_stream;
        if let Err(status) = stream::remove_response_header("content-length") {
            log(
                LogLevel::Warn,
                &format!("attach: cannot resize a tools/list answer ({status:?})"),
            );
            m.list_unreadable = true;
        }
    }

    /// Holds a `tools/list` answer until it is whole, then replaces it with
    /// the tools the caller may call; an answer that cannot be read or cut
    /// is replaced with a JSON-RPC error.
    fn cut_tools_list(&self, vm: &Vm, size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream && size <= mcp::tools_list::MAX_ANSWER_BYTES {
            return Action::Pause;
        }
        let st = self.state.borrow();
        let Some(m) = &st.mcp else {
            return Action::Continue;
        };
        let server = vm.config.mcp.as_ref().and_then(|c| c.servers.get(m.server));
        let body = match (size <= mcp::tools_list::MAX_ANSWER_BYTES, m.list_unreadable) {
            (true, false) => stream::body_chunk(BufferType::HttpResponseBody, size).ok(),
            _ => None,
        };
        let cut = match (body, server, &m.list_for) {
            (Some(body), Some(server), Some(identity)) => {
                mcp::tools_list::filter(&body, m.list_is_stream, &|tool| {
                    mcp::may_call(server, identity, tool)
                })
            }
            _ => None,
        };
        let id = m
            .request
            .as_ref()
            .and_then(|r| r.message.as_ref())
            .and_then(|m| m.id.clone());
        let answer = cut
            .unwrap_or_else(|| mcp::reply::unreadable_tools_list(id.as_deref(), m.list_is_stream));
        if let Err(status) = stream::replace_response_body(size, &answer) {
            log(
                LogLevel::Warn,
                &format!("attach: cannot cut a tools/list answer ({status:?}): resetting it"),
            );
            stream::reset_response();
        }
        Action::Continue
    }
}

fn not_mirrored(what: &str, status: Status) {
    log(
        LogLevel::Debug,
        &format!("attach: {what} not readable for memory ({status:?}): exchange not mirrored"),
    );
}

impl Context for Gate {}

impl HttpContext for Gate {
    fn on_http_request_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        let head = match stream::request_headers() {
            Ok(pairs) => RequestHead::from_pairs(pairs),
            Err(status) => {
                stream::fail_closed("reading the request headers", status);
                return Action::Pause;
            }
        };
        // Only the gateway may speak for the caller: drop every inbound
        // X-Attach-* header first, whatever happens next.
        for name in &head.reserved {
            if let Err(status) = stream::remove_request_header(name) {
                stream::fail_closed("removing an inbound x-attach header", status);
                return Action::Pause;
            }
        }
        let Some(vm) = &self.vm else {
            // The plugin failed to configure: fail closed.
            stream::send(&reply::unavailable());
            return Action::Pause;
        };
        let reads = matches!(head.method.as_str(), "GET" | "HEAD");
        if let (true, Some(signing)) = (reads, &vm.config.signing) {
            if let Some(document) =
                reply::issuer_document(signing, head.bare_path(), now_ms() / 1_000)
            {
                stream::send(&document);
                return Action::Pause;
            }
        }
        let exchanges = vm.config.signing.as_ref().is_some_and(|s| s.token_endpoint);
        if exchanges && head.bare_path() == TOKEN_PATH {
            if head.method != "POST" {
                stream::send(&token_exchange::post_only());
                return Action::Pause;
            }
            let mut st = self.state.borrow_mut();
            st.head = head;
            st.token_request = Some(Vec::new());
            drop(st);
            if end_of_stream {
                return self.answer_token_request(vm);
            }
            return Action::Pause;
        }
        if let Some(mcp) = &vm.config.mcp {
            if let (true, Some(server)) = (reads, mcp.metadata(head.bare_path())) {
                stream::send(&mcp::reply::metadata(&vm.config, server));
                return Action::Pause;
            }
            let server = mcp.route_index(&head.path);
            if let (Some(server), false) = (server, head.is_preflight()) {
                return self.mcp_request(vm, head, server, end_of_stream);
            }
        }
        if head.bare_path() == RESOURCE_METADATA_PATH && reads {
            stream::send(&reply::resource_metadata(
                &vm.config,
                &decide::resource_url(vm, &head),
            ));
            return Action::Pause;
        }
        if vm.config.is_public(&head.path) || head.is_preflight() {
            self.state.borrow_mut().let_through = true;
            return Action::Continue;
        }
        let budgeted = vm.config.budget.as_ref().and_then(|b| b.route(&head.path));
        if let Some((route, _)) = budgeted {
            return self.metered_request(vm, head, route, end_of_stream);
        }
        self.state.borrow_mut().head = head;
        self.decide_now(vm)
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        let holds = self
            .state
            .borrow()
            .metered
            .as_ref()
            .is_some_and(|m| m.body.is_none());
        if let (Some(vm), true) = (self.vm.clone(), holds) {
            return self.metered_body(&vm, size, end_of_stream);
        }
        let for_mcp = self
            .state
            .borrow()
            .mcp
            .as_ref()
            .is_some_and(|m| m.request.is_none());
        if let (Some(vm), true) = (self.vm.clone(), for_mcp) {
            return self.mcp_body(&vm, size, end_of_stream);
        }
        let for_token_endpoint = self.state.borrow().token_request.is_some();
        if let (Some(vm), true) = (self.vm.clone(), for_token_endpoint) {
            if size > token_exchange::max_body_bytes(&vm.config) {
                stream::send(&token_exchange::too_large());
                return Action::Pause;
            }
            if !end_of_stream {
                return Action::Pause;
            }
            match stream::body_chunk(BufferType::HttpRequestBody, size) {
                Ok(body) => self.state.borrow_mut().token_request = Some(body),
                Err(status) => {
                    stream::fail_closed("reading a token request", status);
                    return Action::Pause;
                }
            }
            return self.answer_token_request(&vm);
        }
        if !self.state.borrow().let_through {
            return self.hold_body(size, end_of_stream);
        }
        self.feed(BufferType::HttpRequestBody, size, |capture, chunk| {
            capture.request_chunk(chunk, end_of_stream);
        });
        Action::Continue
    }

    fn on_http_response_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if let Some(vm) = self.vm.clone() {
            let cuts = self
                .state
                .borrow()
                .mcp
                .as_ref()
                .is_some_and(|m| m.list_for.is_some());
            if cuts {
                return self.cut_tools_list(&vm, size, end_of_stream);
            }
        }
        let metered = self
            .state
            .borrow()
            .metered
            .as_ref()
            .is_some_and(|m| m.admitted.is_some());
        if let (Some(vm), true) = (self.vm.clone(), metered) {
            self.meter_response(&vm, size, end_of_stream);
            return Action::Continue;
        }
        let tool_call = self.state.borrow().tool_capture.is_some();
        if tool_call {
            self.feed_tool_capture(size);
        }
        self.feed(BufferType::HttpResponseBody, size, Capture::response_chunk);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        self.capture_response_head();
        self.prepare_tools_list();
        let stamp = self
            .vm
            .as_ref()
            .is_some_and(|vm| vm.config.response_headers);
        if let (true, Some((user, session))) = (stamp, &self.state.borrow().stamped) {
            for (name, value) in [(USER_HEADER, user), (SESSION_HEADER, session)] {
                if let Err(status) = stream::set_response_header(name, value) {
                    log(
                        LogLevel::Debug,
                        &format!("attach: cannot set {name} on the response: {status:?}"),
                    );
                }
            }
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        let Some(vm) = &self.vm else { return };
        vm.forget(self.context_id);
        metering::finish(vm, &mut self.state.borrow_mut(), now_ms());
        let capture = self.state.borrow_mut().capture.take();
        if let (Some(capture), Some(mirror)) = (capture, &vm.mirror) {
            mirror.enqueue(&vm.config, &capture.finish(now_ms()));
        }
        let tool_capture = self.state.borrow_mut().tool_capture.take();
        if let (Some(capture), Some(mirror)) = (tool_capture, &vm.mirror) {
            mirror.enqueue(&vm.config, &capture.finish(now_ms()));
        }
    }
}
