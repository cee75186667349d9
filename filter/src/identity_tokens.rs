//! The identity tokens the filter signs for the requests it lets through
//! ([`attach_contract::identity_token`]), one per user, session and
//! audience, reused until shortly before they expire: signing costs a
//! signature (Ed25519 or ES256, as the key set says), a reuse one map
//! lookup.

use crate::config::Signing;
use crate::identity::Identity;
use attach_contract::delegation::ActorChain;
use attach_contract::identity_token::{self, IdentityClaims, LIFETIME_SECS};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// A kept token is handed out while it has at least this long to live, so
/// an upstream always gets most of a token's lifetime.
pub const REUSE_MARGIN_SECS: u64 = 15;

/// (user, session, audience, actor chain).
type Key = (String, String, String, ActorChain);

/// What one signed token says: whose identity (user, issuer, actor chain),
/// in which session, for which audience, with which scopes, until when.
pub struct Grant<'a> {
    pub identity: &'a Identity,
    pub session: &'a str,
    pub audience: &'a str,
    pub scope: Option<String>,
    pub exp: u64,
}

/// The tokens of one VM, bounded.
pub struct IdentityTokens {
    entries: HashMap<Key, (String, u64)>,
    capacity: usize,
    /// Tokens signed so far: part of each `jti`, so no two are alike.
    signed: u64,
}

