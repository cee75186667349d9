//! A reply's tokens, counted as its body streams past.
//!
//! The engine's own counts are taken when a frame reports them (Ollama's
//! `prompt_eval_count`/`eval_count`, OpenAI's `usage`); until then, and
//! when none comes, the text generated so far stands in for the output.
//! The body passes untouched; the meter keeps only an unfinished frame
//! (within [`MAX_FRAME`]) and its tallies, whatever the upstream sends.

use super::estimate::text_tokens;
use crate::memory::routes::WireFormat;
use crate::model_reply::frame::Frame;
use crate::model_reply::framing::{Frames, Framing, MAX_FRAME, Reader};

/// What a reply said it cost, and what it carried.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metered {
    /// The engine's input count, if it reported one.
    pub tokens_in: Option<u64>,
    /// The engine's output count, if it reported one.
    pub tokens_out: Option<u64>,
    /// Bytes of generated text (every choice, reasoning included), and of
    /// frames too large to read, which count as if all text: a reply
    /// cannot pass as cheaper by hiding its text in frames nobody reads.
    pub text_bytes: u64,
    /// The model that answered.
    pub model: Option<String>,
}

#[derive(Debug)]
pub struct Meter {
    frames: Frames,
    tally: Tally,
}

#[derive(Debug, Default)]
struct Tally {
    metered: Metered,
    /// The stream's completion id (OpenAI), for a frame that closes it.
    id: Option<String>,
}

impl Meter {
    /// `stream` is the request's own flag: it picks the framing when the
    /// reply's `content-type` does not.
    pub fn new(format: WireFormat, stream: bool, content_type: Option<&str>) -> Self {
        Meter {
            frames: Frames::new(Framing::of(format, stream, content_type), MAX_FRAME),
            tally: Tally::default(),
        }
    }

    /// Takes the next piece of the reply body, as it passes.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.frames.feed(chunk, &mut self.tally);
    }

    /// Output tokens passed so far: the engine's count once a frame
    /// reported one, else the text's estimate.
    pub fn tokens_so_far(&self) -> u64 {
        let m = &self.tally.metered;
        m.tokens_out.unwrap_or_else(|| text_tokens(m.text_bytes))
    }

    /// The model that answered, as far as the reply has told.
    pub fn model(&self) -> Option<&str> {
        self.tally.metered.model.as_deref()
    }

    /// The stream's completion id, as far as the reply has told.
    pub fn id(&self) -> Option<&str> {
        self.tally.id.as_deref()
    }

    /// Ends the reply: a last frame without its line end still counts.
    pub fn finish(mut self) -> Metered {
        self.frames.finish(&mut self.tally);
        self.tally.metered
    }
}

impl Reader for Tally {
    /// The frame limit bounds what is held; the meter needs no other.
    fn hold(&mut self, _: usize) -> bool {
        true
    }

    fn release(&mut self, _: usize) {}

    fn frame(&mut self, bytes: &[u8]) {
        let Some(frame) = Frame::read(bytes) else {
            return;
        };
        let m = &mut self.metered;
        if m.model.is_none() {
            m.model = frame.model().map(str::to_owned);
        }
        if self.id.is_none() {
            self.id = frame.id().map(str::to_owned);
        }
        m.text_bytes = m.text_bytes.saturating_add(frame.generated_bytes() as u64);
        m.tokens_in = frame.tokens_in().or(m.tokens_in);
        m.tokens_out = frame.tokens_out().or(m.tokens_out);
    }

