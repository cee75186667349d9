use super::*;

const DAY: u64 = 86_400;

fn set_of(keys: Vec<StoredKey>) -> String {
    serde_json::to_string(&KeySet { keys }).unwrap()
}

fn es256_key(byte: u8, now: u64) -> StoredKey {
    new_key_of(Algorithm::ES256, [byte; 32], now).unwrap()
}

/// Whether `signature` verifies over `message` with the published key of
/// the current kid.
fn verifies(keys: &SigningKeys, message: &[u8], signature: &[u8; 64]) -> bool {
    let public = keys.published(0).find(|k| k.kid == keys.kid()).unwrap();
    public.key.verify(message, signature)
}

#[test]
fn one_current_key_signs_and_every_published_key_is_in_the_jwks() {
    let old = new_key([1; 32], 0);
    let mut set = KeySet {
        keys: vec![old.clone()],
    };
    assert!(set.rotate(new_key([2; 32], 30 * DAY), 30 * DAY, 30 * DAY, DAY));
    let keys = SigningKeys::from_set(&set).unwrap();
    assert_ne!(keys.kid(), old.kid);
    let jwks = keys.jwks(30 * DAY + 1);
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    assert_eq!(jwks["keys"][0]["kid"], old.kid.as_str());
    assert!(jwks["keys"][0].get("d").is_none(), "no private half");
    // After the overlap only the current key is published.
    let later = keys.jwks(31 * DAY);
    assert_eq!(later["keys"].as_array().unwrap().len(), 1);
    assert_eq!(later["keys"][0]["kid"], keys.kid());
    assert!(verifies(&keys, b"m", &keys.sign(b"m")));
    // The retired key verifies during the overlap only.
    assert!(keys.verifying_key(&old.kid, 30 * DAY + 1).is_some());
    assert!(keys.verifying_key(&old.kid, 31 * DAY).is_none());
    assert!(keys.verifying_key(keys.kid(), 31 * DAY).is_some());
    assert!(keys.verifying_key("unknown", 0).is_none());
}

#[test]
fn an_es256_set_signs_with_its_p256_key_and_publishes_an_ec_jwk() {
    let keys = SigningKeys::parse(&set_of(vec![es256_key(5, 0)])).unwrap();
    assert_eq!(keys.algorithm(), Algorithm::ES256);
    let signature = keys.sign(b"m");
    assert!(verifies(&keys, b"m", &signature));
    assert!(!verifies(&keys, b"n", &signature));
    let jwks = keys.jwks(0);
    let jwk = &jwks["keys"][0];
    let mut members: Vec<&str> = jwk
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    members.sort_unstable();
    assert_eq!(members, ["alg", "crv", "kid", "kty", "use", "x", "y"]);
    assert_eq!(
        (&jwk["kty"], &jwk["crv"], &jwk["alg"], &jwk["use"]),
        (
            &json!("EC"),
            &json!("P-256"),
            &json!("ES256"),
            &json!("sig")
        )
    );
    assert_eq!(jwk["kid"], keys.kid());
    for coordinate in ["x", "y"] {
        let bytes = URL_SAFE_NO_PAD
            .decode(jwk[coordinate].as_str().unwrap())
            .unwrap();
        assert_eq!(bytes.len(), 32, "{coordinate}");
    }
    // The stored secret is the scalar itself, 32 bytes.
    let stored = es256_key(5, 0);
    assert_eq!(URL_SAFE_NO_PAD.decode(&stored.seed).unwrap(), [5; 32]);
    assert_eq!(stored.alg, "ES256");
}

#[test]
fn rotation_waits_for_its_time_and_drops_what_ended() {
    let mut set = KeySet::default();
    assert!(set.rotate(new_key([1; 32], 0), 0, 30 * DAY, DAY));
    assert!(!set.rotate(new_key([2; 32], DAY), DAY, 30 * DAY, DAY));
    assert_eq!(set.keys.len(), 1);
    assert!(set.rotate(new_key([2; 32], 30 * DAY), 30 * DAY, 30 * DAY, DAY));
    assert_eq!(set.keys.len(), 2);
    // The retired key's publication ends; the next look drops it.
    assert!(set.rotate(new_key([3; 32], 31 * DAY), 31 * DAY, 30 * DAY, DAY));
    assert_eq!(set.keys.len(), 1);
    assert!(SigningKeys::from_set(&set).is_ok());
}

