//! Self-certifying decentralised identifiers (DIDs): methods whose
//! identifier is, or commits to, the signer's public key, so a DID-JWT can
//! be checked with nothing but the token. No resolution over the network.
//!
//! - `did:key:z…` (W3C CCG did:key): multibase base58btc of a multicodec
//!   varint and a public key: Ed25519 (`0xed`, 32 bytes) for `EdDSA`,
//!   secp256k1 (`0xe7`, 33-byte compressed point) for `ES256K`, P-256
//!   (`0x1200`, 33-byte compressed point) for `ES256`.
//! - `did:pkh:eip155:<chain id>:0x<40 hex>` (CAIP-10): an Ethereum
//!   address. The signature carries the key: `ES256K-R` (65 bytes,
//!   `r || s || v`) or `ES256K` (64 bytes, both recovery ids are tried, as
//!   the did-jwt library does). The recovered key's address (the last 20
//!   bytes of its Keccak-256 hash) must be the DID's.
//!
//! Every ECDSA digest is SHA-256 of the signing input. secp256k1 signatures
//! must have a low `s` (see [`crate::crypto::secp256k1`]).

mod key;
mod pkh;

pub use self::pkh::canonical;

use crate::crypto::{Ed25519Key, P256PlainKey, Secp256k1Key};
use sha2::Digest as _;
use std::fmt;

/// Why a DID or a signature made with its key was refused. The messages
/// are fixed and short; they never echo the DID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DidError {
    /// A DID method (or `did:pkh` namespace) that carries no usable key
    /// here, such as `did:web` (it would need the network).
    UnsupportedMethod,
    /// Not a well-formed DID of its method, or key bytes that are not a
    /// valid point.
    Malformed,
    /// A `did:key` multicodec that names another key type.
    UnsupportedKeyType,
    /// The token's `alg` is not the one the DID's key type signs with.
    AlgorithmMismatch,
    /// The signature is malformed or does not verify.
    BadSignature,
}

impl fmt::Display for DidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DidError::UnsupportedMethod => "unsupported DID method",
            DidError::Malformed => "malformed DID",
            DidError::UnsupportedKeyType => "unsupported did:key key type",
            DidError::AlgorithmMismatch => "algorithm does not match the DID key",
            DidError::BadSignature => "bad DID-JWT signature",
        })
    }
}

impl std::error::Error for DidError {}

/// What a DID resolves to: a public key, or for `did:pkh` the address a
/// recovered key must hash to.
pub struct DidKey {
    key: Key,
}

enum Key {
    Ed25519(Ed25519Key),
    Secp256k1(Secp256k1Key),
    P256(P256PlainKey),
    EthereumAddress([u8; 20]),
}

impl fmt::Debug for DidKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.key {
            Key::Ed25519(_) => "DidKey::Ed25519",
            Key::Secp256k1(_) => "DidKey::Secp256k1",
            Key::P256(_) => "DidKey::P256",
            Key::EthereumAddress(_) => "DidKey::EthereumAddress",
        })
    }
}

/// Resolves a DID (not a DID URL: no path, query or fragment) to its key.
pub fn resolve(did: &str) -> Result<DidKey, DidError> {
    let rest = did.strip_prefix("did:").ok_or(DidError::Malformed)?;
    let (method, id) = rest.split_once(':').ok_or(DidError::Malformed)?;
    // DID syntax: the method name is lower-case letters and digits.
    if method.is_empty()
        || !method
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(DidError::Malformed);
    }
    let key = match method {
        "key" => key::resolve(id)?,
        "pkh" => pkh::resolve(id)?,
        _ => return Err(DidError::UnsupportedMethod),
    };
    Ok(DidKey { key })
}

impl DidKey {
    /// Verifies a JWS signature made with this DID's key. `alg` is the JOSE
    /// header's `alg` as sent, `signing_input` is `header "." payload` and
    /// `signature` the base64url-decoded signature bytes.
    pub fn verify(
        &self,
        alg: &str,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<(), DidError> {
        match &self.key {
            Key::Ed25519(key) => {
                // "Ed25519" is the name older did-jwt versions used.
                if alg != "EdDSA" && alg != "Ed25519" {
                    return Err(DidError::AlgorithmMismatch);
                }
                key.verify(signing_input, signature)
                    .map_err(|_| DidError::BadSignature)
            }
            Key::Secp256k1(key) => {
                if alg != "ES256K" {
                    return Err(DidError::AlgorithmMismatch);
                }
                key.verify_prehash(&sha2::Sha256::digest(signing_input), signature)
                    .map_err(|_| DidError::BadSignature)
            }
            Key::P256(key) => {
                if alg != "ES256" {
                    return Err(DidError::AlgorithmMismatch);
                }
                key.verify_prehash(&sha2::Sha256::digest(signing_input), signature)
                    .map_err(|_| DidError::BadSignature)
            }
            Key::EthereumAddress(address) => {
                pkh::verify_recoverable(address, alg, signing_input, signature)
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
