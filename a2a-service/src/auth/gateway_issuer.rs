//! The gateway as a token issuer, as this service knows it: the gateway's
//! signing key set and the name it signs under (`iss`, its public URL).
//!
//! The service verifies the identity token the gateway put on each request
//! ([`attach_contract::identity_token`]) with the set's published keys, and
//! signs, with the same set's current key, the tokens it hands an agent a
//! task with (`a2a/handoff.rs`): it speaks for the gateway there, since
//! the agent verifies both with the gateway's JWKS alone.

use std::sync::Arc;

use attach_contract::gateway_keys::SigningKeys;
use attach_contract::identity_token::{self, IdentityClaims, Refusal};

#[derive(Clone, Debug)]
pub struct GatewayIssuer {
    keys: Arc<SigningKeys>,
    issuer: String,
}

impl GatewayIssuer {
    /// `issuer` without a trailing `/`, as the filter writes `iss`.
    pub fn new(keys: Arc<SigningKeys>, issuer: &str) -> Self {
        Self {
            keys,
            issuer: issuer.trim_end_matches('/').to_string(),
        }
    }

    /// The gateway's `iss`, which is also the audience of the delegated
    /// tokens agents present to it.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The claims of `token` when the gateway signed it for `audience`
    /// with a key it publishes at `now`, and it is still valid.
    pub fn verify(&self, token: &str, audience: &str, now: u64) -> Result<IdentityClaims, Refusal> {
        identity_token::verify(token, &self.issuer, audience, now, |kid| {
            self.keys.verifying_key(kid, now)
        })
    }

    /// `claims` signed with the gateway's current key.
    pub fn sign(&self, claims: &IdentityClaims) -> String {
        identity_token::sign(&self.keys, claims)
    }
}
