//! Memory reads from Weaviate.
//!
//! With `MEM_BACKEND=weaviate` the gateway's filter writes mirrored model
//! prompts and replies, and MCP tool calls and results, straight to Weaviate (the contract's class,
//! [`attach_contract::weaviate`], object id = event id) instead of posting
//! them to `/mem/ingest`, so the memory routes read them back from there.
//! Queries go through GraphQL `Get`, always scoped to the caller's user;
//! objects come back as [`MemoryEvent`]s so callers see one shape whichever
//! side an event came from.

use std::fmt;

use attach_contract::delegation::ActorChain;
use attach_contract::weaviate::{CLASS, PROPERTIES, property};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde_json::{Map, Value, json};

use crate::a2a::model::parse_timestamp;
use crate::config::WeaviateConfig;
use crate::error::{AppError, one_line};
use crate::store::{ExchangeMeta, MemoryEvent, MemoryFilter};

/// What a `Get` selects: every property the filter writes but those the
/// class lacks, then the object id.
fn selection(lacking: &[&str]) -> String {
    let mut fields: Vec<&str> = PROPERTIES
        .iter()
        .map(|p| p.name)
        .filter(|name| !lacking.contains(name))
        .collect();
    fields.push("_additional { id }");
    fields.join(" ")
}

/// Longest GraphQL error text kept for the log.
const MAX_DETAIL: usize = 300;

/// A property an `Equal` condition may name. Paths are fixed here, never
/// taken from a request, so only the compared values need escaping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    User,
    Session,
    TaskId,
    Kind,
    Tool,
    Id,
}

impl Field {
    fn path(self) -> &'static str {
        match self {
            Field::User => property::USER,
            Field::Session => property::SESSION,
            Field::TaskId => property::TASK_ID,
            Field::Kind => property::KIND,
            Field::Tool => property::TOOL,
            Field::Id => "id",
        }
    }

    fn value_of(self, e: &MemoryEvent) -> Option<&str> {
        match self {
            Field::User => Some(&e.owner),
            Field::Session => Some(&e.session),
            Field::TaskId => e.task_id.as_deref(),
            Field::Kind => Some(&e.kind),
            Field::Tool => e.tool.as_deref(),
            Field::Id => Some(&e.id),
        }
    }
}

/// One `Equal` condition of a query.
type Condition<'a> = (Field, &'a str);

/// Why a Weaviate read failed. Callers get [`WeaviateError::reason`]; the
/// detail is for the service's log only.
#[derive(Debug, PartialEq, Eq)]
pub enum WeaviateError {
    Timeout,
    Unreachable(String),
    Status(u16),
    /// A GraphQL `errors` reply.
    Query(String),
    /// A reply that is not the `Get` result asked for.
    Malformed(String),
    /// The class lacks these properties of the contract (a class an older
    /// gateway made, before a gateway's schema check adds them).
    Lacking(Vec<&'static str>),
}

impl WeaviateError {
    /// The one line a caller sees: nothing about Weaviate's address,
    /// schema or messages.
    pub fn reason(&self) -> &'static str {
        match self {
            WeaviateError::Timeout => "the memory backend did not answer in time",
            _ => "the memory backend failed",
        }
    }
}

impl fmt::Display for WeaviateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WeaviateError::Timeout => f.write_str("Weaviate did not answer in time"),
            WeaviateError::Unreachable(e) => write!(f, "Weaviate is unreachable: {e}"),
            WeaviateError::Status(s) => write!(f, "Weaviate answered HTTP {s}"),
            WeaviateError::Query(m) => write!(f, "Weaviate refused the query: {m}"),
            WeaviateError::Malformed(m) => write!(f, "Weaviate's reply is malformed: {m}"),
            WeaviateError::Lacking(names) => {
                write!(f, "class {CLASS} lacks properties {}", names.join(", "))
            }
        }
    }
}

impl std::error::Error for WeaviateError {}

impl From<WeaviateError> for AppError {
    fn from(e: WeaviateError) -> Self {
        AppError::MemoryBackend {
            reason: e.reason(),
            detail: one_line(&e.to_string()),
        }
    }
}

