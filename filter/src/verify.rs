//! One decision per request: a bearer token in, an identity or a refusal out.
//!
//! Cheap checks run before expensive ones: size, cache, structure, issuer,
//! algorithm and claims all come before the signature, so junk costs little.

use crate::alg::Alg;
use crate::claims::{self, ClaimError};
use crate::config::{Config, DidPolicy, Provider, Signing};
use crate::did;
use crate::identity::Identity;
use crate::jwks::key_set::JwkSet;
use crate::token::{self, ParseError};
use crate::token_cache::{KeyVersion, TokenCache};
use attach_contract::delegation::ActorChain;

/// What the key store knows of one issuer's keys.
pub enum KeyState<'a> {
    /// Not fetched yet (or being fetched): the request should wait.
    Pending,
    /// Fetching failed and no earlier keys exist: the IdP is unreachable.
    Unavailable,
    Ready {
        keys: &'a JwkSet,
        generation: u64,
    },
}

/// Where verification finds each issuer's current keys (by provider index).
pub trait KeyStore {
    fn keys(&self, issuer: usize) -> KeyState<'_>;
}

/// Why a token was refused; only the category reaches the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    TooLarge,
    Malformed,
    UnknownIssuer,
    AlgorithmNotAllowed,
    UnknownKey,
    BadSignature,
    Claim(ClaimError),
    /// A DID-JWT whose issuer is not on the allow-list.
    DidNotAllowed,
    /// A DID-JWT whose `kid` names another DID than its `iss`.
    KidMismatch,
}

/// The cache's issuer index for DID-JWTs and the gateway's own tokens:
/// their keys are never fetched (a DID's come from the DID itself, the
/// gateway's from its configuration), so their generation is always 0.
const DID_ISSUER: usize = usize::MAX;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow(Identity),
    /// No usable token at all (RFC 6750: no `error` code).
    MissingToken,
    Invalid(Reason),
    /// Valid token without these required scopes.
    InsufficientScope(Vec<String>),
    /// The issuer's keys are not loaded yet: wait, then ask again.
    AwaitKeys {
        issuer: usize,
    },
    /// The issuer's keys are unreachable: a 503, not the caller's fault.
    KeysUnavailable,
    /// The token names a key the current set lacks; a refetch may find it.
    UnknownKid {
        issuer: usize,
    },
}

/// The one audience a route's tokens must name, whatever the configured
/// audiences: an MCP server's canonical URI (RFC 8707 section 2; MCP
/// 2026-07-28, basic/authorization, "Token Handling").
#[derive(Clone, Copy, Debug)]
pub struct Binding<'a> {
    /// The server's index, which keeps its tokens' cache entries apart.
    pub server: usize,
    pub audience: &'a String,
}

/// Decides on the `Authorization` header value (`None` when absent), for
/// a route with a `binding` or none.
///
/// `refetched` is true when the caller already refetched keys for this
/// request, so an unknown kid is now final.
pub fn verify(
    cfg: &Config,
    authorization: Option<&str>,
    binding: Option<Binding<'_>>,
    now: i64,
    keys: &dyn KeyStore,
    cache: &mut TokenCache,
    refetched: bool,
) -> Verdict {
    let Some(raw) = authorization.and_then(token::bearer) else {
        return Verdict::MissingToken;
    };
    if raw.len() > cfg.max_token_bytes {
        return Verdict::Invalid(Reason::TooLarge);
    }
    let generation = |issuer| match keys.keys(issuer) {
        _ if issuer == DID_ISSUER => Some(0),
        KeyState::Ready { generation, .. } => Some(generation),
        _ => None,
    };
    let bound = binding.map(|b| b.server);
    if let Some(identity) = cache.get(raw, now, bound, generation) {
        return Verdict::Allow(identity.clone());
    }
    let tok = match token::parse(raw, cfg.max_token_bytes) {
        Ok(t) => t,
        Err(ParseError::TooLarge) => return Verdict::Invalid(Reason::TooLarge),
        Err(_) => return Verdict::Invalid(Reason::Malformed),
    };
    let iss = tok.claims.iss.as_deref().unwrap_or_default();
    if iss.starts_with("did:") {
        return match &cfg.did {
            Some(policy) => verify_did(cfg, (policy, binding), raw, &tok, now, cache),
            None => Verdict::Invalid(Reason::UnknownIssuer),
        };
    }
    if let Some(signing) = cfg.signing.as_ref().filter(|s| s.issuer == iss) {
        return verify_own(cfg, (signing, binding), raw, &tok, now, cache);
    }
    let Some((index, provider)) = cfg.provider_index(iss) else {
        return Verdict::Invalid(Reason::UnknownIssuer);
    };
    let Some(alg) = Alg::from_name(&tok.header.alg).filter(|a| provider.algorithms.contains(a))
    else {
        return Verdict::Invalid(Reason::AlgorithmNotAllowed);
    };
    let user = match check_claims(
        &tok.claims,
        (now, cfg.leeway_secs),
        &provider.audiences,
        binding,
    )
    .and_then(|()| claims::subject(&tok.claims))
    .and_then(|sub| oidc_user(provider, sub))
    {
        Ok(user) => user,
        Err(e) => return Verdict::Invalid(Reason::Claim(e)),
    };
    let (set, generation) = match keys.keys(index) {
        KeyState::Pending => return Verdict::AwaitKeys { issuer: index },
        KeyState::Unavailable => return Verdict::KeysUnavailable,
        KeyState::Ready { keys, generation } => (keys, generation),
    };
    // With a kid, the key of that kid the token's alg can be checked with
    // (some providers publish one kid for keys of two types); without one,
    // the only key of the set.
    let kid = tok.header.kid.as_deref();
    let found = match kid {
        Some(_) => set.find_for(kid, alg),
        None => set.find(None).filter(|k| k.accepts(alg)),
    };
    let Some(jwk) = found else {
        return if set.find(kid).is_some() {
            Verdict::Invalid(Reason::AlgorithmNotAllowed)
        } else if refetched || kid.is_none() {
            Verdict::Invalid(Reason::UnknownKey)
        } else {
            Verdict::UnknownKid { issuer: index }
        };
    };
    if jwk
        .key
        .verify(alg, tok.signing_input, &tok.signature)
        .is_err()
    {
        return Verdict::Invalid(Reason::BadSignature);
    }
    if let Some(refusal) = missing_scopes(
        cfg.required_scopes.iter().chain(&provider.required_scopes),
        &tok,
    ) {
        return refusal;
    }
    let version = KeyVersion {
        issuer: index,
        generation,
    };
    let issuer = provider.issuer.clone();
    admit(cache, raw, (user, issuer), &tok, (version, bound), now)
}

