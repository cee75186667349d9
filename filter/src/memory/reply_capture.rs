//! The text of a model reply, copied out as its body streams past.
//!
//! The filter forwards every chunk untouched and never holds the reply, so a
//! capture keeps only an unfinished line (or server-sent event) and the text
//! so far, both bounded whatever the upstream sends. Chunk boundaries fall
//! anywhere, even inside a UTF-8 character or a `\r\n`: bytes are only ever
//! split on ASCII line ends, and text is decoded from whole JSON values.
//! What it keeps draws from the VM's reply budget; when that has no room
//! the reply is cut there, as at the cap. The frames and their fields are
//! [`crate::model_reply`]'s, which the budget's meter reads as well.

use super::Capped;
use super::budget::Lease;
use super::routes::WireFormat;
use crate::model_reply::frame::Frame;
use crate::model_reply::framing::{Frames, Framing, Reader};

/// Room for a frame around its text: ids, roles, finish reasons, usage.
const FRAME_SLACK: usize = 64 * 1024;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    pub text: String,
    /// Text was cut at the cap, or a frame too large to buffer was skipped.
    pub truncated: bool,
    pub tokens_in: Option<u64>,
    pub tokens_out: Option<u64>,
    /// The model that answered, which may name a more precise version than
    /// the one asked for.
    pub model: Option<String>,
}

#[derive(Debug)]
pub struct ReplyCapture {
    frames: Frames,
    out: Collected,
}

#[derive(Debug)]
struct Collected {
    text: Capped,
    dropped: bool,
    /// The text and the buffers' share of the VM's reply budget.
    held: Lease,
    tokens_in: Option<u64>,
    tokens_out: Option<u64>,
    model: Option<String>,
}

/// The longest line, event data or plain body kept for a text cap of `cap`
/// bytes: JSON escapes spend at most six bytes on one byte of text.
fn frame_limit(cap: usize) -> usize {
    cap.saturating_mul(6).saturating_add(FRAME_SLACK)
}

impl ReplyCapture {
    /// `stream` is the request's own [`super::prompt::Prompt::stream`]: it
    /// picks the framing when the reply's `content-type` does not. At most
    /// `cap` bytes of text are kept, and only while `held` finds room.
    pub fn new(
        format: WireFormat,
        stream: bool,
        content_type: Option<&str>,
        cap: usize,
        held: Lease,
    ) -> Self {
        ReplyCapture {
            frames: Frames::new(Framing::of(format, stream, content_type), frame_limit(cap)),
            out: Collected {
                text: Capped::new(cap),
                dropped: false,
                held,
                tokens_in: None,
                tokens_out: None,
                model: None,
            },
        }
    }

    /// Takes the next piece of the reply body, as it passes.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.frames.feed(chunk, &mut self.out);
    }

    /// Ends the reply: a last line without its line end still counts.
    pub fn finish(mut self) -> Reply {
        self.frames.finish(&mut self.out);
        let out = self.out;
        Reply {
            text: out.text.text,
            truncated: out.text.truncated || out.dropped,
            tokens_in: out.tokens_in,
            tokens_out: out.tokens_out,
            model: out.model,
        }
    }
}

impl Reader for Collected {
    /// Takes `n` bytes of the VM's reply budget; refused, the text ends
    /// where it is (the rest of the reply is still read for its metadata).
    fn hold(&mut self, n: usize) -> bool {
        let held = self.held.grow(n);
        if !held {
            self.text.cut();
        }
        held
    }

    fn release(&mut self, n: usize) {
        self.held.shrink(n);
    }

    fn frame(&mut self, bytes: &[u8]) {
        let Some(frame) = Frame::read(bytes) else {
            return;
        };
        if self.model.is_none() {
            self.model = frame.model().map(str::to_owned);
        }
        for piece in frame.reply_text() {
            self.push_text(piece);
        }
        self.tokens_in = frame.tokens_in().or(self.tokens_in);
        self.tokens_out = frame.tokens_out().or(self.tokens_out);
    }

    fn skipped(&mut self, _: usize) {
        self.dropped = true;
    }
}

