//! Reading a server-sent event stream (the WHATWG HTML "event stream"
//! format), as A2A's JSON-RPC and HTTP+JSON bindings use it for streaming
//! answers: bytes arrive in arbitrary chunks, events end at a blank line,
//! and only their `data` matters here (each holds one JSON document).

/// An incremental parser: feed it chunks, take the events' data out.
#[derive(Debug)]
pub struct EventReader {
    /// The line not yet ended.
    line: Vec<u8>,
    /// The data lines of the event not yet ended.
    data: Vec<u8>,
    has_data: bool,
    /// A `\r` ended the last line; a `\n` right after it is the same break.
    after_cr: bool,
    max_event: usize,
}

impl EventReader {
    /// `max_event` bounds one event's data (and any one line).
    pub fn new(max_event: usize) -> Self {
        Self {
            line: Vec::new(),
            data: Vec::new(),
            has_data: false,
            after_cr: false,
            max_event,
        }
    }

    /// Reads `chunk`, returning the data of every event it completes.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<String>, String> {
        let mut done = Vec::new();
        for &b in chunk {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    if let Some(event) = self.end_line()? {
                        done.push(event);
                    }
                }
                _ => {
                    self.after_cr = false;
                    if self.line.len() >= self.max_event {
                        return Err(format!("an event is larger than {} bytes", self.max_event));
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(done)
    }

    fn end_line(&mut self) -> Result<Option<String>, String> {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            if !std::mem::take(&mut self.has_data) {
                return Ok(None);
            }
            let data = std::mem::take(&mut self.data);
            return String::from_utf8(data)
                .map(Some)
                .map_err(|_| "an event is not UTF-8".into());
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            // A comment (keep-alives are sent as these).
            Some(0) => return Ok(None),
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (&line[..], &[][..]),
        };
        if field == b"data" {
            if self.has_data {
                self.data.push(b'\n');
            }
            if self.data.len() + value.len() > self.max_event {
                return Err(format!("an event is larger than {} bytes", self.max_event));
            }
            self.data.extend_from_slice(value);
            self.has_data = true;
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(reader: &mut EventReader, chunks: &[&[u8]]) -> Vec<String> {
        chunks
            .iter()
            .flat_map(|c| reader.feed(c).unwrap())
            .collect()
    }

    #[test]
    fn events_split_anywhere_come_out_whole() {
        let stream = b"data: {\"a\":1}\n\n: keep-alive\n\nevent: x\ndata: {\"b\":\ndata: 2}\r\n\r\ndata:3\r\r";
        for split in 0..stream.len() {
            let mut r = EventReader::new(1024);
            let (head, tail) = stream.split_at(split);
            assert_eq!(
                all(&mut r, &[head, tail]),
                ["{\"a\":1}", "{\"b\":\n2}", "3"],
                "split at {split}"
            );
        }
    }

    #[test]
    fn blank_lines_without_data_dispatch_nothing() {
        let mut r = EventReader::new(64);
        assert!(all(&mut r, &[b"\n\n: hi\n\nid: 4\n\n"]).is_empty());
        // An event not yet ended is held back.
        assert!(all(&mut r, &[b"data: x\n"]).is_empty());
        assert_eq!(all(&mut r, &[b"\n"]), ["x"]);
    }

    #[test]
    fn oversized_events_are_refused() {
        let mut r = EventReader::new(8);
        assert!(r.feed(b"data: 0123456789\n").is_err());
        let mut r = EventReader::new(10);
        assert!(r.feed(b"data:0123\ndata:4567\n").is_ok());
        assert!(r.feed(b"data:89ab\n").is_err());
        let mut r = EventReader::new(8);
        assert!(r.feed(b"data: \xff\n\n").is_err());
    }
}
