//! Who sent a request: the `Caller` and the `Ingester` read from its
//! headers (the extractors that run these checks for handlers are in
//! `routes/extract.rs`).
//!
//! With the gateway's signing keys ([`GatewayIssuer`]), the caller is the
//! one the gateway's identity token (`X-Attach-Identity`, see
//! [`attach_contract::identity_token`]) names: signed by a key the gateway
//! publishes, for this service's audience, unexpired. Its `sub`, `sid`,
//! `scope` and `act` chain make the caller; `X-Attach-User`,
//! `X-Attach-Session` and `X-Attach-Actor`, when present, must say the
//! same. No shared secret is involved, so the check holds even for a
//! request that reaches the service's port without the gateway.
//!
//! Without signing keys (stacks that predate them), the caller is the
//! `X-Attach-User` / `X-Attach-Session` pair that the gateway's HMAC
//! assertion (`X-Attach-Assertion`, [`assertion`]) vouches for.
//!
//! Either way, a request that does not prove it came through the gateway
//! for this service gets a 401 and nothing is written. A token or an
//! assertion the gateway made for another upstream, or this service made
//! for an agent, is refused here too.

mod assertion;
mod gateway_issuer;

use std::time::{SystemTime, UNIX_EPOCH};

use attach_contract::assertion::{self as wire, SERVICE_AUDIENCE};
use attach_contract::delegation::ActorChain;
use attach_contract::headers::{
    ACTOR_HEADER, ASSERTION_HEADER, IDENTITY_HEADER, SESSION_HEADER, USER_HEADER,
};
use axum::http::HeaderMap;

use crate::error::AppError;

pub use assertion::AssertionKey;
pub use gateway_issuer::GatewayIssuer;

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What a request's identity is checked against: the gateway's signing
/// keys when the service has them, else the assertion key.
#[derive(Clone, Copy)]
pub struct Trust<'a> {
    pub assertion_key: &'a AssertionKey,
    pub issuer: Option<&'a GatewayIssuer>,
}

/// The verified identity of the request's sender.
#[derive(Clone, Debug)]
pub struct Caller {
    pub user: String,
    pub session: String,
    /// Who acts for the user, current actor first; empty when the user
    /// acts alone (and always without signing keys).
    pub actors: ActorChain,
    /// The scopes of the token the caller presented to the gateway.
    pub scope: Option<String>,
    /// The issuer of that token; `None` for a caller vouched for by the
    /// assertion, which does not say.
    pub idp: Option<String>,
    /// The caller's `Authorization` header, kept only for agents configured
    /// with the legacy `forward_bearer`; never stored.
    pub authorization: Option<String>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, AppError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AppError::Unauthorized(format!(
            "more than one {name} header"
        )));
    }
    value
        .to_str()
        .map(Some)
        .map_err(|_| AppError::Unauthorized(format!("{name} is not visible ASCII")))
}

fn authorization(headers: &HeaderMap) -> Option<String> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Refuses a present `name` header whose value is not `expected`.
fn agrees(headers: &HeaderMap, name: &str, expected: &str) -> Result<(), AppError> {
    match header(headers, name)? {
        Some(value) if value != expected => Err(AppError::Unauthorized(format!(
            "{name} does not match the gateway's identity token"
        ))),
        _ => Ok(()),
    }
}

impl Caller {
    pub fn from_headers(
        headers: &HeaderMap,
        trust: &Trust<'_>,
        now: u64,
    ) -> Result<Self, AppError> {
        match trust.issuer {
            Some(issuer) => Self::from_identity_token(headers, issuer, now),
            None => Self::from_assertion(headers, trust.assertion_key, now),
        }
    }

    fn from_identity_token(
        headers: &HeaderMap,
        issuer: &GatewayIssuer,
        now: u64,
    ) -> Result<Self, AppError> {
        let token = header(headers, IDENTITY_HEADER)?.ok_or_else(|| {
            AppError::Unauthorized(
                "missing the gateway's identity token (X-Attach-Identity); call through the gateway"
                    .into(),
            )
        })?;
        let claims = issuer
            .verify(token, SERVICE_AUDIENCE, now)
            .map_err(|refusal| AppError::Unauthorized(refusal.to_string()))?;
        if claims.sub.is_empty() {
            return Err(AppError::Unauthorized(
                "the identity token names no user".into(),
            ));
        }
        let actors = claims
            .actor_chain()
            .map_err(|e| AppError::Unauthorized(format!("identity token: {e}")))?;
        agrees(headers, USER_HEADER, &claims.sub)?;
        agrees(headers, SESSION_HEADER, &claims.sid)?;
        agrees(headers, ACTOR_HEADER, &actors.header_value())?;
        Ok(Caller {
            user: claims.sub,
            session: claims.sid,
            actors,
            scope: claims.scope,
            idp: Some(claims.idp),
            authorization: authorization(headers),
        })
    }