    fn skipped(&mut self, n: usize) {
        let m = &mut self.metered;
        m.text_bytes = m.text_bytes.saturating_add(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meter(format: WireFormat, stream: bool, ct: Option<&str>, chunks: &[&[u8]]) -> Metered {
        let mut m = Meter::new(format, stream, ct);
        for chunk in chunks {
            m.feed(chunk);
        }
        m.finish()
    }

    /// The same body split at every offset, and fed one byte at a time,
    /// meters the same as in one piece.
    fn assert_split_invariant(
        format: WireFormat,
        stream: bool,
        ct: Option<&str>,
        body: &[u8],
    ) -> Metered {
        let whole = meter(format, stream, ct, &[body]);
        for i in 0..=body.len() {
            let (a, b) = body.split_at(i);
            assert_eq!(
                meter(format, stream, ct, &[a, &[], b]),
                whole,
                "split at {i}"
            );
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(meter(format, stream, ct, &bytes), whole);
        whole
    }

    #[test]
    fn ollama_stream_and_its_counts() {
        let body = concat!(
            r#"{"model":"llama3.2","created_at":"2025-01-01T00:00:00Z","message":{"role":"assistant","content":"Bon"},"done":false}"#,
            "\n",
            r#"{"model":"llama3.2","message":{"role":"assistant","content":"jour ☕","thinking":"hm"},"done":false}"#,
            "\r\n\n",
            r#"{"error":"boom"}"#,
            "\n",
            r#"{"model":"llama3.2","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":26,"eval_count":7}"#,
        );
        let m = assert_split_invariant(
            WireFormat::Ollama,
            true,
            Some("application/x-ndjson"),
            body.as_bytes(),
        );
        assert_eq!(
            m,
            Metered {
                tokens_in: Some(26),
                tokens_out: Some(7),
                text_bytes: 3 + 8 + 2,
                model: Some("llama3.2".into()),
            }
        );
        let generate =
            r#"{"model":"m","response":"42","done":true,"prompt_eval_count":3,"eval_count":1}"#;
        let m = assert_split_invariant(WireFormat::Ollama, false, None, generate.as_bytes());
        assert_eq!(
            (m.tokens_in, m.tokens_out, m.text_bytes),
            (Some(3), Some(1), 2)
        );
    }

    #[test]
    fn openai_json_and_sse() {
        let json = r#"{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o-2024-08-06",
            "choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}"#;
        let m = assert_split_invariant(
            WireFormat::OpenAi,
            false,
            Some("application/json"),
            json.as_bytes(),
        );
        assert_eq!(
            m,
            Metered {
                tokens_in: Some(9),
                tokens_out: Some(3),
                text_bytes: 6,
                model: Some("gpt-4o-2024-08-06".into()),
            }
        );

        let sse = concat!(
            ": keep-alive\r\n\r\n",
            "data: {\"id\":\"c1\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],\"usage\":null}\r\n\r\n",
            "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Grüß\"}},{\"index\":1,\"delta\":{\"content\":\"xy\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\r\r",
            "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":4}}\n\n",
            "data: [DONE]\n\n",
        );
        let m = assert_split_invariant(
            WireFormat::OpenAi,
            true,
            Some("text/event-stream"),
            sse.as_bytes(),
        );
        assert_eq!(
            m,
            Metered {
                tokens_in: Some(11),
                tokens_out: Some(4),
                text_bytes: 6 + 2,
                model: Some("gpt-4o".into()),
            }
        );
        // Without a usage event, only the text tells.
        let no_usage = sse.replace("\"usage\":{", "\"x\":{");
        let m = meter(WireFormat::OpenAi, true, None, &[no_usage.as_bytes()]);
        assert_eq!((m.tokens_in, m.tokens_out, m.text_bytes), (None, None, 8));
    }

    #[test]
    fn tokens_so_far_follow_the_text_until_the_engine_counts() {
        let mut m = Meter::new(WireFormat::OpenAi, true, None);
        assert_eq!((m.tokens_so_far(), m.model(), m.id()), (0, None, None));
        m.feed(b"data: {\"id\":\"c9\",\"model\":\"m\",\"choices\":[{\"delta\":{\"content\":\"abcde\"}}]}\n\n");
        assert_eq!(
            (m.tokens_so_far(), m.model(), m.id()),
            (2, Some("m"), Some("c9"))
        );
        m.feed(b"data: {\"choices\":[{\"delta\":{\"content\":\"abc\"}}]}\n");
        assert_eq!(
            m.tokens_so_far(),
            2,
            "an unfinished event is not counted yet"
        );
        m.feed(b"\n");
        assert_eq!(m.tokens_so_far(), 2);
        m.feed(b"data: {\"choices\":[{\"delta\":{\"content\":\"z\"}}]}\n\n");
        assert_eq!(m.tokens_so_far(), 3);
        m.feed(
            b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":40}}\n\n",
        );
        assert_eq!(m.tokens_so_far(), 40);

        let mut o = Meter::new(WireFormat::Ollama, true, None);
        o.feed(b"{\"response\":\"abcdefghi\"}\n");
        assert_eq!(o.tokens_so_far(), 3);
        o.feed(b"{\"response\":\"\",\"done\":true,\"eval_count\":2}\n");
        assert_eq!(o.tokens_so_far(), 2);
    }

    #[test]
    fn an_overlong_frame_counts_as_text_and_memory_stays_bounded() {
        let huge = "x".repeat(MAX_FRAME + 10);
        let body = format!(
            "{{\"response\":\"a\"}}\n{{\"response\":\"{huge}\"}}\n{{\"response\":\"b\",\"eval_count\":9}}\n"
        );
        let mut m = Meter::new(WireFormat::Ollama, true, None);
        for chunk in body.as_bytes().chunks(4000) {
            m.feed(chunk);
            assert!(m.tokens_so_far() <= text_tokens(body.len() as u64));
        }
        let got = m.finish();
        let skipped = huge.len() as u64 + r#"{"response":""}"#.len() as u64;
        assert_eq!((got.text_bytes, got.tokens_out), (1 + skipped + 1, Some(9)));

        let plain = format!("{{\"response\":\"{huge}\",\"eval_count\":1}}");
        let got = meter(WireFormat::Ollama, false, None, &[plain.as_bytes()]);
        assert_eq!((got.text_bytes, got.tokens_out), (plain.len() as u64, None));
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(256))]

