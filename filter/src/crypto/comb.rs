//! Fixed-base scalar multiplication with a full comb of affine points.
//!
//! ECDSA verification computes `u1·G + u2·Q`. Both points are fixed for a
//! long time (G forever, Q for the life of a JWKS), while the scalars change
//! on every request, so it pays to precompute, once per point,
//!
//! ```text
//! table[i][j-1] = j · 2^(w·i) · P      for every window position i, j in 1..=2^(w-1)
//! ```
//!
//! A scalar written in signed base-2^w digits `k = Σ d_i · 2^(w·i)` with
//! `d_i` in `[-(2^(w-1) - 1), 2^(w-1)]` is then `Σ ±table[i][|d_i| - 1]`: one
//! mixed (projective + affine) addition per non-zero digit, no doublings at
//! all. Negative digits reuse the positive entry with `y` negated, which
//! halves the table compared with unsigned digits.
//!
//! Everything here is variable time. That is fine for verification, whose
//! inputs (signature, message, public key) are all public.

use primeorder::elliptic_curve::group::Curve as _;
use primeorder::elliptic_curve::ops::Double as _;
use primeorder::{AffinePoint, PrimeCurveParams, PrimeField, ProjectivePoint, Scalar};

/// Little-endian 64-bit limbs; 7 limbs hold a 384-bit scalar plus the bits
/// a top window may read past its end.
const LIMBS: usize = 7;

pub(crate) struct Comb<C: PrimeCurveParams> {
    window: u32,
    positions: u32,
    /// Row-major: `points[i * 2^(w-1) + (j - 1)] = j · 2^(w·i) · P`.
    points: Vec<AffinePoint<C>>,
}

impl<C: PrimeCurveParams> Comb<C> {
    /// Builds the table for `point` with `window`-bit signed digits
    /// (clamped to 2..=8). Costs one projective addition per entry plus a
    /// single field inversion shared by the whole table.
    pub(crate) fn new(point: &ProjectivePoint<C>, window: u32) -> Self {
        let window = window.clamp(2, 8);
        let half = 1usize << (window - 1);
        // A signed recoding may carry one bit past the scalar's width, so
        // cover NUM_BITS + 1 bits; the top digit then never exceeds 2^(w-1).
        let positions = (Scalar::<C>::NUM_BITS + 1).div_ceil(window);
        let count = positions as usize * half;

        let mut projective = Vec::with_capacity(count);
        let mut base = *point; // 2^(w·i) · P
        for _ in 0..positions {
            let mut multiple = base;
            projective.push(multiple);
            for _ in 1..half {
                multiple += base;
                projective.push(multiple);
            }
            // 2 · 2^(w-1) · base = 2^w · base.
            base = multiple.double();
        }

        let mut points = vec![AffinePoint::<C>::IDENTITY; projective.len()];
        ProjectivePoint::<C>::batch_normalize(&projective, &mut points);
        Comb {
            window,
            positions,
            points,
        }
    }

    /// Adds `k · P` to `acc`. Returns `false` only if `k` did not fit the
    /// table, which cannot happen for a reduced scalar; callers treat it as
    /// a failed verification rather than trusting an incomplete sum.
    pub(crate) fn add_multiple(&self, acc: &mut ProjectivePoint<C>, k: &Scalar<C>) -> bool {
        let limbs = to_limbs(k.to_repr().as_slice());
        let w = self.window;
        let half = 1i32 << (w - 1);
        let full = 1i32 << w;
        let mut carry = 0i32;
        let mut row = 0usize;
        for i in 0..self.positions {
            let raw = extract_window(&limbs, i * w, w) as i32 + carry;
            let digit = if raw > half {
                carry = 1;
                raw - full
            } else {
                carry = 0;
                raw
            };
            if digit != 0 {
                let index = row + digit.unsigned_abs() as usize - 1;
                let Some(entry) = self.points.get(index) else {
                    return false;
                };
                if digit > 0 {
                    *acc += entry;
                } else {
                    *acc += -*entry;
                }
            }
            row += half as usize;
        }
        carry == 0
    }

    /// Heap bytes held by the table.
    #[cfg(test)]
    pub(crate) fn table_bytes(&self) -> usize {
        self.points.len() * std::mem::size_of::<AffinePoint<C>>()
    }
}

/// Big-endian bytes to little-endian limbs; bytes beyond `LIMBS * 8` are
/// ignored (scalars are at most 48 bytes).
fn to_limbs(be: &[u8]) -> [u64; LIMBS] {
    let mut limbs = [0u64; LIMBS];
    for (i, byte) in be.iter().rev().enumerate() {
        if let Some(limb) = limbs.get_mut(i / 8) {
            *limb |= u64::from(*byte) << ((i % 8) * 8);
        }
    }
    limbs
}

