//! What a model request will cost, before it goes upstream: the
//! reservation the budget holds until the reply says what it really cost.
//!
//! Input is about four bytes of text per token plus a few tokens of
//! framing per message; output is what the request allows the model to
//! write, else the configured default. A body that cannot be read still
//! costs something: its length stands for its text.

use crate::memory::prompt::{Conversation, Request, read_request};
use crate::memory::routes::{ModelRoute, WireFormat};

/// Tokens of framing counted per message (role, separators).
pub const TOKENS_PER_MESSAGE: u64 = 4;
/// Bytes of text counted as one token.
pub const BYTES_PER_TOKEN: u64 = 4;

/// The estimate of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ask {
    /// The model asked for, which the budget's model rules match.
    pub model: Option<String>,
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// Whether the reply will stream (the request's `stream`, else the
    /// dialect's default).
    pub stream: bool,
    pub format: WireFormat,
}

impl Ask {
    /// What the reservation holds: input and output.
    pub fn tokens(&self) -> u64 {
        self.tokens_in.saturating_add(self.tokens_out)
    }
}

/// Estimates `body` sent to `route`; never fails.
pub fn estimate(route: &ModelRoute, body: &[u8], default_max_tokens: u64) -> Ask {
    match read_request(route, body) {
        Ok(request) => estimate_request(route, &request, default_max_tokens),
        Err(_) => Ask {
            model: None,
            tokens_in: text_tokens(body.len() as u64),
            tokens_out: default_max_tokens,
            stream: route.format == WireFormat::Ollama,
            format: route.format,
        },
    }
}

/// Estimates a request already read (when the memory mirror read it too).
pub fn estimate_request(route: &ModelRoute, request: &Request, default_max_tokens: u64) -> Ask {
    let (messages, bytes) = match &request.conversation {
        Conversation::Chat(messages) => messages.iter().fold((0u64, 0u64), |(n, b), m| {
            let text = m.text.iter().map(|t| t.len() as u64).sum::<u64>();
            (n + 1, b.saturating_add(text))
        }),
        Conversation::Completion { system, prompts } => system
            .iter()
            .chain(prompts.iter().flatten())
            .fold((0u64, 0u64), |(n, b), t| {
                (n + 1, b.saturating_add(t.len() as u64))
            }),
    };
    Ask {
        model: request.model.clone(),
        tokens_in: text_tokens(bytes).saturating_add(messages.saturating_mul(TOKENS_PER_MESSAGE)),
        tokens_out: match request.max_output {
            Some(n) if n >= 0 => n as u64,
            _ => default_max_tokens,
        },
        stream: request.stream,
        format: route.format,
    }
}

