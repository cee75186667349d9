//! Arithmetic modulo an odd RSA modulus: the public operation
//! `s^e mod n` (RSAVP1, RFC 8017 §5.2.2) with Montgomery multiplication.
//!
//! Numbers are little-endian 32-bit limbs, exactly as many as `n` has, and
//! always fully reduced (below `n`). Montgomery multiplication computes
//! `a·b·R⁻¹ mod n` with `R = 2^(32·limbs)`, one limb of `a` at a time,
//! folding a multiple of `n` into each partial sum so that it can be
//! shifted right by one limb with nothing lost (the "coarsely integrated
//! operand scanning" order: one pass over `b` and `n` per limb of `a`).
//! Every product is 32 × 32 → 64 bits.

/// An odd modulus of at least two limbs with what Montgomery
/// multiplication needs.
pub(super) struct Modulus {
    /// `n`, least significant limb first.
    limbs: Vec<u32>,
    /// `-n⁻¹ mod 2^32`: the multiple of `n` that clears a partial sum's
    /// lowest limb is that limb times this.
    n0_inv: u32,
    /// `R² mod n`, which turns a number into Montgomery form `x·R mod n`.
    r2: Vec<u32>,
    /// Length of `n` in bytes, without leading zeros: the length of
    /// signatures and encoded messages (RFC 8017 §8.1.2 and §8.2.2).
    len_bytes: usize,
    bits: usize,
}

impl Modulus {
    /// The modulus with big-endian bytes `n`; `None` unless it is odd,
    /// longer than one limb and without a leading zero byte (which would
    /// make signatures longer than the modulus).
    pub(super) fn new(n: &[u8]) -> Option<Self> {
        let limbs = to_limbs(n);
        let &low = limbs.first()?;
        if low % 2 == 0 || limbs.len() < 2 || n.first() == Some(&0) {
            return None;
        }
        let top_bits = limbs
            .last()
            .map_or(0, |top| 32 - top.leading_zeros() as usize);
        let mut modulus = Modulus {
            bits: (limbs.len() - 1) * 32 + top_bits,
            n0_inv: inverse_mod_2_32(low).wrapping_neg(),
            r2: Vec::new(),
            len_bytes: n.len(),
            limbs,
        };
        modulus.r2 = modulus.r_squared();
        Some(modulus)
    }

    pub(super) fn bits(&self) -> usize {
        self.bits
    }

    pub(super) fn len_bytes(&self) -> usize {
        self.len_bytes
    }

    /// `s^e mod n` as big-endian bytes, as long as `n`, for a big-endian
    /// `s` of that length. `None` if `s >= n` (RFC 8017 §5.2.2, step 1:
    /// "signature representative out of range") or `e` is zero.
    pub(super) fn pow(&self, s: &[u8], e: u64) -> Option<Vec<u8>> {
        let s = to_limbs(s);
        if s.len() != self.limbs.len() || !less_than(&s, &self.limbs) || e == 0 {
            return None;
        }
        // s·R: Montgomery form, where a Montgomery product of two numbers
        // is again one.
        let mut base = vec![0; self.limbs.len()];
        self.mul(&s, &self.r2, &mut base);
        let mut acc = base.clone();
        let mut next = vec![0; self.limbs.len()];
        // Left to right over e's bits below its top one: square, and
        // multiply by s when the bit is set.
        for bit in (0..63 - e.leading_zeros()).rev() {
            self.mul(&acc, &acc, &mut next);
            std::mem::swap(&mut acc, &mut next);
            if e >> bit & 1 == 1 {
                self.mul(&acc, &base, &mut next);
                std::mem::swap(&mut acc, &mut next);
            }
        }
        // A Montgomery product with 1 takes the result out of Montgomery
        // form: s^e·R · 1 · R⁻¹.
        let mut one = vec![0; self.limbs.len()];
        if let Some(low) = one.first_mut() {
            *low = 1;
        }
        self.mul(&acc, &one, &mut next);
        Some(to_bytes(&next, self.len_bytes))
    }

    /// `R² mod n`. `R mod n` is `1` in Montgomery form; from there each of
    /// R's exponent bits (`32·limbs`, most significant first) squares the
    /// power of two it stands for and, when the bit is set, doubles it,
    /// until it stands for `R` itself: `R·R mod n`. That is a few dozen
    /// steps where doubling all the way would take thousands.
    fn r_squared(&self) -> Vec<u32> {
        let mut x = self.r_mod_n();
        let mut square = vec![0; self.limbs.len()];
        let r_bits = self.limbs.len() * 32;
        for bit in (0..usize::BITS - r_bits.leading_zeros()).rev() {
            self.mul(&x, &x, &mut square);
            std::mem::swap(&mut x, &mut square);
            if r_bits >> bit & 1 == 1 {
                self.double(&mut x);
            }
        }
        x
    }

