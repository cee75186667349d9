//! A reply body cut into frames as it streams past: one JSON document, the
//! lines of Ollama's NDJSON stream, or the `data` of OpenAI's server-sent
//! events.
//!
//! Chunk boundaries fall anywhere, even inside a UTF-8 character or a
//! `\r\n`: bytes are only ever split on ASCII line ends. Only an unfinished
//! frame is kept, within a limit and whatever room the reader grants; a
//! frame past either is skipped whole and the stream goes on.

use crate::memory::routes::WireFormat;

/// The most one line, event or plain body may buffer, whatever a reader
/// would allow.
pub const MAX_FRAME: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// One JSON document: a reply that does not stream.
    Json,
    /// Ollama's stream: one JSON object per line.
    Ndjson,
    /// OpenAI's stream: server-sent events whose `data` is JSON.
    Sse,
}

impl Framing {
    /// The reply's `content-type` decides; without one, `stream` (the
    /// request's own flag) and the dialect's streaming framing do.
    pub fn of(format: WireFormat, stream: bool, content_type: Option<&str>) -> Self {
        let essence = content_type
            .and_then(|ct| ct.split(';').next())
            .map(|ct| ct.trim().to_ascii_lowercase());
        match essence.as_deref() {
            Some("text/event-stream") => Framing::Sse,
            Some("application/x-ndjson") => Framing::Ndjson,
            Some("application/json") => Framing::Json,
            _ if !stream => Framing::Json,
            _ => match format {
                WireFormat::Ollama => Framing::Ndjson,
                WireFormat::OpenAi => Framing::Sse,
            },
        }
    }
}

/// Where lines end in a stream cut anywhere: at `\n`, `\r\n` or a lone `\r`
/// (the SSE rule; in NDJSON a raw `\r` can only be whitespace between
/// values).
#[derive(Clone, Copy, Debug, Default)]
pub struct Lines {
    /// The last chunk ended in `\r`, so a `\n` opening the next one belongs
    /// to the same line end.
    after_cr: bool,
}

/// A run of bytes of a chunk; the pieces of a chunk, in order, are all of
/// its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Bytes of a line, and the line end that closes it (`\n`, `\r\n` or
    /// `\r`), empty when the line goes on in the next chunk.
    Line { text: &'a [u8], end: &'a [u8] },
    /// The `\n` of a `\r\n` that a chunk boundary cut after its `\r`: that
    /// line end was already told.
    EndRest(&'a [u8]),
}

impl Lines {
    pub fn split<'a, 'l>(&'l mut self, chunk: &'a [u8]) -> Split<'a, 'l> {
        Split {
            lines: self,
            rest: chunk,
        }
    }
}

pub struct Split<'a, 'l> {
    lines: &'l mut Lines,
    rest: &'a [u8],
}

impl<'a> Iterator for Split<'a, '_> {
    type Item = Piece<'a>;

    fn next(&mut self) -> Option<Piece<'a>> {
        if self.rest.is_empty() {
            return None;
        }
        if std::mem::take(&mut self.lines.after_cr) && self.rest.starts_with(b"\n") {
            let (lf, after) = self.rest.split_at_checked(1)?;
            self.rest = after;
            return Some(Piece::EndRest(lf));
        }
        let Some(at) = self.rest.iter().position(|&b| b == b'\n' || b == b'\r') else {
            let text = std::mem::take(&mut self.rest);
            return Some(Piece::Line { text, end: b"" });
        };
        let (text, tail) = self.rest.split_at_checked(at)?;
        let (end, after) = tail.split_at_checked(if tail.starts_with(b"\r\n") { 2 } else { 1 })?;
        self.lines.after_cr = end == b"\r" && after.is_empty();
        self.rest = after;
        Some(Piece::Line { text, end })
    }
}

/// The value of an SSE line naming the `data` field (one leading space
/// dropped), `None` for any other line.
pub fn sse_data(line: &[u8]) -> Option<&[u8]> {
    let value = line.strip_prefix(b"data")?;
    match value.split_first() {
        Some((b':', value)) => Some(value.strip_prefix(b" ").unwrap_or(value)),
        // A line that is only the field name has an empty value.
        None => Some(value),
        Some(_) => None,
    }
}

