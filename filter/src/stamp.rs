//! What the gateway writes on a request it lets through, decided without
//! the host: the identity headers, the assertion for services behind the
//! gateway, the signed identity token for the request's upstream, which
//! credentials stop here, and whether the exchange is mirrored to memory.
//! The host only applies the [`Plan`].

use crate::config::Config;
use crate::identity::Identity;
use crate::identity_tokens::IdentityTokens;
use crate::memory::routes::{ModelRoute, match_route};
use crate::request_head::RequestHead;
use attach_contract::assertion::{self, ASSERTION_LIFETIME_SECS};
use attach_contract::headers::{
    ACTOR_HEADER, ASSERTION_HEADER, IDENTITY_HEADER, SESSION_HEADER, USER_HEADER,
};
use attach_contract::session::session_id;

/// The changes to one request's headers, and what follows from them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Request headers to set, replacing any value they had.
    pub set: Vec<(&'static str, String)>,
    /// Request headers to remove.
    pub remove: Vec<&'static str>,
    /// The session stamped (echoed on the response when configured).
    pub session: String,
    /// The memory capture this request starts, when it is a model call.
    pub capture: Option<CaptureStart>,
}

/// A model exchange to mirror to memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureStart {
    pub route: ModelRoute,
    /// Envoy's request id, or one made of the time and the user without it.
    pub request_id: String,
    pub start_ms: u64,
}

/// Plans the stamp of a request whose caller verified as `identity`, at
/// `now_ms`. `mirroring` tells whether this VM's memory mirror runs: a
/// capture only starts then; `tokens` are the identity tokens this VM
/// signed, reused when they still have long to live.
pub fn plan(
    identity: &Identity,
    head: &RequestHead,
    config: &Config,
    (mirroring, tokens): (bool, &mut IdentityTokens),
    now_ms: u64,
) -> Plan {
    let now_secs = now_ms / 1_000;
    let key = config.assertion_key.as_deref();
    let session = identity
        .session
        .clone()
        .or_else(|| {
            key.and_then(|key| {
                assertion::continued_session(
                    key,
                    head.assertion.as_deref(),
                    head.session.as_deref(),
                    &identity.user,
                    now_secs,
                )
            })
            .map(str::to_owned)
        })
        .unwrap_or_else(|| session_id(&identity.user, &head.user_agent));
    let mut set = vec![
        (USER_HEADER, identity.user.clone()),
        (SESSION_HEADER, session.clone()),
    ];
    if !identity.actors.is_empty() {
        set.push((ACTOR_HEADER, identity.actors.header_value()));
    }
    if let (Some(key), Some(audience)) = (key, config.assertion_audience(&head.path)) {
        let exp = now_secs.saturating_add(ASSERTION_LIFETIME_SECS);
        let value = assertion::sign(key, audience, exp, &identity.user, &session);
        set.push((ASSERTION_HEADER, value));
    }
    if let Some(signing) = &config.signing {
        if let Some(audience) = signing.audience(&head.path) {
            let token = tokens.token(signing, identity, &session, audience, now_secs);
            set.push((IDENTITY_HEADER, token));
        }
    }
    let mut remove = Vec::new();
    // An MCP server never gets the client's token, whatever the setting
    // (MCP 2026-07-28, basic/authorization, "Token Handling").
    let mcp_route = config
        .mcp
        .as_ref()
        .is_some_and(|m| m.route(&head.path).is_some());
    if !config.forward_authorization || mcp_route {
        remove.push("authorization");
    }
    let capture = config
        .memory
        .as_ref()
        .filter(|_| mirroring)
        .and_then(|memory| match_route(&memory.routes, &head.path))
        .map(|route| CaptureStart {
            route: route.clone(),
            request_id: request_id(head, &identity.user, now_ms),
            start_ms: now_ms,
        });
    // The mirror reads replies as text: ask the engine for no compression.
    if capture.is_some() && head.accepts_encoding {
        remove.push("accept-encoding");
    }
    Plan {
        set,
        remove,
        session,
        capture,
    }
}

