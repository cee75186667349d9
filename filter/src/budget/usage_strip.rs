//! An OpenAI event stream given back as the client asked for it, after
//! [`super::include_usage`] asked the engine for its usage.
//!
//! Asked for usage, an engine adds one event whose `choices` is empty and
//! whose `usage` holds the counts, and a `"usage":null` member to every
//! other chunk. Both are taken out here and nothing else is touched, so
//! the client gets byte for byte the stream it would have got.
//!
//! Whole events pass at once; only an unfinished one is held, and one that
//! outgrows [`MAX_HELD`] passes untouched as it comes: a stream is never
//! held back for long, whatever the engine sends.

use super::json_text::Object;
use crate::model_reply::frame::Frame;
use crate::model_reply::framing::{Lines, Piece, sse_data};

/// The most of one unfinished event held; engines' chunks are far smaller.
pub const MAX_HELD: usize = 64 * 1024;

#[derive(Debug)]
pub struct UsageStrip {
    lines: Lines,
    /// The unfinished event, raw.
    held: Vec<u8>,
    /// No byte of the current line came yet, so a line end now ends the
    /// event.
    at_line_start: bool,
    /// The current event outgrew [`MAX_HELD`]: the rest of it passes as it
    /// comes.
    passing: bool,
    /// What the last line end did, which the `\n` of a `\r\n` that a
    /// chunk boundary cut off follows.
    last_end: LastEnd,
    usage: Option<(u64, u64)>,
}

impl Default for UsageStrip {
    fn default() -> Self {
        Self::new()
    }
}

impl UsageStrip {
    pub fn new() -> Self {
        UsageStrip {
            lines: Lines::default(),
            held: Vec::new(),
            at_line_start: true,
            passing: false,
            last_end: LastEnd::InEvent,
            usage: None,
        }
    }

    /// The engine's counts `(prompt_tokens, completion_tokens)`, once the
    /// usage event went by (a count it left out is 0).
    pub fn usage(&self) -> Option<(u64, u64)> {
        self.usage
    }

    /// The bytes to pass on now for the next piece of the stream; at
    /// `end_of_stream` nothing is held back.
    pub fn chunk(&mut self, chunk: &[u8], end_of_stream: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(chunk.len());
        let mut lines = self.lines;
        for piece in lines.split(chunk) {
            match piece {
                Piece::EndRest(lf) => match self.last_end {
                    LastEnd::InEvent => self.add(lf, &mut out),
                    LastEnd::Passed => out.extend_from_slice(lf),
                    LastEnd::Dropped => {}
                },
                Piece::Line { text, end } => {
                    self.add(text, &mut out);
                    self.add(end, &mut out);
                    if !text.is_empty() {
                        self.at_line_start = false;
                    }
                    if !end.is_empty() {
                        self.last_end = LastEnd::InEvent;
                        if self.at_line_start {
                            self.end_event(&mut out);
                        }
                        self.at_line_start = true;
                    }
                }
            }
        }
        self.lines = lines;
        if end_of_stream {
            self.end_event(&mut out);
        }
        out
    }

    fn add(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        if self.passing {
            out.extend_from_slice(bytes);
        } else if self.held.len().saturating_add(bytes.len()) > MAX_HELD {
            out.append(&mut std::mem::take(&mut self.held));
            out.extend_from_slice(bytes);
            self.passing = true;
        } else {
            self.held.extend_from_slice(bytes);
        }
    }