/// What frames are handed to, and what grants the room to buffer them.
pub trait Reader {
    /// Room for `n` more buffered bytes; refused, the frame being buffered
    /// is skipped.
    fn hold(&mut self, n: usize) -> bool;
    /// `n` buffered bytes were freed.
    fn release(&mut self, n: usize);
    /// One whole frame: the JSON body, an NDJSON line, or an event's
    /// `data` (the `[DONE]` sentinel is not a frame).
    fn frame(&mut self, frame: &[u8]);
    /// `n` bytes of a frame too large to buffer went by unread (`n` may be
    /// 0 when the frame is given up).
    fn skipped(&mut self, n: usize);
}

#[derive(Debug)]
pub struct Frames {
    framing: Framing,
    /// Longest line, event data or plain body kept.
    limit: usize,
    lines: Lines,
    /// The unfinished line, or the whole body so far when it is plain JSON.
    /// Freed once the line is read, so no allocation outlives its bytes'
    /// share of what the reader granted.
    pending: Vec<u8>,
    /// `pending` outgrew `limit`: the rest of that line (or body) is skipped.
    overlong: bool,
    event: SseEvent,
}

/// The server-sent event being assembled from its `data:` lines.
#[derive(Debug, Default)]
struct SseEvent {
    data: Vec<u8>,
    has_data: bool,
    overlong: bool,
}

impl Frames {
    /// At most `limit` bytes (and never more than [`MAX_FRAME`]) of one
    /// frame are kept.
    pub fn new(framing: Framing, limit: usize) -> Self {
        Frames {
            framing,
            limit: limit.min(MAX_FRAME),
            lines: Lines::default(),
            pending: Vec::new(),
            overlong: false,
            event: SseEvent::default(),
        }
    }

    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Takes the next piece of the body.
    pub fn feed(&mut self, chunk: &[u8], reader: &mut dyn Reader) {
        if self.framing == Framing::Json {
            self.keep(chunk, reader);
            return;
        }
        let mut lines = self.lines;
        for piece in lines.split(chunk) {
            match piece {
                Piece::EndRest(_) => {}
                Piece::Line { text, end: b"" } => self.keep(text, reader),
                Piece::Line { text, .. } => {
                    if self.pending.is_empty() && !self.overlong {
                        self.line(Some(text), reader);
                    } else {
                        self.keep(text, reader);
                        self.end_pending_line(reader);
                    }
                }
            }
        }
        self.lines = lines;
    }

    /// Ends the body: a last line without its line end, and a last event
    /// without the blank line, still count.
    pub fn finish(&mut self, reader: &mut dyn Reader) {
        match self.framing {
            Framing::Json => {
                let body = std::mem::take(&mut self.pending);
                // Parsing is transient: the body's share is given back first.
                reader.release(body.len());
                if !std::mem::take(&mut self.overlong) {
                    reader.frame(&body);
                }
            }
            Framing::Ndjson | Framing::Sse => {
                if self.overlong || !self.pending.is_empty() {
                    self.end_pending_line(reader);
                }
                if self.framing == Framing::Sse {
                    self.line(Some(b""), reader);
                }
            }
        }
    }

    /// Buffers `bytes` unless that would pass the limit or find no room,
    /// in which case the whole unfinished line or body is dropped.
    fn keep(&mut self, bytes: &[u8], reader: &mut dyn Reader) {
        if self.overlong {
            reader.skipped(bytes.len());
            return;
        }
        let fits = self.pending.len().saturating_add(bytes.len()) <= self.limit;
        if fits && reader.hold(bytes.len()) {
            self.pending.extend_from_slice(bytes);
        } else {
            reader.release(self.pending.len());
            reader.skipped(self.pending.len().saturating_add(bytes.len()));
            self.pending = Vec::new();
            self.overlong = true;
        }
    }

    fn end_pending_line(&mut self, reader: &mut dyn Reader) {
        let line = std::mem::take(&mut self.pending);
        // Parsing is transient: the line's share is given back first.
        reader.release(line.len());
        if std::mem::take(&mut self.overlong) {
            self.line(None, reader);
        } else {
            self.line(Some(&line), reader);
        }
    }

