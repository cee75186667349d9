//! The gateway's identity assertion: proof, for services behind the gateway,
//! that `X-Attach-User` and `X-Attach-Session` were set by the filter.
//!
//! Headers alone are only as trustworthy as the network path: anything that
//! reaches a service's port directly could send them. So the filter adds
//! `X-Attach-Assertion: v2.<exp>.<audience>.<mac>`, an HMAC-SHA256 over the
//! audience, a short expiry and the two headers, keyed with a secret the
//! filter and the services share (never the caller). A service recomputes it
//! and refuses what does not match or names another audience, so an upstream
//! that receives an assertion cannot replay it at a different service; and
//! the filter only adds it on the routes that name an audience, so the model
//! engine never sees one.
//!
//! The filter signs (and reads the assertion an agent hands back to keep a
//! session, [`continued_session`]); the companion service checks what it
//! receives and signs for the agents it calls ([`AGENT_AUDIENCE`]); the
//! example agents pass assertions on untouched. The format, the audiences,
//! the lifetimes and the tolerated clock skew are all fixed here.
//!
//! The memory mirror authenticates to its sink with the same construction
//! under the reserved audience [`MIRROR_AUDIENCE`] and no user: no token can
//! produce it (every verified identity has a non-empty user, and no route
//! may name that audience), unlike a user name any issuer could choose.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use sha2::Sha256;

/// Keys shorter than this are refused at configuration time.
pub const MIN_KEY_BYTES: usize = 32;
/// The companion service's audience (its `/a2a/` and `/mem/` routes).
pub const SERVICE_AUDIENCE: &str = "attach-a2a";
/// The audience of the memory mirror's own credential; no route may name it.
pub const MIRROR_AUDIENCE: &str = "attach-mirror";
/// The audience of the assertions the companion service gives the agents it
/// calls: they hand it back to the gateway to keep the caller's session, but
/// it is not the service's own, so an agent cannot replay it there.
pub const AGENT_AUDIENCE: &str = "attach-agent";
/// Audiences are short tokens that cannot contain the value's `.` separator.
pub const MAX_AUDIENCE_CHARS: usize = 64;

/// How long an assertion lives from when it is made: the filter's for each
/// request and for the mirror's deliveries, the service's for each call to
/// an agent.
pub const ASSERTION_LIFETIME_SECS: u64 = 60;
/// Clock difference tolerated between whoever signs and whoever checks.
pub const CLOCK_SKEW_SECS: u64 = 5;
/// An assertion claiming to live longer than this (plus the skew) is refused.
pub const MAX_LIFETIME_SECS: u64 = 300;

type HmacSha256 = hmac::Hmac<Sha256>;

/// Whether `audience` may appear in an assertion: 1 to 64 of
/// `[A-Za-z0-9_:-]`, so it can never contain the `.` separator.
pub fn valid_audience(audience: &str) -> bool {
    (1..=MAX_AUDIENCE_CHARS).contains(&audience.len())
        && audience
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_:-".contains(&b))
}

/// The exact bytes the MAC covers. Newlines cannot occur in header values
/// or audiences, so no two (audience, exp, user, session) share a message.
fn message(audience: &str, exp: u64, user: &str, session: &str) -> String {
    format!("v2\n{audience}\n{exp}\n{user}\n{session}")
}

fn mac(key: &[u8], audience: &str, exp: u64, user: &str, session: &str) -> Option<HmacSha256> {
    HmacSha256::new_from_slice(key)
        .ok()
        .map(|m| m.chain_update(message(audience, exp, user, session).as_bytes()))
}

/// The header value asserting `user` and `session` to `audience` until
/// `exp` (unix seconds).
pub fn sign(key: &[u8], audience: &str, exp: u64, user: &str, session: &str) -> String {
    let tag = mac(key, audience, exp, user, session)
        .map(|m| URL_SAFE_NO_PAD.encode(m.finalize().into_bytes()))
        .unwrap_or_default();
    format!("v2.{exp}.{audience}.{tag}")
}

/// The memory mirror's credential for its deliveries, valid until `exp`.
pub fn sign_mirror(key: &[u8], exp: u64) -> String {
    sign(key, MIRROR_AUDIENCE, exp, "", "")
}

/// Why an assertion was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssertionError {
    Malformed,
    Expired,
    Mismatch,
    /// Genuine, but made for another audience.
    WrongAudience,
    /// Claims to stay valid for longer than the checker accepts.
    TooLongLived,
}

/// An assertion's fields, before its MAC is checked.
struct Parsed<'a> {
    exp: u64,
    audience: &'a str,
    tag: Vec<u8>,
}

