//! The two memory events of an exchange with a model (one for the prompt
//! and one for the reply), and of an MCP tool call (one for the call and
//! one for its result).
//!
//! The event itself, its JSON and its id are the wire contract's
//! ([`attach_contract::event`]): the same JSON is the shared-queue item and
//! an element of the companion service's `POST /mem/ingest` array. What is
//! the filter's own is how an exchange becomes events.
//!
//! Every event fits [`limits`]: the sink refuses events that do not, and
//! what a client puts in its request (the model's name, its request id)
//! must never cost the exchange its record.

use super::Capped;
use super::prompt::Prompt;
use super::reply_capture::Reply;
use attach_contract::event::{Event, Kind, Role, event_id};
use attach_contract::limits::{
    self, MAX_MODEL_CHARS, MAX_REQUEST_ID_CHARS, MAX_ROUTE_CHARS, MAX_SESSION_CHARS, MAX_TOOL_CHARS,
};
use attach_contract::timestamp::rfc3339_millis;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt::Write;

/// A request body that gave no prompt: the engine may still have read it
/// (parsers differ on duplicate keys, lone surrogates, `NaN`...), so the
/// exchange is recorded with a placeholder prompt that says why and how
/// large the body was, instead of not at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unreadable {
    pub reason: &'static str,
    pub request_bytes: u64,
}

/// The text of an MCP `tools/call` request, as its `tool_call` event
/// records it: the tool's name, a space and its arguments' JSON, kept
/// within the mirror's `max_bytes` as a prompt is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolCallText {
    pub text: String,
    pub truncated: bool,
}

impl ToolCallText {
    /// `arguments` is the JSON text of the request's `params.arguments`, as
    /// sent; without arguments the text is the tool's name alone. At most
    /// `cap` bytes are kept.
    pub fn new(tool: &str, arguments: Option<&str>, cap: usize) -> Self {
        let mut text = Capped::new(cap);
        text.push(tool);
        if let Some(arguments) = arguments {
            text.push(" ");
            text.push(arguments);
        }
        ToolCallText {
            text: text.text,
            truncated: text.truncated,
        }
    }
}

/// What an MCP server answered to a `tools/call`, as its `tool_result`
/// event records it: the text of the result, kept within the mirror's
/// `max_bytes` as a model's reply is, and whether the call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolResultText {
    pub text: String,
    pub truncated: bool,
    /// `None` when no answer could be read: nobody knows.
    pub is_error: Option<bool>,
}

impl ToolResultText {
    /// From the `result` member of the JSON-RPC response: the `text` of its
    /// `content` items of type `text`, in order, one line apart (images,
    /// audio and resources have no text to keep), and its `isError`
    /// (absent means success). A result that is not an object, or whose
    /// `content` is not a list, is recorded as cut: its text is not the
    /// answer.
    pub fn from_result(result: &Value, cap: usize) -> Self {
        let mut text = Capped::new(cap);
        let content = result.get("content").and_then(Value::as_array);
        let texts = content.into_iter().flatten().filter_map(|item| {
            match (item.get("type").and_then(Value::as_str), item.get("text")) {
                (Some("text"), Some(Value::String(t))) => Some(t.as_str()),
                _ => None,
            }
        });
        for (i, piece) in texts.enumerate() {
            if i > 0 {
                text.push("\n");
            }
            text.push(piece);
        }
        if content.is_none() {
            text.cut();
        }
        ToolResultText {
            text: text.text,
            truncated: text.truncated,
            is_error: Some(result.get("isError").and_then(Value::as_bool) == Some(true)),
        }
    }

    /// From the `error` member of a JSON-RPC error response: its `message`
    /// (cut when the error has none), and a failed call.
    pub fn from_error(error: &Value, cap: usize) -> Self {
        let mut text = Capped::new(cap);
        match error.get("message").and_then(Value::as_str) {
            Some(message) => text.push(message),
            None => text.cut(),
        }
        ToolResultText {
            text: text.text,
            truncated: text.truncated,
            is_error: Some(true),
        }
    }

