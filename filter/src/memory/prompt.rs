//! The prompt of a model request, read from its JSON body.
//!
//! A body that cannot be read is never the caller's problem: the request goes
//! on untouched and the exchange is recorded with a placeholder prompt, so
//! errors say why in a few words (they are the placeholder's `unreadable`). The caller bounds the body it buffers; parsing allocates a small
//! multiple of it at most.

use super::Capped;
use super::routes::{ModelRoute, RouteKind, WireFormat};
use serde::Deserialize;
use serde_json::Value;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prompt {
    pub model: Option<String>,
    /// For chat APIs the last user message: the earlier ones were mirrored
    /// with the requests that sent them first.
    pub text: String,
    pub truncated: bool,
    /// Whether the reply will stream, which decides its framing when the
    /// upstream does not say.
    pub stream: bool,
}

/// Why a body gave no prompt. Duplicate keys and lone surrogates are named
/// apart: other JSON parsers (the engine's) take them, so such a body is
/// answered while this one cannot say what it asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PromptError {
    NotJson,
    DuplicateKey,
    LoneSurrogate,
    WrongShape,
    NoPrompt,
}

impl PromptError {
    pub fn reason(self) -> &'static str {
        match self {
            PromptError::NotJson => "not JSON",
            PromptError::DuplicateKey => "duplicate key",
            PromptError::LoneSurrogate => "lone surrogate",
            PromptError::WrongShape => "not shaped like the route's API",
            PromptError::NoPrompt => "no user message or prompt",
        }
    }
}

impl fmt::Display for PromptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for PromptError {}

/// A model request's body, read once for everything that needs it: the
/// mirror's prompt ([`prompt_of`]) and the budget's estimate
/// ([`crate::budget::estimate`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub model: Option<String>,
    /// Whether the reply will stream: the request's `stream`, else the
    /// dialect's default (Ollama streams unless told otherwise; OpenAI
    /// answers in one piece).
    pub stream: bool,
    pub conversation: Conversation,
    /// The most output tokens the request asks for, in its dialect's field:
    /// OpenAI's `max_completion_tokens`, else `max_tokens`; Ollama's
    /// `options.num_predict` (negative: no limit). `None` when absent or
    /// not an integer.
    pub max_output: Option<i64>,
}

/// What a request says to the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Conversation {
    /// A chat API's `messages`, in order.
    Chat(Vec<Message>),
    /// A completion API's `prompt` (absent, one, or a batch), and Ollama's
    /// `system` beside it.
    Completion {
        system: Option<String>,
        prompts: Option<Vec<String>>,
    },
}

/// One chat message: its role and its text parts (other parts, such as
/// images, carry no text and are left out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub role: Option<String>,
    pub text: Vec<String>,
}

#[derive(Deserialize)]
struct ChatBody {
    model: Option<String>,
    stream: Option<bool>,
    messages: Option<Vec<MessageBody>>,
    max_completion_tokens: Option<Value>,
    max_tokens: Option<Value>,
    options: Option<Value>,
}

#[derive(Deserialize)]
struct MessageBody {
    role: Option<String>,
    content: Option<Content>,
}

/// OpenAI allows either form; Ollama only the string, but accepting parts
/// there costs nothing.
#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: Option<String>,
    text: Option<String>,
}

#[derive(Deserialize)]
struct CompletionBody {
    model: Option<String>,
    stream: Option<bool>,
    prompt: Option<PromptField>,
    system: Option<Value>,
    max_completion_tokens: Option<Value>,
    max_tokens: Option<Value>,
    options: Option<Value>,
}

/// OpenAI accepts a batch of prompts; token-id arrays carry no text and
/// are refused as the wrong shape.
#[derive(Deserialize)]
#[serde(untagged)]
enum PromptField {
    One(String),
    Many(Vec<String>),
}

/// The output limit in `format`'s field. The fields are read as any JSON
/// value: one the budget cannot use must not make the prompt unreadable.
fn output_limit(
    format: WireFormat,
    max_completion_tokens: Option<Value>,
    max_tokens: Option<Value>,
    options: Option<Value>,
) -> Option<i64> {
    let integer = |v: &Value| v.as_i64().or_else(|| v.as_u64().map(|_| i64::MAX));
    match format {
        WireFormat::OpenAi => max_completion_tokens
            .as_ref()
            .and_then(integer)
            .or_else(|| max_tokens.as_ref().and_then(integer)),
        WireFormat::Ollama => options
            .as_ref()
            .and_then(|o| o.get("num_predict"))
            .and_then(integer),
    }
}

