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

mod field;
mod multiply;
mod point;

use self::field::*;
use self::multiply::mul_add_generator;
use self::point::*;
use super::SignatureError;
use k256::Scalar;
use k256::elliptic_curve::ff::PrimeField as _;
use k256::elliptic_curve::ops::Reduce;
use k256::elliptic_curve::scalar::IsHigh as _;

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
mod tests;
