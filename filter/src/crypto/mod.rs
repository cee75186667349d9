//! Public-key signature verification for JWS (RFC 7515 / RFC 7518 / RFC 8037).
//!
//! The filter holds only public keys taken from a JWKS; every signature,
//! signing input and key member it sees may be hostile, so nothing here
//! panics on input: bad lengths and out-of-range values become
//! [`SignatureError`]s.
//!
//! One type, [`VerifyingKey`], covers the four key families. Its
//! [`VerifyingKey::verify`] refuses an `alg` of another family before doing
//! any work, which is what stops alg-confusion attacks (for example an
//! `ES256` token checked against an RSA key).

pub mod ecdsa;
pub mod eddsa;
pub mod rsa;
pub mod secp256k1;

use crate::alg::{Alg, HashAlg, KeyFamily};
use std::fmt;

pub use self::ecdsa::{P256Key, P256PlainKey, P384Key};
pub use self::eddsa::Ed25519Key;
pub use self::rsa::RsaKey;
pub use self::secp256k1::Secp256k1Key;

/// Why a signature was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// The token's `alg` needs another kind of key than the one selected.
    WrongKeyType,
    /// The signature has the wrong length for the key or algorithm.
    Malformed,
    /// The signature is well formed but does not verify.
    Invalid,
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SignatureError::WrongKeyType => "algorithm does not match the key type",
            SignatureError::Malformed => "malformed signature",
            SignatureError::Invalid => "invalid signature",
        })
    }
}

impl std::error::Error for SignatureError {}

/// A public key ready to verify JWS signatures.
///
/// EC keys carry precomputed tables (tens of kilobytes), so this type is
/// deliberately not `Clone`: share it by reference or behind an `Rc`/`Arc`.
pub enum VerifyingKey {
    Rsa(RsaKey),
    P256(P256Key),
    P384(P384Key),
    Ed25519(Ed25519Key),
}

impl VerifyingKey {
    pub fn family(&self) -> KeyFamily {
        match self {
            VerifyingKey::Rsa(_) => KeyFamily::Rsa,
            VerifyingKey::P256(_) => KeyFamily::P256,
            VerifyingKey::P384(_) => KeyFamily::P384,
            VerifyingKey::Ed25519(_) => KeyFamily::Ed25519,
        }
    }

    /// Verifies a JWS signature (raw bytes after base64url decoding; ECDSA in
    /// JOSE `r || s` form, not DER) over `signing_input`
    /// (`BASE64URL(header) "." BASE64URL(payload)`).
    ///
    /// Refuses with [`SignatureError::WrongKeyType`] when
    /// `alg.key_family() != self.family()`: this is the alg-confusion guard.
    pub fn verify(
        &self,
        alg: Alg,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        if alg.key_family() != self.family() {
            return Err(SignatureError::WrongKeyType);
        }
        match self {
            VerifyingKey::Rsa(key) => key.verify(alg, signing_input, signature),
            // The family check leaves ES256 (SHA-256) for P-256 and ES384
            // (SHA-384) for P-384: digest and curve order have equal sizes.
            VerifyingKey::P256(key) => {
                key.verify_prehash(&digest(alg.hash(), signing_input), signature)
            }
            VerifyingKey::P384(key) => {
                key.verify_prehash(&digest(alg.hash(), signing_input), signature)
            }
            // EdDSA hashes the message itself (SHA-512 inside Ed25519).
            VerifyingKey::Ed25519(key) => key.verify(signing_input, signature),
        }
    }
}

impl fmt::Debug for VerifyingKey {
    /// Names the family only: the tables behind EC keys are large and of no
    /// use in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyingKey::Rsa(key) => write!(f, "VerifyingKey::Rsa({} bits)", key.bits()),
            VerifyingKey::P256(_) => f.write_str("VerifyingKey::P256"),
            VerifyingKey::P384(_) => f.write_str("VerifyingKey::P384"),
            VerifyingKey::Ed25519(_) => f.write_str("VerifyingKey::Ed25519"),
        }
    }
}

impl From<RsaKey> for VerifyingKey {
    fn from(key: RsaKey) -> Self {
        VerifyingKey::Rsa(key)
    }
}

impl From<P256Key> for VerifyingKey {
    fn from(key: P256Key) -> Self {
        VerifyingKey::P256(key)
    }
}

impl From<P384Key> for VerifyingKey {
    fn from(key: P384Key) -> Self {
        VerifyingKey::P384(key)
    }
}

impl From<Ed25519Key> for VerifyingKey {
    fn from(key: Ed25519Key) -> Self {
        VerifyingKey::Ed25519(key)
    }
}

/// A message digest, on the stack (at most 64 bytes).
pub(crate) struct Digest {
    bytes: [u8; 64],
    len: usize,
}

impl Digest {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&[])
    }
}

