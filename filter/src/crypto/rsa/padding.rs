//! The encoded-message checks of RFC 8017 §9: EMSA-PKCS1-v1_5 (§9.2), by
//! encoding the expected message and comparing, as §8.2.2 prescribes, and
//! EMSA-PSS-VERIFY (§9.1.2) with MGF1 (§B.2.1) over the signature's hash
//! and a salt as long as the hash (RFC 7518 §3.5).

use crate::alg::HashAlg;
use crate::crypto::digest_parts;

/// The DER encoding of a DigestInfo up to the digest itself
/// (RFC 8017 §9.2, note 1): the hash's algorithm identifier with NULL
/// parameters, then the OCTET STRING header.
fn digest_info_prefix(hash: HashAlg) -> &'static [u8] {
    match hash {
        HashAlg::Sha256 => &[
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x01, 0x05, 0x00, 0x04, 0x20,
        ],
        HashAlg::Sha384 => &[
            0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x02, 0x05, 0x00, 0x04, 0x30,
        ],
        HashAlg::Sha512 => &[
            0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x03, 0x05, 0x00, 0x04, 0x40,
        ],
    }
}

/// Whether `em` is `0x00 || 0x01 || PS || 0x00 || T`, with `PS` at least
/// eight `0xff` bytes filling `em` and `T` the DigestInfo of `m_hash`
/// (RFC 8017 §9.2, steps 2 to 5).
pub(super) fn pkcs1v15_matches(em: &[u8], hash: HashAlg, m_hash: &[u8]) -> bool {
    let prefix = digest_info_prefix(hash);
    let t_len = prefix.len() + m_hash.len();
    let Some(ps_len) = em.len().checked_sub(t_len + 3) else {
        return false;
    };
    if ps_len < 8 {
        return false;
    }
    let expected = [0x00, 0x01]
        .iter()
        .chain(std::iter::repeat_n(&0xff, ps_len))
        .chain(&[0x00])
        .chain(prefix)
        .chain(m_hash);
    em.iter().eq(expected)
}

/// EMSA-PSS-VERIFY (RFC 8017 §9.1.2) with `sLen = hLen`, for the output of
/// RSAVP1 `em` (as long as the modulus) and `em_bits = modBits - 1`.
pub(super) fn pss_matches(em: &[u8], em_bits: usize, hash: HashAlg, m_hash: &[u8]) -> bool {
    let Some(em) = encoded_message(em, em_bits) else {
        return false;
    };
    let Some((masked_db, h)) = split_masked(em, em_bits, m_hash.len()) else {
        return false;
    };
    let db = unmask(masked_db, h, em_bits, hash);
    // Steps 12 to 14: H = Hash(0x00 × 8 || mHash || salt).
    salt(&db, m_hash.len()).is_some_and(|salt| *digest_parts(hash, &[&[0; 8], m_hash, salt]) == *h)
}

/// I2OSP(m, emLen) (§8.1.2, step 2c): when modBits - 1 is a multiple of 8,
/// emLen is one byte shorter than the modulus, and that byte must be zero.
fn encoded_message(em: &[u8], em_bits: usize) -> Option<&[u8]> {
    let (lead, em) = em.split_at_checked(em.len().checked_sub(em_bits.div_ceil(8))?)?;
    lead.iter().all(|b| *b == 0).then_some(em)
}

/// Steps 3 to 6: room for the hash, a salt as long and two more bytes; the
/// last byte 0xbc; maskedDB and H before it; the bits of maskedDB above
/// emBits zero.
fn split_masked(em: &[u8], em_bits: usize, h_len: usize) -> Option<(&[u8], &[u8])> {
    if em.len() < 2 * h_len + 2 {
        return None;
    }
    let (&trailer, em) = em.split_last()?;
    let (masked_db, h) = em.split_at_checked(em.len() - h_len)?;
    let high_bits_clear = masked_db.first()? & !within_em_bits(em_bits) == 0;
    (trailer == 0xbc && high_bits_clear).then_some((masked_db, h))
}

/// Steps 7 to 9: DB = maskedDB xor MGF1(H), the bits above emBits cleared.
fn unmask(masked_db: &[u8], h: &[u8], em_bits: usize, hash: HashAlg) -> Vec<u8> {
    let mut db = masked_db.to_vec();
    mgf1_xor(hash, h, &mut db);
    if let Some(first) = db.first_mut() {
        *first &= within_em_bits(em_bits);
    }
    db
}

/// Steps 10 and 11: DB is PS (zero bytes), 0x01, then the salt.
fn salt(db: &[u8], s_len: usize) -> Option<&[u8]> {
    let (padding, salt) = db.split_at_checked(db.len().checked_sub(s_len)?)?;
    let (&separator, ps) = padding.split_last()?;
    (separator == 0x01 && ps.iter().all(|b| *b == 0)).then_some(salt)
}

/// The bits of the encoded message's first byte that lie within emBits
/// (the `8·emLen - emBits` highest are outside).
fn within_em_bits(em_bits: usize) -> u8 {
    0xff >> (8 * em_bits.div_ceil(8) - em_bits)
}

/// `out ^= MGF1(seed, out.len())` (RFC 8017 §B.2.1): the hash of the seed
/// and a 4-byte big-endian counter, for counters 0, 1, ... until `out` is
/// covered.
fn mgf1_xor(hash: HashAlg, seed: &[u8], out: &mut [u8]) {
    let mut counter = 0u32;
    let mut rest = out.iter_mut();
    while rest.len() > 0 {
        let block = digest_parts(hash, &[seed, &counter.to_be_bytes()]);
        for (mask, byte) in block.iter().zip(rest.by_ref()) {
            *byte ^= mask;
        }
        counter = counter.wrapping_add(1);
    }
}
