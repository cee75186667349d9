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

/// Longest method-specific identifier accepted for did:key. Supported keys
/// take 48 (Ed25519) or 49 (secp256k1, P-256) characters, and P-521 keys
/// (refused as unsupported, not malformed) 94; the bound keeps the
/// quadratic base58 decoding cheap for hostile input.
const MAX_DID_KEY_CHARS: usize = 128;

/// Multicodec codes of the supported public key types.
const ED25519_PUB: u64 = 0xed;
const SECP256K1_PUB: u64 = 0xe7;
const P256_PUB: u64 = 0x1200;

/// The one spelling of a DID that names the same account as `did`: every
/// alias of a `did:pkh:eip155` account (upper- or mixed-case hex, a chain id
/// with leading zeros) maps to lower-case hex and the chain id in plain
/// decimal, so one key never signs in as several users on one chain. The
/// chain id stays part of the identity, as in CAIP-10: `eip155:1` and
/// `eip155:137` are two accounts (an allow-list can admit one chain and not
/// the other). Other DIDs are already canonical: did:key's base58btc
/// encoding of a multicodec key has one spelling per key (the varint is
/// read as minimal, compressed points only). A DID that is not well formed
/// is returned unchanged, for [`resolve`] to refuse.
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::crypto::test_util::bytes;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    fn to_hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// Base58 encoding, for building DIDs in tests.
    fn base58_encode(data: &[u8]) -> String {
        let zeros = data.iter().take_while(|&&b| b == 0).count();
        let mut digits: Vec<u8> = Vec::new(); // base 58, least significant first
        for &byte in &data[zeros..] {
            let mut carry = u32::from(byte);
            for d in digits.iter_mut() {
                let v = u32::from(*d) * 256 + carry;
                *d = (v % 58) as u8;
                carry = v / 58;
            }
            while carry > 0 {
                digits.push((carry % 58) as u8);
                carry /= 58;
            }
        }
        let mut out = "1".repeat(zeros);
        out.extend(
            digits
                .iter()
                .rev()
                .map(|&d| BASE58_ALPHABET[d as usize] as char),
        );
        out
    }

    /// The did:key of a public key with its multicodec prefix.
    pub(crate) fn did_key(codec: &[u8], key: &[u8]) -> String {
        format!("did:key:z{}", base58_encode(&[codec, key].concat()))
    }

    fn sha256(m: &[u8]) -> [u8; 32] {
        sha2::Sha256::digest(m).into()
    }

    const INPUT: &[u8] = b"eyJhbGciOiJFUzI1NksiLCJ0eXAiOiJKV1QifQ.eyJpc3MiOiJkaWQ6ZXhhbXBsZSJ9";

    // --- did:key vectors from the W3C CCG did:key test vectors -------------

    /// Ed25519, seed 0: the RFC 8032 public key of the all-zero secret.
    const ED25519_DID: &str = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp";
    const ED25519_PUB: &str = "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29";
    /// secp256k1, with its secret key and compressed public key.
    const SECP256K1_DID: &str = "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme";
    const SECP256K1_SECRET: &str =
        "9085d2bef69286a6cbb51623c8fa258629945cd55ca705cc4e66700396894e0c";
    const SECP256K1_PUB: &str =
        "03874c15c7fda20e539c6e5ba573c139884c351188799f5458b4b41f7924f235cd";
    /// P-256, with its JWK coordinates and secret (hex of the base64url).
    const P256_DID: &str = "did:key:zDnaerx9CtbPJ1q36T5Ln5wYt3MQYeGRG5ehnPAmxcf5mDZpv";
    const P256_X: &str = "8a0ac59a2d3086e8a12a78fd4773a6d52a0ca61ef6c1419e15a05bcc6dafce7b";
    const P256_Y: &str = "79fb17e5bd74c7cca3cab8f89f2de919f2dc63b5dbcb52b382a39daa7b2b2483";
    const P256_SECRET: &str = "80f87e56f552f0c6ef290f4b4955667e7c672a31e7e13aa3d1b99ba5e8519697";

    #[test]
    fn published_ed25519_vector() {
        let key = resolve(ED25519_DID).unwrap();
        assert!(matches!(key.key, Key::Ed25519(_)));
        // The same DID built from the stated key.
        assert_eq!(did_key(&[0xed, 0x01], &hex(ED25519_PUB)), ED25519_DID);
        let sk = ed25519_dalek::SigningKey::from_bytes(&[0u8; 32]);
        assert_eq!(sk.verifying_key().as_bytes().to_vec(), hex(ED25519_PUB));
        use ed25519_dalek::Signer as _;
        let sig = sk.sign(INPUT).to_bytes();
        assert_eq!(key.verify("EdDSA", INPUT, &sig), Ok(()));
        assert_eq!(key.verify("Ed25519", INPUT, &sig), Ok(()));
    }

    #[test]
    fn published_secp256k1_vector() {
        let key = resolve(SECP256K1_DID).unwrap();
        let Key::Secp256k1(point) = &key.key else {
            panic!("secp256k1 expected")
        };
        assert_eq!(point.to_compressed().to_vec(), hex(SECP256K1_PUB));
        assert_eq!(did_key(&[0xe7, 0x01], &hex(SECP256K1_PUB)), SECP256K1_DID);
        let sk = k256::ecdsa::SigningKey::from_slice(&hex(SECP256K1_SECRET)).unwrap();
        assert_eq!(
            sk.verifying_key().to_sec1_point(false).as_bytes(),
            &point.to_uncompressed()[..]
        );
        let (sig, _) = sk.sign_prehash_recoverable(&sha256(INPUT));
        assert_eq!(key.verify("ES256K", INPUT, &sig.to_bytes()), Ok(()));
    }

    #[test]
    fn published_p256_vector() {
        let key = resolve(P256_DID).unwrap();
        let Key::P256(point) = &key.key else {
            panic!("P-256 expected")
        };
        let expected = [&[4u8][..], &hex(P256_X), &hex(P256_Y)].concat();
        assert_eq!(point.to_uncompressed().to_vec(), expected);
        // y is odd, so the compressed form starts with 03.
        assert_eq!(
            did_key(&[0x80, 0x24], &[&[3u8][..], &hex(P256_X)].concat()),
            P256_DID
        );
        let sk = p256::ecdsa::SigningKey::from_slice(&hex(P256_SECRET)).unwrap();
        assert_eq!(
            sk.verifying_key().to_sec1_point(false).as_bytes(),
            &expected[..]
        );
        use p256::ecdsa::signature::Signer as _;
        let sig: p256::ecdsa::Signature = sk.sign(INPUT);
        assert_eq!(key.verify("ES256", INPUT, &sig.to_bytes()), Ok(()));
    }

    /// Keys generated by the `did-key` crate (its own base58 and
    /// multicodec code) resolve to the same keys here.
    #[test]
    fn agrees_with_did_key_crate() {
        use did_key::{
            Ed25519KeyPair, Fingerprint as _, KeyMaterial as _, P256KeyPair, Secp256k1KeyPair,
            generate,
        };
        for i in 0..6 {
            let seed = bytes("did-key seed", i, 32);

            let pair = generate::<Ed25519KeyPair>(Some(&seed));
            let did = format!("did:key:{}", pair.fingerprint());
            let key = resolve(&did).unwrap();
            let secret: [u8; 32] = pair.private_key_bytes()[..32].try_into().unwrap();
            let sk = ed25519_dalek::SigningKey::from_bytes(&secret);
            assert_eq!(
                sk.verifying_key().as_bytes().to_vec(),
                pair.public_key_bytes()
            );
            use ed25519_dalek::Signer as _;
            assert_eq!(
                key.verify("EdDSA", INPUT, &sk.sign(INPUT).to_bytes()),
                Ok(())
            );

            let pair = generate::<Secp256k1KeyPair>(Some(&seed));
            let did = format!("did:key:{}", pair.fingerprint());
            let Key::Secp256k1(point) = resolve(&did).unwrap().key else {
                panic!("secp256k1 expected")
            };
            // libsecp256k1's serialize() is the uncompressed form.
            assert_eq!(point.to_uncompressed().to_vec(), pair.public_key_bytes());

            let pair = generate::<P256KeyPair>(Some(&seed));
            let did = format!("did:key:{}", pair.fingerprint());
            let Key::P256(point) = resolve(&did).unwrap().key else {
                panic!("P-256 expected")
            };
            let theirs = p256::ecdsa::VerifyingKey::from_sec1_bytes(&pair.public_key_bytes())
                .unwrap()
                .to_sec1_point(false);
            assert_eq!(&point.to_uncompressed()[..], theirs.as_bytes());
        }
    }

    // --- signatures -------------------------------------------------------

    fn k256_key(i: u64) -> k256::ecdsa::SigningKey {
        k256::ecdsa::SigningKey::from_slice(&bytes("did k256", i, 32)).unwrap()
    }

    fn k256_did(sk: &k256::ecdsa::SigningKey) -> String {
        did_key(
            &[0xe7, 0x01],
            sk.verifying_key().to_sec1_point(true).as_bytes(),
        )
    }

    #[test]
    fn es256k_did_key() {
        for i in 0..4 {
            let sk = k256_key(i);
            let key = resolve(&k256_did(&sk)).unwrap();
            let (sig, id) = sk.sign_prehash_recoverable(&sha256(INPUT));
            let sig = sig.to_bytes().to_vec();
            assert_eq!(key.verify("ES256K", INPUT, &sig), Ok(()));
            let mut tampered = INPUT.to_vec();
            tampered[5] ^= 1;
            assert_eq!(
                key.verify("ES256K", &tampered, &sig),
                Err(DidError::BadSignature)
            );
            let mut bad = sig.clone();
            bad[40] ^= 0x10;
            assert_eq!(
                key.verify("ES256K", INPUT, &bad),
                Err(DidError::BadSignature)
            );
            let other = resolve(&k256_did(&k256_key(i + 10))).unwrap();
            assert_eq!(
                other.verify("ES256K", INPUT, &sig),
                Err(DidError::BadSignature)
            );
            let with_v = [&sig[..], &[u8::from(id.is_y_odd())]].concat();
            assert_eq!(
                key.verify("ES256K", INPUT, &with_v),
                Err(DidError::BadSignature)
            );
            for alg in [
                "ES256K-R", "ES256", "EdDSA", "Ed25519", "es256k", "none", "",
            ] {
                assert_eq!(
                    key.verify(alg, INPUT, &sig),
                    Err(DidError::AlgorithmMismatch)
                );
            }
        }
    }

    /// n - s for a low s gives the same signature with high s: refused.
    #[test]
    fn high_s_es256k_is_refused() {
        let sk = k256_key(20);
        let key = resolve(&k256_did(&sk)).unwrap();
        let (sig, id) = sk.sign_prehash_recoverable(&sha256(INPUT));
        let high_s = -*sig.s();
        let high = [&sig.r().to_bytes()[..], &high_s.to_bytes()[..]].concat();
        assert_eq!(key.verify("ES256K", INPUT, &sig.to_bytes()), Ok(()));
        assert_eq!(
            key.verify("ES256K", INPUT, &high),
            Err(DidError::BadSignature)
        );
        // The same through did:pkh (recovery with the flipped id).
        let pkh = pkh_did(&sk, "1");
        let key = resolve(&pkh).unwrap();
        let v = u8::from(!id.is_y_odd());
        assert_eq!(
            key.verify("ES256K-R", INPUT, &[&high[..], &[v]].concat()),
            Err(DidError::BadSignature)
        );
        assert_eq!(
            key.verify("ES256K", INPUT, &high),
            Err(DidError::BadSignature)
        );
    }

    #[test]
    fn ed25519_did_key_signatures() {
        use ed25519_dalek::Signer as _;
        let sk = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let key = resolve(&did_key(&[0xed, 0x01], sk.verifying_key().as_bytes())).unwrap();
        let sig = sk.sign(INPUT).to_bytes();
        assert_eq!(key.verify("EdDSA", INPUT, &sig), Ok(()));
        assert_eq!(
            key.verify("EdDSA", b"other", &sig),
            Err(DidError::BadSignature)
        );
        assert_eq!(
            key.verify("EdDSA", INPUT, &sig[..63]),
            Err(DidError::BadSignature)
        );
        for alg in ["ES256K", "ES256", "ES256K-R", "eddsa", "RS256"] {
            assert_eq!(
                key.verify(alg, INPUT, &sig),
                Err(DidError::AlgorithmMismatch)
            );
        }
    }

    #[test]
    fn es256_did_key_agrees_with_p256_crate() {
        use p256::ecdsa::signature::Signer as _;
        use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
        for k in 0..3 {
            let sk = p256::ecdsa::SigningKey::from_slice(&bytes("did p256", k, 32)).unwrap();
            let vk = *sk.verifying_key();
            let compressed = vk.to_sec1_point(true);
            let key = resolve(&did_key(&[0x80, 0x24], compressed.as_bytes())).unwrap();
            for i in 0..16 {
                let msg = bytes("did p256 msg", k * 100 + i, 10 + i as usize);
                let sig: p256::ecdsa::Signature = sk.sign(&msg);
                let good = sig.to_bytes().to_vec();
                assert_eq!(key.verify("ES256", &msg, &good), Ok(()));
                let mut flipped = good.clone();
                flipped[(i as usize * 9) % 64] ^= 1 << (i % 8);
                let theirs = p256::ecdsa::Signature::from_slice(&flipped)
                    .map(|s| vk.verify_prehash(&sha256(&msg), &s).is_ok())
                    .unwrap_or(false);
                assert_eq!(key.verify("ES256", &msg, &flipped).is_ok(), theirs);
                // High s verifies for P-256, as with JWKS keys.
                let high = [&good[..32], &(-*sig.s()).to_bytes()[..]].concat();
                assert_eq!(key.verify("ES256", &msg, &high), Ok(()));
            }
            let sig: p256::ecdsa::Signature = sk.sign(INPUT);
            for alg in ["ES256K", "ES384", "EdDSA"] {
                assert_eq!(
                    key.verify(alg, INPUT, &sig.to_bytes()),
                    Err(DidError::AlgorithmMismatch)
                );
            }
        }
    }

    #[test]
    fn p256_plain_key_encodings() {
        let sk = p256::ecdsa::SigningKey::from_slice(&hex(P256_SECRET)).unwrap();
        let c = sk.verifying_key().to_sec1_point(true);
        let u = sk.verifying_key().to_sec1_point(false);
        let from_c = P256PlainKey::from_sec1(c.as_bytes()).unwrap();
        let from_u = P256PlainKey::from_sec1(u.as_bytes()).unwrap();
        assert_eq!(from_c.to_uncompressed(), from_u.to_uncompressed());
        let mut off = u.as_bytes().to_vec();
        off[64] ^= 1;
        assert!(P256PlainKey::from_sec1(&off).is_none());
        assert!(P256PlainKey::from_sec1(&c.as_bytes()[..32]).is_none());
        assert!(P256PlainKey::from_sec1(&[&[2u8][..], &[0xff; 32]].concat()).is_none());
        assert!(P256PlainKey::from_sec1(&[]).is_none());
    }

    // --- did:pkh ----------------------------------------------------------

    fn keccak(data: &[u8]) -> [u8; 32] {
        sha3::Keccak256::digest(data).into()
    }

    fn address(sk: &k256::ecdsa::SigningKey) -> [u8; 20] {
        let point = sk.verifying_key().to_sec1_point(false);
        keccak(&point.as_bytes()[1..])[12..].try_into().unwrap()
    }

    fn pkh_did(sk: &k256::ecdsa::SigningKey, chain: &str) -> String {
        format!("did:pkh:eip155:{chain}:0x{}", to_hex(&address(sk)))
    }

    /// A well-known Ethereum test account (the web3.js documentation's
    /// example key) and its EIP-55 address.
    #[test]
    fn well_known_ethereum_account() {
        let sk = k256::ecdsa::SigningKey::from_slice(&hex(
            "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318",
        ))
        .unwrap();
        assert_eq!(
            to_hex(&address(&sk)),
            "2c7536E3605D9C16a7a3D7b1898e529396a65c23".to_ascii_lowercase()
        );
        // Our own derivation from a recovered key agrees.
        let (sig, id) = sk.sign_prehash_recoverable(&sha256(INPUT));
        let recovered =
            Secp256k1Key::recover_prehash(&sha256(INPUT), &sig.to_bytes(), u8::from(id.is_y_odd()))
                .unwrap();
        assert_eq!(ethereum_address(&recovered), address(&sk));
        let key = resolve("did:pkh:eip155:1:0x2c7536E3605D9C16a7a3D7b1898e529396a65c23").unwrap();
        let rsv = [&sig.to_bytes()[..], &[u8::from(id.is_y_odd()) + 27]].concat();
        assert_eq!(key.verify("ES256K-R", INPUT, &rsv), Ok(()));
    }

    /// ES256K-R from a fixed key: a deterministic (RFC 6979) vector.
    #[test]
    fn es256k_r_did_pkh() {
        let sk = k256::ecdsa::SigningKey::from_slice(&[0x11; 32]).unwrap();
        let (sig, id) = sk.sign_prehash_recoverable(&sha256(INPUT));
        let rs = sig.to_bytes().to_vec();
        let v = u8::from(id.is_y_odd());
        let lower = pkh_did(&sk, "1");
        let upper = lower.replace(
            &to_hex(&address(&sk)),
            &to_hex(&address(&sk)).to_uppercase(),
        );
        for did in [
            lower.clone(),
            upper,
            pkh_did(&sk, "137"),
            pkh_did(&sk, "11155111"),
        ] {
            let key = resolve(&did).unwrap();
            for v_byte in [v, v + 27] {
                let rsv = [&rs[..], &[v_byte]].concat();
                assert_eq!(
                    key.verify("ES256K-R", INPUT, &rsv),
                    Ok(()),
                    "{did} v={v_byte}"
                );
            }
            // Wrong recovery id: another key, another address.
            for v_byte in [v ^ 1, (v ^ 1) + 27] {
                let rsv = [&rs[..], &[v_byte]].concat();
                assert_eq!(
                    key.verify("ES256K-R", INPUT, &rsv),
                    Err(DidError::BadSignature)
                );
            }
            for v_byte in [2, 3, 26, 29, 255] {
                let rsv = [&rs[..], &[v_byte]].concat();
                assert_eq!(
                    key.verify("ES256K-R", INPUT, &rsv),
                    Err(DidError::BadSignature)
                );
            }
            // ES256K with 64 bytes: both ids are tried.
            assert_eq!(key.verify("ES256K", INPUT, &rs), Ok(()));
            // Lengths.
            assert_eq!(
                key.verify("ES256K-R", INPUT, &rs),
                Err(DidError::BadSignature)
            );
            let rsv = [&rs[..], &[v]].concat();
            assert_eq!(
                key.verify("ES256K", INPUT, &rsv),
                Err(DidError::BadSignature)
            );
            assert_eq!(
                key.verify("ES256K-R", INPUT, &[]),
                Err(DidError::BadSignature)
            );
            // Tampered payload and signature.
            let mut tampered = INPUT.to_vec();
            tampered[0] ^= 2;
            assert_eq!(
                key.verify("ES256K-R", &tampered, &rsv),
                Err(DidError::BadSignature)
            );
            assert_eq!(
                key.verify("ES256K", &tampered, &rs),
                Err(DidError::BadSignature)
            );
            let mut bad = rsv.clone();
            bad[10] ^= 1;
            assert_eq!(
                key.verify("ES256K-R", INPUT, &bad),
                Err(DidError::BadSignature)
            );
            for alg in ["EdDSA", "ES256", "ES256K-r", "RS256", "Ed25519"] {
                assert_eq!(
                    key.verify(alg, INPUT, &rsv),
                    Err(DidError::AlgorithmMismatch)
                );
            }
        }
        // Another account's signature does not match this address.
        let other = k256_key(3);
        let key = resolve(&lower).unwrap();
        let (sig, id) = other.sign_prehash_recoverable(&sha256(INPUT));
        let rsv = [&sig.to_bytes()[..], &[u8::from(id.is_y_odd())]].concat();
        assert_eq!(
            key.verify("ES256K-R", INPUT, &rsv),
            Err(DidError::BadSignature)
        );
        assert_eq!(
            key.verify("ES256K", INPUT, &sig.to_bytes()),
            Err(DidError::BadSignature)
        );
        // And a did:key secp256k1 DID does not take ES256K-R.
        let key = resolve(&k256_did(&sk)).unwrap();
        assert_eq!(
            key.verify("ES256K-R", INPUT, &[&rs[..], &[v]].concat()),
            Err(DidError::AlgorithmMismatch)
        );
    }

    // --- refusals ---------------------------------------------------------

    #[test]
    fn unsupported_methods_and_namespaces() {
        for did in [
            "did:web:example.com",
            "did:ethr:0x2c7536E3605D9C16a7a3D7b1898e529396a65c23",
            "did:ion:EiClkZMDxPKqC9c-umQfTkR8vvZ9JPhl_xLDI9Nfk38w5w",
            "did:peer:0z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
            "did:jwk:eyJrdHkiOiJPS1AifQ",
            "did:example:123",
            "did:pkh:solana:4sGjMW1sUnHzSxGspuhpqLDx6wiyjNtZ:CKg5d12Jhpej1JqtmxLJgaFqqeYjxgPqToJ4LBdvG9Ev",
            "did:pkh:bip122:000000000019d6689c085ae165831e93:128Lkh3S7CkDTBZ8W7BbpsN3YYizJMp8p6",
            "did:pkh:cosmos:cosmoshub-3:cosmos1t2uflqwqe0fsj0shcfkrvpukewcw40yjj6hdc0",
        ] {
            assert_eq!(
                resolve(did).unwrap_err(),
                DidError::UnsupportedMethod,
                "{did}"
            );
        }
    }

    #[test]
    fn malformed_did_key() {
        let good = SECP256K1_DID;
        assert!(resolve(good).is_ok());
        let body = &good["did:key:z".len()..];
        let mut cases = vec![
            String::new(),
            "did".into(),
            "did:".into(),
            "did:key".into(),
            "did:key:".into(),
            "did:key:z".into(),
            "DID:key:".to_string() + &good[8..],
            "did:KEY:".to_string() + &good[8..],
            "did::z123".into(),
            format!("did:key:{body}"),   // no multibase prefix
            format!("did:key:Z{body}"),  // wrong multibase prefix
            format!("did:key:f{body}"),  // base16 prefix
            format!("did:key:u{body}"),  // base64url prefix
            format!("did:key:z{body}0"), // '0' is not base58
            format!("did:key:zO{body}"), // nor 'O'
            format!("did:key:z{body}I"), // nor 'I'
            format!("did:key:z{body}l"), // nor 'l'
            format!("did:key:z{body}+"),
            format!("did:key:z{body}#key-1"),
            format!("did:key:z{body}/path"),
            format!("did:key:z{} ", body),
            format!("did:key:1:z{body}"),
        ];
        // Cutting or repeating base58 text changes every byte, so these may
        // also read as another key type: any refusal will do.
        for did in [
            format!("did:key:z{}", &body[..body.len() - 1]),
            format!("did:key:z{}", &body[1..]),
            format!("did:key:z{body}{body}"),
            format!("did:key:z{body}2"),
        ] {
            assert!(resolve(&did).is_err(), "{did}");
        }
        // Trailing and missing key bytes, with valid base58.
        let k = hex(SECP256K1_PUB);
        cases.push(did_key(&[0xe7, 0x01], &[&k[..], &[0]].concat()));
        cases.push(did_key(&[0xe7, 0x01], &k[..32]));
        cases.push(did_key(&[0xe7, 0x01], &[]));
        // A cut varint runs into the key bytes and names another codec.
        assert!(resolve(&did_key(&[0xe7], &k)).is_err());
        let e = hex(ED25519_PUB);
        cases.push(did_key(&[0xed, 0x01], &[&e[..], &[1]].concat()));
        cases.push(did_key(&[0xed, 0x01], &e[..31]));
        // Non-minimal varint for 0xed.
        cases.push(did_key(&[0xed, 0x81, 0x00], &e));
        // A secp256k1 x with no point; a prefix byte that is not 02/03.
        let no_point = (1u8..60)
            .map(|x| {
                let mut b = vec![2u8; 1];
                b.extend([0u8; 31]);
                b.push(x);
                b
            })
            .find(|b| Secp256k1Key::from_compressed(b).is_none())
            .unwrap();
        cases.push(did_key(&[0xe7, 0x01], &no_point));
        cases.push(did_key(&[0xe7, 0x01], &[&[4u8][..], &k[1..]].concat()));
        // x >= p.
        cases.push(did_key(&[0xe7, 0x01], &[&[2u8][..], &[0xff; 32]].concat()));
        cases.push(did_key(&[0x80, 0x24], &[&[2u8][..], &[0xff; 32]].concat()));
        // P-256 uncompressed is not a did:key form.
        let p = [&[4u8][..], &hex(P256_X), &hex(P256_Y)].concat();
        cases.push(did_key(&[0x80, 0x24], &p));
        // Ed25519 weak key (identity).
        let mut identity = [0u8; 32];
        identity[0] = 1;
        cases.push(did_key(&[0xed, 0x01], &identity));
        // Too long to bother decoding.
        cases.push(format!("did:key:z{}", "2".repeat(129)));
        for did in &cases {
            assert_eq!(resolve(did).unwrap_err(), DidError::Malformed, "{did:?}");
        }
    }

    #[test]
    fn other_key_types_are_unsupported() {
        let e = hex(ED25519_PUB);
        // X25519 (0xec), BLS12-381 G2 (0xeb), P-384 (0x1201), RSA (0x1205).
        for codec in [
            &[0xec, 0x01][..],
            &[0xeb, 0x01],
            &[0x81, 0x24],
            &[0x85, 0x24],
            &[0x00],
        ] {
            assert_eq!(
                resolve(&did_key(codec, &e)).unwrap_err(),
                DidError::UnsupportedKeyType,
                "{codec:?}"
            );
        }
        // The published P-384 vector.
        assert_eq!(
            resolve(
                "did:key:z82Lm1MpAkeJcix9K8TMiLd5NMAhnwkjjCBeWHXyu3U4oT2MVJJKXkcVBgjGhnLBn2Kaau9"
            )
            .unwrap_err(),
            DidError::UnsupportedKeyType
        );
    }

    #[test]
    fn pkh_aliases_have_one_spelling() {
        let lower = "did:pkh:eip155:1:0x2c7536e3605d9c16a7a3d7b1898e529396a65c23";
        for alias in [
            lower,
            "did:pkh:eip155:1:0x2c7536E3605D9C16a7a3D7b1898e529396a65c23",
            "did:pkh:eip155:01:0x2C7536E3605D9C16A7A3D7B1898E529396A65C23",
            "did:pkh:eip155:0001:0x2c7536e3605d9c16a7a3d7b1898e529396a65c23",
        ] {
            assert_eq!(canonical(alias), lower, "{alias}");
            assert!(resolve(&canonical(alias)).is_ok());
        }
        // The chain stays part of the identity.
        assert_eq!(
            canonical("did:pkh:eip155:137:0x2C7536E3605D9C16a7a3D7b1898e529396a65c23"),
            "did:pkh:eip155:137:0x2c7536e3605d9c16a7a3d7b1898e529396a65c23"
        );
        assert_eq!(
            canonical("did:pkh:eip155:00:0x2c7536e3605d9c16a7a3d7b1898e529396a65c23"),
            "did:pkh:eip155:0:0x2c7536e3605d9c16a7a3d7b1898e529396a65c23"
        );
        // did:key and malformed DIDs are left as they are.
        for same in [
            "did:key:z6MkkhEFZ6GwXiidbcqCtaHGMGConNj3wrh4ut8WQbLPuspF",
            "did:pkh:eip155:1:0X2c7536e3605d9c16a7a3d7b1898e529396a65c23",
            "did:pkh:eip155:1:0x2c75",
            "did:pkh:eip155::0x2c7536e3605d9c16a7a3d7b1898e529396a65c23",
            "did:pkh:eip155:x1:0x2c7536e3605d9c16a7a3d7b1898e529396a65c23",
            "did:pkh:EIP155:1:0x2C7536E3605D9C16a7a3D7b1898e529396a65c23",
        ] {
            assert_eq!(canonical(same), same);
        }
    }

    #[test]
    fn malformed_did_pkh() {
        let a = "2c7536e3605d9c16a7a3d7b1898e529396a65c23";
        assert!(resolve(&format!("did:pkh:eip155:1:0x{a}")).is_ok());
        for did in [
            "did:pkh:".to_string(),
            "did:pkh:eip155".into(),
            "did:pkh:eip155:1".into(),
            format!("did:pkh:eip155:0x{a}"),
            format!("did:pkh:eip155::0x{a}"),
            format!("did:pkh:eip155:1:0x{a}:extra"),
            format!("did:pkh:eip155:one:0x{a}"),
            format!("did:pkh:eip155:-1:0x{a}"),
            format!("did:pkh:eip155:{}:0x{a}", "1".repeat(33)),
            format!("did:pkh:eip155:1:{a}"),
            format!("did:pkh:eip155:1:0X{a}"),
            format!("did:pkh:eip155:1:0x{}", &a[1..]),
            format!("did:pkh:eip155:1:0x{a}0"),
            format!("did:pkh:eip155:1:0x{}g", &a[1..]),
            format!("did:pkh:eip155:1:0x{a}#blockchainAccountId"),
            format!("did:pkh:EIP155:1:0x{a}"),
            format!("did:pkh:ei:1:0x{a}"),
            format!("did:pkh:eip155eip155:1:0x{a}"),
            format!("did:pkh:eip155:1:0x{}", "é".repeat(20)),
        ] {
            assert_eq!(resolve(&did).unwrap_err(), DidError::Malformed, "{did}");
        }
    }

    #[test]
    fn base58_and_varint() {
        assert_eq!(base58_decode(""), Some(vec![]));
        assert_eq!(base58_decode("1"), Some(vec![0]));
        assert_eq!(base58_decode("11"), Some(vec![0, 0]));
        assert_eq!(base58_decode("2"), Some(vec![1]));
        assert_eq!(base58_decode("z"), Some(vec![57]));
        assert_eq!(base58_decode("21"), Some(vec![58]));
        assert_eq!(base58_decode("5Q"), Some(vec![255]));
        assert_eq!(base58_decode("LUw"), Some(vec![1, 0, 0])); // 65536
        assert_eq!(base58_decode("0"), None);
        assert_eq!(base58_decode("é"), None);
        for i in 0..32 {
            let mut data = bytes("b58", i, (i % 40) as usize);
            if i % 3 == 0 {
                data.insert(0, 0);
            }
            assert_eq!(base58_decode(&base58_encode(&data)), Some(data));
        }
        assert_eq!(read_varint(&[0xed, 0x01, 9]), Some((0xed, &[9u8][..])));
        assert_eq!(read_varint(&[0x80, 0x24]), Some((0x1200, &[][..])));
        assert_eq!(read_varint(&[0x05]), Some((5, &[][..])));
        assert_eq!(read_varint(&[0x00]), Some((0, &[][..])));
        assert_eq!(read_varint(&[]), None);
        assert_eq!(read_varint(&[0x80]), None);
        assert_eq!(read_varint(&[0x80, 0x00]), None);
        assert_eq!(read_varint(&[0xff; 12]), None);
    }

    #[test]
    fn error_messages_are_short_and_fixed() {
        for e in [
            DidError::UnsupportedMethod,
            DidError::Malformed,
            DidError::UnsupportedKeyType,
            DidError::AlgorithmMismatch,
            DidError::BadSignature,
        ] {
            assert!(!e.to_string().is_empty() && e.to_string().len() < 48);
        }
        assert_eq!(
            format!("{:?}", resolve(ED25519_DID).unwrap()),
            "DidKey::Ed25519"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(256))]

        /// Arbitrary strings never panic, nor do near-valid ones.
        #[test]
        fn resolve_never_panics(
            s in ".{0,120}",
            tail in "[1-9A-HJ-NP-Za-km-z]{0,70}",
            hexish in "[0-9a-fA-FxX:]{0,60}",
        ) {
            let _ = resolve(&s);
            let _ = resolve(&format!("did:key:z{tail}"));
            let _ = resolve(&format!("did:key:{s}"));
            let _ = resolve(&format!("did:pkh:eip155:{hexish}"));
            let _ = resolve(&format!("did:pkh:{s}"));
        }

        /// Arbitrary signatures and inputs never panic and never verify.
        #[test]
        fn verify_never_panics(
            signature in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..100),
            input in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            alg in proptest::sample::select(vec![
                "EdDSA", "Ed25519", "ES256K", "ES256K-R", "ES256", "RS256", "none", "",
            ]),
        ) {
            for key in sample_keys() {
                proptest::prop_assert!(key.verify(alg, &input, &signature).is_err());
            }
        }
    }

    fn sample_keys() -> &'static [DidKey] {
        use std::sync::OnceLock;
        static KEYS: OnceLock<Vec<DidKey>> = OnceLock::new();
        KEYS.get_or_init(|| {
            [
                ED25519_DID,
                SECP256K1_DID,
                P256_DID,
                "did:pkh:eip155:1:0x2c7536e3605d9c16a7a3d7b1898e529396a65c23",
            ]
            .iter()
            .map(|d| resolve(d).unwrap())
            .collect()
        })
    }

    /// Native timing of the DID paths. Run with
    /// `cargo test --release -p attach-filter did_timing -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn did_timing() {
        use std::time::Instant;
        let rounds = 1000u32;
        let run = |name: &str, did: &str, alg: &str, sig: &[u8]| {
            let start = Instant::now();
            for _ in 0..rounds {
                let key = resolve(std::hint::black_box(did)).unwrap();
                assert_eq!(key.verify(alg, INPUT, std::hint::black_box(sig)), Ok(()));
            }
            println!(
                "{name}: {:.1} us per resolve + verify",
                start.elapsed().as_secs_f64() * 1e6 / f64::from(rounds)
            );
        };
        let sk = k256_key(1);
        let (sig, id) = sk.sign_prehash_recoverable(&sha256(INPUT));
        let rs = sig.to_bytes().to_vec();
        run("did:key secp256k1 ES256K", &k256_did(&sk), "ES256K", &rs);
        let rsv = [&rs[..], &[u8::from(id.is_y_odd())]].concat();
        run("did:pkh ES256K-R", &pkh_did(&sk, "1"), "ES256K-R", &rsv);
        run(
            "did:pkh ES256K (both ids)",
            &pkh_did(&sk, "1"),
            "ES256K",
            &rs,
        );
        use p256::ecdsa::signature::Signer as _;
        let psk = p256::ecdsa::SigningKey::from_slice(&hex(P256_SECRET)).unwrap();
        let psig: p256::ecdsa::Signature = psk.sign(INPUT);
        run("did:key P-256 ES256", P256_DID, "ES256", &psig.to_bytes());
        let esk = ed25519_dalek::SigningKey::from_bytes(&[0u8; 32]);
        run(
            "did:key Ed25519 EdDSA",
            ED25519_DID,
            "EdDSA",
            &esk.sign(INPUT).to_bytes(),
        );
    }
}
