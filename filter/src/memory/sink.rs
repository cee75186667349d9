//! Where mirrored events go, and the requests that take them there.
//!
//! Two sinks: the companion service's `POST /mem/ingest` (the filter presents
//! the mirror's own credential, [`assertion::sign_mirror`], which no token
//! can produce), or Weaviate's
//! REST API (the class is created once, then batches of objects). The host
//! only dispatches what [`Sink::deliver`] and the schema steps
//! ([`Sink::schema_check`], [`Sink::schema_create`], [`Sink::schema_add`]) build.

use super::routes::{ModelRoute, default_routes};
use super::weaviate;
use crate::url::Url;
use attach_contract::assertion::{self, ASSERTION_LIFETIME_SECS};
use attach_contract::event::Event;
use attach_contract::headers::ASSERTION_HEADER;
use attach_contract::limits;
use attach_contract::weaviate::{CLASS, Property};
use serde::{Deserialize, Serialize};

/// The plugin configuration's `memory` section.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    pub sink: SinkKind,
    /// `service`: the ingest URL (`http://127.0.0.1:PORT/mem/ingest`);
    /// `weaviate`: Weaviate's base URL.
    pub url: String,
    /// Weaviate only: sent as `Authorization: Bearer`.
    #[serde(default)]
    pub api_key: Option<String>,
    /// The environment variable that holds `api_key`, kept out of Envoy's configuration.
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(default = "default_routes")]
    pub routes: Vec<ModelRoute>,
    /// Text kept per message; beyond it the event says `truncated`.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// Reply bytes one VM (one Envoy worker) holds at once, for all the
    /// replies it mirrors; past it a reply is cut and says `truncated`.
    #[serde(default = "default_reply_budget_bytes")]
    pub reply_budget_bytes: usize,
    /// Events waiting across all workers; beyond it the oldest are dropped.
    #[serde(default = "default_queue_max")]
    pub queue_max: usize,
    #[serde(default = "default_batch_events")]
    pub batch_events: usize,
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: usize,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// First retry delay after a failed delivery; doubles up to `retry_max_ms`.
    #[serde(default = "default_retry_initial_ms")]
    pub retry_initial_ms: u64,
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: u64,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    Service,
    Weaviate,
}

fn default_max_bytes() -> usize {
    64 * 1024
}
/// Room for some 500 replies at once at the default `max_bytes`; the worst
/// replies (long lines buffered whole) take up to about 1 MiB each.
fn default_reply_budget_bytes() -> usize {
    32 * 1024 * 1024
}
fn default_queue_max() -> usize {
    10_000
}
fn default_batch_events() -> usize {
    100
}
/// Below the companion service's default body limit (1 MiB) with room for
/// the array around the events.
fn default_batch_bytes() -> usize {
    512 * 1024
}
fn default_timeout_ms() -> u64 {
    5_000
}
fn default_retry_initial_ms() -> u64 {
    200
}
fn default_retry_max_ms() -> u64 {
    10_000
}

/// A validated memory section: what the filter runs with.
#[derive(Clone, Debug)]
pub struct Memory {
    pub sink: Sink,
    pub routes: Vec<ModelRoute>,
    pub max_bytes: usize,
    pub reply_budget_bytes: usize,
    pub queue_max: usize,
    pub batch_events: usize,
    pub batch_bytes: usize,
    pub timeout_ms: u64,
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
}

#[derive(Clone, Debug)]
pub struct Sink {
    pub kind: SinkKind,
    pub url: Url,
    /// Path of the ingest route (service) or the base path (Weaviate).
    path: String,
    api_key: Option<String>,
}

/// One callout: request headers beyond the pseudo-headers, and the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    pub method: &'static str,
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<Vec<u8>>,
}

