//! Ed25519 signing (RFC 8032 section 5.1.6), written on the curve
//! arithmetic so that every multiplication of the base point is the
//! constant-time variable-base one: a signing library's fixed-base table
//! would add some 33 KB to the filter's wasm module, and the filter signs
//! seldom (it reuses what it signed).

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::scalar::{Scalar, clamp_integer};
use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha512};

#[derive(Clone)]
pub(crate) struct Ed25519Signer {
    /// The secret scalar `s` of section 5.1.5, reduced mod L.
    scalar: Scalar,
    /// The second half of the seed's digest, which makes the nonces.
    prefix: [u8; 32],
    public: VerifyingKey,
}

impl Ed25519Signer {
    pub(crate) fn from_seed(seed: &[u8; 32]) -> Self {
        let digest: [u8; 64] = Sha512::digest(seed).into();
        let (lower, upper) = digest.split_at(32);
        let lower: [u8; 32] = lower.try_into().unwrap_or_default();
        let public = VerifyingKey::from(EdwardsPoint::mul_clamped(ED25519_BASEPOINT_POINT, lower));
        Self {
            scalar: Scalar::from_bytes_mod_order(clamp_integer(lower)),
            prefix: upper.try_into().unwrap_or_default(),
            public,
        }
    }

    /// The public key `A`.
    pub(crate) fn public(&self) -> VerifyingKey {
        self.public
    }

    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        let wide = |parts: &[&[u8]]| {
            let mut h = Sha512::new();
            for part in parts {
                h.update(part);
            }
            let digest: [u8; 64] = h.finalize().into();
            Scalar::from_bytes_mod_order_wide(&digest)
        };
        let r = wide(&[&self.prefix, message]);
        let big_r = (ED25519_BASEPOINT_POINT * r).compress().to_bytes();
        let k = wide(&[&big_r, self.public.as_bytes(), message]);
        let s = r + k * self.scalar;
        let mut signature = [0u8; 64];
        let (left, right) = signature.split_at_mut(32);
        left.copy_from_slice(&big_r);
        right.copy_from_slice(s.as_bytes());
        signature
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn signatures_are_rfc_8032_ones() {
        // RFC 8032 section 7.1, TEST 1 (the empty message) and TEST 2.
        let seed = hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
        let signer = Ed25519Signer::from_seed(&seed.try_into().unwrap());
        assert_eq!(
            signer.public.as_bytes().to_vec(),
            hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        );
        assert_eq!(
            signer.sign(b"").to_vec(),
            hex(concat!(
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155",
                "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
            ))
        );
        let seed = hex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb");
        let signer = Ed25519Signer::from_seed(&seed.try_into().unwrap());
        assert_eq!(
            signer.sign(&[0x72]).to_vec(),
            hex(concat!(
                "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da",
                "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
            ))
        );
    }

    #[test]
    fn signatures_agree_with_the_verifier() {
        for seed in 0..20u8 {
            let signer = Ed25519Signer::from_seed(&[seed; 32]);
            let public = VerifyingKey::from_bytes(signer.public.as_bytes()).unwrap();
            for message in [&b""[..], b"m", &[seed; 300]] {
                let sig = ed25519_dalek::Signature::from_bytes(&signer.sign(message));
                assert!(public.verify_strict(message, &sig).is_ok());
                assert!(public.verify_strict(b"other", &sig).is_err());
            }
        }
    }
}