/// The `w` bits of `limbs` starting at bit `offset` (bit 0 = least
/// significant); bits past the end read as zero.
fn extract_window(limbs: &[u64; LIMBS], offset: u32, w: u32) -> u32 {
    let index = (offset / 64) as usize;
    let shift = offset % 64;
    let low = limbs.get(index).copied().unwrap_or(0) >> shift;
    let high = if shift + w > 64 {
        // shift > 64 - w >= 56 here, so the left shift is in range.
        limbs.get(index + 1).copied().unwrap_or(0) << (64 - shift)
    } else {
        0
    };
    ((low | high) & ((1u64 << w) - 1)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::NistP256;
    use p384::NistP384;
    use primeorder::elliptic_curve::group::Group as _;
    use primeorder::elliptic_curve::ops::Reduce as _;

    fn scalar_p256(label: &str, i: u64) -> p256::Scalar {
        let bytes = crate::crypto::test_util::bytes(label, i, 32);
        let fb = p256::FieldBytes::try_from(bytes.as_slice()).expect("32 bytes");
        p256::Scalar::reduce(&fb)
    }

    #[test]
    fn windows_and_limbs() {
        let mut be = [0u8; 32];
        be[31] = 0b1011_0110;
        be[30] = 0x01;
        let limbs = to_limbs(&be);
        assert_eq!(limbs[0], 0x01b6);
        assert_eq!(extract_window(&limbs, 0, 4), 0b0110);
        assert_eq!(extract_window(&limbs, 4, 4), 0b1011);
        assert_eq!(extract_window(&limbs, 8, 4), 0b0001);
        // Across a limb boundary.
        let limbs = [1u64 << 63, 0b101, 0, 0, 0, 0, 0];
        assert_eq!(extract_window(&limbs, 62, 5), 0b10110);
        // Past the end.
        assert_eq!(extract_window(&limbs, 7 * 64 - 2, 5), 0);
        assert_eq!(extract_window(&limbs, 1000, 5), 0);
    }

    #[test]
    fn p256_comb_matches_plain_multiplication() {
        let g = p256::ProjectivePoint::GENERATOR;
        for window in [2, 4, 5, 6] {
            let comb = Comb::<NistP256>::new(&g, window);
            let mut cases = vec![
                p256::Scalar::ZERO,
                p256::Scalar::ONE,
                -p256::Scalar::ONE,
                -p256::Scalar::from(2u32),
                p256::Scalar::from(u64::MAX),
            ];
            cases.extend((0..8).map(|i| scalar_p256("comb", i)));
            for k in cases {
                let mut acc = p256::ProjectivePoint::IDENTITY;
                assert!(comb.add_multiple(&mut acc, &k));
                assert_eq!(acc, g * k, "window {window}");
            }
        }
    }

    #[test]
    fn p384_comb_matches_plain_multiplication() {
        let q = p384::ProjectivePoint::GENERATOR * p384::Scalar::from(12345u32);
        for window in [4, 5] {
            let comb = Comb::<NistP384>::new(&q, window);
            for k in [
                p384::Scalar::ZERO,
                p384::Scalar::ONE,
                -p384::Scalar::ONE,
                p384::Scalar::from(0xdead_beef_u64),
            ] {
                let mut acc = p384::ProjectivePoint::IDENTITY;
                assert!(comb.add_multiple(&mut acc, &k));
                assert_eq!(acc, q * k);
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(48))]

        /// Random scalars, windows and bases: the comb sum equals the
        /// crate's own scalar multiplication.
        #[test]
        fn comb_equals_scalar_multiplication(
            k in proptest::prelude::any::<[u8; 32]>(),
            base in 1u64..1_000_000,
            window in 2u32..=7,
        ) {
            let k = p256::Scalar::reduce(&p256::FieldBytes::from(k));
            let p = p256::ProjectivePoint::GENERATOR * p256::Scalar::from(base);
            let comb = Comb::<NistP256>::new(&p, window);
            let mut acc = p256::ProjectivePoint::IDENTITY;
            proptest::prop_assert!(comb.add_multiple(&mut acc, &k));
            proptest::prop_assert_eq!(acc, p * k);
        }
    }

    #[test]
    fn zero_scalar_leaves_identity() {
        let comb = Comb::<NistP256>::new(&p256::ProjectivePoint::GENERATOR, 5);
        let mut acc = p256::ProjectivePoint::IDENTITY;
        assert!(comb.add_multiple(&mut acc, &p256::Scalar::ZERO));
        assert!(bool::from(acc.is_identity()));
    }
}
