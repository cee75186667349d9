//! The memory event: one for the prompt and one for the reply of each
//! exchange with a model.
//!
//! The same JSON is the shared-queue item and an element of the companion
//! service's `POST /mem/ingest` array, so the root context batches queue
//! items with [`batch_array`] without parsing them again.
//!
//! Every event fits [`limits`]: the sink refuses events that do not, and
//! what a client puts in its request (the model's name, its request id)
//! must never cost the exchange its record.

use super::limits::{self, MAX_MODEL_CHARS, MAX_REQUEST_ID_CHARS, MAX_ROUTE_CHARS};
use super::limits::{MAX_SESSION_CHARS, MAX_UNIX_MS};
use super::prompt::Prompt;
use super::reply_capture::Reply;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt::Write;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Prompt,
    Reply,
}

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
    /// RFC 3339, UTC, milliseconds: when the request arrived (prompt) or the
    /// reply ended (reply).
    pub timestamp: String,
    pub latency_ms: u64,
    /// Each event carries the count of its own content (prompt: in, reply:
    /// out), so sums over events count every token once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_in: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_out: Option<u64>,
    pub truncated: bool,
    /// On a placeholder prompt (see [`Unreadable`]): why the request body
    /// gave no prompt, and its size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_bytes: Option<u64>,
}

/// A request body that gave no prompt: the engine may still have read it
/// (parsers differ on duplicate keys, lone surrogates, `NaN`...), so the
/// exchange is recorded with a placeholder prompt that says why and how
/// large the body was, instead of not at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unreadable {
    pub reason: &'static str,
    pub request_bytes: u64,
}

/// What the filter knows of an exchange besides its bodies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exchange<'a> {
    pub user: &'a str,
    pub session: &'a str,
    /// Must be unique per exchange (Envoy's `x-request-id`): it keys the ids.
    pub request_id: &'a str,
    pub route: &'a str,
    pub task_id: Option<&'a str>,
    pub status: Option<u16>,
    /// Unix milliseconds when the request arrived and the reply ended.
    pub start_ms: u64,
    pub end_ms: u64,
}

impl Exchange<'_> {
    /// The prompt event (a placeholder when the body was unreadable), then
    /// the reply event. Both name the model the request asked for (the
    /// reply's own name when it did not say), so a filter on `model` finds
    /// both halves. Labels are fitted to [`limits`]; a request id that does
    /// not fit is replaced by [`usable_request_id`]'s.
    pub fn events(&self, prompt: Result<Prompt, Unreadable>, reply: Reply) -> [Event; 2] {
        let (prompt, unreadable) = match prompt {
            Ok(p) => (p, None),
            Err(u) => (
                Prompt {
                    model: None,
                    text: String::new(),
                    truncated: true,
                    stream: false,
                },
                Some(u),
            ),
        };
        let model = prompt
            .model
            .or(reply.model)
            .map(|m| limits::fit(&m, MAX_MODEL_CHARS));
        let session = limits::fit(self.session, MAX_SESSION_CHARS);
        let route = limits::fit(self.route, MAX_ROUTE_CHARS);
        let request_id = usable_request_id(self.request_id);
        let status = self.status.filter(|s| limits::STATUS_CODES.contains(s));
        let task_id = self.task_id.map(str::to_owned);
        let latency_ms = self.end_ms.saturating_sub(self.start_ms);
        let event = |role, kind, content, at, truncated, tokens_in, tokens_out| Event {
            id: event_id(self.user, self.request_id, role),
            user: self.user.to_owned(),
            session: session.clone(),
            role,
            kind,
            content,
            model: model.clone(),
            route: route.clone(),
            request_id: request_id.clone(),
            task_id: task_id.clone(),
            status,
            timestamp: rfc3339_millis(at),
            latency_ms,
            tokens_in,
            tokens_out,
            truncated,
            unreadable: None,
            request_bytes: None,
        };
        let mut prompt_event = event(
            Role::User,
            Kind::Prompt,
            prompt.text,
            self.start_ms,
            prompt.truncated,
            reply.tokens_in,
            None,
        );
        if let Some(u) = unreadable {
            prompt_event.unreadable = Some(u.reason.to_owned());
            prompt_event.request_bytes = Some(u.request_bytes);
        }
        [
            prompt_event,
            event(
                Role::Assistant,
                Kind::Reply,
                reply.text,
                self.end_ms,
                reply.truncated,
                None,
                reply.tokens_out,
            ),
        ]
    }
}

