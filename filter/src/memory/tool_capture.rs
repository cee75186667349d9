//! An MCP tool call and its result, copied out for the memory as the
//! answer streams past.
//!
//! The call is known when the filter lets it through (its tool, arguments
//! and id, read for the decision); the answer is a JSON-RPC response, in a
//! plain JSON body or as one event of a server-sent event stream whose
//! other events are notifications (progress, log messages) about the call.
//! The capture keeps only the unfinished line or body, bounded and drawn
//! from the VM's reply budget, and stops reading once the response for the
//! call's id went by: the stream itself passes untouched.

use super::budget::{Budget, Lease};
use super::event::{Exchange, ToolCallText, ToolResultText};
use crate::mcp::ToolCall;
use attach_contract::event::Event;
use serde_json::Value;
use std::rc::Rc;

/// The most one body or event may buffer, whatever the cap.
const MAX_FRAME: usize = 1 << 20;
/// Room for a response around its text: ids, structured content, metadata.
const FRAME_SLACK: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    Json,
    Sse,
    /// Compressed, or neither JSON nor an event stream.
    Unreadable,
}

/// Who made the call, and where: what its events say besides the texts.
pub struct Caller<'a> {
    pub user: &'a str,
    pub session: &'a str,
    /// In `X-Attach-Actor`'s form; empty when the user acted alone.
    pub actor: &'a str,
    pub request_id: &'a str,
    pub route: &'a str,
}

pub struct ToolCapture {
    call: ToolCall,
    user: String,
    session: String,
    actor: String,
    request_id: String,
    route: String,
    start_ms: u64,
    cap: usize,
    status: Option<u16>,
    framing: Option<Framing>,
    limit: usize,
    /// The JSON body so far, or the unfinished line of the event stream.
    pending: Vec<u8>,
    /// The `data` of the event being assembled.
    data: Vec<u8>,
    after_cr: bool,
    /// What `pending` and `data` hold of the VM's reply budget.
    held: Lease,
    /// The body, the current line or the current event outgrew the limit
    /// or the budget: the rest of it is skipped.
    body_dropped: bool,
    line_dropped: bool,
    event_dropped: bool,
    result: Option<ToolResultText>,
}

impl ToolCapture {
    pub fn new(
        call: ToolCall,
        by: &Caller<'_>,
        start_ms: u64,
        cap: usize,
        budget: &Rc<Budget>,
    ) -> Self {
        ToolCapture {
            call,
            user: by.user.to_owned(),
            session: by.session.to_owned(),
            actor: by.actor.to_owned(),
            request_id: by.request_id.to_owned(),
            route: by.route.to_owned(),
            start_ms,
            cap,
            status: None,
            framing: None,
            // JSON escapes spend at most six bytes on one byte of text.
            limit: cap
                .saturating_mul(6)
                .saturating_add(FRAME_SLACK)
                .min(MAX_FRAME),
            pending: Vec::new(),
            data: Vec::new(),
            after_cr: false,
            held: budget.for_reply(),
            body_dropped: false,
            line_dropped: false,
            event_dropped: false,
            result: None,
        }
    }

    /// The answer's head: its status and how its body is framed.
    pub fn response_head(
        &mut self,
        status: Option<u16>,
        content_type: Option<&str>,
        encoding: Option<&str>,
    ) {
        self.status = status;
        let essence = content_type
            .and_then(|ct| ct.split(';').next())
            .map(|ct| ct.trim().to_ascii_lowercase());
        let encoded = encoding.is_some_and(|e| !e.eq_ignore_ascii_case("identity"));
        self.framing = Some(match essence.as_deref() {
            _ if encoded => Framing::Unreadable,
            Some("application/json") => Framing::Json,
            Some("text/event-stream") => Framing::Sse,
            _ => Framing::Unreadable,
        });
    }

    /// Takes the next piece of the answer, as it passes.
    pub fn response_chunk(&mut self, chunk: &[u8]) {
        if self.result.is_some() {
            return;
        }
        match self.framing {
            Some(Framing::Json) if !self.body_dropped => {
                if self.keep(chunk.len()) {
                    self.pending.extend_from_slice(chunk);
                } else {
                    self.body_dropped = true;
                }
            }
            Some(Framing::Sse) => self.split_lines(chunk),
            _ => {}
        }
    }

