//! Curve points on y^2 = x^3 + 7: affine and Jacobian coordinates with the
//! `a = 0` formulas, the endomorphism, and batch conversion to affine.

use super::field::*;

pub(super) const GX: [u64; 4] = [
    0x59F2_815B_16F8_1798,
    0x029B_FCDB_2DCE_28D9,
    0x55A0_6295_CE87_0B07,
    0x79BE_667E_F9DC_BBAC,
];
pub(super) const GY: [u64; 4] = [
    0x9C47_D08F_FB10_D4B8,
    0xFD17_B448_A685_5419,
    0x5DA4_FBFC_0E11_08A8,
    0x483A_DA77_26A3_C465,
];
/// A non-trivial cube root of unity mod p; (x, y) -> (β·x, y) is
/// multiplication by λ (`multiply::LAMBDA`).
pub(super) const BETA: Fe = Fe::from_words([
    0xC139_6C28_7195_01EE,
    0x9CF0_4975_12F5_8995,
    0x6E64_479E_AC34_34E9,
    0x7AE9_6A2B_657C_0710,
]);
/// The group order n as little-endian words.
pub(super) const N_WORDS: [u64; 4] = [
    0xBFD2_5E8C_D036_4141,
    0xBAAE_DCE6_AF48_A03B,
    0xFFFF_FFFF_FFFF_FFFE,
    0xFFFF_FFFF_FFFF_FFFF,
];

#[derive(Clone, Copy, Debug)]
pub(super) struct Affine {
    pub(super) x: Fe,
    pub(super) y: Fe,
}

/// Jacobian coordinates: (X, Y, Z) is the point (X/Z², Y/Z³).
#[derive(Clone, Copy, Debug)]
pub(super) struct Jacobian {
    pub(super) x: Fe,
    pub(super) y: Fe,
    pub(super) z: Fe,
    pub(super) infinity: bool,
}

impl Affine {
    pub(super) fn generator() -> Affine {
        Affine {
            x: Fe::from_words(GX),
            y: Fe::from_words(GY),
        }
    }

    #[cfg(test)]
    pub(super) fn is_on_curve(&self) -> bool {
        self.y.square().equals(
            self.x
                .square()
                .mul(self.x)
                .add(Fe::from_words([7, 0, 0, 0])),
        )
    }

    /// The point with this x coordinate and y of the given parity.
    pub(super) fn lift_x(x: Fe, y_odd: bool) -> Option<Affine> {
        let y = x.square().mul(x).add(Fe::from_words([7, 0, 0, 0])).sqrt()?;
        // y is never zero: the group has prime order, so no point has
        // order two.
        let y = if y.is_odd() == y_odd { y } else { y.neg() };
        Some(Affine { x, y })
    }

    pub(super) fn to_jacobian(self) -> Jacobian {
        Jacobian {
            x: self.x,
            y: self.y,
            z: Fe::ONE,
            infinity: false,
        }
    }

    pub(super) fn neg(self) -> Affine {
        Affine {
            x: self.x,
            y: self.y.neg(),
        }
    }

    pub(super) fn endomorphism(self) -> Affine {
        Affine {
            x: self.x.mul(BETA),
            y: self.y,
        }
    }
}

impl Jacobian {
    pub(super) const INFINITY: Jacobian = Jacobian {
        x: Fe::ZERO,
        y: Fe::ONE,
        z: Fe::ZERO,
        infinity: true,
    };

    pub(super) fn neg(self) -> Jacobian {
        Jacobian {
            y: self.y.neg(),
            ..self
        }
    }

    pub(super) fn endomorphism(self) -> Jacobian {
        Jacobian {
            x: self.x.mul(BETA),
            ..self
        }
    }

    /// `2·self`, in 3M + 4S for a = 0: X3 = 9X⁴ - 8XY², Z3 = 2YZ and
    /// Y3 = 3X²·(4XY² - X3) - 8Y⁴. No point of order two exists, so the
    /// result is at infinity only if `self` is.
    pub(super) fn double(self) -> Jacobian {
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
    pub(super) fn add_affine(self, other: &Affine) -> Jacobian {
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
    pub(super) fn add(self, other: &Jacobian) -> Jacobian {
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

    pub(super) fn to_affine(self) -> Option<Affine> {
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
pub(super) fn odd_multiples(p: &Jacobian, out: &mut [Jacobian]) {
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
pub(super) fn batch_to_affine(points: &[Jacobian]) -> Vec<Affine> {
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