    /// No answer the filter could read (the stream ended first, the body
    /// was compressed, not JSON-RPC, or over what the capture holds): the
    /// call is still recorded, with an empty, cut result of unknown outcome.
    pub fn unread() -> Self {
        ToolResultText {
            text: String::new(),
            truncated: true,
            is_error: None,
        }
    }
}

/// What the filter knows of an exchange besides its bodies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exchange<'a> {
    pub user: &'a str,
    pub session: &'a str,
    /// Who acted for the user, in `X-Attach-Actor`'s form; empty when the
    /// user acted alone.
    pub actor: &'a str,
    /// Must be unique per exchange (Envoy's `x-request-id`): it keys the ids.
    pub request_id: &'a str,
    /// The request path without its query; for a tool call the MCP
    /// server's route, `/mcp/{server}`.
    pub route: &'a str,
    pub task_id: Option<&'a str>,
    pub status: Option<u16>,
    /// Unix milliseconds when the request arrived and the reply ended.
    pub start_ms: u64,
    pub end_ms: u64,
}

impl Exchange<'_> {
    /// The prompt event (a placeholder when the body was unreadable), then
    /// the reply event. Both name the model the request asked for (the
    /// reply's own name when it did not say), so a filter on `model` finds
    /// both halves. Labels are fitted to [`limits`]; a request id that does
    /// not fit is replaced by [`usable_request_id`]'s.
    pub fn events(&self, prompt: Result<Prompt, Unreadable>, reply: Reply) -> [Event; 2] {
        let (prompt, unreadable) = match prompt {
            Ok(p) => (p, None),
            Err(u) => (
                Prompt {
                    model: None,
                    text: String::new(),
                    truncated: true,
                    stream: false,
                },
                Some(u),
            ),
        };
        let model = prompt
            .model
            .or(reply.model)
            .map(|m| limits::fit(&m, MAX_MODEL_CHARS));
        let mut prompt_event = self.event(
            Role::User,
            Kind::Prompt,
            prompt.text,
            self.start_ms,
            prompt.truncated,
        );
        prompt_event.model.clone_from(&model);
        prompt_event.tokens_in = reply.tokens_in;
        if let Some(u) = unreadable {
            prompt_event.unreadable = Some(u.reason.to_owned());
            prompt_event.request_bytes = Some(u.request_bytes);
        }
        let mut reply_event = self.event(
            Role::Assistant,
            Kind::Reply,
            reply.text,
            self.end_ms,
            reply.truncated,
        );
        reply_event.model = model;
        reply_event.tokens_out = reply.tokens_out;
        [prompt_event, reply_event]
    }

    /// The `tool_call` event (role user, at the request's arrival), then
    /// the `tool_result` event (role assistant, at the answer's end, with
    /// `is_error`), of an MCP `tools/call` of `tool` made in this exchange.
    /// Both name the tool (fitted to [`MAX_TOOL_CHARS`]) and no model.
    pub fn tool_events(
        &self,
        tool: &str,
        call: ToolCallText,
        result: ToolResultText,
    ) -> [Event; 2] {
        let tool = limits::fit(tool, MAX_TOOL_CHARS);
        let mut call_event = self.event(
            Role::User,
            Kind::ToolCall,
            call.text,
            self.start_ms,
            call.truncated,
        );
        call_event.tool = Some(tool.clone());
        let mut result_event = self.event(
            Role::Assistant,
            Kind::ToolResult,
            result.text,
            self.end_ms,
            result.truncated,
        );
        result_event.tool = Some(tool);
        result_event.is_error = result.is_error;
        [call_event, result_event]
    }

    /// One event of this exchange with what both of a pair share, labels
    /// fitted to [`limits`]; the rest is left for the caller to fill in.
    fn event(&self, role: Role, kind: Kind, content: String, at_ms: u64, truncated: bool) -> Event {
        Event {
            id: event_id(self.user, self.request_id, role),
            user: self.user.to_owned(),
            session: limits::fit(self.session, MAX_SESSION_CHARS),
            role,
            kind,
            content,
            model: None,
            route: limits::fit(self.route, MAX_ROUTE_CHARS),
            request_id: usable_request_id(self.request_id),
            task_id: self.task_id.map(str::to_owned),
            status: self.status.filter(|s| limits::STATUS_CODES.contains(s)),
            timestamp: rfc3339_millis(at_ms),
            latency_ms: self.end_ms.saturating_sub(self.start_ms),
            tokens_in: None,
            tokens_out: None,
            truncated,
            unreadable: None,
            request_bytes: None,
            actor: (!self.actor.is_empty()).then(|| self.actor.to_owned()),
            tool: None,
            is_error: None,
        }
    }
}