impl Collected {
    fn push_text(&mut self, piece: &str) {
        let most = piece.len().min(self.text.room());
        if !self.hold(most) {
            return;
        }
        let before = self.text.len();
        self.text.push(piece);
        let added = self.text.len().saturating_sub(before);
        self.held.shrink(most.saturating_sub(added));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::budget::Budget;

    const CAP: usize = 4096;

    /// A share of a reply budget nothing else draws from.
    fn unbounded() -> Lease {
        Budget::new(0, usize::MAX).for_reply()
    }

    fn within(limit: usize) -> Lease {
        Budget::new(0, limit).for_reply()
    }

    fn capture(
        format: WireFormat,
        stream: bool,
        content_type: Option<&str>,
        cap: usize,
        chunks: &[&[u8]],
    ) -> Reply {
        let mut c = ReplyCapture::new(format, stream, content_type, cap, unbounded());
        for chunk in chunks {
            c.feed(chunk);
        }
        c.finish()
    }

    /// The same body split at every offset, and fed one byte at a time,
    /// gives the same reply as in one piece.
    fn assert_split_invariant(
        format: WireFormat,
        stream: bool,
        content_type: Option<&str>,
        cap: usize,
        body: &[u8],
    ) -> Reply {
        let whole = capture(format, stream, content_type, cap, &[body]);
        for i in 0..=body.len() {
            let (a, b) = body.split_at(i);
            assert_eq!(
                capture(format, stream, content_type, cap, &[a, &[], b]),
                whole,
                "split at {i}"
            );
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(capture(format, stream, content_type, cap, &bytes), whole);
        whole
    }

    const OLLAMA_CHAT_STREAM: &str = concat!(
        r#"{"model":"llama3.2","created_at":"2025-01-01T00:00:00Z","message":{"role":"assistant","content":"Bon"},"done":false}"#,
        "\n",
        r#"{"model":"llama3.2","created_at":"2025-01-01T00:00:00Z","message":{"role":"assistant","content":"jour, "},"done":false}"#,
        "\n",
        r#"{"model":"llama3.2","message":{"role":"assistant","content":"café ☕ 🦀"},"done":false}"#,
        "\r\n",
        "\n",
        r#"{"model":"llama3.2","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","total_duration":1,"prompt_eval_count":26,"eval_count":7}"#,
        "\n",
    );

    #[test]
    fn ollama_chat_stream() {
        let r = assert_split_invariant(
            WireFormat::Ollama,
            true,
            Some("application/x-ndjson"),
            CAP,
            OLLAMA_CHAT_STREAM.as_bytes(),
        );
        assert_eq!(
            r,
            Reply {
                text: "Bonjour, café ☕ 🦀".into(),
                truncated: false,
                tokens_in: Some(26),
                tokens_out: Some(7),
                model: Some("llama3.2".into()),
            }
        );
        // Without a content type the request's own `stream` decides.
        let bare = capture(
            WireFormat::Ollama,
            true,
            None,
            CAP,
            &[OLLAMA_CHAT_STREAM.as_bytes()],
        );
        assert_eq!(bare, r);
    }

    #[test]
    fn ollama_generate_stream_without_a_final_line_end() {
        let body = concat!(
            r#"{"model":"m","response":"The sky","done":false}"#,
            "\n",
            r#"{"model":"m","response":" is blue.","done":false}"#,
            "\n",
            r#"{"error":"model unloaded"}"#,
            "\n",
            r#"{"model":"m","response":"","done":true,"prompt_eval_count":3,"eval_count":4}"#,
        );
        let r = assert_split_invariant(WireFormat::Ollama, true, None, CAP, body.as_bytes());
        assert_eq!(r.text, "The sky is blue.");
        assert_eq!(
            (r.tokens_in, r.tokens_out, r.truncated),
            (Some(3), Some(4), false)
        );
    }

    #[test]
    fn plain_json_replies() {
        let ollama = r#"{"model":"llama3.2","message":{"role":"assistant","content":"Hi ✋"},"done":true,"prompt_eval_count":5,"eval_count":2}"#;
        let r = assert_split_invariant(
            WireFormat::Ollama,
            false,
            Some("application/json; charset=utf-8"),
            CAP,
            ollama.as_bytes(),
        );
        assert_eq!(
            (
                r.text.as_str(),
                r.tokens_in,
                r.tokens_out,
                r.model.as_deref()
            ),
            ("Hi ✋", Some(5), Some(2), Some("llama3.2"))
        );

        let generate = r#"{"model":"m","response":"42","done":true}"#;
        let r = capture(
            WireFormat::Ollama,
            false,
            Some("application/json"),
            CAP,
            &[generate.as_bytes()],
        );
        assert_eq!((r.text.as_str(), r.tokens_in), ("42", None));

        let openai = r#"{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o-2024-08-06",
            "choices":[{"index":0,"message":{"role":"assistant","content":"Hello!","refusal":null},"logprobs":null,"finish_reason":"stop"}],
            "usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12,"prompt_tokens_details":{"cached_tokens":0}}}"#;
        let r = assert_split_invariant(
            WireFormat::OpenAi,
            false,
            Some("application/json"),
            CAP,
            openai.as_bytes(),
        );
        assert_eq!(
            (
                r.text.as_str(),
                r.tokens_in,
                r.tokens_out,
                r.model.as_deref()
            ),
            ("Hello!", Some(9), Some(3), Some("gpt-4o-2024-08-06"))
        );

        let completion = r#"{"choices":[{"text":" there","index":0}],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#;
        let r = capture(
            WireFormat::OpenAi,
            false,
            None,
            CAP,
            &[completion.as_bytes()],
        );
        assert_eq!(r.text, " there");

        let error = r#"{"error":{"message":"no such model","type":"invalid_request_error"}}"#;
        let r = capture(
            WireFormat::OpenAi,
            false,
            Some("application/json"),
            CAP,
            &[error.as_bytes()],
        );
        assert_eq!(r, Reply::default());
    }

    const OPENAI_CHAT_SSE: &str = concat!(
        ": keep-alive\r\n\r\n",
        "data: {\"id\":\"c1\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\r\n\r\n",
        "data: {\"id\":\"c1\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Grüß\"}}]}\n\n",
        "event: message\nid: 3\ndata: {\"choices\":[{\"index\":1,\"delta\":{\"content\":\"OTHER\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\r\ndata:\"delta\":{\"content\":\" dich 👋\"}}]}\r\n\r\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\r\r",
        "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":4,\"total_tokens\":15}}\n\n",
        "data: [DONE]\n\n",
    );

    #[test]
    fn openai_chat_sse() {
        let r = assert_split_invariant(
            WireFormat::OpenAi,
            true,
            Some("text/event-stream; charset=utf-8"),
            CAP,
            OPENAI_CHAT_SSE.as_bytes(),
        );
        assert_eq!(
            r,
            Reply {
                text: "Grüß dich 👋".into(),
                truncated: false,
                tokens_in: Some(11),
                tokens_out: Some(4),
                model: Some("gpt-4o".into()),
            }
        );
        // Ollama's OpenAI-compatible API streams SSE too; the header decides.
        let via_ollama = capture(
            WireFormat::Ollama,
            true,
            Some("Text/Event-Stream"),
            CAP,
            &[OPENAI_CHAT_SSE.as_bytes()],
        );
        assert_eq!(via_ollama, r);
    }

    #[test]
    fn openai_completion_sse_with_a_last_event_left_open() {
        let body = concat!(
            "data: {\"choices\":[{\"text\":\"Once\",\"index\":0}]}\n\n",
            "data:{\"choices\":[{\"text\":\" upon\",\"index\":0}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":2}}",
        );
        let r = assert_split_invariant(WireFormat::OpenAi, true, None, CAP, body.as_bytes());
        assert_eq!(r.text, "Once upon");
        assert_eq!((r.tokens_in, r.tokens_out), (Some(2), Some(2)));
    }

