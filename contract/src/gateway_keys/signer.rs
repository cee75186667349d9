//! A gateway private key of either algorithm, read from its stored form.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::algorithm::Algorithm;
use super::ed25519::Ed25519Signer;
use super::es256::P256Signer;
use super::public::VerifyingKey;

#[derive(Clone)]
pub(super) enum Signer {
    Ed25519(Ed25519Signer),
    P256(P256Signer),
}

impl Signer {
    /// The key of `alg` whose 32 secret bytes are `secret`: an Ed25519 seed
    /// (RFC 8032), or a P-256 private scalar, big-endian, which `None`
    /// refuses unless it is in `[1, n-1]`.
    pub(super) fn new(alg: Algorithm, secret: &[u8; 32]) -> Option<Self> {
        match alg {
            Algorithm::EdDSA => Some(Signer::Ed25519(Ed25519Signer::from_seed(secret))),
            Algorithm::ES256 => P256Signer::from_bytes(secret).map(Signer::P256),
        }
    }

    /// The key of `alg` stored as `secret`, 32 bytes in base64url.
    pub(super) fn decode(alg: Algorithm, secret: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(secret.trim()).ok()?;
        Self::new(alg, &<[u8; 32]>::try_from(bytes).ok()?)
    }

    pub(super) fn public(&self) -> VerifyingKey {
        match self {
            Signer::Ed25519(key) => VerifyingKey::Ed25519(key.public()),
            Signer::P256(key) => VerifyingKey::P256(key.public()),
        }
    }

    pub(super) fn algorithm(&self) -> Algorithm {
        match self {
            Signer::Ed25519(_) => Algorithm::EdDSA,
            Signer::P256(_) => Algorithm::ES256,
        }
    }

    /// The JWS signature of `message`: 64 bytes for both algorithms.
    pub(super) fn sign(&self, message: &[u8]) -> [u8; 64] {
        match self {
            Signer::Ed25519(key) => key.sign(message),
            Signer::P256(key) => key.sign(message),
        }
    }
}
