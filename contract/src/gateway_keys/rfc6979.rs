//! Deterministic ECDSA nonces (RFC 6979 section 3.2) for P-256 with
//! HMAC-SHA256. The nonce comes from the private key and the message
//! digest: signing needs no randomness (the filter has no source of its own
//! inside Envoy), and a nonce is never reused for another message, which
//! would give the key away.
//!
//! P-256's order, SHA-256's digest and HMAC-SHA256's output are all 256
//! bits, so the general procedure's bit trimming drops out: `bits2int` is
//! the plain big-endian integer and one HMAC output is one candidate.

use hmac::{KeyInit, Mac};
use p256::elliptic_curve::ops::Reduce as _;
use p256::elliptic_curve::{Field as _, PrimeField as _};
use p256::{FieldBytes, Scalar};
use sha2::Sha256;

type HmacSha256 = hmac::Hmac<Sha256>;

/// The candidates of step h for one key and message, in order.
pub(super) struct Nonces {
    k: [u8; 32],
    v: [u8; 32],
    /// Whether a candidate was drawn: the next draw first moves K and V on
    /// (step h.3), whether that candidate was out of range or made a zero
    /// `r` or `s` (section 3.4).
    drawn: bool,
}

impl Nonces {
    /// Steps a to g for the private key `x` and the digest `h1`.
    pub(super) fn new(x: &Scalar, h1: &[u8; 32]) -> Self {
        let x = x.to_repr();
        // bits2octets: the digest reduced mod n.
        let h = Scalar::reduce(&FieldBytes::from(*h1)).to_repr();
        let mut nonces = Nonces {
            k: [0; 32],
            v: [1; 32],
            drawn: false,
        };
        for separator in [0u8, 1] {
            nonces.k = hmac(&nonces.k, &[&nonces.v, &[separator], &x, &h]);
            nonces.v = hmac(&nonces.k, &[&nonces.v]);
        }
        nonces
    }

    /// The next nonce in `[1, n-1]`.
    pub(super) fn next(&mut self) -> Scalar {
        loop {
            if self.drawn {
                self.k = hmac(&self.k, &[&self.v, &[0]]);
                self.v = hmac(&self.k, &[&self.v]);
            }
            self.drawn = true;
            self.v = hmac(&self.k, &[&self.v]);
            let candidate: Option<Scalar> = Scalar::from_repr(FieldBytes::from(self.v)).into();
            if let Some(k) = candidate.filter(|k| !bool::from(k.is_zero())) {
                return k;
            }
        }
    }
}

/// HMAC-SHA256 under a 32-byte key of the concatenated `parts`. The key is
/// given zero-padded to SHA-256's 64-byte block, which is what HMAC does to
/// a shorter key (RFC 2104 section 2), so it is the same MAC without a
/// length check that cannot fail.
fn hmac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut block = [0u8; 64];
    for (dst, src) in block.iter_mut().zip(key) {
        *dst = *src;
    }
    let mut mac = <HmacSha256 as KeyInit>::new(&block.into());
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway_keys::es256::tests::{RFC_6979_KEY, VECTORS, hex32};
    use sha2::Digest as _;

    #[test]
    fn the_first_nonce_is_rfc_6979_appendix_a_2_5s() {
        let x = Scalar::from_repr(hex32(RFC_6979_KEY).into()).unwrap();
        for vector in VECTORS {
            let h1: [u8; 32] = Sha256::digest(vector.message).into();
            let k = Nonces::new(&x, &h1).next();
            assert_eq!(
                k.to_repr().as_slice(),
                hex32(vector.k),
                "{:?}",
                vector.message
            );
        }
    }

    #[test]
    fn later_nonces_differ() {
        let x = Scalar::from(7u32);
        let mut nonces = Nonces::new(&x, &[3; 32]);
        let first = nonces.next();
        let second = nonces.next();
        assert_ne!(first, second);
        assert_eq!(Nonces::new(&x, &[3; 32]).next(), first);
        assert_ne!(Nonces::new(&x, &[4; 32]).next(), first);
    }

    #[test]
    fn padding_the_key_gives_the_same_mac() {
        let key = [9u8; 32];
        let expected = <HmacSha256 as KeyInit>::new_from_slice(&key)
            .unwrap()
            .chain_update(b"abc")
            .finalize()
            .into_bytes();
        assert_eq!(hmac(&key, &[b"a", b"bc"]).as_slice(), expected.as_slice());
    }
}
