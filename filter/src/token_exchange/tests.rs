//! The token endpoint against RFC 8693 and RFC 6749, with DID-JWTs for the
//! user and the agents (their keys need no fetch) and a real key set.

use super::*;
use crate::did::tests::did_key;
use crate::token::tests::encode;
use crate::verify::KeyState;
use attach_contract::gateway_keys::{KeySet, new_key};
use attach_contract::identity_token::{self, IdentityClaims};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, SigningKey};

const NOW: u64 = 1_700_000_000;
const GW: &str = "https://gw.example";
const CODER_AUD: &str = "did:key:z6MkCoderAudience";

struct NoKeys;

impl KeyStore for NoKeys {
    fn keys(&self, _: usize) -> KeyState<'_> {
        KeyState::Unavailable
    }
}

fn config() -> Config {
    let set = serde_json::to_string(&KeySet {
        keys: vec![new_key([9; 32], 0)],
    })
    .unwrap();
    let json = json!({
        "signing_keys": set,
        "issuer": GW,
        "did": {"audiences": [GW], "allow": ["did:key:*"], "max_ttl_secs": 3600},
        "token_exchange": true,
        "exchange_audiences": [CODER_AUD],
    });
    Config::from_json(json.to_string().as_bytes()).unwrap()
}

/// A did:key party: its DID and a DID-JWT of it with `extra` claims.
struct Party(SigningKey, String);

impl Party {
    fn new(seed: u8) -> Self {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let did = did_key(&[0xed, 0x01], key.verifying_key().as_bytes());
        Party(key, did)
    }

    fn token(&self, exp: u64, extra: &str) -> String {
        let claims = format!(
            r#"{{"iss":"{0}","sub":"{0}","aud":"{GW}","iat":{NOW},"exp":{exp}{extra}}}"#,
            self.1
        );
        let input = format!(
            "{}.{}",
            encode(r#"{"alg":"EdDSA","typ":"JWT"}"#),
            encode(&claims)
        );
        let sig = self.0.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
    }
}

fn user() -> Party {
    Party::new(1)
}
fn planner() -> Party {
    Party::new(2)
}
fn coder() -> Party {
    Party::new(3)
}

fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    let escape = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".into(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes()
}

/// A well-formed exchange of `subject` by `actor`, plus `extra` parameters.
fn request(subject: &str, actor: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut pairs = vec![
        ("grant_type", GRANT_TYPE),
        ("subject_token", subject),
        ("subject_token_type", TOKEN_TYPE_ACCESS_TOKEN),
        ("actor_token", actor),
        ("actor_token_type", TOKEN_TYPE_JWT),
    ];
    pairs.extend_from_slice(extra);
    form(&pairs)
}

fn run_at(cfg: &Config, body: &[u8], now: u64) -> LocalReply {
    let mut cache = TokenCache::new(16);
    let mut tokens = IdentityTokens::new(16);
    let outcome = exchange(
        Context {
            cfg,
            signing: cfg.signing.as_ref().unwrap(),
            keys: &NoKeys,
            cache: &mut cache,
            tokens: &mut tokens,
            user_agent: b"authlib",
            refetched: false,
            now,
        },
        body,
    );
    match outcome {
        Exchange::Reply(reply) => reply,
        Exchange::Wait(w) => panic!("waits: {w:?}"),
    }
}

fn run(cfg: &Config, body: &[u8]) -> LocalReply {
    run_at(cfg, body, NOW)
}

fn body(reply: &LocalReply) -> Value {
    serde_json::from_str(&reply.body).unwrap()
}

/// The issued token's claims, checked as any verifier would: with the
/// published key, for the audience it names.
fn issued(cfg: &Config, reply: &LocalReply, audience: &str) -> IdentityClaims {
    assert_eq!(reply.status, 200, "{}", reply.body);
    let signing = cfg.signing.as_ref().unwrap();
    let token = body(reply)["access_token"].as_str().unwrap().to_string();
    identity_token::verify(&token, GW, audience, NOW, |kid| {
        signing.keys.verifying_key(kid, NOW)
    })
    .unwrap()
}

fn refused_with(reply: &LocalReply, error: &str, description: &str) {
    assert_eq!(reply.status, 400, "{}", reply.body);
    let doc = body(reply);
    assert_eq!(doc["error"], error, "{doc}");
    let text = doc["error_description"].as_str().unwrap();
    assert!(text.contains(description), "{text:?} lacks {description:?}");
}

