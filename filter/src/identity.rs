//! The identity the gateway stamps on requests it lets through: the result
//! of verifying a token. The headers it goes out in, and the session id
//! derived from it, are the contract's ([`attach_contract::headers`],
//! [`attach_contract::session`]).

use attach_contract::delegation::ActorChain;

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
    /// Who acts for the user (a token the gateway delegated); empty when
    /// the user acts alone.
    pub actors: ActorChain,
    /// The session a token the gateway issued carries on; other tokens
    /// start theirs from the user and the user agent.
    pub session: Option<String>,
}