        /// Arbitrary bytes in arbitrary chunks never panic, in any framing.
        #[test]
        fn never_panics(
            chunks in proptest::collection::vec(
                proptest::collection::vec(proptest::sample::select(b"data: {}[]\"\r\n:choices\xc3\xa9 x".to_vec()), 0..40),
                0..8,
            ),
        ) {
            for (format, stream, ct) in [
                (WireFormat::Ollama, true, None),
                (WireFormat::Ollama, false, None),
                (WireFormat::OpenAi, true, Some("text/event-stream")),
            ] {
                let mut m = Meter::new(format, stream, ct);
                for chunk in &chunks {
                    m.feed(chunk);
                    let _ = m.tokens_so_far();
                }
                m.finish();
            }
        }

        /// A generated stream meters the same however it is cut, and its
        /// text is all counted.
        #[test]
        fn any_split_meters_the_same(
            pieces in proptest::collection::vec("[a-zé☕🦀\\\\\"]{0,6}", 1..6),
            cuts in proptest::collection::vec(0usize..400, 0..6),
            sse in proptest::prelude::any::<bool>(),
        ) {
            let mut body = String::new();
            for p in &pieces {
                if sse {
                    let frame = serde_json::json!({"choices": [{"delta": {"content": p}}]});
                    body.push_str(&format!("data: {frame}\r\n\r\n"));
                } else {
                    body.push_str(&format!("{}\n", serde_json::json!({"response": p})));
                }
            }
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(body.len())).collect();
            cuts.sort_unstable();
            let format = if sse { WireFormat::OpenAi } else { WireFormat::Ollama };
            let mut m = Meter::new(format, true, None);
            let mut start = 0;
            for cut in cuts {
                m.feed(&body.as_bytes()[start..cut]);
                start = cut;
            }
            m.feed(&body.as_bytes()[start..]);
            let want: usize = pieces.iter().map(String::len).sum();
            proptest::prop_assert_eq!(m.finish().text_bytes, want as u64);
        }
    }
}