/// The client for memory reads, one per service process.
pub struct Weaviate {
    client: reqwest::Client,
    graphql_url: String,
    authorization: Option<HeaderValue>,
}

impl Weaviate {
    /// No redirects (the configured URL is the only peer the key goes to)
    /// and no proxies from the environment.
    pub fn new(config: &WeaviateConfig) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| format!("cannot build the Weaviate client: {e}"))?;
        let authorization = match &config.api_key {
            Some(key) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {key}"))
                    .map_err(|_| "WEAVIATE_API_KEY cannot be sent in a header".to_string())?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        Ok(Weaviate {
            client,
            graphql_url: format!("{}/v1/graphql", config.url),
            authorization,
        })
    }

    /// The caller's mirrored events matching the filter, newest first.
    pub async fn list(
        &self,
        owner: &str,
        f: &MemoryFilter,
    ) -> Result<Vec<MemoryEvent>, WeaviateError> {
        let mut conditions = vec![(Field::User, owner)];
        if let Some(s) = &f.select.session {
            conditions.push((Field::Session, s));
        }
        if let Some(t) = &f.select.task_id {
            conditions.push((Field::TaskId, t));
        }
        if let Some(k) = &f.select.kind {
            conditions.push((Field::Kind, k));
        }
        if let Some(t) = &f.select.tool {
            conditions.push((Field::Tool, t));
        }
        self.query(&conditions, f.limit).await
    }

    /// The caller's mirrored event with this id (a canonical UUID).
    pub async fn get(&self, owner: &str, id: &str) -> Result<Option<MemoryEvent>, WeaviateError> {
        let found = self
            .query(&[(Field::User, owner), (Field::Id, id)], 1)
            .await?;
        Ok(found.into_iter().next())
    }

    /// A class an older gateway made lacks the properties added since
    /// until a gateway's schema check adds them; meanwhile reads go on
    /// without them (and a condition on one matches nothing, no object
    /// having a value for it).
    async fn query(
        &self,
        conditions: &[Condition<'_>],
        limit: i64,
    ) -> Result<Vec<MemoryEvent>, WeaviateError> {
        match self.query_lacking(conditions, limit, &[]).await {
            Err(WeaviateError::Lacking(lacking)) => {
                if conditions
                    .iter()
                    .any(|(field, _)| lacking.contains(&field.path()))
                {
                    return Ok(Vec::new());
                }
                self.query_lacking(conditions, limit, &lacking).await
            }
            other => other,
        }
    }

    async fn query_lacking(
        &self,
        conditions: &[Condition<'_>],
        limit: i64,
        lacking: &[&str],
    ) -> Result<Vec<MemoryEvent>, WeaviateError> {
        let mut request = self
            .client
            .post(&self.graphql_url)
            .json(&json!({"query": get_query(conditions, limit, lacking)}));
        if let Some(value) = &self.authorization {
            request = request.header(AUTHORIZATION, value.clone());
        }
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        if !status.is_success() {
            return Err(WeaviateError::Status(status.as_u16()));
        }
        let body = response.bytes().await.map_err(transport_error)?;
        let mut events = parse_reply(&body)?;
        // The filter declares these properties with `field` tokenization, so
        // `Equal` is exact; a class made otherwise would match on shared
        // words, and another user's events must never come back.
        events.retain(|e| {
            conditions
                .iter()
                .all(|(field, value)| field.value_of(e) == Some(*value))
        });
        Ok(events)
    }
}

fn transport_error(e: reqwest::Error) -> WeaviateError {
    if e.is_timeout() {
        WeaviateError::Timeout
    } else {
        WeaviateError::Unreachable(one_line(&e.to_string()))
    }
}

/// A GraphQL string literal: JSON's escaping is a subset of GraphQL's, so
/// a value cannot end the literal early or add query text.
fn text_literal(value: &str) -> String {
    Value::from(value).to_string()
}

/// The `Get` query: every condition must hold, newest first.
fn get_query(conditions: &[Condition<'_>], limit: i64, lacking: &[&str]) -> String {
    let operands = conditions
        .iter()
        .map(|(field, value)| {
            format!(
                "{{path: [\"{}\"], operator: Equal, valueText: {}}}",
                field.path(),
                text_literal(value)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{{ Get {{ {CLASS}(where: {{operator: And, operands: [{operands}]}}, limit: {limit}, \
         sort: [{{path: [\"{}\"], order: desc}}]) {{ {} }} }} }}",
        property::TIMESTAMP,
        selection(lacking)
    )
}

/// The property of the contract a GraphQL error says the class does not
/// have (`Cannot query field "tool" on type "MemoryEvent".`).
fn lacking_property(message: &str) -> Option<&'static str> {
    let rest = message.strip_prefix("Cannot query field \"")?;
    let (name, rest) = rest.split_once('"')?;
    if !rest.starts_with(&format!(" on type \"{CLASS}\"")) {
        return None;
    }
    PROPERTIES.iter().map(|p| p.name).find(|p| *p == name)
}

/// The objects of a `{"data": {"Get": {"MemoryEvent": [...]}}}` reply. Any
/// GraphQL error fails the whole read: a partial answer would pass for a
/// complete one. The one exception is a class that does not exist yet
/// (the filter creates it with its first write): then there is nothing to
/// read, and the answer is complete. Errors that only name properties of
/// the contract the class lacks are [`WeaviateError::Lacking`].
fn parse_reply(body: &[u8]) -> Result<Vec<MemoryEvent>, WeaviateError> {
    let reply: Value = serde_json::from_slice(body)
        .map_err(|_| WeaviateError::Malformed("the reply is not JSON".into()))?;
    let no_class = format!("Cannot query field \"{CLASS}\" on type \"GetObjectsObj\"");
    let errors = match reply.get("errors") {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) if list.is_empty() => None,
        Some(Value::Array(list))
            if list.iter().all(|e| {
                e["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(&no_class))
            }) =>
        {
            return Ok(Vec::new());
        }
        Some(Value::Array(list))
            if list
                .iter()
                .all(|e| e["message"].as_str().and_then(lacking_property).is_some()) =>
        {
            let mut lacking: Vec<&'static str> = list
                .iter()
                .filter_map(|e| e["message"].as_str().and_then(lacking_property))
                .collect();
            lacking.sort_unstable();
            lacking.dedup();
            return Err(WeaviateError::Lacking(lacking));
        }
        Some(Value::Array(list)) => Some(
            list.iter()
                .map(|e| e["message"].as_str().unwrap_or("(no message)"))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        Some(_) => Some("errors is not a list".into()),
    };
    if let Some(text) = errors {
        let text = one_line(&text);
        return Err(WeaviateError::Query(
            text.chars().take(MAX_DETAIL).collect(),
        ));
    }
    let objects = reply["data"]["Get"][CLASS].as_array().ok_or_else(|| {
        WeaviateError::Malformed(format!("no data.Get.{CLASS} list in the reply"))
    })?;
    objects
        .iter()
        .map(event_from_object)
        .collect::<Result<_, _>>()
        .map_err(WeaviateError::Malformed)
}

/// An object back in the store's shape: `_additional.id` is the event id
/// and `timestamp` its creation time. Defaults match what `/mem/ingest`
/// assumes for an event without `session` or `kind`.
fn event_from_object(object: &Value) -> Result<MemoryEvent, String> {
    let Value::Object(o) = object else {
        return Err("an object is not a JSON object".into());
    };
    let id = object["_additional"]["id"]
        .as_str()
        .ok_or("an object has no _additional.id")?
        .to_string();
    let required = |key: &str| text(o, key)?.ok_or_else(|| format!("object {id} has no {key}"));
    let created_ms = parse_timestamp(&required(property::TIMESTAMP)?)
        .ok_or_else(|| format!("object {id} has a timestamp that is not RFC 3339"))?;
    let status = match unsigned(o, property::STATUS)? {
        Some(n) => Some(u16::try_from(n).map_err(|_| "status is out of range".to_string())?),
        None => None,
    };
    Ok(MemoryEvent {
        owner: required(property::USER)?,
        session: text(o, property::SESSION)?.unwrap_or_default(),
        kind: text(o, property::KIND)?.unwrap_or_else(|| "message".into()),
        role: text(o, property::ROLE)?,
        task_id: text(o, property::TASK_ID)?,
        content: text(o, property::CONTENT)?.map_or(Value::Null, Value::String),
        created_ms,
        actor: ActorChain::default(),
        tool: text(o, property::TOOL)?,
        meta: ExchangeMeta {
            model: text(o, property::MODEL)?,
            route: text(o, property::ROUTE)?,
            request_id: text(o, property::REQUEST_ID)?,
            status,
            latency_ms: unsigned(o, property::LATENCY_MS)?,
            tokens_in: unsigned(o, property::TOKENS_IN)?,
            tokens_out: unsigned(o, property::TOKENS_OUT)?,
            truncated: flag(o, property::TRUNCATED)?,
            unreadable: text(o, property::UNREADABLE)?,
            request_bytes: unsigned(o, property::REQUEST_BYTES)?,
            is_error: flag(o, property::IS_ERROR)?,
        },
        id,
    })
}

fn text(o: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{key} is not text")),
    }
}

fn flag(o: &Map<String, Value>, key: &str) -> Result<Option<bool>, String> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(format!("{key} is not a boolean")),
    }
}

fn unsigned(o: &Map<String, Value>, key: &str) -> Result<Option<u64>, String> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("{key} is not a non-negative integer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_has_the_documented_shape() {
        let q = get_query(&[(Field::User, "alice"), (Field::Session, "s1")], 50, &[]);
        assert_eq!(
            q,
            r#"{ Get { MemoryEvent(where: {operator: And, operands: [{path: ["user"], operator: Equal, valueText: "alice"}, {path: ["session"], operator: Equal, valueText: "s1"}]}, limit: 50, sort: [{path: ["timestamp"], order: desc}]) { user session role kind content model route requestId taskId status timestamp latencyMs tokensIn tokensOut truncated unreadable requestBytes tool isError _additional { id } } } }"#
        );
        let q = get_query(
            &[
                (Field::User, "bob"),
                (Field::TaskId, "t-1"),
                (Field::Kind, "reply"),
                (Field::Tool, "echo"),
                (Field::Id, "0b6f0a0e-0000-4000-8000-000000000001"),
            ],
            1,
            &[],
        );
        assert!(q.contains(r#"{path: ["tool"], operator: Equal, valueText: "echo"}"#));
        assert!(q.contains(r#"{path: ["taskId"], operator: Equal, valueText: "t-1"}"#));
        assert!(q.contains(r#"{path: ["kind"], operator: Equal, valueText: "reply"}"#));
        assert!(q.contains(r#"{path: ["id"], operator: Equal, valueText: "0b6f0a0e-"#));
        assert!(q.contains("limit: 1,"));
    }

    /// The value of every `valueText` in a query, read the way a GraphQL
    /// lexer reads string literals.
    fn literals(query: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = query;
        while let Some(at) = rest.find("valueText: ") {
            rest = &rest[at + "valueText: ".len()..];
            let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<String>();
            out.push(stream.next().unwrap().unwrap());
            rest = &rest[stream.byte_offset()..];
        }
        out
    }

    #[test]
    fn values_cannot_break_out() {
        let hostile = [
            r#"s1"}, {path: ["user"], operator: Equal, valueText: "bob"#,
            "\"} ) { user } } } #",
            "back\\slash\\\"",
            "line\nbreak\r\tand \u{1} control",
            "unicode é 漢字 🦀",
        ];
        for value in hostile {
            let q = get_query(&[(Field::User, "alice"), (Field::Session, value)], 5, &[]);
            assert_eq!(literals(&q), ["alice", value], "{q}");
            // One query line, and the structure after the value is intact.
            assert!(!q.contains('\n') && !q.contains('\r'), "{q}");
            assert!(q.ends_with(&format!(
                "]}}, limit: 5, sort: [{{path: [\"timestamp\"], order: desc}}]) {{ {} }} }} }}",
                selection(&[])
            )));
        }
    }

    #[test]
    fn parses_objects_into_events() {
        let body = json!({"data": {"Get": {"MemoryEvent": [
            {"user": "alice", "session": "s1", "role": "assistant", "kind": "reply",
             "content": "hello", "model": "gpt-4o", "route": "/api/chat", "requestId": "r1",
             "taskId": null, "status": 200, "timestamp": "2030-01-01T00:00:01.5Z",
             "latencyMs": 900, "tokensIn": null, "tokensOut": 12, "truncated": false,
             "unreadable": null, "requestBytes": null,
             "_additional": {"id": "0b6f0a0e-0000-4000-8000-000000000001"}},
            {"user": "alice", "kind": "prompt", "content": "", "truncated": true,
             "unreadable": "duplicate key", "requestBytes": 77,
             "timestamp": "2030-01-01T00:00:01Z",
             "_additional": {"id": "0b6f0a0e-0000-4000-8000-000000000003"}},
            {"user": "alice", "session": null, "role": null, "kind": null, "content": null,
             "model": null, "route": null, "requestId": null, "taskId": "t1", "status": null,
             "timestamp": "2030-01-01T02:00:00+02:00", "latencyMs": null, "tokensIn": null,
             "tokensOut": null, "truncated": null, "tool": null, "isError": null,
             "_additional": {"id": "0b6f0a0e-0000-4000-8000-000000000002"}},
            {"user": "alice", "session": "s1", "role": "assistant", "kind": "tool_result",
             "content": "boom", "route": "/mcp/tools", "requestId": "r2", "status": 200,
             "timestamp": "2030-01-01T00:00:03Z", "latencyMs": 40, "truncated": false,
             "tool": "echo", "isError": true,
             "_additional": {"id": "0b6f0a0e-0000-4000-8000-000000000004"}},
        ]}}});
        let events = parse_reply(body.to_string().as_bytes()).unwrap();
        assert_eq!(events.len(), 4);
        let e = &events[0];
        assert_eq!(e.id, "0b6f0a0e-0000-4000-8000-000000000001");
        assert_eq!(e.owner, "alice");
        assert_eq!(e.session, "s1");
        assert_eq!(e.kind, "reply");
        assert_eq!(e.role.as_deref(), Some("assistant"));
        assert_eq!(e.content, json!("hello"));
        assert_eq!(e.created_ms, 1_893_456_001_500);
        assert_eq!(
            e.meta,
            ExchangeMeta {
                model: Some("gpt-4o".into()),
                route: Some("/api/chat".into()),
                request_id: Some("r1".into()),
                status: Some(200),
                latency_ms: Some(900),
                tokens_in: None,
                tokens_out: Some(12),
                truncated: Some(false),
                unreadable: None,
                request_bytes: None,
                is_error: None,
            }
        );
        assert_eq!(e.tool, None);
        let placeholder = &events[1].meta;
        assert_eq!(placeholder.unreadable.as_deref(), Some("duplicate key"));
        assert_eq!(placeholder.request_bytes, Some(77));
        let bare = &events[2];
        assert_eq!(bare.session, "");
        assert_eq!(bare.kind, "message");
        assert_eq!(bare.content, Value::Null);
        assert_eq!(bare.task_id.as_deref(), Some("t1"));
        assert_eq!(bare.created_ms, 1_893_456_000_000);
        assert!(bare.meta.is_empty());
        assert_eq!(bare.tool, None);
        let result = &events[3];
        assert_eq!(
            (result.kind.as_str(), result.tool.as_deref()),
            ("tool_result", Some("echo"))
        );
        assert_eq!(result.meta.is_error, Some(true));
        assert_eq!(result.meta.route.as_deref(), Some("/mcp/tools"));
        assert_eq!(result.meta.model, None);
        let empty = json!({"data": {"Get": {"MemoryEvent": []}}});
        assert_eq!(parse_reply(empty.to_string().as_bytes()), Ok(Vec::new()));
    }

    #[test]
    fn errors_and_odd_replies_fail_the_read() {
        let cases = [
            json!({"errors": [{"message": "Cannot query field \"MemoryEvent\"", "locations": []}]}),
            json!({"data": {"Get": {"MemoryEvent": [{"user": "a", "timestamp": "2030-01-01T00:00:00Z", "_additional": {"id": "x"}}]}},
                   "errors": [{"message": "partial"}]}),
            json!({"errors": "boom"}),
        ];
        for body in cases {
            let err = parse_reply(body.to_string().as_bytes()).unwrap_err();
            assert!(matches!(err, WeaviateError::Query(_)), "{body}: {err:?}");
        }
        let object = |extra: Value| {
            let mut o = json!({"user": "a", "timestamp": "2030-01-01T00:00:00Z",
                               "_additional": {"id": "x"}});
            for (k, v) in extra.as_object().unwrap() {
                o[k] = v.clone();
            }
            json!({"data": {"Get": {"MemoryEvent": [o]}}}).to_string()
        };
        let malformed = [
            "not json".to_string(),
            json!({"data": null}).to_string(),
            json!({"data": {"Get": {"Other": []}}}).to_string(),
            json!({"data": {"Get": {"MemoryEvent": [{"user": "a", "timestamp": "2030-01-01T00:00:00Z"}]}}}).to_string(),
            object(json!({"user": null})),
            object(json!({"timestamp": "yesterday"})),
            object(json!({"status": 70000})),
            object(json!({"latencyMs": -1})),
            object(json!({"tokensIn": 1.5})),
            object(json!({"truncated": "no"})),
            object(json!({"unreadable": 1})),
            object(json!({"requestBytes": -1})),
            object(json!({"tool": 7})),
            object(json!({"isError": "yes"})),
            object(json!({"session": 3})),
        ];
        for body in malformed {
            let err = parse_reply(body.as_bytes()).unwrap_err();
            assert!(
                matches!(err, WeaviateError::Malformed(_)),
                "{body}: {err:?}"
            );
        }
        assert!(parse_reply(object(json!({})).as_bytes()).is_ok());
        let no_class = json!({"data": null, "errors": [{"message": "Cannot query field \"MemoryEvent\" on type \"GetObjectsObj\".", "locations": [{"line": 1, "column": 9}]}]});
        assert_eq!(parse_reply(no_class.to_string().as_bytes()), Ok(Vec::new()));
        let no_errors = json!({"data": {"Get": {"MemoryEvent": []}}, "errors": []});
        assert_eq!(
            parse_reply(no_errors.to_string().as_bytes()),
            Ok(Vec::new())
        );
    }

    /// A class an older gateway made, before a gateway adds what it lacks.
    #[test]
    fn properties_the_class_lacks_are_named() {
        let error = |name: &str| {
            json!({"message": format!("Cannot query field \"{name}\" on type \"MemoryEvent\"."),
                   "locations": [{"line": 1, "column": 300}]})
        };
        let reply =
            json!({"data": null, "errors": [error("tool"), error("isError"), error("tool")]});
        assert_eq!(
            parse_reply(reply.to_string().as_bytes()),
            Err(WeaviateError::Lacking(vec!["isError", "tool"]))
        );
        for others in [
            json!({"errors": [error("tool"), {"message": "something else"}]}),
            json!({"errors": [error("mood")]}),
            json!({"errors": [{"message": "Cannot query field \"tool\" on type \"Other\"."}]}),
            json!({"errors": [{"message": "Cannot query field \"tool\" on type \"MemoryEventX\"."}]}),
        ] {
            let err = parse_reply(others.to_string().as_bytes()).unwrap_err();
            assert!(matches!(err, WeaviateError::Query(_)), "{others}: {err:?}");
        }
        let q = get_query(&[(Field::User, "alice")], 5, &["tool", "isError"]);
        assert!(q.contains("{ user session role kind content model route requestId taskId status timestamp latencyMs tokensIn tokensOut truncated unreadable requestBytes _additional { id } }"), "{q}");
        assert!(
            WeaviateError::Lacking(vec!["tool"])
                .to_string()
                .contains("lacks properties tool")
        );
        assert_eq!(
            WeaviateError::Lacking(vec!["tool"]).reason(),
            "the memory backend failed"
        );
    }

    #[test]
    fn callers_see_no_details() {
        let errors = [
            WeaviateError::Timeout,
            WeaviateError::Unreachable(
                "error sending request for url (http://10.0.0.5:8080/v1/graphql)".into(),
            ),
            WeaviateError::Status(401),
            WeaviateError::Query("no such prop with name 'x'".into()),
            WeaviateError::Malformed("no data".into()),
        ];
        for e in errors {
            let reason = e.reason();
            assert!(
                !reason.contains("10.0.0.5") && !reason.contains("prop"),
                "{reason}"
            );
            assert!(!reason.contains('\n'));
        }
    }
}
