//! RSA verification for RS256/384/512 (PKCS#1 v1.5) and PS256/384/512
//! (PSS), RFC 7518 §3.3 and §3.5, on top of the `rsa` crate (0.10, whose
//! `crypto-bigint` arithmetic is about three times faster in V8 than 0.9's).
//!
//! Keys below 2048 bits are refused (RFC 7518 requires at least 2048) and
//! so are keys above 8192 bits, which would only make verification slow.
//! The public exponent must be odd and between 3 and 2^33 - 1, which the
//! crate enforces. PSS uses MGF1 with the same hash and a salt as long as
//! the hash, as RFC 7518 §3.5 requires; the signature must be exactly as
//! long as the modulus.

use super::SignatureError;
use crate::alg::Alg;
use rsa::BoxedUint;
use rsa::traits::PublicKeyParts as _;

/// Smallest accepted modulus, in bits.
pub const MIN_BITS: usize = 2048;
/// Largest accepted modulus, in bits.
pub const MAX_BITS: usize = 8192;

/// An RSA public key for the `RS*` and `PS*` algorithms.
pub struct RsaKey {
    key: rsa::PublicKey,
    bits: usize,
}

impl RsaKey {
    /// Builds a key from the big-endian modulus `n` and exponent `e` (the
    /// JWK members after base64url decoding; leading zero bytes allowed).
    /// `None` for a modulus outside 2048..=8192 bits or an unusable
    /// exponent.
    pub fn from_components(n: &[u8], e: &[u8]) -> Option<Self> {
        let n = strip_leading_zeros(n);
        let e = strip_leading_zeros(e);
        // Cheap bounds before any big-integer work: at most 1024 bytes of
        // modulus, at most 5 bytes of exponent (2^33 - 1 is the crate's cap).
        if n.len() < MIN_BITS / 8 || n.len() > MAX_BITS / 8 || e.is_empty() || e.len() > 5 {
            return None;
        }
        let n = BoxedUint::from_be_slice_vartime(n);
        let e = BoxedUint::from_be_slice_vartime(e);
        let key = rsa::PublicKey::new_with_size_limits(n, e, MIN_BITS..=MAX_BITS).ok()?;
        let bits = key.n().bit_width() as usize;
        Some(RsaKey { key, bits })
    }

    /// Size of the modulus in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// Verifies `signature` over `message` for an `RS*` or `PS*` `alg`;
    /// any other `alg` is [`SignatureError::WrongKeyType`].
    pub fn verify(&self, alg: Alg, message: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
        use rsa::sha2::{Sha256, Sha384, Sha512};
        if signature.len() != self.key.size() {
            return Err(SignatureError::Malformed);
        }
        let key = &self.key;
        let result = match alg {
            Alg::RS256 => key.pkcs1v15_verify::<Sha256>(message, signature),
            Alg::RS384 => key.pkcs1v15_verify::<Sha384>(message, signature),
            Alg::RS512 => key.pkcs1v15_verify::<Sha512>(message, signature),
            Alg::PS256 => key.pss_verify::<Sha256>(message, signature),
            Alg::PS384 => key.pss_verify::<Sha384>(message, signature),
            Alg::PS512 => key.pss_verify::<Sha512>(message, signature),
            Alg::ES256 | Alg::ES384 | Alg::EdDSA => return Err(SignatureError::WrongKeyType),
        };
        result.map_err(|_| SignatureError::Invalid)
    }
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes.get(first..).unwrap_or(&[])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::crypto::VerifyingKey;
    use crate::crypto::test_util::{TestRng, b64url, bytes};
    use rsa::sha2::{Sha256, Sha384, Sha512};

