//! A2A 1.0 over JSON-RPC 2.0: the envelope, the errors, and the message and
//! part shapes (protobuf JSON of `lf.a2a.v1`: lowerCamel names, `ROLE_*`
//! enum names, a part is exactly one of `text` / `data` / `url` / `raw`,
//! no `kind` fields). Parts are checked as strictly as the companion
//! service checks them, because what these agents answer goes back through
//! it.

use axum::http::HeaderValue;
use serde_json::{Map, Value, json};

pub const SEND: &str = "SendMessage";
pub const GET: &str = "GetTask";
/// The request header that selects the protocol version.
pub const VERSION_HEADER: &str = "a2a-version";

/// A JSON-RPC error object.
#[derive(Debug)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
}

impl RpcError {
    fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
        }
    }

    pub fn parse(m: impl Into<String>) -> Self {
        Self::new(-32700, m)
    }

    pub fn invalid_request(m: impl Into<String>) -> Self {
        Self::new(-32600, m)
    }

    pub fn method_not_found(method: &str) -> Self {
        let shown: String = method.chars().take(64).collect();
        Self::new(
            -32601,
            format!("method {shown:?} is not supported here ({SEND}, {GET})"),
        )
    }

    pub fn invalid_params(m: impl Into<String>) -> Self {
        Self::new(-32602, m)
    }

    pub fn internal(m: impl Into<String>) -> Self {
        Self::new(-32603, m)
    }

    pub fn task_not_found() -> Self {
        Self::new(-32001, "Task not found")
    }

    pub fn unsupported_operation(m: impl Into<String>) -> Self {
        Self::new(-32004, m)
    }

    pub fn version_not_supported(m: impl Into<String>) -> Self {
        Self::new(-32009, m)
    }
}

/// A well-formed JSON-RPC request.
#[derive(Debug)]
pub struct Request {
    pub id: Value,
    pub method: String,
    pub params: Map<String, Value>,
}

/// Parses a request body. On failure, the error and the `id` to answer with
/// (null when it could not be read).
pub fn parse_request(body: &[u8]) -> Result<Request, (RpcError, Value)> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        (
            RpcError::parse(format!("request body is not JSON: {e}")),
            Value::Null,
        )
    })?;
    let Value::Object(mut object) = value else {
        return Err((
            RpcError::invalid_request("a JSON-RPC request is one JSON object"),
            Value::Null,
        ));
    };
    let id = match object.remove("id") {
        Some(id @ (Value::String(_) | Value::Number(_) | Value::Null)) => id,
        Some(_) => {
            return Err((
                RpcError::invalid_request("id must be a string or a number"),
                Value::Null,
            ));
        }
        None => {
            return Err((
                RpcError::invalid_request("id is required (notifications are not supported)"),
                Value::Null,
            ));
        }
    };
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err((RpcError::invalid_request("jsonrpc must be \"2.0\""), id));
    }
    let method = match object.remove("method") {
        Some(Value::String(m)) if !m.is_empty() => m,
        _ => {
            return Err((
                RpcError::invalid_request("method must be a non-empty string"),
                id,
            ));
        }
    };
    let params = match object.remove("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p,
        Some(_) => return Err((RpcError::invalid_params("params must be an object"), id)),
    };
    Ok(Request { id, method, params })
}

pub fn success(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

pub fn failure(id: &Value, error: &RpcError) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": error.code, "message": error.message}})
}

/// These agents speak 1.0 only; a request without the header is a 0.3
/// request by the protocol's rules, and is refused rather than misread.
pub fn check_version(header: Option<&HeaderValue>) -> Result<(), RpcError> {
    let value = header.map(|v| v.to_str().unwrap_or("?").trim());
    let is_1_0 = value.is_some_and(|v| {
        let mut parts = v.split('.');
        parts.next() == Some("1")
            && parts.next() == Some("0")
            && parts.all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    });
    if is_1_0 {
        return Ok(());
    }
    Err(RpcError::version_not_supported(match value {
        None => "this agent speaks A2A 1.0 only: send A2A-Version: 1.0".to_string(),
        Some(v) => format!("A2A version {v:?} is not supported; this agent speaks 1.0"),
    }))
}

const PART_FIELDS: [&str; 7] = [
    "text",
    "raw",
    "url",
    "data",
    "metadata",
    "filename",
    "mediaType",
];