    #[test]
    fn a_split_inside_crlf_is_one_line_end() {
        let body = b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\r\ndata: x\r\n\r\n";
        let at = body.iter().position(|&b| b == b'\r').unwrap() + 1;
        let (a, b) = body.split_at(at);
        assert_eq!(b.first(), Some(&b'\n'));
        // The two data lines belong to one event, whose data is then not
        // JSON: a `\r` ending one chunk must not make the `\n` a blank line.
        let r = capture(
            WireFormat::OpenAi,
            true,
            Some("text/event-stream"),
            CAP,
            &[a, b],
        );
        assert_eq!(r.text, "");
        let r = capture(
            WireFormat::OpenAi,
            true,
            Some("text/event-stream"),
            CAP,
            &[body],
        );
        assert_eq!(r.text, "");
    }

    #[test]
    fn a_split_inside_a_utf8_character() {
        let body = "{\"response\":\"é🦀\"}\n".as_bytes();
        let crab = body.iter().position(|&b| b == 0xf0).unwrap();
        for at in [crab - 1, crab + 1, crab + 2, crab + 3] {
            let (a, b) = body.split_at(at);
            let r = capture(WireFormat::Ollama, true, None, CAP, &[a, b]);
            assert_eq!(r.text, "é🦀");
        }
    }

