//! `did:key` (W3C CCG did:key): multibase base58btc of a multicodec varint
//! and a public key.

use super::{DidError, Key};
use crate::crypto::{Ed25519Key, P256PlainKey, Secp256k1Key};

/// Longest method-specific identifier accepted for did:key. Supported keys
/// take 48 (Ed25519) or 49 (secp256k1, P-256) characters, and P-521 keys
/// (refused as unsupported, not malformed) 94; the bound keeps the
/// quadratic base58 decoding cheap for hostile input.
pub(super) const MAX_DID_KEY_CHARS: usize = 128;

/// Multicodec codes of the supported public key types.
pub(super) const ED25519_PUB: u64 = 0xed;
pub(super) const SECP256K1_PUB: u64 = 0xe7;
pub(super) const P256_PUB: u64 = 0x1200;

/// The method-specific identifier of a did:key to its key.
pub(super) fn resolve(id: &str) -> Result<Key, DidError> {
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

pub(super) const BASE58_ALPHABET: &[u8; 58] =
    b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// Decodes Bitcoin-alphabet base58. Our own few lines rather than the
/// `bs58` crate: did:key identifiers are short and bounded, so the simple
/// quadratic conversion is enough, and the filter gains no dependency.
/// Each leading '1' is a leading zero byte. `None` for any character
/// outside the alphabet.
pub(super) fn base58_decode(text: &str) -> Option<Vec<u8>> {
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
pub(super) fn read_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
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