/// Checks one 1.0 part.
pub fn check_part(value: &Value) -> Result<(), String> {
    let obj = value.as_object().ok_or("each part must be an object")?;
    if let Some(unknown) = obj.keys().find(|k| !PART_FIELDS.contains(&k.as_str())) {
        return Err(format!("part field {unknown:?} is not part of A2A 1.0"));
    }
    let present: Vec<&str> = ["text", "data", "url", "raw"]
        .into_iter()
        .filter(|k| obj.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    match present.as_slice() {
        ["data"] => Ok(()),
        [which] if obj[*which].is_string() => Ok(()),
        [which] => Err(format!("{which} must be a string")),
        _ => Err("each part needs exactly one of text, data, url and raw".into()),
    }
}

pub fn text_part(text: impl Into<String>) -> Value {
    json!({"text": text.into()})
}

/// A message from the caller, checked.
#[derive(Debug)]
pub struct IncomingMessage {
    /// The message as received, shown back in the task's history.
    pub wire: Map<String, Value>,
    pub context_id: Option<String>,
    pub task_id: Option<String>,
}

impl IncomingMessage {
    fn parts(&self) -> impl Iterator<Item = &Value> {
        self.wire
            .get("parts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
    }

    pub fn texts(&self) -> Vec<String> {
        self.parts()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .map(str::to_string)
            .collect()
    }

    pub fn data(&self) -> Vec<Value> {
        self.parts()
            .filter_map(|p| p.get("data"))
            .filter(|d| !d.is_null())
            .cloned()
            .collect()
    }
}

fn optional_str<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, RpcError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str()).filter(|s| !s.is_empty())),
        Some(_) => Err(RpcError::invalid_params(format!("{name} must be a string"))),
    }
}

/// A non-negative integer (protobuf JSON also allows it quoted).
fn optional_count(obj: &Map<String, Value>, name: &str) -> Result<Option<usize>, RpcError> {
    let bad = || RpcError::invalid_params(format!("{name} must be a non-negative integer"));
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(|n| Some(n as usize)).ok_or_else(bad),
        Some(Value::String(s)) => s.parse().map(Some).map_err(|_| bad()),
        Some(_) => Err(bad()),
    }
}

fn parse_message(value: &Value) -> Result<IncomingMessage, RpcError> {
    let bad = RpcError::invalid_params;
    let wire = value
        .as_object()
        .ok_or_else(|| bad("message must be an object"))?;
    if optional_str(wire, "messageId")?.is_none() {
        return Err(bad("message.messageId is required"));
    }
    match wire.get("role") {
        Some(Value::String(r)) if r == "ROLE_USER" || r == "ROLE_AGENT" => {}
        Some(Value::Number(n)) if matches!(n.as_u64(), Some(1 | 2)) => {}
        _ => return Err(bad("message.role must be ROLE_USER or ROLE_AGENT")),
    }
    match wire.get("parts") {
        Some(Value::Array(parts)) if !parts.is_empty() => {
            for part in parts {
                check_part(part).map_err(RpcError::invalid_params)?;
            }
        }
        _ => return Err(bad("message.parts must be a non-empty array")),
    }
    if !matches!(
        wire.get("metadata"),
        None | Some(Value::Null | Value::Object(_))
    ) {
        return Err(bad("message.metadata must be an object"));
    }
    Ok(IncomingMessage {
        context_id: optional_str(wire, "contextId")?.map(str::to_string),
        task_id: optional_str(wire, "taskId")?.map(str::to_string),
        wire: wire.clone(),
    })
}

/// `SendMessageRequest`.
#[derive(Debug)]
pub struct SendParams {
    pub message: IncomingMessage,
    pub return_immediately: bool,
    pub history_length: Option<usize>,
}

