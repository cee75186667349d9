//! Field arithmetic mod p = 2^256 - 2^32 - 977, in ten 26-bit limbs whose
//! products are plain 64-bit multiplications on every target, and the
//! little-endian word helpers the rest of the curve code uses.

pub(super) const M26: u64 = (1 << 26) - 1;
pub(super) const M22: u64 = (1 << 22) - 1;
/// 2^260 mod p = 2^36 + 0x3D10; the 2^36 part is 2^10 one limb up.
pub(super) const R260_LOW: u64 = 0x3D10;

/// p as little-endian 64-bit words.
pub(super) const P_WORDS: [u64; 4] = [0xFFFF_FFFE_FFFF_FC2F, u64::MAX, u64::MAX, u64::MAX];

/// 4·p in 26-bit limbs: every limb is larger than the matching limb of a
/// weakly normalised element (2^27 and 2^22), so `4p - b` needs no borrow.
pub(super) const FOUR_P: [u64; 10] = [
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
pub(super) struct Fe(pub(super) [u32; 10]);

impl Fe {
    pub(super) const ZERO: Fe = Fe([0; 10]);
    pub(super) const ONE: Fe = Fe([1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

    /// From little-endian 64-bit words holding a value below 2^256.
    pub(super) const fn from_words(w: [u64; 4]) -> Fe {
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
    pub(super) fn from_bytes(bytes: &[u8]) -> Option<Fe> {
        let words = words_from_be(bytes)?;
        if less_than(&words, &P_WORDS) {
            Some(Fe::from_words(words))
        } else {
            None
        }
    }

    /// Canonical big-endian bytes.
    pub(super) fn to_bytes(self) -> [u8; 32] {
        words_to_be(&self.canonical_words())
    }

    /// The value fully reduced below p, as little-endian words.
    pub(super) fn canonical_words(self) -> [u64; 4] {
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

    pub(super) fn is_zero(self) -> bool {
        self.canonical_words().iter().fold(0, |acc, w| acc | w) == 0
    }

    pub(super) fn is_odd(self) -> bool {
        self.canonical_words()[0] & 1 == 1
    }

    pub(super) fn equals(self, other: Fe) -> bool {
        self.sub(other).is_zero()
    }

    pub(super) fn add(self, rhs: Fe) -> Fe {
        let mut t = [0u64; 10];
        for ((out, &a), &b) in t.iter_mut().zip(&self.0).zip(&rhs.0) {
            *out = u64::from(a) + u64::from(b);
        }
        carry(t)
    }

    pub(super) fn sub(self, rhs: Fe) -> Fe {
        let mut t = [0u64; 10];
        for (((out, &a), &b), &four_p) in t.iter_mut().zip(&self.0).zip(&rhs.0).zip(&FOUR_P) {
            *out = u64::from(a) + four_p - u64::from(b);
        }
        carry(t)
    }

    /// `self - k·rhs` for a small k (at most 8), in one normalisation.
    pub(super) fn sub_scaled(self, rhs: Fe, k: u32) -> Fe {
        let k = u64::from(k);
        let mut t = [0u64; 10];
        for (((out, &a), &b), &four_p) in t.iter_mut().zip(&self.0).zip(&rhs.0).zip(&FOUR_P) {
            // k·4p - k·b >= 0 limb by limb, since 4p >= b limb by limb.
            *out = u64::from(a) + k * (four_p - u64::from(b));
        }
        carry(t)
    }

    pub(super) fn neg(self) -> Fe {
        Fe::ZERO.sub(self)
    }

    /// `self · k` for a small constant (k < 2^16).
    pub(super) fn mul_small(self, k: u32) -> Fe {
        carry(self.0.map(|a| u64::from(a) * u64::from(k)))
    }

    pub(super) fn mul(self, rhs: Fe) -> Fe {
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

    pub(super) fn square(self) -> Fe {
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

    pub(super) fn square_n(self, n: u32) -> Fe {
        let mut x = self;
        for _ in 0..n {
            x = x.square();
        }
        x
    }

    /// `self^(2^223 - 1)`, with the intermediate `self^(2^k - 1)` for
    /// k = 2, 3 and 22 that both exponent chains below finish with.
    pub(super) fn pow_2_223_minus_1(self) -> (Fe, Fe, Fe, Fe) {
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
    pub(super) fn invert(self) -> Fe {
        let (x223, x22, _, x2) = self.pow_2_223_minus_1();
        let t = x223.square_n(23).mul(x22);
        let t = t.square_n(5).mul(self);
        let t = t.square_n(3).mul(x2);
        t.square_n(2).mul(self)
    }

    /// A square root, `None` if there is none. p ≡ 3 (mod 4), so the
    /// candidate is `self^((p+1)/4)`; (p+1)/4 in binary: 223 ones, a zero,
    /// 22 ones, then 00001100.
    pub(super) fn sqrt(self) -> Option<Fe> {
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
pub(super) fn ripple(t: &mut [u64; 10]) {
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
pub(super) fn carry(mut t: [u64; 10]) -> Fe {
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
pub(super) fn reduce_wide(t: [u64; 19]) -> Fe {
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
pub(super) fn limbs_to_words(t: &[u64; 10]) -> [u64; 4] {
    let [l0, l1, l2, l3, l4, l5, l6, l7, l8, l9] = *t;
    [
        l0 | (l1 << 26) | (l2 << 52),
        (l2 >> 12) | (l3 << 14) | (l4 << 40),
        (l4 >> 24) | (l5 << 2) | (l6 << 28) | (l7 << 54),
        (l7 >> 10) | (l8 << 16) | (l9 << 42),
    ]
}

/// 32 big-endian bytes to little-endian words; `None` for another length.
pub(super) fn words_from_be(bytes: &[u8]) -> Option<[u64; 4]> {
    if bytes.len() != 32 {
        return None;
    }
    let mut words = [0u64; 4];
    for (word, chunk) in words.iter_mut().rev().zip(bytes.chunks_exact(8)) {
        *word = u64::from_be_bytes(chunk.try_into().ok()?);
    }
    Some(words)
}

pub(super) fn words_to_be(words: &[u64; 4]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(8).zip(words.iter().rev()) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// `a < b` for little-endian words.
pub(super) fn less_than(a: &[u64; 4], b: &[u64; 4]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x < y;
        }
    }
    false
}

/// `a + b` for little-endian words, `None` on overflow past 2^256.
pub(super) fn add_words(a: &[u64; 4], b: &[u64; 4]) -> Option<[u64; 4]> {
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
