//! ECDSA verification for ES256 (P-256) and ES384 (P-384), RFC 7518 §3.4.
//!
//! The curve arithmetic (field, scalars, complete point formulas) is the
//! `p256`/`p384` crates'. What is ours is the shape of the computation:
//! `u1·G + u2·Q` as a sum of precomputed affine points (see
//! [`attach_contract::comb`]) instead of a generic double-scalar
//! multiplication. A JWKS key lives for minutes to days and is used for
//! every request, so its table is built once when the key is parsed; the
//! generator's table is built once per process (wasm VM), with the first EC
//! key parsed, and P-256's is the one the gateway's ES256 signing uses
//! too. Inside V8 this is about four times faster than `p256`'s own
//! `ecdsa::VerifyingKey`.
//!
//! Checks, in order: signature length is exactly `2 × field size`
//! (JOSE `r || s`, not DER), `r` and `s` in `[1, n-1]`, the sum is not the
//! point at infinity, and `x(R) mod n == r`. High `s` values are accepted,
//! as ECDSA and JOSE allow them.

use super::SignatureError;
use attach_contract::comb::{Comb, p256_generator};
use p256::NistP256;
use p384::NistP384;
use primeorder::elliptic_curve::group::Group as _;
use primeorder::elliptic_curve::ops::{Invert as _, Reduce};
use primeorder::elliptic_curve::point::AffineCoordinates as _;
use primeorder::{AffinePoint, Field as _, FieldBytes, PrimeCurveParams, PrimeField as _};
use primeorder::{ProjectivePoint, Scalar};
use std::sync::OnceLock;

/// Window widths, trading table size for additions per verification (the
/// additions are nearly all of the cost): a P-256 key table is 43 × 32
/// points (~97 KB, at most 43 additions); the P-256 generator's table,
/// shared by all keys, is [`p256_generator`]'s (37 × 64 points, ~170 KB).
/// P-384 points are larger, so its key table uses 4-bit digits (97 × 8
/// points, ~80 KB) and its generator 5-bit digits (77 × 16 points,
/// ~130 KB).
const P256_KEY_WINDOW: u32 = 6;
const P384_KEY_WINDOW: u32 = 4;
const P384_GENERATOR_WINDOW: u32 = 5;

fn p384_generator() -> &'static Comb<NistP384> {
    static TABLE: OnceLock<Comb<NistP384>> = OnceLock::new();
    TABLE.get_or_init(|| Comb::new(&ProjectivePoint::GENERATOR, P384_GENERATOR_WINDOW))
}

/// A P-256 public key with its precomputed table, for ES256.
pub struct P256Key(EcKey<NistP256>);

/// A P-384 public key with its precomputed table, for ES384.
pub struct P384Key(EcKey<NistP384>);

impl P256Key {
    /// Builds the key from the JWK `x` and `y` coordinates (32 bytes each,
    /// big-endian). `None` unless the point is on the curve. Also makes sure
    /// the shared generator table exists, so no request pays for it.
    pub fn from_coordinates(x: &[u8], y: &[u8]) -> Option<Self> {
        let key = EcKey::from_coordinates(x, y, P256_KEY_WINDOW).map(P256Key)?;
        p256_generator();
        Some(key)
    }

    /// Verifies an `r || s` signature (64 bytes) over a SHA-256 digest.
    pub fn verify_prehash(&self, digest: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
        self.0.verify_prehash(p256_generator(), digest, signature)
    }
}

impl P384Key {
    /// Builds the key from the JWK `x` and `y` coordinates (48 bytes each,
    /// big-endian). `None` unless the point is on the curve. Also makes sure
    /// the shared generator table exists.
    pub fn from_coordinates(x: &[u8], y: &[u8]) -> Option<Self> {
        let key = EcKey::from_coordinates(x, y, P384_KEY_WINDOW).map(P384Key)?;
        p384_generator();
        Some(key)
    }

    /// Verifies an `r || s` signature (96 bytes) over a SHA-384 digest.
    pub fn verify_prehash(&self, digest: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
        self.0.verify_prehash(p384_generator(), digest, signature)
    }
}

struct EcKey<C: PrimeCurveParams> {
    table: Comb<C>,
}