/// [`claims::check`] against the binding's audience when the route has
/// one, else against `audiences`. A bound token may name its resource in
/// `aud` or, as some authorization servers write RFC 8707's indicator, in
/// a `resource` claim.
fn check_claims(
    claims: &token::Claims,
    (now, leeway): (i64, u64),
    audiences: &[String],
    binding: Option<Binding<'_>>,
) -> Result<(), ClaimError> {
    let Some(binding) = binding else {
        return claims::check(claims, now, leeway, audiences);
    };
    match claims::check(claims, now, leeway, std::slice::from_ref(binding.audience)) {
        // The audience is checked last: every other claim passed.
        Err(ClaimError::AudienceMismatch) if claims.resource.contains(binding.audience) => Ok(()),
        checked => checked,
    }
}

/// The user an OIDC subject becomes: the provider's prefix and `sub`. A
/// user that could pass for a DID is refused: DIDs are verified by their
/// own keys, and an issuer must never speak for one.
fn oidc_user(provider: &Provider, sub: &str) -> Result<String, ClaimError> {
    let user = format!("{}{sub}", provider.subject_prefix);
    if user.starts_with("did:") {
        return Err(ClaimError::InvalidSub);
    }
    Ok(user)
}

/// `InsufficientScope` with the required scopes the token lacks, if any
/// (RFC 6750 section 3.1). Applies to every kind of token: a scope the
/// configuration requires is never waived for a self-issued one.
fn missing_scopes<'a>(
    required: impl Iterator<Item = &'a String>,
    tok: &token::Token<'_>,
) -> Option<Verdict> {
    let missing: Vec<String> = required
        .filter(|need| !tok.claims.scopes().any(|have| have == need.as_str()))
        .cloned()
        .collect();
    (!missing.is_empty()).then_some(Verdict::InsufficientScope(missing))
}

/// Remembers a token that passed every check and lets it through.
fn admit(
    cache: &mut TokenCache,
    raw: &str,
    (user, issuer): (String, String),
    tok: &token::Token<'_>,
    version: (KeyVersion, Option<usize>),
    now: i64,
) -> Verdict {
    let scopes: Vec<&str> = tok.claims.scopes().collect();
    let identity = Identity {
        user,
        exp: tok.claims.exp.unwrap_or_default(),
        issuer,
        scope: (!scopes.is_empty()).then(|| scopes.join(" ")),
        ..Identity::default()
    };
    cache.insert(raw, identity.clone(), version, now);
    Verdict::Allow(identity)
}

