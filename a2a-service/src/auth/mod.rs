//! The gateway's identity assertion: the key, and the `Caller` and
//! `Ingester` read from a request's headers (the extractors that run these
//! checks for handlers are in `routes/extract.rs`).
//!
//! The filter stamps the requests it routes here with `X-Attach-User`,
//! `X-Attach-Session` and `X-Attach-Assertion` (the format, its MAC, the
//! audiences, lifetimes and clock skew are the contract's
//! [`attach_contract::assertion`], written once), bound to this service's
//! audience. A request without a valid assertion for this audience never
//! reached the service through the gateway, so it gets a 401 and nothing is
//! written. An assertion the gateway made for another
//! upstream, or this service made for an agent, is refused here too.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use attach_contract::assertion::{
    self as wire, AGENT_AUDIENCE, ASSERTION_LIFETIME_SECS, AssertionError, MIN_KEY_BYTES,
    SERVICE_AUDIENCE,
};
use attach_contract::headers::{ASSERTION_HEADER, SESSION_HEADER, USER_HEADER};
use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};

use crate::error::AppError;

/// The secret shared with the filter: at least [`MIN_KEY_BYTES`] bytes,
/// the same rule the filter applies to its `assertion_key`.
#[derive(Clone)]
pub struct AssertionKey(Vec<u8>);

impl fmt::Debug for AssertionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AssertionKey(..)")
    }
}

impl AssertionKey {
    pub fn new(bytes: [u8; MIN_KEY_BYTES]) -> Self {
        Self(bytes.to_vec())
    }

    /// base64url text (padded or not) of at least 32 bytes.
    pub fn from_text(text: &str) -> Result<Self, String> {
        let bytes = decode_base64url(text).ok_or("not base64url text")?;
        if bytes.len() < MIN_KEY_BYTES {
            return Err(format!(
                "decodes to {} bytes, at least {MIN_KEY_BYTES} needed",
                bytes.len()
            ));
        }
        Ok(Self(bytes))
    }

    /// The header value for `user`/`session`, made for `audience` and
    /// valid until `exp` (unix seconds).
    pub fn sign_for(&self, audience: &str, exp: u64, user: &str, session: &str) -> String {
        wire::sign(&self.0, audience, exp, user, session)
    }

    /// An assertion for this service itself, as the gateway makes them.
    pub fn sign(&self, exp: u64, user: &str, session: &str) -> String {
        self.sign_for(SERVICE_AUDIENCE, exp, user, session)
    }

    /// The memory mirror's credential, as the filter makes it.
    pub fn sign_mirror(&self, exp: u64) -> String {
        wire::sign_mirror(&self.0, exp)
    }

    /// A fresh assertion for an agent this service calls on the caller's behalf.
    pub fn sign_for_agent(&self, user: &str, session: &str) -> String {
        self.sign_for(
            AGENT_AUDIENCE,
            unix_now() + ASSERTION_LIFETIME_SECS,
            user,
            session,
        )
    }

    /// Checks `assertion`, made for `audience`, against the two identity
    /// headers at time `now`.
    pub fn verify_for(
        &self,
        audience: &str,
        assertion: &str,
        user: &str,
        session: &str,
        now: u64,
    ) -> Result<(), &'static str> {
        wire::check(&self.0, audience, assertion, user, session, now).map_err(|e| match e {
            AssertionError::Malformed => "malformed gateway assertion",
            AssertionError::Mismatch => "gateway assertion does not match the identity headers",
            AssertionError::Expired => "gateway assertion expired",
            AssertionError::TooLongLived => "gateway assertion lives too long",
            AssertionError::WrongAudience => "gateway assertion is for another service",
        })
    }

    /// Checks an assertion for this service against the identity headers.
    pub fn verify(
        &self,
        assertion: &str,
        user: &str,
        session: &str,
        now: u64,
    ) -> Result<(), &'static str> {
        self.verify_for(SERVICE_AUDIENCE, assertion, user, session, now)
    }
}

fn decode_base64url(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    URL_SAFE_NO_PAD
        .decode(text)
        .or_else(|_| URL_SAFE.decode(text))
        .ok()
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The verified identity of the request's sender.
#[derive(Clone, Debug)]
pub struct Caller {
    pub user: String,
    pub session: String,
    /// The caller's `Authorization` header, kept only for agents configured
    /// with `forward_bearer`; never stored.
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

impl Caller {
    pub fn from_headers(
        headers: &HeaderMap,
        key: &AssertionKey,
        now: u64,
    ) -> Result<Self, AppError> {
        let assertion = header(headers, ASSERTION_HEADER)?.ok_or_else(|| {
            AppError::Unauthorized("missing gateway assertion; call through the gateway".into())
        })?;
        let user = header(headers, USER_HEADER)?
            .filter(|u| !u.is_empty())
            .ok_or_else(|| AppError::Unauthorized("missing X-Attach-User".into()))?;
        let session = header(headers, SESSION_HEADER)?.unwrap_or("");
        key.verify(assertion, user, session, now)
            .map_err(|reason| AppError::Unauthorized(reason.into()))?;
        let authorization = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok(Caller {
            user: user.to_string(),
            session: session.to_string(),
            authorization,
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
        key: &AssertionKey,
        now: u64,
    ) -> Result<Self, AppError> {
        if headers.contains_key(USER_HEADER) {
            return Caller::from_headers(headers, key, now).map(Ingester::Caller);
        }
        let assertion = header(headers, ASSERTION_HEADER)?.ok_or_else(|| {
            AppError::Unauthorized("missing gateway assertion; call through the gateway".into())
        })?;
        key.verify_for(wire::MIRROR_AUDIENCE, assertion, "", "", now)
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
        let caller = Caller::from_headers(&headers("alice", "s1", &a), &key(), now).unwrap();
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
            assert!(Caller::from_headers(&h, &key(), now).is_err(), "{what}");
        }
        let mut missing = headers("alice", "s1", &good);
        missing.remove(ASSERTION_HEADER);
        assert!(Caller::from_headers(&missing, &key(), now).is_err());
    }

    #[test]
    fn tolerates_small_skew() {
        let now = 1_700_000_000;
        let a = key().sign(now - 4, "alice", "s1");
        assert!(Caller::from_headers(&headers("alice", "s1", &a), &key(), now).is_ok());
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
        let who = Ingester::from_headers(&mirror, &key(), now).unwrap();
        assert!(who.may_write_for("alice") && who.may_write_for("bob"));

        let named = headers(
            "attach-gateway",
            "s",
            &key().sign(now + 60, "attach-gateway", "s"),
        );
        let who = Ingester::from_headers(&named, &key(), now).unwrap();
        assert!(who.may_write_for("attach-gateway"));
        assert!(!who.may_write_for("alice"), "a user name grants nothing");

        // A user's assertion without the user header is no mirror credential.
        let mut bare = HeaderMap::new();
        bare.insert(
            ASSERTION_HEADER,
            HeaderValue::from_str(&key().sign(now + 60, "", "")).unwrap(),
        );
        assert!(Ingester::from_headers(&bare, &key(), now).is_err());
        let mut forged = HeaderMap::new();
        forged.insert(
            ASSERTION_HEADER,
            HeaderValue::from_str(&AssertionKey::new([1; 32]).sign_mirror(now + 60)).unwrap(),
        );
        assert!(Ingester::from_headers(&forged, &key(), now).is_err());
        assert!(Ingester::from_headers(&HeaderMap::new(), &key(), now).is_err());
    }
}
