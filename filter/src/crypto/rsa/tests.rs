//! The verifier against RFC 7515's example, and against the `rsa` crate:
//! its signatures, its public operation and its key checks.

use super::*;
use crate::crypto::VerifyingKey;
use crate::crypto::test_util::{TestRng, b64url, bytes};
use ::rsa::BoxedUint;
use ::rsa::sha2::{Sha256, Sha384, Sha512};
use ::rsa::traits::PublicKeyParts as _;
use proptest::prelude::*;

// RFC 7515 Appendix A.2: the example RSA key (published test data).
pub const N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
pub const E: &str = "AQAB";
const D: &str = "Eq5xpGnNCivDflJsRQBXHx1hdR1k6Ulwe2JZD50LpXyWPEAeP88vLNO97IjlA7_GQ5sLKMgvfTeXZx9SE-7YwVol2NXOoAJe46sui395IW_GO-pWJ1O0BkTGoVEn2bKVRUCgu-GjBVaYLU6f3l9kJfFNS3E0QbVdxzubSu3Mkqzjkn439X0M_V51gfpRLI9JYanrC4D4qAdGcopV_0ZHHzQlBjudU2QvXt4ehNYTCBr6XCLQUShb1juUO1ZdiYoFaFQT5Tw8bGUl_x_jTj3ccPDVZFD9pIuhLhBOneufuBiB4cS98l2SR_RQyGWSeWjnczT0QU91p1DhOVRuOopznQ";
const P: &str = "4BzEEOtIpmVdVEZNCqS7baC4crd0pqnRH_5IB3jw3bcxGn6QLvnEtfdUdiYrqBdss1l58BQ3KhooKeQTa9AB0Hw_Py5PJdTJNPY8cQn7ouZ2KKDcmnPGBY5t7yLc1QlQ5xHdwW1VhvKn-nXqhJTBgIPgtldC-KDV5z-y2XDwGUc";
const Q: &str = "uQPEfgmVtjL0Uyyx88GZFF1fOunH3-7cepKmtH4pxhtCoHqpWmT8YAmZxaewHgHAjLYsp1ZSe7zFYHj7C6ul7TjeLQeZD_YwD66t62wDmpe_HlB-TnBA-njbglfIsRLtXlnDzQkv5dTltRJ11BKBBypeeF6689rjcJIDEz9RWdc";
const A2_INPUT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
const A2_SIG: &str = "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";

fn uint(b64: &str) -> BoxedUint {
    BoxedUint::from_be_slice_vartime(&b64url(b64))
}

fn public() -> VerifyingKey {
    VerifyingKey::Rsa(RsaKey::from_components(&b64url(N), &b64url(E)).expect("valid key"))
}

fn private() -> rsa::PrivateKey {
    rsa::PrivateKey::from_components(uint(N), uint(E), uint(D), vec![uint(P), uint(Q)])
        .expect("RFC 7515 A.2 key")
}

fn sign(key: &rsa::PrivateKey, alg: Alg, msg: &[u8]) -> Vec<u8> {
    match alg {
        Alg::RS256 => key.pkcs1v15_sign::<Sha256>(msg),
        Alg::RS384 => key.pkcs1v15_sign::<Sha384>(msg),
        Alg::RS512 => key.pkcs1v15_sign::<Sha512>(msg),
        Alg::PS256 => key.pss_sign_with_rng::<Sha256, _>(&mut TestRng::new(msg), msg),
        Alg::PS384 => key.pss_sign_with_rng::<Sha384, _>(&mut TestRng::new(msg), msg),
        Alg::PS512 => key.pss_sign_with_rng::<Sha512, _>(&mut TestRng::new(msg), msg),
        _ => unreachable!("not an RSA alg"),
    }
    .expect("signing works")
}

const RSA_ALGS: [Alg; 6] = [
    Alg::RS256,
    Alg::RS384,
    Alg::RS512,
    Alg::PS256,
    Alg::PS384,
    Alg::PS512,
];