    /// Holds `n` more bytes, within the limit and the budget; refused, all
    /// that was held goes (the line and event it belonged to are lost).
    fn keep(&mut self, n: usize) -> bool {
        let total = self
            .pending
            .len()
            .saturating_add(self.data.len())
            .saturating_add(n);
        if total <= self.limit && self.held.grow(n) {
            return true;
        }
        self.held.release();
        self.pending = Vec::new();
        self.data = Vec::new();
        self.event_dropped = true;
        false
    }

    /// Splits the stream on line ends (`\n`, `\r\n` or `\r`, split
    /// anywhere across chunks).
    fn split_lines(&mut self, mut chunk: &[u8]) {
        if std::mem::take(&mut self.after_cr) {
            chunk = chunk.strip_prefix(b"\n").unwrap_or(chunk);
        }
        while let Some(end) = chunk.iter().position(|b| *b == b'\n' || *b == b'\r') {
            let (piece, rest) = chunk.split_at(end);
            self.add_to_line(piece);
            let crlf = rest.starts_with(b"\r\n");
            self.after_cr = rest == b"\r";
            chunk = rest.get(if crlf { 2 } else { 1 }..).unwrap_or_default();
            if std::mem::take(&mut self.line_dropped) {
                self.event_dropped = true;
                continue;
            }
            let line = std::mem::take(&mut self.pending);
            self.held.shrink(line.len());
            self.line(&line);
            if self.result.is_some() {
                return;
            }
        }
        self.add_to_line(chunk);
    }

    fn add_to_line(&mut self, piece: &[u8]) {
        if piece.is_empty() || self.line_dropped {
            return;
        }
        if self.keep(piece.len()) {
            self.pending.extend_from_slice(piece);
        } else {
            self.line_dropped = true;
        }
    }

    /// One line of the event stream; an empty one ends the event.
    fn line(&mut self, line: &[u8]) {
        if line.is_empty() {
            let data = std::mem::take(&mut self.data);
            self.held.shrink(data.len());
            if !std::mem::take(&mut self.event_dropped) && !data.is_empty() {
                self.answer(&data);
            }
            return;
        }
        let Some(value) = line.strip_prefix(b"data:") else {
            return;
        };
        let value = value.strip_prefix(b" ").unwrap_or(value);
        let grows = usize::from(!self.data.is_empty()).saturating_add(value.len());
        if self.event_dropped || !self.keep(grows) {
            return;
        }
        if !self.data.is_empty() {
            self.data.push(b'\n');
        }
        self.data.extend_from_slice(value);
    }

    /// A JSON-RPC message of the answer: the result when it is the
    /// response to the call.
    fn answer(&mut self, bytes: &[u8]) {
        let Ok(message) = serde_json::from_slice::<Value>(bytes) else {
            return;
        };
        let id = message
            .get("id")
            .filter(|id| !id.is_null())
            .map(Value::to_string);
        if id.is_none() || id != self.call.id {
            return;
        }
        self.result = match (message.get("result"), message.get("error")) {
            (Some(result), _) => Some(ToolResultText::from_result(result, self.cap)),
            (None, Some(error)) => Some(ToolResultText::from_error(error, self.cap)),
            (None, None) => None,
        };
    }

