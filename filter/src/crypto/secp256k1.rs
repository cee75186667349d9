//! ECDSA over secp256k1 (ES256K, RFC 8812 §3.2): verification and public
//! key recovery, for `did:key` secp256k1 keys and `did:pkh` Ethereum
//! addresses.
//!
//! Scalars (integers mod the group order n) are `k256`'s. The field and
//! point arithmetic are our own, for speed inside V8: `k256` picks its
//! 64-bit field backend on wasm32, whose 128-bit products wasm has no
//! instruction for, and a `cfg` to choose the 32-bit backend would apply to
//! every crate (and slow P-256 down). Here field elements are ten 26-bit
//! limbs whose products are plain 64-bit multiplications on every target.
//!
//! A verification computes `u1·G + u2·Q` in one loop of about 128
//! doublings, using the curve's endomorphism `λ·(x, y) = (β·x, y)` to split
//! each scalar into two halves of about 128 bits (GLV). The digits of the
//! generator's halves index a small table built once per process (64 odd
//! multiples of `G` and of `λ·G`, 10 KB); the other point gets 8 odd
//! multiples built per call, since DID keys are seen once.
//!
//! Points use Jacobian coordinates with the `a = 0` formulas; the final
//! `x(R) == r` test compares `X` with `r·Z²` so no inversion is needed.
//! Everything is variable time: signatures, messages and public keys are
//! public.
//!
//! High-S signatures are refused on every path: secp256k1 signers produce
//! low-S ones (Bitcoin's relay policy and Ethereum's transaction rules
//! demand them), and refusing the other half means a signature cannot be
//! altered into a second valid one.

use super::SignatureError;
use k256::Scalar;
use k256::elliptic_curve::ff::PrimeField as _;
use k256::elliptic_curve::ops::Reduce;
use k256::elliptic_curve::scalar::IsHigh as _;
use std::sync::OnceLock;

/// Width of the signed digits for the generator (its table holds
/// 2^(w-2) odd multiples for each of G and λ·G).
const G_WINDOW: u32 = 8;
/// Width for the per-call point (2^(w-2) = 8 odd multiples).
const Q_WINDOW: u32 = 5;
const Q_TABLE: usize = 1 << (Q_WINDOW - 2);

// ---------------------------------------------------------------------------
// Field arithmetic mod p = 2^256 - 2^32 - 977.
// ---------------------------------------------------------------------------

const M26: u64 = (1 << 26) - 1;
const M22: u64 = (1 << 22) - 1;
/// 2^260 mod p = 2^36 + 0x3D10; the 2^36 part is 2^10 one limb up.
const R260_LOW: u64 = 0x3D10;

/// p as little-endian 64-bit words.
const P_WORDS: [u64; 4] = [0xFFFF_FFFE_FFFF_FC2F, u64::MAX, u64::MAX, u64::MAX];

/// 4·p in 26-bit limbs: every limb is larger than the matching limb of a
/// weakly normalised element (2^27 and 2^22), so `4p - b` needs no borrow.
const FOUR_P: [u64; 10] = [
    0x3FF_FC2F * 4,
    0x3FF_FFBF * 4,
    M26 * 4,
    M26 * 4,
    M26 * 4,
    M26 * 4,
    M26 * 4,
    M26 * 4,
    M26 * 4,
    M22 * 4,
];

/// A field element in ten little-endian 26-bit limbs (the last holds 22
/// bits). Weakly normalised: limbs 0..=8 below 2^27 and limb 9 below 2^22,
/// so the value is below 2^257 and not necessarily below p. Products of
/// such limbs sum to columns below 2^58, and `4p - b` needs no borrow.
#[derive(Clone, Copy, Debug)]
struct Fe([u32; 10]);