    /// One complete line; `None` for one dropped as too long.
    fn line(&mut self, line: Option<&[u8]>, reader: &mut dyn Reader) {
        match self.framing {
            Framing::Json => {}
            Framing::Ndjson => {
                if let Some(line) = line {
                    reader.frame(line);
                }
            }
            Framing::Sse => self.sse_line(line, reader),
        }
    }

    fn sse_line(&mut self, line: Option<&[u8]>, reader: &mut dyn Reader) {
        let Some(line) = line else {
            self.event.overlong = true;
            return;
        };
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            reader.release(event.data.len());
            if event.has_data && !event.overlong && event.data != b"[DONE]" {
                reader.frame(&event.data);
            }
            return;
        }
        // Comments (`:` first) and other fields do not matter here.
        let Some(value) = sse_data(line) else {
            return;
        };
        if self.event.overlong {
            reader.skipped(value.len());
            return;
        }
        let grows = usize::from(self.event.has_data).saturating_add(value.len());
        let fits = self.event.data.len().saturating_add(grows) <= self.limit;
        if !fits || !reader.hold(grows) {
            reader.release(self.event.data.len());
            reader.skipped(self.event.data.len().saturating_add(value.len()));
            self.event = SseEvent {
                overlong: true,
                ..SseEvent::default()
            };
            return;
        }
        if self.event.has_data {
            self.event.data.push(b'\n');
        }
        self.event.data.extend_from_slice(value);
        self.event.has_data = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what a reader is told, within a room of `room` bytes.
    #[derive(Debug, Default, PartialEq)]
    struct Log {
        frames: Vec<String>,
        skipped: usize,
        gave_up: usize,
        held: usize,
        room: usize,
    }

    impl Reader for Log {
        fn hold(&mut self, n: usize) -> bool {
            if self.held + n > self.room {
                return false;
            }
            self.held += n;
            true
        }
        fn release(&mut self, n: usize) {
            self.held -= n;
        }
        fn frame(&mut self, frame: &[u8]) {
            self.frames
                .push(String::from_utf8_lossy(frame).into_owned());
        }
        fn skipped(&mut self, n: usize) {
            self.skipped += n;
            self.gave_up += 1;
        }
    }

    fn read(framing: Framing, limit: usize, chunks: &[&[u8]]) -> Log {
        let mut frames = Frames::new(framing, limit);
        let mut log = Log {
            room: usize::MAX / 2,
            ..Log::default()
        };
        for chunk in chunks {
            frames.feed(chunk, &mut log);
        }
        frames.finish(&mut log);
        assert_eq!(log.held, 0, "all that was held is given back");
        log.gave_up = 0;
        log
    }

    #[test]
    fn the_content_type_decides_then_the_request() {
        use WireFormat::*;
        let of = Framing::of;
        assert_eq!(of(Ollama, true, Some("Text/Event-Stream; x")), Framing::Sse);
        assert_eq!(
            of(OpenAi, true, Some("application/x-ndjson")),
            Framing::Ndjson
        );
        assert_eq!(of(OpenAi, true, Some("application/json")), Framing::Json);
        assert_eq!(of(OpenAi, false, None), Framing::Json);
        assert_eq!(of(Ollama, false, Some("text/plain")), Framing::Json);
        assert_eq!(of(Ollama, true, None), Framing::Ndjson);
        assert_eq!(of(OpenAi, true, Some("text/plain")), Framing::Sse);
    }

    #[test]
    fn pieces_are_every_byte_and_a_cut_crlf_is_one_line_end() {
        let body = b"a\r\nb\rc\n\r\nd";
        for at in 0..=body.len() {
            let mut lines = Lines::default();
            let (x, y) = body.split_at(at);
            let mut pieces: Vec<Piece> = lines.split(x).collect();
            pieces.extend(lines.split(y));
            let joined: Vec<u8> = pieces
                .iter()
                .flat_map(|p| match p {
                    Piece::Line { text, end } => [*text, *end].concat(),
                    Piece::EndRest(lf) => lf.to_vec(),
                })
                .collect();
            assert_eq!(joined, body, "split at {at}");
            let ends = pieces
                .iter()
                .filter(|p| matches!(p, Piece::Line { end, .. } if !end.is_empty()))
                .count();
            assert_eq!(ends, 4, "split at {at}: {pieces:?}");
        }
    }