    fn from_assertion(headers: &HeaderMap, key: &AssertionKey, now: u64) -> Result<Self, AppError> {
        let assertion = header(headers, ASSERTION_HEADER)?.ok_or_else(|| {
            AppError::Unauthorized("missing gateway assertion; call through the gateway".into())
        })?;
        let user = header(headers, USER_HEADER)?
            .filter(|u| !u.is_empty())
            .ok_or_else(|| AppError::Unauthorized("missing X-Attach-User".into()))?;
        let session = header(headers, SESSION_HEADER)?.unwrap_or("");
        key.verify(assertion, user, session, now)
            .map_err(|reason| AppError::Unauthorized(reason.into()))?;
        Ok(Caller {
            user: user.to_string(),
            session: session.to_string(),
            actors: ActorChain::default(),
            scope: None,
            idp: None,
            authorization: authorization(headers),
        })
    }
}

/// Who writes to `POST /mem/ingest`: the gateway's memory mirror, which may
/// write events of any user, or a caller writing events of its own. The
/// mirror proves itself with its own credential, which no token can produce
/// (unlike a user name, which any issuer could put in `sub`).
#[derive(Clone, Debug)]
pub enum Ingester {
    Mirror,
    Caller(Caller),
}

impl Ingester {
    pub fn from_headers(
        headers: &HeaderMap,
        trust: &Trust<'_>,
        now: u64,
    ) -> Result<Self, AppError> {
        if headers.contains_key(USER_HEADER) || headers.contains_key(IDENTITY_HEADER) {
            return Caller::from_headers(headers, trust, now).map(Ingester::Caller);
        }
        let assertion = header(headers, ASSERTION_HEADER)?.ok_or_else(|| {
            AppError::Unauthorized("missing gateway assertion; call through the gateway".into())
        })?;
        trust
            .assertion_key
            .verify_for(wire::MIRROR_AUDIENCE, assertion, "", "", now)
            .map_err(|reason| AppError::Unauthorized(reason.into()))?;
        Ok(Ingester::Mirror)
    }

