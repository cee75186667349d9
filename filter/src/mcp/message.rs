//! The JSON-RPC message a client posts to an MCP route, read for what the
//! gateway decides on: the method, the name it targets, the protocol
//! version it declares, and (for the memory) a tool call's arguments.
//!
//! Every decision is taken on the body, never on a header alone: headers
//! are only compared with it (see [`super::transport`]).

use serde_json::Value;

/// The member of `params._meta` carrying the protocol version
/// (MCP 2026-07-28, basic/transports/streamable-http, "Protocol Version Header").
pub const VERSION_META: &str = "io.modelcontextprotocol/protocolVersion";

/// The methods whose target name is mirrored in `Mcp-Name`, and where it is.
const NAMED: [(&str, &str); 3] = [
    ("tools/call", "name"),
    ("resources/read", "uri"),
    ("prompts/get", "name"),
];

/// A posted JSON-RPC message.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// `None` for a response the client posts (older protocol versions).
    pub method: Option<String>,
    /// The request id as JSON text, echoed on a refusal; `None` for a
    /// notification.
    pub id: Option<String>,
    /// `params.name` or `params.uri` of a method that targets one.
    pub name: Option<String>,
    /// `params._meta["io.modelcontextprotocol/protocolVersion"]`.
    pub version: Option<String>,
    /// A `tools/call`'s arguments, as JSON text.
    pub arguments: Option<String>,
}

/// Why a body is not one JSON-RPC message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unreadable {
    /// Not JSON at all (JSON-RPC's -32700).
    NotJson,
    /// JSON, but not one message object (JSON-RPC's -32600; batches were
    /// dropped in MCP 2025-06-18 and are refused, as every call in one
    /// would need its own decision).
    NotAMessage,
}

impl Message {
    pub fn parse(body: &[u8]) -> Result<Message, Unreadable> {
        let value: Value = serde_json::from_slice(body).map_err(|_| Unreadable::NotJson)?;
        let Some(object) = value.as_object() else {
            return Err(Unreadable::NotAMessage);
        };
        if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Err(Unreadable::NotAMessage);
        }
        let method = match object.get("method") {
            None => None,
            Some(Value::String(m)) => Some(m.clone()),
            Some(_) => return Err(Unreadable::NotAMessage),
        };
        let id = object
            .get("id")
            .filter(|id| !id.is_null())
            .map(Value::to_string);
        let params = object.get("params").and_then(Value::as_object);
        let version = params
            .as_ref()
            .and_then(|p| p.get("_meta"))
            .and_then(|meta| meta.get(VERSION_META))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let named = method
            .as_deref()
            .and_then(|m| NAMED.iter().find(|(n, _)| *n == m))
            .map(|(_, member)| *member);
        let (name, arguments) = match (params, named) {
            (Some(params), Some(member)) => {
                let name = match params.get(member) {
                    None => None,
                    Some(Value::String(name)) => Some(name.clone()),
                    Some(_) => return Err(Unreadable::NotAMessage),
                };
                (name, params.get("arguments").map(Value::to_string))
            }
            _ => (None, None),
        };
        Ok(Message {
            arguments: arguments.filter(|_| method.as_deref() == Some("tools/call")),
            method,
            id,
            name,
            version,
        })
    }

    /// Whether the method targets a name (`Mcp-Name` is required for it).
    pub fn is_named(&self) -> bool {
        self.method
            .as_deref()
            .is_some_and(|m| NAMED.iter().any(|(n, _)| *n == m))
    }

    /// The tool a `tools/call` calls.
    pub fn tool(&self) -> Option<&str> {
        match self.method.as_deref() {
            Some("tools/call") => self.name.as_deref(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Message, Unreadable> {
        Message::parse(v.to_string().as_bytes())
    }

    #[test]
    fn a_modern_tool_call() {
        let m = parse(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "hi"},
                "_meta": {VERSION_META: "2026-07-28"}}}))
        .unwrap();
        assert_eq!(m.tool(), Some("echo"));
        assert_eq!(m.id.as_deref(), Some("1"));
        assert_eq!(m.version.as_deref(), Some("2026-07-28"));
        assert_eq!(m.arguments.as_deref(), Some(r#"{"text":"hi"}"#));
        assert!(m.is_named());
    }

    #[test]
    fn names_of_other_methods() {
        let m = parse(
            json!({"jsonrpc": "2.0", "id": "r", "method": "resources/read",
            "params": {"uri": "file:///a"}}),
        )
        .unwrap();
        assert_eq!(m.name.as_deref(), Some("file:///a"));
        assert_eq!((m.tool(), m.arguments.as_ref()), (None, None));
        let m = parse(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})).unwrap();
        assert!(!m.is_named());
        assert_eq!(m.name, None);
        let m = parse(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).unwrap();
        assert_eq!(m.id, None);
        let m = parse(json!({"jsonrpc": "2.0", "id": 3, "result": {}})).unwrap();
        assert_eq!(m.method, None);
    }

    #[test]
    fn what_is_not_one_message() {
        assert_eq!(Message::parse(b"{"), Err(Unreadable::NotJson));
        assert_eq!(Message::parse(b""), Err(Unreadable::NotJson));
        for v in [
            json!([{"jsonrpc": "2.0", "id": 1, "method": "ping"}]),
            json!({"id": 1, "method": "ping"}),
            json!({"jsonrpc": "2.0", "id": 1, "method": 5}),
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": 7}}),
            json!("x"),
        ] {
            assert_eq!(parse(v.clone()), Err(Unreadable::NotAMessage), "{v}");
        }
    }
}
