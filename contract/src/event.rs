//! The memory event: what the gateway's memory mirror records of each
//! exchange with a model, one event for the prompt and one for the reply,
//! and of each MCP tool call, one event for the call and one for its
//! result.
//!
//! The filter writes [`Event`]s as JSON, one per shared-queue item and as
//! the elements of the companion service's `POST /mem/ingest` array, which
//! reads them member by member ([`field`]) within [`crate::limits`]. Their
//! ids are [`event_id`]s: UUIDs of version 8, which the service keeps for
//! the mirror alone. With the Weaviate sink the same fields are written as
//! [`crate::weaviate`]'s properties.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Who spoke: the caller (the prompt, the tool call) or the model or tool
/// server (the reply, the tool result).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "&'static str", try_from = "String")]
pub enum Role {
    User,
    Assistant,
}

impl Role {
    pub const ALL: [Role; 2] = [Role::User, Role::Assistant];

    /// The role's name in JSON and in [`event_id`]'s input.
    pub const fn name(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// The kinds of the events the memory mirror writes. They are reserved to
/// it: a caller's own event never reads back as something the engine said.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "&'static str", try_from = "String")]
pub enum Kind {
    Prompt,
    Reply,
    /// An MCP `tools/call` request: the tool and its arguments.
    ToolCall,
    /// What the MCP server answered to it: the result's text, or the error.
    ToolResult,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Prompt, Kind::Reply, Kind::ToolCall, Kind::ToolResult];

    /// The kind's name in JSON.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Prompt => "prompt",
            Kind::Reply => "reply",
            Kind::ToolCall => "tool_call",
            Kind::ToolResult => "tool_result",
        }
    }
}

impl From<Role> for &'static str {
    fn from(role: Role) -> Self {
        role.name()
    }
}

impl TryFrom<String> for Role {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == name)
            .ok_or_else(|| format!("unknown role {name:?}"))
    }
}

impl From<Kind> for &'static str {
    fn from(kind: Kind) -> Self {
        kind.name()
    }
}

impl TryFrom<String> for Kind {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .ok_or_else(|| format!("unknown kind {name:?}"))
    }
}

/// The members of an event's JSON, as the filter writes them and
/// `/mem/ingest` reads them.
pub mod field {
    pub const ID: &str = "id";
    pub const USER: &str = "user";
    pub const SESSION: &str = "session";
    pub const ROLE: &str = "role";
    pub const KIND: &str = "kind";
    pub const CONTENT: &str = "content";
    pub const MODEL: &str = "model";
    pub const ROUTE: &str = "route";
    pub const REQUEST_ID: &str = "request_id";
    pub const TASK_ID: &str = "task_id";
    pub const STATUS: &str = "status";
    pub const TIMESTAMP: &str = "timestamp";
    pub const LATENCY_MS: &str = "latency_ms";
    pub const TOKENS_IN: &str = "tokens_in";
    pub const TOKENS_OUT: &str = "tokens_out";
    pub const TRUNCATED: &str = "truncated";
    pub const UNREADABLE: &str = "unreadable";
    pub const REQUEST_BYTES: &str = "request_bytes";
    /// Who acted for the user, see [`super::Event::actor`].
    pub const ACTOR: &str = "actor";
    /// The MCP tool called, see [`super::Event::tool`].
    pub const TOOL: &str = "tool";
    /// Whether the tool call failed, see [`super::Event::is_error`].
    pub const IS_ERROR: &str = "is_error";

    /// What the mirror knows of an exchange besides its text: the members
    /// only the mirror may write.
    pub const EXCHANGE: [&str; 12] = [
        MODEL,
        ROUTE,
        REQUEST_ID,
        STATUS,
        LATENCY_MS,
        TOKENS_IN,
        TOKENS_OUT,
        TRUNCATED,
        UNREADABLE,
        REQUEST_BYTES,
        TOOL,
        IS_ERROR,
    ];
}

