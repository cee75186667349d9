//! The gateway as the OAuth resource server in front of MCP servers.
//!
//! An MCP server registered as `tools` is reached at `/mcp/tools`; the
//! filter publishes its protected-resource metadata ([`reply::metadata`]),
//! accepts only tokens issued for its canonical URI (the
//! [`crate::verify::Binding`]), holds the transport's metadata headers to
//! the JSON-RPC body ([`transport`]), applies the tool rules ([`policy`]),
//! shows a caller only the tools it may call when so configured
//! ([`tools_list`]),
//! and never lets the client's token through: the server gets the stamped
//! identity and an identity token of its own instead. [`admit`] is that
//! decision for one verified request, without the host.
//!
//! MCP 2026-07-28: basic/authorization and basic/transports/streamable-http,
//! and the revisions clients still speak (2025-06-18, 2025-11-25).

pub mod config;
pub mod message;
pub mod policy;
pub mod reply;
pub mod tools_list;
pub mod transport;

use crate::identity::Identity;
use crate::reply::{Challenge, LocalReply, insufficient_scope};
use config::Server;
use message::{Message, Unreadable};
use policy::{Caller, Decision};
use transport::MetadataHeaders;

/// A request to an MCP route, as far as the filter reads it before the
/// decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// The posted JSON-RPC message; `None` for a request without a body
    /// (an older client's GET stream or DELETE of its session).
    pub message: Option<Message>,
    pub headers: MetadataHeaders,
}

/// A `tools/call` let through, for the memory.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolCall {
    pub tool: String,
    /// The arguments and the request id, as JSON text.
    pub arguments: Option<String>,
    pub id: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Admission {
    /// Forward the request; a tool call is noted for the memory.
    Forward(Option<ToolCall>),
    Refuse(LocalReply),
}

impl Request {
    /// Reads a posted body: the refusal when it is no JSON-RPC message or
    /// its headers disagree with it. Runs before the token is looked at, so
    /// that every later decision (the scopes a challenge names among them)
    /// is taken on the body the server will act on.
    pub fn read(headers: MetadataHeaders, body: Option<&[u8]>) -> Result<Request, LocalReply> {
        let Some(body) = body else {
            return Ok(Request {
                message: None,
                headers,
            });
        };
        let message = Message::parse(body).map_err(|e| match e {
            Unreadable::NotJson => reply::not_json(),
            Unreadable::NotAMessage => reply::not_a_message(),
        })?;
        transport::check(&headers, &message)
            .map_err(|m| reply::header_mismatch(message.id.as_deref(), &m))?;
        Ok(Request {
            message: Some(message),
            headers,
        })
    }

    /// The tool a `tools/call` calls.
    pub fn tool(&self) -> Option<&str> {
        self.message.as_ref().and_then(Message::tool)
    }

    /// Whether it asks for the server's tools.
    pub fn lists_tools(&self) -> bool {
        self.message
            .as_ref()
            .is_some_and(|m| m.method.as_deref() == Some("tools/list"))
    }
}

/// Whether `identity` may call `tool` on `server`: what a `tools/list`
/// answer keeps when it shows only what the caller may call.
pub fn may_call(server: &Server, identity: &Identity, tool: &str) -> bool {
    let scopes = scopes_of(identity);
    let caller = Caller {
        user: &identity.user,
        scopes: &scopes,
        actors: &identity.actors,
    };
    policy::may_call(server, &caller, tool)
}

fn scopes_of(identity: &Identity) -> Vec<&str> {
    identity
        .scope
        .as_deref()
        .map(|s| s.split(' ').filter(|s| !s.is_empty()).collect())
        .unwrap_or_default()
}

/// The challenge of `server` for a request that needs `scope`.
pub fn challenge<'a>(server: &'a Server, scope: &'a [String]) -> Challenge<'a> {
    Challenge {
        metadata_url: &server.metadata_url,
        scope,
    }
}