#[test]
fn rfc7515_a2_rs256() {
    let key = public();
    let sig = b64url(A2_SIG);
    assert_eq!(key.verify(Alg::RS256, A2_INPUT.as_bytes(), &sig), Ok(()));
    // Same bytes under the other hashes or PSS padding: not valid.
    for alg in [Alg::RS384, Alg::RS512, Alg::PS256, Alg::PS384, Alg::PS512] {
        assert_eq!(
            key.verify(alg, A2_INPUT.as_bytes(), &sig),
            Err(SignatureError::Invalid),
            "{alg}"
        );
    }
    for alg in [Alg::ES256, Alg::ES384, Alg::EdDSA] {
        assert_eq!(
            key.verify(alg, A2_INPUT.as_bytes(), &sig),
            Err(SignatureError::WrongKeyType)
        );
    }
    let mut input = A2_INPUT.as_bytes().to_vec();
    input[5] ^= 0x20;
    assert_eq!(
        key.verify(Alg::RS256, &input, &sig),
        Err(SignatureError::Invalid)
    );
}

#[test]
fn every_rsa_alg_round_trips_and_is_distinct() {
    let sk = private();
    let key = public();
    let msg = bytes("rsa msg", 0, 120);
    for alg in RSA_ALGS {
        let sig = sign(&sk, alg, &msg);
        assert_eq!(sig.len(), 256);
        assert_eq!(key.verify(alg, &msg, &sig), Ok(()), "{alg}");
        // Only the signing alg accepts it: RS vs PS, and the hash, matter.
        for other in RSA_ALGS.into_iter().filter(|o| *o != alg) {
            assert_eq!(
                key.verify(other, &msg, &sig),
                Err(SignatureError::Invalid),
                "{alg} signature checked as {other}"
            );
        }
        let mut tampered = sig.clone();
        tampered[100] ^= 0x01;
        assert_eq!(
            key.verify(alg, &msg, &tampered),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            key.verify(alg, b"another message", &sig),
            Err(SignatureError::Invalid)
        );
    }
}

#[test]
fn pss_salt_must_be_hash_length() {
    let sk = private();
    let key = public();
    let msg = b"salt";
    for salt_len in [0usize, 20, 64] {
        let signer = rsa::pss::SigningKey::<Sha256>::new_with_salt_len(sk.clone(), salt_len);
        let sig = rsa::signature::RandomizedSigner::try_sign_with_rng(
            &signer,
            &mut TestRng::new(msg),
            msg,
        )
        .expect("signs");
        let sig: Box<[u8]> = sig.into();
        assert_eq!(
            key.verify(Alg::PS256, msg, &sig),
            Err(SignatureError::Invalid),
            "salt {salt_len}"
        );
    }
}

#[test]
fn signature_length_must_match_modulus() {
    let key = public();
    let sig = b64url(A2_SIG);
    let input = A2_INPUT.as_bytes();
    for len in [0, 1, 255, 257, 512] {
        let mut candidate = sig.clone();
        candidate.resize(len, 0);
        assert_eq!(
            key.verify(Alg::RS256, input, &candidate),
            Err(SignatureError::Malformed),
            "len {len}"
        );
    }
    // A leading zero prepended, or one dropped: refused.
    let padded = [&[0u8][..], &sig].concat();
    assert_eq!(
        key.verify(Alg::RS256, input, &padded),
        Err(SignatureError::Malformed)
    );
    // Signature value >= n: refused.
    let high = vec![0xffu8; 256];
    assert_eq!(
        key.verify(Alg::RS256, input, &high),
        Err(SignatureError::Invalid)
    );
    let zero = vec![0u8; 256];
    assert_eq!(
        key.verify(Alg::RS256, input, &zero),
        Err(SignatureError::Invalid)
    );
}

#[test]
fn another_modulus_does_not_verify() {
    let mut n = b64url(N);
    n[100] ^= 0x10;
    let key = RsaKey::from_components(&n, &b64url(E)).expect("still odd, 2048 bits");
    let key = VerifyingKey::Rsa(key);
    assert_eq!(
        key.verify(Alg::RS256, A2_INPUT.as_bytes(), &b64url(A2_SIG)),
        Err(SignatureError::Invalid)
    );
}