#[test]
fn rfc_8693_2_2_1_a_users_token_is_delegated_to_the_actor() {
    let cfg = config();
    let subject = user().token(NOW + 3600, r#","scope":"read write""#);
    let reply = run(
        &cfg,
        &request(&subject, &planner().token(NOW + 60, ""), &[]),
    );
    let doc = body(&reply);
    assert_eq!(doc["issued_token_type"], TOKEN_TYPE_ACCESS_TOKEN);
    assert_eq!(doc["token_type"], "Bearer");
    assert_eq!(doc["expires_in"], 300, "capped at 5 minutes");
    assert_eq!(doc["scope"], "read write");
    // RFC 6749 section 5.1: never cached.
    assert!(
        reply
            .headers
            .contains(&("cache-control", "no-store".into()))
    );
    assert!(reply.headers.contains(&("pragma", "no-cache".into())));
    let claims = issued(&cfg, &reply, GW);
    assert_eq!(claims.sub, user().1);
    assert_eq!(claims.idp, user().1);
    // RFC 8693 section 4.1: the actor in `act`.
    assert_eq!(claims.act, Some(json!({"sub": planner().1})));
    assert_eq!(claims.exp, NOW + 300);
    assert_eq!(claims.sid, session_id(&user().1, b"authlib"));
}

#[test]
fn the_issued_token_is_a_bearer_token_the_gateway_accepts_with_its_chain() {
    let cfg = config();
    let subject = user().token(NOW + 3600, "");
    let reply = run(
        &cfg,
        &request(&subject, &planner().token(NOW + 60, ""), &[]),
    );
    let token = body(&reply)["access_token"].as_str().unwrap().to_string();
    let verdict = verify::verify(
        &cfg,
        Some(&format!("Bearer {token}")),
        None,
        NOW as i64,
        &NoKeys,
        &mut TokenCache::new(4),
        false,
    );
    let Verdict::Allow(identity) = verdict else {
        panic!("{verdict:?}")
    };
    assert_eq!(identity.user, user().1);
    assert_eq!(identity.actors.actors(), [planner().1]);
    assert_eq!(
        identity.session.as_deref(),
        Some(session_id(&user().1, b"authlib").as_str())
    );
}

fn delegated_to_planner(cfg: &Config, scope: &str) -> String {
    let subject = user().token(NOW + 3600, scope);
    let reply = run(cfg, &request(&subject, &planner().token(NOW + 60, ""), &[]));
    body(&reply)["access_token"].as_str().unwrap().to_string()
}

#[test]
fn only_the_current_actor_may_exchange_a_delegated_token_and_the_chain_stays() {
    let cfg = config();
    let delegated = delegated_to_planner(&cfg, r#","scope":"read write""#);
    let again = run(
        &cfg,
        &request(
            &delegated,
            &planner().token(NOW + 60, ""),
            &[("scope", "read"), ("audience", CODER_AUD)],
        ),
    );
    let claims = issued(&cfg, &again, CODER_AUD);
    assert_eq!(claims.act, Some(json!({"sub": planner().1})));
    assert_eq!(claims.scope.as_deref(), Some("read"));
    assert_eq!(claims.sub, user().1);
    // A stolen delegated token is useless to another agent.
    let stolen = run(
        &cfg,
        &request(&delegated, &coder().token(NOW + 60, ""), &[]),
    );
    refused_with(&stolen, "invalid_request", "delegated to another actor");
}

#[test]
fn rfc_8693_4_4_may_act_names_who_may_act() {
    let cfg = config();
    let may_act = format!(r#","may_act":{{"sub":"{}"}}"#, coder().1);
    let subject = user().token(NOW + 3600, &may_act);
    let planner_tries = run(
        &cfg,
        &request(&subject, &planner().token(NOW + 60, ""), &[]),
    );
    refused_with(&planner_tries, "invalid_request", "may_act");
    let coder_may = run(&cfg, &request(&subject, &coder().token(NOW + 60, ""), &[]));
    assert_eq!(
        issued(&cfg, &coder_may, GW).act,
        Some(json!({"sub": coder().1}))
    );
}

#[test]
fn rfc_8693_2_2_2_invalid_target_and_invalid_scope() {
    let cfg = config();
    let subject = user().token(NOW + 3600, r#","scope":"read""#);
    let actor = planner().token(NOW + 60, "");
    for extra in [
        vec![("audience", "https://elsewhere.example")],
        vec![("resource", "https://elsewhere.example/api")],
        vec![("audience", GW), ("resource", CODER_AUD)],
        vec![("audience", "*")],
    ] {
        let reply = run(&cfg, &request(&subject, &actor, &extra));
        refused_with(&reply, "invalid_target", "audience");
    }
    // RFC 8707 resource indicator naming a known audience; and the
    // identity routes' upstreams are known too.
    let by_resource = run(&cfg, &request(&subject, &actor, &[("resource", CODER_AUD)]));
    assert_eq!(issued(&cfg, &by_resource, CODER_AUD).aud, CODER_AUD);
    let service = run(
        &cfg,
        &request(&subject, &actor, &[("audience", "attach-a2a")]),
    );
    assert_eq!(issued(&cfg, &service, "attach-a2a").aud, "attach-a2a");
    let wider = run(&cfg, &request(&subject, &actor, &[("scope", "read admin")]));
    refused_with(&wider, "invalid_scope", "wider");
    let bad = run(&cfg, &request(&subject, &actor, &[("scope", "a\"b")]));
    refused_with(&bad, "invalid_scope", "malformed");
}

#[test]
fn lifetime_never_exceeds_the_subjects_and_an_expired_subject_is_refused() {
    let cfg = config();
    let actor = planner().token(NOW + 60, "");
    let short = run(&cfg, &request(&user().token(NOW + 100, ""), &actor, &[]));
    assert_eq!(body(&short)["expires_in"], 100);
    assert_eq!(issued(&cfg, &short, GW).exp, NOW + 100);
    let expired = run_at(
        &cfg,
        &request(
            &user().token(NOW + 100, ""),
            &planner().token(NOW + 900, ""),
            &[],
        ),
        NOW + 200,
    );
    refused_with(&expired, "invalid_request", "subject_token: token expired");
}

#[test]
fn tokens_posing_as_the_gateways_are_refused() {
    let cfg = config();
    let actor = planner().token(NOW + 60, "");
    let claims = format!(
        r#"{{"iss":"{GW}","sub":"mallory","aud":"{GW}","iat":{NOW},"exp":{}}}"#,
        NOW + 60
    );
    let none = format!("{}.{}.", encode(r#"{"alg":"none"}"#), encode(&claims));
    let hs256 = format!(
        "{}.{}.{}",
        encode(r#"{"alg":"HS256","kid":"x"}"#),
        encode(&claims),
        URL_SAFE_NO_PAD.encode([0u8; 32])
    );
    for forged in [none, hs256] {
        let reply = run(&cfg, &request(&forged, &actor, &[]));
        refused_with(&reply, "invalid_request", "subject_token");
    }
    // An identity token the gateway made for an upstream is no bearer token.
    let signing = cfg.signing.as_ref().unwrap();
    let upstream = identity_token::sign(
        &signing.keys,
        &IdentityClaims {
            iss: GW.into(),
            sub: user().1,
            aud: "attach-a2a".into(),
            iat: NOW,
            exp: NOW + 60,
            jti: "j".into(),
            sid: "s".into(),
            idp: user().1,
            scope: None,
            act: None,
        },
    );
    let reply = run(&cfg, &request(&upstream, &actor, &[]));
    refused_with(&reply, "invalid_request", "audience not accepted");
}

#[test]
fn the_actor_token_is_the_actors_own_credential() {
    let cfg = config();
    let delegated = delegated_to_planner(&cfg, "");
    let subject = user().token(NOW + 3600, "");
    let reply = run(&cfg, &request(&subject, &delegated, &[]));
    refused_with(&reply, "invalid_request", "own credential");
    let itself = run(&cfg, &request(&subject, &user().token(NOW + 60, ""), &[]));
    refused_with(&itself, "invalid_request", "subject itself");
    let unknown = Party::new(4).token(NOW + 60, "").replace('.', ".x");
    let reply = run(&cfg, &request(&subject, &unknown, &[]));
    refused_with(&reply, "invalid_request", "actor_token");
}

#[test]
fn rfc_6749_5_2_malformed_requests() {
    let cfg = config();
    let subject = user().token(NOW + 3600, "");
    let actor = planner().token(NOW + 60, "");
    let wrong_grant = form(&[("grant_type", "client_credentials")]);
    let reply = run(&cfg, &wrong_grant);
    assert_eq!(body(&reply)["error"], "unsupported_grant_type");
    for (body, why) in [
        (Vec::new(), "grant_type is required"),
        (b"grant_type=%zz".to_vec(), "x-www-form-urlencoded"),
        (vec![0xff, 0xfe], "UTF-8"),
        (
            form(&[("grant_type", GRANT_TYPE), ("subject_token", &subject)]),
            "subject_token_type is required",
        ),
        (
            form(&[
                ("grant_type", GRANT_TYPE),
                ("subject_token", &subject),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:saml2",
                ),
            ]),
            "subject_token_type must be",
        ),
        (
            form(&[
                ("grant_type", GRANT_TYPE),
                ("subject_token", &subject),
                ("subject_token_type", TOKEN_TYPE_JWT),
            ]),
            "actor_token is required",
        ),
        (
            request(&subject, &actor, &[("scope", "a"), ("scope", "b")]),
            "more than once",
        ),
        (
            request(&subject, &actor, &[("requested_token_type", "urn:x")]),
            "requested_token_type",
        ),
    ] {
        refused_with(&run(&cfg, &body), "invalid_request", why);
    }
}

#[test]
fn a_requested_jwt_is_issued_as_one() {
    let cfg = config();
    let subject = user().token(NOW + 3600, "");
    let reply = run(
        &cfg,
        &request(
            &subject,
            &planner().token(NOW + 60, ""),
            &[("requested_token_type", TOKEN_TYPE_JWT)],
        ),
    );
    assert_eq!(body(&reply)["issued_token_type"], TOKEN_TYPE_JWT);
}
