//! The frame that ends a stream the budget cuts short, in the stream's own
//! framing, so that the client sees a reply that stopped for its length
//! (as when the engine reaches `max_tokens`) rather than a broken stream.
//!
//! Each frame has what the official clients require of a last frame:
//! Ollama's `done`, `done_reason` and the `message` of a chat or the
//! `response` of a generation; OpenAI's chunk with its `id`, `object`,
//! `created`, `model` and a choice whose `finish_reason` is `length`,
//! then the `[DONE]` sentinel.

use crate::memory::routes::{RouteKind, WireFormat};
use attach_contract::timestamp::rfc3339_millis;

/// The closing frame for a stream of `format` on a route of `kind`.
/// `model` and `id` are the stream's own (what [`super::meter::Meter`] read
/// from it), `now_ms` the time of the stop.
pub fn closing_frame(
    format: WireFormat,
    kind: RouteKind,
    model: Option<&str>,
    id: Option<&str>,
    now_ms: u64,
) -> Vec<u8> {
    let text = |s: &str| serde_json::Value::from(s).to_string();
    match format {
        WireFormat::Ollama => {
            let model = model
                .map(|m| format!(r#""model":{},"#, text(m)))
                .unwrap_or_default();
            let body = match kind {
                RouteKind::Chat => r#""message":{"role":"assistant","content":""}"#,
                RouteKind::Completion => r#""response":"""#,
            };
            format!(
                "{{{model}\"created_at\":{},{body},\"done\":true,\"done_reason\":\"length\"}}\n",
                text(&rfc3339_millis(now_ms)),
            )
            .into_bytes()
        }
        WireFormat::OpenAi => {
            let (object, choice) = match kind {
                RouteKind::Chat => ("chat.completion.chunk", r#""delta":{}"#),
                RouteKind::Completion => ("text_completion", r#""text":"""#),
            };
            format!(
                concat!(
                    r#"data: {{"id":{},"object":"{}","created":{},"model":{},"#,
                    r#""choices":[{{"index":0,{},"logprobs":null,"finish_reason":"length"}}]}}"#,
                    "\n\ndata: [DONE]\n\n"
                ),
                text(id.unwrap_or_default()),
                object,
                now_ms / 1000,
                text(model.unwrap_or_default()),
                choice,
            )
            .into_bytes()
        }
    }
}

/// `bytes` cut after each frame's end (NDJSON: a line; SSE: an event's
/// blank line), the last piece possibly unfinished.
pub fn frames(bytes: &[u8], format: WireFormat) -> Vec<&[u8]> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let end = match (format, bytes.get(i..)) {
            (WireFormat::Ollama, Some([b'\n', ..])) => Some(i + 1),
            (WireFormat::OpenAi, Some([b'\n', b'\n', ..])) => Some(i + 2),
            (WireFormat::OpenAi, Some([b'\r', b'\n', b'\r', b'\n', ..])) => Some(i + 4),
            _ => None,
        };
        match end {
            Some(end) => {
                pieces.extend(bytes.get(start..end));
                start = end;
                i = end;
            }
            None => i += 1,
        }
    }
    if start < bytes.len() || pieces.is_empty() {
        pieces.extend(bytes.get(start..));
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const NOW: u64 = 1_765_000_000_123;

    fn ollama(kind: RouteKind, model: Option<&str>) -> Value {
        let frame = closing_frame(WireFormat::Ollama, kind, model, Some("ignored"), NOW);
        let line = frame.strip_suffix(b"\n").expect("one NDJSON line");
        assert!(!line.contains(&b'\n'));
        serde_json::from_slice(line).unwrap()
    }

    /// The chunk's JSON, after checking the event framing and the sentinel.
    fn openai(kind: RouteKind, model: Option<&str>, id: Option<&str>) -> Value {
        let frame = closing_frame(WireFormat::OpenAi, kind, model, id, NOW);
        let text = String::from_utf8(frame).unwrap();
        let (event, done) = text.split_once("\n\n").unwrap();
        assert_eq!(done, "data: [DONE]\n\n");
        serde_json::from_str(event.strip_prefix("data: ").unwrap()).unwrap()
    }

    /// The Ollama API's final chat and generate objects (docs/api.md):
    /// `model`, `created_at`, `message` with a `role` / `response`,
    /// `done: true` and `done_reason`; the Python client's ChatResponse
    /// requires `message` (with `role`) and GenerateResponse `response`.
    #[test]
    fn ollama_frames_end_the_stream_for_length() {
        assert_eq!(
            ollama(RouteKind::Chat, Some("llama3.2")),
            json!({"model": "llama3.2", "created_at": "2025-12-06T05:46:40.123Z",
                   "message": {"role": "assistant", "content": ""},
                   "done": true, "done_reason": "length"})
        );
        assert_eq!(
            ollama(RouteKind::Completion, Some("a\"b")),
            json!({"model": "a\"b", "created_at": "2025-12-06T05:46:40.123Z",
                   "response": "", "done": true, "done_reason": "length"})
        );
        assert!(ollama(RouteKind::Chat, None).get("model").is_none());
    }

    /// OpenAI's streamed chunk objects: ChatCompletionChunk (`id`,
    /// `object: "chat.completion.chunk"`, `created`, `model`, `choices[]`
    /// of `index`, `delta`, `finish_reason`) and the streamed Completion
    /// (`object: "text_completion"`, choices of `index`, `text`,
    /// `logprobs`, `finish_reason`), each a string or integer as the
    /// schema types them.
    #[test]
    fn openai_frames_end_the_stream_for_length() {
        let chat = openai(RouteKind::Chat, Some("gpt-4o"), Some("chatcmpl-9"));
        assert_eq!(
            chat,
            json!({"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1_765_000_000u64,
                   "model": "gpt-4o",
                   "choices": [{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "length"}]})
        );
        let completion = openai(RouteKind::Completion, None, None);
        assert_eq!(
            completion,
            json!({"id": "", "object": "text_completion", "created": 1_765_000_000u64, "model": "",
                   "choices": [{"index": 0, "text": "", "logprobs": null, "finish_reason": "length"}]})
        );
    }

    #[test]
    fn the_closing_frames_are_read_as_their_stream_ends() {
        use crate::budget::meter::Meter;
        let frame = closing_frame(WireFormat::Ollama, RouteKind::Chat, Some("m"), None, NOW);
        let mut meter = Meter::new(WireFormat::Ollama, true, None);
        meter
            .feed(br#"{"model":"m","message":{"role":"assistant","content":"abcd"},"done":false}"#);
        meter.feed(b"\n");
        meter.feed(&frame);
        let m = meter.finish();
        assert_eq!((m.text_bytes, m.model.as_deref()), (4, Some("m")));

        let frame = closing_frame(
            WireFormat::OpenAi,
            RouteKind::Chat,
            Some("m"),
            Some("c"),
            NOW,
        );
        let mut strip = crate::budget::usage_strip::UsageStrip::new();
        assert_eq!(
            strip.chunk(&frame, true),
            frame,
            "whole events, nothing held"
        );
    }

    #[test]
    fn a_chunk_is_cut_after_each_frame() {
        let ndjson = b"{\"a\":1}\n{\"b\":2}\n{\"c\"";
        assert_eq!(
            frames(ndjson, WireFormat::Ollama),
            vec![&b"{\"a\":1}\n"[..], b"{\"b\":2}\n", b"{\"c\""]
        );
        let sse = b"data: 1\n\ndata: 2\r\n\r\ndata: [DONE]\n\n";
        assert_eq!(
            frames(sse, WireFormat::OpenAi),
            vec![&b"data: 1\n\n"[..], b"data: 2\r\n\r\n", b"data: [DONE]\n\n"]
        );
        assert_eq!(frames(b"", WireFormat::OpenAi), vec![&b""[..]]);
        assert_eq!(
            frames(b"data: 1\n", WireFormat::OpenAi),
            vec![&b"data: 1\n"[..]]
        );
        for (bytes, format) in [
            (&ndjson[..], WireFormat::Ollama),
            (&sse[..], WireFormat::OpenAi),
        ] {
            assert_eq!(frames(bytes, format).concat(), bytes);
        }
    }
}