/// The client's request id when the sink takes it as it is; otherwise
/// `attach-` and 32 hex digits of a SHA-256 over it, so that the same
/// unusable id (a retry) still gives the same label, and different ones
/// stay apart. An empty id says nothing and is replaced too.
pub fn usable_request_id(raw: &str) -> String {
    if !raw.is_empty() && limits::fits(raw, MAX_REQUEST_ID_CHARS) {
        return raw.to_owned();
    }
    let digest = Sha256::new()
        .chain_update(b"attach-gateway/request-id/v1\0")
        .chain_update(raw.as_bytes())
        .finalize();
    let mut id = String::with_capacity(39);
    id.push_str("attach-");
    for b in digest.iter().take(16) {
        let _ = write!(id, "{b:02x}");
    }
    id
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
    hash.update(match role {
        Role::User => b"user".as_slice(),
        Role::Assistant => b"assistant".as_slice(),
    });
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

/// `2026-11-25T23:49:44.123Z`: RFC 3339 in UTC with milliseconds, the form
/// Weaviate's `date` and the companion service both read. Instants past
/// year 9999 are clamped, since the format has four-digit years.
pub fn rfc3339_millis(unix_ms: u64) -> String {
    let ms = unix_ms.min(MAX_UNIX_MS);
    let (year, month, day) = civil_from_days(ms / 86_400_000);
    let in_day = ms % 86_400_000;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1_000 % 60,
        in_day % 1_000
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01. Counting from
/// 0000-03-01 puts the leap day at the end of each year and makes every
/// 400-year era the same 146 097 days, so the date follows by division.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    const DAYS_0000_03_01_TO_EPOCH: u64 = 719_468;
    const ERA: u64 = 146_097;
    let from_march_0 = days + DAYS_0000_03_01_TO_EPOCH;
    let era = from_march_0 / ERA;
    let day_of_era = from_march_0 % ERA;
    // Leap days come every 4 years (1460 days) except every 100 (36524)
    // except every 400 (the era's last day, 146096).
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months from March have 31,30,31,30,31 days in a repeating 153-day
    // run of five, so (5d + 2) / 153 counts them.
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let (month, year_shift) = if month_from_march < 10 {
        (month_from_march + 3, 0)
    } else {
        (month_from_march - 9, 1)
    };
    (era * 400 + year_of_era + year_shift, month, day)
}

/// A JSON array of already serialised events, joined as bytes: the root
/// context ships queue items without parsing them again.
pub fn batch_array<T: AsRef<[u8]>>(items: &[T]) -> Vec<u8> {
    let len = items.iter().map(|i| i.as_ref().len() + 1).sum::<usize>();
    let mut out = Vec::with_capacity(len + 2);
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item.as_ref());
    }
    out.push(b']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange() -> Exchange<'static> {
        Exchange {
            user: "alice",
            session: "s-1",
            request_id: "req-1",
            route: "/api/chat",
            task_id: None,
            status: Some(200),
            start_ms: 1_700_000_000_000,
            end_ms: 1_700_000_001_250,
        }
    }

    fn prompt() -> Prompt {
        Prompt {
            model: Some("llama3.2".into()),
            text: "hi".into(),
            truncated: false,
            stream: true,
        }
    }

    fn reply() -> Reply {
        Reply {
            text: "hello".into(),
            truncated: true,
            tokens_in: Some(3),
            tokens_out: Some(5),
            model: Some("llama3.2:latest".into()),
        }
    }

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

    #[test]
    fn rfc3339_on_known_instants() {
        for (ms, want) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (1, "1970-01-01T00:00:00.001Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (1_709_164_800_000, "2024-02-29T00:00:00.000Z"),
            (1_709_251_199_999, "2024-02-29T23:59:59.999Z"),
            (1_709_251_200_000, "2024-03-01T00:00:00.000Z"),
            (1_735_689_599_999, "2024-12-31T23:59:59.999Z"),
            (1_795_650_584_123, "2026-11-25T23:49:44.123Z"),
            (2_147_483_647_000, "2038-01-19T03:14:07.000Z"),
            (2_147_483_648_500, "2038-01-19T03:14:08.500Z"),
            (4_107_542_400_000, "2100-03-01T00:00:00.000Z"),
            (MAX_UNIX_MS, "9999-12-31T23:59:59.999Z"),
            (u64::MAX, "9999-12-31T23:59:59.999Z"),
        ] {
            assert_eq!(rfc3339_millis(ms), want, "{ms}");
        }
    }

    /// Every day from 1970 to 9999 against a calendar counted one day at a time.
    #[test]
    fn civil_dates_follow_the_gregorian_calendar() {
        let (mut y, mut m, mut d) = (1970, 1, 1);
        for days in 0..=MAX_UNIX_MS / 86_400_000 {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
            let month_len = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > month_len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
        assert_eq!((y, m, d), (10000, 1, 1));
    }

    #[test]
    fn an_exchange_gives_a_prompt_and_a_reply() {
        let [p, r] = exchange().events(Ok(prompt()), reply());
        assert_eq!(
            p,
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
                task_id: None,
                status: Some(200),
                timestamp: "2023-11-14T22:13:20.000Z".into(),
                latency_ms: 1250,
                tokens_in: Some(3),
                tokens_out: None,
                truncated: false,
                unreadable: None,
                request_bytes: None,
            }
        );
        assert_eq!(r.id, event_id("alice", "req-1", Role::Assistant));
        assert_eq!(
            (r.role, r.kind, r.content.as_str()),
            (Role::Assistant, Kind::Reply, "hello")
        );
        assert_eq!(r.timestamp, "2023-11-14T22:13:21.250Z");
        assert_eq!(
            (r.tokens_in, r.tokens_out, r.truncated),
            (None, Some(5), true)
        );
        assert_eq!(r.model.as_deref(), Some("llama3.2"));

        let unnamed = Prompt {
            model: None,
            ..prompt()
        };
        let [p, _] = Exchange {
            end_ms: 0,
            ..exchange()
        }
        .events(Ok(unnamed), reply());
        assert_eq!(p.model.as_deref(), Some("llama3.2:latest"));
        assert_eq!(p.latency_ms, 0);
    }

    #[test]
    fn json_shape_for_the_queue_and_ingest() {
        let [p, r] = Exchange {
            task_id: Some("t-1"),
            ..exchange()
        }
        .events(Ok(prompt()), reply());
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
            model: None,
            task_id: None,
            status: None,
            tokens_out: None,
            ..r
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
        ] {
            assert!(v.get(absent).is_none(), "{absent}");
        }
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, bare);
    }

    #[test]
    fn the_mirror_kinds_are_the_reserved_ones() {
        let kinds = [Kind::Prompt, Kind::Reply].map(|k| serde_json::to_value(k).unwrap());
        assert_eq!(kinds, limits::MIRROR_KINDS.map(serde_json::Value::from));
    }

    /// Issue: a client's `model` and `x-request-id` went into events as
    /// they were, and the sink refused the batches that carried them.
    #[test]
    fn client_labels_are_fitted_and_unusable_request_ids_replaced() {
        let long_model = format!("{}\n{}", "m".repeat(300), "x");
        let hostile = Prompt {
            model: Some(long_model),
            ..prompt()
        };
        let raw_id = format!("{}\t", "r".repeat(300));
        let [p, r] = Exchange {
            request_id: &raw_id,
            route: "/api/\u{7f}chat",
            status: Some(999),
            ..exchange()
        }
        .events(Ok(hostile), reply());
        for e in [&p, &r] {
            assert_eq!(e.model.as_deref(), Some("m".repeat(256).as_str()));
            assert_eq!(e.route, "/api/\u{fffd}chat");
            assert_eq!(e.request_id, usable_request_id(&raw_id));
            assert_eq!(e.status, None, "not an HTTP status");
        }
        assert_eq!(
            p.id,
            event_id("alice", &raw_id, Role::User),
            "ids still come from the exchange's own request id"
        );

        assert_eq!(usable_request_id("req-1"), "req-1");
        let derived = usable_request_id(&raw_id);
        assert_eq!(derived.len(), 39);
        assert!(derived.starts_with("attach-"));
        assert!(derived[7..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(derived, usable_request_id(&raw_id), "stable");
        for other in ["", "a\nb", &"r".repeat(257)] {
            let id = usable_request_id(other);
            assert!(id.starts_with("attach-") && id != derived, "{other:?}");
        }
        assert_eq!(usable_request_id(&"r".repeat(256)), "r".repeat(256));
        // Pinned (computed independently with Python's hashlib): a change
        // would give the retries of an exchange other labels.
        assert_eq!(
            usable_request_id(""),
            "attach-f1fc72add4b6343e2301228b18cadc03"
        );
    }

    #[test]
    fn an_unreadable_body_gives_a_placeholder_prompt_and_the_reply() {
        let unreadable = Unreadable {
            reason: "duplicate key",
            request_bytes: 77,
        };
        let [p, r] = exchange().events(Err(unreadable), reply());
        assert_eq!((p.kind, p.content.as_str()), (Kind::Prompt, ""));
        assert_eq!(p.unreadable.as_deref(), Some("duplicate key"));
        assert_eq!(p.request_bytes, Some(77));
        assert!(p.truncated, "the text is not the prompt");
        assert_eq!(p.model.as_deref(), Some("llama3.2:latest"), "the reply's");
        assert_eq!(p.id, event_id("alice", "req-1", Role::User));
        assert_eq!(r.content, "hello");
        assert_eq!((r.unreadable, r.request_bytes), (None, None));
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["unreadable"], "duplicate key");
        assert_eq!(v["request_bytes"], 77);
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(256))]

        /// Whatever the client sent, the events fit the sink's limits.
        #[test]
        fn events_always_fit_the_limits(
            model in proptest::option::of("\\PC{0,300}|[\\x00-\\x1f\\x7fa\u{e9}]{0,300}"),
            request_id in "\\PC{0,300}|[\\x00-\\x1fr]{0,300}",
            route in "\\PC{0,20}",
            session in "\\PC{0,20}",
            status in proptest::option::of(proptest::prelude::any::<u16>()),
            readable in proptest::prelude::any::<bool>(),
        ) {
            let prompt = if readable {
                Ok(Prompt { model, ..prompt() })
            } else {
                Err(Unreadable { reason: "not JSON", request_bytes: 3 })
            };
            let exchange = Exchange {
                request_id: &request_id,
                route: &route,
                session: &session,
                status,
                ..exchange()
            };
            for e in exchange.events(prompt, reply()) {
                proptest::prop_assert!(e.model.as_deref().is_none_or(|m| limits::fits(m, MAX_MODEL_CHARS)));
                proptest::prop_assert!(!e.request_id.is_empty() && limits::fits(&e.request_id, MAX_REQUEST_ID_CHARS));
                proptest::prop_assert!(limits::fits(&e.route, MAX_ROUTE_CHARS));
                proptest::prop_assert!(limits::fits(&e.session, MAX_SESSION_CHARS));
                proptest::prop_assert!(e.status.is_none_or(|s| limits::STATUS_CODES.contains(&s)));
                proptest::prop_assert!(e.unreadable.as_deref().is_none_or(|u| limits::fits(u, limits::MAX_UNREADABLE_CHARS)));
            }
        }
    }

    #[test]
    fn batch_array_joins_serialised_events() {
        let [p, r] = exchange().events(Ok(prompt()), reply());
        let items = [
            serde_json::to_vec(&p).unwrap(),
            serde_json::to_vec(&r).unwrap(),
        ];
        let parsed: Vec<Event> = serde_json::from_slice(&batch_array(&items)).unwrap();
        assert_eq!(parsed, [p, r]);
        assert_eq!(batch_array::<Vec<u8>>(&[]), b"[]");
        assert_eq!(batch_array(&[b"{}"]), b"[{}]");
    }
}