#[test]
fn another_algorithm_rotates_at_once_and_the_mixed_set_works() {
    let ed = new_key([1; 32], 0);
    let mut set = KeySet {
        keys: vec![ed.clone()],
    };
    // A day old, far from due by age: the new algorithm alone makes it due.
    assert!(set.rotate(es256_key(2, DAY), DAY, 30 * DAY, DAY));
    let keys = SigningKeys::from_set(&set).unwrap();
    assert_eq!(keys.algorithm(), Algorithm::ES256);
    assert_ne!(keys.kid(), ed.kid);
    // Both are published during the overlap, each under its own algorithm.
    let jwks = keys.jwks(DAY + 1);
    let published: Vec<(&str, &str)> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["kid"].as_str().unwrap(), k["alg"].as_str().unwrap()))
        .collect();
    assert_eq!(
        published,
        [(ed.kid.as_str(), "EdDSA"), (keys.kid(), "ES256")]
    );
    assert_eq!(
        keys.algorithms(DAY + 1),
        [Algorithm::ES256, Algorithm::EdDSA]
    );
    assert_eq!(keys.algorithms(2 * DAY), [Algorithm::ES256]);
    // What the retiring key signed still verifies with its published key.
    let retiring = SigningKeys::from_set(&KeySet {
        keys: vec![ed.clone()],
    })
    .unwrap();
    let old_signature = retiring.sign(b"m");
    let old_public = keys.published(DAY + 1).find(|k| k.kid == ed.kid).unwrap();
    assert!(old_public.key.verify(b"m", &old_signature));
    assert!(verifies(&keys, b"m", &keys.sign(b"m")));
    // The same algorithm again is no reason to rotate.
    assert!(!set.rotate(es256_key(3, 2 * DAY - 1), 2 * DAY - 1, 30 * DAY, DAY));
    // Back to Ed25519: rotates again, the P-256 key retiring.
    assert!(set.rotate(new_key([4; 32], 3 * DAY), 3 * DAY, 30 * DAY, DAY));
    let keys = SigningKeys::from_set(&set).unwrap();
    assert_eq!(keys.algorithm(), Algorithm::EdDSA);
    assert_eq!(keys.published(3 * DAY).count(), 2);
}

#[test]
fn new_es256_keys_need_a_scalar_below_the_order() {
    assert!(new_key_of(Algorithm::ES256, [0xff; 32], 0).is_none());
    assert!(new_key_of(Algorithm::ES256, [0; 32], 0).is_none());
    assert!(new_key_of(Algorithm::EdDSA, [0xff; 32], 0).is_some());
    assert_eq!(
        new_key_of(Algorithm::EdDSA, [1; 32], 7),
        Some(new_key([1; 32], 7))
    );
}

#[test]
fn malformed_sets_are_refused() {
    let good = new_key([1; 32], 0);
    let mut wrong_kid = good.clone();
    wrong_kid.kid = new_key([2; 32], 0).kid;
    let mut bad_seed = good.clone();
    bad_seed.seed = "AAAA".into();
    let mut hs = good.clone();
    hs.alg = "HS256".into();
    let mut retired = good.clone();
    retired.retired = Some(1);
    // An Ed25519 seed relabelled ES256 is another key: its kid is wrong.
    let mut relabelled = good.clone();
    relabelled.alg = "ES256".into();
    // A P-256 "scalar" at or above the order makes no key.
    let mut too_big = es256_key(3, 0);
    too_big.seed = URL_SAFE_NO_PAD.encode([0xff; 32]);
    for (text, expected) in [
        ("{}".to_string(), "not a signing key set"),
        (set_of(vec![wrong_kid]), "thumbprint"),
        (set_of(vec![bad_seed]), "32 bytes"),
        (set_of(vec![hs]), "alg must be EdDSA or ES256"),
        (set_of(vec![relabelled]), "thumbprint"),
        (set_of(vec![too_big]), "32 bytes"),
        (set_of(vec![]), "0 keys are current"),
        (set_of(vec![retired]), "0 keys are current"),
        (set_of(vec![good.clone(), new_key([3; 32], 0)]), "2 keys"),
        (set_of(vec![good.clone(), es256_key(3, 0)]), "2 keys"),
    ] {
        let e = SigningKeys::parse(&text).unwrap_err().to_string();
        assert!(e.contains(expected), "{text}: {e}");
    }
    assert!(SigningKeys::parse(&set_of(vec![good])).is_ok());
}