impl Fe {
    const ZERO: Fe = Fe([0; 10]);
    const ONE: Fe = Fe([1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

    /// From little-endian 64-bit words holding a value below 2^256.
    const fn from_words(w: [u64; 4]) -> Fe {
        let [w0, w1, w2, w3] = w;
        Fe([
            (w0 & M26) as u32,
            ((w0 >> 26) & M26) as u32,
            (((w0 >> 52) | (w1 << 12)) & M26) as u32,
            ((w1 >> 14) & M26) as u32,
            (((w1 >> 40) | (w2 << 24)) & M26) as u32,
            ((w2 >> 2) & M26) as u32,
            ((w2 >> 28) & M26) as u32,
            (((w2 >> 54) | (w3 << 10)) & M26) as u32,
            ((w3 >> 16) & M26) as u32,
            (w3 >> 42) as u32,
        ])
    }

    /// Big-endian bytes; `None` unless the value is below p.
    fn from_bytes(bytes: &[u8]) -> Option<Fe> {
        let words = words_from_be(bytes)?;
        if less_than(&words, &P_WORDS) {
            Some(Fe::from_words(words))
        } else {
            None
        }
    }

    /// Canonical big-endian bytes.
    fn to_bytes(self) -> [u8; 32] {
        words_to_be(&self.canonical_words())
    }

    /// The value fully reduced below p, as little-endian words.
    fn canonical_words(self) -> [u64; 4] {
        let mut t = self.0.map(u64::from);
        // Fold everything at or above 2^256 (2^256 = 2^32 + 977 mod p)
        // until the value is below 2^256; two rounds always suffice.
        for _ in 0..2 {
            let [t0, t1, .., t9] = &mut t;
            let top = *t9 >> 22;
            *t9 &= M22;
            *t0 += top * 977;
            *t1 += top << 6;
            ripple(&mut t);
        }
        // Subtract p if the value is >= p, i.e. if value + (2^256 - p)
        // reaches 2^256.
        let mut u = t;
        {
            let [u0, u1, ..] = &mut u;
            *u0 += 977;
            *u1 += 1 << 6;
        }
        ripple(&mut u);
        let [.., u9] = &mut u;
        if *u9 >> 22 != 0 {
            *u9 &= M22;
            t = u;
        }
        limbs_to_words(&t)
    }

    fn is_zero(self) -> bool {
        self.canonical_words().iter().fold(0, |acc, w| acc | w) == 0
    }

    fn is_odd(self) -> bool {
        self.canonical_words()[0] & 1 == 1
    }

    fn equals(self, other: Fe) -> bool {
        self.sub(other).is_zero()
    }

    fn add(self, rhs: Fe) -> Fe {
        let mut t = [0u64; 10];
        for ((out, &a), &b) in t.iter_mut().zip(&self.0).zip(&rhs.0) {
            *out = u64::from(a) + u64::from(b);
        }
        carry(t)
    }

    fn sub(self, rhs: Fe) -> Fe {
        let mut t = [0u64; 10];
        for (((out, &a), &b), &four_p) in t.iter_mut().zip(&self.0).zip(&rhs.0).zip(&FOUR_P) {
            *out = u64::from(a) + four_p - u64::from(b);
        }
        carry(t)
    }

    /// `self - k·rhs` for a small k (at most 8), in one normalisation.
    fn sub_scaled(self, rhs: Fe, k: u32) -> Fe {
        let k = u64::from(k);
        let mut t = [0u64; 10];
        for (((out, &a), &b), &four_p) in t.iter_mut().zip(&self.0).zip(&rhs.0).zip(&FOUR_P) {
            // k·4p - k·b >= 0 limb by limb, since 4p >= b limb by limb.
            *out = u64::from(a) + k * (four_p - u64::from(b));
        }
        carry(t)
    }

    fn neg(self) -> Fe {
        Fe::ZERO.sub(self)
    }

    /// `self · k` for a small constant (k < 2^16).
    fn mul_small(self, k: u32) -> Fe {
        carry(self.0.map(|a| u64::from(a) * u64::from(k)))
    }

    fn mul(self, rhs: Fe) -> Fe {
        // Limbs are below 2^27: a column sums at most ten products below
        // 2^54. Written out column by column so every target compiles it
        // to straight-line 64-bit multiplications.
        let [a0, a1, a2, a3, a4, a5, a6, a7, a8, a9] = self.0.map(u64::from);
        let [b0, b1, b2, b3, b4, b5, b6, b7, b8, b9] = rhs.0.map(u64::from);
        reduce_wide([
            a0 * b0,
            a0 * b1 + a1 * b0,
            a0 * b2 + a1 * b1 + a2 * b0,
            a0 * b3 + a1 * b2 + a2 * b1 + a3 * b0,
            a0 * b4 + a1 * b3 + a2 * b2 + a3 * b1 + a4 * b0,
            a0 * b5 + a1 * b4 + a2 * b3 + a3 * b2 + a4 * b1 + a5 * b0,
            a0 * b6 + a1 * b5 + a2 * b4 + a3 * b3 + a4 * b2 + a5 * b1 + a6 * b0,
            a0 * b7 + a1 * b6 + a2 * b5 + a3 * b4 + a4 * b3 + a5 * b2 + a6 * b1 + a7 * b0,
            a0 * b8 + a1 * b7 + a2 * b6 + a3 * b5 + a4 * b4 + a5 * b3 + a6 * b2 + a7 * b1 + a8 * b0,
            a0 * b9
                + a1 * b8
                + a2 * b7
                + a3 * b6
                + a4 * b5
                + a5 * b4
                + a6 * b3
                + a7 * b2
                + a8 * b1
                + a9 * b0,
            a1 * b9 + a2 * b8 + a3 * b7 + a4 * b6 + a5 * b5 + a6 * b4 + a7 * b3 + a8 * b2 + a9 * b1,
            a2 * b9 + a3 * b8 + a4 * b7 + a5 * b6 + a6 * b5 + a7 * b4 + a8 * b3 + a9 * b2,
            a3 * b9 + a4 * b8 + a5 * b7 + a6 * b6 + a7 * b5 + a8 * b4 + a9 * b3,
            a4 * b9 + a5 * b8 + a6 * b7 + a7 * b6 + a8 * b5 + a9 * b4,
            a5 * b9 + a6 * b8 + a7 * b7 + a8 * b6 + a9 * b5,
            a6 * b9 + a7 * b8 + a8 * b7 + a9 * b6,
            a7 * b9 + a8 * b8 + a9 * b7,
            a8 * b9 + a9 * b8,
            a9 * b9,
        ])
    }

    fn square(self) -> Fe {
        let [a0, a1, a2, a3, a4, a5, a6, a7, a8, a9] = self.0.map(u64::from);
        let [d0, d1, d2, d3, d4, d5, d6, d7, d8] =
            [a0, a1, a2, a3, a4, a5, a6, a7, a8].map(|a| 2 * a);
        reduce_wide([
            a0 * a0,
            d0 * a1,
            d0 * a2 + a1 * a1,
            d0 * a3 + d1 * a2,
            d0 * a4 + d1 * a3 + a2 * a2,
            d0 * a5 + d1 * a4 + d2 * a3,
            d0 * a6 + d1 * a5 + d2 * a4 + a3 * a3,
            d0 * a7 + d1 * a6 + d2 * a5 + d3 * a4,
            d0 * a8 + d1 * a7 + d2 * a6 + d3 * a5 + a4 * a4,
            d0 * a9 + d1 * a8 + d2 * a7 + d3 * a6 + d4 * a5,
            d1 * a9 + d2 * a8 + d3 * a7 + d4 * a6 + a5 * a5,
            d2 * a9 + d3 * a8 + d4 * a7 + d5 * a6,
            d3 * a9 + d4 * a8 + d5 * a7 + a6 * a6,
            d4 * a9 + d5 * a8 + d6 * a7,
            d5 * a9 + d6 * a8 + a7 * a7,
            d6 * a9 + d7 * a8,
            d7 * a9 + a8 * a8,
            d8 * a9,
            a9 * a9,
        ])
    }

    fn square_n(self, n: u32) -> Fe {
        let mut x = self;
        for _ in 0..n {
            x = x.square();
        }
        x
    }

    /// `self^(2^223 - 1)`, with the intermediate `self^(2^k - 1)` for
    /// k = 2, 3 and 22 that both exponent chains below finish with.
    fn pow_2_223_minus_1(self) -> (Fe, Fe, Fe, Fe) {
        let x2 = self.square().mul(self);
        let x3 = x2.square().mul(self);
        let x6 = x3.square_n(3).mul(x3);
        let x9 = x6.square_n(3).mul(x3);
        let x11 = x9.square_n(2).mul(x2);
        let x22 = x11.square_n(11).mul(x11);
        let x44 = x22.square_n(22).mul(x22);
        let x88 = x44.square_n(44).mul(x44);
        let x176 = x88.square_n(88).mul(x88);
        let x220 = x176.square_n(44).mul(x44);
        let x223 = x220.square_n(3).mul(x3);
        (x223, x22, x3, x2)
    }

    /// `self^(p-2)`, the inverse of a non-zero element (zero maps to zero).
    /// p - 2 in binary: 223 ones, a zero, 22 ones, then 0000101101.
    fn invert(self) -> Fe {
        let (x223, x22, _, x2) = self.pow_2_223_minus_1();
        let t = x223.square_n(23).mul(x22);
        let t = t.square_n(5).mul(self);
        let t = t.square_n(3).mul(x2);
        t.square_n(2).mul(self)
    }

    /// A square root, `None` if there is none. p ≡ 3 (mod 4), so the
    /// candidate is `self^((p+1)/4)`; (p+1)/4 in binary: 223 ones, a zero,
    /// 22 ones, then 00001100.
    fn sqrt(self) -> Option<Fe> {
        let (x223, x22, _, x2) = self.pow_2_223_minus_1();
        let t = x223.square_n(23).mul(x22);
        let t = t.square_n(6).mul(x2);
        let root = t.square_n(2);
        if root.square().equals(self) {
            Some(root)
        } else {
            None
        }
    }
}

/// Carries limbs 0..=8 up so each is below 2^26; limb 9 keeps the rest.
fn ripple(t: &mut [u64; 10]) {
    let mut c = 0u64;
    for x in t.iter_mut().take(9) {
        *x += c;
        c = *x >> 26;
        *x &= M26;
    }
    let [.., t9] = t;
    *t9 += c;
}

/// Weakly normalises limbs that may each be up to 2^63.
fn carry(mut t: [u64; 10]) -> Fe {
    ripple(&mut t);
    let [t0, t1, t2, .., t9] = &mut t;
    // Bits from 256 up: 2^256 = 2^32 + 977 (mod p), 2^32 being 2^6 one
    // limb up. The fold adds at most 2^51 to limb 0 and 2^47 to limb 1;
    // two carry steps then leave limb 2 below 2^26 + 2^22.
    let top = *t9 >> 22;
    *t9 &= M22;
    *t0 += top * 977;
    *t1 += top << 6;
    *t1 += *t0 >> 26;
    *t0 &= M26;
    *t2 += *t1 >> 26;
    *t1 &= M26;
    Fe(t.map(|x| x as u32))
}

/// Reduces a 19-column product (columns below 2^58) to a weakly
/// normalised element.
fn reduce_wide(t: [u64; 19]) -> Fe {
    let [
        l0,
        l1,
        l2,
        l3,
        l4,
        l5,
        l6,
        l7,
        l8,
        l9,
        h0,
        h1,
        h2,
        h3,
        h4,
        h5,
        h6,
        h7,
        h8,
    ] = t;
    // Column 10 + k weighs 2^260 · 2^(26k) = (2^36 + 0x3D10) · 2^(26k):
    // 0x3D10 times it lands on limb k and 2^10 times it on limb k + 1.
    // Each column is split at bit 26 first, so no product overflows and no
    // carry chain is needed before folding; the upper part of column 18,
    // whose 2^10 share would land on limb 10 again, is folded twice.
    let lo = |h: u64| h & M26;
    let hi = |h: u64| h >> 26;
    carry([
        l0 + lo(h0) * R260_LOW + (hi(h8) << 10) * R260_LOW,
        l1 + (lo(h0) << 10) + lo(h1) * R260_LOW + hi(h0) * R260_LOW + (hi(h8) << 20),
        l2 + (lo(h1) << 10) + lo(h2) * R260_LOW + hi(h1) * R260_LOW + (hi(h0) << 10),
        l3 + (lo(h2) << 10) + lo(h3) * R260_LOW + hi(h2) * R260_LOW + (hi(h1) << 10),
        l4 + (lo(h3) << 10) + lo(h4) * R260_LOW + hi(h3) * R260_LOW + (hi(h2) << 10),
        l5 + (lo(h4) << 10) + lo(h5) * R260_LOW + hi(h4) * R260_LOW + (hi(h3) << 10),
        l6 + (lo(h5) << 10) + lo(h6) * R260_LOW + hi(h5) * R260_LOW + (hi(h4) << 10),
        l7 + (lo(h6) << 10) + lo(h7) * R260_LOW + hi(h6) * R260_LOW + (hi(h5) << 10),
        l8 + (lo(h7) << 10) + lo(h8) * R260_LOW + hi(h7) * R260_LOW + (hi(h6) << 10),
        l9 + (lo(h8) << 10) + hi(h8) * R260_LOW + (hi(h7) << 10),
    ])
}

/// Limbs (each below 2^26, limb 9 below 2^22) to little-endian words.
fn limbs_to_words(t: &[u64; 10]) -> [u64; 4] {
    let [l0, l1, l2, l3, l4, l5, l6, l7, l8, l9] = *t;
    [
        l0 | (l1 << 26) | (l2 << 52),
        (l2 >> 12) | (l3 << 14) | (l4 << 40),
        (l4 >> 24) | (l5 << 2) | (l6 << 28) | (l7 << 54),
        (l7 >> 10) | (l8 << 16) | (l9 << 42),
    ]
}

/// 32 big-endian bytes to little-endian words; `None` for another length.
fn words_from_be(bytes: &[u8]) -> Option<[u64; 4]> {
    if bytes.len() != 32 {
        return None;
    }
    let mut words = [0u64; 4];
    for (word, chunk) in words.iter_mut().rev().zip(bytes.chunks_exact(8)) {
        *word = u64::from_be_bytes(chunk.try_into().ok()?);
    }
    Some(words)
}

fn words_to_be(words: &[u64; 4]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(8).zip(words.iter().rev()) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// `a < b` for little-endian words.
fn less_than(a: &[u64; 4], b: &[u64; 4]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x < y;
        }
    }
    false
}

/// `a + b` for little-endian words, `None` on overflow past 2^256.
fn add_words(a: &[u64; 4], b: &[u64; 4]) -> Option<[u64; 4]> {
    let mut out = [0u64; 4];
    let mut carry = false;
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        let (s, c1) = x.overflowing_add(y);
        let (s, c2) = s.overflowing_add(u64::from(carry));
        *o = s;
        carry = c1 || c2;
    }
    if carry { None } else { Some(out) }
}

