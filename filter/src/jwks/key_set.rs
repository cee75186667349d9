//! JSON Web Key Sets (RFC 7517) holding the issuer's public signing keys.
//!
//! A JWKS often carries keys the gateway cannot or must not use (encryption
//! keys, symmetric keys, curves it does not support). Those are skipped
//! rather than failing the whole document, so one odd entry published by
//! an identity provider does not lock every user out. Only a document that
//! is not a JWKS at all, or one with no usable key left, is an error.

use crate::alg::Alg;
use crate::crypto::{Ed25519Key, P256Key, P384Key, RsaKey, VerifyingKey};
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::Deserialize;
use std::fmt;

/// At most this many usable keys are kept, in document order. Real sets hold
/// a handful; the cap bounds the memory and time a hostile document can cost
/// (an EC key carries a precomputed table of up to ~100 KB, built
/// in a few milliseconds).
pub const MAX_KEYS: usize = 32;

/// JWK members are base64url without padding (RFC 7515 §2); padding is
/// tolerated since it changes nothing about the value.
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// One usable verification key from a JWKS.
#[derive(Debug)]
pub struct Jwk {
    pub kid: Option<String>,
    /// The JWK's own `alg`, when it names one.
    pub alg: Option<Alg>,
    pub key: VerifyingKey,
}

impl Jwk {
    /// Whether a token signed with `alg` may be checked with this key: the
    /// key family must match, and when the JWK names an `alg` the token's
    /// must be that one (RFC 7517 §4.4).
    pub fn accepts(&self, alg: Alg) -> bool {
        alg.key_family() == self.key.family() && self.alg.is_none_or(|own| own == alg)
    }
}

/// The usable keys of a JWKS document.
#[derive(Debug)]
pub struct JwkSet {
    keys: Vec<Jwk>,
}

/// Why a JWKS document was refused as a whole. Messages never include key
/// material.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwksError {
    /// Not valid JSON, or JSON that is not an object.
    NotJson,
    /// A JSON object without a `keys` array.
    NoKeysArray,
    /// Every entry was skipped as unusable for signature verification.
    NoUsableKey,
}

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JwksError::NotJson => "JWKS is not a JSON object",
            JwksError::NoKeysArray => "JWKS has no \"keys\" array",
            JwksError::NoUsableKey => "JWKS has no usable signature key",
        })
    }
}

impl std::error::Error for JwksError {}

