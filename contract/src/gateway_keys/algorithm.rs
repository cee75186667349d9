//! The JWS algorithms a gateway key signs with. Ed25519 (`EdDSA`, RFC 8037)
//! is the default: small keys and signatures, and nothing secret in how a
//! signature is made. ES256 (ECDSA on P-256 with SHA-256, RFC 7518 section
//! 3.4) is there for upstreams whose JWT libraries or policies know only
//! the NIST curves.
//!
//! Symmetric algorithms and `none` have no variant: whatever a token's
//! header says, it is checked with the algorithm of the key it names.

/// The algorithm of a gateway key, and of every token it signs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Algorithm {
    #[default]
    EdDSA,
    ES256,
}

impl Algorithm {
    pub const ALL: [Algorithm; 2] = [Algorithm::EdDSA, Algorithm::ES256];

    /// The JWS `alg` value (RFC 7518 section 3.1, RFC 8037 section 3.1).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::EdDSA => "EdDSA",
            Algorithm::ES256 => "ES256",
        }
    }

    /// The algorithm an `alg` value names, exactly as JWS spells it.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|alg| alg.name() == name)
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_nothing_else_is_an_algorithm() {
        for alg in Algorithm::ALL {
            assert_eq!(Algorithm::from_name(alg.name()), Some(alg));
        }
        for other in ["none", "HS256", "es256", "EDDSA", "ES384", "RS256", ""] {
            assert_eq!(Algorithm::from_name(other), None, "{other}");
        }
        assert_eq!(Algorithm::default(), Algorithm::EdDSA);
    }
}