// ---------------------------------------------------------------------------
// Curve points: y^2 = x^3 + 7.
// ---------------------------------------------------------------------------

const GX: [u64; 4] = [
    0x59F2_815B_16F8_1798,
    0x029B_FCDB_2DCE_28D9,
    0x55A0_6295_CE87_0B07,
    0x79BE_667E_F9DC_BBAC,
];
const GY: [u64; 4] = [
    0x9C47_D08F_FB10_D4B8,
    0xFD17_B448_A685_5419,
    0x5DA4_FBFC_0E11_08A8,
    0x483A_DA77_26A3_C465,
];
/// A non-trivial cube root of unity mod p; (x, y) -> (β·x, y) is
/// multiplication by [`LAMBDA`].
const BETA: Fe = Fe::from_words([
    0xC139_6C28_7195_01EE,
    0x9CF0_4975_12F5_8995,
    0x6E64_479E_AC34_34E9,
    0x7AE9_6A2B_657C_0710,
]);
/// The cube root of unity mod n matching [`BETA`], big-endian.
const LAMBDA: [u8; 32] = [
    0x53, 0x63, 0xad, 0x4c, 0xc0, 0x5c, 0x30, 0xe0, 0xa5, 0x26, 0x1c, 0x02, 0x88, 0x12, 0x64, 0x5a,
    0x12, 0x2e, 0x22, 0xea, 0x20, 0x81, 0x66, 0x78, 0xdf, 0x02, 0x96, 0x7c, 0x1b, 0x23, 0xbd, 0x72,
];
/// The group order n as little-endian words.
const N_WORDS: [u64; 4] = [
    0xBFD2_5E8C_D036_4141,
    0xBAAE_DCE6_AF48_A03B,
    0xFFFF_FFFF_FFFF_FFFE,
    0xFFFF_FFFF_FFFF_FFFF,
];
/// Second coordinates (up to sign) of a short basis of the lattice
/// {(a, b) : a + b·λ ≡ 0 mod n}: v1 = (a1, -B1) and v2 = (a2, B2), see
/// [`split`].
const B1: u128 = 0xe443_7ed6_010e_8828_6f54_7fa9_0abf_e4c3;
const B2: u128 = 0x3086_d221_a7d4_6bcd_e86c_90e4_9284_eb15;
/// round(2^384 · B2 / n) and round(2^384 · B1 / n), little-endian words.
const G1: [u64; 4] = [
    0xE893_209A_45DB_B031,
    0x3DAA_8A14_71E8_CA7F,
    0xE86C_90E4_9284_EB15,
    0x3086_D221_A7D4_6BCD,
];
const G2: [u64; 4] = [
    0x1571_B4AE_8AC4_7F71,
    0x2212_08AC_9DF5_06C6,
    0x6F54_7FA9_0ABF_E4C4,
    0xE443_7ED6_010E_8828,
];

#[derive(Clone, Copy, Debug)]
struct Affine {
    x: Fe,
    y: Fe,
}

/// Jacobian coordinates: (X, Y, Z) is the point (X/Z², Y/Z³).
#[derive(Clone, Copy, Debug)]
struct Jacobian {
    x: Fe,
    y: Fe,
    z: Fe,
    infinity: bool,
}

impl Affine {
    fn generator() -> Affine {
        Affine {
            x: Fe::from_words(GX),
            y: Fe::from_words(GY),
        }
    }

    fn is_on_curve(&self) -> bool {
        self.y.square().equals(
            self.x
                .square()
                .mul(self.x)
                .add(Fe::from_words([7, 0, 0, 0])),
        )
    }

    /// The point with this x coordinate and y of the given parity.
    fn lift_x(x: Fe, y_odd: bool) -> Option<Affine> {
        let y = x.square().mul(x).add(Fe::from_words([7, 0, 0, 0])).sqrt()?;
        // y is never zero: the group has prime order, so no point has
        // order two.
        let y = if y.is_odd() == y_odd { y } else { y.neg() };
        Some(Affine { x, y })
    }

    fn to_jacobian(self) -> Jacobian {
        Jacobian {
            x: self.x,
            y: self.y,
            z: Fe::ONE,
            infinity: false,
        }
    }

    fn neg(self) -> Affine {
        Affine {
            x: self.x,
            y: self.y.neg(),
        }
    }

    fn endomorphism(self) -> Affine {
        Affine {
            x: self.x.mul(BETA),
            y: self.y,
        }
    }
}

impl Jacobian {
    const INFINITY: Jacobian = Jacobian {
        x: Fe::ZERO,
        y: Fe::ONE,
        z: Fe::ZERO,
        infinity: true,
    };

    fn neg(self) -> Jacobian {
        Jacobian {
            y: self.y.neg(),
            ..self
        }
    }

    fn endomorphism(self) -> Jacobian {
        Jacobian {
            x: self.x.mul(BETA),
            ..self
        }
    }

    /// `2·self`, in 3M + 4S for a = 0: X3 = 9X⁴ - 8XY², Z3 = 2YZ and
    /// Y3 = 3X²·(4XY² - X3) - 8Y⁴. No point of order two exists, so the
    /// result is at infinity only if `self` is.
    fn double(self) -> Jacobian {
        if self.infinity {
            return self;
        }
        let a = self.x.square();
        let b = self.y.square();
        let c = b.square();
        // 4·X·Y² with one multiplication rather than the squaring form
        // ((X + Y²)² - X² - Y⁴)·2, which needs four more additions.
        let d = self.x.mul(b).mul_small(4);
        let e = a.mul_small(3);
        let f = e.square();
        let x = f.sub_scaled(d, 2);
        let y = e.mul(d.sub(x)).sub_scaled(c, 8);
        let z = self.y.mul(self.z).mul_small(2);
        Jacobian {
            x,
            y,
            z,
            infinity: false,
        }
    }