#[test]
fn key_size_limits() {
    let n = b64url(N);
    let e = b64url(E);
    assert_eq!(
        RsaKey::from_components(&n, &e).map(|k| k.bits()),
        Some(2048)
    );
    let padded = [&[0u8; 3][..], &n].concat();
    assert_eq!(
        RsaKey::from_components(&padded, &e).map(|k| k.bits()),
        Some(2048)
    );
    assert!(RsaKey::from_components(&n[..255], &e).is_none());
    assert!(RsaKey::from_components(&n[1..], &e).is_none());
    // 8192 bits (top bit set, odd): accepted; 8200 bits: refused.
    let big: Vec<u8> = std::iter::repeat_n(n.as_slice(), 4)
        .flatten()
        .copied()
        .collect();
    assert_eq!(
        RsaKey::from_components(&big, &e).map(|k| k.bits()),
        Some(8192)
    );
    let bigger = [&[1u8][..], &big].concat();
    assert!(RsaKey::from_components(&bigger, &e).is_none());
    assert!(RsaKey::from_components(&[], &e).is_none());
    assert!(RsaKey::from_components(&n, &[]).is_none());
    assert!(RsaKey::from_components(&n, &[0, 0]).is_none());
    assert!(RsaKey::from_components(&n, &[1]).is_none());
    assert!(RsaKey::from_components(&n, &[1, 0, 0]).is_none());
    assert!(RsaKey::from_components(&n, &[3]).is_some());
    assert!(RsaKey::from_components(&n, &[0xff; 6]).is_none());
}

/// The fixture keys and RFC 7515's, each as the crate's private key and
/// our public one, built once.
fn key_pairs() -> &'static [(::rsa::PrivateKey, RsaKey)] {
    use super::test_keys::{K2048_E3, K2049, K3072, K4096};
    use std::sync::OnceLock;
    static KEYS: OnceLock<Vec<(::rsa::PrivateKey, RsaKey)>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut pairs = vec![(private(), rsa_key(&[N, E]))];
        for [n, e, d, p, q] in [K2049, K3072, K4096, K2048_E3] {
            let sk = ::rsa::PrivateKey::from_components(
                uint(n),
                uint(e),
                uint(d),
                vec![uint(p), uint(q)],
            )
            .expect("fixture key");
            pairs.push((sk, rsa_key(&[n, e])));
        }
        pairs
    })
}

fn rsa_key([n, e]: &[&str; 2]) -> RsaKey {
    RsaKey::from_components(&b64url(n), &b64url(e)).expect("valid key")
}

fn crate_verifies(sk: &::rsa::PrivateKey, alg: Alg, msg: &[u8], sig: &[u8]) -> bool {
    let pk = sk.to_public_key();
    match alg {
        Alg::RS256 => pk.pkcs1v15_verify::<Sha256>(msg, sig),
        Alg::RS384 => pk.pkcs1v15_verify::<Sha384>(msg, sig),
        Alg::RS512 => pk.pkcs1v15_verify::<Sha512>(msg, sig),
        Alg::PS256 => pk.pss_verify::<Sha256>(msg, sig),
        Alg::PS384 => pk.pss_verify::<Sha384>(msg, sig),
        Alg::PS512 => pk.pss_verify::<Sha512>(msg, sig),
        _ => unreachable!("not an RSA alg"),
    }
    .is_ok()
}

/// The raw private operation on an encoded message: a signature whose
/// padding is whatever `em` holds.
fn sign_raw(sk: &::rsa::PrivateKey, em: &[u8]) -> Vec<u8> {
    let precision = sk.n().as_ref().bits_precision();
    let m = BoxedUint::from_be_slice(em, precision).expect("fits");
    let s = ::rsa::hazmat::rsa_decrypt(None::<&mut TestRng>, sk, &m).expect("private operation");
    left_pad(&s.to_be_bytes(), sk.size())
}

/// The last `len` bytes of `bytes`, or `bytes` after leading zeros.
fn left_pad(bytes: &[u8], len: usize) -> Vec<u8> {
    let mut out = vec![0; len.saturating_sub(bytes.len())];
    out.extend_from_slice(&bytes[bytes.len().saturating_sub(len)..]);
    out
}

/// `a + b` for big-endian numbers of one length, `None` on overflow.
fn add(a: &[u8], b: &[u8]) -> Option<Vec<u8>> {
    let mut out = vec![0; a.len()];
    let mut carry = 0u16;
    for ((o, x), y) in out.iter_mut().zip(a).zip(b).rev() {
        let sum = u16::from(*x) + u16::from(*y) + carry;
        *o = sum as u8;
        carry = sum >> 8;
    }
    (carry == 0).then_some(out)
}

