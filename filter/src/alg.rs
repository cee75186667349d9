//! JWS signature algorithms the gateway accepts.
//!
//! Symmetric algorithms (`HS*`) and `none` have no variant on purpose: a
//! gateway that holds only public keys must never be tricked into using one
//! as an HMAC secret, so they cannot even be named in the configuration.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

/// The kind of public key an algorithm needs; a token whose `alg` names a
/// different family than the selected key is refused (alg confusion).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFamily {
    Rsa,
    P256,
    P384,
    Ed25519,
}

/// The hash an algorithm signs over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashAlg {
    Sha256,
    Sha384,
    Sha512,
}

impl Alg {
    pub const ALL: [Alg; 9] = [
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::EdDSA,
    ];

    /// Parses the `alg` header value; `None` for anything not accepted,
    /// including `none` and every `HS*`.
    pub fn from_name(name: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
        }
    }

    pub fn key_family(self) -> KeyFamily {
        match self {
            Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512 => {
                KeyFamily::Rsa
            }
            Alg::ES256 => KeyFamily::P256,
            Alg::ES384 => KeyFamily::P384,
            Alg::EdDSA => KeyFamily::Ed25519,
        }
    }

    /// The digest for RSA and ECDSA; EdDSA hashes internally and ignores it.
    pub fn hash(self) -> HashAlg {
        match self {
            Alg::RS256 | Alg::PS256 | Alg::ES256 | Alg::EdDSA => HashAlg::Sha256,
            Alg::RS384 | Alg::PS384 | Alg::ES384 => HashAlg::Sha384,
            Alg::RS512 | Alg::PS512 => HashAlg::Sha512,
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for alg in Alg::ALL {
            assert_eq!(Alg::from_name(alg.name()), Some(alg));
        }
    }

    #[test]
    fn symmetric_and_none_are_unknown() {
        for name in ["none", "None", "HS256", "HS384", "HS512", "rs256", ""] {
            assert_eq!(Alg::from_name(name), None, "{name}");
        }
    }

    #[test]
    fn families() {
        assert_eq!(Alg::PS384.key_family(), KeyFamily::Rsa);
        assert_eq!(Alg::ES256.key_family(), KeyFamily::P256);
        assert_eq!(Alg::ES384.key_family(), KeyFamily::P384);
        assert_eq!(Alg::EdDSA.key_family(), KeyFamily::Ed25519);
    }
}