/// Reads the body of a request sent to `route`.
pub fn read_request(route: &ModelRoute, body: &[u8]) -> Result<Request, PromptError> {
    let (model, stream, conversation, max_output) = match route.kind {
        RouteKind::Chat => {
            let body: ChatBody = serde_json::from_slice(body).map_err(classify)?;
            let messages = body
                .messages
                .into_iter()
                .flatten()
                .map(|m| Message {
                    role: m.role,
                    text: match m.content {
                        None => Vec::new(),
                        Some(Content::Text(text)) => vec![text],
                        Some(Content::Parts(parts)) => parts
                            .into_iter()
                            .filter(|p| p.kind.as_deref() == Some("text"))
                            .filter_map(|p| p.text)
                            .collect(),
                    },
                })
                .collect();
            let max_output = output_limit(
                route.format,
                body.max_completion_tokens,
                body.max_tokens,
                body.options,
            );
            (
                body.model,
                body.stream,
                Conversation::Chat(messages),
                max_output,
            )
        }
        RouteKind::Completion => {
            let body: CompletionBody = serde_json::from_slice(body).map_err(classify)?;
            let max_output = output_limit(
                route.format,
                body.max_completion_tokens,
                body.max_tokens,
                body.options,
            );
            let conversation = Conversation::Completion {
                system: body.system.and_then(|s| s.as_str().map(str::to_owned)),
                prompts: body.prompt.map(|p| match p {
                    PromptField::One(text) => vec![text],
                    PromptField::Many(texts) => texts,
                }),
            };
            (body.model, body.stream, conversation, max_output)
        }
    };
    Ok(Request {
        model,
        stream: stream.unwrap_or(route.format == WireFormat::Ollama),
        conversation,
        max_output,
    })
}

/// Reads the prompt of `body` sent to `route`, keeping at most `cap` bytes
/// of text (see [`prompt_of`]).
pub fn parse_prompt(route: &ModelRoute, body: &[u8], cap: usize) -> Result<Prompt, PromptError> {
    prompt_of(&read_request(route, body)?, cap)
}

/// The prompt of a request: for chat APIs the last user message, for
/// completion APIs the prompts; several text parts or prompts are joined
/// with newlines, keeping at most `cap` bytes.
pub fn prompt_of(request: &Request, cap: usize) -> Result<Prompt, PromptError> {
    let pieces: &[String] = match &request.conversation {
        Conversation::Chat(messages) => {
            &messages
                .iter()
                .rev()
                .find(|m| m.role.as_deref() == Some("user"))
                .ok_or(PromptError::NoPrompt)?
                .text
        }
        Conversation::Completion { prompts, .. } => {
            prompts.as_deref().ok_or(PromptError::NoPrompt)?
        }
    };
    let mut text = Capped::new(cap);
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            text.push("\n");
        }
        text.push(piece);
    }
    Ok(Prompt {
        model: request.model.clone(),
        text: text.text,
        truncated: text.truncated,
        stream: request.stream,
    })
}

