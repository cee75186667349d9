//! The session id the gateway stamps in `X-Attach-Session` when a request
//! continues none.
//!
//! The filter derives it; the companion service and the memory it keeps
//! group a caller's events by it, and sessions recorded by the original
//! Python gateway must keep matching.

use sha2::{Digest, Sha256};

/// Characters of the hex digest kept.
const SESSION_CHARS: usize = 16;

/// The session id: the first 16 lowercase hex characters of
/// SHA-256(`"{sub}:{user-agent}"`), byte-identical to the original Python
/// gateway so that sessions recorded by either match.
pub fn session_id(user: &str, user_agent: &[u8]) -> String {
    let digest = Sha256::new()
        .chain_update(user.as_bytes())
        .chain_update(b":")
        .chain_update(user_agent)
        .finalize();
    let mut out = String::with_capacity(SESSION_CHARS);
    for b in digest.iter().take(SESSION_CHARS / 2) {
        out.push(hex_digit(b >> 4));
        out.push(hex_digit(b & 0x0f));
    }
    out
}

/// The lowercase hex digit of a nibble.
fn hex_digit(nibble: u8) -> char {
    char::from_digit(u32::from(nibble), 16).unwrap_or('0')
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
}