    #[test]
    fn sse_data_lines() {
        assert_eq!(sse_data(b"data: x"), Some(&b"x"[..]));
        assert_eq!(sse_data(b"data:  x"), Some(&b" x"[..]));
        assert_eq!(sse_data(b"data:x"), Some(&b"x"[..]));
        assert_eq!(sse_data(b"data"), Some(&b""[..]));
        assert_eq!(sse_data(b"database: x"), None);
        assert_eq!(sse_data(b": data"), None);
        assert_eq!(sse_data(b"event: data"), None);
    }

    #[test]
    fn frames_of_each_framing() {
        let log = read(Framing::Ndjson, 100, &[b"{\"a\":1}\n\r\n{\"b\"", b":2}"]);
        assert_eq!(log.frames, ["{\"a\":1}", "", "{\"b\":2}"]);

        let sse = b": hi\r\nevent: x\r\ndata: {\r\ndata:}\r\n\r\ndata: [DONE]\n\ndata: last";
        let log = read(Framing::Sse, 100, &[sse]);
        assert_eq!(log.frames, ["{\n}", "last"]);

        let log = read(Framing::Json, 100, &[b"{\"a\":\n", b"1}"]);
        assert_eq!(log.frames, ["{\"a\":\n1}"]);
    }

    #[test]
    fn an_overlong_frame_is_skipped_and_counted() {
        // A line whole in one chunk is read where it lies; only what must
        // be buffered across chunks is bounded.
        let body = b"{\"a\":1}\n0123456789abcdef\n{\"b\":2}\n";
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        let log = read(Framing::Ndjson, 10, &bytes);
        assert_eq!(log.frames, ["{\"a\":1}", "{\"b\":2}"]);
        assert_eq!(log.skipped, 16);
        let threes: Vec<&[u8]> = body.chunks(3).collect();
        assert_eq!(read(Framing::Ndjson, 10, &threes), log);

        let sse = b"data: 0123\ndata: 456789\ndata: abc\n\ndata: ok\n\n";
        let log = read(Framing::Sse, 8, &[sse]);
        assert_eq!(log.frames, ["ok"]);
        assert_eq!(log.skipped, 4 + 6 + 3);

        let mut frames = Frames::new(Framing::Json, 4);
        let mut log = Log {
            room: 100,
            ..Log::default()
        };
        frames.feed(b"{\"a\":", &mut log);
        frames.feed(b"1}", &mut log);
        assert_eq!(frames.pending.capacity(), 0, "the dropped body is freed");
        frames.finish(&mut log);
        assert_eq!((log.frames.len(), log.skipped, log.held), (0, 7, 0));
    }

    #[test]
    fn a_reader_refusing_room_skips_the_frame_and_gets_it_back() {
        let mut frames = Frames::new(Framing::Sse, 1000);
        let mut log = Log {
            room: 6,
            ..Log::default()
        };
        frames.feed(b"data: 1234\n", &mut log);
        assert_eq!(log.held, 4);
        frames.feed(b"data: 567\n\ndata: ok\n\n", &mut log);
        frames.finish(&mut log);
        assert_eq!(
            (log.frames.as_slice(), log.held),
            (&["ok".to_owned()][..], 0)
        );
        assert_eq!(log.skipped, 7);
    }

    #[test]
    fn buffers_stay_within_the_limit() {
        assert_eq!(Frames::new(Framing::Sse, usize::MAX).limit, MAX_FRAME);
        let mut frames = Frames::new(Framing::Sse, 100);
        let mut log = Log {
            room: usize::MAX,
            ..Log::default()
        };
        for _ in 0..100 {
            frames.feed(&[b'a'; 1000], &mut log);
            assert!(frames.pending.len() <= 100);
        }
        frames.finish(&mut log);
        assert_eq!(log.skipped, 100_000);
    }
}
