//! EdDSA (Ed25519) verification, RFC 8037, via `ed25519-dalek`, the
//! fastest of the pure-Rust options measured inside V8.
//!
//! Keys that are not a valid curve point, or are of small order ("weak"
//! keys, for which many messages would verify), are refused when the key is
//! built. Verification is RFC 8032's cofactorless check with `S` required
//! to be canonical (`S < L`), which ed25519-dalek enforces; it skips the
//! extra re-encoding of `R` that `verify_strict` does, since a JWT gateway
//! has no use for signature uniqueness.

use super::SignatureError;
use ed25519_dalek::Verifier as _;

/// An Ed25519 public key for the `EdDSA` algorithm.
pub struct Ed25519Key(ed25519_dalek::VerifyingKey);

impl Ed25519Key {
    /// Builds the key from the JWK `x` member (32 bytes, RFC 8037).
    /// `None` for any other length, an invalid encoding or a weak key.
    pub fn from_bytes(x: &[u8]) -> Option<Self> {
        let bytes: &[u8; 32] = x.try_into().ok()?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(bytes).ok()?;
        if key.is_weak() {
            return None;
        }
        Some(Ed25519Key(key))
    }

    /// Verifies a 64-byte `R || S` signature over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
        let signature = ed25519_dalek::Signature::from_slice(signature)
            .map_err(|_| SignatureError::Malformed)?;
        self.0
            .verify(message, &signature)
            .map_err(|_| SignatureError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alg::Alg;
    use crate::crypto::VerifyingKey;
    use crate::crypto::test_util::{b64url, bytes};
    use ed25519_dalek::Signer as _;

    // RFC 8037 Appendix A: example key and EdDSA JWS.
    const X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    const INPUT: &str = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
    const SIG: &str =
        "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

    fn signing_key(i: u64) -> ed25519_dalek::SigningKey {
        let seed: [u8; 32] = bytes("ed25519 key", i, 32).try_into().expect("32 bytes");
        ed25519_dalek::SigningKey::from_bytes(&seed)
    }

    fn ours(sk: &ed25519_dalek::SigningKey) -> VerifyingKey {
        VerifyingKey::Ed25519(
            Ed25519Key::from_bytes(sk.verifying_key().as_bytes()).expect("valid key"),
        )
    }

    #[test]
    fn rfc8037_example() {
        let key = VerifyingKey::Ed25519(Ed25519Key::from_bytes(&b64url(X)).expect("valid"));
        let sig = b64url(SIG);
        assert_eq!(key.verify(Alg::EdDSA, INPUT.as_bytes(), &sig), Ok(()));
        let mut input = INPUT.as_bytes().to_vec();
        input[3] ^= 1;
        assert_eq!(
            key.verify(Alg::EdDSA, &input, &sig),
            Err(SignatureError::Invalid)
        );
        for alg in [Alg::RS256, Alg::PS256, Alg::ES256, Alg::ES384] {
            assert_eq!(
                key.verify(alg, INPUT.as_bytes(), &sig),
                Err(SignatureError::WrongKeyType)
            );
        }
    }

    #[test]
    fn generated_signatures() {
        for k in 0..4 {
            let sk = signing_key(k);
            let key = ours(&sk);
            let other = ours(&signing_key(k + 100));
            for i in 0..16 {
                let msg = bytes("ed25519 msg", k * 100 + i, i as usize * 9);
                let sig = sk.sign(&msg).to_bytes();
                assert_eq!(key.verify(Alg::EdDSA, &msg, &sig), Ok(()));
                assert_eq!(
                    other.verify(Alg::EdDSA, &msg, &sig),
                    Err(SignatureError::Invalid)
                );
                let mut bad = sig;
                bad[(i as usize * 3) % 64] ^= 0x04;
                assert!(key.verify(Alg::EdDSA, &msg, &bad).is_err());
            }
        }
    }

    #[test]
    fn malformed_and_non_canonical() {
        let sk = signing_key(1);
        let key = ours(&sk);
        let msg = b"edge";
        let sig = sk.sign(msg).to_bytes();
        for len in [0, 32, 63, 65, 128] {
            let mut candidate = sig.to_vec();
            candidate.resize(len, 0);
            assert_eq!(
                key.verify(Alg::EdDSA, msg, &candidate),
                Err(SignatureError::Malformed),
                "len {len}"
            );
        }
        // S + L (non-canonical scalar, same residue) must be refused.
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut s_plus_l = sig;
        let mut carry = 0u16;
        for i in 0..32 {
            let v = u16::from(sig[32 + i]) + u16::from(L[i]) + carry;
            s_plus_l[32 + i] = v as u8;
            carry = v >> 8;
        }
        assert_eq!(carry, 0, "S + L fits in 32 bytes since S < 2^253");
        assert_eq!(
            key.verify(Alg::EdDSA, msg, &s_plus_l),
            Err(SignatureError::Invalid)
        );
        // All-zero and all-ones signatures.
        assert!(key.verify(Alg::EdDSA, msg, &[0u8; 64]).is_err());
        assert!(key.verify(Alg::EdDSA, msg, &[0xffu8; 64]).is_err());
    }

    #[test]
    fn weak_and_invalid_keys_are_refused() {
        // Identity point (y = 1) and the order-2 point (y = -1).
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(Ed25519Key::from_bytes(&identity).is_none());
        let mut minus_one = [0xffu8; 32];
        minus_one[0] = 0xec;
        minus_one[31] = 0x7f;
        assert!(Ed25519Key::from_bytes(&minus_one).is_none());
        assert!(Ed25519Key::from_bytes(&[0u8; 31]).is_none());
        assert!(Ed25519Key::from_bytes(&[0u8; 33]).is_none());
        assert!(Ed25519Key::from_bytes(&b64url(X)).is_some());
    }
}
