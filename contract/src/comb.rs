//! Fixed-base scalar multiplication with a full comb of affine points,
//! shared by the filter's ECDSA verification and the gateway's ES256
//! signing ([`crate::gateway_keys`]), which both multiply P-256's generator
//! and so share one table of it ([`p256_generator`]).
//!
//! ECDSA verification computes `u1·G + u2·Q`, signing `k·G`. The points
//! are fixed for a long time (G forever, Q for the life of a JWKS), while
//! the scalars change on every use, so it pays to precompute, once per
//! point,
//!
//! ```text
//! table[i][j-1] = j · 2^(w·i) · P      for every window position i, j in 1..=2^(w-1)
//! ```
//!
//! A scalar written in signed base-2^w digits `k = Σ d_i · 2^(w·i)` with
//! `d_i` in `[-(2^(w-1) - 1), 2^(w-1)]` is then `Σ ±table[i][|d_i| - 1]`: one
//! mixed (projective + affine) addition per digit, no doublings at all.
//! Negative digits reuse the positive entry with `y` negated, which halves
//! the table compared with unsigned digits.
//!
//! Two ways to sum: [`Comb::add_multiple`] is variable time (it skips zero
//! digits and reads only the entry it needs), which is fine for
//! verification, whose inputs are all public; [`Comb::mul_constant_time`]
//! reads every entry of every row and adds at each position, so neither
//! its timing nor its memory accesses depend on the scalar, as a signing
//! nonce needs. Both are some five times faster inside V8 than the curve
//! crate's own multiplication, which doubles 256 times.

use primeorder::elliptic_curve::group::Curve as _;
use primeorder::elliptic_curve::ops::Double as _;
use primeorder::elliptic_curve::subtle::{
    Choice, ConditionallySelectable as _, ConstantTimeEq as _,
};
use primeorder::{AffinePoint, PrimeCurveParams, PrimeField, ProjectivePoint, Scalar};
use std::sync::OnceLock;

/// Little-endian 64-bit limbs; 7 limbs hold a 384-bit scalar plus the bits
/// a top window may read past its end.
const LIMBS: usize = 7;

/// P-256's generator table: 37 × 64 points (~170 KB), at most 37
/// additions per multiplication; wide enough that verification stays
/// cheap, and for the constant-time sum no slower than narrower windows
/// (fewer additions make up for the longer rows it reads).
const P256_GENERATOR_WINDOW: u32 = 7;

/// The table of P-256's generator, built once per process (wasm VM) on
/// first use.
pub fn p256_generator() -> &'static Comb<p256::NistP256> {
    static TABLE: OnceLock<Comb<p256::NistP256>> = OnceLock::new();
    TABLE.get_or_init(|| Comb::new(&ProjectivePoint::GENERATOR, P256_GENERATOR_WINDOW))
}

pub struct Comb<C: PrimeCurveParams> {
    window: u32,
    positions: u32,
    /// Row-major: `points[i * 2^(w-1) + (j - 1)] = j · 2^(w·i) · P`.
    points: Vec<AffinePoint<C>>,
}

impl<C: PrimeCurveParams> Comb<C> {
    /// Builds the table for `point` with `window`-bit signed digits
    /// (clamped to 2..=8). Costs one projective addition per entry plus a
    /// single field inversion shared by the whole table.
    pub fn new(point: &ProjectivePoint<C>, window: u32) -> Self {
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

    /// The table's rows, one per window position, least significant first.
    fn rows(&self) -> std::slice::ChunksExact<'_, AffinePoint<C>> {
        self.points.chunks_exact(1 << (self.window - 1))
    }

    /// Adds `k · P` to `acc`, in variable time. Returns `false` only if `k`
    /// did not fit the table, which cannot happen for a reduced scalar;
    /// callers treat it as a failed verification rather than trusting an
    /// incomplete sum.
    pub fn add_multiple(&self, acc: &mut ProjectivePoint<C>, k: &Scalar<C>) -> bool {
        let mut digits = Digits::new::<C>(k, self.window, self.positions);
        for (row, digit) in self.rows().zip(&mut digits) {
            if digit == 0 {
                continue;
            }
            let Some(entry) = row.get(digit.unsigned_abs() as usize - 1) else {
                return false;
            };
            if digit > 0 {
                *acc += entry;
            } else {
                *acc += -*entry;
            }
        }
        digits.carry == 0
    }

    /// `k · P` in constant time: every position selects its entry by
    /// reading the whole row (a zero digit selects the identity) and adds
    /// it. For a reduced scalar the top digit takes the last carry, since
    /// the rows cover one bit more than the scalar's width.
    pub fn mul_constant_time(&self, k: &Scalar<C>) -> ProjectivePoint<C> {
        let mut acc = ProjectivePoint::<C>::IDENTITY;
        for (row, digit) in self
            .rows()
            .zip(Digits::new::<C>(k, self.window, self.positions))
        {
            let negative = Choice::from(u8::from(digit < 0));
            let magnitude = digit.unsigned_abs();
            let mut entry = AffinePoint::<C>::IDENTITY;
            for (j, candidate) in (1u32..).zip(row) {
                entry.conditional_assign(candidate, magnitude.ct_eq(&j));
            }
            let negated = -entry;
            entry.conditional_assign(&negated, negative);
            acc += &entry;
        }
        acc
    }