fn modulus_bytes(sk: &::rsa::PrivateKey) -> Vec<u8> {
    left_pad(&sk.n().as_ref().to_be_bytes(), sk.size())
}

fn bit_width(sk: &::rsa::PrivateKey) -> usize {
    sk.n().as_ref().bit_width() as usize
}

/// Every key size and exponent of the fixtures: the crate signs, we
/// verify, and only under the signing algorithm.
#[test]
fn crate_signatures_verify_for_every_key() {
    let msg = bytes("rsa kat", 0, 77);
    for (sk, key) in key_pairs() {
        assert_eq!(key.bits(), bit_width(sk));
        for alg in RSA_ALGS {
            let sig = sign(sk, alg, &msg);
            assert_eq!(
                key.verify(alg, &msg, &sig),
                Ok(()),
                "{alg}, {} bits",
                key.bits()
            );
            for other in RSA_ALGS.into_iter().filter(|o| *o != alg) {
                assert_eq!(key.verify(other, &msg, &sig), Err(SignatureError::Invalid));
            }
        }
    }
}

/// What a hostile sender may do to a good signature.
#[derive(Clone, Debug)]
enum Tamper {
    None,
    /// One bit flipped.
    Flip(usize),
    /// Cut to this many bytes, or zero-extended to it.
    Resize(usize),
    /// Plus n, when that still fits: equal to the signature mod n, so
    /// only the `s < n` check refuses it.
    PlusModulus,
    /// n itself, or n - 1 (-1 mod n, its own e-th power).
    Modulus(bool),
    /// Other bytes of the right length.
    Replace(Vec<u8>),
}

fn tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        Just(Tamper::None),
        any::<usize>().prop_map(Tamper::Flip),
        (0usize..600).prop_map(Tamper::Resize),
        Just(Tamper::PlusModulus),
        any::<bool>().prop_map(Tamper::Modulus),
        prop::collection::vec(any::<u8>(), 512).prop_map(Tamper::Replace),
    ]
}

