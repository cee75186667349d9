//! Reading the gateway's published JWKS back (RFC 7517 section 5): what an
//! upstream without the key set file (an agent, say) verifies identity
//! tokens with, the inverse of [`super::SigningKeys::jwks`].
//!
//! Only the two kinds of key the gateway signs with are taken: `OKP`
//! `Ed25519` (RFC 8037 section 2) and `EC` `P-256` (RFC 7518 section
//! 6.2.1), each with a `kid`. Any other key, and one whose `use` is not
//! `sig` or whose `alg` is not its kind's, is left out, as section 5 asks
//! of keys a reader does not understand; a key of a known kind whose
//! coordinates are not a point of its curve is left out too, so one bad
//! entry cannot hide the others.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use super::es256::P256Public;
use super::public::{PublicKey, VerifyingKey};

/// Why a document is not a JWKS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotAJwks;

impl std::fmt::Display for NotAJwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a JWK Set (a JSON object with a \"keys\" array)")
    }
}

/// The usable keys of a JWKS document's text.
pub fn parse_jwks(text: &str) -> Result<Vec<PublicKey>, NotAJwks> {
    let document: Value = serde_json::from_str(text).map_err(|_| NotAJwks)?;
    let keys = document
        .get("keys")
        .and_then(Value::as_array)
        .ok_or(NotAJwks)?;
    Ok(keys.iter().filter_map(public_key).collect())
}

fn public_key(jwk: &Value) -> Option<PublicKey> {
    let member = |name: &str| jwk.get(name).and_then(Value::as_str);
    let coordinate = |name: &str| -> Option<[u8; 32]> {
        URL_SAFE_NO_PAD.decode(member(name)?).ok()?.try_into().ok()
    };
    let kid = member("kid").filter(|k| !k.is_empty())?;
    if jwk.get("use").is_some_and(|u| u.as_str() != Some("sig")) {
        return None;
    }
    let key = match (member("kty")?, member("crv")?) {
        ("OKP", "Ed25519") => {
            VerifyingKey::Ed25519(ed25519_dalek::VerifyingKey::from_bytes(&coordinate("x")?).ok()?)
        }
        ("EC", "P-256") => VerifyingKey::P256(P256Public::from_coordinates(
            &coordinate("x")?,
            &coordinate("y")?,
        )?),
        _ => return None,
    };
    if jwk
        .get("alg")
        .is_some_and(|alg| alg.as_str() != Some(key.algorithm().name()))
    {
        return None;
    }
    Some(PublicKey {
        kid: kid.to_string(),
        key,
        published_until: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway_keys::{Algorithm, KeySet, SigningKeys, new_key, new_key_of};
    use serde_json::json;

    #[test]
    fn reads_back_what_the_gateway_publishes() {
        let mut set = KeySet {
            keys: vec![new_key_of(Algorithm::ES256, [3; 32], 0).unwrap()],
        };
        set.rotate(new_key([4; 32], 10), 10, 0, 3_600);
        let keys = SigningKeys::from_set(&set).unwrap();
        let published: Vec<PublicKey> = keys.published(20).cloned().collect();
        let parsed = parse_jwks(&keys.jwks(20).to_string()).unwrap();
        assert_eq!(parsed.len(), 2);
        for (read, original) in parsed.iter().zip(&published) {
            assert_eq!((&read.kid, read.key), (&original.kid, original.key));
        }
    }

    #[test]
    fn rfc_8037_appendix_a_2_key() {
        let text = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "a2",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]});
        let keys = parse_jwks(&text.to_string()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(
            keys[0].key.thumbprint(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn rfc_7517_section_5_keys_not_understood_are_left_out() {
        let good = json!({"kty": "OKP", "crv": "Ed25519", "kid": "good",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
        let with = |changes: Value| {
            let mut key = good.clone();
            for (name, value) in changes.as_object().unwrap() {
                key[name] = value.clone();
            }
            key
        };
        let text = json!({"keys": [
            {"kty": "RSA", "kid": "rsa", "n": "AQAB", "e": "AQAB"},
            with(json!({"kid": "enc", "use": "enc"})),
            with(json!({"kid": "alg", "alg": "ES256"})),
            with(json!({"kid": "short", "x": "AAAA"})),
            {"kty": "EC", "crv": "P-256", "kid": "off-curve",
             "x": URL_SAFE_NO_PAD.encode([1u8; 32]), "y": URL_SAFE_NO_PAD.encode([1u8; 32])},
            with(json!({"kid": ""})),
            good,
        ]});
        let keys = parse_jwks(&text.to_string()).unwrap();
        let kids: Vec<&str> = keys.iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(kids, ["good"]);
    }

    #[test]
    fn a_document_without_keys_is_refused() {
        for text in ["", "[]", r#"{"keys": {}}"#, r#"{"issuer": "x"}"#] {
            assert_eq!(parse_jwks(text), Err(NotAJwks), "{text}");
        }
        assert_eq!(parse_jwks(r#"{"keys": []}"#), Ok(vec![]));
    }
}