/// The client's request id when the sink takes it as it is; otherwise
/// `attach-` and 32 hex digits of a SHA-256 over it, so that the same
/// unusable id (a retry) still gives the same label, and different ones
/// stay apart. An empty id says nothing and is replaced too.
pub fn usable_request_id(raw: &str) -> String {
    if !raw.is_empty() && limits::fits(raw, MAX_REQUEST_ID_CHARS) {
        return raw.to_owned();
    }
    let digest = Sha256::new()
        .chain_update(b"attach-gateway/request-id/v1\0")
        .chain_update(raw.as_bytes())
        .finalize();
    let mut id = String::with_capacity(39);
    id.push_str("attach-");
    for b in digest.iter().take(16) {
        let _ = write!(id, "{b:02x}");
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange() -> Exchange<'static> {
        Exchange {
            user: "alice",
            session: "s-1",
            actor: "",
            request_id: "req-1",
            route: "/api/chat",
            task_id: None,
            status: Some(200),
            start_ms: 1_700_000_000_000,
            end_ms: 1_700_000_001_250,
        }
    }

    fn prompt() -> Prompt {
        Prompt {
            model: Some("llama3.2".into()),
            text: "hi".into(),
            truncated: false,
            stream: true,
        }
    }

    fn reply() -> Reply {
        Reply {
            text: "hello".into(),
            truncated: true,
            tokens_in: Some(3),
            tokens_out: Some(5),
            model: Some("llama3.2:latest".into()),
        }
    }

    #[test]
    fn an_exchange_gives_a_prompt_and_a_reply() {
        let [p, r] = exchange().events(Ok(prompt()), reply());
        assert_eq!(
            p,
            Event {
                id: event_id("alice", "req-1", Role::User),
                user: "alice".into(),
                session: "s-1".into(),
                role: Role::User,
                kind: Kind::Prompt,
                content: "hi".into(),
                model: Some("llama3.2".into()),
                route: "/api/chat".into(),
                request_id: "req-1".into(),
                task_id: None,
                status: Some(200),
                timestamp: "2023-11-14T22:13:20.000Z".into(),
                latency_ms: 1250,
                tokens_in: Some(3),
                tokens_out: None,
                truncated: false,
                unreadable: None,
                request_bytes: None,
                actor: None,
                tool: None,
                is_error: None,
            }
        );
        assert_eq!(r.id, event_id("alice", "req-1", Role::Assistant));
        assert_eq!(
            (r.role, r.kind, r.content.as_str()),
            (Role::Assistant, Kind::Reply, "hello")
        );
        assert_eq!(r.timestamp, "2023-11-14T22:13:21.250Z");
        assert_eq!(
            (r.tokens_in, r.tokens_out, r.truncated),
            (None, Some(5), true)
        );
        assert_eq!(r.model.as_deref(), Some("llama3.2"));

        let unnamed = Prompt {
            model: None,
            ..prompt()
        };
        let [p, _] = Exchange {
            end_ms: 0,
            ..exchange()
        }
        .events(Ok(unnamed), reply());
        assert_eq!(p.model.as_deref(), Some("llama3.2:latest"));
        assert_eq!(p.latency_ms, 0);
    }

    #[test]
    fn both_events_name_who_acted_for_the_user() {
        let [p, r] = Exchange {
            actor: "did:key:coder, did:key:planner",
            ..exchange()
        }
        .events(Ok(prompt()), reply());
        for event in [&p, &r] {
            assert_eq!(
                event.actor.as_deref(),
                Some("did:key:coder, did:key:planner")
            );
            assert_eq!(event.user, "alice");
        }
        let [alone, _] = exchange().events(Ok(prompt()), reply());
        assert_eq!(alone.actor, None);
    }

    /// Issue: a client's `model` and `x-request-id` went into events as
    /// they were, and the sink refused the batches that carried them.
    #[test]
    fn client_labels_are_fitted_and_unusable_request_ids_replaced() {
        let long_model = format!("{}\n{}", "m".repeat(300), "x");
        let hostile = Prompt {
            model: Some(long_model),
            ..prompt()
        };
        let raw_id = format!("{}\t", "r".repeat(300));
        let [p, r] = Exchange {
            request_id: &raw_id,
            route: "/api/\u{7f}chat",
            status: Some(999),
            ..exchange()
        }
        .events(Ok(hostile), reply());
        for e in [&p, &r] {
            assert_eq!(e.model.as_deref(), Some("m".repeat(256).as_str()));
            assert_eq!(e.route, "/api/\u{fffd}chat");
            assert_eq!(e.request_id, usable_request_id(&raw_id));
            assert_eq!(e.status, None, "not an HTTP status");
        }
        assert_eq!(
            p.id,
            event_id("alice", &raw_id, Role::User),
            "ids still come from the exchange's own request id"
        );

        assert_eq!(usable_request_id("req-1"), "req-1");
        let derived = usable_request_id(&raw_id);
        assert_eq!(derived.len(), 39);
        assert!(derived.starts_with("attach-"));
        assert!(derived[7..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(derived, usable_request_id(&raw_id), "stable");
        for other in ["", "a\nb", &"r".repeat(257)] {
            let id = usable_request_id(other);
            assert!(id.starts_with("attach-") && id != derived, "{other:?}");
        }
        assert_eq!(usable_request_id(&"r".repeat(256)), "r".repeat(256));
        // Pinned (computed independently with Python's hashlib): a change
        // would give the retries of an exchange other labels.
        assert_eq!(
            usable_request_id(""),
            "attach-f1fc72add4b6343e2301228b18cadc03"
        );
    }

    #[test]
    fn an_unreadable_body_gives_a_placeholder_prompt_and_the_reply() {
        let unreadable = Unreadable {
            reason: "duplicate key",
            request_bytes: 77,
        };
        let [p, r] = exchange().events(Err(unreadable), reply());
        assert_eq!((p.kind, p.content.as_str()), (Kind::Prompt, ""));
        assert_eq!(p.unreadable.as_deref(), Some("duplicate key"));
        assert_eq!(p.request_bytes, Some(77));
        assert!(p.truncated, "the text is not the prompt");
        assert_eq!(p.model.as_deref(), Some("llama3.2:latest"), "the reply's");
        assert_eq!(p.id, event_id("alice", "req-1", Role::User));
        assert_eq!(r.content, "hello");
        assert_eq!((r.unreadable, r.request_bytes), (None, None));
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["unreadable"], "duplicate key");
        assert_eq!(v["request_bytes"], 77);
    }

    fn tool_exchange() -> Exchange<'static> {
        Exchange {
            route: "/mcp/tools",
            request_id: "req-7",
            end_ms: 1_700_000_000_040,
            ..exchange()
        }
    }

    #[test]
    fn a_tool_call_gives_a_call_and_a_result() {
        let call = ToolCallText::new("echo", Some(r#"{"text":"hi"}"#), 1024);
        let result = ToolResultText::from_result(
            &serde_json::json!({"content": [{"type": "text", "text": "hi"}]}),
            1024,
        );
        let [c, r] = Exchange {
            actor: "did:key:coder",
            ..tool_exchange()
        }
        .tool_events("echo", call, result);
        assert_eq!(
            c,
            Event {
                id: event_id("alice", "req-7", Role::User),
                user: "alice".into(),
                session: "s-1".into(),
                role: Role::User,
                kind: Kind::ToolCall,
                content: r#"echo {"text":"hi"}"#.into(),
                model: None,
                route: "/mcp/tools".into(),
                request_id: "req-7".into(),
                task_id: None,
                status: Some(200),
                timestamp: "2023-11-14T22:13:20.000Z".into(),
                latency_ms: 40,
                tokens_in: None,
                tokens_out: None,
                truncated: false,
                unreadable: None,
                request_bytes: None,
                actor: Some("did:key:coder".into()),
                tool: Some("echo".into()),
                is_error: None,
            }
        );
        assert_eq!(
            r,
            Event {
                id: event_id("alice", "req-7", Role::Assistant),
                role: Role::Assistant,
                kind: Kind::ToolResult,
                content: "hi".into(),
                timestamp: "2023-11-14T22:13:20.040Z".into(),
                is_error: Some(false),
                ..c.clone()
            }
        );
        assert_ne!(c.id, r.id);
    }

    #[test]
    fn call_text_is_the_name_and_the_arguments_capped_like_a_prompt() {
        assert_eq!(
            ToolCallText::new("list", None, 64),
            ToolCallText {
                text: "list".into(),
                truncated: false
            }
        );
        let cut = ToolCallText::new("echo", Some(r#"{"text":"héllo"}"#), 15);
        assert_eq!(
            (cut.text.as_str(), cut.truncated),
            (r#"echo {"text":"h"#, true)
        );
        let cut = ToolCallText::new("echo", Some(r#"{"text":"héllo"}"#), 16);
        assert_eq!(cut.text, r#"echo {"text":"h"#, "é is not split");
        let name_only = ToolCallText::new("a_long_tool_name", Some("{}"), 6);
        assert_eq!(
            (name_only.text.as_str(), name_only.truncated),
            ("a_long", true)
        );
    }

    /// MCP `tools/call`: a result's `content` holds text, image, audio and
    /// resource items; `isError` marks a failed tool, absent means success.
    #[test]
    fn result_text_is_the_text_items_and_is_error() {
        let result = serde_json::json!({
            "content": [
                {"type": "text", "text": "first"},
                {"type": "image", "data": "aGk=", "mimeType": "image/png"},
                {"type": "text", "text": "second"},
                {"type": "text"},
                {"type": "resource", "resource": {"uri": "file:///x", "text": "not shown"}},
            ],
            "structuredContent": {"n": 1},
            "isError": true,
        });
        assert_eq!(
            ToolResultText::from_result(&result, 1024),
            ToolResultText {
                text: "first\nsecond".into(),
                truncated: false,
                is_error: Some(true),
            }
        );
        let cut = ToolResultText::from_result(&result, 7);
        assert_eq!((cut.text.as_str(), cut.truncated), ("first\ns", true));
        let ok = ToolResultText::from_result(&serde_json::json!({"content": []}), 16);
        assert_eq!(
            (ok.text.as_str(), ok.truncated, ok.is_error),
            ("", false, Some(false))
        );
        for odd in [
            serde_json::json!({"content": "text"}),
            serde_json::json!({"isError": true}),
            serde_json::json!([1]),
        ] {
            let r = ToolResultText::from_result(&odd, 16);
            assert!(r.truncated && r.text.is_empty(), "{odd}");
        }
        assert_eq!(
            ToolResultText::from_result(&serde_json::json!({"content": [], "isError": "yes"}), 16)
                .is_error,
            Some(false),
            "only true is an error"
        );
    }

    #[test]
    fn json_rpc_errors_and_unread_answers_are_recorded_too() {
        let error = serde_json::json!({"code": -32602, "message": "Unknown tool: nope"});
        let [_, r] = tool_exchange().tool_events(
            "nope",
            ToolCallText::new("nope", None, 64),
            ToolResultText::from_error(&error, 64),
        );
        assert_eq!(
            (r.content.as_str(), r.is_error, r.truncated),
            ("Unknown tool: nope", Some(true), false)
        );
        let silent = ToolResultText::from_error(&serde_json::json!({"code": -1}), 64);
        assert_eq!((silent.text.as_str(), silent.truncated), ("", true));
        let [c, r] = Exchange {
            status: None,
            ..tool_exchange()
        }
        .tool_events(
            "echo",
            ToolCallText::new("echo", None, 64),
            ToolResultText::unread(),
        );
        assert_eq!(
            (r.content.as_str(), r.truncated, r.is_error),
            ("", true, None)
        );
        assert_eq!((c.status, r.status), (None, None));
        let v = serde_json::to_value(&r).unwrap();
        assert!(
            v.get("is_error").is_none() && v.get("model").is_none(),
            "{v}"
        );
        assert_eq!(
            (&v["kind"], &v["tool"]),
            (&"tool_result".into(), &"echo".into())
        );
    }

    #[test]
    fn tool_names_are_fitted_as_labels() {
        let long = format!("{}\u{7}", "t".repeat(300));
        let [c, r] = tool_exchange().tool_events(
            &long,
            ToolCallText::new(&long, None, 1024),
            ToolResultText::unread(),
        );
        for e in [&c, &r] {
            assert_eq!(e.tool.as_deref(), Some("t".repeat(MAX_TOOL_CHARS).as_str()));
        }
        assert_eq!(c.content, long, "the content keeps what the caller sent");
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(256))]

        /// Whatever the client sent, the events fit the sink's limits.
        #[test]
        fn events_always_fit_the_limits(
            model in proptest::option::of("\\PC{0,300}|[\\x00-\\x1f\\x7fa\u{e9}]{0,300}"),
            request_id in "\\PC{0,300}|[\\x00-\\x1fr]{0,300}",
            route in "\\PC{0,20}",
            session in "\\PC{0,20}",
            status in proptest::option::of(proptest::prelude::any::<u16>()),
            readable in proptest::prelude::any::<bool>(),
        ) {
            let prompt = if readable {
                Ok(Prompt { model, ..prompt() })
            } else {
                Err(Unreadable { reason: "not JSON", request_bytes: 3 })
            };
            let exchange = Exchange {
                request_id: &request_id,
                route: &route,
                session: &session,
                status,
                ..exchange()
            };
            for e in exchange.events(prompt, reply()) {
                proptest::prop_assert!(e.model.as_deref().is_none_or(|m| limits::fits(m, MAX_MODEL_CHARS)));
                proptest::prop_assert!(!e.request_id.is_empty() && limits::fits(&e.request_id, MAX_REQUEST_ID_CHARS));
                proptest::prop_assert!(limits::fits(&e.route, MAX_ROUTE_CHARS));
                proptest::prop_assert!(limits::fits(&e.session, MAX_SESSION_CHARS));
                proptest::prop_assert!(e.status.is_none_or(|s| limits::STATUS_CODES.contains(&s)));
                proptest::prop_assert!(e.unreadable.as_deref().is_none_or(|u| limits::fits(u, limits::MAX_UNREADABLE_CHARS)));
            }
            let tools = exchange.tool_events(&request_id, ToolCallText::new(&route, None, 16), ToolResultText::unread());
            for e in tools {
                proptest::prop_assert!(e.tool.as_deref().is_some_and(|t| limits::fits(t, MAX_TOOL_CHARS)));
                proptest::prop_assert!(!e.request_id.is_empty() && limits::fits(&e.request_id, MAX_REQUEST_ID_CHARS));
                proptest::prop_assert!(limits::fits(&e.route, MAX_ROUTE_CHARS));
                proptest::prop_assert!(e.status.is_none_or(|s| limits::STATUS_CODES.contains(&s)));
            }
        }
    }
}