fn parse(value: &str) -> Result<Parsed<'_>, AssertionError> {
    let mut parts = value.split('.');
    let (Some("v2"), Some(exp), Some(audience), Some(tag), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(AssertionError::Malformed);
    };
    if exp.is_empty() || !exp.bytes().all(|b| b.is_ascii_digit()) || !valid_audience(audience) {
        return Err(AssertionError::Malformed);
    }
    let exp: u64 = exp.parse().map_err(|_| AssertionError::Malformed)?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| AssertionError::Malformed)?;
    Ok(Parsed { exp, audience, tag })
}

impl Parsed<'_> {
    /// Constant-time MAC comparison, then the expiry with `skew` seconds
    /// of clock difference tolerated.
    fn check(
        &self,
        key: &[u8],
        user: &str,
        session: &str,
        now: u64,
        skew: u64,
    ) -> Result<(), AssertionError> {
        mac(key, self.audience, self.exp, user, session)
            .ok_or(AssertionError::Mismatch)?
            .verify_slice(&self.tag)
            .map_err(|_| AssertionError::Mismatch)?;
        if now > self.exp.saturating_add(skew) {
            return Err(AssertionError::Expired);
        }
        Ok(())
    }
}

/// Checks an assertion made for `audience` against the headers it claims to
/// cover at time `now` (unix seconds), tolerating [`CLOCK_SKEW_SECS`]; one
/// that expires more than [`MAX_LIFETIME_SECS`] from now is refused as well.
pub fn check(
    key: &[u8],
    audience: &str,
    value: &str,
    user: &str,
    session: &str,
    now: u64,
) -> Result<(), AssertionError> {
    let parsed = parse(value)?;
    parsed.check(key, user, session, now, CLOCK_SKEW_SECS)?;
    if parsed.audience != audience {
        return Err(AssertionError::WrongAudience);
    }
    let latest = now
        .saturating_add(MAX_LIFETIME_SECS)
        .saturating_add(CLOCK_SKEW_SECS);
    if parsed.exp > latest {
        return Err(AssertionError::TooLongLived);
    }
    Ok(())
}

/// How long after its expiry an assertion still carries its session over.
/// Continuing a session needs the caller's own valid token as well (the
/// user must match), so an old assertion only lets a user keep their own
/// session id across the hops of a long task.
pub const SESSION_CONTINUITY_SECS: u64 = 24 * 3_600;