impl MemoryConfig {
    /// `key` is the validated assertion key, which the service sink needs.
    pub fn validate(self, key: Option<&[u8]>) -> Result<Memory, (&'static str, String)> {
        let (url, path) = endpoint(&self.url).map_err(|m| ("memory.url", m.to_string()))?;
        if self.sink == SinkKind::Service && key.is_none() {
            return Err((
                "memory.sink",
                "the service sink needs assertion_key (the service refuses unasserted callers)"
                    .into(),
            ));
        }
        if self.sink == SinkKind::Service && path.is_empty() {
            return Err(("memory.url", "must name the ingest route".into()));
        }
        if let Some(k) = self.api_key.as_deref() {
            check_api_key(k).map_err(|m| ("memory.api_key", m.to_string()))?;
        }
        for (i, r) in self.routes.iter().enumerate() {
            r.check()
                .map_err(|m| ("memory.routes", format!("[{i}] {m}")))?;
        }
        if !(256..=16 * 1024 * 1024).contains(&self.max_bytes) {
            return Err((
                "memory.max_bytes",
                "must be between 256 and 16777216".into(),
            ));
        }
        if !(16 * 1024..=1024 * 1024 * 1024).contains(&self.reply_budget_bytes) {
            return Err((
                "memory.reply_budget_bytes",
                "must be between 16384 and 1073741824".into(),
            ));
        }
        if self.queue_max == 0 || self.batch_events == 0 || self.batch_bytes < 1024 {
            return Err((
                "memory",
                "queue_max and batch_events must be positive, batch_bytes at least 1024".into(),
            ));
        }
        if self.timeout_ms == 0
            || self.retry_initial_ms == 0
            || self.retry_max_ms < self.retry_initial_ms
        {
            return Err((
                "memory",
                "timeout_ms and retry_initial_ms must be positive, retry_max_ms at least retry_initial_ms"
                    .into(),
            ));
        }
        Ok(Memory {
            sink: Sink {
                kind: self.sink,
                url,
                path: path.trim_end_matches('/').to_string(),
                api_key: self.api_key,
            },
            routes: self.routes,
            max_bytes: self.max_bytes,
            reply_budget_bytes: self.reply_budget_bytes,
            queue_max: self.queue_max,
            batch_events: self.batch_events,
            batch_bytes: self.batch_bytes,
            timeout_ms: self.timeout_ms,
            retry_initial_ms: self.retry_initial_ms,
            retry_max_ms: self.retry_max_ms,
        })
    }
}

/// The URL of a callout as a configuration writes it (`memory.url`,
/// `budget.sync.url`): absolute http(s) without a query or fragment, with
/// its path as written (empty when it has none).
pub(crate) fn endpoint(text: &str) -> Result<(Url, String), &'static str> {
    let text = text.trim();
    let url = Url::parse(text)?;
    let path = text
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').and_then(|i| rest.get(i..)))
        .unwrap_or_default();
    if url.path.contains('?') || path.contains('#') {
        return Err("must not carry a query or fragment");
    }
    Ok((url, path.to_string()))
}

/// A key sent as `Authorization: Bearer`: one header-safe token.
pub(crate) fn check_api_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() || key.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err("must be a non-empty token");
    }
    Ok(())
}

impl Sink {
    /// Before the first batch: Weaviate's class must exist with the
    /// contract's properties. First a read; on 404 the creation, else the
    /// properties the class lacks; the service needs nothing.
    pub fn schema_check(&self) -> Option<Outgoing> {
        (self.kind == SinkKind::Weaviate).then(|| Outgoing {
            method: "GET",
            path: format!("{}/v1/schema/{CLASS}", self.path),
            headers: self.auth_headers(),
            body: None,
        })
    }

    pub fn schema_create(&self) -> Outgoing {
        let mut headers = self.auth_headers();
        headers.push(("content-type", "application/json".into()));
        Outgoing {
            method: "POST",
            path: format!("{}/v1/schema", self.path),
            headers,
            body: Some(weaviate::class_schema()),
        }
    }