    /// Whether this writer may write an event of `user`.
    pub fn may_write_for(&self, user: &str) -> bool {
        match self {
            Ingester::Mirror => true,
            Ingester::Caller(caller) => caller.user == user,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn key() -> AssertionKey {
        AssertionKey::new([9; 32])
    }

    fn hmac_only(key: &AssertionKey) -> Trust<'_> {
        Trust {
            assertion_key: key,
            issuer: None,
        }
    }

    fn headers(user: &str, session: &str, assertion: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(USER_HEADER, HeaderValue::from_str(user).unwrap());
        h.insert(SESSION_HEADER, HeaderValue::from_str(session).unwrap());
        h.insert(ASSERTION_HEADER, HeaderValue::from_str(assertion).unwrap());
        h
    }

    #[test]
    fn accepts_a_fresh_assertion() {
        let now = 1_700_000_000;
        let a = key().sign(now + 60, "alice", "s1");
        assert!(a.starts_with("v2.1700000060.attach-a2a."));
        let caller =
            Caller::from_headers(&headers("alice", "s1", &a), &hmac_only(&key()), now).unwrap();
        assert_eq!(caller.user, "alice");
        assert_eq!(caller.session, "s1");
    }

    #[test]
    fn refuses_bad_assertions() {
        let now = 1_700_000_000;
        let good = key().sign(now + 60, "alice", "s1");
        let cases = [
            (headers("bob", "s1", &good), "user swapped"),
            (headers("alice", "s2", &good), "session swapped"),
            (
                headers("alice", "s1", &key().sign(now - 6, "alice", "s1")),
                "expired",
            ),
            (
                headers("alice", "s1", &key().sign(now + 3600, "alice", "s1")),
                "too long",
            ),
            (
                headers(
                    "alice",
                    "s1",
                    &AssertionKey::new([1; 32]).sign(now + 60, "alice", "s1"),
                ),
                "other key",
            ),
            (headers("alice", "s1", "v2.abc.def"), "malformed"),
            (
                headers("alice", "s1", &good.replacen("v2", "v1", 1)),
                "version",
            ),
            (
                headers(
                    "alice",
                    "s1",
                    &key().sign_for("attach-agent", now + 60, "alice", "s1"),
                ),
                "an agent's assertion",
            ),
            (
                headers(
                    "alice",
                    "s1",
                    &key().sign_for("engine", now + 60, "alice", "s1"),
                ),
                "another upstream's assertion",
            ),
            (headers("alice", "s1", &format!("{good}.x")), "extra field"),
        ];
        for (h, what) in cases {
            assert!(
                Caller::from_headers(&h, &hmac_only(&key()), now).is_err(),
                "{what}"
            );
        }
        let mut missing = headers("alice", "s1", &good);
        missing.remove(ASSERTION_HEADER);
        assert!(Caller::from_headers(&missing, &hmac_only(&key()), now).is_err());
    }

    #[test]
    fn tolerates_small_skew() {
        let now = 1_700_000_000;
        let a = key().sign(now - 4, "alice", "s1");
        assert!(Caller::from_headers(&headers("alice", "s1", &a), &hmac_only(&key()), now).is_ok());
    }

    /// Issue: a token with `sub = attach-gateway` could write events into
    /// anyone's memory. Only the mirror's own credential may.
    #[test]
    fn only_the_mirror_credential_ingests_for_others() {
        let now = 1_700_000_000;
        let mut mirror = HeaderMap::new();
        mirror.insert(
            ASSERTION_HEADER,
            HeaderValue::from_str(&key().sign_mirror(now + 60)).unwrap(),
        );
        let who = Ingester::from_headers(&mirror, &hmac_only(&key()), now).unwrap();
        assert!(who.may_write_for("alice") && who.may_write_for("bob"));

        let named = headers(
            "attach-gateway",
            "s",
            &key().sign(now + 60, "attach-gateway", "s"),
        );
        let who = Ingester::from_headers(&named, &hmac_only(&key()), now).unwrap();
        assert!(who.may_write_for("attach-gateway"));
        assert!(!who.may_write_for("alice"), "a user name grants nothing");

        // A user's assertion without the user header is no mirror credential.
        let mut bare = HeaderMap::new();
        bare.insert(
            ASSERTION_HEADER,
            HeaderValue::from_str(&key().sign(now + 60, "", "")).unwrap(),
        );
        assert!(Ingester::from_headers(&bare, &hmac_only(&key()), now).is_err());
        let mut forged = HeaderMap::new();
        forged.insert(
            ASSERTION_HEADER,
            HeaderValue::from_str(&AssertionKey::new([1; 32]).sign_mirror(now + 60)).unwrap(),
        );
        assert!(Ingester::from_headers(&forged, &hmac_only(&key()), now).is_err());
        assert!(Ingester::from_headers(&HeaderMap::new(), &hmac_only(&key()), now).is_err());
    }

    mod identity_token {
        //! The caller from the gateway's identity token (RFC 7519), with a
        //! real key set: what the service accepts, and every way a request
        //! that did not come through the gateway for this service is refused.

        use super::*;
        use attach_contract::gateway_keys::{KeySet, SigningKeys, new_key};
        use attach_contract::identity_token::{IdentityClaims, sign};
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use std::sync::Arc;

        const ISS: &str = "https://gw.example";
        const NOW: u64 = 1_700_000_000;

        fn keys(seed: u8) -> SigningKeys {
            SigningKeys::from_set(&KeySet {
                keys: vec![new_key([seed; 32], 0)],
            })
            .unwrap()
        }

        fn issuer() -> GatewayIssuer {
            GatewayIssuer::new(Arc::new(keys(7)), &format!("{ISS}/"))
        }

        fn claims() -> IdentityClaims {
            IdentityClaims {
                iss: ISS.into(),
                sub: "alice".into(),
                aud: SERVICE_AUDIENCE.into(),
                iat: NOW,
                exp: NOW + 60,
                jti: "j1".into(),
                sid: "s1".into(),
                idp: "https://idp.example".into(),
                scope: Some("read write".into()),
                act: Some(
                    serde_json::json!({"sub": "did:key:coder", "act": {"sub": "did:key:planner"}}),
                ),
            }
        }

        fn with_token(token: &str) -> HeaderMap {
            let mut h = HeaderMap::new();
            h.insert(IDENTITY_HEADER, HeaderValue::from_str(token).unwrap());
            h
        }

        fn check(h: &HeaderMap) -> Result<Caller, AppError> {
            let key = key();
            let issuer = issuer();
            let trust = Trust {
                assertion_key: &key,
                issuer: Some(&issuer),
            };
            Caller::from_headers(h, &trust, NOW + 1)
        }

        fn refused(h: &HeaderMap, what: &str) -> String {
            match check(h) {
                Err(AppError::Unauthorized(message)) => message,
                other => panic!("{what}: {other:?}"),
            }
        }

        #[test]
        fn the_caller_is_the_one_the_token_names() {
            let caller = check(&with_token(&sign(&keys(7), &claims()))).unwrap();
            assert_eq!(
                (caller.user.as_str(), caller.session.as_str()),
                ("alice", "s1")
            );
            assert_eq!(caller.actors.actors(), ["did:key:coder", "did:key:planner"]);
            assert_eq!(caller.scope.as_deref(), Some("read write"));
            assert_eq!(caller.idp.as_deref(), Some("https://idp.example"));
            // The headers the filter stamps next to it agree.
            let mut h = with_token(&sign(&keys(7), &claims()));
            h.insert(USER_HEADER, HeaderValue::from_static("alice"));
            h.insert(SESSION_HEADER, HeaderValue::from_static("s1"));
            h.insert(
                ACTOR_HEADER,
                HeaderValue::from_static("did:key:coder, did:key:planner"),
            );
            assert_eq!(check(&h).unwrap().user, "alice");
        }

        #[test]
        fn headers_that_disagree_with_the_token_are_refused() {
            for (name, value) in [
                (USER_HEADER, "mallory"),
                (SESSION_HEADER, "s2"),
                (ACTOR_HEADER, "did:key:planner"),
            ] {
                let mut h = with_token(&sign(&keys(7), &claims()));
                h.insert(name, HeaderValue::from_static(value));
                let message = refused(&h, name);
                assert!(message.contains("does not match"), "{name}: {message}");
            }
        }

        /// With signing keys, the shared secret alone vouches for nobody:
        /// a forged X-Attach-User with a valid HMAC assertion is refused.
        #[test]
        fn no_token_no_caller_whatever_the_assertion() {
            let now = NOW + 1;
            let mut h = HeaderMap::new();
            h.insert(USER_HEADER, HeaderValue::from_static("mallory"));
            h.insert(SESSION_HEADER, HeaderValue::from_static("s1"));
            h.insert(
                ASSERTION_HEADER,
                HeaderValue::from_str(&key().sign(now + 60, "mallory", "s1")).unwrap(),
            );
            assert!(refused(&h, "no token").contains("X-Attach-Identity"));
            let mut ingest = h.clone();
            ingest.remove(USER_HEADER);
            ingest.insert(IDENTITY_HEADER, HeaderValue::from_static("x.y.z"));
            let key = key();
            let issuer = issuer();
            let trust = Trust {
                assertion_key: &key,
                issuer: Some(&issuer),
            };
            assert!(Ingester::from_headers(&ingest, &trust, now).is_err());
        }

        /// RFC 7515 / RFC 8725 section 3.1: only the gateway's published
        /// keys, each under its own algorithm; `none` and HMAC tokens posing
        /// as the gateway's, and another key's, are refused.
        #[test]
        fn tokens_the_gateway_did_not_sign_are_refused() {
            let genuine = sign(&keys(7), &claims());
            let (_, rest) = genuine.split_once('.').unwrap();
            let (payload, _) = rest.split_once('.').unwrap();
            let kid = keys(7).kid().to_string();
            let posing = |alg: &str, signature: &str| {
                let header = URL_SAFE_NO_PAD
                    .encode(format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"{kid}"}}"#));
                format!("{header}.{payload}.{signature}")
            };
            // An HMAC-sized signature: the header's algorithm is refused
            // before any key is tried with it.
            let hs256 = posing("HS256", &URL_SAFE_NO_PAD.encode([9u8; 32]));
            for (what, token) in [
                ("another key", sign(&keys(8), &claims())),
                ("none", posing("none", "")),
                ("HS256", hs256),
                ("garbage", "a.b.c".to_string()),
            ] {
                refused(&with_token(&token), what);
            }
        }

        /// RFC 7519 section 4.1: `iss` (4.1.1), `aud` (4.1.3), `exp` (4.1.4).
        #[test]
        fn tokens_for_another_audience_issuer_or_time_are_refused() {
            type Change = fn(&mut IdentityClaims);
            let cases: [(&str, Change); 5] = [
                ("the engine's", |c| c.aud = "attach-engine".into()),
                ("an agent's", |c| c.aud = "did:key:planner".into()),
                ("another issuer", |c| c.iss = "https://other.example".into()),
                ("expired", |c| c.exp = NOW - 30),
                ("a loop in act", |c| {
                    c.act = Some(serde_json::json!({"sub": "a", "act": {"sub": "a"}}))
                }),
            ];
            for (what, change) in cases {
                let mut c = claims();
                change(&mut c);
                refused(&with_token(&sign(&keys(7), &c)), what);
            }
        }
    }
}