fn apply(tamper: &Tamper, sk: &::rsa::PrivateKey, sig: &[u8]) -> Vec<u8> {
    let n = modulus_bytes(sk);
    match tamper {
        Tamper::None => sig.to_vec(),
        Tamper::Flip(bit) => {
            let mut out = sig.to_vec();
            let bit = bit % (out.len() * 8);
            out[bit / 8] ^= 1 << (bit % 8);
            out
        }
        Tamper::Resize(len) => {
            let mut out = sig.to_vec();
            out.resize(*len, 0);
            out
        }
        Tamper::PlusModulus => add(sig, &n).unwrap_or(n),
        Tamper::Modulus(minus_one) => {
            let mut out = n;
            if *minus_one {
                *out.last_mut().expect("not empty") -= 1;
            }
            out
        }
        Tamper::Replace(bytes) => bytes[..sig.len()].to_vec(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Our verifier and the crate's agree on the crate's signatures for
    /// random messages over every fixture key (2048 to 4096 bits), as
    /// signed and as tampered with; a length other than the modulus's is
    /// malformed.
    #[test]
    fn verdicts_match_the_crate(
        key in 0..5usize,
        alg in prop::sample::select(RSA_ALGS.to_vec()),
        msg in prop::collection::vec(any::<u8>(), 0..300),
        tamper in tamper(),
    ) {
        let (sk, key) = &key_pairs()[key];
        let sig = apply(&tamper, sk, &sign(sk, alg, &msg));
        let ours = key.verify(alg, &msg, &sig);
        prop_assert_eq!(ours.is_ok(), crate_verifies(sk, alg, &msg, &sig));
        match tamper {
            Tamper::None => prop_assert_eq!(ours, Ok(())),
            Tamper::Resize(len) if len != sk.size() => {
                prop_assert_eq!(ours, Err(SignatureError::Malformed))
            }
            Tamper::Resize(_) => prop_assert_eq!(ours, Ok(())),
            _ => prop_assert_eq!(ours, Err(SignatureError::Invalid)),
        }
    }
}

/// `bytes` made a modulus of exactly `bits` bits, odd or even, big-endian
/// (empty for 0 bits).
fn random_modulus(bits: usize, mut bytes: Vec<u8>, odd: bool) -> Vec<u8> {
    bytes.resize(bits.div_ceil(8), 0);
    if bits == 0 {
        return bytes;
    }
    if let Some(top) = bytes.first_mut() {
        let top_bit = (bits - 1) % 8;
        *top = (*top & ((1u16 << top_bit) - 1) as u8) | 1 << top_bit;
    }
    if let Some(low) = bytes.last_mut() {
        *low = if odd { *low | 1 } else { *low & !1 };
    }
    bytes
}

/// `x` big-endian without leading zero bytes (empty for 0).
fn minimal_bytes(x: u64) -> Vec<u8> {
    x.to_be_bytes()[x.leading_zeros() as usize / 8..].to_vec()
}

fn exponent_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(3u64),
        Just(65537),
        Just((1 << 33) - 1),
        (1u64..1 << 32).prop_map(|x| 2 * x + 1),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// `s^e mod n` is the crate's for random odd moduli of 2048 to 4096
    /// bits (not products of two primes: the arithmetic does not care),
    /// random exponents and random `s < n`; `s >= n` is refused.
    #[test]
    fn public_operation_matches_the_crate(
        bits in 2048usize..=4096,
        n in prop::collection::vec(any::<u8>(), 512),
        e in exponent_strategy(),
        s in prop::collection::vec(any::<u8>(), 512),
        below in any::<bool>(),
    ) {
        let n = random_modulus(bits, n, true);
        let mut s = s[..n.len()].to_vec();
        if below {
            // Below 2^(bits - 1), so below n.
            s[0] &= ((1u16 << ((bits - 1) % 8)) - 1) as u8;
        }
        let ours = super::modulus::Modulus::new(&n).expect("odd").pow(&s, e);
        let n_uint = BoxedUint::from_be_slice_vartime(&n);
        if s.as_slice() >= n.as_slice() {
            prop_assert_eq!(ours, None);
        } else {
            let precision = n_uint.bits_precision();
            let pk = ::rsa::PublicKey::new_unchecked(n_uint, BoxedUint::from(e));
            let m = BoxedUint::from_be_slice(&s, precision).expect("fits");
            let theirs = ::rsa::hazmat::rsa_encrypt(&pk, &m).expect("public operation");
            prop_assert_eq!(ours, Some(left_pad(&theirs.to_be_bytes(), n.len())));
        }
    }

    /// We accept exactly the keys the crate accepted with our limits
    /// (2048 to 8192 bits, odd modulus, odd exponent from 3 to 2^33 - 1),
    /// probed around each limit, with leading zero bytes and even moduli.
    #[test]
    fn key_checks_match_the_crate(
        bits in prop_oneof![0usize..40, 2040usize..2057, 3070usize..3075, 8185usize..8201],
        n in prop::collection::vec(any::<u8>(), 1030),
        odd in any::<bool>(),
        n_zeros in 0usize..3,
        e in prop_oneof![
            exponent_strategy(),
            prop::sample::select(vec![0, 1, 2, 4, 65536, 1 << 33, (1 << 33) + 1, u64::MAX]),
            any::<u64>(),
        ],
        e_zeros in 0usize..3,
    ) {
        let n = [vec![0; n_zeros], random_modulus(bits, n, odd)].concat();
        let e = [vec![0; e_zeros], minimal_bytes(e)].concat();
        let ours = RsaKey::from_components(&n, &e);
        let theirs = ::rsa::PublicKey::new_with_size_limits(
            BoxedUint::from_be_slice_vartime(&n),
            BoxedUint::from_be_slice_vartime(&e),
            MIN_BITS..=MAX_BITS,
        );
        prop_assert_eq!(ours.is_some(), theirs.is_ok(), "{} bits, e {:?}", bits, e);
        if let (Some(ours), Ok(theirs)) = (ours, theirs) {
            prop_assert_eq!(ours.bits(), theirs.n().as_ref().bit_width() as usize);
        }
    }
}

#[test]
fn even_and_short_moduli_are_refused() {
    let n = b64url(N);
    let mut even = n.clone();
    *even.last_mut().expect("not empty") &= !1;
    assert!(RsaKey::from_components(&even, &[1, 0, 1]).is_none());
    // 2047 bits: the top bit cleared.
    let mut short = n.clone();
    short[0] &= 0x7f;
    assert!(RsaKey::from_components(&short, &[1, 0, 1]).is_none());
    assert!(RsaKey::from_components(&[0xff, 0xff, 0xff, 0xff, 0xff], &[3]).is_none());
    // e = n's value would be refused anyway: even, and far too large.
    assert!(RsaKey::from_components(&n, &n).is_none());
}

/// The DER DigestInfo of a SHA-256 digest up to the digest (RFC 8017 §9.2
/// note 1).
const SHA256_DIGEST_INFO: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];
/// The same without the NULL parameters, a form some parsers accept but
/// RFC 8017 does not name.
const SHA256_DIGEST_INFO_NO_NULL: &[u8] = &[
    0x30, 0x2f, 0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x04,
    0x20,
];
/// SHA-384's identifier in front of a 32-byte digest.
const SHA384_OID_SHA256_LENGTH: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05,
    0x00, 0x04, 0x20,
];

