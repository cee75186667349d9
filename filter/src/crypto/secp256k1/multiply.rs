//! `u1·G + u2·Q` in one loop of about 128 doublings: both scalars split in
//! halves with the endomorphism (GLV), recoded in signed digits (wNAF), the
//! generator's digits looked up in tables built once per process.

use super::field::*;
use super::point::*;
use k256::Scalar;
use k256::elliptic_curve::ops::Reduce;
use k256::elliptic_curve::scalar::IsHigh as _;
use std::sync::OnceLock;

/// Width of the signed digits for the generator (its table holds
/// 2^(w-2) odd multiples for each of G and λ·G).
const G_WINDOW: u32 = 8;
/// Width for the per-call point (2^(w-2) = 8 odd multiples).
const Q_WINDOW: u32 = 5;
const Q_TABLE: usize = 1 << (Q_WINDOW - 2);

/// The cube root of unity mod n matching [`BETA`], big-endian.
pub(super) const LAMBDA: [u8; 32] = [
    0x53, 0x63, 0xad, 0x4c, 0xc0, 0x5c, 0x30, 0xe0, 0xa5, 0x26, 0x1c, 0x02, 0x88, 0x12, 0x64, 0x5a,
    0x12, 0x2e, 0x22, 0xea, 0x20, 0x81, 0x66, 0x78, 0xdf, 0x02, 0x96, 0x7c, 0x1b, 0x23, 0xbd, 0x72,
];
/// Second coordinates (up to sign) of a short basis of the lattice
/// {(a, b) : a + b·λ ≡ 0 mod n}: v1 = (a1, -B1) and v2 = (a2, B2), see
/// [`split`].
pub(super) const B1: u128 = 0xe443_7ed6_010e_8828_6f54_7fa9_0abf_e4c3;
pub(super) const B2: u128 = 0x3086_d221_a7d4_6bcd_e86c_90e4_9284_eb15;
/// round(2^384 · B2 / n) and round(2^384 · B1 / n), little-endian words.
pub(super) const G1: [u64; 4] = [
    0xE893_209A_45DB_B031,
    0x3DAA_8A14_71E8_CA7F,
    0xE86C_90E4_9284_EB15,
    0x3086_D221_A7D4_6BCD,
];
pub(super) const G2: [u64; 4] = [
    0x1571_B4AE_8AC4_7F71,
    0x2212_08AC_9DF5_06C6,
    0x6F54_7FA9_0ABF_E4C4,
    0xE443_7ED6_010E_8828,
];

pub(super) struct GeneratorTables {
    /// (2j+1)·G and (2j+1)·λG for j < 2^(G_WINDOW-2).
    pub(super) g: Vec<Affine>,
    pub(super) g_lambda: Vec<Affine>,
    pub(super) lambda: Scalar,
}

pub(super) fn generator_tables() -> &'static GeneratorTables {
    static TABLES: OnceLock<GeneratorTables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut multiples = vec![Jacobian::INFINITY; 1 << (G_WINDOW - 2)];
        odd_multiples(&Affine::generator().to_jacobian(), &mut multiples);
        let g = batch_to_affine(&multiples);
        let g_lambda = g.iter().map(|p| p.endomorphism()).collect();
        let lambda = <Scalar as Reduce<k256::FieldBytes>>::reduce(&k256::FieldBytes::from(LAMBDA));
        GeneratorTables {
            g,
            g_lambda,
            lambda,
        }
    })
}

/// A scalar half from [`split`]: a magnitude and a sign.
pub(super) struct Half {
    pub(super) magnitude: [u64; 4],
    pub(super) negative: bool,
}

/// Splits k into k1 + k2·λ (mod n) with |k1|, |k2| about 2^128
/// (Gallant–Lambert–Vanstone, with the rounded divisions by n replaced by
/// multiplications by precomputed 2^384/n multiples). With the lattice
/// vectors v1 = (a1, -B1) and v2 = (a2, B2), c1 = round(B2·k/n) and
/// c2 = round(B1·k/n): k2 = c1·B1 - c2·B2 and k1 = k - k2·λ.
pub(super) fn split(k: &Scalar, lambda: &Scalar) -> (Half, Half) {
    let words = words_from_be(&k.to_bytes()).unwrap_or([0; 4]);
    let c1 = Scalar::from(mul_shift_384(&words, &G1));
    let c2 = Scalar::from(mul_shift_384(&words, &G2));
    let k2 = c1 * Scalar::from(B1) - c2 * Scalar::from(B2);
    let k1 = *k - k2 * lambda;
    (half(k1), half(k2))
}

pub(super) fn half(s: Scalar) -> Half {
    let negative = bool::from(s.is_high());
    let magnitude = if negative { -s } else { s };
    Half {
        magnitude: words_from_be(&magnitude.to_bytes()).unwrap_or([0; 4]),
        negative,
    }
}

