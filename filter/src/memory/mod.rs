//! The memory mirror: model prompts and replies, and MCP tool calls and
//! their results, copied to a memory backend.
//!
//! Every byte these parsers see is hostile traffic, so they live here, away
//! from the host, where they are tested natively; the host only feeds them
//! bodies and ships the events they produce.
//!
//! [`routes`] says which requests are model calls, [`prompt`] reads the
//! request body, [`reply_capture`] copies the reply as it streams past,
//! [`tool_capture`] does the same for a tool call's answer,
//! [`event`] turns either pair into two events (the contract's
//! [`attach_contract::event::Event`], within [`attach_contract::limits`],
//! which the companion service applies too); [`sink`] builds the requests that deliver
//! them (with [`weaviate`]'s bodies for that sink, and
//! [`weaviate_upgrade`]'s reading of a class an older gateway made) and
//! reads which events the sink refused, and [`outbox`] holds a worker's batch until the sink
//! took it. What captures hold at once is bounded by the VM's [`budget`].

pub mod budget;
pub mod capture;
pub mod event;
pub mod outbox;
pub mod prompt;
pub mod reply_capture;
pub mod routes;
pub mod sink;
pub mod tool_capture;
pub mod weaviate;
pub mod weaviate_upgrade;

/// Text kept within a byte budget. Once anything is cut nothing more is
/// added, so what is kept is always a prefix of the whole.
#[derive(Clone, Debug)]
struct Capped {
    text: String,
    cap: usize,
    truncated: bool,
}

impl Capped {
    fn new(cap: usize) -> Self {
        Capped {
            text: String::new(),
            cap,
            truncated: false,
        }
    }

    fn len(&self) -> usize {
        self.text.len()
    }

    /// The most the next [`Capped::push`] can add.
    fn room(&self) -> usize {
        if self.truncated {
            0
        } else {
            self.cap.saturating_sub(self.text.len())
        }
    }

    /// Ends the text where it is, as if the cap had been reached.
    fn cut(&mut self) {
        self.truncated = true;
    }

    fn push(&mut self, piece: &str) {
        if self.truncated {
            return;
        }
        let room = self.cap.saturating_sub(self.text.len());
        if piece.len() <= room {
            self.text.push_str(piece);
            return;
        }
        let mut end = room;
        while !piece.is_char_boundary(end) {
            end = end.saturating_sub(1);
        }
        self.text.push_str(piece.get(..end).unwrap_or_default());
        self.truncated = true;
    }
}

#[cfg(test)]
mod tests {
    use super::Capped;

    #[test]
    fn capped_text_cuts_on_a_char_boundary_and_stays_a_prefix() {
        let mut t = Capped::new(5);
        t.push("ab");
        t.push("cé");
        assert_eq!((t.text.as_str(), t.truncated), ("abcé", false));
        t.push("€x");
        assert_eq!((t.text.as_str(), t.truncated), ("abcé", true));
        t.push("y");
        assert_eq!(t.text, "abcé", "nothing is added after a cut");

        let mut exact = Capped::new(3);
        exact.push("abc");
        assert!(!exact.truncated);
        exact.push("");
        assert!(!exact.truncated);
        exact.push("d");
        assert!(exact.truncated);

        let mut none = Capped::new(0);
        none.push("é");
        assert_eq!((none.text.as_str(), none.truncated), ("", true));
    }
}
