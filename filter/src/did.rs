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

/// Longest method-specific identifier accepted for did:key. Real ones are
/// 48 (Ed25519) and 49 (secp256k1, P-256) characters; the bound keeps the
/// quadratic base58 decoding cheap for hostile input.
const MAX_DID_KEY_CHARS: usize = 64;

/// Multicodec codes of the supported public key types.
const ED25519_PUB: u64 = 0xed;
const SECP256K1_PUB: u64 = 0xe7;
const P256_PUB: u64 = 0x1200;

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
        "key" => resolve_did_key(id)?,
        "pkh" => resolve_did_pkh(id)?,
        _ => return Err(DidError::UnsupportedMethod),
    };
    Ok(DidKey { key })
}

fn resolve_did_key(id: &str) -> Result<Key, DidError> {
    // Multibase: 'z' is base58btc, the only base did:key uses.
    let encoded = id.strip_prefix('z').ok_or(DidError::Malformed)?;
    if encoded.len() > MAX_DID_KEY_CHARS {
        return Err(DidError::Malformed);
    }
    let bytes = base58_decode(encoded).ok_or(DidError::Malformed)?;
    let (codec, key) = read_varint(&bytes).ok_or(DidError::Malformed)?;
    match codec {
        ED25519_PUB => {
            if key.len() != 32 {
                return Err(DidError::Malformed);
            }
            Ed25519Key::from_bytes(key)
                .map(Key::Ed25519)
                .ok_or(DidError::Malformed)
        }
        SECP256K1_PUB => {
            if key.len() != 33 {
                return Err(DidError::Malformed);
            }
            Secp256k1Key::from_compressed(key)
                .map(Key::Secp256k1)
                .ok_or(DidError::Malformed)
        }
        P256_PUB => {
            if key.len() != 33 {
                return Err(DidError::Malformed);
            }
            P256PlainKey::from_sec1(key)
                .map(Key::P256)
                .ok_or(DidError::Malformed)
        }
        _ => Err(DidError::UnsupportedKeyType),
    }
}

/// `did:pkh:<namespace>:<reference>:<address>` (CAIP-10 account id).
fn resolve_did_pkh(id: &str) -> Result<Key, DidError> {
    let mut parts = id.split(':');
    let (Some(namespace), Some(reference), Some(address), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(DidError::Malformed);
    };
    // CAIP-2 namespace: 3 to 8 of [-a-z0-9].
    if !(3..=8).contains(&namespace.len())
        || !namespace
            .bytes()
            .all(|b| b == b'-' || b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(DidError::Malformed);
    }
    if namespace != "eip155" {
        return Err(DidError::UnsupportedMethod);
    }
    // An EIP-155 chain id is a decimal number (CAIP-2 allows 1 to 32
    // characters). Any chain: the address, not the chain, is the identity.
    if !(1..=32).contains(&reference.len()) || !reference.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DidError::Malformed);
    }
    let hex = address.strip_prefix("0x").ok_or(DidError::Malformed)?;
    parse_address(hex)
        .map(Key::EthereumAddress)
        .ok_or(DidError::Malformed)
}

/// 40 hex digits, any case (the EIP-55 mixed-case checksum is not
/// required, so it is not checked either).
fn parse_address(hex: &str) -> Option<[u8; 20]> {
    if hex.len() != 40 {
        return None;
    }
    let mut out = [0u8; 20];
    for (byte, pair) in out.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
        let (&high, &low) = (pair.first()?, pair.get(1)?);
        *byte = (hex_value(high)? << 4) | hex_value(low)?;
    }
    Some(out)
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

const BASE58_ALPHABET: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// Decodes Bitcoin-alphabet base58. Our own few lines rather than the
/// `bs58` crate: did:key identifiers are short and bounded, so the simple
/// quadratic conversion is enough, and the filter gains no dependency.
/// Each leading '1' is a leading zero byte. `None` for any character
/// outside the alphabet.
fn base58_decode(text: &str) -> Option<Vec<u8>> {
    let zeros = text.bytes().take_while(|&c| c == b'1').count();
    // Big-endian magnitude of the rest, least significant byte last.
    let mut magnitude: Vec<u8> = Vec::with_capacity(text.len());
    for c in text.bytes().skip(zeros) {
        let digit = BASE58_ALPHABET.iter().position(|&a| a == c)?;
        let mut carry = digit as u32;
        for byte in magnitude.iter_mut().rev() {
            let v = u32::from(*byte) * 58 + carry;
            *byte = v as u8;
            carry = v >> 8;
        }
        while carry > 0 {
            magnitude.insert(0, carry as u8);
            carry >>= 8;
        }
    }
    let mut out = vec![0u8; zeros];
    out.extend_from_slice(&magnitude);
    Some(out)
}

/// Reads a multiformats unsigned varint (little-endian groups of 7 bits,
/// high bit set on all but the last byte; minimal encoding, at most 9
/// bytes). Returns the value and the bytes after it.
fn read_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(9) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            // A trailing zero group would make the encoding non-minimal.
            if b == 0 && i > 0 {
                return None;
            }
            return Some((value, bytes.get(i + 1..)?));
        }
    }
    None
}

/// Ethereum address of a secp256k1 key: the last 20 bytes of Keccak-256
/// over the 64-byte `x || y`.
fn ethereum_address(key: &Secp256k1Key) -> [u8; 20] {
    let uncompressed = key.to_uncompressed();
    let hash = sha3::Keccak256::digest(uncompressed.get(1..).unwrap_or_default());
    let mut out = [0u8; 20];
    for (dst, src) in out.iter_mut().zip(hash.iter().skip(12)) {
        *dst = *src;
    }
    out
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
                verify_recoverable(address, alg, signing_input, signature)
            }
        }
    }
}

fn verify_recoverable(
    address: &[u8; 20],
    alg: &str,
    signing_input: &[u8],
    signature: &[u8],
) -> Result<(), DidError> {
    let digest = sha2::Sha256::digest(signing_input);
    let matches = |rs: &[u8], recovery_id: u8| {
        Secp256k1Key::recover_prehash(&digest, rs, recovery_id)
            .is_ok_and(|key| ethereum_address(&key) == *address)
    };
    match alg {
        "ES256K-R" => {
            let (&v, rs) = signature.split_last().ok_or(DidError::BadSignature)?;
            if rs.len() != 64 {
                return Err(DidError::BadSignature);
            }
            // Ethereum tooling writes 27/28 for 0/1.
            let recovery_id = match v {
                0 | 27 => 0,
                1 | 28 => 1,
                _ => return Err(DidError::BadSignature),
            };
            if matches(rs, recovery_id) {
                Ok(())
            } else {
                Err(DidError::BadSignature)
            }
        }
        "ES256K" => {
            if signature.len() != 64 {
                return Err(DidError::BadSignature);
            }
            if matches(signature, 0) || matches(signature, 1) {
                Ok(())
            } else {
                Err(DidError::BadSignature)
            }
        }
        _ => Err(DidError::AlgorithmMismatch),
    }
}