impl IdentityTokens {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity: capacity.max(1),
            signed: 0,
        }
    }

    /// The token for `identity` in `session`, for `audience`, at `now`
    /// (unix seconds): a kept one, or a new one. It never outlives the
    /// caller's own token.
    pub fn token(
        &mut self,
        signing: &Signing,
        identity: &Identity,
        session: &str,
        audience: &str,
        now: u64,
    ) -> String {
        let key = (
            identity.user.clone(),
            session.to_string(),
            audience.to_string(),
            identity.actors.clone(),
        );
        if let Some((token, exp)) = self.entries.get(&key) {
            if *exp >= now.saturating_add(REUSE_MARGIN_SECS) {
                return token.clone();
            }
        }
        let caller_exp = u64::try_from(identity.exp).unwrap_or(0);
        let mut exp = now.saturating_add(LIFETIME_SECS);
        if caller_exp > now {
            exp = exp.min(caller_exp);
        }
        let token = self.sign(
            signing,
            Grant {
                identity,
                session,
                audience,
                scope: identity.scope.clone(),
                exp,
            },
            now,
        );
        if self.entries.len() >= self.capacity {
            self.entries
                .retain(|_, (_, e)| *e >= now.saturating_add(REUSE_MARGIN_SECS));
            if self.entries.len() >= self.capacity {
                self.entries.clear();
            }
        }
        self.entries.insert(key, (token.clone(), exp));
        token
    }

    /// Signs a token for `grant`, kept nowhere: the identity tokens above,
    /// and the delegated tokens the token endpoint issues.
    pub fn sign(&mut self, signing: &Signing, grant: Grant<'_>, now: u64) -> String {
        self.signed = self.signed.wrapping_add(1);
        let claims = IdentityClaims {
            iss: signing.issuer.clone(),
            sub: grant.identity.user.clone(),
            aud: grant.audience.to_string(),
            iat: now,
            exp: grant.exp,
            jti: self.jti(signing, &grant, now),
            sid: grant.session.to_string(),
            idp: grant.identity.issuer.clone(),
            scope: grant.scope,
            act: grant.identity.actors.to_act(),
        };
        identity_token::sign(&signing.keys, &claims)
    }

    /// A token id no other token of this gateway shares: a digest of what
    /// it is for, when, and how many this VM signed before it.
    fn jti(&self, signing: &Signing, grant: &Grant<'_>, now: u64) -> String {
        let mut digest = Sha256::new();
        for part in [
            signing.keys.kid().as_bytes(),
            grant.identity.user.as_bytes(),
            grant.session.as_bytes(),
            grant.audience.as_bytes(),
            grant.identity.actors.header_value().as_bytes(),
            &now.to_be_bytes(),
            &self.signed.to_be_bytes(),
        ] {
            digest.update((part.len() as u64).to_be_bytes());
            digest.update(part);
        }
        let digest = digest.finalize();
        URL_SAFE_NO_PAD.encode(digest.get(..16).unwrap_or_default())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use attach_contract::gateway_keys::{
        Algorithm, KeySet, SigningKeys, StoredKey, new_key, new_key_of,
    };

    fn signing() -> Signing {
        signing_with(new_key([4; 32], 0))
    }

    fn signing_with(key: StoredKey) -> Signing {
        let set = serde_json::to_string(&KeySet { keys: vec![key] }).unwrap();
        let json = serde_json::json!({"signing_keys": set, "issuer": "https://gw.example"});
        Config::from_json(json.to_string().as_bytes())
            .unwrap()
            .signing
            .unwrap()
    }

    fn alice(exp: i64) -> Identity {
        Identity {
            user: "alice".into(),
            exp,
            issuer: "https://idp.example".into(),
            scope: Some("read".into()),
            ..Identity::default()
        }
    }

    fn claims(token: &str, s: &Signing, aud: &str, now: u64) -> IdentityClaims {
        let keys: &SigningKeys = &s.keys;
        let published: Vec<_> = keys.published(now).cloned().collect();
        identity_token::verify(token, &s.issuer, aud, now, |kid| {
            published.iter().find(|k| k.kid == kid).map(|k| &k.key)
        })
        .unwrap()
    }

    #[test]
    fn tokens_carry_the_identity_for_one_audience() {
        let s = signing();
        let mut tokens = IdentityTokens::new(8);
        let t = tokens.token(&s, &alice(0), "s1", "attach-a2a", 1000);
        let c = claims(&t, &s, "attach-a2a", 1000);
        assert_eq!((c.sub.as_str(), c.sid.as_str()), ("alice", "s1"));
        assert_eq!(c.idp, "https://idp.example");
        assert_eq!(c.scope.as_deref(), Some("read"));
        assert_eq!((c.iat, c.exp), (1000, 1000 + LIFETIME_SECS));
        assert_eq!(c.iss, "https://gw.example");
    }

    #[test]
    fn an_es256_key_signs_es256_tokens() {
        let s = signing_with(new_key_of(Algorithm::ES256, [4; 32], 0).unwrap());
        let mut tokens = IdentityTokens::new(8);
        let t = tokens.token(&s, &alice(0), "s1", "attach-a2a", 1000);
        let (head, _) = t.split_once('.').unwrap();
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(head).unwrap()).unwrap();
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], s.keys.kid());
        assert_eq!(claims(&t, &s, "attach-a2a", 1000).sub, "alice");
    }

    #[test]
    fn a_token_is_reused_until_close_to_its_end() {
        let s = signing();
        let mut tokens = IdentityTokens::new(8);
        let first = tokens.token(&s, &alice(0), "s1", "a", 1000);
        assert_eq!(tokens.token(&s, &alice(0), "s1", "a", 1040), first);
        let renewed = tokens.token(&s, &alice(0), "s1", "a", 1046);
        assert_ne!(renewed, first);
        // Another session or audience is another token.
        assert_ne!(tokens.token(&s, &alice(0), "s2", "a", 1046), renewed);
        assert_ne!(tokens.token(&s, &alice(0), "s1", "b", 1046), renewed);
        let ids: std::collections::HashSet<String> = [first, renewed]
            .iter()
            .map(|t| claims(t, &s, "a", 1046).jti)
            .collect();
        assert_eq!(ids.len(), 2);
    }

    #[test]
    fn a_token_never_outlives_the_callers_own() {
        let s = signing();
        let mut tokens = IdentityTokens::new(8);
        let t = tokens.token(&s, &alice(1010), "s1", "a", 1000);
        assert_eq!(claims(&t, &s, "a", 1000).exp, 1010);
    }

    #[test]
    fn the_cache_stays_bounded() {
        let s = signing();
        let mut tokens = IdentityTokens::new(4);
        for i in 0..50 {
            tokens.token(&s, &alice(0), &format!("s{i}"), "a", 1000);
            assert!(tokens.len() <= 4);
        }
    }
}
