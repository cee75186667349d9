//! `did:pkh` (CAIP-10 account ids): an Ethereum address, checked against
//! the key recovered from the signature.

use super::{DidError, Key};
use crate::crypto::Secp256k1Key;
use sha2::Digest as _;

/// The one spelling of a DID that names the same account as `did`: every
/// alias of a `did:pkh:eip155` account (upper- or mixed-case hex, a chain id
/// with leading zeros) maps to lower-case hex and the chain id in plain
/// decimal, so one key never signs in as several users on one chain. The
/// chain id stays part of the identity, as in CAIP-10: `eip155:1` and
/// `eip155:137` are two accounts (an allow-list can admit one chain and not
/// the other). Other DIDs are already canonical: did:key's base58btc
/// encoding of a multicodec key has one spelling per key (the varint is
/// read as minimal, compressed points only). A DID that is not well formed
/// is returned unchanged, for [`super::resolve`] to refuse.
pub fn canonical(did: &str) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    let Some(rest) = did.strip_prefix("did:pkh:eip155:") else {
        return Cow::Borrowed(did);
    };
    let Some((chain, address)) = rest.split_once(':') else {
        return Cow::Borrowed(did);
    };
    let Some(hex) = address.strip_prefix("0x") else {
        return Cow::Borrowed(did);
    };
    if chain.is_empty()
        || !chain.bytes().all(|b| b.is_ascii_digit())
        || hex.len() != 40
        || !hex.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Cow::Borrowed(did);
    }
    let chain = match chain.trim_start_matches('0') {
        "" => "0",
        digits => digits,
    };
    let canonical = format!("did:pkh:eip155:{chain}:0x{}", hex.to_ascii_lowercase());
    if canonical == did {
        Cow::Borrowed(did)
    } else {
        Cow::Owned(canonical)
    }
}

/// `did:pkh:<namespace>:<reference>:<address>` (CAIP-10 account id).
pub(super) fn resolve(id: &str) -> Result<Key, DidError> {
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
pub(super) fn parse_address(hex: &str) -> Option<[u8; 20]> {
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

/// Ethereum address of a secp256k1 key: the last 20 bytes of Keccak-256
/// over the 64-byte `x || y`.
pub(super) fn ethereum_address(key: &Secp256k1Key) -> [u8; 20] {
    let uncompressed = key.to_uncompressed();
    let hash = sha3::Keccak256::digest(uncompressed.get(1..).unwrap_or_default());
    let mut out = [0u8; 20];
    for (dst, src) in out.iter_mut().zip(hash.iter().skip(12)) {
        *dst = *src;
    }
    out
}

/// A signature whose recovered key hashes to `address`: `ES256K-R` names
/// its recovery id, plain `ES256K` has both tried.
pub(super) fn verify_recoverable(
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