    /// The call and result events, once the exchange is over (whatever
    /// was read of the answer: an answer never read is an unknown result).
    pub fn finish(mut self, end_ms: u64) -> [Event; 2] {
        match self.framing {
            Some(Framing::Json) if !self.body_dropped && self.result.is_none() => {
                let body = std::mem::take(&mut self.pending);
                self.answer(&body);
            }
            // A last event the stream did not end still counts.
            Some(Framing::Sse) if self.result.is_none() => {
                self.after_cr = false;
                self.split_lines(b"\n\n");
            }
            _ => {}
        }
        let exchange = Exchange {
            user: &self.user,
            session: &self.session,
            actor: &self.actor,
            request_id: &self.request_id,
            route: &self.route,
            task_id: None,
            status: self.status,
            start_ms: self.start_ms,
            end_ms,
        };
        let call = ToolCallText::new(&self.call.tool, self.call.arguments.as_deref(), self.cap);
        let result = self.result.take().unwrap_or_else(ToolResultText::unread);
        exchange.tool_events(&self.call.tool, call, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use attach_contract::event::Kind;

    fn call() -> ToolCall {
        ToolCall {
            tool: "echo".into(),
            arguments: Some(r#"{"text":"hi"}"#.into()),
            id: Some("7".into()),
        }
    }

    fn capture(budget: &Rc<Budget>) -> ToolCapture {
        let by = Caller {
            user: "alice",
            session: "s-1",
            actor: "did:key:zPlanner",
            request_id: "r-1",
            route: "/mcp/tools",
        };
        ToolCapture::new(call(), &by, 1_000, 4096, budget)
    }

    fn run(content_type: &str, chunks: &[&[u8]]) -> [Event; 2] {
        let budget = Budget::new(1 << 20, 1 << 20);
        let mut c = capture(&budget);
        c.response_head(Some(200), Some(content_type), None);
        for chunk in chunks {
            c.response_chunk(chunk);
        }
        c.finish(1_250)
    }

    const RESULT: &str = r#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"hi"},{"type":"image","data":"x"},{"type":"text","text":"there"}]}}"#;

    #[test]
    fn a_plain_answer() {
        let [call, result] = run("application/json", &[RESULT.as_bytes()]);
        assert_eq!((call.kind, result.kind), (Kind::ToolCall, Kind::ToolResult));
        assert_eq!(call.content, r#"echo {"text":"hi"}"#);
        assert_eq!(result.content, "hi\nthere");
        assert_eq!(result.is_error, Some(false));
        assert_eq!((result.latency_ms, result.status), (250, Some(200)));
        assert_eq!(call.tool.as_deref(), Some("echo"));
        assert_eq!(result.actor.as_deref(), Some("did:key:zPlanner"));
        assert_eq!(result.route, "/mcp/tools");
    }

    /// The response among the call's notifications, however the stream is
    /// cut into chunks.
    #[test]
    fn a_streamed_answer_split_anywhere() {
        let stream = format!(
            "event: message\r\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{\"progress\":1}}}}\r\n\r\n: keep-alive\n\nevent: message\ndata: {RESULT}\n\n"
        );
        let whole = run("text/event-stream", &[stream.as_bytes()]);
        assert_eq!(whole[1].content, "hi\nthere");
        for at in 0..stream.len() {
            let (a, b) = stream.as_bytes().split_at(at);
            assert_eq!(run("text/event-stream", &[a, b]), whole, "split at {at}");
        }
        let bytes: Vec<&[u8]> = stream.as_bytes().chunks(1).collect();
        assert_eq!(run("text/event-stream; charset=utf-8", &bytes), whole);
        // A stream that ends without closing its last event.
        let open = stream.trim_end();
        assert_eq!(run("text/event-stream", &[open.as_bytes()]), whole);
    }

    #[test]
    fn failures_are_recorded_as_errors() {
        let failed = r#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"no"}],"isError":true}}"#;
        let [_, result] = run("application/json", &[failed.as_bytes()]);
        assert_eq!(
            (result.content.as_str(), result.is_error),
            ("no", Some(true))
        );
        let error = r#"{"jsonrpc":"2.0","id":7,"error":{"code":-32602,"message":"unknown tool"}}"#;
        let [_, result] = run("application/json", &[error.as_bytes()]);
        assert_eq!(
            (result.content.as_str(), result.is_error),
            ("unknown tool", Some(true))
        );
    }

    #[test]
    fn what_cannot_be_read_is_an_unknown_result() {
        let other = RESULT.replace("\"id\":7", "\"id\":8");
        for (content_type, body) in [
            ("application/json", other.as_str()),
            ("text/plain", RESULT),
            ("application/json", "{not json"),
        ] {
            let [call, result] = run(content_type, &[body.as_bytes()]);
            assert_eq!(call.content, r#"echo {"text":"hi"}"#);
            assert_eq!(
                (result.content.as_str(), result.truncated, result.is_error),
                ("", true, None)
            );
        }
        let budget = Budget::new(1 << 20, 1 << 20);
        let mut c = capture(&budget);
        c.response_head(Some(200), Some("application/json"), Some("gzip"));
        c.response_chunk(RESULT.as_bytes());
        assert_eq!(c.finish(2_000)[1].is_error, None);
    }

    #[test]
    fn an_answer_past_the_budget_is_dropped_and_the_budget_given_back() {
        let budget = Budget::new(1 << 20, 64);
        let mut c = capture(&budget);
        c.response_head(Some(200), Some("text/event-stream"), None);
        c.response_chunk(format!("data: {RESULT}\n\n").as_bytes());
        let [_, result] = c.finish(2_000);
        assert_eq!(result.is_error, None);
        let mut after = budget.for_reply();
        assert!(after.grow(64), "everything held was given back");
        let small = run(
            "text/event-stream",
            &[format!("data: {RESULT}\n\n").as_bytes()],
        );
        assert_eq!(small[1].is_error, Some(false));
    }
}