    /// `self + other` for an affine `other`.
    fn add_affine(self, other: &Affine) -> Jacobian {
        if self.infinity {
            return other.to_jacobian();
        }
        let z1z1 = self.z.square();
        let u2 = other.x.mul(z1z1);
        let s2 = other.y.mul(self.z).mul(z1z1);
        let h = u2.sub(self.x);
        let r = s2.sub(self.y);
        if h.is_zero() {
            return if r.is_zero() {
                self.double()
            } else {
                Jacobian::INFINITY
            };
        }
        let hh = h.square();
        let hhh = hh.mul(h);
        let v = self.x.mul(hh);
        let x = r.square().sub(hhh).sub_scaled(v, 2);
        let y = r.mul(v.sub(x)).sub(self.y.mul(hhh));
        let z = self.z.mul(h);
        Jacobian {
            x,
            y,
            z,
            infinity: false,
        }
    }

    /// `self + other` for two Jacobian points.
    fn add(self, other: &Jacobian) -> Jacobian {
        if self.infinity {
            return *other;
        }
        if other.infinity {
            return self;
        }
        let z1z1 = self.z.square();
        let z2z2 = other.z.square();
        let u1 = self.x.mul(z2z2);
        let u2 = other.x.mul(z1z1);
        let s1 = self.y.mul(other.z).mul(z2z2);
        let s2 = other.y.mul(self.z).mul(z1z1);
        let h = u2.sub(u1);
        let r = s2.sub(s1);
        if h.is_zero() {
            return if r.is_zero() {
                self.double()
            } else {
                Jacobian::INFINITY
            };
        }
        let hh = h.square();
        let hhh = hh.mul(h);
        let v = u1.mul(hh);
        let x = r.square().sub(hhh).sub_scaled(v, 2);
        let y = r.mul(v.sub(x)).sub(s1.mul(hhh));
        let z = self.z.mul(other.z).mul(h);
        Jacobian {
            x,
            y,
            z,
            infinity: false,
        }
    }

    fn to_affine(self) -> Option<Affine> {
        if self.infinity {
            return None;
        }
        let zi = self.z.invert();
        let zi2 = zi.square();
        Some(Affine {
            x: self.x.mul(zi2),
            y: self.y.mul(zi2).mul(zi),
        })
    }
}

/// Odd multiples 1·P, 3·P, …, (2·len - 1)·P.
fn odd_multiples(p: &Jacobian, out: &mut [Jacobian]) {
    let twice = p.double();
    let mut current = *p;
    for slot in out.iter_mut() {
        *slot = current;
        current = current.add(&twice);
    }
}

/// Converts Jacobian points to affine with a single inversion
/// (Montgomery's trick). The points must not be at infinity (the tables
/// hold small multiples of G, far below the order).
fn batch_to_affine(points: &[Jacobian]) -> Vec<Affine> {
    // before[i] = z_0 · … · z_(i-1), and `all` the product of every z.
    let mut before = Vec::with_capacity(points.len());
    let mut all = Fe::ONE;
    for p in points {
        before.push(all);
        all = all.mul(p.z);
    }
    // Walking back, `inv` is (z_0 · … · z_i)^-1, so z_i^-1 = inv · before[i].
    let mut inv = all.invert();
    let mut out = Vec::with_capacity(points.len());
    for (p, b) in points.iter().rev().zip(before.iter().rev()) {
        let zi = inv.mul(*b);
        inv = inv.mul(p.z);
        let zi2 = zi.square();
        out.push(Affine {
            x: p.x.mul(zi2),
            y: p.y.mul(zi2).mul(zi),
        });
    }
    out.reverse();
    out
}

struct GeneratorTables {
    /// (2j+1)·G and (2j+1)·λG for j < 2^(G_WINDOW-2).
    g: Vec<Affine>,
    g_lambda: Vec<Affine>,
    lambda: Scalar,
}

fn generator_tables() -> &'static GeneratorTables {
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

// ---------------------------------------------------------------------------
// Scalar splitting and signed-digit recoding.
// ---------------------------------------------------------------------------

/// A scalar half from [`split`]: a magnitude and a sign.
struct Half {
    magnitude: [u64; 4],
    negative: bool,
}

/// Splits k into k1 + k2·λ (mod n) with |k1|, |k2| about 2^128
/// (Gallant–Lambert–Vanstone, with the rounded divisions by n replaced by
/// multiplications by precomputed 2^384/n multiples). With the lattice
/// vectors v1 = (a1, -B1) and v2 = (a2, B2), c1 = round(B2·k/n) and
/// c2 = round(B1·k/n): k2 = c1·B1 - c2·B2 and k1 = k - k2·λ.
fn split(k: &Scalar, lambda: &Scalar) -> (Half, Half) {
    let words = words_from_be(&k.to_bytes()).unwrap_or([0; 4]);
    let c1 = Scalar::from(mul_shift_384(&words, &G1));
    let c2 = Scalar::from(mul_shift_384(&words, &G2));
    let k2 = c1 * Scalar::from(B1) - c2 * Scalar::from(B2);
    let k1 = *k - k2 * lambda;
    (half(k1), half(k2))
}

fn half(s: Scalar) -> Half {
    let negative = bool::from(s.is_high());
    let magnitude = if negative { -s } else { s };
    Half {
        magnitude: words_from_be(&magnitude.to_bytes()).unwrap_or([0; 4]),
        negative,
    }
}