/// A token the gateway issued itself (a delegation, see
/// [`crate::token_exchange`]): checked with its own published keys, through
/// the same verifiers as a provider's, so no fetch; accepted only when
/// issued for the gateway itself (the identity tokens it signs for
/// upstreams name those upstreams and are refused here), and only while
/// its key is still published.
fn verify_own(
    cfg: &Config,
    (signing, binding): (&Signing, Option<Binding<'_>>),
    raw: &str,
    tok: &token::Token<'_>,
    now: i64,
    cache: &mut TokenCache,
) -> Verdict {
    let at = u64::try_from(now).unwrap_or_default();
    let kid = tok.header.kid.as_deref();
    if kid
        .and_then(|kid| signing.keys.verifying_key(kid, at))
        .is_none()
    {
        return Verdict::Invalid(Reason::UnknownKey);
    }
    let Some(jwk) = Alg::from_name(&tok.header.alg)
        .and_then(|alg| signing.own_keys.find_for(kid, alg).map(|jwk| (alg, jwk)))
    else {
        return Verdict::Invalid(Reason::AlgorithmNotAllowed);
    };
    let issuer = std::slice::from_ref(&signing.issuer);
    let user = match check_claims(&tok.claims, (now, cfg.leeway_secs), issuer, binding)
        .and_then(|()| claims::subject(&tok.claims))
    {
        Ok(user) => user.to_string(),
        Err(e) => return Verdict::Invalid(Reason::Claim(e)),
    };
    let (alg, jwk) = jwk;
    if jwk
        .key
        .verify(alg, tok.signing_input, &tok.signature)
        .is_err()
    {
        return Verdict::Invalid(Reason::BadSignature);
    }
    let mut payload = token::payload(raw).unwrap_or_default();
    let mut text = |name| match payload.get_mut(name).map(serde_json::Value::take) {
        Some(serde_json::Value::String(s)) => Some(s),
        _ => None,
    };
    let (Some(sid), Some(idp)) = (text("sid"), text("idp")) else {
        return Verdict::Invalid(Reason::Malformed);
    };
    let Ok(actors) = ActorChain::from_act(payload.get("act")) else {
        return Verdict::Invalid(Reason::Malformed);
    };
    if let Some(refusal) = missing_scopes(cfg.required_scopes.iter(), tok) {
        return refusal;
    }
    let identity = Identity {
        user,
        exp: tok.claims.exp.unwrap_or_default(),
        issuer: idp,
        scope: tok.claims.scope.clone(),
        actors,
        session: Some(sid),
    };
    let version = KeyVersion {
        issuer: DID_ISSUER,
        generation: 0,
    };
    cache.insert(
        raw,
        identity.clone(),
        (version, binding.map(|b| b.server)),
        now,
    );
    Verdict::Allow(identity)
}

/// A self-issued DID-JWT: the key comes from the DID itself, so the policy
/// (allow-list, audience, short lifetime) is what makes it acceptable.
fn verify_did(
    cfg: &Config,
    (policy, binding): (&DidPolicy, Option<Binding<'_>>),
    raw: &str,
    tok: &token::Token<'_>,
    now: i64,
    cache: &mut TokenCache,
) -> Verdict {
    let iss = tok.claims.iss.as_deref().unwrap_or_default();
    // Aliases of one account are one user: the allow-list, the key id and
    // the stamped identity all see the canonical spelling.
    let did = did::canonical(iss);
    if !policy.allows(&did) {
        return Verdict::Invalid(Reason::DidNotAllowed);
    }
    if let Some(kid) = &tok.header.kid {
        if kid.split('#').next().map(did::canonical).as_deref() != Some(&*did) {
            return Verdict::Invalid(Reason::KidMismatch);
        }
    }
    if let Err(e) = check_claims(
        &tok.claims,
        (now, cfg.leeway_secs),
        &policy.audiences,
        binding,
    )
    .and_then(|()| claims::lifetime(&tok.claims, now, policy.max_ttl_secs))
    {
        return Verdict::Invalid(Reason::Claim(e));
    }
    let key = match did::resolve(&did) {
        Ok(key) => key,
        Err(_) => return Verdict::Invalid(Reason::UnknownIssuer),
    };
    match key.verify(&tok.header.alg, tok.signing_input, &tok.signature) {
        Ok(()) => {}
        Err(did::DidError::AlgorithmMismatch) => {
            return Verdict::Invalid(Reason::AlgorithmNotAllowed);
        }
        Err(_) => return Verdict::Invalid(Reason::BadSignature),
    }
    if let Some(refusal) = missing_scopes(cfg.required_scopes.iter(), tok) {
        return refusal;
    }
    let version = KeyVersion {
        issuer: DID_ISSUER,
        generation: 0,
    };
    let did = did.into_owned();
    let issuer = did.to_string();
    admit(
        cache,
        raw,
        (did, issuer),
        tok,
        (version, binding.map(|b| b.server)),
        now,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::tests::{compact, encode};
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer as _;

    const NOW: i64 = 1_700_000_000;
    const ISS: &str = "https://idp.example";

    fn config(extra: &str) -> Config {
        Config::from_json(
            format!(
                r#"{{"providers":[{{"issuer":"{ISS}","audiences":["api"]{extra}}}],
                    "clusters":{{"{ISS}":"idp"}}}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    }

    fn signing_key(seed: u8) -> SigningKey {
        SigningKey::from_slice(&[seed; 32]).unwrap()
    }

    fn jwk(sk: &SigningKey, kid: &str) -> String {
        let point = sk.verifying_key().to_sec1_point(false);
        let raw = point.as_bytes();
        format!(
            r#"{{"kty":"EC","crv":"P-256","kid":"{kid}","use":"sig","x":"{}","y":"{}"}}"#,
            URL_SAFE_NO_PAD.encode(&raw[1..33]),
            URL_SAFE_NO_PAD.encode(&raw[33..65])
        )
    }

    struct Keys(Option<JwkSet>, u64);

    impl KeyStore for Keys {
        fn keys(&self, issuer: usize) -> KeyState<'_> {
            // Every issuer of a test shares the one set.
            match (&self.0, issuer) {
                (Some(keys), 0 | 1) => KeyState::Ready {
                    keys,
                    generation: self.1,
                },
                (None, 0) => KeyState::Pending,
                _ => KeyState::Unavailable,
            }
        }
    }

    fn keys(jwks: &[String]) -> Keys {
        let doc = format!(r#"{{"keys":[{}]}}"#, jwks.join(","));
        Keys(Some(JwkSet::parse(doc.as_bytes()).unwrap()), 1)
    }

    fn sign(sk: &SigningKey, header: &str, claims: &str) -> String {
        let input = format!("{}.{}", encode(header), encode(claims));
        let sig: p256::ecdsa::Signature = sk.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
    }

    fn claims(extra: &str) -> String {
        format!(
            r#"{{"iss":"{ISS}","sub":"alice","aud":"api","exp":{}{extra}}}"#,
            NOW + 300
        )
    }

    fn run(cfg: &Config, keys: &Keys, token: &str) -> Verdict {
        let mut cache = TokenCache::new(16);
        verify(
            cfg,
            Some(&format!("Bearer {token}")),
            None,
            NOW,
            keys,
            &mut cache,
            false,
        )
    }

    fn alice() -> Verdict {
        Verdict::Allow(Identity {
            user: "alice".into(),
            exp: NOW + 300,
            issuer: ISS.into(),
            scope: None,
            ..Identity::default()
        })
    }

    /// RFC 8707 section 2 and MCP 2026-07-28, basic/authorization, "Token
    /// Handling": on a bound route only a token for that resource passes,
    /// whatever the configured audiences, and its verification is no proof
    /// for any other route.
    #[test]
    fn a_bound_route_accepts_only_tokens_for_its_resource() {
        let sk = signing_key(7);
        let set = keys(&[jwk(&sk, "k1")]);
        let mut cfg = config("");
        cfg.resource = Some("https://gw".into());
        let uri = "https://gw/mcp/tools".to_string();
        let bound = Binding {
            server: 0,
            audience: &uri,
        };
        let with = |claims: &str| sign(&sk, r#"{"alg":"ES256","kid":"k1"}"#, claims);
        let for_server =
            with(&claims(r#","aud":"https://gw/mcp/tools""#).replace(r#""aud":"api","#, ""));
        let by_resource = with(&claims(r#","resource":"https://gw/mcp/tools""#));
        let for_api = with(&claims(""));
        let mut cache = TokenCache::new(16);
        let mut check = |token: &str, binding: Option<Binding<'_>>| {
            let auth = format!("Bearer {token}");
            verify(&cfg, Some(&auth), binding, NOW, &set, &mut cache, false)
        };
        assert_eq!(check(&for_server, Some(bound)), alice());
        assert_eq!(check(&by_resource, Some(bound)), alice());
        let mismatch = Verdict::Invalid(Reason::Claim(ClaimError::AudienceMismatch));
        assert_eq!(check(&for_api, Some(bound)), mismatch);
        // Verified (and cached) for the server, refused where `api` is needed.
        assert_eq!(check(&for_server, None), mismatch);
        assert_eq!(check(&for_api, None), alice());
        let other = Binding { server: 1, ..bound };
        assert_eq!(check(&for_server, Some(bound)), alice());
        assert_eq!(
            check(&for_server, Some(other)),
            alice(),
            "same audience, checked anew"
        );
    }

    #[test]
    fn valid_token_is_allowed() {
        let sk = signing_key(7);
        let t = sign(&sk, r#"{"alg":"ES256","kid":"k1"}"#, &claims(""));
        assert_eq!(run(&config(""), &keys(&[jwk(&sk, "k1")]), &t), alice());
    }

    #[test]
    fn kid_selects_the_key() {
        let (a, b) = (signing_key(1), signing_key(2));
        let set = keys(&[jwk(&a, "a"), jwk(&b, "b")]);
        let t = sign(&b, r#"{"alg":"ES256","kid":"b"}"#, &claims(""));
        assert_eq!(run(&config(""), &set, &t), alice());
        let wrong = sign(&b, r#"{"alg":"ES256","kid":"a"}"#, &claims(""));
        assert_eq!(
            run(&config(""), &set, &wrong),
            Verdict::Invalid(Reason::BadSignature)
        );
        // Without a kid and several keys there is no key to pick.
        let no_kid = sign(&b, r#"{"alg":"ES256"}"#, &claims(""));
        assert_eq!(
            run(&config(""), &set, &no_kid),
            Verdict::Invalid(Reason::UnknownKey)
        );
        // Without a kid and a single key, that key is used.
        let single = keys(&[jwk(&b, "b")]);
        assert_eq!(run(&config(""), &single, &no_kid), alice());
    }

    #[test]
    fn one_kid_for_keys_of_two_types_picks_the_one_the_alg_needs() {
        let sk = signing_key(4);
        // RFC 8037 A.2's Ed25519 key, published under the same kid first.
        let ed = r#"{"kty":"OKP","crv":"Ed25519","kid":"k","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
        let set = keys(&[ed.to_string(), jwk(&sk, "k")]);
        let t = sign(&sk, r#"{"alg":"ES256","kid":"k"}"#, &claims(""));
        assert_eq!(run(&config(""), &set, &t), alice());
        // A kid the set has, but no key of it for the token's alg.
        let only_ed = keys(&[ed.to_string()]);
        assert_eq!(
            run(&config(""), &only_ed, &t),
            Verdict::Invalid(Reason::AlgorithmNotAllowed)
        );
    }

    #[test]
    fn unknown_kid_asks_for_a_refetch_once() {
        let sk = signing_key(3);
        let set = keys(&[jwk(&sk, "old")]);
        let t = sign(&sk, r#"{"alg":"ES256","kid":"new"}"#, &claims(""));
        let cfg = config("");
        assert_eq!(run(&cfg, &set, &t), Verdict::UnknownKid { issuer: 0 });
        let mut cache = TokenCache::new(4);
        let auth = format!("Bearer {t}");
        assert_eq!(
            verify(&cfg, Some(&auth), None, NOW, &set, &mut cache, true),
            Verdict::Invalid(Reason::UnknownKey)
        );
    }

    #[test]
    fn keys_not_loaded_means_wait_or_unavailable() {
        let sk = signing_key(3);
        let t = sign(&sk, r#"{"alg":"ES256"}"#, &claims(""));
        assert_eq!(
            run(&config(""), &Keys(None, 0), &t),
            Verdict::AwaitKeys { issuer: 0 }
        );
    }

    fn config_json(json: &str) -> Config {
        Config::from_json(json.as_bytes()).unwrap()
    }

    const ISS2: &str = "https://idp2.example";

    fn two_issuers(prefixes: (&str, &str)) -> Config {
        config_json(&format!(
            r#"{{"providers":[{{"issuer":"{ISS}","audiences":["api"]{}}},
                              {{"issuer":"{ISS2}","audiences":["api"]{}}}],
                "clusters":{{"{ISS}":"idp","{ISS2}":"idp2"}}}}"#,
            prefixes.0, prefixes.1
        ))
    }

    fn user_of(verdict: Verdict) -> String {
        match verdict {
            Verdict::Allow(identity) => identity.user,
            other => panic!("refused: {other:?}"),
        }
    }

    /// Issue: `alice` at a second issuer read the memory of `alice` at the
    /// first. With several issuers each user is qualified by its issuer.
    #[test]
    fn the_same_subject_at_two_issuers_is_two_users() {
        let sk = signing_key(4);
        let set = keys(&[jwk(&sk, "k")]);
        let h = r#"{"alg":"ES256","kid":"k"}"#;
        let cfg = two_issuers(("", ""));
        let at_one = sign(&sk, h, &claims(""));
        let at_two = sign(&sk, h, &claims("").replace(ISS, ISS2));
        assert_eq!(
            user_of(run(&cfg, &set, &at_one)),
            "https://idp.example#alice"
        );
        assert_eq!(
            user_of(run(&cfg, &set, &at_two)),
            "https://idp2.example#alice"
        );
        // Explicit prefixes are used as given.
        let named = two_issuers((
            r#","subject_prefix":"corp:""#,
            r#","subject_prefix":"partner:""#,
        ));
        assert_eq!(user_of(run(&named, &set, &at_one)), "corp:alice");
        assert_eq!(user_of(run(&named, &set, &at_two)), "partner:alice");
        // A single issuer keeps the plain `sub`.
        assert_eq!(run(&config(""), &set, &at_one), alice());
    }

    /// Issue: an OIDC token with `sub` = a victim's `did:key:…` read the
    /// victim's memory. No issuer may speak for a DID.
    #[test]
    fn an_oidc_subject_that_looks_like_a_did_is_refused() {
        let sk = signing_key(5);
        let set = keys(&[jwk(&sk, "k")]);
        let h = r#"{"alg":"ES256","kid":"k"}"#;
        let did = "did:key:z6MkkhEFZ6GwXiidbcqCtaHGMGConNj3wrh4ut8WQbLPuspF";
        let t = sign(&sk, h, &claims("").replace("alice", did));
        assert_eq!(
            run(&config(""), &set, &t),
            Verdict::Invalid(Reason::Claim(ClaimError::InvalidSub))
        );
        // Nor through a prefix that completes one.
        let cfg = config(r#","subject_prefix":"di""#);
        let t = sign(&sk, h, &claims("").replace("alice", "d:key:z6Mk"));
        assert_eq!(
            run(&cfg, &set, &t),
            Verdict::Invalid(Reason::Claim(ClaimError::InvalidSub))
        );
        // With several issuers the qualified form cannot be a DID either.
        let two = two_issuers(("", ""));
        let t = sign(&sk, h, &claims("").replace("alice", did));
        assert_eq!(
            user_of(run(&two, &set, &t)),
            format!("https://idp.example#{did}")
        );
    }

    #[test]
    fn refusals() {
        let sk = signing_key(9);
        let set = keys(&[jwk(&sk, "k")]);
        let cfg = config("");
        let h = r#"{"alg":"ES256","kid":"k"}"#;
        let cases: Vec<(String, Verdict)> = vec![
            (
                sign(&sk, h, &claims("").replace(ISS, "https://evil.example")),
                Verdict::Invalid(Reason::UnknownIssuer),
            ),
            (
                sign(
                    &sk,
                    h,
                    &format!(r#"{{"iss":"{ISS}","sub":"a","aud":"api"}}"#),
                ),
                Verdict::Invalid(Reason::Claim(ClaimError::MissingExp)),
            ),
            (
                sign(
                    &sk,
                    h,
                    &claims("").replace(r#""aud":"api""#, r#""aud":["x","y"]"#),
                ),
                Verdict::Invalid(Reason::Claim(ClaimError::AudienceMismatch)),
            ),
            (
                sign(&sk, r#"{"alg":"none","kid":"k"}"#, &claims("")),
                Verdict::Invalid(Reason::AlgorithmNotAllowed),
            ),
            (
                sign(&sk, r#"{"alg":"HS256","kid":"k"}"#, &claims("")),
                Verdict::Invalid(Reason::AlgorithmNotAllowed),
            ),
            (
                // An RSA algorithm against an EC key: alg/key type mismatch.
                sign(&sk, r#"{"alg":"RS256","kid":"k"}"#, &claims("")),
                Verdict::Invalid(Reason::AlgorithmNotAllowed),
            ),
            (
                compact(h, &claims(""), &[0u8; 64]),
                Verdict::Invalid(Reason::BadSignature),
            ),
            ("e30.e30".to_string(), Verdict::Invalid(Reason::Malformed)),
        ];
        for (token, want) in cases {
            assert_eq!(run(&cfg, &set, &token), want, "{token}");
        }
        assert_eq!(
            verify(&cfg, None, None, NOW, &set, &mut TokenCache::new(1), false),
            Verdict::MissingToken
        );
        assert_eq!(
            verify(
                &cfg,
                Some("Basic x"),
                None,
                NOW,
                &set,
                &mut TokenCache::new(1),
                false
            ),
            Verdict::MissingToken
        );
    }

    #[test]
    fn tampered_payload_fails() {
        let sk = signing_key(4);
        let t = sign(&sk, r#"{"alg":"ES256"}"#, &claims(""));
        let mut parts: Vec<&str> = t.split('.').collect();
        let evil = encode(&claims("").replace("alice", "admin"));
        parts[1] = &evil;
        assert_eq!(
            run(&config(""), &keys(&[jwk(&sk, "k")]), &parts.join(".")),
            Verdict::Invalid(Reason::BadSignature)
        );
    }

    #[test]
    fn algorithm_allow_list_applies() {
        let sk = signing_key(5);
        let t = sign(&sk, r#"{"alg":"ES256"}"#, &claims(""));
        let cfg = config(r#","algorithms":["RS256"]"#);
        assert_eq!(
            run(&cfg, &keys(&[jwk(&sk, "k")]), &t),
            Verdict::Invalid(Reason::AlgorithmNotAllowed)
        );
    }

    #[test]
    fn scopes_are_enforced() {
        let sk = signing_key(6);
        let set = keys(&[jwk(&sk, "k")]);
        let cfg = config(r#","required_scopes":["read","write"]"#);
        let some = sign(&sk, r#"{"alg":"ES256"}"#, &claims(r#","scope":"read""#));
        assert_eq!(
            run(&cfg, &set, &some),
            Verdict::InsufficientScope(vec!["write".into()])
        );
        let all = sign(
            &sk,
            r#"{"alg":"ES256"}"#,
            &claims(r#","scope":"read","scp":["write"]"#),
        );
        // The identity carries the scopes, for the token the gateway signs.
        let Verdict::Allow(mut who) = run(&cfg, &set, &all) else {
            panic!("refused")
        };
        assert_eq!(who.scope.take().as_deref(), Some("read write"));
        assert_eq!(Verdict::Allow(who), alice());
    }

    #[test]
    fn oversize_tokens_are_refused_before_parsing() {
        let cfg = Config::from_json(br#"{"max_token_bytes":100}"#).unwrap();
        let t = "a".repeat(101);
        assert_eq!(
            run(&cfg, &Keys(None, 0), &t),
            Verdict::Invalid(Reason::TooLarge)
        );
    }

    #[test]
    fn cache_serves_repeats_until_keys_change() {
        let sk = signing_key(8);
        let cfg = config("");
        let set = keys(&[jwk(&sk, "k")]);
        let t = sign(&sk, r#"{"alg":"ES256","kid":"k"}"#, &claims(""));
        let auth = format!("Bearer {t}");
        let mut cache = TokenCache::new(4);
        assert_eq!(
            verify(&cfg, Some(&auth), None, NOW, &set, &mut cache, false),
            alice()
        );
        assert_eq!(cache.len(), 1);
        // A hit does not look at the keys at all: an empty store still answers.
        let rotated = Keys(
            Some(
                JwkSet::parse(
                    format!(r#"{{"keys":[{}]}}"#, jwk(&signing_key(1), "other")).as_bytes(),
                )
                .unwrap(),
            ),
            1,
        );
        assert_eq!(
            verify(&cfg, Some(&auth), None, NOW, &rotated, &mut cache, false),
            alice()
        );
        // A new key generation turns the hit into a full verification.
        let rotated = Keys(rotated.0, 2);
        assert_eq!(
            verify(&cfg, Some(&auth), None, NOW, &rotated, &mut cache, false),
            Verdict::UnknownKid { issuer: 0 }
        );
    }
}

#[cfg(test)]
mod did_tests {
    use super::*;
    use crate::did::tests::did_key;
    use crate::token::tests::encode;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use ed25519_dalek::{Signer, SigningKey};

    const NOW: i64 = 1_700_000_000;
    const AUD: &str = "http://127.0.0.1:8080";

    fn identity(seed: u8) -> (SigningKey, String) {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let did = did_key(&[0xed, 0x01], key.verifying_key().as_bytes());
        (key, did)
    }

    fn config(allow: &str, max_ttl: u64) -> Config {
        Config::from_json(
            format!(
                r#"{{"did":{{"audiences":["{AUD}"],"allow":[{allow}],"max_ttl_secs":{max_ttl}}}}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    }

    fn token(key: &SigningKey, header: &str, claims: &str) -> String {
        let input = format!("{}.{}", encode(header), encode(claims));
        let sig = key.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
    }

    fn claims(did: &str, iat: i64, exp: i64) -> String {
        format!(r#"{{"iss":"{did}","aud":"{AUD}","iat":{iat},"exp":{exp}}}"#)
    }

    struct NoKeys;

    impl KeyStore for NoKeys {
        fn keys(&self, _: usize) -> KeyState<'_> {
            KeyState::Unavailable
        }
    }

    fn run(cfg: &Config, t: &str) -> Verdict {
        let auth = format!("Bearer {t}");
        verify(
            cfg,
            Some(&auth),
            None,
            NOW,
            &NoKeys,
            &mut TokenCache::new(8),
            false,
        )
    }

    #[test]
    fn did_key_token_identifies_the_did() {
        let (key, did) = identity(1);
        let cfg = config(r#""did:key:*""#, 3600);
        let t = token(
            &key,
            r#"{"alg":"EdDSA","typ":"JWT"}"#,
            &claims(&did, NOW, NOW + 600),
        );
        assert_eq!(
            run(&cfg, &t),
            Verdict::Allow(Identity {
                user: did.clone(),
                exp: NOW + 600,
                issuer: did.clone(),
                scope: None,
                ..Identity::default()
            })
        );
        let with_kid = token(
            &key,
            &format!(r#"{{"alg":"EdDSA","kid":"{did}#key-1"}}"#),
            &claims(&did, NOW, NOW + 600),
        );
        assert!(matches!(run(&cfg, &with_kid), Verdict::Allow(_)));
    }

    #[test]
    fn did_policy_refusals() {
        let (key, did) = identity(2);
        let (_, other) = identity(3);
        let cfg = config(r#""did:key:*""#, 3600);
        let h = r#"{"alg":"EdDSA"}"#;
        let cases = [
            (
                token(&key, h, &claims(&did, NOW, NOW + 3601)),
                Reason::Claim(ClaimError::TooLongLived),
            ),
            (
                token(&key, h, &claims(&did, NOW - 7200, NOW - 3600)),
                Reason::Claim(ClaimError::Expired),
            ),
            (
                token(
                    &key,
                    h,
                    &claims(&did, NOW, NOW + 60).replace(AUD, "http://elsewhere"),
                ),
                Reason::Claim(ClaimError::AudienceMismatch),
            ),
            (
                token(&key, h, &format!(r#"{{"iss":"{did}","aud":"{AUD}"}}"#)),
                Reason::Claim(ClaimError::MissingExp),
            ),
            (
                token(
                    &key,
                    &format!(r#"{{"alg":"EdDSA","kid":"{other}#k"}}"#),
                    &claims(&did, NOW, NOW + 60),
                ),
                Reason::KidMismatch,
            ),
            (
                // Signed by another key than the DID's.
                token(&identity(3).0, h, &claims(&did, NOW, NOW + 60)),
                Reason::BadSignature,
            ),
            (
                token(&key, r#"{"alg":"ES256K"}"#, &claims(&did, NOW, NOW + 60)),
                Reason::AlgorithmNotAllowed,
            ),
            (
                token(&key, h, &claims("did:pkh:eip155:1:0xab", NOW, NOW + 60)),
                Reason::DidNotAllowed,
            ),
        ];
        for (t, want) in cases {
            assert_eq!(run(&cfg, &t), Verdict::Invalid(want), "{want:?}");
        }
    }

    #[test]
    fn unsupported_methods_and_disabled_did_are_untrusted() {
        let (key, _) = identity(4);
        let cfg = config(r#""did:*""#, 3600);
        let t = token(
            &key,
            r#"{"alg":"EdDSA"}"#,
            &claims("did:web:example.com", NOW, NOW + 60),
        );
        assert_eq!(run(&cfg, &t), Verdict::Invalid(Reason::UnknownIssuer));
        let (key, did) = identity(5);
        let t = token(&key, r#"{"alg":"EdDSA"}"#, &claims(&did, NOW, NOW + 60));
        let no_did = Config::from_json(b"{}").unwrap();
        assert_eq!(run(&no_did, &t), Verdict::Invalid(Reason::UnknownIssuer));
    }

    #[test]
    fn exact_allow_list_entries() {
        let (key, did) = identity(6);
        let (_, other) = identity(7);
        let t = token(&key, r#"{"alg":"EdDSA"}"#, &claims(&did, NOW, NOW + 60));
        assert!(matches!(
            run(&config(&format!("{did:?}"), 3600), &t),
            Verdict::Allow(_)
        ));
        assert_eq!(
            run(&config(&format!("{other:?}"), 3600), &t),
            Verdict::Invalid(Reason::DidNotAllowed)
        );
    }

    /// Issue: with `"required_scopes": ["x"]` an OIDC token without the
    /// scope got 403 and a self-issued did:key token without it got 200.
    #[test]
    fn required_scopes_apply_to_did_tokens() {
        let (key, did) = identity(9);
        let cfg = Config::from_json(
            format!(
                r#"{{"required_scopes":["x"],"did":{{"audiences":["{AUD}"],"allow":["did:key:*"]}}}}"#
            )
            .as_bytes(),
        )
        .unwrap();
        let without = token(&key, r#"{"alg":"EdDSA"}"#, &claims(&did, NOW, NOW + 60));
        assert_eq!(
            run(&cfg, &without),
            Verdict::InsufficientScope(vec!["x".into()])
        );
        let with = token(
            &key,
            r#"{"alg":"EdDSA"}"#,
            &claims(&did, NOW, NOW + 60).replace('}', r#","scope":"y x"}"#),
        );
        assert!(matches!(run(&cfg, &with), Verdict::Allow(_)));
    }

    fn pkh_token(sk: &k256::ecdsa::SigningKey, did: &str) -> String {
        use sha2::Digest;
        let input = format!(
            "{}.{}",
            encode(r#"{"alg":"ES256K-R"}"#),
            encode(&claims(did, NOW, NOW + 60))
        );
        let digest = sha2::Sha256::digest(input.as_bytes());
        let (sig, id) = sk.sign_prehash_recoverable(&digest);
        let mut rsv = sig.to_bytes().to_vec();
        rsv.push(u8::from(id.is_y_odd()));
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(rsv))
    }

    /// Issue: one key signed in as `eip155:1`, `eip155:01` and upper-case
    /// hex, several users. Every alias is stamped as the canonical DID, and
    /// the allow-list sees that spelling too.
    #[test]
    fn did_pkh_aliases_are_one_user() {
        use sha3::Digest;
        let sk = k256::ecdsa::SigningKey::from_slice(&[0x21; 32]).unwrap();
        let point = sk.verifying_key().to_sec1_point(false);
        let hash = sha3::Keccak256::digest(&point.as_bytes()[1..]);
        let hex: String = hash[12..].iter().map(|b| format!("{b:02x}")).collect();
        let canonical = format!("did:pkh:eip155:1:0x{hex}");
        let cfg = config(r#""did:pkh:eip155:1:*""#, 3600);
        for alias in [
            canonical.clone(),
            format!("did:pkh:eip155:01:0x{}", hex.to_uppercase()),
            format!("did:pkh:eip155:001:0x{hex}"),
        ] {
            assert_eq!(
                run(&cfg, &pkh_token(&sk, &alias)),
                Verdict::Allow(Identity {
                    user: canonical.clone(),
                    exp: NOW + 60,
                    issuer: canonical.clone(),
                    scope: None,
                    ..Identity::default()
                }),
                "{alias}"
            );
        }
        // The chain id is part of the identity: chain 137 is not allowed here.
        assert_eq!(
            run(
                &cfg,
                &pkh_token(&sk, &format!("did:pkh:eip155:137:0x{hex}"))
            ),
            Verdict::Invalid(Reason::DidNotAllowed)
        );
    }

    #[test]
    fn did_tokens_are_cached() {
        let (key, did) = identity(8);
        let cfg = config(r#""did:key:*""#, 3600);
        let t = token(&key, r#"{"alg":"EdDSA"}"#, &claims(&did, NOW, NOW + 600));
        let auth = format!("Bearer {t}");
        let mut cache = TokenCache::new(8);
        assert!(matches!(
            verify(&cfg, Some(&auth), None, NOW, &NoKeys, &mut cache, false),
            Verdict::Allow(_)
        ));
        assert_eq!(cache.len(), 1);
        assert!(matches!(
            verify(&cfg, Some(&auth), None, NOW + 1, &NoKeys, &mut cache, false),
            Verdict::Allow(_)
        ));
        assert_eq!(cache.len(), 1);
    }
}
