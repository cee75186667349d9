//! ES256 (RFC 7518 section 3.4): ECDSA on P-256 with SHA-256, the
//! signature JOSE's 64-byte `r || s`, not DER.
//!
//! Written on the `p256` crate's curve arithmetic, which the filter links
//! already to verify ES256 tokens: the `ecdsa` crate's signer would bring
//! its own generic code into the filter's wasm module (some 13 KB more)
//! for the few lines below. `k·G` and `d·G` come from the generator table
//! the filter's verification builds anyway ([`crate::comb::p256_generator`]),
//! summed in constant time since the nonce is as secret as the key: about
//! a fifth of the curve crate's own multiplication inside V8, which would
//! be nearly all of a signature's cost. Nonces are RFC 6979's (see
//! [`super::rfc6979`]).

use p256::elliptic_curve::ops::Reduce as _;
use p256::elliptic_curve::point::AffineCoordinates as _;
use p256::elliptic_curve::{Field as _, PrimeField as _};
use p256::{AffinePoint, FieldBytes, ProjectivePoint, Scalar};
use sha2::{Digest, Sha256};

use super::rfc6979::Nonces;
use crate::comb::p256_generator;

/// A P-256 private key.
#[derive(Clone)]
pub(super) struct P256Signer {
    secret: Scalar,
    public: P256Public,
}

impl P256Signer {
    /// The key whose private scalar is `bytes` (big-endian); `None` unless
    /// it is in `[1, n-1]`.
    pub(super) fn from_bytes(bytes: &[u8; 32]) -> Option<Self> {
        let secret: Option<Scalar> = Scalar::from_repr(FieldBytes::from(*bytes)).into();
        let secret = secret.filter(|d| !bool::from(d.is_zero()))?;
        let public = P256Public(p256_generator().mul_constant_time(&secret).to_affine());
        Some(Self { secret, public })
    }

    pub(super) fn public(&self) -> P256Public {
        self.public
    }

    /// The signature of `message` (RFC 6979 section 2.4 with the nonces of
    /// section 3.2): `r = x(k·G) mod n`, `s = k⁻¹·(z + r·d) mod n`.
    pub(super) fn sign(&self, message: &[u8]) -> [u8; 64] {
        let h1: [u8; 32] = Sha256::digest(message).into();
        let z = Scalar::reduce(&FieldBytes::from(h1));
        let mut nonces = Nonces::new(&self.secret, &h1);
        loop {
            let k = nonces.next();
            let r = Scalar::reduce(&p256_generator().mul_constant_time(&k).to_affine().x());
            let k_inverse: Option<Scalar> = k.invert().into();
            let Some(k_inverse) = k_inverse else {
                continue;
            };
            let s = k_inverse * (z + r * self.secret);
            if !bool::from(r.is_zero() | s.is_zero()) {
                let mut signature = [0u8; 64];
                let (left, right) = signature.split_at_mut(32);
                left.copy_from_slice(&r.to_repr());
                right.copy_from_slice(&s.to_repr());
                return signature;
            }
        }
    }
}

/// A P-256 public key: a point on the curve, never the identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct P256Public(AffinePoint);

impl P256Public {
    /// The key at the JWK coordinates `x` and `y` (32 bytes big-endian
    /// each); `None` unless they are below the field's prime and the point
    /// is on the curve (with cofactor 1, then also in the group, and never
    /// the identity, which has no coordinates).
    pub fn from_coordinates(x: &[u8; 32], y: &[u8; 32]) -> Option<Self> {
        let point: Option<AffinePoint> =
            AffinePoint::from_coordinates(&FieldBytes::from(*x), &FieldBytes::from(*y)).into();
        point.map(P256Public)
    }

    /// The JWK `x` coordinate, 32 bytes big-endian.
    pub fn x(&self) -> [u8; 32] {
        self.0.x().into()
    }

    /// The JWK `y` coordinate, 32 bytes big-endian.
    pub fn y(&self) -> [u8; 32] {
        self.0.y().into()
    }

    /// Whether `signature` (`r || s`) is this key's over `message`: `r` and
    /// `s` in `[1, n-1]` and `x(u1·G + u2·Q) mod n == r`. High `s` values
    /// are accepted, as ECDSA and JOSE allow them. Variable time: all of
    /// it is public.
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let (r, s) = signature.split_at(32);
        let (Some(r), Some(s)) = (scalar_in_range(r), scalar_in_range(s)) else {
            return false;
        };
        let z = Scalar::reduce(&FieldBytes::from(<[u8; 32]>::from(Sha256::digest(message))));
        let s_inverse: Option<Scalar> = s.invert_vartime().into();
        let Some(s_inverse) = s_inverse else {
            return false;
        };
        let sum = ProjectivePoint::GENERATOR.mul_vartime(&(z * s_inverse))
            + ProjectivePoint::from(self.0).mul_vartime(&(r * s_inverse));
        let sum = sum.to_affine();
        !bool::from(sum.is_identity()) && Scalar::reduce(&sum.x()) == r
    }
}