pub fn parse_send(params: &Map<String, Value>) -> Result<SendParams, RpcError> {
    let message = parse_message(
        params
            .get("message")
            .ok_or_else(|| RpcError::invalid_params("message is required"))?,
    )?;
    let (return_immediately, history_length) = match params.get("configuration") {
        None | Some(Value::Null) => (false, None),
        Some(Value::Object(c)) => {
            let flag = |name: &str| match c.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Bool(b)) => Ok(Some(*b)),
                Some(_) => Err(RpcError::invalid_params(format!(
                    "configuration.{name} must be a boolean"
                ))),
            };
            // `blocking: false` from pre-release clients means the same as
            // `returnImmediately: true`.
            let immediate =
                flag("returnImmediately")?.unwrap_or(false) || flag("blocking")? == Some(false);
            (immediate, optional_count(c, "historyLength")?)
        }
        Some(_) => {
            return Err(RpcError::invalid_params("configuration must be an object"));
        }
    };
    Ok(SendParams {
        message,
        return_immediately,
        history_length,
    })
}

/// `GetTaskRequest`: the task id and the history length asked for.
pub fn parse_get(params: &Map<String, Value>) -> Result<(String, Option<usize>), RpcError> {
    let id =
        optional_str(params, "id")?.ok_or_else(|| RpcError::invalid_params("id is required"))?;
    Ok((id.to_string(), optional_count(params, "historyLength")?))
}

/// The text of a message's text parts, on one line and cut to a length
/// that fits in a status message.
pub fn message_text(message: Option<&Value>) -> Option<String> {
    let texts: Vec<&str> = message?
        .get("parts")?
        .as_array()?
        .iter()
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect();
    let text = one_line(&texts.join(" "));
    (!text.is_empty()).then_some(text)
}

/// Collapses whitespace and cuts at 300 characters: reasons quoted from
/// other parties end up inside a one-line status message.
pub fn one_line(text: &str) -> String {
    const MAX: usize = 300;
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.chars().count() <= MAX {
        return joined;
    }
    let mut cut: String = joined.chars().take(MAX).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts() {
        for good in [
            json!({"text": "hi"}),
            json!({"data": {"mem_id": "x"}}),
            json!({"data": [1]}),
            json!({"url": "https://x/y.png", "filename": "y.png", "mediaType": "image/png"}),
            json!({"raw": "aGk=", "metadata": {"a": 1}}),
        ] {
            assert!(check_part(&good).is_ok(), "{good}");
        }
        for bad in [
            json!({}),
            json!({"text": "a", "data": {}}),
            json!({"kind": "text", "text": "a"}),
            json!({"text": 1}),
            json!("text"),
        ] {
            assert!(check_part(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn versions() {
        for ok in ["1.0", " 1.0 ", "1.0.2"] {
            assert!(check_version(Some(&HeaderValue::from_static(ok))).is_ok());
        }
        for bad in ["0.3", "1", "1.0.", "2.0"] {
            let e = check_version(Some(&HeaderValue::from_static(bad))).unwrap_err();
            assert_eq!(e.code, -32009);
        }
        assert_eq!(check_version(None).unwrap_err().code, -32009);
    }

    #[test]
    fn send_params() {
        let msg = json!({"messageId": "m", "role": "ROLE_USER", "contextId": "c",
                         "parts": [{"text": "a"}, {"data": {"mem_id": "x"}}, {"text": "b"}]});
        let p = json!({"message": msg, "configuration": {"returnImmediately": true, "historyLength": "2"}});
        let p = parse_send(p.as_object().unwrap()).unwrap();
        assert!(p.return_immediately);
        assert_eq!(p.history_length, Some(2));
        assert_eq!(p.message.texts(), ["a", "b"]);
        assert_eq!(p.message.data(), [json!({"mem_id": "x"})]);
        assert_eq!(p.message.context_id.as_deref(), Some("c"));
        assert_eq!(p.message.task_id, None);
        for bad in [
            json!({}),
            json!({"message": {"role": "ROLE_USER", "parts": [{"text": "a"}]}}),
            json!({"message": {"messageId": "m", "role": "user", "parts": [{"text": "a"}]}}),
            json!({"message": {"messageId": "m", "role": "ROLE_USER", "parts": []}}),
            json!({"message": msg, "configuration": {"returnImmediately": "yes"}}),
        ] {
            let e = parse_send(bad.as_object().unwrap()).unwrap_err();
            assert_eq!(e.code, -32602, "{bad}");
        }
    }

    #[test]
    fn one_line_caps() {
        assert_eq!(one_line(" a\n b "), "a b");
        assert_eq!(one_line(&"x".repeat(400)).chars().count(), 301);
    }
}
