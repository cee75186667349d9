//! An MCP tool call and its result, copied out for the memory as the
//! answer streams past.
//!
//! The call is known when the filter lets it through (its tool, arguments
//! and id, read for the decision); the answer is a JSON-RPC response, in a
//! plain JSON body or as one event of a server-sent event stream whose
//! other events are notifications (progress, log messages) about the call.
//! The capture keeps only the unfinished line or body, bounded and drawn
//! from the VM's reply budget, and stops reading once the response for the
//! call's id went by: the stream itself passes untouched. Messages are cut
//! out of the body as a model reply's frames are ([`crate::model_reply`]).

use super::budget::{Budget, Lease};
use super::event::{Exchange, ToolCallText, ToolResultText};
use crate::mcp::ToolCall;
use crate::model_reply::framing::{Frames, Framing, Reader};
use attach_contract::event::Event;
use serde_json::Value;
use std::rc::Rc;

/// Room for a response around its text: ids, structured content, metadata.
const FRAME_SLACK: usize = 64 * 1024;

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
    /// The answer's body cut into messages (a JSON body, or the `data` of
    /// each event); `None` before the head, or for a body that cannot be
    /// read (compressed, or neither JSON nor an event stream).
    frames: Option<Frames>,
    answer: Answer,
}

/// What reads the answer's messages for the one that answers the call.
struct Answer {
    /// The call's id, as JSON text.
    id: Option<String>,
    cap: usize,
    /// What the unfinished message holds of the VM's reply budget.
    held: Lease,
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
        let answer = Answer {
            id: call.id.clone(),
            cap,
            held: budget.for_reply(),
            result: None,
        };
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
            frames: None,
            answer,
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
        let framing = match essence.as_deref() {
            _ if encoded => None,
            Some("application/json") => Some(Framing::Json),
            Some("text/event-stream") => Some(Framing::Sse),
            _ => None,
        };
        // JSON escapes spend at most six bytes on one byte of text.
        let limit = self.cap.saturating_mul(6).saturating_add(FRAME_SLACK);
        self.frames = framing.map(|f| Frames::new(f, limit));
    }

    /// Takes the next piece of the answer, as it passes.
    pub fn response_chunk(&mut self, chunk: &[u8]) {
        if self.answer.result.is_some() {
            return;
        }
        if let Some(frames) = &mut self.frames {
            frames.feed(chunk, &mut self.answer);
        }
    }

    /// The call and result events, once the exchange is over (whatever
    /// was read of the answer: an answer never read is an unknown result).
    pub fn finish(mut self, end_ms: u64) -> [Event; 2] {
        // A last event the stream did not end still counts.
        if let Some(frames) = &mut self.frames {
            frames.finish(&mut self.answer);
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
        let result = self
            .answer
            .result
            .take()
            .unwrap_or_else(ToolResultText::unread);
        exchange.tool_events(&self.call.tool, call, result)
    }
}

impl Reader for Answer {
    fn hold(&mut self, n: usize) -> bool {
        self.held.grow(n)
    }

    fn release(&mut self, n: usize) {
        self.held.shrink(n);
    }

    /// A JSON-RPC message of the answer: the result when it is the
    /// response to the call.
    fn frame(&mut self, bytes: &[u8]) {
        if self.result.is_some() {
            return;
        }
        let Ok(message) = serde_json::from_slice::<Value>(bytes) else {
            return;
        };
        let id = message
            .get("id")
            .filter(|id| !id.is_null())
            .map(Value::to_string);
        if id.is_none() || id != self.id {
            return;
        }
        self.result = match (message.get("result"), message.get("error")) {
            (Some(result), _) => Some(ToolResultText::from_result(result, self.cap)),
            (None, Some(error)) => Some(ToolResultText::from_error(error, self.cap)),
            (None, None) => None,
        };
    }

    /// A message too large to hold is not read: the result stays unknown.
    fn skipped(&mut self, _: usize) {}
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
