//! Agent card signatures (A2A 1.0 section 8.4, and A2A 0.3's
//! `AgentCard.signatures`, the same `AgentCardSignature`): the gateway
//! signs every card it serves with its current key, so that a client can
//! check that the card it got is the one the gateway wrote.
//!
//! Each signature is a JWS (RFC 7515) in the JSON serialisation with a
//! detached payload (RFC 7515 appendix F): `protected` is the base64url
//! of the protected header, `signature` the base64url of the Ed25519
//! signature over `protected || '.' || BASE64URL(payload)` (section
//! 8.4.2 step 3), and the payload, which travels nowhere, is the RFC 8785
//! canonical form ([`crate::jcs`]) of the card without its `signatures`
//! member (section 8.4.1 rule 3). The protected header is `{"alg":
//! "EdDSA", "typ": "JOSE", "kid", "jku"}` (section 8.4.2): the `kid` of
//! the gateway's current key, and `jku` the gateway's JWKS, where a
//! verifier finds that key (section 8.4.3 step 2).
//!
//! Section 8.4.1 rule 1 has the payload leave out members at their
//! protocol-buffer defaults. The cards signed here are expected to carry
//! none (the service builds them so), so the card as received and the card
//! with its defaults removed have the same canonical form, and a verifier
//! gets the payload either way.
//!
//! Signatures a card already carries are not part of what is signed; the
//! service serves a card with the gateway's as its only one, since those
//! the agent made covered the card before the gateway rewrote it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use crate::gateway_keys::{SigningKeys, VerifyingKey};
use crate::jcs::{self, JcsError};

/// The card member holding the signatures.
pub const SIGNATURES: &str = "signatures";
/// The protected header's `typ` (section 8.4.2).
pub const JOSE_TYPE: &str = "JOSE";

/// The JWS payload of `card`: its canonical form without `signatures`.
pub fn payload(card: &Map<String, Value>) -> Result<String, JcsError> {
    jcs::canonicalize_members(card.iter().filter(|(name, _)| *name != SIGNATURES))
}

/// The `AgentCardSignature` of `card` with the current key of `keys`;
/// `jku` is the URL of the gateway's JWKS.
pub fn sign(keys: &SigningKeys, card: &Map<String, Value>, jku: &str) -> Result<Value, JcsError> {
    let header =
        json!({"alg": keys.algorithm().name(), "typ": JOSE_TYPE, "kid": keys.kid(), "jku": jku});
    let protected = URL_SAFE_NO_PAD.encode(jcs::canonicalize(&header)?);
    let input = signing_input(&protected, &payload(card)?);
    let signature = URL_SAFE_NO_PAD.encode(keys.sign(input.as_bytes()));
    Ok(json!({"protected": protected, "signature": signature}))
}

/// `ASCII(protected || '.' || BASE64URL(payload))`.
fn signing_input(protected: &str, payload: &str) -> String {
    let mut input = String::with_capacity(protected.len() + 1 + payload.len() * 4 / 3 + 4);
    input.push_str(protected);
    input.push('.');
    input.push_str(&URL_SAFE_NO_PAD.encode(payload));
    input
}

/// Why a card's signatures are refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No `signatures`, or an empty list.
    Unsigned,
    /// The card has no canonical form.
    NotCanonical(JcsError),
    /// No signature verifies with a key `kid` names.
    NoValidSignature,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Unsigned => f.write_str("the card carries no signature"),
            Refusal::NotCanonical(e) => write!(f, "the card has no canonical form: {e}"),
            Refusal::NoValidSignature => f.write_str("no signature of the card verifies"),
        }
    }
}

