//! The two memory events of an exchange with a model: one for the prompt
//! and one for the reply.
//!
//! The event itself, its JSON and its id are the wire contract's
//! ([`attach_contract::event`]): the same JSON is the shared-queue item and
//! an element of the companion service's `POST /mem/ingest` array. What is
//! the filter's own is how an exchange becomes events.
//!
//! Every event fits [`limits`]: the sink refuses events that do not, and
//! what a client puts in its request (the model's name, its request id)
//! must never cost the exchange its record.

use super::prompt::Prompt;
use super::reply_capture::Reply;
use attach_contract::event::{Event, Kind, Role, event_id};
use attach_contract::limits::{
    self, MAX_MODEL_CHARS, MAX_REQUEST_ID_CHARS, MAX_ROUTE_CHARS, MAX_SESSION_CHARS,
};
use attach_contract::timestamp::rfc3339_millis;
use sha2::{Digest, Sha256};
use std::fmt::Write;

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
    /// Who acted for the user, in `X-Attach-Actor`'s form; empty when the
    /// user acted alone.
    pub actor: &'a str,
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
            actor: (!self.actor.is_empty()).then(|| self.actor.to_owned()),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange() -> Exchange<'static> {
        Exchange {
            user: "alice",
            session: "s-1",
            actor: "",
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
                actor: None,
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
    fn both_events_name_who_acted_for_the_user() {
        let [p, r] = Exchange {
            actor: "did:key:coder, did:key:planner",
            ..exchange()
        }
        .events(Ok(prompt()), reply());
        for event in [&p, &r] {
            assert_eq!(
                event.actor.as_deref(),
                Some("did:key:coder, did:key:planner")
            );
            assert_eq!(event.user, "alice");
        }
        let [alone, _] = exchange().events(Ok(prompt()), reply());
        assert_eq!(alone.actor, None);
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
}