    // RFC 7515 Appendix A.2: the example RSA key (published test data).
    pub const N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
    pub const E: &str = "AQAB";
    const D: &str = "Eq5xpGnNCivDflJsRQBXHx1hdR1k6Ulwe2JZD50LpXyWPEAeP88vLNO97IjlA7_GQ5sLKMgvfTeXZx9SE-7YwVol2NXOoAJe46sui395IW_GO-pWJ1O0BkTGoVEn2bKVRUCgu-GjBVaYLU6f3l9kJfFNS3E0QbVdxzubSu3Mkqzjkn439X0M_V51gfpRLI9JYanrC4D4qAdGcopV_0ZHHzQlBjudU2QvXt4ehNYTCBr6XCLQUShb1juUO1ZdiYoFaFQT5Tw8bGUl_x_jTj3ccPDVZFD9pIuhLhBOneufuBiB4cS98l2SR_RQyGWSeWjnczT0QU91p1DhOVRuOopznQ";
    const P: &str = "4BzEEOtIpmVdVEZNCqS7baC4crd0pqnRH_5IB3jw3bcxGn6QLvnEtfdUdiYrqBdss1l58BQ3KhooKeQTa9AB0Hw_Py5PJdTJNPY8cQn7ouZ2KKDcmnPGBY5t7yLc1QlQ5xHdwW1VhvKn-nXqhJTBgIPgtldC-KDV5z-y2XDwGUc";
    const Q: &str = "uQPEfgmVtjL0Uyyx88GZFF1fOunH3-7cepKmtH4pxhtCoHqpWmT8YAmZxaewHgHAjLYsp1ZSe7zFYHj7C6ul7TjeLQeZD_YwD66t62wDmpe_HlB-TnBA-njbglfIsRLtXlnDzQkv5dTltRJ11BKBBypeeF6689rjcJIDEz9RWdc";
    const A2_INPUT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
    const A2_SIG: &str = "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";

    fn uint(b64: &str) -> BoxedUint {
        BoxedUint::from_be_slice_vartime(&b64url(b64))
    }

    fn public() -> VerifyingKey {
        VerifyingKey::Rsa(RsaKey::from_components(&b64url(N), &b64url(E)).expect("valid key"))
    }

    fn private() -> rsa::PrivateKey {
        rsa::PrivateKey::from_components(uint(N), uint(E), uint(D), vec![uint(P), uint(Q)])
            .expect("RFC 7515 A.2 key")
    }

    fn sign(key: &rsa::PrivateKey, alg: Alg, msg: &[u8]) -> Vec<u8> {
        match alg {
            Alg::RS256 => key.pkcs1v15_sign::<Sha256>(msg),
            Alg::RS384 => key.pkcs1v15_sign::<Sha384>(msg),
            Alg::RS512 => key.pkcs1v15_sign::<Sha512>(msg),
            Alg::PS256 => key.pss_sign_with_rng::<Sha256, _>(&mut TestRng::new(msg), msg),
            Alg::PS384 => key.pss_sign_with_rng::<Sha384, _>(&mut TestRng::new(msg), msg),
            Alg::PS512 => key.pss_sign_with_rng::<Sha512, _>(&mut TestRng::new(msg), msg),
            _ => unreachable!("not an RSA alg"),
        }
        .expect("signing works")
    }

    const RSA_ALGS: [Alg; 6] = [
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
    ];