/// Section 8.4.3: whether one of `card`'s signatures is a JWS over
/// its payload by the key `key` finds for the signature's `kid`.
pub fn verify<'k>(
    card: &Map<String, Value>,
    key: impl Fn(&str) -> Option<&'k VerifyingKey>,
) -> Result<(), Refusal> {
    let signatures = match card.get(SIGNATURES) {
        Some(Value::Array(list)) if !list.is_empty() => list,
        _ => return Err(Refusal::Unsigned),
    };
    let payload = payload(card).map_err(Refusal::NotCanonical)?;
    let verifies = |entry: &Value| -> Option<()> {
        let protected = entry.get("protected")?.as_str()?;
        let signature = URL_SAFE_NO_PAD
            .decode(entry.get("signature")?.as_str()?)
            .ok()?;
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(protected).ok()?).ok()?;
        let public = key(header.get("kid")?.as_str()?)?;
        // The key's own algorithm decides, never the header's claim alone.
        if header.get("alg")?.as_str()? != public.algorithm().name() {
            return None;
        }
        let signature = <[u8; 64]>::try_from(signature).ok()?;
        public
            .verify(signing_input(protected, &payload).as_bytes(), &signature)
            .then_some(())
    };
    if signatures.iter().any(|entry| verifies(entry).is_some()) {
        Ok(())
    } else {
        Err(Refusal::NoValidSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway_keys::{KeySet, new_key};

    const JKU: &str = "https://gw.example/.well-known/jwks.json";

    fn keys(seed: u8) -> SigningKeys {
        SigningKeys::from_set(&KeySet {
            keys: vec![new_key([seed; 32], 0)],
        })
        .unwrap()
    }

    fn card() -> Map<String, Value> {
        let card = json!({
            "name": "planner",
            "description": "Plans work \u{20ac}",
            "version": "1.0.0",
            "supportedInterfaces": [
                {"url": "https://gw.example/a2a/agents/planner", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
            ],
            "capabilities": {"streaming": true, "pushNotifications": false},
            "defaultInputModes": ["text/plain"],
            "defaultOutputModes": ["text/plain"],
            "skills": [],
            "signatures": [{"protected": "e30", "signature": "AAAA"}],
        });
        let Value::Object(card) = card else {
            unreachable!()
        };
        card
    }

    /// `card` with the signature as its only one, as the service serves it.
    fn signed(
        keys: &SigningKeys,
        mut card: Map<String, Value>,
        jku: &str,
    ) -> Result<Map<String, Value>, JcsError> {
        let signature = sign(keys, &card, jku)?;
        card.insert(SIGNATURES.into(), Value::Array(vec![signature]));
        Ok(card)
    }

    fn lookup<'k>(keys: &'k SigningKeys) -> impl Fn(&str) -> Option<&'k VerifyingKey> + 'k {
        move |kid| keys.published(0).find(|k| k.kid == kid).map(|k| &k.key)
    }

    fn header(card: &Map<String, Value>) -> Value {
        let protected = card[SIGNATURES][0]["protected"].as_str().unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(protected).unwrap()).unwrap()
    }

    /// Section 8.4.2: the protected header names the algorithm, `JOSE`,
    /// the current key and where its JWKS is.
    #[test]
    fn the_protected_header() {
        let keys = keys(1);
        let signed = signed(&keys, card(), JKU).unwrap();
        assert_eq!(
            header(&signed),
            json!({"alg": "EdDSA", "typ": "JOSE", "kid": keys.kid(), "jku": JKU})
        );
        let entry = signed[SIGNATURES][0].as_object().unwrap();
        assert_eq!(
            entry.keys().collect::<Vec<_>>(),
            ["protected", "signature"],
            "no unprotected header, no payload (it is detached)"
        );
    }

    /// Sections 8.4.1 and 8.4.3: the signature is Ed25519 over the
    /// protected header and the RFC 8785 form of the card without
    /// `signatures`, checked here by hand with the published key.
    #[test]
    fn the_signature_covers_the_canonical_card() {
        let keys = keys(2);
        let signed = signed(&keys, card(), JKU).unwrap();
        let entry = &signed[SIGNATURES][0];
        let protected = entry["protected"].as_str().unwrap();
        let mut unsigned = signed.clone();
        unsigned.remove(SIGNATURES);
        let canonical = jcs::canonicalize(&Value::Object(unsigned)).unwrap();
        assert!(canonical.starts_with(r#"{"capabilities":{"pushNotifications":false,"#));
        let input = format!("{protected}.{}", URL_SAFE_NO_PAD.encode(&canonical));
        let signature = URL_SAFE_NO_PAD
            .decode(entry["signature"].as_str().unwrap())
            .unwrap();
        let public = keys.published(0).next().unwrap();
        assert!(
            public
                .key
                .verify(input.as_bytes(), &signature.try_into().unwrap())
        );
        assert_eq!(verify(&signed, lookup(&keys)), Ok(()));
    }

    /// Signatures the card carries are not part of what is signed, and
    /// Ed25519 is deterministic: the same card, the same signature.
    #[test]
    fn signatures_the_card_carried_are_not_signed() {
        let keys = keys(3);
        let mut without = card();
        without.remove(SIGNATURES);
        let first = sign(&keys, &card(), JKU).unwrap();
        assert_eq!(sign(&keys, &without, JKU).unwrap(), first);
        let signed = signed(&keys, card(), JKU).unwrap();
        assert_eq!(sign(&keys, &signed, JKU).unwrap(), first);
    }

    #[test]
    fn a_changed_card_fails() {
        let keys = keys(4);
        let signed = signed(&keys, card(), JKU).unwrap();
        let mut changed = signed.clone();
        changed["supportedInterfaces"][0]["url"] = json!("https://evil.example/a2a");
        assert_eq!(
            verify(&changed, lookup(&keys)),
            Err(Refusal::NoValidSignature)
        );
        let mut added = signed.clone();
        added.insert("iconUrl".into(), json!("https://evil.example/icon.png"));
        assert_eq!(
            verify(&added, lookup(&keys)),
            Err(Refusal::NoValidSignature)
        );
        // Member order and whitespace are not what is signed.
        let reparsed: Map<String, Value> =
            serde_json::from_str(&serde_json::to_string_pretty(&signed).unwrap()).unwrap();
        assert_eq!(verify(&reparsed, lookup(&keys)), Ok(()));
    }

    #[test]
    fn another_key_or_header_fails() {
        let keys = keys(5);
        let signed = signed(&keys, card(), JKU).unwrap();
        let other = self::keys(6);
        // The kid is not the other set's.
        assert_eq!(
            verify(&signed, lookup(&other)),
            Err(Refusal::NoValidSignature)
        );
        // The right kid with the wrong key.
        let wrong = other.published(0).next().unwrap().key;
        assert_eq!(
            verify(&signed, |_| Some(&wrong)),
            Err(Refusal::NoValidSignature)
        );
        // A header naming another algorithm.
        let mut forged = signed.clone();
        let header = json!({"alg": "none", "kid": keys.kid()}).to_string();
        forged[SIGNATURES][0]["protected"] = json!(URL_SAFE_NO_PAD.encode(header));
        assert_eq!(
            verify(&forged, lookup(&keys)),
            Err(Refusal::NoValidSignature)
        );
        let mut unsigned = signed;
        unsigned.remove(SIGNATURES);
        assert_eq!(verify(&unsigned, lookup(&keys)), Err(Refusal::Unsigned));
    }

    #[test]
    fn cards_without_a_canonical_form_are_not_signed() {
        let mut card = card();
        card.insert("size".into(), json!(u64::MAX));
        assert!(matches!(
            sign(&keys(7), &card, JKU),
            Err(JcsError::UnsafeInteger(_))
        ));
    }
}