    /// The addition of a property a class made by an older gateway lacks
    /// (see [`super::weaviate_upgrade`]).
    pub fn schema_add(&self, property: &Property) -> Outgoing {
        let mut headers = self.auth_headers();
        headers.push(("content-type", "application/json".into()));
        Outgoing {
            method: "POST",
            path: format!("{}/v1/schema/{CLASS}/properties", self.path),
            headers,
            body: Some(weaviate::property_body(property)),
        }
    }

    /// The delivery of `items` (queue items: event JSON). Items that do not
    /// parse as events are left out (the sink could only refuse them).
    pub fn deliver(&self, items: &[Vec<u8>], key: Option<&[u8]>, now_secs: u64) -> Outgoing {
        let events: Vec<Event> = readable(items).map(|(_, e)| e).collect();
        let mut headers = vec![("content-type", "application/json".to_string())];
        match self.kind {
            SinkKind::Service => {
                if let Some(key) = key {
                    let exp = now_secs.saturating_add(ASSERTION_LIFETIME_SECS);
                    headers.push((ASSERTION_HEADER, assertion::sign_mirror(key, exp)));
                }
                let body = serde_json::to_vec(&events).unwrap_or_else(|_| b"[]".to_vec());
                Outgoing {
                    method: "POST",
                    path: self.path.clone(),
                    headers,
                    body: Some(body),
                }
            }
            SinkKind::Weaviate => {
                headers.extend(self.auth_headers());
                Outgoing {
                    method: "POST",
                    path: format!("{}/v1/batch/objects", self.path),
                    headers,
                    body: Some(weaviate::batch_body(&events)),
                }
            }
        }
    }

    /// What a 2xx reply to the delivery of `items` says about them. The
    /// service refuses events one by one for what they carry (its
    /// `refused` list, by position in the array it got): sending them again
    /// cannot help, so they are dropped, and the rest of the batch stands.
    /// Weaviate marks failed objects, which may pass later (a shard that was
    /// unavailable), so they are sent again. `None` when the reply cannot be
    /// read, so the whole batch is retried (writes are upserts by id).
    pub fn answer(&self, items: &[Vec<u8>], reply: &[u8]) -> Option<Answer> {
        match self.kind {
            SinkKind::Service => {
                // An object: serde would also read an array as the struct.
                if reply.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
                    return None;
                }
                let reply: IngestReply = serde_json::from_slice(reply).ok()?;
                let sent: Vec<usize> = readable(items).map(|(i, _)| i).collect();
                let mut refused: Vec<usize> = reply
                    .refused
                    .iter()
                    .filter_map(|r| sent.get(r.index).copied())
                    .collect();
                refused.sort_unstable();
                refused.dedup();
                let reason = reply
                    .refused
                    .iter()
                    .find_map(|r| r.reason.as_deref())
                    .map(|r| limits::fit(r, MAX_REASON_CHARS));
                Some(Answer {
                    retry: Vec::new(),
                    refused: refused.len(),
                    reason,
                })
            }
            SinkKind::Weaviate => {
                let failed = weaviate::failed_ids(reply).ok()?;
                let retry = items
                    .iter()
                    .filter(|item| {
                        serde_json::from_slice::<IdOnly>(item)
                            .is_ok_and(|e| failed.iter().any(|f| f.eq_ignore_ascii_case(&e.id)))
                    })
                    .cloned()
                    .collect();
                Some(Answer {
                    retry,
                    refused: 0,
                    reason: None,
                })
            }
        }
    }

    fn auth_headers(&self) -> Vec<(&'static str, String)> {
        self.api_key
            .iter()
            .map(|k| ("authorization", format!("Bearer {k}")))
            .collect()
    }
}

/// The sink's word on a delivered batch (see [`Sink::answer`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Answer {
    /// Items to send again.
    pub retry: Vec<Vec<u8>>,
    /// How many items the sink refused for good.
    pub refused: usize,
    /// The first refusal's reason, fitted for a log line.
    pub reason: Option<String>,
}

/// A refusal reason kept for the log.
const MAX_REASON_CHARS: usize = 200;

