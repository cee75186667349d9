//! The fields of one reply frame, in either dialect, streamed or not:
//! Ollama's `message`/`response`, `prompt_eval_count` and `eval_count`;
//! OpenAI's `choices`, `usage.prompt_tokens` and `usage.completion_tokens`.
//! A frame that does not fit (an error object, a keep-alive) is not read.

use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
pub struct Frame {
    /// OpenAI's completion id; any type, so that an odd one costs only
    /// itself and not the frame.
    id: Option<Value>,
    model: Option<String>,
    /// Ollama chat.
    message: Option<Message>,
    /// Ollama generate.
    response: Option<String>,
    /// Ollama generate's reasoning.
    thinking: Option<String>,
    choices: Option<Vec<Choice>>,
    usage: Option<Usage>,
    prompt_eval_count: Option<u64>,
    eval_count: Option<u64>,
}

#[derive(Deserialize)]
struct Message {
    content: Option<String>,
    /// Ollama chat's reasoning.
    thinking: Option<String>,
    /// The OpenAI-compatible servers' reasoning (vLLM, DeepSeek).
    reasoning_content: Option<String>,
}

#[derive(Deserialize)]
struct Choice {
    index: Option<u64>,
    message: Option<Message>,
    delta: Option<Message>,
    text: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
}

impl Message {
    fn reasoning(&self) -> usize {
        [&self.thinking, &self.reasoning_content]
            .into_iter()
            .flatten()
            .map(String::len)
            .sum()
    }
}

impl Frame {
    pub fn read(bytes: &[u8]) -> Option<Frame> {
        serde_json::from_slice(bytes).ok()
    }

    pub fn id(&self) -> Option<&str> {
        self.id
            .as_ref()
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
    }

    /// The model that answered, which may name a more precise version than
    /// the one asked for.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref().filter(|m| !m.is_empty())
    }

    /// Input tokens, when the engine counted them in this frame.
    pub fn tokens_in(&self) -> Option<u64> {
        self.prompt_eval_count
            .or(self.usage.as_ref().and_then(|u| u.prompt_tokens))
    }

    /// Output tokens, when the engine counted them in this frame.
    pub fn tokens_out(&self) -> Option<u64> {
        self.eval_count
            .or(self.usage.as_ref().and_then(|u| u.completion_tokens))
    }

    /// The reply's text in this frame, in order. With `n` > 1 the choices
    /// interleave; the first one is the reply.
    pub fn reply_text(&self) -> impl Iterator<Item = &str> {
        let choice = self
            .choices
            .iter()
            .flatten()
            .find(|c| c.index.unwrap_or(0) == 0);
        fn message(m: &Option<Message>) -> Option<&str> {
            m.as_ref().and_then(|m| m.content.as_deref())
        }
        [
            message(&self.message),
            self.response.as_deref(),
            choice.and_then(|c| message(&c.message)),
            choice.and_then(|c| message(&c.delta)),
            choice.and_then(|c| c.text.as_deref()),
        ]
        .into_iter()
        .flatten()
    }

    /// Bytes of everything the engine generated in this frame: every
    /// choice, and reasoning as well as the answer, since the engine counts
    /// (and bills) them all as output.
    pub fn generated_bytes(&self) -> usize {
        let message = |m: &Option<Message>| {
            m.as_ref().map_or(0, |m| {
                m.content.as_ref().map_or(0, String::len) + m.reasoning()
            })
        };
        let choices: usize = self
            .choices
            .iter()
            .flatten()
            .map(|c| {
                message(&c.message) + message(&c.delta) + c.text.as_ref().map_or(0, String::len)
            })
            .sum();
        message(&self.message)
            + [&self.response, &self.thinking]
                .into_iter()
                .flatten()
                .map(String::len)
                .sum::<usize>()
            + choices
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(json: &str) -> Frame {
        Frame::read(json.as_bytes()).expect("a frame")
    }

    #[test]
    fn ollama_frames() {
        let f = read(
            r#"{"model":"llama3.2","message":{"role":"assistant","content":"Hi","thinking":"hmm"},"done":true,"prompt_eval_count":26,"eval_count":7}"#,
        );
        assert_eq!(f.reply_text().collect::<Vec<_>>(), ["Hi"]);
        assert_eq!(
            (f.generated_bytes(), f.model(), f.id()),
            (5, Some("llama3.2"), None)
        );
        assert_eq!((f.tokens_in(), f.tokens_out()), (Some(26), Some(7)));

        let f = read(r#"{"model":"","response":"42","thinking":"so"}"#);
        assert_eq!(f.reply_text().collect::<Vec<_>>(), ["42"]);
        assert_eq!((f.generated_bytes(), f.model()), (4, None));
        assert_eq!((f.tokens_in(), f.tokens_out()), (None, None));
    }

    #[test]
    fn openai_frames() {
        let f = read(
            r#"{"id":"chatcmpl-1","model":"gpt-4o","choices":[{"index":1,"delta":{"content":"other"}},{"index":0,"delta":{"content":"yes","reasoning_content":"r"}}],"usage":null}"#,
        );
        assert_eq!(f.reply_text().collect::<Vec<_>>(), ["yes"]);
        assert_eq!((f.generated_bytes(), f.id()), (9, Some("chatcmpl-1")));
        assert_eq!(f.tokens_out(), None);

        let f = read(r#"{"id":7,"choices":[],"usage":{"prompt_tokens":11,"completion_tokens":4}}"#);
        assert_eq!(
            (f.id(), f.tokens_in(), f.tokens_out()),
            (None, Some(11), Some(4))
        );
        assert_eq!(f.generated_bytes(), 0);

        let f = read(r#"{"choices":[{"text":" there","index":0}]}"#);
        assert_eq!(f.reply_text().collect::<Vec<_>>(), [" there"]);
    }

    #[test]
    fn what_is_not_a_frame() {
        for bad in ["", "[DONE]", "[1]", r#"{"model":3}"#, r#"{"choices":{}}"#] {
            assert!(Frame::read(bad.as_bytes()).is_none(), "{bad}");
        }
        let error = read(r#"{"error":{"message":"no such model"}}"#);
        assert_eq!(
            (error.reply_text().count(), error.generated_bytes()),
            (0, 0)
        );
    }
}