/// The session a request continues: a service behind the gateway (an agent
/// calling back through it for the same caller) presents the session and
/// assertion it was given, and the filter keeps that session instead of
/// deriving a new one from its own user agent. Any audience the gateway
/// signed for will do: the assertion only names a session of this user.
pub fn continued_session<'a>(
    key: &[u8],
    assertion: Option<&str>,
    session: Option<&'a str>,
    user: &str,
    now: u64,
) -> Option<&'a str> {
    let (assertion, session) = (assertion?, session?);
    let parsed = parse(assertion).ok()?;
    if parsed.audience == MIRROR_AUDIENCE {
        return None;
    }
    parsed
        .check(key, user, session, now, SESSION_CONTINUITY_SECS)
        .ok()
        .map(|()| session)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];
    const AUD: &str = "attach-a2a";

    #[test]
    fn sessions_continue_only_with_a_genuine_assertion_for_the_same_user() {
        let key = [3u8; 32];
        let a = sign(&key, AUD, 1_000, "alice", "s-1");
        let cont = |a: Option<&str>, s: Option<&'static str>, user: &str, now: u64| {
            continued_session(&key, a, s, user, now)
        };
        assert_eq!(cont(Some(&a), Some("s-1"), "alice", 900), Some("s-1"));
        let other_audience = sign(&key, "agent:planner", 1_000, "alice", "s-1");
        assert_eq!(
            cont(Some(&other_audience), Some("s-1"), "alice", 900),
            Some("s-1"),
            "any audience the gateway signed for"
        );
        assert_eq!(
            cont(
                Some(&a),
                Some("s-1"),
                "alice",
                1_000 + SESSION_CONTINUITY_SECS
            ),
            Some("s-1"),
            "a long task keeps its session"
        );
        assert_eq!(
            cont(
                Some(&a),
                Some("s-1"),
                "alice",
                2_000 + SESSION_CONTINUITY_SECS
            ),
            None
        );
        assert_eq!(
            cont(Some(&a), Some("s-1"), "bob", 900),
            None,
            "another user"
        );
        assert_eq!(
            cont(Some(&a), Some("s-2"), "alice", 900),
            None,
            "another session"
        );
        assert_eq!(cont(None, Some("s-1"), "alice", 900), None);
        assert_eq!(cont(Some(&a), None, "alice", 900), None);
        let forged = sign(&[4u8; 32], AUD, 1_000, "alice", "s-1");
        assert_eq!(cont(Some(&forged), Some("s-1"), "alice", 900), None);
        let mirror = sign_mirror(&key, 1_000);
        assert_eq!(cont(Some(&mirror), Some(""), "", 900), None);
    }

    #[test]
    fn signed_assertions_check_out() {
        let v = sign(&KEY, AUD, 1_060, "alice", "0123456789abcdef");
        assert!(v.starts_with("v2.1060.attach-a2a."));
        assert_eq!(
            check(&KEY, AUD, &v, "alice", "0123456789abcdef", 1_000),
            Ok(())
        );
    }

    #[test]
    fn every_change_is_refused() {
        let v = sign(&KEY, AUD, 1_060, "alice", "s");
        let cases = [
            (
                check(&KEY, AUD, &v, "bob", "s", 1_000),
                AssertionError::Mismatch,
            ),
            (
                check(&KEY, AUD, &v, "alice", "t", 1_000),
                AssertionError::Mismatch,
            ),
            (
                check(&[8; 32], AUD, &v, "alice", "s", 1_000),
                AssertionError::Mismatch,
            ),
            (
                check(&KEY, AUD, &v, "alice", "s", 1_066),
                AssertionError::Expired,
            ),
            (
                check(&KEY, AUD, &v.replace("1060", "9999"), "alice", "s", 1_000),
                AssertionError::Mismatch,
            ),
            (
                check(
                    &KEY,
                    AUD,
                    &v.replace(AUD, "attach-b2b"),
                    "alice",
                    "s",
                    1_000,
                ),
                AssertionError::Mismatch,
            ),
            (
                check(&KEY, "engine", &v, "alice", "s", 1_000),
                AssertionError::WrongAudience,
            ),
            (
                check(&KEY, AUD, &v.replacen("v2", "v1", 1), "alice", "s", 1_000),
                AssertionError::Malformed,
            ),
            (
                check(&KEY, AUD, &format!("{v}.x"), "alice", "s", 1_000),
                AssertionError::Malformed,
            ),
            (
                check(&KEY, AUD, "v2.1.a.b.AAAA", "alice", "s", 0),
                AssertionError::Malformed,
            ),
            (
                check(&KEY, AUD, "v2.x.a.AAAA", "alice", "s", 0),
                AssertionError::Malformed,
            ),
            (
                check(&KEY, AUD, "v2.1.a b.AAAA", "alice", "s", 0),
                AssertionError::Malformed,
            ),
            (
                check(&KEY, AUD, "v2.1.a.!!", "alice", "s", 0),
                AssertionError::Malformed,
            ),
            (
                check(&KEY, AUD, "", "alice", "s", 0),
                AssertionError::Malformed,
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, Err(want));
        }
        assert_eq!(check(&KEY, AUD, &v, "alice", "s", 1_065), Ok(()));
    }

    #[test]
    fn the_mirror_credential_is_its_own_audience() {
        let m = sign_mirror(&KEY, 1_060);
        assert_eq!(check(&KEY, MIRROR_AUDIENCE, &m, "", "", 1_000), Ok(()));
        // Nothing a user request carries passes for it, nor the reverse.
        let user = sign(&KEY, AUD, 1_060, "attach-gateway", "");
        assert!(check(&KEY, MIRROR_AUDIENCE, &user, "", "", 1_000).is_err());
        assert!(check(&KEY, AUD, &m, "", "", 1_000).is_err());
    }

    #[test]
    fn audiences_are_plain_tokens() {
        for good in ["attach-a2a", "agent:planner", "a", "A_b-9"] {
            assert!(valid_audience(good), "{good}");
        }
        for bad in ["", "a.b", "a b", "é", &"a".repeat(65)] {
            assert!(!valid_audience(bad), "{bad}");
        }
    }

    #[test]
    fn the_named_audiences_are_valid_and_distinct() {
        let named = [SERVICE_AUDIENCE, MIRROR_AUDIENCE, AGENT_AUDIENCE];
        for (i, audience) in named.iter().enumerate() {
            assert!(valid_audience(audience), "{audience}");
            assert!(!named[i + 1..].contains(audience), "{audience}");
        }
        let a = sign(
            &KEY,
            SERVICE_AUDIENCE,
            1_000 + ASSERTION_LIFETIME_SECS,
            "u",
            "s",
        );
        assert_eq!(check(&KEY, SERVICE_AUDIENCE, &a, "u", "s", 1_000), Ok(()));
    }

    #[test]
    fn known_answer() {
        // Python: hmac.new(b"\x07"*32, b"v2\nattach-a2a\n1060\nalice\ns", "sha256"),
        // base64url without padding.
        assert_eq!(
            sign(&KEY, AUD, 1_060, "alice", "s"),
            "v2.1060.attach-a2a.qTvxuKqqTwpcy_P9idBvJaq4GAvEueYFoGPX2Jsy1kc"
        );
    }
}
