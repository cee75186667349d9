//! The identity token: a short-lived JWT (RFC 7519) the gateway signs for
//! every request it lets through, carried in [`crate::headers::IDENTITY_HEADER`], so that
//! the upstream can check who the user is, and who acts for them, with the
//! gateway's published keys alone (`/.well-known/jwks.json`), no shared
//! secret.
//!
//! JWS compact serialisation (RFC 7515), header `{"alg", "typ": "JWT",
//! "kid"}`, `alg` the current key's: `EdDSA` or `ES256`. Claims: `iss` (the gateway's public URL), `sub` (the
//! user), `aud` (the one upstream the request goes to, never a wildcard),
//! `iat`, `exp`, `jti`, `sid` (the session), `idp` (the issuer of the
//! token the caller presented), `scope` (its scopes, space-separated) and,
//! when someone acts for the user, `act` (RFC 8693 section 4.1).
//!
//! The filter signs ([`sign`]); upstreams verify ([`verify`]) with the
//! public keys of the JWKS, each under the algorithm of its own key.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::Value;

use crate::delegation::{ActorChain, ChainError};
use crate::gateway_keys::{Algorithm, SigningKeys, VerifyingKey};

/// How long a token lives from when it is signed.
pub const LIFETIME_SECS: u64 = 60;
/// Clock difference tolerated between the gateway and a verifier.
pub const CLOCK_SKEW_SECS: u64 = 5;
/// The longest token a verifier reads.
pub const MAX_TOKEN_BYTES: usize = 8192;

/// The token's claims.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct IdentityClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
    pub jti: String,
    pub sid: String,
    pub idp: String,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub act: Option<Value>,
}

impl IdentityClaims {
    /// Who acts for the user, as the `act` claim says
    /// ([`crate::delegation`]); a chain that breaks its rules is an error.
    pub fn actor_chain(&self) -> Result<ActorChain, ChainError> {
        ActorChain::from_act(self.act.as_ref())
    }

    /// The claims as JSON, written member by member: the filter signs them,
    /// and a derived serialiser would cost its wasm module more code than
    /// this does.
    fn to_json(&self) -> Value {
        let mut claims = serde_json::Map::new();
        for (name, value) in [
            ("iss", &self.iss),
            ("sub", &self.sub),
            ("aud", &self.aud),
            ("jti", &self.jti),
            ("sid", &self.sid),
            ("idp", &self.idp),
        ] {
            claims.insert(name.into(), Value::String(value.clone()));
        }
        claims.insert("iat".into(), self.iat.into());
        claims.insert("exp".into(), self.exp.into());
        if let Some(scope) = &self.scope {
            claims.insert("scope".into(), Value::String(scope.clone()));
        }
        if let Some(act) = &self.act {
            claims.insert("act".into(), act.clone());
        }
        Value::Object(claims)
    }
}

/// The compact JWS of `claims`, signed with the current key.
pub fn sign(keys: &SigningKeys, claims: &IdentityClaims) -> String {
    let header =
        serde_json::json!({"alg": keys.algorithm().name(), "typ": "JWT", "kid": keys.kid()});
    let payload = claims.to_json().to_string();
    let mut token = URL_SAFE_NO_PAD.encode(header.to_string());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(payload));
    let signature = keys.sign(token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(signature));
    token
}

/// Why a token is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    Malformed,
    /// Any `alg` but that of the key the `kid` names: another gateway
    /// algorithm (algorithm confusion), `none`, HMAC ones, anything else.
    Algorithm,
    UnknownKey,
    BadSignature,
    WrongIssuer,
    WrongAudience,
    Expired,
    NotYetValid,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Malformed => "the identity token is malformed",
            Refusal::Algorithm => "the identity token is not signed with its key's algorithm",
            Refusal::UnknownKey => "the identity token names a key the gateway does not publish",
            Refusal::BadSignature => "the identity token's signature does not verify",
            Refusal::WrongIssuer => "the identity token is from another issuer",
            Refusal::WrongAudience => "the identity token is for another audience",
            Refusal::Expired => "the identity token has expired",
            Refusal::NotYetValid => "the identity token is not valid yet",
        })
    }
}

