//! The gateway's signature on every agent card the service serves (A2A
//! 1.0 section 8.4; `attach_contract::card_signature` writes it): the
//! public 1.0 and 0.3 cards and the extended ones, signed as the last step
//! before they are sent, after every rewrite, so the signature covers the
//! canonical form of exactly what the client receives.
//!
//! A card is signed with the current key of the gateway's key set each
//! time it is served; Ed25519 over a card takes well under a millisecond
//! and cards are fetched seldom, so nothing is cached. The `jku` of each
//! signature names the gateway's JWKS, `{ATTACH_PUBLIC_URL}/.well-known/jwks.json`,
//! which the filter serves from the same key set.

use std::sync::Arc;

use attach_contract::card_signature::{self, SIGNATURES};
use attach_contract::gateway_keys::{JWKS_PATH, SigningKeys};
use serde_json::Value;

/// Signs cards with the gateway's keys, when the service has them.
pub struct CardSigner {
    keys: Option<Arc<SigningKeys>>,
    jku: String,
}

impl CardSigner {
    /// `public_url` is the gateway's address, without a trailing `/`.
    pub fn new(keys: Option<Arc<SigningKeys>>, public_url: &str) -> Self {
        Self {
            keys,
            jku: format!("{public_url}{JWKS_PATH}"),
        }
    }

    /// `card` as it is served: with the gateway's signature as its only
    /// one. Without keys, or for a card that has no canonical form (a
    /// number beyond what a double holds, which the gateway's cards never
    /// carry), it goes out unsigned; never with signatures it came with,
    /// which the gateway's rewriting broke.
    pub fn sign(&self, card: Value) -> Value {
        let Value::Object(mut card) = card else {
            return card;
        };
        card.remove(SIGNATURES);
        let Some(keys) = &self.keys else {
            return Value::Object(card);
        };
        match card_signature::sign(keys, &card, &self.jku) {
            Ok(signature) => {
                card.insert(SIGNATURES.into(), Value::Array(vec![signature]));
            }
            Err(e) => eprintln!("attach-a2a: an agent card is served unsigned: {e}"),
        }
        Value::Object(card)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use attach_contract::card_signature::{Refusal, verify};
    use attach_contract::gateway_keys::{KeySet, new_key};
    use serde_json::json;

    fn keys() -> Arc<SigningKeys> {
        let set = KeySet {
            keys: vec![new_key([3; 32], 0)],
        };
        Arc::new(SigningKeys::from_set(&set).unwrap())
    }

    fn card() -> Value {
        json!({
            "name": "planner",
            "skills": [],
            "signatures": [{"protected": "e30", "signature": "AAAA"}],
        })
    }

    #[test]
    fn cards_are_signed_with_the_current_key_and_the_gateways_jwks() {
        let keys = keys();
        let signer = CardSigner::new(Some(keys.clone()), "https://gw.example");
        let served = signer.sign(card());
        let served = served.as_object().unwrap();
        let lookup = |kid: &str| keys.published(0).find(|k| k.kid == kid).map(|k| &k.key);
        assert_eq!(verify(served, lookup), Ok(()));
        assert_eq!(served[SIGNATURES].as_array().unwrap().len(), 1);
        let protected = served[SIGNATURES][0]["protected"].as_str().unwrap();
        let header: Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, protected)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header["kid"], keys.kid());
        assert_eq!(header["jku"], "https://gw.example/.well-known/jwks.json");
        let mut changed = served.clone();
        changed.insert("name".into(), json!("impostor"));
        assert_eq!(verify(&changed, lookup), Err(Refusal::NoValidSignature));
    }

    #[test]
    fn without_keys_cards_go_out_unsigned_and_without_the_agents_signatures() {
        let served = CardSigner::new(None, "https://gw.example").sign(card());
        assert_eq!(served, json!({"name": "planner", "skills": []}));
    }
}
