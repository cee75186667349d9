//! The answers the filter gives on MCP routes itself: each server's
//! protected-resource metadata, and the refusals of requests it will not
//! forward, as JSON-RPC errors where the transport asks for them.

use super::config::Server;
use super::transport::Mismatch;
use crate::config::Config;
use crate::reply::LocalReply;
use serde_json::{Value, json};

/// JSON-RPC's code for a body that is not JSON.
const PARSE_ERROR: i64 = -32700;
/// JSON-RPC's code for JSON that is not a request.
const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC's code for invalid parameters, which MCP uses for a tool the
/// caller cannot call (2026-07-28, server/tools, "Error Handling").
const INVALID_PARAMS: i64 = -32602;
/// MCP's `HeaderMismatch` (2026-07-28, basic/transports/streamable-http,
/// "Server Validation").
const HEADER_MISMATCH: i64 = -32020;

/// RFC 9728 section 3.2's document for `server`: its canonical URI as
/// `resource`, the trusted issuers as `authorization_servers`, and every
/// scope some request to it may need.
pub fn metadata(cfg: &Config, server: &Server) -> LocalReply {
    let issuers: Vec<&str> = cfg.providers.iter().map(|p| p.issuer.as_str()).collect();
    let mut doc = json!({
        "resource": server.canonical_uri,
        "authorization_servers": issuers,
        "bearer_methods_supported": ["header"],
    });
    let scopes = server.scopes_supported();
    if let (false, Some(members)) = (scopes.is_empty(), doc.as_object_mut()) {
        members.insert("scopes_supported".into(), json!(scopes));
    }
    let mut reply = LocalReply::json(200, vec![], doc);
    reply.headers.retain(|(k, _)| *k != "cache-control");
    reply.headers.push(("cache-control", "max-age=300".into()));
    reply
}

/// A JSON-RPC error response (with the request's id, JSON text as the
/// request wrote it, when it had one) under an HTTP status. `message` is
/// one of this module's fixed texts.
fn error(status: u32, id: Option<&str>, code: i64, message: &str) -> LocalReply {
    let mut reply = LocalReply::json(status, vec![], Value::Null);
    reply.body = format!(
        r#"{{"jsonrpc":"2.0","id":{},"error":{{"code":{code},"message":{}}}}}"#,
        id.unwrap_or("null"),
        Value::from(message)
    );
    reply
}

/// 400: the metadata headers disagree with the body.
pub fn header_mismatch(id: Option<&str>, mismatch: &Mismatch) -> LocalReply {
    error(400, id, HEADER_MISMATCH, &mismatch.describe())
}

/// 400: the body is not JSON.
pub fn not_json() -> LocalReply {
    error(400, None, PARSE_ERROR, "Parse error: the body is not JSON")
}

/// 400: the body is not one JSON-RPC message.
pub fn not_a_message() -> LocalReply {
    error(
        400,
        None,
        INVALID_REQUEST,
        "Invalid Request: the body must be one JSON-RPC message",
    )
}

/// 403: a rule does not let this caller call this tool.
pub fn tool_forbidden(id: Option<&str>) -> LocalReply {
    error(
        403,
        id,
        INVALID_PARAMS,
        "tool not permitted for this caller",
    )
}

/// 413: the request body is larger than an MCP message may be here.
pub fn too_large() -> LocalReply {
    error(413, None, INVALID_REQUEST, "the request body is too large")
}

/// JSON-RPC's code for an error of the server's own.
const INTERNAL_ERROR: i64 = -32603;

/// What replaces a `tools/list` answer the filter could not cut to the
/// caller's tools: an error response to the request (as an event when the
/// answer was a stream), never the whole list.
pub fn unreadable_tools_list(id: Option<&str>, event_stream: bool) -> Vec<u8> {
    let body = error(200, id, INTERNAL_ERROR, "the tool list could not be read").body;
    match event_stream {
        true => format!("event: message\ndata: {body}\n\n").into_bytes(),
        false => body.into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::transport::{METHOD_HEADER, Problem};

    fn body(r: &LocalReply) -> Value {
        serde_json::from_str(&r.body).unwrap()
    }

    /// RFC 9728 section 3.2: `resource` is the server's own identifier.
    #[test]
    fn each_server_has_its_own_document() {
        let cfg = Config::from_json(
            br#"{"providers":[{"issuer":"https://idp.example","audiences":["a"]}],
                 "clusters":{"https://idp.example":"c"},"resource":"https://gw.example",
                 "mcp":{"servers":[{"name":"tools","scopes":["t:use"],
                        "tools":[{"match":"admin_*","scopes":["t:admin"]}]},{"name":"files"}]}}"#,
        )
        .unwrap();
        let mcp = cfg.mcp.as_ref().unwrap();
        let doc = body(&metadata(&cfg, &mcp.servers[0]));
        assert_eq!(doc["resource"], "https://gw.example/mcp/tools");
        assert_eq!(doc["authorization_servers"], json!(["https://idp.example"]));
        assert_eq!(doc["scopes_supported"], json!(["t:use", "t:admin"]));
        let doc = body(&metadata(&cfg, &mcp.servers[1]));
        assert_eq!(doc["resource"], "https://gw.example/mcp/files");
        assert!(doc.get("scopes_supported").is_none());
    }

    #[test]
    fn refusals_are_json_rpc_errors() {
        let m = Mismatch {
            header: METHOD_HEADER,
            problem: Problem::DiffersFromBody,
        };
        let r = header_mismatch(Some("7"), &m);
        assert_eq!(r.status, 400);
        assert_eq!(body(&r)["id"], 7);
        assert_eq!(body(&r)["error"]["code"], HEADER_MISMATCH);
        let r = tool_forbidden(Some("\"a\""));
        assert_eq!(body(&r)["id"], "a");
        assert_eq!(
            (r.status, body(&r)["error"]["code"].clone()),
            (403, json!(INVALID_PARAMS))
        );
        assert_eq!(too_large().status, 413);
        assert_eq!(body(&not_json())["id"], Value::Null);
    }
}