/// Checks `token` for `audience` from `issuer` at `now` (unix seconds);
/// `key` finds the public key of a `kid`. The key decides the algorithm:
/// a header naming any other is refused before its signature is looked at
/// (RFC 8725 section 3.1).
pub fn verify<'k>(
    token: &str,
    issuer: &str,
    audience: &str,
    now: u64,
    key: impl Fn(&str) -> Option<&'k VerifyingKey>,
) -> Result<IdentityClaims, Refusal> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Refusal::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(header_part), Some(payload_part), Some(signature_part), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refusal::Malformed);
    };
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|_| Refusal::Malformed);
    let header: Value =
        serde_json::from_slice(&decode(header_part)?).map_err(|_| Refusal::Malformed)?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(Algorithm::from_name)
        .ok_or(Refusal::Algorithm)?;
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .ok_or(Refusal::UnknownKey)?;
    let public = key(kid).ok_or(Refusal::UnknownKey)?;
    if public.algorithm() != alg {
        return Err(Refusal::Algorithm);
    }
    let signature =
        <[u8; 64]>::try_from(decode(signature_part)?).map_err(|_| Refusal::Malformed)?;
    let signing_input = token
        .get(..header_part.len() + 1 + payload_part.len())
        .ok_or(Refusal::Malformed)?;
    if !public.verify(signing_input.as_bytes(), &signature) {
        return Err(Refusal::BadSignature);
    }
    let claims: IdentityClaims =
        serde_json::from_slice(&decode(payload_part)?).map_err(|_| Refusal::Malformed)?;
    if claims.iss != issuer {
        return Err(Refusal::WrongIssuer);
    }
    if claims.aud != audience {
        return Err(Refusal::WrongAudience);
    }
    if now >= claims.exp.saturating_add(CLOCK_SKEW_SECS) {
        return Err(Refusal::Expired);
    }
    if claims.iat > now.saturating_add(CLOCK_SKEW_SECS) {
        return Err(Refusal::NotYetValid);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway_keys::{KeySet, new_key, new_key_of};

    const ISS: &str = "https://gw.example";

    fn keys(seed: u8) -> SigningKeys {
        SigningKeys::from_set(&KeySet {
            keys: vec![new_key([seed; 32], 0)],
        })
        .unwrap()
    }

    fn es256_keys(seed: u8) -> SigningKeys {
        SigningKeys::from_set(&KeySet {
            keys: vec![new_key_of(Algorithm::ES256, [seed; 32], 0).unwrap()],
        })
        .unwrap()
    }

    fn header_of(token: &str) -> Value {
        let (head, _) = token.split_once('.').unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(head).unwrap()).unwrap()
    }

    /// `token` with its header's `alg` replaced, the rest untouched.
    fn relabelled(token: &str, alg: &str) -> String {
        let mut header = header_of(token);
        header["alg"] = alg.into();
        let (_, rest) = token.split_once('.').unwrap();
        format!("{}.{rest}", URL_SAFE_NO_PAD.encode(header.to_string()))
    }

    fn claims() -> IdentityClaims {
        IdentityClaims {
            iss: ISS.into(),
            sub: "alice".into(),
            aud: "attach-a2a".into(),
            iat: 1000,
            exp: 1060,
            jti: "j1".into(),
            sid: "s1".into(),
            idp: "https://idp.example".into(),
            scope: Some("read write".into()),
            act: Some(serde_json::json!({"sub": "did:key:z6Mk…"})),
        }
    }

    fn check(
        keys: &SigningKeys,
        token: &str,
        aud: &str,
        now: u64,
    ) -> Result<IdentityClaims, Refusal> {
        let published: Vec<_> = keys.published(now).cloned().collect();
        verify(token, ISS, aud, now, |kid| {
            published.iter().find(|k| k.kid == kid).map(|k| &k.key)
        })
    }

    #[test]
    fn a_signed_token_verifies_with_the_published_key() {
        let k = keys(7);
        let token = sign(&k, &claims());
        assert_eq!(check(&k, &token, "attach-a2a", 1001), Ok(claims()));
    }

    #[test]
    fn an_es256_token_verifies_with_the_published_p256_key() {
        let k = es256_keys(7);
        let token = sign(&k, &claims());
        let header = header_of(&token);
        assert_eq!(
            (&header["alg"], &header["typ"], &header["kid"]),
            (&"ES256".into(), &"JWT".into(), &k.kid().into())
        );
        let signature = URL_SAFE_NO_PAD
            .decode(token.rsplit('.').next().unwrap())
            .unwrap();
        assert_eq!(signature.len(), 64, "r || s, not DER");
        assert_eq!(check(&k, &token, "attach-a2a", 1001), Ok(claims()));
        // RFC 6979: the same claims, the same token.
        assert_eq!(sign(&k, &claims()), token);
        assert_eq!(
            check(&k, &sign(&es256_keys(8), &claims()), "attach-a2a", 1001),
            Err(Refusal::UnknownKey)
        );
    }

    #[test]
    fn a_header_naming_another_algorithm_than_its_key_is_refused() {
        for (k, other) in [(keys(7), "ES256"), (es256_keys(7), "EdDSA")] {
            let token = sign(&k, &claims());
            for alg in [other, "none", "HS256", "RS256", "ES384", "eddsa", ""] {
                assert_eq!(
                    check(&k, &relabelled(&token, alg), "attach-a2a", 1001),
                    Err(Refusal::Algorithm),
                    "{} key, header {alg}",
                    k.algorithm()
                );
            }
            let mut header = header_of(&token);
            header.as_object_mut().unwrap().remove("alg");
            let (_, rest) = token.split_once('.').unwrap();
            let without = format!("{}.{rest}", URL_SAFE_NO_PAD.encode(header.to_string()));
            assert_eq!(
                check(&k, &without, "attach-a2a", 1001),
                Err(Refusal::Algorithm)
            );
        }
    }

    #[test]
    fn tokens_of_a_retiring_ed25519_key_and_a_current_p256_key_both_verify() {
        let ed = new_key([1; 32], 0);
        let mut set = KeySet {
            keys: vec![ed.clone()],
        };
        let p256 = new_key_of(Algorithm::ES256, [2; 32], 500).unwrap();
        assert!(set.rotate(p256, 500, 30 * 86_400, 3600));
        let mixed = SigningKeys::from_set(&set).unwrap();
        let before = sign(
            &SigningKeys::from_set(&KeySet { keys: vec![ed] }).unwrap(),
            &claims(),
        );
        let after = sign(&mixed, &claims());
        assert_eq!(header_of(&before)["alg"], "EdDSA");
        assert_eq!(header_of(&after)["alg"], "ES256");
        for token in [&before, &after] {
            assert_eq!(check(&mixed, token, "attach-a2a", 1001), Ok(claims()));
        }
        // Each only under its own key's algorithm.
        assert_eq!(
            check(&mixed, &relabelled(&before, "ES256"), "attach-a2a", 1001),
            Err(Refusal::Algorithm)
        );
        assert_eq!(
            check(&mixed, &relabelled(&after, "EdDSA"), "attach-a2a", 1001),
            Err(Refusal::Algorithm)
        );
    }

    #[test]
    fn refusals() {
        let k = keys(7);
        let token = sign(&k, &claims());
        assert_eq!(
            check(&k, &token, "attach-engine", 1001),
            Err(Refusal::WrongAudience)
        );
        assert_eq!(check(&k, &token, "attach-a2a", 1065), Err(Refusal::Expired));
        assert_eq!(
            check(&k, &token, "attach-a2a", 900),
            Err(Refusal::NotYetValid)
        );
        // Signed by a key the gateway does not publish.
        let other = sign(&keys(8), &claims());
        assert_eq!(
            check(&k, &other, "attach-a2a", 1001),
            Err(Refusal::UnknownKey)
        );
        // The claims changed after signing.
        let (head, rest) = token.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let mut forged = claims();
        forged.sub = "mallory".into();
        let payload = URL_SAFE_NO_PAD.encode(forged.to_json().to_string());
        let tampered = format!("{head}.{payload}.{signature}");
        assert_eq!(
            check(&k, &tampered, "attach-a2a", 1001),
            Err(Refusal::BadSignature)
        );
        // `none` and HMAC tokens posing as the gateway's.
        for alg in ["none", "HS256"] {
            let header = URL_SAFE_NO_PAD.encode(format!(
                r#"{{"alg":"{alg}","typ":"JWT","kid":"{}"}}"#,
                k.kid()
            ));
            let posing = format!("{header}.{payload}.{signature}");
            assert_eq!(
                check(&k, &posing, "attach-a2a", 1001),
                Err(Refusal::Algorithm)
            );
        }
        for malformed in [
            "",
            "a.b",
            "a.b.c.d",
            "!.!.!",
            &"a".repeat(MAX_TOKEN_BYTES + 1),
        ] {
            assert_eq!(
                check(&k, malformed, "attach-a2a", 1001),
                Err(Refusal::Malformed)
            );
        }
    }
}