/// One mirrored event. A model exchange gives a [`Kind::Prompt`] (role
/// user) and a [`Kind::Reply`] (role assistant); an MCP tool call gives a
/// [`Kind::ToolCall`] (role user) and a [`Kind::ToolResult`] (role
/// assistant), whose `route` is the MCP server's (`/mcp/{server}`), with
/// `tool` on both, `is_error` on the result and no `model`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// See [`event_id`]: a retried delivery overwrites instead of duplicating.
    pub id: String,
    pub user: String,
    pub session: String,
    pub role: Role,
    pub kind: Kind,
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The request path without its query.
    pub route: String,
    pub request_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// The upstream's HTTP status, on both events: a prompt whose reply
    /// failed is worth knowing about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// RFC 3339, UTC, milliseconds ([`crate::timestamp`]): when the request
    /// arrived (prompt) or the reply ended (reply).
    pub timestamp: String,
    pub latency_ms: u64,
    /// Each event carries the count of its own content (prompt: in, reply:
    /// out), so sums over events count every token once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_in: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_out: Option<u64>,
    pub truncated: bool,
    /// On a placeholder prompt, for a request body that gave no prompt:
    /// why, and the body's size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_bytes: Option<u64>,
    /// Who acted for the user when the exchange was made: the actor chain
    /// in [`crate::headers::ACTOR_HEADER`]'s form, current actor first
    /// ([`crate::delegation::ActorChain::header_value`]); absent when the
    /// user acted alone, and in events written before chains existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The MCP tool's name, on both events of a tool call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// On a tool result: whether the call failed, as the result's `isError`
    /// said, or because the server answered with a JSON-RPC error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_error: Option<bool>,
}

