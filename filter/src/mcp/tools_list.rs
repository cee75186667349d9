//! A `tools/list` answer cut down to the tools the caller may call, for
//! servers configured with `tools_list: callable`: a client is not shown
//! tools every call of which the gateway would refuse.
//!
//! The answer is a JSON-RPC response, alone in a JSON body or as an event
//! of a server-sent event stream (MCP 2026-07-28, basic/transports/
//! streamable-http, "Sending Messages"). Only the response's
//! `result.tools` changes; every other byte of a stream is kept as sent.

use serde_json::Value;

/// The largest `tools/list` answer rewritten; a larger one is refused
/// rather than shown whole (the filter must not leak what it cannot cut).
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// The answer with the tools `may_call` refuses removed, or `None` when it
/// is not a readable `tools/list` response (then it must not be passed on).
pub fn filter(body: &[u8], event_stream: bool, may_call: &dyn Fn(&str) -> bool) -> Option<Vec<u8>> {
    if !event_stream {
        return filter_message(body, may_call);
    }
    let text = std::str::from_utf8(body).ok()?;
    let mut out = String::with_capacity(text.len());
    let mut found = false;
    // Events end at blank lines; a response fits in one `data` line as
    // servers write them (JSON has no raw line ends), which is what is
    // rewritten; a response split over several `data` lines is refused.
    for line in text.split_inclusive('\n') {
        let (content, end) = match line.strip_suffix("\r\n") {
            Some(c) => (c, "\r\n"),
            None => match line.strip_suffix('\n') {
                Some(c) => (c, "\n"),
                None => (line, ""),
            },
        };
        let data = content
            .strip_prefix("data:")
            .map(|d| d.strip_prefix(' ').unwrap_or(d));
        match data.map(|d| (d, serde_json::from_slice::<Value>(d.as_bytes()))) {
            Some((_, Ok(message))) if is_response(&message) => {
                let rewritten = filter_message(message.to_string().as_bytes(), may_call)?;
                out.push_str("data: ");
                out.push_str(std::str::from_utf8(&rewritten).ok()?);
                out.push_str(end);
                found = true;
            }
            Some((d, Err(_))) if d.trim_start().starts_with('{') => return None,
            _ => out.push_str(line),
        }
    }
    found.then(|| out.into_bytes())
}

fn is_response(message: &Value) -> bool {
    message.get("result").is_some() || message.get("error").is_some()
}

fn filter_message(body: &[u8], may_call: &dyn Fn(&str) -> bool) -> Option<Vec<u8>> {
    let mut message: Value = serde_json::from_slice(body).ok()?;
    if message.get("error").is_some() {
        return Some(body.to_vec());
    }
    let tools = message
        .get_mut("result")?
        .get_mut("tools")?
        .as_array_mut()?;
    tools.retain(|tool| {
        tool.get("name")
            .and_then(Value::as_str)
            .is_some_and(may_call)
    });
    Some(message.to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn only_echo(name: &str) -> bool {
        name == "echo"
    }

    fn answer() -> Value {
        json!({"jsonrpc": "2.0", "id": 2, "result": {"tools": [
            {"name": "echo", "inputSchema": {}}, {"name": "admin_reset"}, {"title": "no name"}],
            "nextCursor": "c"}})
    }

    fn names(message: &Value) -> Vec<&str> {
        message["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn a_json_answer_keeps_only_the_callable_tools() {
        let body = filter(answer().to_string().as_bytes(), false, &only_echo).unwrap();
        let message: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(names(&message), ["echo"]);
        assert_eq!(message["result"]["nextCursor"], "c");
        assert_eq!(message["id"], 2);
    }

    #[test]
    fn a_streamed_answer_changes_only_its_response() {
        let stream = format!(
            ": hello\r\nevent: message\r\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{{}}}}\r\n\r\nevent: message\r\nid: 1\r\ndata: {}\r\n\r\n",
            answer()
        );
        let out = String::from_utf8(filter(stream.as_bytes(), true, &only_echo).unwrap()).unwrap();
        let (head, _) = stream.split_once("data: {\"id\"").unwrap_or((&stream, ""));
        assert!(
            out.starts_with(": hello\r\nevent: message\r\ndata: {\"jsonrpc\":\"2.0\",\"method\""),
            "{out}"
        );
        let response = out
            .lines()
            .filter(|l| l.starts_with("data: "))
            .nth(1)
            .unwrap();
        let message: Value =
            serde_json::from_str(response.strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(names(&message), ["echo"]);
        assert!(out.ends_with("\r\n\r\n") && head.len() <= stream.len());
    }

    #[test]
    fn what_is_not_a_readable_answer_is_not_passed_on() {
        assert_eq!(filter(b"{", false, &only_echo), None);
        assert_eq!(filter(br#"{"result":{}}"#, false, &only_echo), None);
        assert_eq!(filter(b"data: {broken\n\n", true, &only_echo), None);
        assert_eq!(filter(b": only a comment\n\n", true, &only_echo), None);
        let error = br#"{"jsonrpc":"2.0","id":2,"error":{"code":-32601,"message":"no"}}"#;
        assert_eq!(
            filter(error, false, &only_echo).as_deref(),
            Some(&error[..])
        );
    }
}