    /// `R mod n`: `2^(bits - 1)`, which is below `n`, doubled until it is
    /// `2^(32·limbs)`.
    fn r_mod_n(&self) -> Vec<u32> {
        let mut x = vec![0; self.limbs.len()];
        let top = self.bits - 1;
        if let Some(limb) = x.get_mut(top / 32) {
            *limb = 1 << (top % 32);
        }
        for _ in top..self.limbs.len() * 32 {
            self.double(&mut x);
        }
        x
    }

    /// `x = 2·x mod n`, for `x < n`.
    fn double(&self, x: &mut [u32]) {
        let mut carry = 0;
        for limb in x.iter_mut() {
            let next = *limb >> 31;
            *limb = *limb << 1 | carry;
            carry = next;
        }
        if carry == 1 || !less_than(x, &self.limbs) {
            subtract(x, &self.limbs);
        }
    }

    /// The Montgomery product `a·b·R⁻¹ mod n` of `a, b < n`, into `out`
    /// (as many limbs as `n`).
    fn mul(&self, a: &[u32], b: &[u32], out: &mut [u32]) {
        out.fill(0);
        // The limb above `out`: partial sums stay below 2n, which needs one
        // bit more than n's limbs hold.
        let mut top = 0;
        for &limb in a {
            top = self.add_shift(out, top, limb, b);
        }
        if top != 0 || !less_than(out, &self.limbs) {
            subtract(out, &self.limbs);
        }
    }

    /// One step of the product: `t = (t + a·b + m·n) / 2^32`, with `m`
    /// chosen to clear the lowest limb so the division is exact. `top` is
    /// the limb above `t`, before and after (returned). Both running sums
    /// of a limb, `t_j + a·b_j + carry` and `low + m·n_j + carry`, are at
    /// most `(2^32 - 1) + (2^32 - 1)² + (2^32 - 1) = 2^64 - 1`.
    fn add_shift(&self, t: &mut [u32], top: u32, a: u32, b: &[u32]) -> u32 {
        let a = u64::from(a);
        let mut columns = t.iter_mut().zip(b.iter().zip(&self.limbs));
        let Some((t0, (&b0, &n0))) = columns.next() else {
            return top;
        };
        let sum = u64::from(*t0) + a * u64::from(b0);
        let m = u64::from((sum as u32).wrapping_mul(self.n0_inv));
        let mut carry_ab = sum >> 32;
        let mut carry_mn = ((sum & 0xffff_ffff) + m * u64::from(n0)) >> 32;
        let mut previous = t0;
        for (tj, (&bj, &nj)) in columns {
            let sum = u64::from(*tj) + a * u64::from(bj) + carry_ab;
            carry_ab = sum >> 32;
            let sum = (sum & 0xffff_ffff) + m * u64::from(nj) + carry_mn;
            carry_mn = sum >> 32;
            *previous = sum as u32;
            previous = tj;
        }
        let sum = u64::from(top) + carry_ab + carry_mn;
        *previous = sum as u32;
        (sum >> 32) as u32
    }
}

/// `x⁻¹ mod 2^32` for odd `x`, by Newton's iteration: `x` is its own
/// inverse mod 2^3, and each step `y·(2 - x·y)` doubles the correct bits
/// (3, 6, 12, 24, 48).
fn inverse_mod_2_32(x: u32) -> u32 {
    let mut y = x;
    for _ in 0..4 {
        y = y.wrapping_mul(2u32.wrapping_sub(x.wrapping_mul(y)));
    }
    y
}

/// Big-endian bytes to little-endian limbs, `ceil(len / 4)` of them.
fn to_limbs(bytes: &[u8]) -> Vec<u32> {
    bytes
        .rchunks(4)
        .map(|chunk| chunk.iter().fold(0, |acc, b| acc << 8 | u32::from(*b)))
        .collect()
}

/// Little-endian limbs to the last `len` bytes of their big-endian form
/// (the bytes before those are zero for a number below `n`).
fn to_bytes(limbs: &[u32], len: usize) -> Vec<u8> {
    let bytes = limbs.iter().rev().flat_map(|limb| limb.to_be_bytes());
    bytes.skip((limbs.len() * 4).saturating_sub(len)).collect()
}

/// `a < b` for numbers of equally many limbs.
fn less_than(a: &[u32], b: &[u32]) -> bool {
    a.iter()
        .rev()
        .zip(b.iter().rev())
        .find(|(x, y)| x != y)
        .is_some_and(|(x, y)| x < y)
}

/// `x = x - n mod 2^(32·limbs)`.
fn subtract(x: &mut [u32], n: &[u32]) {
    let mut borrow = false;
    for (xi, &ni) in x.iter_mut().zip(n) {
        let (d, b1) = xi.overflowing_sub(ni);
        let (d, b2) = d.overflowing_sub(u32::from(borrow));
        *xi = d;
        borrow = b1 || b2;
    }
}