    /// Heap bytes held by the table.
    pub fn table_bytes(&self) -> usize {
        self.points.len() * std::mem::size_of::<AffinePoint<C>>()
    }
}

/// A scalar's signed base-2^w digits, least significant first, computed
/// without branching on the scalar: the constant-time sum depends on it.
struct Digits {
    limbs: [u64; LIMBS],
    window: u32,
    next: u32,
    positions: u32,
    /// What the digits so far carried into the next one.
    carry: i32,
}

impl Digits {
    fn new<C: PrimeCurveParams>(k: &Scalar<C>, window: u32, positions: u32) -> Self {
        Digits {
            limbs: to_limbs(k.to_repr().as_slice()),
            window,
            next: 0,
            positions,
            carry: 0,
        }
    }
}

impl Iterator for Digits {
    type Item = i32;

    fn next(&mut self) -> Option<i32> {
        if self.next == self.positions {
            return None;
        }
        let w = self.window;
        let raw = extract_window(&self.limbs, self.next * w, w) as i32 + self.carry;
        // raw > 2^(w-1) becomes raw - 2^w, carrying one: the sign bit of
        // 2^(w-1) - raw is that carry.
        self.carry = (((1i32 << (w - 1)) - raw) >> 31) & 1;
        self.next += 1;
        Some(raw - (self.carry << w))
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
/// significant); bits past the end read as zero. Which limbs are read
/// depends on the offset alone.
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
    use sha2::Digest as _;

    fn scalar_p256(label: &str, i: u64) -> p256::Scalar {
        let digest: [u8; 32] = sha2::Sha256::new()
            .chain_update(label)
            .chain_update(i.to_be_bytes())
            .finalize()
            .into();
        p256::Scalar::reduce(&p256::FieldBytes::from(digest))
    }

    /// Scalars at the edges of the recoding (zero, one, n-1, every digit
    /// at its largest) and some ordinary ones.
    fn p256_cases() -> Vec<p256::Scalar> {
        let mut cases = vec![
            p256::Scalar::ZERO,
            p256::Scalar::ONE,
            -p256::Scalar::ONE,
            -p256::Scalar::from(2u32),
            p256::Scalar::from(u64::MAX),
            p256::Scalar::reduce(&p256::FieldBytes::from([0x7f; 32])),
            p256::Scalar::reduce(&p256::FieldBytes::from([0x40; 32])),
        ];
        cases.extend((0..8).map(|i| scalar_p256("comb", i)));
        cases
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
    fn digits_are_in_range_and_sum_to_the_scalar() {
        for window in 2..=8 {
            let positions = 257u32.div_ceil(window);
            for k in p256_cases() {
                let mut digits = Digits::new::<NistP256>(&k, window, positions);
                let mut sum = p256::Scalar::ZERO;
                let mut weight = p256::Scalar::ONE;
                let radix = p256::Scalar::from(1u64 << window);
                for digit in &mut digits {
                    assert!(digit.unsigned_abs() <= 1 << (window - 1), "{digit}");
                    assert!(digit > -(1 << (window - 1)), "{digit}");
                    let magnitude = p256::Scalar::from(u64::from(digit.unsigned_abs()));
                    sum += if digit < 0 { -magnitude } else { magnitude } * weight;
                    weight *= radix;
                }
                assert_eq!(digits.carry, 0);
                assert_eq!(sum, k, "window {window}");
            }
        }
    }

    #[test]
    fn p256_comb_matches_plain_multiplication() {
        let g = p256::ProjectivePoint::GENERATOR;
        for window in [2, 4, 5, 6, 7] {
            let comb = Comb::<NistP256>::new(&g, window);
            for k in p256_cases() {
                let mut acc = p256::ProjectivePoint::IDENTITY;
                assert!(comb.add_multiple(&mut acc, &k));
                assert_eq!(acc, g * k, "window {window}");
                assert_eq!(comb.mul_constant_time(&k), g * k, "window {window}");
            }
        }
    }

    #[test]
    fn the_shared_generator_table_is_p256s() {
        let k = scalar_p256("generator", 0);
        assert_eq!(
            p256_generator().mul_constant_time(&k),
            p256::ProjectivePoint::GENERATOR * k
        );
        assert!(p256_generator().table_bytes() <= 192 * 1024);
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
                assert_eq!(comb.mul_constant_time(&k), q * k);
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(48))]

        /// Random scalars, windows and bases: both comb sums equal the
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
            proptest::prop_assert_eq!(comb.mul_constant_time(&k), p * k);
        }
    }

    #[test]
    fn zero_scalar_leaves_identity() {
        let comb = Comb::<NistP256>::new(&p256::ProjectivePoint::GENERATOR, 5);
        let mut acc = p256::ProjectivePoint::IDENTITY;
        assert!(comb.add_multiple(&mut acc, &p256::Scalar::ZERO));
        assert!(bool::from(acc.is_identity()));
        assert!(bool::from(
            comb.mul_constant_time(&p256::Scalar::ZERO).is_identity()
        ));
    }
}