/// `0x00 0x01 PS 0x00 prefix hash` over the modulus's length, `PS` of
/// `0xff` bytes (RFC 8017 §9.2).
fn pkcs1_em(len: usize, block_type: u8, prefix: &[u8], hash: &[u8]) -> Vec<u8> {
    let ps = len - 3 - prefix.len() - hash.len();
    [
        &[0x00, block_type][..],
        &vec![0xff; ps],
        &[0x00],
        prefix,
        hash,
    ]
    .concat()
}

/// PKCS #1 v1.5 encodings a lenient parser might take: each is refused,
/// by us and by the crate; the exact encoding is accepted.
#[test]
fn pkcs1v15_encoding_is_compared_exactly() {
    let (sk, key) = &key_pairs()[0];
    let msg = b"pkcs1 encodings";
    let hash = digest(HashAlg::Sha256, msg);
    let prefix = SHA256_DIGEST_INFO;
    let mut bad_ps = pkcs1_em(sk.size(), 0x01, prefix, &hash);
    bad_ps[20] = 0xfe;
    let mut short_ps = pkcs1_em(sk.size(), 0x01, prefix, &hash);
    short_ps.remove(2);
    short_ps.push(0x00);
    let good = pkcs1_em(sk.size(), 0x01, prefix, &hash);
    assert_eq!(key.verify(Alg::RS256, msg, &sign_raw(sk, &good)), Ok(()));
    for em in [
        pkcs1_em(sk.size(), 0x02, prefix, &hash),
        pkcs1_em(sk.size(), 0x01, SHA256_DIGEST_INFO_NO_NULL, &hash),
        pkcs1_em(sk.size(), 0x01, SHA384_OID_SHA256_LENGTH, &hash),
        bad_ps,
        short_ps,
    ] {
        let sig = sign_raw(sk, &em);
        assert_eq!(
            key.verify(Alg::RS256, msg, &sig),
            Err(SignatureError::Invalid),
            "{em:02x?}"
        );
        assert!(!crate_verifies(sk, Alg::RS256, msg, &sig));
    }
}

/// The pieces of an EMSA-PSS encoding (RFC 8017 §9.1.1), each of which a
/// test may get wrong on purpose.
struct PssEm {
    salt: Vec<u8>,
    separator: u8,
    trailer: u8,
    /// Leave the bits above emBits set instead of clearing them.
    high_bits: bool,
    /// The byte before the encoding when the modulus is one byte longer.
    lead: u8,
}

impl PssEm {
    fn new(salt: Vec<u8>) -> Self {
        PssEm {
            salt,
            separator: 0x01,
            trailer: 0xbc,
            high_bits: false,
            lead: 0,
        }
    }