/// round(a·b / 2^384) for 256-bit a, b (the result fits 128 bits).
fn mul_shift_384(a: &[u64; 4], b: &[u64; 4]) -> u128 {
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
const MAX_DIGITS: usize = 258;

/// Width-w non-adjacent form: digits least significant first, each zero or
/// odd in (-2^(w-1), 2^(w-1)), with any w consecutive digits holding at
/// most one non-zero. Returns the digits and how many are used.
fn wnaf(magnitude: &[u64; 4], w: u32) -> ([i16; MAX_DIGITS], usize) {
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
fn bits(words: &[u64; 4], offset: u32, count: u32) -> u64 {
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
fn lookup<T: Copy>(table: &[T], digit: i16, negative_half: bool) -> Option<(T, bool)> {
    let entry = table.get(usize::from(digit.unsigned_abs() / 2))?;
    Some((*entry, (digit < 0) != negative_half))
}

/// `u1·G + u2·Q`. `None` only if a digit fell outside a table, which the
/// recoding rules out; callers treat it as a failed verification.
fn mul_add_generator(u1: &Scalar, u2: &Scalar, q: &Affine) -> Option<Jacobian> {
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

// ---------------------------------------------------------------------------
// ECDSA.
// ---------------------------------------------------------------------------

/// A secp256k1 public key, for ES256K.
#[derive(Clone, Copy, Debug)]
pub struct Secp256k1Key {
    point: Affine,
}

impl PartialEq for Secp256k1Key {
    fn eq(&self, other: &Self) -> bool {
        self.to_uncompressed() == other.to_uncompressed()
    }
}

impl Eq for Secp256k1Key {}

impl Secp256k1Key {
    /// Parses a compressed SEC1 point (33 bytes: 0x02 or 0x03, then x).
    /// `None` unless x is below p and on the curve.
    pub fn from_compressed(bytes: &[u8]) -> Option<Self> {
        let (&tag, x) = bytes.split_first()?;
        let y_odd = match tag {
            0x02 => false,
            0x03 => true,
            _ => return None,
        };
        let x = Fe::from_bytes(x)?;
        Some(Secp256k1Key {
            point: Affine::lift_x(x, y_odd)?,
        })
    }

    /// Parses an uncompressed SEC1 point (65 bytes: 0x04, x, y). `None`
    /// unless both coordinates are below p and the point is on the curve.
    pub fn from_uncompressed(bytes: &[u8]) -> Option<Self> {
        let (&tag, xy) = bytes.split_first()?;
        if tag != 0x04 || xy.len() != 64 {
            return None;
        }
        let (x, y) = xy.split_at_checked(32)?;
        let point = Affine {
            x: Fe::from_bytes(x)?,
            y: Fe::from_bytes(y)?,
        };
        point.is_on_curve().then_some(Secp256k1Key { point })
    }

    /// The uncompressed SEC1 encoding: 0x04, x, y.
    pub fn to_uncompressed(&self) -> [u8; 65] {
        let mut out = [0u8; 65];
        out[0] = 0x04;
        for (dst, src) in out.iter_mut().skip(1).zip(
            self.point
                .x
                .to_bytes()
                .iter()
                .chain(&self.point.y.to_bytes()),
        ) {
            *dst = *src;
        }
        out
    }

    /// The compressed SEC1 encoding: 0x02 or 0x03, then x.
    pub fn to_compressed(&self) -> [u8; 33] {
        let mut out = [0u8; 33];
        out[0] = if self.point.y.is_odd() { 0x03 } else { 0x02 };
        for (dst, src) in out.iter_mut().skip(1).zip(&self.point.x.to_bytes()) {
            *dst = *src;
        }
        out
    }

    /// Verifies a 64-byte `r || s` signature over a 32-byte digest.
    /// `s` must be in the lower half of the order.
    pub fn verify_prehash(&self, digest: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
        let parts = Parts::parse(digest, signature)?;
        let s_inv: Scalar =
            Option::from(parts.s.invert_vartime()).ok_or(SignatureError::Invalid)?;
        let u1 = parts.z * s_inv;
        let u2 = parts.r * s_inv;
        let sum = mul_add_generator(&u1, &u2, &self.point).ok_or(SignatureError::Invalid)?;
        if sum.infinity {
            return Err(SignatureError::Invalid);
        }
        // x(R) = X/Z² must equal r, or r + n when that is still below p
        // (x(R) is reduced mod n to give r).
        let zz = sum.z.square();
        let r_words = words_from_be(&parts.r.to_bytes()).ok_or(SignatureError::Invalid)?;
        if sum.x.equals(Fe::from_words(r_words).mul(zz)) {
            return Ok(());
        }
        match add_words(&r_words, &N_WORDS) {
            Some(r_plus_n)
                if less_than(&r_plus_n, &P_WORDS)
                    && sum.x.equals(Fe::from_words(r_plus_n).mul(zz)) =>
            {
                Ok(())
            }
            _ => Err(SignatureError::Invalid),
        }
    }

    /// Recovers the key that made a 64-byte `r || s` signature over a
    /// 32-byte digest, given the recovery id (0 or 1: the parity of the y
    /// coordinate of the signer's nonce point). `s` must be low. Ids 2 and
    /// 3 (an x coordinate of the nonce point above n, which happens with
    /// probability about 2^-128) are not supported.
    pub fn recover_prehash(
        digest: &[u8],
        signature: &[u8],
        recovery_id: u8,
    ) -> Result<Self, SignatureError> {
        let y_odd = match recovery_id {
            0 => false,
            1 => true,
            _ => return Err(SignatureError::Malformed),
        };
        let parts = Parts::parse(digest, signature)?;
        let r_words = words_from_be(&parts.r.to_bytes()).ok_or(SignatureError::Invalid)?;
        let nonce_point =
            Affine::lift_x(Fe::from_words(r_words), y_odd).ok_or(SignatureError::Invalid)?;
        // Q = r^-1 · (s·R - z·G)
        let r_inv: Scalar =
            Option::from(parts.r.invert_vartime()).ok_or(SignatureError::Invalid)?;
        let u1 = -(parts.z * r_inv);
        let u2 = parts.s * r_inv;
        let q = mul_add_generator(&u1, &u2, &nonce_point).ok_or(SignatureError::Invalid)?;
        let point = q.to_affine().ok_or(SignatureError::Invalid)?;
        Ok(Secp256k1Key { point })
    }
}

/// The checked pieces of a signature.
struct Parts {
    r: Scalar,
    s: Scalar,
    z: Scalar,
}

impl Parts {
    fn parse(digest: &[u8], signature: &[u8]) -> Result<Parts, SignatureError> {
        if signature.len() != 64 || digest.len() != 32 {
            return Err(SignatureError::Malformed);
        }
        let (r, s) = signature
            .split_at_checked(32)
            .ok_or(SignatureError::Malformed)?;
        let r = scalar_in_range(r).ok_or(SignatureError::Invalid)?;
        let s = scalar_in_range(s).ok_or(SignatureError::Invalid)?;
        if bool::from(s.is_high()) {
            return Err(SignatureError::Invalid);
        }
        let digest = k256::FieldBytes::try_from(digest).map_err(|_| SignatureError::Malformed)?;
        // A 32-byte digest is the integer itself (bits2int), reduced mod n.
        let z = <Scalar as Reduce<k256::FieldBytes>>::reduce(&digest);
        Ok(Parts { r, s, z })
    }
}

/// A big-endian scalar, `None` unless it is in `[1, n-1]`.
fn scalar_in_range(bytes: &[u8]) -> Option<Scalar> {
    let bytes = k256::FieldBytes::try_from(bytes).ok()?;
    let scalar: Scalar = Option::from(Scalar::from_repr(bytes))?;
    if bool::from(scalar.is_zero()) {
        None
    } else {
        Some(scalar)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::test_util::bytes;
    use k256::U256;
    use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
    use k256::elliptic_curve::bigint::NonZero;
    use k256::elliptic_curve::sec1::ToSec1Point as _;

    fn modulus() -> NonZero<U256> {
        NonZero::new(U256::from_be_hex(
            "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F",
        ))
        .unwrap()
    }

    fn big(fe: Fe) -> U256 {
        U256::from_be_slice(&fe.to_bytes())
    }

    /// Field elements from test bytes, including the extremes and values
    /// whose weak form is above p.
    fn sample_fes() -> Vec<Fe> {
        let p_minus = |k: u64| {
            let [w0, w1, w2, w3] = P_WORDS;
            Fe::from_words([w0 - k, w1, w2, w3])
        };
        let mut v = vec![
            Fe::ZERO,
            Fe::ONE,
            p_minus(1),
            p_minus(2),
            Fe::from_words([u64::MAX; 4]), // 2^256 - 1 > p, a legal weak form
            Fe::from_words([0, 0, 0, 1 << 63]),
            Fe::from_words(GX),
            BETA,
        ];
        for i in 0..40 {
            let b = bytes("fe", i, 32);
            v.push(Fe::from_words(words_from_be(&b).unwrap()));
        }
        v
    }

    #[test]
    fn constants_are_consistent() {
        // 4p limbs are p's limbs times four.
        let p = Fe::from_words(P_WORDS);
        for (limb, four) in p.0.iter().zip(FOUR_P) {
            assert_eq!(u64::from(*limb) * 4, four);
        }
        assert!(p.is_zero());
        // β^3 = 1, β != 1.
        assert!(BETA.square().mul(BETA).equals(Fe::ONE));
        assert!(!BETA.equals(Fe::ONE));
        // λ^3 = 1 mod n and λ·G = (β·Gx, Gy).
        let lambda = generator_tables().lambda;
        assert_eq!(lambda * lambda * lambda, Scalar::ONE);
        let theirs = (k256::ProjectivePoint::GENERATOR * lambda)
            .to_affine()
            .to_sec1_point(false);
        let ours = Secp256k1Key {
            point: Affine::generator().endomorphism(),
        };
        assert_eq!(&ours.to_uncompressed()[..], theirs.as_bytes());
        // G is k256's generator.
        let g = k256::AffinePoint::GENERATOR.to_sec1_point(false);
        let ours = Secp256k1Key {
            point: Affine::generator(),
        };
        assert_eq!(&ours.to_uncompressed()[..], g.as_bytes());
        // N_WORDS is the order.
        let minus_one = -Scalar::ONE;
        let mut n_minus_one = N_WORDS;
        n_minus_one[0] -= 1;
        assert_eq!(
            words_to_be(&n_minus_one),
            <[u8; 32]>::from(minus_one.to_bytes())
        );
        // The lattice vectors: a1 + (-B1)·λ ≡ 0 and a2 + B2·λ ≡ 0 with
        // a1 = B2 and a2 = B1 + B2, so B2 - B1·λ ≡ 0 (one relation suffices
        // with the other as its image).
        let b1 = Scalar::from(B1);
        let b2 = Scalar::from(B2);
        assert_eq!(b2 - b1 * lambda, Scalar::ZERO);
    }

    #[test]
    fn field_arithmetic_matches_big_integers() {
        let p = modulus();
        let fes = sample_fes();
        for (i, &a) in fes.iter().enumerate() {
            let ab = big(a);
            assert!(ab < *p.as_ref());
            assert_eq!(big(a.neg()), ab.neg_mod(&p));
            assert_eq!(big(a.square()), ab.mul_mod(&ab, &p));
            assert_eq!(big(a.add(a)), ab.add_mod(&ab, &p));
            assert_eq!(
                big(a.sub_scaled(a, 8)),
                ab.mul_mod(&U256::from_u64(7), &p).neg_mod(&p)
            );
            assert_eq!(big(a.mul_small(8)), ab.mul_mod(&U256::from_u64(8), &p));
            if !a.is_zero() {
                assert!(a.mul(a.invert()).equals(Fe::ONE), "inverse {i}");
            }
            if let Some(root) = a.sqrt() {
                assert!(root.square().equals(a));
            }
            // Exactly one of a and -a is a square (p ≡ 3 mod 4), zero aside.
            if !a.is_zero() {
                assert!(a.sqrt().is_some() != a.neg().sqrt().is_some(), "sqrt {i}");
            }
            for &b in fes.iter().skip(i) {
                let bb = big(b);
                assert_eq!(big(a.mul(b)), ab.mul_mod(&bb, &p));
                assert_eq!(big(a.add(b)), ab.add_mod(&bb, &p));
                assert_eq!(big(a.sub(b)), ab.sub_mod(&bb, &p));
                assert_eq!(a.equals(b), ab == bb);
            }
        }
        assert!(Fe::ZERO.invert().is_zero());
        assert_eq!(Fe::ZERO.sqrt().map(|r| r.is_zero()), Some(true));
    }

    /// The value of a (possibly non-canonical) element mod p, from its
    /// raw limbs.
    fn reference(fe: &Fe) -> U256 {
        let p = modulus();
        let radix = U256::from_u64(1 << 26);
        let mut weight = U256::ONE;
        let mut acc = U256::ZERO;
        for &limb in &fe.0 {
            acc = acc.add_mod(&U256::from_u64(u64::from(limb)).mul_mod(&weight, &p), &p);
            weight = weight.mul_mod(&radix, &p);
        }
        acc
    }

    fn is_weak(fe: &Fe) -> bool {
        fe.0[..9].iter().all(|&l| l < 1 << 27) && fe.0[9] < 1 << 22
    }

    /// Elements at the edges of the weak form: limbs at their maxima, and
    /// mixtures, checked limb by limb against big-integer arithmetic.
    #[test]
    fn extreme_weak_forms() {
        let max = Fe([
            (1 << 27) - 1,
            (1 << 27) - 1,
            (1 << 27) - 1,
            (1 << 27) - 1,
            (1 << 27) - 1,
            (1 << 27) - 1,
            (1 << 27) - 1,
            (1 << 27) - 1,
            (1 << 27) - 1,
            (1 << 22) - 1,
        ]);
        let mut cases = vec![max, Fe::ZERO, Fe::ONE, Fe::from_words(P_WORDS)];
        for i in 0..16 {
            let b = bytes("weak", i, 40);
            let mut limbs = [0u32; 10];
            for (j, limb) in limbs.iter_mut().enumerate() {
                let v = u32::from_le_bytes([
                    b[4 * j % 36],
                    b[4 * j % 36 + 1],
                    b[4 * j % 36 + 2],
                    b[39],
                ]);
                *limb = if j == 9 { v % (1 << 22) } else { v % (1 << 27) };
            }
            cases.push(Fe(limbs));
        }
        let p = modulus();
        for a in &cases {
            assert!(is_weak(a));
            let ra = reference(a);
            assert_eq!(big(*a), ra);
            for b in &cases {
                let rb = reference(b);
                for (result, expected) in [
                    (a.mul(*b), ra.mul_mod(&rb, &p)),
                    (a.add(*b), ra.add_mod(&rb, &p)),
                    (a.sub(*b), ra.sub_mod(&rb, &p)),
                    (
                        a.sub_scaled(*b, 8),
                        ra.sub_mod(&rb.mul_mod(&U256::from_u64(8), &p), &p),
                    ),
                ] {
                    assert!(is_weak(&result));
                    assert_eq!(reference(&result), expected);
                }
            }
            for (result, expected) in [
                (a.square(), ra.mul_mod(&ra, &p)),
                (a.neg(), ra.neg_mod(&p)),
                (a.mul_small(8), ra.mul_mod(&U256::from_u64(8), &p)),
            ] {
                assert!(is_weak(&result));
                assert_eq!(reference(&result), expected);
            }
        }
    }

    #[test]
    fn field_byte_encoding() {
        let p = words_to_be(&P_WORDS);
        assert!(Fe::from_bytes(&p).is_none());
        assert!(Fe::from_bytes(&[0xff; 32]).is_none());
        assert!(Fe::from_bytes(&[0; 31]).is_none());
        assert!(Fe::from_bytes(&[0; 33]).is_none());
        let mut p_minus_one = p;
        p_minus_one[31] -= 1;
        assert_eq!(
            Fe::from_bytes(&p_minus_one).unwrap().to_bytes(),
            p_minus_one
        );
        for i in 0..8 {
            let b: [u8; 32] = bytes("enc", i, 32).try_into().unwrap();
            if let Some(fe) = Fe::from_bytes(&b) {
                assert_eq!(fe.to_bytes(), b);
            }
        }
        // Weak forms are reduced on output: (p + 5) encodes as 5.
        let weak = Fe::from_words([P_WORDS[0] + 5, u64::MAX, u64::MAX, u64::MAX]);
        assert_eq!(weak.to_bytes()[31], 5);
        assert!(weak.to_bytes()[..31].iter().all(|&b| b == 0));
    }

    fn scalar(label: &str, i: u64) -> Scalar {
        let b = bytes(label, i, 32);
        <Scalar as Reduce<k256::FieldBytes>>::reduce(&k256::FieldBytes::try_from(&b[..]).unwrap())
    }

    fn edge_scalars() -> Vec<Scalar> {
        let lambda = generator_tables().lambda;
        let mut v = vec![
            Scalar::ZERO,
            Scalar::ONE,
            -Scalar::ONE,
            Scalar::from(2u32),
            -Scalar::from(2u32),
            lambda,
            -lambda,
            Scalar::from(u128::MAX),
            Scalar::from(B1),
            Scalar::from(B2),
        ];
        v.extend((0..24).map(|i| scalar("edge", i)));
        v
    }

    #[test]
    fn split_recombines_into_short_halves() {
        let lambda = generator_tables().lambda;
        for k in edge_scalars() {
            let (h1, h2) = split(&k, &lambda);
            for h in [&h1, &h2] {
                assert_eq!(h.magnitude[2], 0);
                assert_eq!(h.magnitude[3], 0);
            }
            let value = |h: &Half| {
                let mut be = [0u8; 32];
                be.copy_from_slice(&words_to_be(&h.magnitude));
                let s = <Scalar as Reduce<k256::FieldBytes>>::reduce(&be.into());
                if h.negative { -s } else { s }
            };
            assert_eq!(value(&h1) + value(&h2) * lambda, k);
        }
    }

    #[test]
    fn wnaf_digits_rebuild_the_value() {
        for w in [2, 5, 8] {
            for k in edge_scalars() {
                let magnitude = words_from_be(&k.to_bytes()).unwrap();
                let (digits, len) = wnaf(&magnitude, w);
                let mut acc = Scalar::ZERO;
                for &d in digits[..len].iter().rev() {
                    acc = acc + acc;
                    let m = Scalar::from(u64::from(d.unsigned_abs()));
                    acc = if d < 0 { acc - m } else { acc + m };
                    assert!(d == 0 || (d % 2 != 0 && d.unsigned_abs() < 1 << (w - 1)));
                }
                assert_eq!(acc, k);
                // Non-adjacency: at most one non-zero digit in any w in a row.
                for window in digits[..len].windows(w as usize) {
                    assert!(window.iter().filter(|&&d| d != 0).count() <= 1);
                }
            }
        }
        let (_, len) = wnaf(&[u64::MAX; 4], 5);
        assert!(len <= MAX_DIGITS);
    }

    fn theirs(u1: &Scalar, u2: &Scalar, q: &k256::ProjectivePoint) -> Vec<u8> {
        let sum = k256::ProjectivePoint::GENERATOR * u1 + q * u2;
        sum.to_affine().to_sec1_point(false).as_bytes().to_vec()
    }

    fn ours_bytes(point: Option<Jacobian>) -> Vec<u8> {
        match point.unwrap().to_affine() {
            Some(p) => Secp256k1Key { point: p }.to_uncompressed().to_vec(),
            None => vec![0],
        }
    }

    #[test]
    fn double_scalar_multiplication_matches_k256() {
        let scalars = edge_scalars();
        for (i, u1) in scalars.iter().enumerate() {
            let d = scalar("point", i as u64);
            let d = if bool::from(d.is_zero()) {
                Scalar::ONE
            } else {
                d
            };
            let q = k256::ProjectivePoint::GENERATOR * d;
            let q_ours =
                Secp256k1Key::from_uncompressed(q.to_affine().to_sec1_point(false).as_bytes())
                    .unwrap()
                    .point;
            for u2 in scalars.iter().step_by(3) {
                assert_eq!(
                    ours_bytes(mul_add_generator(u1, u2, &q_ours)),
                    theirs(u1, u2, &q),
                    "case {i}"
                );
            }
        }
        // Sums through the doubling and cancelling branches of addition:
        // Q = G with u2 = ±u1, and Q = -G.
        let g = Affine::generator();
        let k = scalar("cancel", 0);
        assert!(mul_add_generator(&k, &-k, &g).unwrap().infinity);
        assert!(mul_add_generator(&k, &k, &g.neg()).unwrap().infinity);
        let q = k256::ProjectivePoint::GENERATOR;
        assert_eq!(
            ours_bytes(mul_add_generator(&k, &k, &g)),
            theirs(&k, &k, &q)
        );
        assert_eq!(
            ours_bytes(mul_add_generator(&Scalar::ONE, &Scalar::ONE, &g)),
            theirs(&Scalar::ONE, &Scalar::ONE, &q)
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(48))]

        #[test]
        fn random_double_scalar_multiplication(
            a in proptest::prelude::any::<[u8; 32]>(),
            b in proptest::prelude::any::<[u8; 32]>(),
            d in 1u64..u64::MAX,
        ) {
            let u1 = <Scalar as Reduce<k256::FieldBytes>>::reduce(&a.into());
            let u2 = <Scalar as Reduce<k256::FieldBytes>>::reduce(&b.into());
            let q = k256::ProjectivePoint::GENERATOR * Scalar::from(d);
            let q_ours = Secp256k1Key::from_uncompressed(
                q.to_affine().to_sec1_point(false).as_bytes(),
            )
            .unwrap()
            .point;
            proptest::prop_assert_eq!(
                ours_bytes(mul_add_generator(&u1, &u2, &q_ours)),
                theirs(&u1, &u2, &q)
            );
        }

        /// Arbitrary bytes never panic the parsers, and whatever parses
        /// round-trips.
        #[test]
        fn hostile_points_and_signatures(
            point in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..70),
            signature in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..70),
            digest in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            id in 0u8..4,
        ) {
            if let Some(key) = Secp256k1Key::from_compressed(&point) {
                proptest::prop_assert_eq!(&key.to_compressed()[..], &point[..]);
                let _ = key.verify_prehash(&digest, &signature);
            }
            if let Some(key) = Secp256k1Key::from_uncompressed(&point) {
                proptest::prop_assert_eq!(&key.to_uncompressed()[..], &point[..]);
            }
            let _ = Secp256k1Key::recover_prehash(&digest, &signature, id);
        }
    }

    fn signing_key(i: u64) -> k256::ecdsa::SigningKey {
        k256::ecdsa::SigningKey::from_slice(&bytes("k256 key", i, 32)).unwrap()
    }

    fn ours(sk: &k256::ecdsa::SigningKey) -> Secp256k1Key {
        Secp256k1Key::from_compressed(sk.verifying_key().to_sec1_point(true).as_bytes()).unwrap()
    }

    fn digest(msg: &[u8]) -> [u8; 32] {
        use sha2::Digest as _;
        sha2::Sha256::digest(msg).into()
    }

    #[test]
    fn point_encodings() {
        let sk = signing_key(0);
        let compressed = sk.verifying_key().to_sec1_point(true);
        let uncompressed = sk.verifying_key().to_sec1_point(false);
        let key = ours(&sk);
        assert_eq!(&key.to_compressed()[..], compressed.as_bytes());
        assert_eq!(&key.to_uncompressed()[..], uncompressed.as_bytes());
        assert_eq!(
            Secp256k1Key::from_uncompressed(uncompressed.as_bytes()),
            Some(key)
        );
        // The other parity is the negated point, also on the curve.
        let mut flipped = compressed.as_bytes().to_vec();
        flipped[0] ^= 1;
        let other = Secp256k1Key::from_compressed(&flipped).unwrap();
        assert_ne!(other, key);
        assert_eq!(other.to_compressed()[1..], key.to_compressed()[1..]);
        // Bad tags, lengths, x >= p, x with no point.
        for tag in [0x00, 0x01, 0x04, 0x05, 0x06, 0x07] {
            let mut bad = compressed.as_bytes().to_vec();
            bad[0] = tag;
            assert!(Secp256k1Key::from_compressed(&bad).is_none());
        }
        assert!(Secp256k1Key::from_compressed(&compressed.as_bytes()[..32]).is_none());
        assert!(Secp256k1Key::from_compressed(&[compressed.as_bytes(), &[0]].concat()).is_none());
        assert!(Secp256k1Key::from_compressed(&[&[2u8][..], &[0xff; 32]].concat()).is_none());
        // x = 5: 5^3 + 7 = 132 is not a square mod p? Find an x off the
        // curve by search instead of assuming.
        let off = (1u8..50)
            .find(|&x| {
                let mut b = [0u8; 33];
                b[0] = 2;
                b[32] = x;
                Secp256k1Key::from_compressed(&b).is_none()
            })
            .expect("some small x has no point");
        let mut b = [0u8; 33];
        b[0] = 3;
        b[32] = off;
        assert!(Secp256k1Key::from_compressed(&b).is_none());
        // Off-curve uncompressed.
        let mut bad = uncompressed.as_bytes().to_vec();
        bad[64] ^= 1;
        assert!(Secp256k1Key::from_uncompressed(&bad).is_none());
        assert!(Secp256k1Key::from_uncompressed(compressed.as_bytes()).is_none());
    }

    #[test]
    fn verifies_k256_signatures_and_agrees_on_tampering() {
        for k in 0..3 {
            let sk = signing_key(k);
            let key = ours(&sk);
            let vk = *sk.verifying_key();
            let other = ours(&signing_key(k + 50));
            for i in 0..16 {
                let msg = bytes("es256k msg", k * 100 + i, 1 + i as usize * 11);
                let hash = digest(&msg);
                let (sig, _) = sk.sign_prehash_recoverable(&hash);
                let good = sig.to_bytes().to_vec();
                assert_eq!(key.verify_prehash(&hash, &good), Ok(()));
                assert_eq!(
                    other.verify_prehash(&hash, &good),
                    Err(SignatureError::Invalid)
                );
                let mut flipped = good.clone();
                flipped[(i as usize * 7) % 64] ^= 1 << (i % 8);
                let expected = k256::ecdsa::Signature::from_slice(&flipped)
                    .map(|s| s.normalize_s() == s && vk.verify_prehash(&hash, &s).is_ok())
                    .unwrap_or(false);
                assert_eq!(key.verify_prehash(&hash, &flipped).is_ok(), expected);
                let mut other_hash = hash;
                other_hash[0] ^= 0x80;
                assert_eq!(
                    key.verify_prehash(&other_hash, &good),
                    Err(SignatureError::Invalid)
                );
            }
        }
    }

    #[test]
    fn high_s_and_out_of_range_are_refused() {
        let sk = signing_key(7);
        let key = ours(&sk);
        let hash = digest(b"high s");
        let (sig, _) = sk.sign_prehash_recoverable(&hash);
        let low = sig.to_bytes().to_vec();
        assert_eq!(key.verify_prehash(&hash, &low), Ok(()));
        // n - s: the same signature mathematically, with high s.
        let s = sig.s();
        let high = [&low[..32], &(-*s).to_bytes()[..]].concat();
        assert_eq!(
            key.verify_prehash(&hash, &high),
            Err(SignatureError::Invalid)
        );
        let n = words_to_be(&N_WORDS);
        let zero = [0u8; 32];
        let (r, s) = low.split_at(32);
        for (bad_r, bad_s) in [(&zero[..], s), (r, &zero[..]), (&n[..], s), (r, &n[..])] {
            assert_eq!(
                key.verify_prehash(&hash, &[bad_r, bad_s].concat()),
                Err(SignatureError::Invalid)
            );
        }
        for len in [0, 63, 65, 70] {
            let mut candidate = low.clone();
            candidate.resize(len, 0);
            assert_eq!(
                key.verify_prehash(&hash, &candidate),
                Err(SignatureError::Malformed)
            );
        }
        assert_eq!(
            key.verify_prehash(&hash[..31], &low),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn identity_sum_is_refused() {
        // With Q = d·G and z = -r·d, u1·G + u2·Q is the point at infinity.
        let d = Scalar::from(5u32);
        let q = k256::ProjectivePoint::GENERATOR * d;
        let key =
            Secp256k1Key::from_uncompressed(q.to_affine().to_sec1_point(false).as_bytes()).unwrap();
        let r = Scalar::from(3u32);
        let s = Scalar::from(11u32);
        let z = -(r * d);
        let sig = [r.to_bytes().as_slice(), s.to_bytes().as_slice()].concat();
        assert_eq!(
            key.verify_prehash(z.to_bytes().as_slice(), &sig),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn recovery_matches_k256() {
        for k in 0..4 {
            let sk = signing_key(k);
            let key = ours(&sk);
            for i in 0..8 {
                let hash = digest(&bytes("recover", k * 10 + i, 40));
                let (sig, id) = sk.sign_prehash_recoverable(&hash);
                assert!(!id.is_x_reduced());
                let rs = sig.to_bytes();
                let right = u8::from(id.is_y_odd());
                assert_eq!(Secp256k1Key::recover_prehash(&hash, &rs, right), Ok(key));
                // The other id yields a key, but another one.
                match Secp256k1Key::recover_prehash(&hash, &rs, right ^ 1) {
                    Ok(other) => assert_ne!(other, key),
                    Err(e) => assert_eq!(e, SignatureError::Invalid),
                }
                let theirs = k256::ecdsa::VerifyingKey::recover_from_prehash(
                    &hash,
                    &sig,
                    k256::ecdsa::RecoveryId::new(right == 1, false),
                )
                .unwrap();
                assert_eq!(
                    &key.to_compressed()[..],
                    theirs.to_sec1_point(true).as_bytes()
                );
            }
        }
        let hash = digest(b"ids");
        let (sig, _) = signing_key(0).sign_prehash_recoverable(&hash);
        for id in [2, 3, 27, 255] {
            assert_eq!(
                Secp256k1Key::recover_prehash(&hash, &sig.to_bytes(), id),
                Err(SignatureError::Malformed)
            );
        }
    }

    /// Native timing of ES256K verification and recovery against k256's
    /// verifier. Run with
    /// `cargo test --release -p attach-filter es256k_timing -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn es256k_timing() {
        use std::time::Instant;
        let sk = signing_key(42);
        let compressed = sk.verifying_key().to_sec1_point(true);
        let vk = *sk.verifying_key();
        let start = Instant::now();
        let _ = generator_tables();
        let tables = start.elapsed();
        let hash = digest(b"timing");
        let (sig, id) = sk.sign_prehash_recoverable(&hash);
        let rs = sig.to_bytes();
        let rounds = 2000u32;

        let start = Instant::now();
        for _ in 0..rounds {
            let key =
                Secp256k1Key::from_compressed(std::hint::black_box(compressed.as_bytes())).unwrap();
            assert!(key.verify_prehash(&hash, std::hint::black_box(&rs)).is_ok());
        }
        let ours_parse_verify = start.elapsed() / rounds;

        let key = ours(&sk);
        let start = Instant::now();
        for _ in 0..rounds {
            assert!(key.verify_prehash(&hash, std::hint::black_box(&rs)).is_ok());
        }
        let ours_verify = start.elapsed() / rounds;

        let start = Instant::now();
        for _ in 0..rounds {
            let recovered = Secp256k1Key::recover_prehash(
                &hash,
                std::hint::black_box(&rs),
                u8::from(id.is_y_odd()),
            );
            assert!(recovered.is_ok());
        }
        let ours_recover = start.elapsed() / rounds;

        let start = Instant::now();
        for _ in 0..rounds {
            assert!(vk.verify_prehash(&hash, std::hint::black_box(&sig)).is_ok());
        }
        let k256_verify = start.elapsed() / rounds;

        println!(
            "ES256K: verify {:.1} us (with key parse {:.1} us), recover {:.1} us; \
             k256 verify {:.1} us; generator tables {:.2} ms",
            ours_verify.as_secs_f64() * 1e6,
            ours_parse_verify.as_secs_f64() * 1e6,
            ours_recover.as_secs_f64() * 1e6,
            k256_verify.as_secs_f64() * 1e6,
            tables.as_secs_f64() * 1e3,
        );
    }

    /// Native cost of the field and point operations, in a dependent
    /// chain. Run with
    /// `cargo test --release -p attach-filter field_timing -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn field_timing() {
        use std::hint::black_box;
        use std::time::Instant;
        let mut a = Fe::from_words(GX);
        let b = Fe::from_words(GY);
        let n = 1_000_000;
        let t = Instant::now();
        for _ in 0..n {
            a = black_box(a).mul(black_box(b));
        }
        println!("mul {:.1} ns", t.elapsed().as_nanos() as f64 / n as f64);
        let t = Instant::now();
        for _ in 0..n {
            a = black_box(a).square();
        }
        println!("sqr {:.1} ns", t.elapsed().as_nanos() as f64 / n as f64);
        let t = Instant::now();
        for _ in 0..n {
            a = black_box(a).sub(black_box(b));
        }
        println!("sub {:.1} ns", t.elapsed().as_nanos() as f64 / n as f64);
        let t = Instant::now();
        let mut z = false;
        for _ in 0..n {
            z ^= black_box(a).is_zero();
        }
        println!(
            "is_zero {:.1} ns {z}",
            t.elapsed().as_nanos() as f64 / n as f64
        );
        let p = Affine::generator().to_jacobian().double();
        let mut q = p;
        let t = Instant::now();
        for _ in 0..100_000 {
            q = black_box(q).double();
        }
        println!("dbl {:.1} ns", t.elapsed().as_nanos() as f64 / 1e5);
        let t = Instant::now();
        for _ in 0..100_000 {
            q = black_box(q).add(&p);
        }
        println!("add {:.1} ns", t.elapsed().as_nanos() as f64 / 1e5);
        let g = Affine::generator();
        let t = Instant::now();
        for _ in 0..100_000 {
            q = black_box(q).add_affine(&g);
        }
        println!("madd {:.1} ns", t.elapsed().as_nanos() as f64 / 1e5);
    }
}