    #[test]
    fn rfc7515_a2_rs256() {
        let key = public();
        let sig = b64url(A2_SIG);
        assert_eq!(key.verify(Alg::RS256, A2_INPUT.as_bytes(), &sig), Ok(()));
        // Same bytes under the other hashes or PSS padding: not valid.
        for alg in [Alg::RS384, Alg::RS512, Alg::PS256, Alg::PS384, Alg::PS512] {
            assert_eq!(
                key.verify(alg, A2_INPUT.as_bytes(), &sig),
                Err(SignatureError::Invalid),
                "{alg}"
            );
        }
        for alg in [Alg::ES256, Alg::ES384, Alg::EdDSA] {
            assert_eq!(
                key.verify(alg, A2_INPUT.as_bytes(), &sig),
                Err(SignatureError::WrongKeyType)
            );
        }
        let mut input = A2_INPUT.as_bytes().to_vec();
        input[5] ^= 0x20;
        assert_eq!(
            key.verify(Alg::RS256, &input, &sig),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn every_rsa_alg_round_trips_and_is_distinct() {
        let sk = private();
        let key = public();
        let msg = bytes("rsa msg", 0, 120);
        for alg in RSA_ALGS {
            let sig = sign(&sk, alg, &msg);
            assert_eq!(sig.len(), 256);
            assert_eq!(key.verify(alg, &msg, &sig), Ok(()), "{alg}");
            // Only the signing alg accepts it: RS vs PS, and the hash, matter.
            for other in RSA_ALGS.into_iter().filter(|o| *o != alg) {
                assert_eq!(
                    key.verify(other, &msg, &sig),
                    Err(SignatureError::Invalid),
                    "{alg} signature checked as {other}"
                );
            }
            let mut tampered = sig.clone();
            tampered[100] ^= 0x01;
            assert_eq!(
                key.verify(alg, &msg, &tampered),
                Err(SignatureError::Invalid)
            );
            assert_eq!(
                key.verify(alg, b"another message", &sig),
                Err(SignatureError::Invalid)
            );
        }
    }

    #[test]
    fn pss_salt_must_be_hash_length() {
        let sk = private();
        let key = public();
        let msg = b"salt";
        for salt_len in [0usize, 20, 64] {
            let signer = rsa::pss::SigningKey::<Sha256>::new_with_salt_len(sk.clone(), salt_len);
            let sig = rsa::signature::RandomizedSigner::try_sign_with_rng(
                &signer,
                &mut TestRng::new(msg),
                msg,
            )
            .expect("signs");
            let sig: Box<[u8]> = sig.into();
            assert_eq!(
                key.verify(Alg::PS256, msg, &sig),
                Err(SignatureError::Invalid),
                "salt {salt_len}"
            );
        }
    }

    #[test]
    fn signature_length_must_match_modulus() {
        let key = public();
        let sig = b64url(A2_SIG);
        let input = A2_INPUT.as_bytes();
        for len in [0, 1, 255, 257, 512] {
            let mut candidate = sig.clone();
            candidate.resize(len, 0);
            assert_eq!(
                key.verify(Alg::RS256, input, &candidate),
                Err(SignatureError::Malformed),
                "len {len}"
            );
        }
        // A leading zero prepended, or one dropped: refused.
        let padded = [&[0u8][..], &sig].concat();
        assert_eq!(
            key.verify(Alg::RS256, input, &padded),
            Err(SignatureError::Malformed)
        );
        // Signature value >= n: refused.
        let high = vec![0xffu8; 256];
        assert_eq!(
            key.verify(Alg::RS256, input, &high),
            Err(SignatureError::Invalid)
        );
        let zero = vec![0u8; 256];
        assert_eq!(
            key.verify(Alg::RS256, input, &zero),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn another_modulus_does_not_verify() {
        let mut n = b64url(N);
        n[100] ^= 0x10;
        let key = RsaKey::from_components(&n, &b64url(E)).expect("still odd, 2048 bits");
        let key = VerifyingKey::Rsa(key);
        assert_eq!(
            key.verify(Alg::RS256, A2_INPUT.as_bytes(), &b64url(A2_SIG)),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn key_size_limits() {
        let n = b64url(N);
        let e = b64url(E);
        assert_eq!(
            RsaKey::from_components(&n, &e).map(|k| k.bits()),
            Some(2048)
        );
        let padded = [&[0u8; 3][..], &n].concat();
        assert_eq!(
            RsaKey::from_components(&padded, &e).map(|k| k.bits()),
            Some(2048)
        );
        assert!(RsaKey::from_components(&n[..255], &e).is_none());
        assert!(RsaKey::from_components(&n[1..], &e).is_none());
        // 8192 bits (top bit set, odd): accepted; 8200 bits: refused.
        let big: Vec<u8> = std::iter::repeat_n(n.as_slice(), 4)
            .flatten()
            .copied()
            .collect();
        assert_eq!(
            RsaKey::from_components(&big, &e).map(|k| k.bits()),
            Some(8192)
        );
        let bigger = [&[1u8][..], &big].concat();
        assert!(RsaKey::from_components(&bigger, &e).is_none());
        assert!(RsaKey::from_components(&[], &e).is_none());
        assert!(RsaKey::from_components(&n, &[]).is_none());
        assert!(RsaKey::from_components(&n, &[0, 0]).is_none());
        assert!(RsaKey::from_components(&n, &[1]).is_none());
        assert!(RsaKey::from_components(&n, &[1, 0, 0]).is_none());
        assert!(RsaKey::from_components(&n, &[3]).is_some());
        assert!(RsaKey::from_components(&n, &[0xff; 6]).is_none());
    }

    /// Native timing of RS256 and PS256 verification, for comparison with
    /// the ECDSA numbers. Run with
    /// `cargo test --release -p attach-filter rsa_timing -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn rsa_timing() {
        use std::time::Instant;
        let sk = private();
        let key = public();
        let msg = bytes("rsa timing", 0, 300);
        for alg in [Alg::RS256, Alg::PS256] {
            let sig = sign(&sk, alg, &msg);
            let rounds = 2000u32;
            let start = Instant::now();
            for _ in 0..rounds {
                assert!(key.verify(alg, std::hint::black_box(&msg), &sig).is_ok());
            }
            let per = start.elapsed() / rounds;
            println!("{alg} (2048-bit): {:.1} us/verify", per.as_secs_f64() * 1e6);
        }
    }
}
