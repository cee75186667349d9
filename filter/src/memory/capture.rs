//! One model exchange as the filter sees it pass: the request body (kept
//! until it can be parsed), the reply copied chunk by chunk, and the two
//! events at the end. The host feeds it; nothing here holds traffic back.
//! Every exchange is recorded: one whose body cannot be read (or held)
//! gets a placeholder prompt, so no request shape evades the mirror.

use super::budget::{Budget, Lease};
use super::event::{Exchange, Unreadable};
use super::prompt::{Prompt, PromptError, parse_prompt};
use super::reply_capture::{Reply, ReplyCapture};
use super::routes::ModelRoute;
use attach_contract::delegation::ActorChain;
use attach_contract::event::Event;

use std::rc::Rc;

/// Request bodies larger than this get a placeholder prompt (the prompt
/// cannot be read without the whole JSON document).
pub const MAX_REQUEST_BYTES: usize = 8 * 1024 * 1024;

/// Request bytes all captures of one VM may hold at once: many large
/// bodies in flight must not exhaust the VM's memory (which would take
/// every request down with it); beyond it new bodies get a placeholder.
/// Replies have a pool of their own (`memory.reply_budget_bytes`).
pub const VM_BUDGET_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug)]
pub struct Capture {
    route: ModelRoute,
    user: String,
    session: String,
    /// Who acted for the user, in `X-Attach-Actor`'s form (empty: nobody).
    actor: String,
    request_id: String,
    start_ms: u64,
    cap: usize,
    request: Vec<u8>,
    /// Every body byte that passed, held or not.
    request_bytes: u64,
    /// The VM's budget, which the reply draws from too.
    budget: Rc<Budget>,
    /// What `request` holds of it.
    held: Lease,
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
            actor: String::new(),
            request_id: request_id.to_owned(),
            start_ms,
            cap,
            request: Vec::new(),
            request_bytes: 0,
            held: budget.for_request(),
            budget,
            request_too_large: false,
            out_of_budget: false,
            prompt: None,
            status: None,
            reply: None,
            reply_unreadable: false,
        }
    }

    /// The capture of an exchange made by `actors` for the user: its events
    /// name them.
    pub fn acted_by(mut self, actors: &ActorChain) -> Self {
        self.actor = actors.header_value();
        self
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
        if !self.held.grow(chunk.len()) {
            self.out_of_budget = true;
            self.free_request();
            return;
        }
        self.request.extend_from_slice(chunk);
        if end_of_stream {
            self.prompt = Some(parse_prompt(&self.route, &self.request, self.cap));
            self.free_request();
        }
    }

    fn free_request(&mut self) {
        self.request = Vec::new();
        self.held.release();
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
            self.budget.for_reply(),
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
            actor: &self.actor,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::routes::WireFormat;
    use attach_contract::event::Kind;

    fn capture(path: &str, format: WireFormat) -> Capture {
        Capture::new(
            ModelRoute::new(path, format),
            "alice",
            "s1",
            "req-1",
            1_000,
            1_024,
            Budget::new(VM_BUDGET_BYTES, VM_BUDGET_BYTES),
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
        let budget = Budget::new(100, 0);
        let route = || ModelRoute::new("/api/generate", WireFormat::Ollama);
        let new = |b: &Rc<Budget>| Capture::new(route(), "u", "s", "r", 0, 64, b.clone());
        // Whether an `n`-byte body finds room beside what is held.
        let fits = |b: &Rc<Budget>, n: usize| {
            let mut c = new(b);
            c.request_chunk(&vec![b' '; n - 14], false);
            c.request_chunk(br#"{"prompt":"y"}"#, false);
            c.finish(1)[0].content == "y"
        };
        assert!(fits(&budget, 100) && !fits(&budget, 101));
        let mut a = new(&budget);
        a.request_chunk(&[b' '; 60], false);
        assert!(fits(&budget, 40) && !fits(&budget, 41));
        let mut b = new(&budget);
        b.request_chunk(&[b' '; 60], false);
        let [placeholder, _] = b.finish(1);
        assert_eq!(
            (placeholder.unreadable.as_deref(), placeholder.request_bytes),
            (Some("over the filter's memory budget"), Some(60))
        );
        assert!(fits(&budget, 40), "the refused body took nothing");
        a.request_chunk(br#"{"prompt":"x"}"#, true);
        assert!(fits(&budget, 100), "a parsed body gives its bytes back");
        let mut c = new(&budget);
        c.request_chunk(&[b' '; 80], false);
        assert!(!fits(&budget, 21));
        drop(c);
        assert!(
            fits(&budget, 100),
            "a capture dropped mid-body gives its bytes back"
        );
        assert_eq!(a.finish(2)[0].content, "x");
    }

    /// An Ollama exchange whose reply has begun, drawing on `budget`.
    fn replying(budget: &Rc<Budget>) -> Capture {
        let route = ModelRoute::new("/api/generate", WireFormat::Ollama);
        let mut c = Capture::new(route, "u", "s", "r", 0, 1_024, budget.clone());
        c.request_chunk(br#"{"prompt":"q"}"#, true);
        c.response_head(Some(200), Some("application/x-ndjson"), None);
        c
    }

    fn line(text: &str) -> Vec<u8> {
        format!("{{\"response\":\"{text}\"}}\n").into_bytes()
    }

    const LAST_LINE: &[u8] = b"{\"response\":\"\",\"done\":true,\"eval_count\":5}\n";

    /// Whether a reply of `n` bytes of text is mirrored whole beside what
    /// is held.
    fn whole(budget: &Rc<Budget>, n: usize) -> bool {
        let mut c = replying(budget);
        c.response_chunk(&line(&"w".repeat(n)));
        let [_, reply] = c.finish(1);
        let whole = !reply.truncated;
        assert_eq!(budget.take_replies_cut(), usize::from(!whole));
        whole
    }

    #[test]
    fn a_reply_past_the_reply_budget_is_cut_there_and_flagged() {
        let budget = Budget::new(VM_BUDGET_BYTES, 10);
        let mut c = replying(&budget);
        c.response_chunk(&line("hello"));
        c.response_chunk(&line(" world"));
        c.response_chunk(&line("!"));
        c.response_chunk(LAST_LINE);
        let [prompt, reply] = c.finish(1);
        assert_eq!(prompt.content, "q", "the exchange is still mirrored");
        assert_eq!(
            (reply.content.as_str(), reply.truncated, reply.tokens_out),
            ("hello", true, Some(5)),
            "a prefix, flagged, and the metadata after the cut still read"
        );
        assert_eq!(budget.take_replies_cut(), 1);
        assert_eq!(budget.take_replies_cut(), 0, "counted once");
        assert!(whole(&budget, 10) && !whole(&budget, 11));
    }

    #[test]
    fn reply_bytes_are_given_back_at_the_end_and_on_drop() {
        let budget = Budget::new(VM_BUDGET_BYTES, 100);
        let mut a = replying(&budget);
        a.response_chunk(&line(&"a".repeat(50)));
        assert!(whole(&budget, 50) && !whole(&budget, 51));
        let [_, reply] = a.finish(1);
        assert_eq!((reply.content.len(), reply.truncated), (50, false));
        assert!(whole(&budget, 100), "a finished reply gives its bytes back");

        // Held in an unfinished line this time.
        let mut b = replying(&budget);
        b.response_chunk(&line(&"b".repeat(60))[..70]);
        assert!(!whole(&budget, 31));
        drop(b);
        assert!(
            whole(&budget, 100),
            "a reply dropped mid-stream gives its bytes back"
        );

        let mut c = replying(&budget);
        c.response_chunk(&line(&"c".repeat(100)));
        let mut d = replying(&budget);
        d.response_chunk(&line("d"));
        drop(d);
        let [_, full] = c.finish(1);
        assert!(!full.truncated);
        assert_eq!(
            budget.take_replies_cut(),
            1,
            "a dropped reply was counted when cut"
        );
        assert!(whole(&budget, 100));
    }

    #[test]
    fn parallel_replies_share_the_reply_budget() {
        let budget = Budget::new(VM_BUDGET_BYTES, 100);
        let mut replies: Vec<Capture> = (0..3).map(|_| replying(&budget)).collect();
        // Each wants 40 bytes, ten at a time, in turns: 120 in all.
        for round in 0..4 {
            for c in &mut replies {
                c.response_chunk(&line(&round.to_string().repeat(10)));
            }
        }
        for c in &mut replies {
            c.response_chunk(LAST_LINE);
        }
        let kept: Vec<(String, bool, Option<u64>)> = replies
            .into_iter()
            .map(|c| {
                let [_, reply] = c.finish(1);
                (reply.content, reply.truncated, reply.tokens_out)
            })
            .collect();
        let full = "0000000000111111111122222222223333333333";
        assert_eq!(
            kept,
            [
                (full.to_owned(), false, Some(5)),
                (full[..30].to_owned(), true, Some(5)),
                (full[..30].to_owned(), true, Some(5)),
            ]
        );
        assert_eq!(budget.take_replies_cut(), 2);
        assert!(whole(&budget, 100), "all of it is given back");
    }
}