    #[test]
    fn text_past_the_cap_is_dropped_but_tokens_are_still_read() {
        let r = assert_split_invariant(
            WireFormat::Ollama,
            true,
            None,
            9,
            OLLAMA_CHAT_STREAM.as_bytes(),
        );
        assert_eq!(r.text, "Bonjour, ");
        assert!(r.truncated);
        assert_eq!((r.tokens_in, r.tokens_out), (Some(26), Some(7)));

        let r = capture(
            WireFormat::OpenAi,
            true,
            Some("text/event-stream"),
            4,
            &[OPENAI_CHAT_SSE.as_bytes()],
        );
        assert_eq!(r.text, "Grü", "cut on a char boundary");
        assert!(r.truncated);
        assert_eq!((r.tokens_in, r.tokens_out), (Some(11), Some(4)));

        let r = capture(
            WireFormat::OpenAi,
            true,
            Some("text/event-stream"),
            0,
            &[OPENAI_CHAT_SSE.as_bytes()],
        );
        assert_eq!(
            (r.text.as_str(), r.truncated, r.tokens_out),
            ("", true, Some(4))
        );
    }

    #[test]
    fn an_overlong_line_is_dropped_and_the_stream_goes_on() {
        let cap = 16;
        let limit = frame_limit(cap);
        let huge = format!("{{\"response\":\"{}\"}}", "x".repeat(limit));
        let body =
            format!("{{\"response\":\"a\"}}\n{huge}\n{{\"response\":\"b\",\"eval_count\":9}}\n");
        let chunks: Vec<&[u8]> = body.as_bytes().chunks(4000).collect();
        let r = capture(WireFormat::Ollama, true, None, cap, &chunks);
        assert_eq!(
            (r.text.as_str(), r.truncated, r.tokens_out),
            ("ab", true, Some(9))
        );

        // The same for an SSE event made of many small data lines.
        let mut sse = String::from("data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n");
        for _ in 0..=limit / 1000 {
            sse.push_str(&format!("data: {}\n", " ".repeat(1000)));
        }
        sse.push_str("\ndata: {\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\n\n");
        let r = capture(WireFormat::OpenAi, true, None, cap, &[sse.as_bytes()]);
        assert_eq!((r.text.as_str(), r.truncated), ("ab", true));

        // And a plain body: nothing to show for it but the flag.
        let plain = format!("{{\"response\":\"{}\"}}", "x".repeat(limit));
        let r = capture(
            WireFormat::Ollama,
            false,
            Some("application/json"),
            cap,
            &[plain.as_bytes()],
        );
        assert_eq!((r.text.as_str(), r.truncated), ("", true));
    }

