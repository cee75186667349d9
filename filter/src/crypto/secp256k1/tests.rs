use super::field::*;
use super::multiply::*;
use super::point::*;
use super::*;
use crate::crypto::test_util::bytes;
use k256::U256;
use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use k256::elliptic_curve::bigint::NonZero;
use k256::elliptic_curve::ops::Reduce;
use k256::elliptic_curve::sec1::ToSec1Point as _;

/// Encodings the verifier itself never needs, for checking points against
/// `k256`'s.
impl Secp256k1Key {
    /// Parses an uncompressed SEC1 point (65 bytes: 0x04, x, y). `None`
    /// unless both coordinates are below p and the point is on the curve.
    pub(crate) fn from_uncompressed(bytes: &[u8]) -> Option<Self> {
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

    /// The compressed SEC1 encoding: 0x02 or 0x03, then x.
    pub(crate) fn to_compressed(self) -> [u8; 33] {
        let mut out = [0u8; 33];
        out[0] = if self.point.y.is_odd() { 0x03 } else { 0x02 };
        for (dst, src) in out.iter_mut().skip(1).zip(&self.point.x.to_bytes()) {
            *dst = *src;
        }
        out
    }
}

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
            let v =
                u32::from_le_bytes([b[4 * j % 36], b[4 * j % 36 + 1], b[4 * j % 36 + 2], b[39]]);
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
        let q_ours = Secp256k1Key::from_uncompressed(q.to_affine().to_sec1_point(false).as_bytes())
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