/// serde_json names these two cases only in its messages (pinned by the
/// tests below).
fn classify(e: serde_json::Error) -> PromptError {
    let message = e.to_string();
    if message.starts_with("duplicate field") {
        PromptError::DuplicateKey
    } else if message.contains("surrogate") || message.starts_with("unexpected end of hex escape") {
        PromptError::LoneSurrogate
    } else if e.is_data() {
        PromptError::WrongShape
    } else {
        PromptError::NotJson
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::routes::default_routes;

    fn route(path: &str) -> ModelRoute {
        default_routes()
            .into_iter()
            .find(|r| r.path == path)
            .unwrap()
    }

    fn parse(path: &str, body: &str) -> Result<Prompt, PromptError> {
        parse_prompt(&route(path), body.as_bytes(), 1024)
    }

    #[test]
    fn ollama_chat_takes_the_last_user_message_and_streams_by_default() {
        let p = parse(
            "/api/chat",
            r#"{"model":"llama3.2","messages":[
                {"role":"system","content":"be brief"},
                {"role":"user","content":"first"},
                {"role":"assistant","content":"ok"},
                {"role":"user","content":"second \u00e9","images":null},
                {"role":"tool","content":"42"}],
               "options":{"temperature":0}}"#,
        )
        .unwrap();
        assert_eq!(
            p,
            Prompt {
                model: Some("llama3.2".into()),
                text: "second é".into(),
                truncated: false,
                stream: true,
            }
        );
        let p = parse(
            "/api/chat",
            r#"{"messages":[{"role":"user","content":"x"}],"stream":false}"#,
        )
        .unwrap();
        assert_eq!((p.model, p.stream), (None, false));
    }

    #[test]
    fn ollama_generate_reads_prompt() {
        let p = parse(
            "/api/generate",
            r#"{"model":"m","prompt":"why is the sky blue?"}"#,
        )
        .unwrap();
        assert_eq!((p.text.as_str(), p.stream), ("why is the sky blue?", true));
    }

    #[test]
    fn openai_chat_joins_text_parts_and_does_not_stream_by_default() {
        let p = parse(
            "/v1/chat/completions",
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":[
                {"type":"text","text":"look at"},
                {"type":"image_url","image_url":{"url":"data:,"}},
                {"type":"text","text":"this"}]}]}"#,
        )
        .unwrap();
        assert_eq!((p.text.as_str(), p.stream), ("look at\nthis", false));
        let p = parse(
            "/v1/chat/completions",
            r#"{"messages":[{"role":"user","content":null}],"stream":true}"#,
        )
        .unwrap();
        assert_eq!((p.text.as_str(), p.stream), ("", true));
    }

    #[test]
    fn openai_completions_take_one_prompt_or_several() {
        let p = parse("/v1/completions", r#"{"model":"m","prompt":"once"}"#).unwrap();
        assert_eq!(p.text, "once");
        let p = parse("/v1/completions", r#"{"prompt":["a","b"]}"#).unwrap();
        assert_eq!(p.text, "a\nb");
        assert!(!p.stream);
    }

    #[test]
    fn text_is_capped_on_a_char_boundary() {
        let body = r#"{"messages":[{"role":"user","content":"aaé"}]}"#;
        let p = parse_prompt(&route("/api/chat"), body.as_bytes(), 3).unwrap();
        assert_eq!((p.text.as_str(), p.truncated), ("aa", true));
        let p = parse_prompt(&route("/api/chat"), body.as_bytes(), 4).unwrap();
        assert_eq!((p.text.as_str(), p.truncated), ("aaé", false));
        let p = parse_prompt(&route("/v1/completions"), br#"{"prompt":["ab","c"]}"#, 2).unwrap();
        assert_eq!((p.text.as_str(), p.truncated), ("ab", true));
    }

    #[test]
    fn unreadable_bodies_say_why() {
        use PromptError::*;
        for (path, body, want) in [
            ("/api/chat", "", NotJson),
            ("/api/chat", "{\"messages\":[", NotJson),
            ("/api/chat", "\u{feff}{}", NotJson),
            ("/api/chat", "[]", WrongShape),
            ("/api/chat", "\"x\"", WrongShape),
            ("/api/chat", r#"{"messages":{}}"#, WrongShape),
            (
                "/api/chat",
                r#"{"messages":[{"role":"user","content":5}]}"#,
                WrongShape,
            ),
            ("/api/chat", r#"{"model":7,"messages":[]}"#, WrongShape),
            ("/api/chat", r#"{"stream":"yes","messages":[]}"#, WrongShape),
            ("/api/chat", r#"{}"#, NoPrompt),
            (
                "/api/chat",
                r#"{"messages":[{"role":"system","content":"x"}]}"#,
                NoPrompt,
            ),
            ("/v1/completions", r#"{"prompt":[1,2,3]}"#, WrongShape),
            ("/v1/completions", r#"{"model":"m"}"#, NoPrompt),
            ("/api/generate", r#"{"prompt":null}"#, NoPrompt),
            (
                "/api/chat",
                r#"{"model":"a","model":"b","messages":[{"role":"user","content":"x"}]}"#,
                DuplicateKey,
            ),
            (
                "/api/chat",
                r#"{"messages":[{"role":"user","content":"x"}],"messages":[]}"#,
                DuplicateKey,
            ),
            (
                "/v1/chat/completions",
                r#"{"messages":[{"role":"user","role":"system","content":"x"}]}"#,
                DuplicateKey,
            ),
            (
                "/v1/completions",
                r#"{"prompt":"a","prompt":"b"}"#,
                DuplicateKey,
            ),
            (
                "/api/chat",
                r#"{"messages":[{"role":"user","content":"hi \ud800"}]}"#,
                LoneSurrogate,
            ),
            (
                "/api/chat",
                r#"{"messages":[{"role":"user","content":"\udc00 low"}]}"#,
                LoneSurrogate,
            ),
            (
                "/api/generate",
                r#"{"prompt":"\ud800\u0041"}"#,
                LoneSurrogate,
            ),
            (
                "/api/generate",
                r#"{"model":"\ud83d","prompt":"x"}"#,
                LoneSurrogate,
            ),
            (
                "/api/generate",
                r#"{"prompt":"x","temperature":NaN}"#,
                NotJson,
            ),
        ] {
            assert_eq!(parse(path, body), Err(want), "{path} {body}");
            assert!(!want.to_string().is_empty());
            assert!(attach_contract::limits::fits(
                want.reason(),
                attach_contract::limits::MAX_UNREADABLE_CHARS
            ));
        }
        let pair = parse("/api/generate", r#"{"prompt":"\ud83d\ude00"}"#).unwrap();
        assert_eq!(pair.text, "\u{1f600}", "a surrogate pair is one character");
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(512))]

        /// Arbitrary bytes, and arbitrary text in plausible places, never panic.
        #[test]
        fn never_panics(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            s in ".{0,40}",
            cap in 0usize..16,
        ) {
            let framed = format!(r#"{{"messages":[{{"role":"user","content":{s}}}],"prompt":{s}}}"#);
            for r in default_routes() {
                let _ = parse_prompt(&r, &bytes, cap);
                let _ = parse_prompt(&r, framed.as_bytes(), cap);
                if let Ok(p) = parse_prompt(&r, framed.as_bytes(), cap) {
                    proptest::prop_assert!(p.text.len() <= cap);
                }
            }
        }
    }
}