/// Decides on a request to `server` by the verified `identity`.
pub fn admit(server: &Server, identity: &Identity, request: &Request) -> Admission {
    let scopes = scopes_of(identity);
    let caller = Caller {
        user: &identity.user,
        scopes: &scopes,
        actors: &identity.actors,
    };
    let tool = request.tool();
    match policy::decide(server, &caller, tool) {
        Decision::Allow => Admission::Forward(tool.map(|tool| ToolCall {
            tool: tool.to_string(),
            arguments: request.message.as_ref().and_then(|m| m.arguments.clone()),
            id: request.message.as_ref().and_then(|m| m.id.clone()),
        })),
        Decision::NeedsScopes(needed) => {
            Admission::Refuse(insufficient_scope(&challenge(server, &needed), &[]))
        }
        Decision::Forbidden => Admission::Refuse(reply::tool_forbidden(
            request.message.as_ref().and_then(|m| m.id.as_deref()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use serde_json::json;

    fn config() -> Config {
        Config::from_json(
            json!({"resource": "https://gw.example", "mcp": {"servers": [{
                "name": "tools", "scopes": ["t:use"],
                "tools": [{"match": "admin_*", "scopes": ["t:admin"]},
                          {"match": "secret", "users": ["bob"]}]}]}})
            .to_string()
            .as_bytes(),
        )
        .unwrap()
    }

    fn request(tool: &str) -> Request {
        let body = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
            "params": {"name": tool, "arguments": {"a": 1}}});
        Request::read(
            MetadataHeaders::default(),
            Some(body.to_string().as_bytes()),
        )
        .unwrap()
    }

    fn alice(scope: &str) -> Identity {
        Identity {
            user: "alice".into(),
            scope: Some(scope.into()),
            ..Default::default()
        }
    }

    fn header<'a>(r: &'a LocalReply, name: &str) -> &'a str {
        r.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
            .unwrap()
    }

    #[test]
    fn an_allowed_call_is_noted_for_the_memory() {
        let cfg = config();
        let server = &cfg.mcp.as_ref().unwrap().servers[0];
        let Admission::Forward(Some(call)) = admit(server, &alice("t:use"), &request("echo"))
        else {
            panic!("not forwarded");
        };
        assert_eq!(call.tool, "echo");
        assert_eq!(call.arguments.as_deref(), Some(r#"{"a":1}"#));
        assert_eq!(call.id.as_deref(), Some("9"));
    }

    /// MCP 2026-07-28, basic/authorization, "Runtime Insufficient Scope
    /// Errors": 403, `insufficient_scope`, every scope the call needs, and
    /// the server's metadata.
    #[test]
    fn a_missing_scope_is_challenged_with_every_scope_needed() {
        let cfg = config();
        let server = &cfg.mcp.as_ref().unwrap().servers[0];
        let Admission::Refuse(r) = admit(server, &alice("t:use"), &request("admin_rm")) else {
            panic!("forwarded");
        };
        assert_eq!(r.status, 403);
        assert_eq!(
            header(&r, "www-authenticate"),
            "Bearer realm=\"attach\", error=\"insufficient_scope\", scope=\"t:use t:admin\", \
             resource_metadata=\"https://gw.example/.well-known/oauth-protected-resource/mcp/tools\""
        );
    }

    #[test]
    fn a_rule_that_does_not_admit_the_caller_is_a_json_rpc_refusal() {
        let cfg = config();
        let server = &cfg.mcp.as_ref().unwrap().servers[0];
        let Admission::Refuse(r) = admit(server, &alice("t:use"), &request("secret")) else {
            panic!("forwarded");
        };
        assert_eq!(r.status, 403);
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            (body["id"].clone(), body["error"]["code"].clone()),
            (json!(9), json!(-32602))
        );
    }

    #[test]
    fn requests_without_a_body_need_the_servers_scopes() {
        let cfg = config();
        let server = &cfg.mcp.as_ref().unwrap().servers[0];
        let get = Request::read(MetadataHeaders::default(), None).unwrap();
        assert_eq!(
            admit(server, &alice("t:use"), &get),
            Admission::Forward(None)
        );
        assert!(matches!(admit(server, &alice(""), &get), Admission::Refuse(r) if r.status == 403));
    }

    #[test]
    fn unreadable_bodies_are_refused_before_anything_else() {
        let headers = MetadataHeaders {
            method: Some(b"tools/list".to_vec()),
            ..Default::default()
        };
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#;
        let r = Request::read(headers, Some(body)).unwrap_err();
        assert_eq!(r.status, 400);
        assert!(r.body.contains("-32020"), "{}", r.body);
        let r = Request::read(MetadataHeaders::default(), Some(b"nope")).unwrap_err();
        assert!(r.body.contains("-32700"), "{}", r.body);
    }
}
