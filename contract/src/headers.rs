//! The `X-Attach-*` headers the gateway stamps on the requests it lets
//! through, and the rule that only the gateway may set them.
//!
//! The filter removes every inbound header with [`RESERVED_PREFIX`] and
//! sets [`USER_HEADER`], [`SESSION_HEADER`] and, on the routes that name an
//! audience, [`ASSERTION_HEADER`] (see [`crate::assertion`]), and
//! [`IDENTITY_HEADER`] (see [`crate::identity_token`]). The companion
//! service and the example agents read them, and hand the session and the
//! assertion back when they call the gateway for the same caller.

/// The verified caller's full `sub` (or DID).
pub const USER_HEADER: &str = "x-attach-user";
/// The caller's session, see [`crate::session`].
pub const SESSION_HEADER: &str = "x-attach-session";
/// Proof that the two headers above were set by the gateway.
pub const ASSERTION_HEADER: &str = "x-attach-assertion";
/// The gateway-signed identity token, see [`crate::identity_token`].
pub const IDENTITY_HEADER: &str = "x-attach-identity";
/// Who acts for the user, current actor first (see
/// [`crate::delegation::ActorChain::header_value`]); absent when the user
/// acts alone.
pub const ACTOR_HEADER: &str = "x-attach-actor";
/// The token the companion service delegates to an agent it hands a task
/// to (see [`crate::delegation`]): the agent's bearer token for calling the
/// gateway on the user's behalf.
pub const DELEGATION_HEADER: &str = "x-attach-delegation";
/// Every inbound header with this prefix is removed: only the gateway may set them.
pub const RESERVED_PREFIX: &str = "x-attach-";

/// Whether `header_name` is one only the gateway may set, in any case.
pub fn is_reserved(header_name: &str) -> bool {
    header_name
        .get(..RESERVED_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(RESERVED_PREFIX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_prefix_any_case() {
        assert!(is_reserved("x-attach-user"));
        assert!(is_reserved("X-Attach-Anything"));
        assert!(!is_reserved("x-attach"));
        assert!(!is_reserved("x-attachment"));
        assert!(!is_reserved("é"));
    }

    #[test]
    fn the_stamped_headers_are_reserved() {
        for name in [
            USER_HEADER,
            SESSION_HEADER,
            ASSERTION_HEADER,
            IDENTITY_HEADER,
            ACTOR_HEADER,
            DELEGATION_HEADER,
        ] {
            assert!(is_reserved(name), "{name}");
        }
    }
}