    /// EMSA-PSS-ENCODE with SHA-256 for a modulus of `mod_bits` bits,
    /// padded to the modulus's length.
    fn encode(&self, m_hash: &[u8], mod_bits: usize) -> Vec<u8> {
        use sha2::Digest as _;
        let em_bits = mod_bits - 1;
        let em_len = em_bits.div_ceil(8);
        let h = sha2::Sha256::new()
            .chain_update([0u8; 8])
            .chain_update(m_hash)
            .chain_update(&self.salt)
            .finalize();
        let mut db = vec![0u8; em_len - h.len() - 1];
        let salt_at = db.len() - self.salt.len();
        db[salt_at - 1] = self.separator;
        db[salt_at..].copy_from_slice(&self.salt);
        let mask: Vec<u8> = (0u32..)
            .flat_map(|i| {
                sha2::Sha256::new()
                    .chain_update(h)
                    .chain_update(i.to_be_bytes())
                    .finalize()
            })
            .take(db.len())
            .collect();
        for (byte, m) in db.iter_mut().zip(mask) {
            *byte ^= m;
        }
        let free_bits = 8 * em_len - em_bits;
        if self.high_bits {
            db[0] |= !(0xff >> free_bits);
        } else {
            db[0] &= 0xff >> free_bits;
        }
        let lead = vec![self.lead; mod_bits.div_ceil(8) - em_len];
        [lead, db, h.to_vec(), vec![self.trailer]].concat()
    }
}

/// PSS encodings with one thing wrong: each refused, by us and by the
/// crate, on a 2048-bit modulus (emBits = 2047: one bit above it) and a
/// 2049-bit one (emBits = 2048: the encoding is a byte shorter than the
/// modulus).
#[test]
fn pss_encoding_is_checked_piece_by_piece() {
    let msg = b"pss encodings";
    let m_hash = digest(HashAlg::Sha256, msg);
    for (sk, key) in &key_pairs()[..2] {
        let bits = key.bits();
        let check = |em: &PssEm, expected: Result<(), SignatureError>| {
            let sig = sign_raw(sk, &em.encode(&m_hash, bits));
            assert_eq!(key.verify(Alg::PS256, msg, &sig), expected, "{bits} bits");
            assert_eq!(crate_verifies(sk, Alg::PS256, msg, &sig), expected.is_ok());
        };
        let salt = bytes("pss salt", bits as u64, 32);
        check(&PssEm::new(salt.clone()), Ok(()));
        check(
            &PssEm {
                trailer: 0xbb,
                ..PssEm::new(salt.clone())
            },
            Err(SignatureError::Invalid),
        );
        check(
            &PssEm {
                separator: 0x02,
                ..PssEm::new(salt.clone())
            },
            Err(SignatureError::Invalid),
        );
        // Salts of 31 and 33 bytes: a valid PSS encoding, but not with
        // sLen = hLen.
        check(
            &PssEm::new(salt[..31].to_vec()),
            Err(SignatureError::Invalid),
        );
        check(
            &PssEm::new([&salt[..], &[7]].concat()),
            Err(SignatureError::Invalid),
        );
        // Bits set above emBits: the top bit of a 2048-bit modulus's
        // encoding, or a nonzero byte before a 2049-bit one's. Either needs
        // a value still below n to be signed at all: try salts until one
        // gives it.
        let n = modulus_bytes(sk);
        let em = (0..)
            .map(|i| PssEm {
                high_bits: bits % 8 == 0,
                lead: u8::from(bits % 8 != 0),
                ..PssEm::new(bytes("pss high", i, 32))
            })
            .find(|em| em.encode(&m_hash, bits) < n)
            .expect("found");
        check(&em, Err(SignatureError::Invalid));
    }
}

/// Native timing of RS256 and PS256 verification, for comparison with
/// the ECDSA numbers. Run with
/// `cargo test --release -p attach-filter rsa_timing -- --ignored --nocapture`.
#[test]
#[ignore]
fn rsa_timing() {
    use std::time::Instant;
    let sk = private();
    let key = public();
    let msg = bytes("rsa timing", 0, 300);
    for alg in [Alg::RS256, Alg::PS256] {
        let sig = sign(&sk, alg, &msg);
        let rounds = 2000u32;
        let start = Instant::now();
        for _ in 0..rounds {
            assert!(key.verify(alg, std::hint::black_box(&msg), &sig).is_ok());
        }
        let per = start.elapsed() / rounds;
        println!("{alg} (2048-bit): {:.1} us/verify", per.as_secs_f64() * 1e6);
    }
}