impl<C: PrimeCurveParams> EcKey<C> {
    fn from_coordinates(x: &[u8], y: &[u8], window: u32) -> Option<Self> {
        let x = FieldBytes::<C>::try_from(x).ok()?;
        let y = FieldBytes::<C>::try_from(y).ok()?;
        // Rejects coordinates >= p and points off the curve. Both curves
        // have cofactor 1, so an on-curve point is in the prime-order group,
        // and (x, y) coordinates cannot encode the point at infinity.
        let point: AffinePoint<C> = Option::from(AffinePoint::<C>::from_coordinates(&x, &y))?;
        Some(EcKey {
            table: Comb::new(&ProjectivePoint::from(point), window),
        })
    }

    fn verify_prehash(
        &self,
        generator: &Comb<C>,
        digest: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        let size = FieldBytes::<C>::default().len();
        if signature.len() != 2 * size || digest.len() != size {
            return Err(SignatureError::Malformed);
        }
        let (r, s) = signature
            .split_at_checked(size)
            .ok_or(SignatureError::Malformed)?;
        let r = scalar_in_range::<C>(r).ok_or(SignatureError::Invalid)?;
        let s = scalar_in_range::<C>(s).ok_or(SignatureError::Invalid)?;
        let digest = FieldBytes::<C>::try_from(digest).map_err(|_| SignatureError::Malformed)?;
        // The digest is exactly as long as the order here (SHA-256 for
        // P-256, SHA-384 for P-384), so bits2int is the plain integer and a
        // single reduction mod n follows.
        let z = <Scalar<C> as Reduce<FieldBytes<C>>>::reduce(&digest);

        let s_inv: Scalar<C> = Option::from(s.invert_vartime()).ok_or(SignatureError::Invalid)?;
        let u1 = z * s_inv;
        let u2 = r * s_inv;

        let mut sum = ProjectivePoint::<C>::IDENTITY;
        if !generator.add_multiple(&mut sum, &u1) || !self.table.add_multiple(&mut sum, &u2) {
            return Err(SignatureError::Invalid);
        }
        if bool::from(sum.is_identity()) {
            return Err(SignatureError::Invalid);
        }
        let x = sum.to_affine().x();
        // x(R) < p; since p < 2n a single conditional subtraction reduces it.
        let v = <Scalar<C> as Reduce<FieldBytes<C>>>::reduce(&x);
        if v == r {
            Ok(())
        } else {
            Err(SignatureError::Invalid)
        }
    }
}

/// Decodes a big-endian scalar, `None` unless it is in `[1, n-1]`.
fn scalar_in_range<C: PrimeCurveParams>(bytes: &[u8]) -> Option<Scalar<C>> {
    let bytes = FieldBytes::<C>::try_from(bytes).ok()?;
    let scalar: Scalar<C> = Option::from(Scalar::<C>::from_repr(bytes))?;
    if bool::from(scalar.is_zero()) {
        None
    } else {
        Some(scalar)
    }
}

/// A P-256 public key without a table of its own, for keys seen once (a
/// `did:key` travels in every token, so a per-key table would cost more to
/// build than it saves). `u1·G` still comes from the shared generator
/// table; `u2·Q` is a plain width-5 NAF multiplication. Same checks as
/// [`P256Key`]; high `s` is accepted likewise.
#[derive(Clone, Copy, Debug)]
pub struct P256PlainKey(ProjectivePoint<NistP256>);

impl P256PlainKey {
    /// Parses a SEC1 point: compressed (33 bytes, 0x02 or 0x03 then x) or
    /// uncompressed (65 bytes, 0x04, x, y). `None` unless the coordinates
    /// are below p and the point is on the curve.
    pub fn from_sec1(bytes: &[u8]) -> Option<Self> {
        use primeorder::elliptic_curve::point::DecompressPoint as _;
        let (&tag, rest) = bytes.split_first()?;
        let point: AffinePoint<NistP256> = match (tag, rest.len()) {
            (0x02 | 0x03, 32) => {
                let x = FieldBytes::<NistP256>::try_from(rest).ok()?;
                let odd = primeorder::elliptic_curve::subtle::Choice::from(tag & 1);
                Option::from(AffinePoint::<NistP256>::decompress(&x, odd))?
            }
            (0x04, 64) => {
                let (x, y) = rest.split_at_checked(32)?;
                return Self::from_coordinates(x, y);
            }
            _ => return None,
        };
        p256_generator();
        Some(P256PlainKey(ProjectivePoint::from(point)))
    }