/// round(a·b / 2^384) for 256-bit a, b (the result fits 128 bits).
pub(super) fn mul_shift_384(a: &[u64; 4], b: &[u64; 4]) -> u128 {
    let mut product = [0u64; 8];
    for (i, &x) in a.iter().enumerate() {
        let mut carry = 0u128;
        for (slot, &y) in product.iter_mut().skip(i).zip(b) {
            let v = u128::from(*slot) + u128::from(x) * u128::from(y) + carry;
            *slot = v as u64;
            carry = v >> 64;
        }
        if let Some(slot) = product.get_mut(i + 4) {
            *slot = carry as u64;
        }
    }
    let [_, _, _, _, _, p5, p6, p7] = product;
    // Round: add 2^383 (bit 63 of word 5).
    let (_, round_up) = p5.overflowing_add(1 << 63);
    ((u128::from(p7) << 64) | u128::from(p6)).wrapping_add(u128::from(round_up))
}

/// Room for the signed digits of a 256-bit magnitude (one more digit may
/// come from the final carry).
pub(super) const MAX_DIGITS: usize = 258;

/// Width-w non-adjacent form: digits least significant first, each zero or
/// odd in (-2^(w-1), 2^(w-1)), with any w consecutive digits holding at
/// most one non-zero. Returns the digits and how many are used.
pub(super) fn wnaf(magnitude: &[u64; 4], w: u32) -> ([i16; MAX_DIGITS], usize) {
    let mut digits = [0i16; MAX_DIGITS];
    let mut len = 0;
    let mut carry = 0u64;
    let mut bit = 0u32;
    while (bit as usize) < MAX_DIGITS {
        // A bit equal to the pending carry gives a zero digit (0 + 0, or
        // 1 + 1 which passes the carry on).
        if bits(magnitude, bit, 1) == carry {
            bit += 1;
            continue;
        }
        // Here bit + carry = 1, so the window value is odd.
        let window = bits(magnitude, bit, w) + carry;
        carry = (window >> (w - 1)) & 1;
        let digit = window as i64 - ((carry << w) as i64);
        if let Some(slot) = digits.get_mut(bit as usize) {
            *slot = digit as i16;
            len = bit as usize + 1;
        }
        bit += w;
    }
    (digits, len)
}

/// The `count` (at most 32) bits of a little-endian value starting at
/// bit `offset`; bits past the end read as zero.
pub(super) fn bits(words: &[u64; 4], offset: u32, count: u32) -> u64 {
    let index = (offset / 64) as usize;
    let shift = offset % 64;
    let low = words.get(index).copied().unwrap_or(0) >> shift;
    let high = if shift + count > 64 {
        words.get(index + 1).copied().unwrap_or(0) << (64 - shift)
    } else {
        0
    };
    (low | high) & ((1u64 << count) - 1)
}

/// `±table[|d| / 2]` for an odd digit d; the sign flips for a negative
/// digit and again for a negative scalar half.
pub(super) fn lookup<T: Copy>(table: &[T], digit: i16, negative_half: bool) -> Option<(T, bool)> {
    let entry = table.get(usize::from(digit.unsigned_abs() / 2))?;
    Some((*entry, (digit < 0) != negative_half))
}

/// `u1·G + u2·Q`. `None` only if a digit fell outside a table, which the
/// recoding rules out; callers treat it as a failed verification.
pub(super) fn mul_add_generator(u1: &Scalar, u2: &Scalar, q: &Affine) -> Option<Jacobian> {
    let tables = generator_tables();
    let (g1, g2) = split(u1, &tables.lambda);
    let (q1, q2) = split(u2, &tables.lambda);
    let (dg1, lg1) = wnaf(&g1.magnitude, G_WINDOW);
    let (dg2, lg2) = wnaf(&g2.magnitude, G_WINDOW);
    let (dq1, lq1) = wnaf(&q1.magnitude, Q_WINDOW);
    let (dq2, lq2) = wnaf(&q2.magnitude, Q_WINDOW);

    let mut q_table = [Jacobian::INFINITY; Q_TABLE];
    odd_multiples(&q.to_jacobian(), &mut q_table);
    let q_lambda = q_table.map(Jacobian::endomorphism);

    let len = lg1.max(lg2).max(lq1).max(lq2);
    let mut acc = Jacobian::INFINITY;
    for i in (0..len).rev() {
        acc = acc.double();
        for (digits, half, table) in [(&dg1, &g1, &tables.g), (&dg2, &g2, &tables.g_lambda)] {
            let digit = *digits.get(i)?;
            if digit != 0 {
                let (point, negate) = lookup(table, digit, half.negative)?;
                acc = acc.add_affine(&if negate { point.neg() } else { point });
            }
        }
        for (digits, half, table) in [(&dq1, &q1, &q_table), (&dq2, &q2, &q_lambda)] {
            let digit = *digits.get(i)?;
            if digit != 0 {
                let (point, negate) = lookup(table, digit, half.negative)?;
                acc = acc.add(&if negate { point.neg() } else { point });
            }
        }
    }
    Some(acc)
}
