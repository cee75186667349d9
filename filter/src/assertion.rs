//! The gateway's identity assertion: proof, for services behind the gateway,
//! that `X-Attach-User` and `X-Attach-Session` were set by the filter.
//!
//! Headers alone are only as trustworthy as the network path: anything that
//! reaches a service's port directly could send them. So the filter adds
//! `X-Attach-Assertion: v1.<exp>.<mac>`, an HMAC-SHA256 over the two headers
//! and a short expiry, keyed with a secret the filter and the services share
//! (never the caller). A service recomputes it and refuses what does not match.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use sha2::Sha256;

pub const ASSERTION_HEADER: &str = "x-attach-assertion";
/// Keys shorter than this are refused at configuration time.
pub const MIN_KEY_BYTES: usize = 32;

type HmacSha256 = hmac::Hmac<Sha256>;

/// The exact bytes the MAC covers. Newlines cannot occur in header values,
/// so no two (user, session, exp) triples share a message.
fn message(exp: u64, user: &str, session: &str) -> String {
    format!("v1\n{exp}\n{user}\n{session}")
}

/// The header value asserting `user` and `session` until `exp` (unix seconds).
pub fn sign(key: &[u8], exp: u64, user: &str, session: &str) -> String {
    let mac = HmacSha256::new_from_slice(key)
        .map(|m| m.chain_update(message(exp, user, session).as_bytes()))
        .map(|m| URL_SAFE_NO_PAD.encode(m.finalize().into_bytes()))
        .unwrap_or_default();
    format!("v1.{exp}.{mac}")
}

/// Why an assertion was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssertionError {
    Malformed,
    Expired,
    Mismatch,
}

/// Checks an assertion against the headers it claims to cover; `skew` seconds
/// of clock difference are tolerated on the expiry. The MAC comparison is
/// constant-time.
pub fn check(
    key: &[u8],
    value: &str,
    user: &str,
    session: &str,
    now: u64,
    skew: u64,
) -> Result<(), AssertionError> {
    let mut parts = value.splitn(3, '.');
    let (Some("v1"), Some(exp), Some(mac)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(AssertionError::Malformed);
    };
    let exp: u64 = exp.parse().map_err(|_| AssertionError::Malformed)?;
    let mac = URL_SAFE_NO_PAD
        .decode(mac)
        .map_err(|_| AssertionError::Malformed)?;
    if now > exp.saturating_add(skew) {
        return Err(AssertionError::Expired);
    }
    HmacSha256::new_from_slice(key)
        .map_err(|_| AssertionError::Mismatch)?
        .chain_update(message(exp, user, session).as_bytes())
        .verify_slice(&mac)
        .map_err(|_| AssertionError::Mismatch)
}

/// How long after its expiry an assertion still carries its session over.
/// Continuing a session needs the caller's own valid token as well (the
/// user must match), so an old assertion only lets a user keep their own
/// session id across the hops of a long task.
pub const SESSION_CONTINUITY_SECS: u64 = 24 * 3_600;

/// The session a request continues: a service behind the gateway (an agent
/// calling back through it for the same caller) presents the session and
/// assertion it was given, and the filter keeps that session instead of
/// deriving a new one from its own user agent.
pub fn continued_session<'a>(
    key: &[u8],
    assertion: Option<&str>,
    session: Option<&'a str>,
    user: &str,
    now: u64,
) -> Option<&'a str> {
    let (assertion, session) = (assertion?, session?);
    check(key, assertion, user, session, now, SESSION_CONTINUITY_SECS)
        .ok()
        .map(|()| session)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_continue_only_with_a_genuine_assertion_for_the_same_user() {
        let key = [3u8; 32];
        let a = sign(&key, 1_000, "alice", "s-1");
        let cont = |a: Option<&str>, s: Option<&'static str>, user: &str, now: u64| {
            continued_session(&key, a, s, user, now)
        };
        assert_eq!(cont(Some(&a), Some("s-1"), "alice", 900), Some("s-1"));
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
        let forged = sign(&[4u8; 32], 1_000, "alice", "s-1");
        assert_eq!(cont(Some(&forged), Some("s-1"), "alice", 900), None);
    }

    const KEY: [u8; 32] = [7; 32];

    #[test]
    fn signed_assertions_check_out() {
        let v = sign(&KEY, 1_060, "alice", "0123456789abcdef");
        assert!(v.starts_with("v1.1060."));
        assert_eq!(
            check(&KEY, &v, "alice", "0123456789abcdef", 1_000, 5),
            Ok(())
        );
    }

    #[test]
    fn every_change_is_refused() {
        let v = sign(&KEY, 1_060, "alice", "s");
        let cases = [
            (
                check(&KEY, &v, "bob", "s", 1_000, 5),
                AssertionError::Mismatch,
            ),
            (
                check(&KEY, &v, "alice", "t", 1_000, 5),
                AssertionError::Mismatch,
            ),
            (
                check(&[8; 32], &v, "alice", "s", 1_000, 5),
                AssertionError::Mismatch,
            ),
            (
                check(&KEY, &v, "alice", "s", 1_066, 5),
                AssertionError::Expired,
            ),
            (
                check(&KEY, &v.replace("1060", "9999"), "alice", "s", 1_000, 5),
                AssertionError::Mismatch,
            ),
            (
                check(&KEY, "v2.1.AAAA", "alice", "s", 0, 5),
                AssertionError::Malformed,
            ),
            (
                check(&KEY, "v1.x.AAAA", "alice", "s", 0, 5),
                AssertionError::Malformed,
            ),
            (
                check(&KEY, "v1.1.!!", "alice", "s", 0, 5),
                AssertionError::Malformed,
            ),
            (
                check(&KEY, "", "alice", "s", 0, 5),
                AssertionError::Malformed,
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, Err(want));
        }
        assert_eq!(check(&KEY, &v, "alice", "s", 1_065, 5), Ok(()));
    }

    #[test]
    fn known_answer() {
        // Python: hmac.new(b"\x07"*32, b"v1\n1060\nalice\ns", "sha256") base64url without padding.
        assert_eq!(
            sign(&KEY, 1_060, "alice", "s"),
            "v1.1060.k5_iY1fvxwrh_NI5P9U0OalgqpFt-K9tPK-D_GSQg2Q"
        );
    }
}