/// A UUIDv8 (RFC 9562 §5.8) made of the first 128 bits of a SHA-256 over
/// the user, request id and role, with the version and variant bits set, in
/// the name-based layout of RFC 9562 appendix B.2. The user is part of the
/// name so that a client choosing its own `x-request-id` can at worst
/// overwrite its own events. Fields are length-prefixed so that no two
/// different inputs hash the same bytes.
pub fn event_id(user: &str, request_id: &str, role: Role) -> String {
    let mut hash = Sha256::new();
    hash.update(b"attach-gateway/memory-event/v1\0");
    for field in [user, request_id] {
        hash.update((field.len() as u64).to_be_bytes());
        hash.update(field.as_bytes());
    }
    hash.update(role.name().as_bytes());
    let digest = hash.finalize();
    let mut id = digest.first_chunk::<16>().copied().unwrap_or_default();
    id[6] = (id[6] & 0x0f) | 0x80;
    id[8] = (id[8] & 0x3f) | 0x80;
    let n = u128::from_be_bytes(id);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        n >> 96,
        (n >> 80) & 0xffff,
        (n >> 64) & 0xffff,
        (n >> 48) & 0xffff,
        n & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_uuid_v8(id: &str) -> bool {
        let groups: Vec<&str> = id.split('-').collect();
        groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
            && id
                .chars()
                .all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c))
            && id.as_bytes()[14] == b'8'
            && matches!(id.as_bytes()[19], b'8' | b'9' | b'a' | b'b')
    }

    #[test]
    fn ids_are_deterministic_uuid_v8() {
        let id = event_id("alice", "req-1", Role::User);
        assert!(is_uuid_v8(&id), "{id}");
        assert_eq!(id, event_id("alice", "req-1", Role::User));
        for other in [
            event_id("alice", "req-1", Role::Assistant),
            event_id("alice", "req-2", Role::User),
            event_id("bob", "req-1", Role::User),
            event_id("alicer", "eq-1", Role::User),
            event_id("", "", Role::User),
        ] {
            assert!(is_uuid_v8(&other), "{other}");
            assert_ne!(other, id);
        }
        // Pinned (computed independently with Python's hashlib): a change
        // here would duplicate every event already stored.
        assert_eq!(id, "96a3cc5c-cdf3-8569-9610-a1daded87bb6");
        assert_eq!(
            event_id("alice", "req-1", Role::Assistant),
            "3a0dbc45-28f7-8c39-924e-65799f4e5bd6"
        );
    }

    fn prompt_event() -> Event {
        Event {
            id: event_id("alice", "req-1", Role::User),
            user: "alice".into(),
            session: "s-1".into(),
            role: Role::User,
            kind: Kind::Prompt,
            content: "hi".into(),
            model: Some("llama3.2".into()),
            route: "/api/chat".into(),
            request_id: "req-1".into(),
            task_id: Some("t-1".into()),
            status: Some(200),
            timestamp: "2023-11-14T22:13:20.000Z".into(),
            latency_ms: 1250,
            tokens_in: Some(3),
            tokens_out: None,
            truncated: false,
            unreadable: None,
            request_bytes: None,
            actor: None,
            tool: None,
            is_error: None,
        }
    }

    #[test]
    fn json_shape_for_the_queue_and_ingest() {
        let p = prompt_event();
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "id": p.id, "user": "alice", "session": "s-1", "role": "user",
                "kind": "prompt", "content": "hi", "model": "llama3.2",
                "route": "/api/chat", "request_id": "req-1", "task_id": "t-1",
                "status": 200, "timestamp": "2023-11-14T22:13:20.000Z",
                "latency_ms": 1250, "tokens_in": 3, "truncated": false,
            })
        );
        let bare = Event {
            id: event_id("alice", "req-1", Role::Assistant),
            role: Role::Assistant,
            kind: Kind::Reply,
            content: "hello".into(),
            model: None,
            task_id: None,
            status: None,
            tokens_in: None,
            tokens_out: None,
            truncated: true,
            ..p
        };
        let v = serde_json::to_value(&bare).unwrap();
        for absent in [
            "model",
            "task_id",
            "status",
            "tokens_in",
            "tokens_out",
            "unreadable",
            "request_bytes",
            "actor",
            "tool",
            "is_error",
        ] {
            assert!(v.get(absent).is_none(), "{absent}");
        }
        assert_eq!(
            (&v["role"], &v["kind"]),
            (&"assistant".into(), &"reply".into())
        );
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, bare);
    }

    #[test]
    fn the_members_are_the_events_own() {
        let full = Event {
            tokens_out: Some(5),
            unreadable: Some("not JSON".into()),
            request_bytes: Some(3),
            actor: Some("did:key:coder, did:key:planner".into()),
            tool: Some("echo".into()),
            is_error: Some(false),
            ..prompt_event()
        };
        let v = serde_json::to_value(&full).unwrap();
        let mut members: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut named = vec![
            field::ID,
            field::USER,
            field::SESSION,
            field::ROLE,
            field::KIND,
            field::CONTENT,
            field::TIMESTAMP,
            field::TASK_ID,
            field::ACTOR,
        ];
        named.extend(field::EXCHANGE);
        members.sort_unstable();
        named.sort_unstable();
        assert_eq!(members, named);
    }

    #[test]
    fn kinds_and_roles_read_back_from_their_names_only() {
        for kind in Kind::ALL {
            let v = serde_json::to_value(kind).unwrap();
            assert_eq!(v, kind.name());
            assert_eq!(serde_json::from_value::<Kind>(v).unwrap(), kind);
        }
        for role in Role::ALL {
            let v = serde_json::to_value(role).unwrap();
            assert_eq!(v, role.name());
            assert_eq!(serde_json::from_value::<Role>(v).unwrap(), role);
        }
        assert_eq!(
            Kind::ALL.map(Kind::name),
            ["prompt", "reply", "tool_call", "tool_result"]
        );
        for bad in ["Prompt", "message", "", "user", "ToolCall", "tool-call"] {
            assert!(serde_json::from_value::<Kind>(bad.into()).is_err(), "{bad}");
        }
        assert!(serde_json::from_value::<Role>("User".into()).is_err());
    }

    /// A tool call's two events: the call as the user's, the result as the
    /// server's, distinct ids from the same request, no model.
    #[test]
    fn a_tool_call_and_its_result() {
        let call = Event {
            id: event_id("alice", "req-7", Role::User),
            kind: Kind::ToolCall,
            content: "echo {\"text\":\"hi\"}".into(),
            model: None,
            route: "/mcp/tools".into(),
            request_id: "req-7".into(),
            task_id: None,
            tokens_in: None,
            tool: Some("echo".into()),
            ..prompt_event()
        };
        let result = Event {
            id: event_id("alice", "req-7", Role::Assistant),
            role: Role::Assistant,
            kind: Kind::ToolResult,
            content: "hi".into(),
            is_error: Some(true),
            ..call.clone()
        };
        assert_ne!(call.id, result.id);
        let v = serde_json::to_value(&call).unwrap();
        assert_eq!(
            (&v["kind"], &v["role"], &v["tool"], &v["route"]),
            (
                &"tool_call".into(),
                &"user".into(),
                &"echo".into(),
                &"/mcp/tools".into()
            )
        );
        assert!(v.get("model").is_none() && v.get("is_error").is_none());
        let v = serde_json::to_value(&result).unwrap();
        assert_eq!(
            (&v["kind"], &v["role"], &v["is_error"]),
            (&"tool_result".into(), &"assistant".into(), &true.into())
        );
        assert_eq!(serde_json::from_value::<Event>(v).unwrap(), result);
    }
}
