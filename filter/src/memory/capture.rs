//! One model exchange as the filter sees it pass: the request body (kept
//! until it can be parsed), the reply copied chunk by chunk, and the two
//! events at the end. The host feeds it; nothing here holds traffic back.
//! Every exchange is recorded: one whose body cannot be read (or held)
//! gets a placeholder prompt, so no request shape evades the mirror.

use super::event::{Event, Exchange, Unreadable};
use super::prompt::{Prompt, PromptError, parse_prompt};
use super::reply_capture::{Reply, ReplyCapture};
use super::routes::ModelRoute;

use std::cell::Cell;
use std::rc::Rc;

/// Request bodies larger than this get a placeholder prompt (the prompt
/// cannot be read without the whole JSON document).
pub const MAX_REQUEST_BYTES: usize = 8 * 1024 * 1024;

/// Request bytes all captures of one VM may hold at once: many large
/// bodies in flight must not exhaust the VM's memory (which would take
/// every request down with it); beyond it new bodies get a placeholder.
pub const VM_BUDGET_BYTES: usize = 64 * 1024 * 1024;

/// The request bytes held by one VM's captures.
#[derive(Debug)]
pub struct Budget {
    used: Cell<usize>,
    limit: usize,
}

impl Budget {
    pub fn new(limit: usize) -> Rc<Self> {
        Rc::new(Budget {
            used: Cell::new(0),
            limit,
        })
    }

    fn take(&self, n: usize) -> bool {
        let used = self.used.get().saturating_add(n);
        if used > self.limit {
            return false;
        }
        self.used.set(used);
        true
    }

    fn give(&self, n: usize) {
        self.used.set(self.used.get().saturating_sub(n));
    }

    pub fn used(&self) -> usize {
        self.used.get()
    }
}

#[derive(Debug)]
pub struct Capture {
    route: ModelRoute,
    user: String,
    session: String,
    request_id: String,
    start_ms: u64,
    cap: usize,
    request: Vec<u8>,
    /// Every body byte that passed, held or not.
    request_bytes: u64,
    /// What `request` holds of the VM's budget.
    budget: Rc<Budget>,
    reserved: usize,
    request_too_large: bool,
    /// Parsed once, when the request body is complete.
    prompt: Option<Result<Prompt, PromptError>>,
    status: Option<u16>,
    reply: Option<ReplyCapture>,
    /// The reply is compressed: its text cannot be read.
    reply_unreadable: bool,
    out_of_budget: bool,
}

impl Capture {
    pub fn new(
        route: ModelRoute,
        user: &str,
        session: &str,
        request_id: &str,
        start_ms: u64,
        cap: usize,
        budget: Rc<Budget>,
    ) -> Self {
        Capture {
            route,
            user: user.to_owned(),
            session: session.to_owned(),
            request_id: request_id.to_owned(),
            start_ms,
            cap,
            request: Vec::new(),
            request_bytes: 0,
            budget,
            reserved: 0,
            request_too_large: false,
            out_of_budget: false,
            prompt: None,
            status: None,
            reply: None,
            reply_unreadable: false,
        }
    }

    pub fn request_chunk(&mut self, chunk: &[u8], end_of_stream: bool) {
        self.request_bytes = self
            .request_bytes
            .saturating_add(u64::try_from(chunk.len()).unwrap_or(u64::MAX));
        if self.request_too_large || self.out_of_budget || self.prompt.is_some() {
            return;
        }
        if self.request.len().saturating_add(chunk.len()) > MAX_REQUEST_BYTES {
            self.request_too_large = true;
            self.free_request();
            return;
        }
        if !self.budget.take(chunk.len()) {
            self.out_of_budget = true;
            self.free_request();
            return;
        }
        self.reserved += chunk.len();
        self.request.extend_from_slice(chunk);
        if end_of_stream {
            self.prompt = Some(parse_prompt(&self.route, &self.request, self.cap));
            self.free_request();
        }
    }

    fn free_request(&mut self) {
        self.request = Vec::new();
        self.budget.give(self.reserved);
        self.reserved = 0;
    }