impl JwkSet {
    /// Parses a JWKS document (RFC 7517). Keys that cannot be used for
    /// signature verification are skipped, not errors: `use` other than
    /// `"sig"`, `kty` `"oct"` or unknown, unknown `crv`, `key_ops` without
    /// `"verify"`, an unsupported or symmetric `alg` or one of another key
    /// family, and malformed members (wrong JSON type, bad base64url, wrong
    /// lengths, RSA moduli outside 2048..=8192 bits, EC points off the
    /// curve, weak Ed25519 keys). At most [`MAX_KEYS`] keys are kept.
    ///
    /// An error only when the document itself is not a JSON object with a
    /// `keys` array, or when no usable key remains.
    pub fn parse(json: &[u8]) -> Result<JwkSet, JwksError> {
        let doc: serde_json::Value =
            serde_json::from_slice(json).map_err(|_| JwksError::NotJson)?;
        let object = doc.as_object().ok_or(JwksError::NotJson)?;
        let entries = object
            .get("keys")
            .and_then(serde_json::Value::as_array)
            .ok_or(JwksError::NoKeysArray)?;
        let keys: Vec<Jwk> = entries
            .iter()
            .filter_map(|entry| RawJwk::deserialize(entry).ok()?.into_jwk())
            .take(MAX_KEYS)
            .collect();
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey);
        }
        Ok(JwkSet { keys })
    }

    /// Key selection: with a `kid`, the first key with that exact `kid`;
    /// without one, the only key (`None` when there are several).
    pub fn find(&self, kid: Option<&str>) -> Option<&Jwk> {
        match kid {
            Some(kid) => self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
            None => match self.keys.as_slice() {
                [only] => Some(only),
                _ => None,
            },
        }
    }

    /// Like [`JwkSet::find`], but only among keys that [accept](Jwk::accepts)
    /// `alg`. Some providers publish one `kid` for several keys of different
    /// types; this picks the one the token can actually be checked with.
    /// Without a `kid`, the only key accepting `alg`.
    pub fn find_for(&self, kid: Option<&str>, alg: Alg) -> Option<&Jwk> {
        let mut candidates = self
            .keys
            .iter()
            .filter(|k| k.accepts(alg))
            .filter(|k| kid.is_none() || k.kid.as_deref() == kid);
        let first = candidates.next()?;
        if kid.is_none() && candidates.next().is_some() {
            return None;
        }
        Some(first)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The members we read; any other member is ignored. A member of the wrong
/// JSON type makes the whole entry fail to deserialize, and so be skipped.
#[derive(Deserialize)]
struct RawJwk {
    kty: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    alg: Option<String>,
    kid: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

impl RawJwk {
    fn into_jwk(self) -> Option<Jwk> {
        if self.use_.as_ref().is_some_and(|u| u != "sig") {
            return None;
        }
        if let Some(ops) = &self.key_ops {
            if !ops.iter().any(|op| op == "verify") {
                return None;
            }
        }
        // An `alg` we do not accept (HS*, none, RSA-OAEP, ...) means the key
        // is meant for something else.
        let alg = match &self.alg {
            Some(name) => Some(Alg::from_name(name)?),
            None => None,
        };
        let key = self.key()?;
        if alg.is_some_and(|a| a.key_family() != key.family()) {
            return None;
        }
        Some(Jwk {
            kid: self.kid,
            alg,
            key,
        })
    }

    fn key(&self) -> Option<VerifyingKey> {
        match (self.kty.as_deref()?, self.crv.as_deref()) {
            ("RSA", _) => {
                let n = decode(self.n.as_deref()?)?;
                let e = decode(self.e.as_deref()?)?;
                RsaKey::from_components(&n, &e).map(VerifyingKey::Rsa)
            }
            ("EC", Some("P-256")) => {
                let (x, y) = (decode(self.x.as_deref()?)?, decode(self.y.as_deref()?)?);
                P256Key::from_coordinates(&x, &y).map(VerifyingKey::P256)
            }
            ("EC", Some("P-384")) => {
                let (x, y) = (decode(self.x.as_deref()?)?, decode(self.y.as_deref()?)?);
                P384Key::from_coordinates(&x, &y).map(VerifyingKey::P384)
            }
            ("OKP", Some("Ed25519")) => {
                Ed25519Key::from_bytes(&decode(self.x.as_deref()?)?).map(VerifyingKey::Ed25519)
            }
            _ => None,
        }
    }
}

fn decode(member: &str) -> Option<Vec<u8>> {
    B64.decode(member).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alg::KeyFamily;
    use proptest::prelude::Strategy as _;
    use serde_json::json;

    // RFC 7515 Appendix A.2 (RSA), A.3 (P-256) and RFC 8037 A.2 (Ed25519).
    const RSA_N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
    const RSA_E: &str = "AQAB";
    const EC_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const EC_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
    const ED_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    fn rsa(kid: &str) -> serde_json::Value {
        json!({"kty": "RSA", "kid": kid, "n": RSA_N, "e": RSA_E})
    }

    fn ec(kid: &str) -> serde_json::Value {
        json!({"kty": "EC", "kid": kid, "crv": "P-256", "x": EC_X, "y": EC_Y})
    }

    fn ed(kid: &str) -> serde_json::Value {
        json!({"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": ED_X})
    }

    fn with(mut v: serde_json::Value, member: &str, value: serde_json::Value) -> serde_json::Value {
        v[member] = value;
        v
    }

    fn without(mut v: serde_json::Value, member: &str) -> serde_json::Value {
        v.as_object_mut().expect("object").remove(member);
        v
    }

    fn parse(keys: Vec<serde_json::Value>) -> Result<JwkSet, JwksError> {
        JwkSet::parse(json!({ "keys": keys }).to_string().as_bytes())
    }

    /// The `kid`s of the keys that have one, in document order.
    fn kids(set: &JwkSet) -> Vec<&str> {
        set.keys.iter().filter_map(|k| k.kid.as_deref()).collect()
    }

    fn usable(key: serde_json::Value) -> bool {
        parse(vec![key]).is_ok()
    }

    #[test]
    fn parses_each_family() {
        let set = parse(vec![rsa("r"), ec("e"), ed("d")]).expect("valid");
        assert_eq!(set.len(), 3);
        assert!(!set.is_empty());
        assert_eq!(kids(&set), ["r", "e", "d"]);
        assert_eq!(
            set.find(Some("r")).map(|k| k.key.family()),
            Some(KeyFamily::Rsa)
        );
        assert_eq!(
            set.find(Some("e")).map(|k| k.key.family()),
            Some(KeyFamily::P256)
        );
        assert_eq!(
            set.find(Some("d")).map(|k| k.key.family()),
            Some(KeyFamily::Ed25519)
        );
        match &set.find(Some("r")).expect("present").key {
            VerifyingKey::Rsa(k) => assert_eq!(k.bits(), 2048),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn document_errors() {
        assert_eq!(JwkSet::parse(b"").unwrap_err(), JwksError::NotJson);
        assert_eq!(JwkSet::parse(b"{").unwrap_err(), JwksError::NotJson);
        assert_eq!(JwkSet::parse(b"[]").unwrap_err(), JwksError::NotJson);
        assert_eq!(JwkSet::parse(b"\"keys\"").unwrap_err(), JwksError::NotJson);
        assert_eq!(JwkSet::parse(b"\xff\xfe").unwrap_err(), JwksError::NotJson);
        assert_eq!(JwkSet::parse(b"{}").unwrap_err(), JwksError::NoKeysArray);
        assert_eq!(
            JwkSet::parse(br#"{"keys": {}}"#).unwrap_err(),
            JwksError::NoKeysArray
        );
        assert_eq!(
            JwkSet::parse(br#"{"keys": null}"#).unwrap_err(),
            JwksError::NoKeysArray
        );
        assert_eq!(
            JwkSet::parse(br#"{"keys": []}"#).unwrap_err(),
            JwksError::NoUsableKey
        );
        assert_eq!(
            JwkSet::parse(br#"{"keys": [1, "x", null, [], {}]}"#).unwrap_err(),
            JwksError::NoUsableKey
        );
        // Deep nesting is refused by the JSON parser, not a stack overflow.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(
            JwkSet::parse(deep.as_bytes()).unwrap_err(),
            JwksError::NotJson
        );
        for e in [
            JwksError::NotJson,
            JwksError::NoKeysArray,
            JwksError::NoUsableKey,
        ] {
            assert!(e.to_string().len() < 40);
        }
    }

    #[test]
    fn use_and_key_ops() {
        assert!(usable(with(rsa("a"), "use", json!("sig"))));
        assert!(!usable(with(rsa("a"), "use", json!("enc"))));
        assert!(!usable(with(rsa("a"), "use", json!("SIG"))));
        assert!(!usable(with(rsa("a"), "use", json!(1))));
        assert!(usable(with(rsa("a"), "key_ops", json!(["verify"]))));
        assert!(usable(with(rsa("a"), "key_ops", json!(["sign", "verify"]))));
        assert!(!usable(with(rsa("a"), "key_ops", json!(["encrypt"]))));
        assert!(!usable(with(rsa("a"), "key_ops", json!([]))));
        assert!(!usable(with(rsa("a"), "key_ops", json!("verify"))));
        // Private members are ignored: only the public part is used.
        assert!(usable(with(rsa("a"), "d", json!("AQAB"))));
        // Unknown members are ignored.
        assert!(usable(with(rsa("a"), "x5t", json!("whatever"))));
    }

    #[test]
    fn alg_member() {
        let set = parse(vec![with(rsa("a"), "alg", json!("RS256"))]).expect("valid");
        let key = set.find(Some("a")).expect("present");
        assert_eq!(key.alg, Some(Alg::RS256));
        assert!(key.accepts(Alg::RS256));
        assert!(!key.accepts(Alg::RS384));
        assert!(!key.accepts(Alg::PS256));
        assert!(!key.accepts(Alg::ES256));

        let set = parse(vec![rsa("b")]).expect("valid");
        let key = set.find(Some("b")).expect("present");
        assert_eq!(key.alg, None);
        for alg in Alg::ALL {
            assert_eq!(
                key.accepts(alg),
                alg.key_family() == KeyFamily::Rsa,
                "{alg}"
            );
        }

        for alg in ["HS256", "none", "RSA-OAEP", "RSA1_5", "rs256", ""] {
            assert!(!usable(with(rsa("a"), "alg", json!(alg))), "{alg}");
        }
        // An alg of another family than the key material.
        assert!(!usable(with(rsa("a"), "alg", json!("ES256"))));
        assert!(!usable(with(ec("a"), "alg", json!("ES384"))));
        assert!(!usable(with(ed("a"), "alg", json!("RS256"))));
        assert!(usable(with(ec("a"), "alg", json!("ES256"))));
        assert!(usable(with(ed("a"), "alg", json!("EdDSA"))));
    }

    #[test]
    fn kty_and_crv() {
        assert!(!usable(json!({"kty": "oct", "k": "c2VjcmV0", "kid": "h"})));
        assert!(!usable(with(rsa("a"), "kty", json!("rsa"))));
        assert!(!usable(without(rsa("a"), "kty")));
        assert!(!usable(with(ec("a"), "crv", json!("P-521"))));
        assert!(!usable(with(ec("a"), "crv", json!("secp256k1"))));
        assert!(!usable(without(ec("a"), "crv")));
        assert!(!usable(with(ed("a"), "crv", json!("Ed448"))));
        assert!(!usable(with(ed("a"), "crv", json!("X25519"))));
        assert!(!usable(with(ed("a"), "kty", json!("EC"))));
        // P-256 coordinates labelled P-384 have the wrong length.
        assert!(!usable(with(ec("a"), "crv", json!("P-384"))));
    }

    #[test]
    fn malformed_members() {
        assert!(!usable(without(rsa("a"), "n")));
        assert!(!usable(without(rsa("a"), "e")));
        assert!(!usable(with(rsa("a"), "n", json!(12))));
        assert!(!usable(with(rsa("a"), "n", json!("not base64!"))));
        assert!(!usable(with(rsa("a"), "e", json!(""))));
        assert!(!usable(with(rsa("a"), "e", json!("AA"))));
        assert!(!usable(with(rsa("a"), "kid", json!(5))));
        assert!(!usable(without(ec("a"), "y")));
        assert!(!usable(with(ec("a"), "x", json!(EC_Y))));
        assert!(!usable(with(ec("a"), "x", json!("AAAA"))));
        assert!(!usable(with(ed("a"), "x", json!(EC_X))));
        assert!(!usable(with(ed("a"), "x", json!("AAAA"))));
        // Small-order Ed25519 key (the identity, y = 1).
        let identity = B64.encode({
            let mut b = [0u8; 32];
            b[0] = 1;
            b
        });
        assert!(!usable(with(ed("a"), "x", json!(identity))));
        // A bad entry does not spoil the good ones.
        let set = parse(vec![without(rsa("bad"), "n"), ec("good")]).expect("valid");
        assert_eq!(kids(&set), ["good"]);
        // Padding is tolerated; a null member counts as absent.
        assert!(
            usable(with(rsa("a"), "e", json!("AQAB====")))
                || usable(with(rsa("a"), "e", json!("AQAB")))
        );
        assert!(usable(with(rsa("a"), "kid", json!(null))));
    }

    #[test]
    fn rsa_sizes() {
        let n = B64.decode(RSA_N).expect("b64");
        // Leading zero bytes are allowed.
        let padded = [&[0u8, 0][..], &n].concat();
        assert!(usable(with(rsa("a"), "n", json!(B64.encode(&padded)))));
        // 1024 bits: refused.
        let short = &n[..128];
        assert!(!usable(with(rsa("a"), "n", json!(B64.encode(short)))));
        // 2047 bits: refused.
        let mut low = n.clone();
        low[0] = 0x7f;
        assert!(!usable(with(rsa("a"), "n", json!(B64.encode(&low)))));
        // Exactly 8192 bits: accepted; above: refused.
        let max: Vec<u8> = std::iter::repeat_n(n.as_slice(), 4)
            .flatten()
            .copied()
            .collect();
        assert!(usable(with(rsa("a"), "n", json!(B64.encode(&max)))));
        let huge: Vec<u8> = std::iter::repeat_n(n.as_slice(), 5)
            .flatten()
            .copied()
            .collect();
        assert!(!usable(with(rsa("a"), "n", json!(B64.encode(&huge)))));
        // Even modulus, exponent 1 or even: refused.
        let mut even = n.clone();
        *even.last_mut().expect("non-empty") &= 0xfe;
        assert!(!usable(with(rsa("a"), "n", json!(B64.encode(&even)))));
        assert!(!usable(with(rsa("a"), "e", json!("AQ"))));
        assert!(!usable(with(rsa("a"), "e", json!("AQAA"))));
        assert!(usable(with(rsa("a"), "e", json!("Aw"))));
    }

    #[test]
    fn kid_selection() {
        let set = parse(vec![rsa("one"), ec("two")]).expect("valid");
        assert_eq!(
            set.find(Some("one")).and_then(|k| k.kid.as_deref()),
            Some("one")
        );
        assert_eq!(
            set.find(Some("two")).and_then(|k| k.kid.as_deref()),
            Some("two")
        );
        assert!(set.find(Some("three")).is_none());
        assert!(set.find(Some("ONE")).is_none());
        assert!(set.find(Some("")).is_none());
        assert!(set.find(None).is_none(), "several keys and no kid");

        let single = parse(vec![ec("only")]).expect("valid");
        assert!(single.find(None).is_some());
        assert!(single.find(Some("other")).is_none());

        let no_kid = parse(vec![without(ec("x"), "kid")]).expect("valid");
        assert!(no_kid.find(None).is_some());
        assert!(no_kid.find(Some("x")).is_none());
        assert_eq!(kids(&no_kid).len(), 0);
    }

    #[test]
    fn find_for_alg() {
        // One kid shared by an RSA and an EC key.
        let set = parse(vec![rsa("k"), ec("k"), ed("e")]).expect("valid");
        assert_eq!(
            set.find(Some("k")).map(|k| k.key.family()),
            Some(KeyFamily::Rsa)
        );
        assert_eq!(
            set.find_for(Some("k"), Alg::ES256).map(|k| k.key.family()),
            Some(KeyFamily::P256)
        );
        assert_eq!(
            set.find_for(Some("k"), Alg::PS512).map(|k| k.key.family()),
            Some(KeyFamily::Rsa)
        );
        assert!(set.find_for(Some("k"), Alg::EdDSA).is_none());
        assert!(set.find_for(Some("k"), Alg::ES384).is_none());
        assert_eq!(
            set.find_for(None, Alg::EdDSA)
                .and_then(|k| k.kid.as_deref()),
            Some("e")
        );
        let two_rsa = parse(vec![rsa("a"), rsa("b")]).expect("valid");
        assert!(two_rsa.find_for(None, Alg::RS256).is_none());
        let pinned = parse(vec![with(rsa("a"), "alg", json!("PS256"))]).expect("valid");
        assert!(pinned.find_for(Some("a"), Alg::RS256).is_none());
        assert!(pinned.find_for(Some("a"), Alg::PS256).is_some());
    }

    #[test]
    fn key_cap() {
        let keys: Vec<_> = (0..MAX_KEYS + 5).map(|i| rsa(&format!("k{i}"))).collect();
        let set = parse(keys).expect("valid");
        assert_eq!(set.len(), MAX_KEYS);
        assert!(set.find(Some("k0")).is_some());
        assert!(set.find(Some(&format!("k{}", MAX_KEYS))).is_none());
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(256))]

        /// Arbitrary bytes never panic the parser.
        #[test]
        fn arbitrary_bytes_do_not_panic(doc in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = JwkSet::parse(&doc);
        }

        /// A valid set with one member replaced by an arbitrary JSON value
        /// still parses or fails cleanly, and never yields a key whose alg
        /// it would not accept.
        #[test]
        fn mutated_members_do_not_panic(
            which in 0usize..3,
            member in proptest::sample::select(vec!["kty", "use", "key_ops", "alg", "kid", "crv", "n", "e", "x", "y"]),
            value in proptest::prop_oneof![
                proptest::prelude::any::<i64>().prop_map(|v| json!(v)),
                "[A-Za-z0-9_=-]{0,64}".prop_map(|v| json!(v)),
                proptest::prelude::any::<bool>().prop_map(|v| json!(v)),
                proptest::prelude::Just(json!(null)),
                proptest::prelude::Just(json!(["verify"])),
                proptest::prelude::Just(json!({})),
            ],
        ) {
            let keys = vec![rsa("r"), ec("e"), ed("d")];
            let mut keys = keys;
            if let Some(key) = keys.get_mut(which) {
                key[member] = value;
            }
            if let Ok(set) = parse(keys) {
                for jwk in &set.keys {
                    if let Some(alg) = jwk.alg {
                        proptest::prop_assert!(jwk.accepts(alg));
                    }
                }
            }
        }
    }

    #[test]
    fn parsed_keys_verify_published_vectors() {
        let set = parse(vec![rsa("r"), ec("e"), ed("d")]).expect("valid");
        // RFC 7515 A.3 (ES256).
        let es_input = b"eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
        let es_sig = B64
            .decode("DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q")
            .expect("b64");
        let ec_key = set.find_for(Some("e"), Alg::ES256).expect("present");
        assert_eq!(ec_key.key.verify(Alg::ES256, es_input, &es_sig), Ok(()));
        // RFC 8037 A.4 (EdDSA).
        let ed_input = b"eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
        let ed_sig = B64
            .decode("hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg")
            .expect("b64");
        let ed_key = set.find_for(Some("d"), Alg::EdDSA).expect("present");
        assert_eq!(ed_key.key.verify(Alg::EdDSA, ed_input, &ed_sig), Ok(()));
    }
}
