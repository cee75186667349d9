//! The gateway's HMAC identity assertion (`X-Attach-Assertion`), for
//! stacks without the gateway's signing keys, and for the memory mirror's
//! own credential. The format, its MAC, the audiences, lifetimes and clock
//! skew are the contract's [`attach_contract::assertion`], written once.

use std::fmt;

use attach_contract::assertion::{
    self as wire, AGENT_AUDIENCE, ASSERTION_LIFETIME_SECS, AssertionError, MIN_KEY_BYTES,
    SERVICE_AUDIENCE,
};
use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};

use super::unix_now;

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