/// A big-endian scalar, `None` unless it is in `[1, n-1]`.
fn scalar_in_range(bytes: &[u8]) -> Option<Scalar> {
    let bytes = FieldBytes::try_from(bytes).ok()?;
    let scalar: Option<Scalar> = Scalar::from_repr(bytes).into();
    scalar.filter(|s| !bool::from(s.is_zero()))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use p256::ecdsa::signature::{Signer as _, Verifier as _};

    /// RFC 6979 appendix A.2.5: the P-256 key and its public point.
    pub(in crate::gateway_keys) const RFC_6979_KEY: &str =
        "c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721";
    const UX: &str = "60fed4ba255a9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb6";
    const UY: &str = "7903fe1008b8bc99a41ae9e95628bc64f2f1b20c2d7e9f5177a3c294d4462299";

    pub(in crate::gateway_keys) struct Vector {
        pub message: &'static [u8],
        pub k: &'static str,
        pub r: &'static str,
        pub s: &'static str,
    }

    /// RFC 6979 appendix A.2.5, "With SHA-256".
    pub(in crate::gateway_keys) const VECTORS: [Vector; 2] = [
        Vector {
            message: b"sample",
            k: "a6e3c57dd01abe90086538398355dd4c3b17aa873382b0f24d6129493d8aad60",
            r: "efd48b2aacb6a8fd1140dd9cd45e81d69d2c877b56aaf991c34d0ea84eaf3716",
            s: "f7cb1c942d657c41d436c7a1b6e29f65f3e900dbb9aff4064dc4ab2f843acda8",
        },
        Vector {
            message: b"test",
            k: "d16b6ae827f17175e040871a1c7ec3500192c4c92677336ec2537acaee0008e0",
            r: "f1abb023518351cd71d881567b1ea663ed3efcf6c5132b354f28d3b0b7d38367",
            s: "019f4113742a2b14bd25926b49c649155f267e60d3814b4c0cc84250e46f0083",
        },
    ];

    pub(in crate::gateway_keys) fn hex32(text: &str) -> [u8; 32] {
        let bytes: Vec<u8> = (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect();
        bytes.try_into().unwrap()
    }

    fn theirs(public: P256Public) -> p256::ecdsa::VerifyingKey {
        let mut sec1 = vec![0x04];
        sec1.extend(public.x());
        sec1.extend(public.y());
        p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).unwrap()
    }

    #[test]
    fn signatures_are_rfc_6979_appendix_a_2_5s() {
        let signer = P256Signer::from_bytes(&hex32(RFC_6979_KEY)).unwrap();
        assert_eq!(signer.public().x(), hex32(UX));
        assert_eq!(signer.public().y(), hex32(UY));
        for vector in VECTORS {
            let signature = signer.sign(vector.message);
            assert_eq!(signature[..32], hex32(vector.r), "{:?}", vector.message);
            assert_eq!(signature[32..], hex32(vector.s), "{:?}", vector.message);
            assert!(signer.public().verify(vector.message, &signature));
        }
    }

    #[test]
    fn signatures_agree_with_the_p256_crate() {
        for seed in 1..=20u8 {
            let secret = Sha256::digest([seed]).into();
            let Some(signer) = P256Signer::from_bytes(&secret) else {
                continue;
            };
            let verifier = theirs(signer.public());
            let reference = p256::ecdsa::SigningKey::from_bytes(&secret.into()).unwrap();
            for message in [&b""[..], b"m", &[seed; 300]] {
                let signature = signer.sign(message);
                let parsed = p256::ecdsa::Signature::from_slice(&signature).unwrap();
                assert!(verifier.verify(message, &parsed).is_ok());
                assert!(verifier.verify(b"other", &parsed).is_err());
                // Both sign deterministically (RFC 6979): the same bytes.
                let expected: p256::ecdsa::Signature = reference.sign(message);
                assert_eq!(signature[..], expected.to_bytes()[..]);
                assert!(signer.public().verify(message, &signature));
            }
        }
    }

    #[test]
    fn verification_refuses_what_is_not_a_signature_of_the_key() {
        let signer = P256Signer::from_bytes(&hex32(RFC_6979_KEY)).unwrap();
        let other = P256Signer::from_bytes(&[7; 32]).unwrap();
        let signature = signer.sign(b"m");
        assert!(signer.public().verify(b"m", &signature));
        assert!(!signer.public().verify(b"n", &signature));
        assert!(!other.public().verify(b"m", &signature));
        let mut flipped = signature;
        flipped[40] ^= 1;
        assert!(!signer.public().verify(b"m", &flipped));
        // r or s zero, or not below n.
        let n = hex32("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
        for (r, s) in [([0; 32], hex32(VECTORS[0].s)), (hex32(VECTORS[0].r), n)] {
            let mut forged = [0u8; 64];
            forged[..32].copy_from_slice(&r);
            forged[32..].copy_from_slice(&s);
            assert!(!signer.public().verify(b"sample", &forged));
        }
    }

    #[test]
    fn private_scalars_must_be_in_range() {
        let n = hex32("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
        assert!(P256Signer::from_bytes(&[0; 32]).is_none());
        assert!(P256Signer::from_bytes(&n).is_none());
        assert!(P256Signer::from_bytes(&[0xff; 32]).is_none());
        let mut n_minus_1 = n;
        n_minus_1[31] -= 1;
        assert!(P256Signer::from_bytes(&n_minus_1).is_some());
    }
}
