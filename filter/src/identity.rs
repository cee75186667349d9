//! The identity the gateway stamps on requests it lets through.

use sha2::{Digest, Sha256};

pub const USER_HEADER: &str = "x-attach-user";
pub const SESSION_HEADER: &str = "x-attach-session";
/// Every inbound header with this prefix is removed: only the gateway may set them.
pub const RESERVED_PREFIX: &str = "x-attach-";

/// A verified caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The token's full `sub` (or DID), never truncated.
    pub user: String,
    /// Token expiry, seconds since the epoch.
    pub exp: i64,
}

/// The session id: the first 16 lowercase hex characters of
/// SHA-256(`"{sub}:{user-agent}"`), byte-identical to the original Python
/// gateway so that sessions recorded by either match.
pub fn session_id(user: &str, user_agent: &[u8]) -> String {
    let digest = Sha256::new()
        .chain_update(user.as_bytes())
        .chain_update(b":")
        .chain_update(user_agent)
        .finalize();
    let mut out = String::with_capacity(16);
    for b in &digest[..8] {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

pub fn is_reserved(header_name: &str) -> bool {
    header_name
        .get(..RESERVED_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(RESERVED_PREFIX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_matches_the_seed_formula() {
        // hashlib.sha256(b"alice:curl/8.0").hexdigest()[:16]
        assert_eq!(session_id("alice", b"curl/8.0"), "2d5bbd54eeab1ae2");
        // An absent User-Agent hashes as the empty string.
        assert_eq!(session_id("alice", b""), "a343e93196f9e943");
        // Non-UTF-8 bytes in the User-Agent hash as sent.
        assert_eq!(session_id("alice", b"\xff"), "6029ef149fa2c200");
    }

    #[test]
    fn reserved_prefix_any_case() {
        assert!(is_reserved("x-attach-user"));
        assert!(is_reserved("X-Attach-Anything"));
        assert!(!is_reserved("x-attach"));
        assert!(!is_reserved("x-attachment"));
        assert!(!is_reserved("é"));
    }
}
