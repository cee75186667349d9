//! RSA verification for RS256/384/512 (RSASSA-PKCS1-v1_5) and
//! PS256/384/512 (RSASSA-PSS), RFC 7518 §3.3 and §3.5, RFC 8017 §8.
//!
//! Verification needs only the public operation `s^e mod n` (RSAVP1,
//! RFC 8017 §5.2.2), which `modulus` computes with Montgomery
//! multiplication on 32-bit limbs: 32 × 32 → 64-bit products are the
//! widest multiplication wasm has, so V8 runs them as single instructions,
//! where 64-bit limbs would need emulated 128-bit products. Everything is
//! variable time: keys, signatures and messages are all public.
//!
//! Keys below 2048 bits are refused (RFC 7518 requires at least 2048) and
//! so are keys above 8192 bits, which would only make verification slow;
//! the modulus must be odd. The public exponent must be odd and between 3
//! and 2^33 - 1: each bit of it costs a squaring, so a larger one would
//! let a key make every verification slow. PSS uses MGF1 with the same
//! hash and a salt as long as the hash, as RFC 7518 §3.5 requires; the
//! signature must be exactly as long as the modulus (RFC 8017 §8.1.2 and
//! §8.2.2, step 1).

mod modulus;
mod padding;
#[cfg(test)]
mod test_keys;
#[cfg(test)]
pub(crate) mod tests;

use self::modulus::Modulus;
use super::{SignatureError, digest};
use crate::alg::{Alg, HashAlg};

/// Smallest accepted modulus, in bits.
pub const MIN_BITS: usize = 2048;
/// Largest accepted modulus, in bits.
pub const MAX_BITS: usize = 8192;
/// Largest accepted public exponent.
const MAX_EXPONENT: u64 = (1 << 33) - 1;

/// An RSA public key for the `RS*` and `PS*` algorithms.
pub struct RsaKey {
    modulus: Modulus,
    exponent: u64,
}

/// The two signature schemes of RFC 8017 §8.
#[derive(Clone, Copy)]
enum Scheme {
    Pkcs1v15,
    Pss,
}

impl RsaKey {
    /// Builds a key from the big-endian modulus `n` and exponent `e` (the
    /// JWK members after base64url decoding; leading zero bytes allowed).
    /// `None` for a modulus that is even or outside 2048..=8192 bits, or an
    /// exponent that is even or outside 3..=2^33 - 1.
    pub fn from_components(n: &[u8], e: &[u8]) -> Option<Self> {
        let exponent = exponent(strip_leading_zeros(e))?;
        let n = strip_leading_zeros(n);
        if n.len() > MAX_BITS / 8 || !(MIN_BITS..=MAX_BITS).contains(&bit_length(n)) {
            return None;
        }
        let modulus = Modulus::new(n)?;
        Some(RsaKey { modulus, exponent })
    }

    /// Size of the modulus in bits.
    pub fn bits(&self) -> usize {
        self.modulus.bits()
    }

    /// Verifies `signature` over `message` for an `RS*` or `PS*` `alg`;
    /// any other `alg` is [`SignatureError::WrongKeyType`].
    pub fn verify(&self, alg: Alg, message: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
        if signature.len() != self.modulus.len_bytes() {
            return Err(SignatureError::Malformed);
        }
        let scheme = match alg {
            Alg::RS256 | Alg::RS384 | Alg::RS512 => Scheme::Pkcs1v15,
            Alg::PS256 | Alg::PS384 | Alg::PS512 => Scheme::Pss,
            Alg::ES256 | Alg::ES384 | Alg::EdDSA => return Err(SignatureError::WrongKeyType),
        };
        // RFC 8017 §5.2.2: a signature representative must be below n.
        let em = self
            .modulus
            .pow(signature, self.exponent)
            .ok_or(SignatureError::Invalid)?;
        if self.encoding_matches(scheme, alg.hash(), &em, message) {
            Ok(())
        } else {
            Err(SignatureError::Invalid)
        }
    }

    /// Checks the encoded message `em` (RFC 8017 §8.1.2 and §8.2.2, step 3)
    /// against the message's digest.
    fn encoding_matches(&self, scheme: Scheme, hash: HashAlg, em: &[u8], message: &[u8]) -> bool {
        let m_hash = digest(hash, message);
        match scheme {
            Scheme::Pkcs1v15 => padding::pkcs1v15_matches(em, hash, &m_hash),
            // emBits = modBits - 1 (RFC 8017 §8.1.2, step 3), so that the
            // encoded message is always below n.
            Scheme::Pss => padding::pss_matches(em, self.bits() - 1, hash, &m_hash),
        }
    }
}

/// The public exponent, from its big-endian bytes without leading zeros:
/// odd and within 3..=2^33 - 1.
fn exponent(e: &[u8]) -> Option<u64> {
    if e.len() > 8 {
        return None;
    }
    let value = e.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b));
    (value % 2 == 1 && (3..=MAX_EXPONENT).contains(&value)).then_some(value)
}

/// The number of significant bits of a big-endian integer whose first byte
/// is not zero.
fn bit_length(bytes: &[u8]) -> usize {
    match bytes.first() {
        Some(first) => bytes.len() * 8 - first.leading_zeros() as usize,
        None => 0,
    }
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes.get(first..).unwrap_or(&[])
}