impl std::ops::Deref for Digest {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

pub(crate) fn digest(hash: HashAlg, message: &[u8]) -> Digest {
    digest_parts(hash, &[message])
}

/// The digest of the concatenation of `parts`, without copying them into
/// one buffer.
pub(crate) fn digest_parts(hash: HashAlg, parts: &[&[u8]]) -> Digest {
    fn run<D: sha2::Digest>(parts: &[&[u8]]) -> Digest {
        let mut hasher = D::new();
        for part in parts {
            hasher.update(part);
        }
        let out = hasher.finalize();
        let mut bytes = [0u8; 64];
        let len = out.len().min(64);
        if let (Some(dst), Some(src)) = (bytes.get_mut(..len), out.get(..len)) {
            dst.copy_from_slice(src);
        }
        Digest { bytes, len }
    }
    match hash {
        HashAlg::Sha256 => run::<sha2::Sha256>(parts),
        HashAlg::Sha384 => run::<sha2::Sha384>(parts),
        HashAlg::Sha512 => run::<sha2::Sha512>(parts),
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    /// Deterministic pseudo-random bytes for tests: SHA-256 in counter mode
    /// over a label, so failures reproduce exactly.
    pub fn bytes(label: &str, index: u64, len: usize) -> Vec<u8> {
        use sha2::Digest as _;
        let mut out = Vec::with_capacity(len + 32);
        let mut block = 0u64;
        while out.len() < len {
            let mut h = sha2::Sha256::new();
            h.update(label.as_bytes());
            h.update(index.to_be_bytes());
            h.update(block.to_be_bytes());
            out.extend_from_slice(&h.finalize());
            block += 1;
        }
        out.truncate(len);
        out
    }

    /// A seeded byte stream for APIs that want a random number generator
    /// (PSS salts); reproducible, and not for anything but tests.
    pub struct TestRng {
        seed: Vec<u8>,
        counter: u64,
    }

    impl TestRng {
        pub fn new(seed: &[u8]) -> Self {
            TestRng {
                seed: seed.to_vec(),
                counter: 0,
            }
        }
    }

    impl rsa::rand_core::TryRng for TestRng {
        type Error = std::convert::Infallible;

        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            let mut b = [0u8; 4];
            self.try_fill_bytes(&mut b)?;
            Ok(u32::from_le_bytes(b))
        }

        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            let mut b = [0u8; 8];
            self.try_fill_bytes(&mut b)?;
            Ok(u64::from_le_bytes(b))
        }

        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            for chunk in dst.chunks_mut(32) {
                let label = String::from_utf8_lossy(&self.seed).into_owned();
                let block = bytes(&label, self.counter, chunk.len());
                chunk.copy_from_slice(&block);
                self.counter += 1;
            }
            Ok(())
        }
    }

    impl rsa::rand_core::TryCryptoRng for TestRng {}

    pub fn b64url(s: &str) -> Vec<u8> {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .expect("test vector is base64url")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_lengths() {
        assert_eq!(digest(HashAlg::Sha256, b"abc").len(), 32);
        assert_eq!(digest(HashAlg::Sha384, b"abc").len(), 48);
        assert_eq!(digest(HashAlg::Sha512, b"abc").len(), 64);
        // FIPS 180-2 "abc" vector, first bytes.
        assert_eq!(
            &digest(HashAlg::Sha256, b"abc")[..4],
            &[0xba, 0x78, 0x16, 0xbf]
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(64))]

        /// Arbitrary signatures and inputs never panic and never verify,
        /// whatever the key family and alg.
        #[test]
        fn hostile_signatures_are_refused(
            signature in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            input in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            alg in proptest::sample::select(Alg::ALL.to_vec()),
        ) {
            for key in sample_keys() {
                let result = key.verify(alg, &input, &signature);
                proptest::prop_assert!(result.is_err());
                if alg.key_family() != key.family() {
                    proptest::prop_assert_eq!(result, Err(SignatureError::WrongKeyType));
                }
            }
        }
    }

    /// One key of each family (the RFC 7515 / RFC 8037 example keys),
    /// built once.
    fn sample_keys() -> &'static [VerifyingKey] {
        use std::sync::OnceLock;
        static KEYS: OnceLock<Vec<VerifyingKey>> = OnceLock::new();
        KEYS.get_or_init(|| {
            use super::test_util::b64url;
            let p384 = p384::ProjectivePoint::GENERATOR * p384::Scalar::from(7u32);
            let p384 =
                p384::elliptic_curve::sec1::ToSec1Point::to_sec1_point(&p384.to_affine(), false);
            let raw = p384.as_bytes();
            vec![
                VerifyingKey::Rsa(
                    RsaKey::from_components(&b64url(rsa::tests::N), &b64url(rsa::tests::E))
                        .expect("valid"),
                ),
                VerifyingKey::P256(
                    P256Key::from_coordinates(
                        &b64url("f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU"),
                        &b64url("x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"),
                    )
                    .expect("valid"),
                ),
                VerifyingKey::P384(
                    P384Key::from_coordinates(&raw[1..49], &raw[49..97]).expect("valid"),
                ),
                VerifyingKey::Ed25519(
                    Ed25519Key::from_bytes(&b64url("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"))
                        .expect("valid"),
                ),
            ]
        })
    }

    #[test]
    fn error_messages_are_short() {
        for e in [
            SignatureError::WrongKeyType,
            SignatureError::Malformed,
            SignatureError::Invalid,
        ] {
            assert!(e.to_string().len() < 40);
        }
    }
}