    /// The prompt, parsed from what arrived if the body never said it ended.
    fn take_prompt(&mut self) -> Result<Prompt, PromptError> {
        match self.prompt.take() {
            Some(p) => p,
            None => parse_prompt(&self.route, &self.request, self.cap),
        }
    }

    /// The reply's head. `stream` framing falls back on the request's own
    /// `stream` flag when the engine sends no content type.
    pub fn response_head(
        &mut self,
        status: Option<u16>,
        content_type: Option<&str>,
        content_encoding: Option<&str>,
    ) {
        self.status = status;
        self.reply_unreadable =
            content_encoding.is_some_and(|e| !e.eq_ignore_ascii_case("identity"));
        let stream = match &self.prompt {
            Some(Ok(p)) => p.stream,
            _ => matches!(self.route.format, super::routes::WireFormat::Ollama),
        };
        self.reply = Some(ReplyCapture::new(
            self.route.format,
            stream,
            content_type,
            self.cap,
        ));
    }

    pub fn response_chunk(&mut self, chunk: &[u8]) {
        if self.reply_unreadable {
            return;
        }
        if let Some(reply) = &mut self.reply {
            reply.feed(chunk);
        }
    }

    /// The prompt (or a placeholder for it) and reply events, once the
    /// exchange is over.
    pub fn finish(mut self, end_ms: u64) -> [Event; 2] {
        let request_bytes = self.request_bytes;
        let unreadable = |reason| Unreadable {
            reason,
            request_bytes,
        };
        let prompt = if self.request_too_large {
            Err(unreadable("too large"))
        } else if self.out_of_budget {
            Err(unreadable("over the filter's memory budget"))
        } else {
            self.take_prompt().map_err(|e| unreadable(e.reason()))
        };
        let mut reply = match self.reply.take() {
            Some(r) if !self.reply_unreadable => r.finish(),
            _ => Reply::default(),
        };
        if self.reply_unreadable {
            reply.truncated = true;
        }
        let exchange = Exchange {
            user: &self.user,
            session: &self.session,
            request_id: &self.request_id,
            route: &self.route.path,
            task_id: None,
            status: self.status,
            start_ms: self.start_ms,
            end_ms,
        };
        exchange.events(prompt, reply)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.free_request();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::event::Kind;
    use crate::memory::routes::WireFormat;

    fn capture(path: &str, format: WireFormat) -> Capture {
        Capture::new(
            ModelRoute::new(path, format),
            "alice",
            "s1",
            "req-1",
            1_000,
            1_024,
            Budget::new(VM_BUDGET_BYTES),
        )
    }

    #[test]
    fn ollama_stream_becomes_two_events() {
        let mut c = capture("/api/chat", WireFormat::Ollama);
        let body = br#"{"model":"m","messages":[{"role":"user","content":"sort a list"}]}"#;
        let (a, b) = body.split_at(10);
        c.request_chunk(a, false);
        c.request_chunk(b, true);
        c.response_head(Some(200), None, None);
        c.response_chunk(b"{\"message\":{\"content\":\"use \"},\"done\":false}\n{\"mess");
        c.response_chunk(b"age\":{\"content\":\"sorted()\"},\"done\":true,\"eval_count\":4}\n");
        let [prompt, reply] = c.finish(1_250);
        assert_eq!(
            (prompt.kind, prompt.content.as_str()),
            (Kind::Prompt, "sort a list")
        );
        assert_eq!(
            (reply.kind, reply.content.as_str()),
            (Kind::Reply, "use sorted()")
        );
        assert_eq!(
            (reply.user.as_str(), reply.session.as_str()),
            ("alice", "s1")
        );
        assert_eq!(
            (reply.status, reply.latency_ms, reply.tokens_out),
            (Some(200), 250, Some(4))
        );
        assert_eq!(prompt.model.as_deref(), Some("m"));
    }

    #[test]
    fn compressed_replies_keep_the_prompt_and_say_truncated() {
        let mut c = capture("/v1/chat/completions", WireFormat::OpenAi);
        c.request_chunk(br#"{"messages":[{"role":"user","content":"hi"}]}"#, true);
        c.response_head(Some(200), Some("application/json"), Some("gzip"));
        c.response_chunk(b"\x1f\x8b\x08\x00");
        let [prompt, reply] = c.finish(1_001);
        assert_eq!(prompt.content, "hi");
        assert!(reply.content.is_empty() && reply.truncated);
    }

    /// Issue: a body the engine reads but this parser does not (a
    /// duplicate key, a lone surrogate) was answered and never mirrored.
    #[test]
    fn unreadable_or_oversized_requests_get_a_placeholder_prompt() {
        let placeholder = |c: Capture| {
            let [prompt, reply] = c.finish(1_001);
            assert_eq!((prompt.kind, prompt.content.as_str()), (Kind::Prompt, ""));
            assert!(prompt.truncated);
            (
                prompt.unreadable.unwrap(),
                prompt.request_bytes.unwrap(),
                reply,
            )
        };
        let mut c = capture("/api/generate", WireFormat::Ollama);
        c.request_chunk(b"not json", true);
        assert_eq!(placeholder(c).0, "not JSON");

        let body = br#"{"model":"m","messages":[{"role":"user","content":"a"}],"messages":[]}"#;
        let mut c = capture("/api/chat", WireFormat::Ollama);
        c.request_chunk(&body[..9], false);
        c.request_chunk(&body[9..], true);
        c.response_head(Some(200), Some("application/json"), None);
        c.response_chunk(br#"{"message":{"content":"answered"},"done":true}"#);
        let (why, bytes, reply) = placeholder(c);
        assert_eq!((why.as_str(), bytes), ("duplicate key", body.len() as u64));
        assert_eq!(reply.content, "answered", "the reply is still recorded");

        let mut c = capture("/api/generate", WireFormat::Ollama);
        c.request_chunk(br#"{"prompt":"\ud800"}"#, true);
        assert_eq!(placeholder(c).0, "lone surrogate");

        let mut c = capture("/api/generate", WireFormat::Ollama);
        c.request_chunk(&vec![b' '; MAX_REQUEST_BYTES], false);
        c.request_chunk(b"{}", true);
        let (why, bytes, _) = placeholder(c);
        assert_eq!(
            (why.as_str(), bytes),
            ("too large", MAX_REQUEST_BYTES as u64 + 2)
        );
    }

    #[test]
    fn no_reply_at_all_still_records_the_prompt() {
        let mut c = capture("/api/generate", WireFormat::Ollama);
        c.request_chunk(br#"{"prompt":"why"}"#, false);
        let [prompt, reply] = c.finish(1_500);
        assert_eq!(prompt.content, "why");
        assert_eq!((reply.content.as_str(), reply.status), ("", None));
    }

    #[test]
    fn the_vm_budget_bounds_bodies_held_at_once() {
        let budget = Budget::new(100);
        let route = || ModelRoute::new("/api/generate", WireFormat::Ollama);
        let new = |b: &Rc<Budget>| Capture::new(route(), "u", "s", "r", 0, 64, b.clone());
        let mut a = new(&budget);
        a.request_chunk(&[b' '; 60], false);
        assert_eq!(budget.used(), 60);
        let mut b = new(&budget);
        b.request_chunk(&[b' '; 60], false);
        let [placeholder, _] = b.finish(1);
        assert_eq!(
            (placeholder.unreadable.as_deref(), placeholder.request_bytes),
            (Some("over the filter's memory budget"), Some(60))
        );
        assert_eq!(budget.used(), 60, "the refused body took nothing");
        a.request_chunk(br#"{"prompt":"x"}"#, true);
        assert_eq!(budget.used(), 0, "a parsed body gives its bytes back");
        let mut c = new(&budget);
        c.request_chunk(&[b' '; 80], false);
        drop(c);
        assert_eq!(
            budget.used(),
            0,
            "a capture dropped mid-body gives its bytes back"
        );
        assert_eq!(a.finish(2)[0].content, "x");
    }
}