    fn from_coordinates(x: &[u8], y: &[u8]) -> Option<Self> {
        // Rejects coordinates >= p and points off the curve (cofactor 1).
        let x = FieldBytes::<NistP256>::try_from(x).ok()?;
        let y = FieldBytes::<NistP256>::try_from(y).ok()?;
        let point: AffinePoint<NistP256> = Option::from(AffinePoint::from_coordinates(&x, &y))?;
        p256_generator();
        Some(P256PlainKey(ProjectivePoint::from(point)))
    }

    /// The uncompressed SEC1 encoding (0x04, x, y), for tests that build
    /// DIDs from keys.
    #[cfg(test)]
    pub(crate) fn to_uncompressed(self) -> [u8; 65] {
        use primeorder::elliptic_curve::sec1::ToSec1Point as _;
        let encoded = self.0.to_affine().to_sec1_point(false);
        let mut out = [0u8; 65];
        for (dst, src) in out.iter_mut().zip(encoded.as_bytes()) {
            *dst = *src;
        }
        out
    }

    /// Verifies an `r || s` signature (64 bytes) over a SHA-256 digest.
    pub fn verify_prehash(&self, digest: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
        const SIZE: usize = 32;
        if signature.len() != 2 * SIZE || digest.len() != SIZE {
            return Err(SignatureError::Malformed);
        }
        let (r, s) = signature
            .split_at_checked(SIZE)
            .ok_or(SignatureError::Malformed)?;
        let r = scalar_in_range::<NistP256>(r).ok_or(SignatureError::Invalid)?;
        let s = scalar_in_range::<NistP256>(s).ok_or(SignatureError::Invalid)?;
        let digest =
            FieldBytes::<NistP256>::try_from(digest).map_err(|_| SignatureError::Malformed)?;
        let z = <Scalar<NistP256> as Reduce<FieldBytes<NistP256>>>::reduce(&digest);
        let s_inv: Scalar<NistP256> =
            Option::from(s.invert_vartime()).ok_or(SignatureError::Invalid)?;
        let u1 = z * s_inv;
        let u2 = r * s_inv;

        let mut sum = self.0.mul_vartime(&u2);
        if !p256_generator().add_multiple(&mut sum, &u1) {
            return Err(SignatureError::Invalid);
        }
        if bool::from(sum.is_identity()) {
            return Err(SignatureError::Invalid);
        }
        let x = sum.to_affine().x();
        let v = <Scalar<NistP256> as Reduce<FieldBytes<NistP256>>>::reduce(&x);
        if v == r {
            Ok(())
        } else {
            Err(SignatureError::Invalid)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alg::Alg;
    use crate::alg::HashAlg;
    use crate::crypto::test_util::{b64url, bytes};
    use crate::crypto::{VerifyingKey, digest};
    use p256::ecdsa::signature::Signer as _;
    use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
    use p256::elliptic_curve::sec1::ToSec1Point as _;

    fn p256_signing_key(i: u64) -> p256::ecdsa::SigningKey {
        // Any 32 bytes below n work; these are, with overwhelming odds.
        p256::ecdsa::SigningKey::from_slice(&bytes("p256 key", i, 32)).expect("valid key")
    }

    fn p384_signing_key(i: u64) -> p384::ecdsa::SigningKey {
        p384::ecdsa::SigningKey::from_slice(&bytes("p384 key", i, 48)).expect("valid key")
    }

    fn ours_p256(sk: &p256::ecdsa::SigningKey) -> P256Key {
        let point = sk.verifying_key().to_sec1_point(false);
        let raw = point.as_bytes();
        P256Key::from_coordinates(&raw[1..33], &raw[33..65]).expect("on curve")
    }

    fn ours_p384(sk: &p384::ecdsa::SigningKey) -> P384Key {
        let point = sk.verifying_key().to_sec1_point(false);
        let raw = point.as_bytes();
        P384Key::from_coordinates(&raw[1..49], &raw[49..97]).expect("on curve")
    }

    fn sign_p256(sk: &p256::ecdsa::SigningKey, msg: &[u8]) -> Vec<u8> {
        let sig: p256::ecdsa::Signature = sk.sign(msg);
        sig.to_bytes().to_vec()
    }

    fn sign_p384(sk: &p384::ecdsa::SigningKey, msg: &[u8]) -> Vec<u8> {
        let sig: p384::ecdsa::Signature = sk.sign(msg);
        sig.to_bytes().to_vec()
    }

    /// The curve order n, big-endian.
    fn p256_order() -> Vec<u8> {
        hex("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551")
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// Big-endian `a - b` for equal-length inputs with a >= b.
    fn be_sub(a: &[u8], b: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; a.len()];
        let mut borrow = 0i16;
        for i in (0..a.len()).rev() {
            let mut d = a[i] as i16 - b[i] as i16 - borrow;
            borrow = if d < 0 {
                d += 256;
                1
            } else {
                0
            };
            out[i] = d as u8;
        }
        out
    }

    /// RFC 7515 Appendix A.3: ES256 example key and signature.
    #[test]
    fn rfc7515_a3_es256() {
        let x = b64url("f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU");
        let y = b64url("x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0");
        let key = VerifyingKey::P256(P256Key::from_coordinates(&x, &y).expect("on curve"));
        let input = b"eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
        let sig = b64url(
            "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q",
        );
        assert_eq!(key.verify(Alg::ES256, input, &sig), Ok(()));
        let mut tampered = input.to_vec();
        tampered[10] ^= 1;
        assert_eq!(
            key.verify(Alg::ES256, &tampered, &sig),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            key.verify(Alg::ES384, input, &sig),
            Err(SignatureError::WrongKeyType)
        );
        assert_eq!(
            key.verify(Alg::RS256, input, &sig),
            Err(SignatureError::WrongKeyType)
        );
        assert_eq!(
            key.verify(Alg::EdDSA, input, &sig),
            Err(SignatureError::WrongKeyType)
        );
    }

    /// Agrees with `p256`'s own verifier on valid, tampered and foreign
    /// signatures over many random messages and several keys.
    #[test]
    fn es256_agrees_with_p256_crate() {
        for k in 0..3 {
            let sk = p256_signing_key(k);
            let other = p256_signing_key(k + 100);
            let ours = ours_p256(&sk);
            let theirs = *sk.verifying_key();
            for i in 0..24 {
                let msg = bytes("es256 msg", k * 1000 + i, (i as usize * 7) % 200);
                let good = sign_p256(&sk, &msg);
                let foreign = sign_p256(&other, &msg);
                let mut flipped = good.clone();
                flipped[(i as usize * 5) % 64] ^= 1 << (i % 8);
                for sig in [&good, &foreign, &flipped] {
                    let hash = digest(HashAlg::Sha256, &msg);
                    let expected = p256::ecdsa::Signature::from_slice(sig)
                        .map(|s| theirs.verify_prehash(&hash, &s).is_ok())
                        .unwrap_or(false);
                    assert_eq!(ours.verify_prehash(&hash, sig).is_ok(), expected);
                }
                assert!(
                    ours.verify_prehash(&digest(HashAlg::Sha256, &msg), &good)
                        .is_ok()
                );
            }
        }
    }

    #[test]
    fn es384_verifies_and_agrees_with_p384_crate() {
        use p384::ecdsa::signature::hazmat::PrehashVerifier as _;
        for k in 0..2 {
            let sk = p384_signing_key(k);
            let ours = VerifyingKey::P384(ours_p384(&sk));
            let theirs = *sk.verifying_key();
            for i in 0..8 {
                let msg = bytes("es384 msg", k * 1000 + i, 10 + i as usize * 13);
                let sig = sign_p384(&sk, &msg);
                assert_eq!(ours.verify(Alg::ES384, &msg, &sig), Ok(()));
                let mut bad = sig.clone();
                bad[(i as usize * 11) % 96] ^= 0x40;
                let hash = digest(HashAlg::Sha384, &msg);
                let expected = p384::ecdsa::Signature::from_slice(&bad)
                    .map(|s| theirs.verify_prehash(&hash, &s).is_ok())
                    .unwrap_or(false);
                assert_eq!(ours.verify(Alg::ES384, &msg, &bad).is_ok(), expected);
                assert!(ours.verify(Alg::ES384, b"other", &sig).is_err());
                assert_eq!(
                    ours.verify(Alg::ES256, &msg, &sig),
                    Err(SignatureError::WrongKeyType)
                );
            }
        }
    }

    #[test]
    fn high_s_is_accepted_like_the_p256_crate() {
        let sk = p256_signing_key(7);
        let ours = ours_p256(&sk);
        let msg = b"high s";
        let sig = sign_p256(&sk, msg);
        let high = [&sig[..32], &be_sub(&p256_order(), &sig[32..])[..]].concat();
        let hash = digest(HashAlg::Sha256, msg);
        assert_eq!(ours.verify_prehash(&hash, &sig), Ok(()));
        assert_eq!(ours.verify_prehash(&hash, &high), Ok(()));
        let theirs = p256::ecdsa::Signature::from_slice(&high).expect("in range");
        assert!(sk.verifying_key().verify_prehash(&hash, &theirs).is_ok());
    }

    #[test]
    fn out_of_range_r_and_s_are_invalid() {
        let sk = p256_signing_key(8);
        let ours = ours_p256(&sk);
        let msg = b"ranges";
        let hash = digest(HashAlg::Sha256, msg);
        let sig = sign_p256(&sk, msg);
        assert_eq!(ours.verify_prehash(&hash, &sig), Ok(()));
        let (r, s) = sig.split_at(32);
        let n = p256_order();
        let mut n_plus_one = n.clone();
        n_plus_one[31] += 1;
        let zero = [0u8; 32];
        let ones = [0xffu8; 32];
        for (bad_r, bad_s) in [
            (&zero[..], s),
            (r, &zero[..]),
            (&zero[..], &zero[..]),
            (&n[..], s),
            (r, &n[..]),
            (&n_plus_one[..], s),
            (r, &n_plus_one[..]),
            (&ones[..], s),
            (r, &ones[..]),
        ] {
            let candidate = [bad_r, bad_s].concat();
            assert_eq!(
                ours.verify_prehash(&hash, &candidate),
                Err(SignatureError::Invalid)
            );
        }
    }

    #[test]
    fn malformed_lengths() {
        let sk = p256_signing_key(9);
        let key = VerifyingKey::P256(ours_p256(&sk));
        let msg = b"lengths";
        let sig = sign_p256(&sk, msg);
        for len in [0, 1, 32, 63, 65, 70, 72, 96, 128] {
            let mut candidate = sig.clone();
            candidate.resize(len, 0);
            assert_eq!(
                key.verify(Alg::ES256, msg, &candidate),
                Err(SignatureError::Malformed),
                "len {len}"
            );
        }
        // A DER encoding is refused too (JOSE uses r || s).
        let der = p256::ecdsa::Signature::from_slice(&sig)
            .expect("valid")
            .to_der();
        assert!(key.verify(Alg::ES256, msg, der.as_bytes()).is_err());
        // Wrong digest length at the lower level.
        let ours = ours_p256(&sk);
        assert_eq!(
            ours.verify_prehash(&[0u8; 48], &sig),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn identity_sum_is_refused() {
        // Choose the digest so that u1·G + u2·Q is the point at infinity:
        // with Q = d·G, u1 + u2·d = 0 mod n, i.e. z = -r·d. The check
        // x(R) == r must never be reached with R at infinity.
        let d = p256::Scalar::from(5u32);
        let q = (p256::ProjectivePoint::GENERATOR * d).to_affine();
        let raw = q.to_sec1_point(false);
        let key = P256Key::from_coordinates(&raw.as_bytes()[1..33], &raw.as_bytes()[33..65])
            .expect("on curve");
        let r = p256::Scalar::from(3u32);
        let s = p256::Scalar::from(11u32);
        let z = -(r * d);
        let sig = [r.to_bytes().as_slice(), s.to_bytes().as_slice()].concat();
        assert_eq!(
            key.verify_prehash(z.to_bytes().as_slice(), &sig),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn off_curve_and_bad_coordinates_are_refused() {
        let sk = p256_signing_key(10);
        let point = sk.verifying_key().to_sec1_point(false);
        let raw = point.as_bytes();
        let (x, y) = (&raw[1..33], &raw[33..65]);
        assert!(P256Key::from_coordinates(x, y).is_some());
        let mut bad_y = y.to_vec();
        bad_y[31] ^= 1;
        assert!(P256Key::from_coordinates(x, &bad_y).is_none());
        assert!(P256Key::from_coordinates(&x[1..], y).is_none());
        assert!(P256Key::from_coordinates(x, &[y, &[0][..]].concat()).is_none());
        assert!(P256Key::from_coordinates(&[0u8; 32], &[0u8; 32]).is_none());
        assert!(P256Key::from_coordinates(&[0xffu8; 32], y).is_none());
        // P-384 coordinates are not P-256 ones.
        let sk384 = p384_signing_key(1);
        let p = sk384.verifying_key().to_sec1_point(false);
        let raw = p.as_bytes();
        assert!(P384Key::from_coordinates(&raw[1..49], &raw[49..97]).is_some());
        assert!(P256Key::from_coordinates(&raw[1..33], &raw[49..81]).is_none());
    }

    #[test]
    fn table_sizes_stay_within_budget() {
        let sk = p256_signing_key(11);
        assert!(ours_p256(&sk).0.table.table_bytes() <= 100 * 1024);
        let sk = p384_signing_key(11);
        assert!(ours_p384(&sk).0.table.table_bytes() <= 100 * 1024);
        assert!(p256_generator().table_bytes() <= 192 * 1024);
        assert!(p384_generator().table_bytes() <= 160 * 1024);
    }

    /// Native timing of ES256 with precomputed combs against `p256`'s own
    /// verifier. Run with
    /// `cargo test --release -p attach-filter es256_timing -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn es256_timing() {
        use std::time::Instant;
        let sk = p256_signing_key(42);
        let theirs = *sk.verifying_key();
        let start = Instant::now();
        let _ = p256_generator();
        let generator_table = start.elapsed();
        let start = Instant::now();
        let ours = ours_p256(&sk);
        let key_table = start.elapsed();
        let msg = bytes("timing", 0, 300);
        let sig = sign_p256(&sk, &msg);
        let parsed = p256::ecdsa::Signature::from_slice(&sig).expect("valid");
        let rounds = 2000u32;

        let start = Instant::now();
        for _ in 0..rounds {
            let hash = digest(HashAlg::Sha256, std::hint::black_box(&msg));
            assert!(
                ours.verify_prehash(&hash, std::hint::black_box(&sig))
                    .is_ok()
            );
        }
        let fast = start.elapsed() / rounds;

        let start = Instant::now();
        for _ in 0..rounds {
            let hash = digest(HashAlg::Sha256, std::hint::black_box(&msg));
            assert!(
                theirs
                    .verify_prehash(&hash, std::hint::black_box(&parsed))
                    .is_ok()
            );
        }
        let plain = start.elapsed() / rounds;

        let sk384 = p384_signing_key(42);
        let ours384 = ours_p384(&sk384);
        let sig384 = sign_p384(&sk384, &msg);
        let _ = p384_generator();
        let start = Instant::now();
        for _ in 0..rounds / 4 {
            let hash = digest(HashAlg::Sha384, std::hint::black_box(&msg));
            assert!(
                ours384
                    .verify_prehash(&hash, std::hint::black_box(&sig384))
                    .is_ok()
            );
        }
        let fast384 = start.elapsed() / (rounds / 4);

        println!(
            "ES256 comb: {:.1} us/verify, p256 crate: {:.1} us/verify; ES384 comb: {:.1} us/verify; \
             P-256 key table {:.2} ms, generator table {:.2} ms",
            fast.as_secs_f64() * 1e6,
            plain.as_secs_f64() * 1e6,
            fast384.as_secs_f64() * 1e6,
            key_table.as_secs_f64() * 1e3,
            generator_table.as_secs_f64() * 1e3,
        );
    }
}