/// `{"accepted": [...], "inserted": n, "refused": [{"index", "id", "reason"}]}`
/// from the service's `POST /mem/ingest`; only `refused` matters here.
#[derive(Deserialize)]
struct IngestReply {
    #[serde(default)]
    refused: Vec<Refusal>,
}

#[derive(Deserialize)]
struct Refusal {
    index: usize,
    #[serde(default)]
    reason: Option<String>,
}

/// The items that parse as events, with their positions among `items`:
/// what [`Sink::deliver`] sends, in order.
fn readable(items: &[Vec<u8>]) -> impl Iterator<Item = (usize, Event)> + '_ {
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| serde_json::from_slice(item).ok().map(|e| (i, e)))
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use attach_contract::event::{Kind, Role};

    fn config(sink: &str, url: &str) -> MemoryConfig {
        serde_json::from_value(serde_json::json!({"sink": sink, "url": url})).unwrap()
    }

    fn event(id: &str) -> Vec<u8> {
        serde_json::to_vec(&Event {
            id: id.into(),
            user: "alice".into(),
            session: "s".into(),
            role: Role::User,
            kind: Kind::Prompt,
            content: "hi".into(),
            model: None,
            route: "/api/chat".into(),
            request_id: "r".into(),
            task_id: None,
            status: Some(200),
            timestamp: "2026-01-01T00:00:00.000Z".into(),
            latency_ms: 3,
            tokens_in: None,
            tokens_out: None,
            truncated: false,
            unreadable: None,
            request_bytes: None,
            actor: None,
            tool: None,
            is_error: None,
        })
        .unwrap()
    }

    #[test]
    fn defaults_and_validation() {
        let m = config("service", "http://127.0.0.1:9/mem/ingest")
            .validate(Some(&[1; 32]))
            .unwrap();
        assert_eq!(m.routes.len(), 4);
        assert_eq!((m.max_bytes, m.queue_max), (65_536, 10_000));
        assert_eq!(m.reply_budget_bytes, 32 * 1024 * 1024);
        assert_eq!(m.sink.path, "/mem/ingest");

        let refused = |c: MemoryConfig, key: Option<&[u8]>| c.validate(key).unwrap_err().0;
        assert_eq!(
            refused(config("service", "http://127.0.0.1:9/mem/ingest"), None),
            "memory.sink"
        );
        assert_eq!(
            refused(config("service", "http://127.0.0.1:9"), Some(&[1; 32])),
            "memory.url"
        );
        assert_eq!(refused(config("weaviate", "ftp://x"), None), "memory.url");
        let mut c = config("weaviate", "http://127.0.0.1:8081");
        c.batch_events = 0;
        assert_eq!(refused(c, None), "memory");
        for n in [16 * 1024 - 1, 1024 * 1024 * 1024 + 1] {
            let mut c = config("weaviate", "http://127.0.0.1:8081");
            c.reply_budget_bytes = n;
            assert_eq!(refused(c, None), "memory.reply_budget_bytes");
        }
        let mut c = config("weaviate", "http://127.0.0.1:8081");
        c.api_key = Some("two words".into());
        assert_eq!(refused(c, None), "memory.api_key");
        assert!(
            serde_json::from_value::<MemoryConfig>(
                serde_json::json!({"sink": "disk", "url": "http://x"})
            )
            .is_err()
        );
    }

    #[test]
    fn service_delivery_carries_the_mirror_credential() {
        let key = [7u8; 32];
        let m = config("service", "http://127.0.0.1:9/mem/ingest")
            .validate(Some(&key))
            .unwrap();
        let out = m
            .sink
            .deliver(&[event("a"), b"not json".to_vec()], Some(&key), 1_000);
        assert_eq!((out.method, out.path.as_str()), ("POST", "/mem/ingest"));
        let header = |n: &str| {
            out.headers
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(header("x-attach-user"), None, "the mirror is no user");
        let assertion = header(ASSERTION_HEADER).unwrap();
        assert!(
            assertion::check(&key, assertion::MIRROR_AUDIENCE, &assertion, "", "", 1_000).is_ok()
        );
        assert!(
            assertion.starts_with("v2.1060."),
            "it lives 60 seconds: {assertion}"
        );
        let body: serde_json::Value = serde_json::from_slice(out.body.as_ref().unwrap()).unwrap();
        assert_eq!(
            body.as_array().unwrap().len(),
            1,
            "unreadable items are left out"
        );
        assert_eq!(m.sink.answer(&[event("a")], b"{}"), Some(Answer::default()));
        assert!(m.sink.schema_check().is_none());
    }

    /// Issue: the service refused whole batches for one event, and the
    /// filter dropped them, taking every other user's events along.
    #[test]
    fn service_refusals_drop_only_the_refused_events() {
        let key = [7u8; 32];
        let m = config("service", "http://127.0.0.1:9/mem/ingest")
            .validate(Some(&key))
            .unwrap();
        let items = [event("a"), b"not json".to_vec(), event("b"), event("c")];
        let reply = serde_json::json!({
            "accepted": ["a", "c"], "inserted": 2,
            "refused": [{"index": 1, "id": "b", "reason": "model must be\nshort"},
                        {"index": 1, "id": "b", "reason": "twice"},
                        {"index": 9, "id": null, "reason": "no such event"}],
        });
        let answer = m.sink.answer(&items, reply.to_string().as_bytes()).unwrap();
        assert_eq!(
            answer,
            Answer {
                retry: vec![],
                refused: 1,
                reason: Some("model must be\u{fffd}short".into()),
            },
            "index 1 is the second event sent (the unreadable item was left out)"
        );
        let none = serde_json::json!({"accepted": ["a"], "inserted": 1, "refused": []});
        assert_eq!(
            m.sink.answer(&items, none.to_string().as_bytes()),
            Some(Answer::default())
        );
        for unreadable in [&b"<html>"[..], b"[]", br#"{"refused": [{"reason": "x"}]}"#] {
            assert_eq!(m.sink.answer(&items, unreadable), None, "retried whole");
        }
    }

    #[test]
    fn weaviate_delivery_retries_only_failed_objects() {
        let mut c = config("weaviate", "http://127.0.0.1:8081/");
        c.api_key = Some("k3y".into());
        let m = c.validate(None).unwrap();
        let check = m.sink.schema_check().unwrap();
        assert_eq!(check.path, "/v1/schema/MemoryEvent");
        assert_eq!(check.headers, vec![("authorization", "Bearer k3y".into())]);
        assert_eq!(m.sink.schema_create().path, "/v1/schema");
        let tool = attach_contract::weaviate::PROPERTIES
            .iter()
            .find(|p| p.name == "tool")
            .unwrap();
        let add = m.sink.schema_add(tool);
        assert_eq!(
            (add.method, add.path.as_str()),
            ("POST", "/v1/schema/MemoryEvent/properties")
        );
        assert_eq!(
            add.headers,
            vec![
                ("authorization", "Bearer k3y".into()),
                ("content-type", "application/json".into())
            ]
        );
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(add.body.as_deref().unwrap()).unwrap(),
            serde_json::json!({"name": "tool", "dataType": ["text"], "tokenization": "field"})
        );

        let a = "00000000-0000-8000-8000-00000000000a";
        let b = "00000000-0000-8000-8000-00000000000b";
        let items = [event(a), event(b)];
        let out = m.sink.deliver(&items, None, 0);
        assert_eq!(out.path, "/v1/batch/objects");
        let reply = serde_json::json!([
            {"id": a, "result": {"status": "SUCCESS"}},
            {"id": b.to_uppercase(), "result": {"status": "FAILED", "errors": {"error": [{"message": "x"}]}}},
        ]);
        let answer = m.sink.answer(&items, reply.to_string().as_bytes()).unwrap();
        assert_eq!(answer.retry, vec![event(b)]);
        assert_eq!((answer.refused, answer.reason), (0, None));
        assert_eq!(m.sink.answer(&items, b"<html>"), None);
    }
}
