//! The gateway's identity assertion and the `Caller` extractor.
//!
//! The filter stamps every request it lets through with `X-Attach-User`,
//! `X-Attach-Session` and
//! `X-Attach-Assertion: v1.<exp>.<base64url-nopad HMAC-SHA256(key, "v1\n<exp>\n<user>\n<session>")>`.
//! A request without a valid assertion never reached the service through the
//! gateway, so it gets a 401 and nothing is written.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::AppError;
use crate::state::AppState;

pub const USER_HEADER: &str = "x-attach-user";
pub const SESSION_HEADER: &str = "x-attach-session";
pub const ASSERTION_HEADER: &str = "x-attach-assertion";

/// Lifetime of the assertions this service mints for forwarded requests.
pub const ASSERTION_LIFETIME_SECS: u64 = 60;
/// Clock difference tolerated between the filter and the service.
pub const CLOCK_SKEW_SECS: u64 = 5;
/// An assertion claiming to live longer than this is refused.
pub const MAX_LIFETIME_SECS: u64 = 300;

/// The secret shared with the filter: at least [`MIN_KEY_BYTES`] bytes,
/// the same rule the filter applies to its `assertion_key`.
#[derive(Clone)]
pub struct AssertionKey(Vec<u8>);

pub const MIN_KEY_BYTES: usize = 32;

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
        let bytes = crate::config::decode_base64url(text).ok_or("not base64url text")?;
        if bytes.len() < MIN_KEY_BYTES {
            return Err(format!(
                "decodes to {} bytes, at least {MIN_KEY_BYTES} needed",
                bytes.len()
            ));
        }
        Ok(Self(bytes))
    }

    fn mac(&self, exp: u64, user: &str, session: &str) -> Hmac<Sha256> {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(format!("v1\n{exp}\n{user}\n{session}").as_bytes());
        mac
    }

    /// The header value for `user`/`session`, valid until `exp` (unix seconds).
    pub fn sign(&self, exp: u64, user: &str, session: &str) -> String {
        let tag = self.mac(exp, user, session).finalize().into_bytes();
        format!("v1.{exp}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// A fresh assertion for a request this service makes on the caller's behalf.
    pub fn sign_now(&self, user: &str, session: &str) -> String {
        self.sign(unix_now() + ASSERTION_LIFETIME_SECS, user, session)
    }

    /// Checks `assertion` against the two identity headers at time `now`.
    pub fn verify(
        &self,
        assertion: &str,
        user: &str,
        session: &str,
        now: u64,
    ) -> Result<(), &'static str> {
        let mut fields = assertion.split('.');
        let (Some("v1"), Some(exp), Some(tag), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err("malformed gateway assertion");
        };
        if exp.is_empty() || !exp.bytes().all(|b| b.is_ascii_digit()) {
            return Err("malformed gateway assertion");
        }
        let exp: u64 = exp.parse().map_err(|_| "malformed gateway assertion")?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| "malformed gateway assertion")?;
        if tag.len() != 32 {
            return Err("malformed gateway assertion");
        }
        self.mac(exp, user, session)
            .verify_slice(&tag)
            .map_err(|_| "gateway assertion does not match the identity headers")?;
        if now > exp.saturating_add(CLOCK_SKEW_SECS) {
            return Err("gateway assertion expired");
        }
        if exp > now + MAX_LIFETIME_SECS + CLOCK_SKEW_SECS {
            return Err("gateway assertion lives too long");
        }
        Ok(())
    }
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

impl<S> FromRequestParts<S> for Caller
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let result = Caller::from_headers(&parts.headers, &state.config.assertion_key, unix_now());
        if result.is_err() {
            state.metrics.auth_rejected();
        }
        result
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
        assert!(a.starts_with("v1.1700000060."));
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
            (headers("alice", "s1", "v1.abc.def"), "malformed"),
            (
                headers("alice", "s1", &good.replacen("v1", "v2", 1)),
                "version",
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
}
