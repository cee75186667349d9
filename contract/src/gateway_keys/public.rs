//! The public halves of gateway keys: what the JWKS publishes, what a
//! key's `kid` is derived from, and what upstreams verify tokens with.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::algorithm::Algorithm;
use super::es256::P256Public;

/// A gateway public key. Its algorithm is fixed by its kind, which is what
/// a verifier goes by, never by a token's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyingKey {
    Ed25519(ed25519_dalek::VerifyingKey),
    P256(P256Public),
}

impl VerifyingKey {
    pub fn algorithm(&self) -> Algorithm {
        match self {
            VerifyingKey::Ed25519(_) => Algorithm::EdDSA,
            VerifyingKey::P256(_) => Algorithm::ES256,
        }
    }

    /// Whether `signature` is this key's over `message`, by the key's own
    /// algorithm (Ed25519 with RFC 8032's strict checks, or ES256).
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        match self {
            VerifyingKey::Ed25519(key) => key
                .verify_strict(message, &ed25519_dalek::Signature::from_bytes(signature))
                .is_ok(),
            VerifyingKey::P256(key) => key.verify(message, signature),
        }
    }

    /// The RFC 7638 thumbprint, base64url: SHA-256 of the key's required
    /// JWK members in lexicographic order, without whitespace. Written out
    /// rather than serialised, so that no serialiser setting can reorder
    /// the members.
    pub fn thumbprint(&self) -> String {
        let canonical = match self {
            VerifyingKey::Ed25519(key) => format!(
                r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
                URL_SAFE_NO_PAD.encode(key.as_bytes())
            ),
            VerifyingKey::P256(key) => format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                URL_SAFE_NO_PAD.encode(key.x()),
                URL_SAFE_NO_PAD.encode(key.y())
            ),
        };
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
    }

    /// The key as a JWK (RFC 8037 section 2, RFC 7518 section 6.2.1).
    fn jwk(&self, kid: &str) -> Value {
        let alg = self.algorithm().name();
        match self {
            VerifyingKey::Ed25519(key) => json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(key.as_bytes()),
                "use": "sig",
                "alg": alg,
                "kid": kid,
            }),
            VerifyingKey::P256(key) => json!({
                "kty": "EC",
                "crv": "P-256",
                "x": URL_SAFE_NO_PAD.encode(key.x()),
                "y": URL_SAFE_NO_PAD.encode(key.y()),
                "use": "sig",
                "alg": alg,
                "kid": kid,
            }),
        }
    }
}

impl From<ed25519_dalek::VerifyingKey> for VerifyingKey {
    fn from(key: ed25519_dalek::VerifyingKey) -> Self {
        VerifyingKey::Ed25519(key)
    }
}

/// One published public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    pub kid: String,
    pub key: VerifyingKey,
    pub published_until: Option<u64>,
}

impl PublicKey {
    pub fn published_at(&self, now: u64) -> bool {
        self.published_until.is_none_or(|until| now < until)
    }

    /// The key as a JWK, with its `kid`, `alg` and `use`.
    pub fn jwk(&self) -> Value {
        self.key.jwk(&self.kid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway_keys::es256::tests::{RFC_6979_KEY, hex32};

    #[test]
    fn the_kid_is_the_rfc_7638_thumbprint() {
        // RFC 8037 appendix A.3: the thumbprint of the appendix A.2 key.
        let x = URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        let key = ed25519_dalek::VerifyingKey::from_bytes(&x.try_into().unwrap()).unwrap();
        assert_eq!(
            VerifyingKey::from(key).thumbprint(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn an_ec_thumbprint_hashes_crv_kty_x_y_in_that_order() {
        // The RFC 6979 appendix A.2.5 key; the thumbprint computed apart
        // (Python: SHA-256 of the members written in order, base64url).
        let signer = super::super::es256::P256Signer::from_bytes(&hex32(RFC_6979_KEY)).unwrap();
        let key = VerifyingKey::P256(signer.public());
        assert_eq!(
            key.thumbprint(),
            "DOvxvJiAdIqVWIkFt5hDtCunXLF0BV4-JGv4f-ALSm0"
        );
        let jwk = PublicKey {
            kid: key.thumbprint(),
            key,
            published_until: None,
        }
        .jwk();
        assert_eq!(
            jwk,
            json!({
                "kty": "EC",
                "crv": "P-256",
                "x": "YP7UuiVanTHJYet0xjVtaMBJuJI7Yfps5mliLmDyn7Y",
                "y": "eQP-EAi4vJmkGunpVii8ZPLxsgwtfp9Rd6PClNRGIpk",
                "use": "sig",
                "alg": "ES256",
                "kid": "DOvxvJiAdIqVWIkFt5hDtCunXLF0BV4-JGv4f-ALSm0",
            })
        );
    }
}
