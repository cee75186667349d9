//! The identity the gateway stamps on requests it lets through: the result
//! of verifying a token. The headers it goes out in, and the session id
//! derived from it, are the contract's ([`attach_contract::headers`],
//! [`attach_contract::session`]).

/// A verified caller.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// The token's full `sub` (or DID), never truncated.
    pub user: String,
    /// Token expiry, seconds since the epoch.
    pub exp: i64,
    /// Who issued the token: the provider's issuer, or the DID itself.
    pub issuer: String,
    /// The token's scopes, space-separated; `None` when it has none.
    pub scope: Option<String>,
}