/// The id a mirrored exchange is keyed on: Envoy's request id, or one made
/// of the time and the user without it.
pub fn request_id(head: &RequestHead, user: &str, now_ms: u64) -> String {
    head.request_id
        .clone()
        .unwrap_or_else(|| format!("{now_ms}-{user}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use attach_contract::assertion::SERVICE_AUDIENCE;

    /// 32 bytes of 9, base64url.
    const KEY: &str = "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk";
    const NOW_MS: u64 = 1_700_000_000_123;

    fn config(extra: &str) -> Config {
        let json = format!(
            r#"{{"assertion_key":"{KEY}",
                "memory":{{"sink":"weaviate","url":"http://w:8080"}},
                "clusters":{{"http://w:8080":"w"}}{extra}}}"#
        );
        Config::from_json(json.as_bytes()).unwrap()
    }

    fn alice() -> Identity {
        Identity {
            user: "alice".into(),
            exp: 0,
            ..Default::default()
        }
    }

    fn head(path: &str) -> RequestHead {
        RequestHead::from_pairs(vec![
            (":method".into(), b"POST".to_vec()),
            (":path".into(), path.as_bytes().to_vec()),
            ("user-agent".into(), b"curl/8.0".to_vec()),
        ])
    }

    /// The plan with a fresh token cache.
    fn planned(who: &Identity, h: &RequestHead, c: &Config, mirroring: bool) -> Plan {
        plan(who, h, c, (mirroring, &mut IdentityTokens::new(4)), NOW_MS)
    }

    fn value<'a>(plan: &'a Plan, name: &str) -> Option<&'a str> {
        plan.set
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_new_session_comes_from_the_user_and_user_agent() {
        let plan = planned(&alice(), &head("/x"), &config(""), true);
        assert_eq!(plan.session, session_id("alice", b"curl/8.0"));
        assert_eq!(value(&plan, USER_HEADER), Some("alice"));
        assert_eq!(value(&plan, SESSION_HEADER), Some(plan.session.as_str()));
    }

    #[test]
    fn a_genuine_assertion_for_the_same_user_continues_its_session() {
        let c = config("");
        let key = c.assertion_key.clone().unwrap();
        let given = assertion::sign(&key, SERVICE_AUDIENCE, NOW_MS / 1_000, "alice", "s-1");
        let mut h = head("/x");
        h.session = Some("s-1".into());
        h.assertion = Some(given.clone());
        let plan_for = |user: &str, h: &RequestHead| {
            let who = Identity {
                user: user.into(),
                exp: 0,
                ..Default::default()
            };
            planned(&who, h, &c, true).session
        };
        assert_eq!(plan_for("alice", &h), "s-1");
        // Another user, a forged assertion or none at all: a new session.
        assert_eq!(plan_for("bob", &h), session_id("bob", b"curl/8.0"));
        h.assertion = Some(given.replace("v2.", "v2.1"));
        assert_eq!(plan_for("alice", &h), session_id("alice", b"curl/8.0"));
        h.assertion = None;
        assert_eq!(plan_for("alice", &h), session_id("alice", b"curl/8.0"));
        // Without an assertion key nothing can be continued.
        let mut h = head("/x");
        h.session = Some("s-1".into());
        h.assertion = Some(given);
        let keyless = Config::from_json(b"{}").unwrap();
        let session = planned(&alice(), &h, &keyless, true).session;
        assert_eq!(session, session_id("alice", b"curl/8.0"));
    }

    #[test]
    fn the_assertion_goes_only_to_routes_naming_an_audience() {
        let c = config("");
        let plan_a2a = planned(&alice(), &head("/a2a/tasks"), &c, true);
        let sent = value(&plan_a2a, ASSERTION_HEADER).unwrap();
        let key = c.assertion_key.as_deref().unwrap();
        let exp = NOW_MS / 1_000 + ASSERTION_LIFETIME_SECS;
        assert_eq!(
            sent,
            assertion::sign(key, SERVICE_AUDIENCE, exp, "alice", &plan_a2a.session)
        );
        let plan_model = planned(&alice(), &head("/v1/chat/completions"), &c, true);
        assert_eq!(value(&plan_model, ASSERTION_HEADER), None);
        // No key, no assertion, whatever the route.
        let keyless = Config::from_json(b"{}").unwrap();
        let plan_keyless = planned(&alice(), &head("/a2a/tasks"), &keyless, false);
        assert_eq!(value(&plan_keyless, ASSERTION_HEADER), None);
    }

    #[test]
    fn authorization_stops_at_the_gateway_unless_configured_otherwise() {
        let removed = |c: &Config| planned(&alice(), &head("/x"), c, true).remove;
        assert_eq!(
            removed(&config("")),
            vec!["authorization"],
            "removed by default"
        );
        assert!(removed(&config(r#","forward_authorization":true"#)).is_empty());
    }

    #[test]
    fn model_calls_start_a_capture_and_drop_accept_encoding() {
        let c = config("");
        let mut h = head("/v1/chat/completions?stream=true");
        h.accepts_encoding = true;
        h.request_id = Some("req-7".into());
        let p = planned(&alice(), &h, &c, true);
        let capture = p.capture.unwrap();
        assert_eq!(capture.route.path, "/v1/chat/completions");
        assert_eq!(
            (capture.request_id.as_str(), capture.start_ms),
            ("req-7", NOW_MS)
        );
        assert_eq!(p.remove, vec!["authorization", "accept-encoding"]);
        // A client that asked for no encoding has nothing removed.
        h.accepts_encoding = false;
        let p = planned(&alice(), &h, &c, true);
        assert!(p.capture.is_some());
        assert_eq!(p.remove, vec!["authorization"]);
    }

    #[test]
    fn accept_encoding_stays_when_nothing_is_captured() {
        let c = config("");
        let mut other = head("/x");
        other.accepts_encoding = true;
        let mut model = head("/api/chat");
        model.accepts_encoding = true;
        for (h, mirroring) in [(&other, true), (&model, false)] {
            let p = planned(&alice(), h, &c, mirroring);
            assert_eq!(p.capture, None);
            assert!(!p.remove.contains(&"accept-encoding"));
        }
        let without_memory = Config::from_json(b"{}").unwrap();
        let p = planned(&alice(), &model, &without_memory, true);
        assert_eq!(p.capture, None);
        assert!(!p.remove.contains(&"accept-encoding"));
    }

    #[test]
    fn without_envoy_request_id_the_capture_is_keyed_on_time_and_user() {
        let p = planned(&alice(), &head("/api/chat"), &config(""), true);
        assert_eq!(p.capture.unwrap().request_id, format!("{NOW_MS}-alice"));
    }

    /// The test configuration with a one-key set, issuer `https://gw.example`.
    fn signing_config() -> Config {
        use attach_contract::gateway_keys::{KeySet, new_key};
        let keys = KeySet {
            keys: vec![new_key([5; 32], 0)],
        };
        let keys = serde_json::to_string(&serde_json::to_string(&keys).unwrap()).unwrap();
        config(&format!(
            r#","signing_keys":{keys},"issuer":"https://gw.example""#
        ))
    }

    #[test]
    fn each_upstream_gets_an_identity_token_for_its_own_audience() {
        let c = signing_config();
        let signing = c.signing.clone().unwrap();
        let published: Vec<_> = signing.keys.published(0).cloned().collect();
        let audience_of = |plan: &Plan| {
            let token = value(plan, IDENTITY_HEADER).unwrap();
            let claims = attach_contract::identity_token::verify(
                token,
                "https://gw.example",
                "attach-a2a",
                NOW_MS / 1000,
                |kid| published.iter().find(|k| k.kid == kid).map(|k| &k.key),
            );
            match claims {
                Ok(claims) => claims.aud,
                Err(attach_contract::identity_token::Refusal::WrongAudience) => "other".into(),
                Err(e) => panic!("{e}"),
            }
        };
        let to_service = planned(&alice(), &head("/a2a/tasks"), &c, true);
        assert_eq!(audience_of(&to_service), "attach-a2a");
        let to_engine = planned(&alice(), &head("/v1/chat/completions"), &c, true);
        assert_eq!(audience_of(&to_engine), "other");
        // Without signing keys, no token.
        let keyless = planned(&alice(), &head("/a2a/tasks"), &config(""), true);
        assert_eq!(value(&keyless, IDENTITY_HEADER), None);
    }

    #[test]
    fn a_delegated_caller_is_stamped_with_its_chain_and_its_session() {
        use attach_contract::delegation::ActorChain;
        let c = signing_config();
        let signing = c.signing.clone().unwrap();
        let chain = ActorChain::default()
            .delegate_to("did:key:planner")
            .and_then(|c| c.delegate_to("did:key:coder"))
            .unwrap();
        let delegated = Identity {
            actors: chain.clone(),
            session: Some("s-user".into()),
            ..alice()
        };
        let mut tokens = IdentityTokens::new(4);
        let h = head("/a2a/tasks");
        let p = plan(&delegated, &h, &c, (false, &mut tokens), NOW_MS);
        assert_eq!(p.session, "s-user");
        assert_eq!(value(&p, SESSION_HEADER), Some("s-user"));
        assert_eq!(
            value(&p, ACTOR_HEADER),
            Some("did:key:coder, did:key:planner")
        );
        let claims = attach_contract::identity_token::verify(
            value(&p, IDENTITY_HEADER).unwrap(),
            "https://gw.example",
            "attach-a2a",
            NOW_MS / 1000,
            |kid| signing.keys.verifying_key(kid, 0),
        )
        .unwrap();
        assert_eq!(claims.actor_chain(), Ok(chain));
        assert_eq!(claims.sid, "s-user");
        // The user alone, in the same session, gets a token of their own,
        // not the delegated one kept for the chain.
        let alone = Identity {
            session: Some("s-user".into()),
            ..alice()
        };
        let p2 = plan(&alone, &h, &c, (false, &mut tokens), NOW_MS);
        assert_eq!(value(&p2, ACTOR_HEADER), None);
        assert_ne!(value(&p2, IDENTITY_HEADER), value(&p, IDENTITY_HEADER));
        assert_eq!(tokens.len(), 2);
    }
}