    #[test]
    fn past_its_budget_a_reply_ends_there_in_every_framing() {
        // The piece that finds no room ends the text; what follows is still
        // read for its metadata.
        let mut c = ReplyCapture::new(WireFormat::Ollama, true, None, CAP, within(12));
        c.feed(OLLAMA_CHAT_STREAM.as_bytes());
        let r = c.finish();
        assert_eq!(
            (r.text.as_str(), r.truncated, r.tokens_out),
            ("Bonjour, ", true, Some(7))
        );

        // A plain body is held whole before it is read.
        let body = br#"{"model":"m","response":"42","done":true}"#;
        let plain = |limit| {
            let ct = Some("application/json");
            let mut c = ReplyCapture::new(WireFormat::Ollama, false, ct, CAP, within(limit));
            c.feed(&body[..10]);
            c.feed(&body[10..]);
            c.finish()
        };
        let r = plain(body.len() - 1);
        assert_eq!((r.text.as_str(), r.truncated, r.model), ("", true, None));
        let r = plain(body.len());
        assert_eq!((r.text.as_str(), r.truncated), ("42", false));

        // An event's data is held until the blank line that ends it.
        let ct = Some("text/event-stream");
        let mut c = ReplyCapture::new(WireFormat::OpenAi, true, ct, CAP, within(40));
        c.feed(OPENAI_CHAT_SSE.as_bytes());
        let r = c.finish();
        assert_eq!((r.text.as_str(), r.truncated), ("", true));
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(512))]

        /// Arbitrary bytes in arbitrary chunks never panic, in any framing,
        /// and never keep more text than the cap.
        #[test]
        fn never_panics(
            chunks in proptest::collection::vec(
                proptest::collection::vec(proptest::sample::select(b"data: {}[]\"\r\n:choices\xc3\xa9 x".to_vec()), 0..40),
                0..8,
            ),
            noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            cap in 0usize..8,
        ) {
            for (format, stream, ct) in [
                (WireFormat::Ollama, true, None),
                (WireFormat::Ollama, false, None),
                (WireFormat::OpenAi, true, Some("text/event-stream")),
                (WireFormat::OpenAi, false, Some("application/json")),
            ] {
                let mut c = ReplyCapture::new(format, stream, ct, cap, unbounded());
                for chunk in &chunks {
                    c.feed(chunk);
                }
                c.feed(&noise);
                proptest::prop_assert!(c.finish().text.len() <= cap);
            }
        }

        /// Generated streams give the same reply however they are cut.
        #[test]
        fn any_split_of_a_stream_gives_the_same_reply(
            pieces in proptest::collection::vec("[a-zé☕🦀\\\\\"]{0,6}", 1..6),
            cuts in proptest::collection::vec(0usize..400, 0..6),
        ) {
            let mut body = String::new();
            let mut want = String::new();
            for p in &pieces {
                body.push_str("data: ");
                body.push_str(&serde_json::json!({"choices": [{"delta": {"content": p}}]}).to_string());
                body.push_str("\r\n\r\n");
                want.push_str(p);
            }
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(body.len())).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut start = 0;
            for cut in cuts {
                chunks.push(&body.as_bytes()[start..cut]);
                start = cut;
            }
            chunks.push(&body.as_bytes()[start..]);
            let r = capture(WireFormat::OpenAi, true, None, CAP, &chunks);
            proptest::prop_assert_eq!(r.text, want);
        }

        /// Under any budget, however a stream is cut, the text kept is a
        /// prefix of the reply no longer than the budget, flagged when it
        /// is short, and the budget is whole again once the reply ends.
        #[test]
        fn a_reply_keeps_within_its_budget_and_gives_it_back(
            pieces in proptest::collection::vec("[a-zé☕🦀\\\\\"]{0,6}", 1..6),
            cuts in proptest::collection::vec(0usize..400, 0..6),
            limit in 0usize..300,
            sse in proptest::prelude::any::<bool>(),
        ) {
            let mut body = String::new();
            let mut want = String::new();
            for p in &pieces {
                if sse {
                    let frame = serde_json::json!({"choices": [{"delta": {"content": p}}]});
                    body.push_str(&format!("data: {frame}\r\n\r\n"));
                } else {
                    let frame = serde_json::json!({"response": p});
                    body.push_str(&format!("{frame}\n"));
                }
                want.push_str(p);
            }
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(body.len())).collect();
            cuts.sort_unstable();
            let budget = Budget::new(0, limit);
            let format = if sse { WireFormat::OpenAi } else { WireFormat::Ollama };
            let mut c = ReplyCapture::new(format, true, None, CAP, budget.for_reply());
            let mut start = 0;
            for cut in cuts {
                c.feed(&body.as_bytes()[start..cut]);
                start = cut;
            }
            c.feed(&body.as_bytes()[start..]);
            let r = c.finish();
            proptest::prop_assert!(want.starts_with(&r.text), "{:?} of {:?}", r.text, want);
            proptest::prop_assert!(r.text.len() <= limit);
            proptest::prop_assert!(r.truncated || r.text == want);
            proptest::prop_assert!(budget.for_reply().grow(limit), "all given back");
        }
    }
}