    fn end_event(&mut self, out: &mut Vec<u8>) {
        self.last_end = LastEnd::Passed;
        if std::mem::take(&mut self.passing) {
            return;
        }
        let event = std::mem::take(&mut self.held);
        match rewrite(&event) {
            Rewrite::Keep => out.extend_from_slice(&event),
            Rewrite::Usage(counts) => {
                self.usage = Some(counts);
                self.last_end = LastEnd::Dropped;
            }
            Rewrite::Data { at, with } => {
                out.extend_from_slice(event.get(..at.start).unwrap_or_default());
                out.extend_from_slice(&with);
                out.extend_from_slice(event.get(at.end..).unwrap_or_default());
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum LastEnd {
    /// It ended a line of the event being read.
    InEvent,
    /// It ended an event that was passed on.
    Passed,
    /// It ended the event taken out.
    Dropped,
}

enum Rewrite {
    Keep,
    /// The usage-only event: taken out whole.
    Usage((u64, u64)),
    /// The data at `at` becomes `with`.
    Data {
        at: std::ops::Range<usize>,
        with: Vec<u8>,
    },
}

/// What becomes of one whole event. Only an event with one `data` line is
/// read: engines write each chunk on one.
fn rewrite(event: &[u8]) -> Rewrite {
    let mut data = None;
    let mut offset = 0;
    for piece in Lines::default().split(event) {
        let Piece::Line { text, end } = piece else {
            continue;
        };
        if let Some(value) = sse_data(text) {
            if data.is_some() {
                return Rewrite::Keep;
            }
            let start = offset + text.len() - value.len();
            data = Some(start..start + value.len());
        }
        offset += text.len() + end.len();
    }
    let Some(at) = data else {
        return Rewrite::Keep;
    };
    let json = event.get(at.clone()).unwrap_or_default();
    if json == b"[DONE]" || serde_json::from_slice::<serde::de::IgnoredAny>(json).is_err() {
        return Rewrite::Keep;
    }
    let Some(chunk) = Object::at(json, 0) else {
        return Rewrite::Keep;
    };
    let usage = chunk.get(json, "usage").map(|m| m.value(json));
    if usage.is_some_and(|u| u.starts_with(b"{"))
        && chunk
            .get(json, "choices")
            .is_some_and(|c| is_empty_array(c.value(json)))
    {
        let frame = Frame::read(json);
        let count = |n: Option<u64>| n.unwrap_or(0);
        return Rewrite::Usage((
            count(frame.as_ref().and_then(Frame::tokens_in)),
            count(frame.as_ref().and_then(Frame::tokens_out)),
        ));
    }
    let Some(i) = chunk
        .members
        .iter()
        .position(|m| m.key_is(json, "usage") && m.value(json) == b"null")
    else {
        return Rewrite::Keep;
    };
    // With its comma: the one after it, or else the one before it.
    let members = &chunk.members;
    let cut = match (
        i.checked_sub(1).and_then(|p| members.get(p)),
        members.get(i),
        members.get(i + 1),
    ) {
        (_, Some(this), Some(next)) => this.start..next.start,
        (Some(before), Some(this), None) => before.value.end..this.value.end,
        (None, Some(this), None) => this.start..this.value.end,
        (_, None, _) => return Rewrite::Keep,
    };
    let mut with = Vec::with_capacity(json.len());
    with.extend_from_slice(json.get(..cut.start).unwrap_or_default());
    with.extend_from_slice(json.get(cut.end..).unwrap_or_default());
    Rewrite::Data { at, with }
}

fn is_empty_array(value: &[u8]) -> bool {
    value
        .strip_prefix(b"[")
        .and_then(|v| v.strip_suffix(b"]"))
        .is_some_and(|inner| inner.iter().all(u8::is_ascii_whitespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip_in(chunks: &[&[u8]]) -> (Vec<u8>, Option<(u64, u64)>) {
        let mut strip = UsageStrip::new();
        let mut out = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            out.extend(strip.chunk(chunk, i + 1 == chunks.len()));
        }
        (out, strip.usage())
    }

    /// Stripped at every split offset and one byte at a time, `with` gives
    /// `without`, and the usage is read.
    fn assert_strips(with: &[u8], without: &[u8], usage: Option<(u64, u64)>) {
        for at in 0..=with.len() {
            let (a, b) = with.split_at(at);
            let (out, got) = strip_in(&[a, b"", b]);
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(without),
                "split at {at}"
            );
            assert_eq!(got, usage, "split at {at}");
        }
        let bytes: Vec<&[u8]> = with.chunks(1).collect();
        assert_eq!(strip_in(&bytes), (without.to_vec(), usage));
    }

    /// A stream as OpenAI writes one, with or without `include_usage`.
    fn openai_stream(include_usage: bool, end: &str, pieces: &[&str]) -> String {
        let usage = if include_usage {
            r#","usage":null"#
        } else {
            ""
        };
        let mut s = String::new();
        for (i, p) in pieces.iter().enumerate() {
            let content = serde_json::to_string(p).unwrap();
            s.push_str(&format!(
                r#"data: {{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{{"index":0,"delta":{{"content":{content}}},"finish_reason":null}}]{usage}}}{end}{end}"#
            ));
            if i == 0 {
                s.push_str(&format!(": keep-alive{end}{end}"));
            }
        }
        s.push_str(&format!(
            r#"data: {{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{{"index":0,"delta":{{}},"finish_reason":"stop"}}]{usage}}}{end}{end}"#
        ));
        if include_usage {
            s.push_str(&format!(
                r#"data: {{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[],"usage":{{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}}}{end}{end}"#
            ));
        }
        s.push_str(&format!("data: [DONE]{end}{end}"));
        s
    }

    #[test]
    fn an_openai_stream_comes_back_as_it_was_asked() {
        for end in ["\n", "\r\n", "\r"] {
            let pieces = ["Hel", "lo \u{1f44b}", "\n\r"];
            assert_strips(
                openai_stream(true, end, &pieces).as_bytes(),
                openai_stream(false, end, &pieces).as_bytes(),
                Some((9, 3)),
            );
        }
    }

    #[test]
    fn usage_null_goes_wherever_it_is_with_its_comma() {
        let cases = [
            (r#"{"usage":null,"id":"x"}"#, r#"{"id":"x"}"#),
            (r#"{"usage" : null , "id":"x"}"#, r#"{"id":"x"}"#),
            (r#"{"id": "x", "usage": null}"#, r#"{"id": "x"}"#),
            (r#"{"id":"x" ,"usage":null }"#, r#"{"id":"x" }"#),
            (r#"{"usage":null}"#, r#"{}"#),
            (
                r#"{"a":{"usage":null},"usage":null,"b":1}"#,
                r#"{"a":{"usage":null},"b":1}"#,
            ),
        ];
        for (with, without) in cases {
            let with = format!("data: {with}\n\n");
            let without = format!("data: {without}\n\n");
            assert_strips(with.as_bytes(), without.as_bytes(), None);
        }
    }

    #[test]
    fn everything_else_passes_byte_for_byte() {
        let stream = concat!(
            "event: x\nid: 4\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\ndata: {}\n\n",
            "data: {\"choices\":[{}],\"usage\":{\"prompt_tokens\":1}}\n\n",
            "data: {\"choices\":[],\"usage\":null}\n\n",
            "data: {\"choices\":[],\"usage\":[]}\n\n",
            "data: {\"usage\":nul}\n\n",
            "data: {\"usage\":\"null\"}\n\n",
            "data:[1,{\"usage\":null}]\n\n",
            "\n\n: comment\n\n",
            "data: {\"usage\":null}",
        );
        // The last event, unfinished, is still read at the end.
        let without = stream.replace("data: {\"usage\":null}", "data: {}");
        let without = without.replace(",\"usage\":null}\n\n", "}\n\n");
        assert_strips(stream.as_bytes(), without.as_bytes(), None);
    }

    #[test]
    fn an_overlong_event_passes_as_it_comes() {
        let big = format!(
            "data: {{\"choices\":[],\"usage\":{{\"pad\":\"{}\"}}}}\n\n",
            "x".repeat(MAX_HELD)
        );
        let stream = format!("{big}data: {{\"id\":1,\"usage\":null}}\n\n");
        let mut strip = UsageStrip::new();
        let (a, b) = stream.as_bytes().split_at(MAX_HELD + 10);
        let first = strip.chunk(a, false);
        assert_eq!(first, a, "nothing is held past the bound");
        let mut out = first;
        out.extend(strip.chunk(b, false));
        assert_eq!(out, format!("{big}data: {{\"id\":1}}\n\n").into_bytes());
        assert!(strip.held.is_empty());
        assert_eq!(strip.usage(), None);
    }

    #[test]
    fn whole_events_pass_at_once() {
        let mut strip = UsageStrip::new();
        assert_eq!(
            strip.chunk(b"data: {\"a\":1}\n\ndata: {\"b\"", false),
            b"data: {\"a\":1}\n\n"
        );
        assert_eq!(strip.chunk(b":2}\n", false), b"");
        assert_eq!(strip.chunk(b"\n", false), b"data: {\"b\":2}\n\n");
        assert_eq!(strip.chunk(b"data: {", true), b"data: {");
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(256))]

        /// Streams as an engine writes them with and without include_usage:
        /// stripped, the first is the second, however it is cut.
        #[test]
        fn stripped_with_is_without(
            pieces in proptest::collection::vec("[a-zé☕🦀\\\\\"\n]{0,6}", 0..5),
            end in proptest::sample::select(vec!["\n", "\r\n", "\r"]),
            spaced in proptest::prelude::any::<bool>(),
            first in proptest::prelude::any::<bool>(),
            cuts in proptest::collection::vec(0usize..2000, 0..6),
        ) {
            let chunk = |content: &str, usage: bool| {
                let content = serde_json::to_string(content).unwrap();
                let (colon, comma) = if spaced { (": ", ", ") } else { (":", ",") };
                let body = format!(r#""id"{colon}"c","choices"{colon}[{{"index"{colon}0,"delta"{colon}{{"content"{colon}{content}}}}}]"#);
                let usage_member = format!(r#""usage"{colon}null"#);
                match (usage, first) {
                    (false, _) => format!("{{{body}}}"),
                    (true, true) => format!("{{{usage_member}{comma}{body}}}"),
                    (true, false) => format!("{{{body}{comma}{usage_member}}}"),
                }
            };
            let stream = |usage: bool| {
                let mut s = String::new();
                for p in &pieces {
                    s.push_str(&format!("data: {}{end}{end}", chunk(p, usage)));
                }
                if usage {
                    s.push_str(&format!(r#"data: {{"id":"c","choices":[],"usage":{{"prompt_tokens":5,"completion_tokens":{}}}}}{end}{end}"#, pieces.len()));
                }
                s.push_str(&format!("data: [DONE]{end}{end}"));
                s
            };
            let (with, without) = (stream(true), stream(false));
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(with.len())).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut start = 0;
            for cut in cuts {
                chunks.push(&with.as_bytes()[start..cut]);
                start = cut;
            }
            chunks.push(&with.as_bytes()[start..]);
            let (out, usage) = strip_in(&chunks);
            proptest::prop_assert_eq!(String::from_utf8_lossy(&out), without);
            proptest::prop_assert_eq!(usage, Some((5, pieces.len() as u64)));
        }
    }
}