/// `ceil(bytes / 4)`.
pub fn text_tokens(bytes: u64) -> u64 {
    bytes.div_ceil(BYTES_PER_TOKEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::routes::default_routes;

    fn ask(path: &str, body: &str) -> Ask {
        let route = default_routes()
            .into_iter()
            .find(|r| r.path == path)
            .unwrap();
        estimate(&route, body.as_bytes(), 1024)
    }

    #[test]
    fn chat_counts_every_message_and_its_text_parts() {
        // 5 + 3 + 8 bytes of text: ceil(16 / 4) = 4, plus 4 per message.
        let a = ask(
            "/v1/chat/completions",
            r#"{"model":"gpt-4o","messages":[
                {"role":"system","content":"brief"},
                {"role":"user","content":[{"type":"text","text":"abc"},{"type":"image_url","image_url":{"url":"data:,xxxxxxxx"}}]},
                {"role":"assistant","content":"12345678"}],
               "max_tokens":100}"#,
        );
        assert_eq!(
            a,
            Ask {
                model: Some("gpt-4o".into()),
                tokens_in: 4 + 12,
                tokens_out: 100,
                stream: false,
                format: WireFormat::OpenAi,
            }
        );
        assert_eq!(a.tokens(), 116);
        let none = ask("/api/chat", r#"{"messages":[]}"#);
        assert_eq!(
            (none.tokens_in, none.tokens_out, none.stream),
            (0, 1024, true)
        );
        // A message without content still costs its framing; two bytes are a token.
        let a = ask(
            "/api/chat",
            r#"{"messages":[{"role":"user"},{"role":"user","content":"é"}]}"#,
        );
        assert_eq!(a.tokens_in, 1 + 8);
    }

    #[test]
    fn completions_count_the_prompts_and_ollama_system() {
        let a = ask(
            "/api/generate",
            r#"{"model":"llama3","prompt":"why is the sky","system":"be kind"}"#,
        );
        // 14 + 7 bytes: ceil(21 / 4) = 6, two messages.
        assert_eq!((a.tokens_in, a.model.as_deref()), (6 + 8, Some("llama3")));
        let a = ask("/v1/completions", r#"{"prompt":["ab","cd"],"stream":true}"#);
        assert_eq!((a.tokens_in, a.stream), (1 + 8, true));
        assert_eq!(ask("/v1/completions", "{}").tokens_in, 0);
    }

    #[test]
    fn output_comes_from_the_dialects_field() {
        let out = |path: &str, body: &str| ask(path, body).tokens_out;
        let chat = "/v1/chat/completions";
        assert_eq!(
            out(
                chat,
                r#"{"messages":[],"max_tokens":5,"max_completion_tokens":7}"#
            ),
            7,
            "max_completion_tokens wins"
        );
        assert_eq!(out(chat, r#"{"messages":[],"max_tokens":5}"#), 5);
        assert_eq!(out(chat, r#"{"messages":[],"max_tokens":0}"#), 0);
        assert_eq!(out(chat, r#"{"messages":[],"max_tokens":"5"}"#), 1024);
        assert_eq!(out(chat, r#"{"messages":[],"max_tokens":2.5}"#), 1024);
        assert_eq!(
            out(chat, r#"{"messages":[],"max_tokens":18446744073709551615}"#),
            i64::MAX as u64
        );
        assert_eq!(
            out(chat, r#"{"messages":[],"options":{"num_predict":5}}"#),
            1024,
            "num_predict is Ollama's"
        );
        let ollama = "/api/chat";
        assert_eq!(
            out(ollama, r#"{"messages":[],"options":{"num_predict":64}}"#),
            64
        );
        assert_eq!(
            out(ollama, r#"{"messages":[],"options":{"num_predict":-1}}"#),
            1024,
            "negative is unlimited: the default"
        );
        assert_eq!(
            out(ollama, r#"{"messages":[],"options":{"num_predict":-2}}"#),
            1024
        );
        assert_eq!(out(ollama, r#"{"messages":[],"max_tokens":5}"#), 1024);
        assert_eq!(out(ollama, r#"{"messages":[],"options":"x"}"#), 1024);
        assert_eq!(out("/api/generate", r#"{"options":{"num_predict":3}}"#), 3);
    }

    #[test]
    fn streaming_follows_the_dialect_unless_the_request_says() {
        let stream = |path: &str, body: &str| ask(path, body).stream;
        assert!(stream("/api/chat", r#"{"messages":[]}"#));
        assert!(!stream("/api/chat", r#"{"messages":[],"stream":false}"#));
        assert!(!stream("/v1/chat/completions", r#"{"messages":[]}"#));
        assert!(stream(
            "/v1/chat/completions",
            r#"{"messages":[],"stream":true}"#
        ));
        assert!(stream("/api/generate", r#"{"prompt":"x"}"#));
    }

    #[test]
    fn an_unreadable_body_is_estimated_from_its_length() {
        for (path, body) in [
            ("/api/chat", "not json at all"),
            ("/v1/chat/completions", r#"{"messages":{"x":1}}"#),
            ("/api/chat", ""),
        ] {
            let a = ask(path, body);
            assert_eq!(a.tokens_in, (body.len() as u64).div_ceil(4), "{body}");
            assert_eq!((a.tokens_out, a.model), (1024, None));
            assert_eq!(a.stream, path == "/api/chat");
        }
    }
}
