//! The answers the filter gives itself instead of forwarding: refusals
//! (RFC 6750), the protected-resource metadata document (RFC 9728), and,
//! when the gateway signs, its public keys (RFC 7517) and its issuer
//! metadata (OpenID Connect Discovery 1.0, RFC 8414).
//!
//! Bodies say what category of problem the caller has and nothing more: no
//! key ids, URLs or library messages that would help an attacker probe.

use crate::claims::ClaimError;
use crate::config::{Config, Signing};
use crate::verify::{Reason, Verdict};
use crate::{DISCOVERY_PATH, JWKS_PATH, TOKEN_PATH};
use attach_contract::delegation::GRANT_TYPE;
use serde_json::json;

/// A response the filter sends without reaching the upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u32,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl LocalReply {
    pub(crate) fn json(
        status: u32,
        mut headers: Vec<(&'static str, String)>,
        body: serde_json::Value,
    ) -> Self {
        headers.push(("content-type", "application/json".into()));
        headers.push(("cache-control", "no-store".into()));
        LocalReply {
            status,
            headers,
            body: body.to_string(),
        }
    }
}

/// A short, fixed description of each refusal: safe to show any caller.
pub fn describe(reason: Reason) -> &'static str {
    match reason {
        Reason::TooLarge => "token too large",
        Reason::Malformed => "malformed token",
        Reason::UnknownIssuer => "issuer not trusted",
        Reason::AlgorithmNotAllowed => "signature algorithm not allowed",
        Reason::UnknownKey | Reason::BadSignature => "signature could not be verified",
        Reason::Claim(ClaimError::MissingExp) => "token has no expiry",
        Reason::Claim(ClaimError::Expired) => "token expired",
        Reason::Claim(ClaimError::NotYetValid) => "token not yet valid",
        Reason::Claim(ClaimError::IssuedInFuture) => "token issued in the future",
        Reason::Claim(ClaimError::MissingSub) => "token has no subject",
        Reason::Claim(ClaimError::InvalidSub) => "token subject is not acceptable",
        Reason::Claim(ClaimError::AudienceMismatch) => "token audience not accepted",
        Reason::Claim(ClaimError::TooLongLived) => "token lifetime too long",
        Reason::DidNotAllowed => "identity not allowed",
        Reason::KidMismatch => "key id does not match the issuer",
    }
}

/// What a verdict decided, in the same fixed words the refusals use: what
/// the debug log says of a refused request.
pub fn outcome(verdict: &Verdict) -> &'static str {
    match verdict {
        Verdict::Allow(_) => "allowed",
        Verdict::MissingToken => "no bearer token",
        Verdict::Invalid(reason) => describe(*reason),
        Verdict::UnknownKid { .. } => describe(Reason::UnknownKey),
        Verdict::InsufficientScope(_) => "insufficient scope",
        Verdict::KeysUnavailable | Verdict::AwaitKeys { .. } => "issuer keys unavailable",
    }
}

/// What a refusal's `WWW-Authenticate` challenge points the client to.
pub struct Challenge<'a> {
    /// The protected-resource metadata document's URL (RFC 9728 section 5.1).
    pub metadata_url: &'a str,
    /// The scopes the request needs, named on every challenge when not
    /// empty (RFC 6750 section 3; MCP 2026-07-28, basic/authorization,
    /// "Scope Selection Strategy").
    pub scope: &'a [String],
}

/// The metadata URL of the gateway's own protected resource at `resource`.
pub fn metadata_url(resource: &str) -> String {
    format!("{resource}{}", crate::RESOURCE_METADATA_PATH)
}

/// The refusal for a verdict, or `None` when the request goes on (or waits).
pub fn refusal(verdict: &Verdict, to: &Challenge<'_>) -> Option<LocalReply> {
    let challenge = |params: &str, scope: &[String]| www_authenticate(to, params, scope);
    Some(match verdict {
        Verdict::MissingToken => LocalReply::json(
            401,
            vec![challenge("", to.scope)],
            json!({"error": "unauthorized", "message": "a bearer token is required"}),
        ),
        Verdict::Invalid(reason) => {
            let text = describe(*reason);
            LocalReply::json(
                401,
                vec![challenge(
                    &format!("error=\"invalid_token\", error_description=\"{text}\", "),
                    to.scope,
                )],
                json!({"error": "invalid_token", "message": text}),
            )
        }
        Verdict::UnknownKid { .. } => LocalReply::json(
            401,
            vec![challenge(
                &format!(
                    "error=\"invalid_token\", error_description=\"{}\", ",
                    describe(Reason::UnknownKey)
                ),
                to.scope,
            )],
            json!({"error": "invalid_token", "message": describe(Reason::UnknownKey)}),
        ),
        Verdict::InsufficientScope(missing) => insufficient_scope(to, missing),
        Verdict::KeysUnavailable | Verdict::AwaitKeys { .. } => LocalReply::json(
            503,
            vec![("retry-after", "5".into())],
            json!({"error": "temporarily_unavailable", "message": "the identity provider cannot be reached; retry shortly"}),
        ),
        Verdict::Allow(_) => return None,
    })
}

/// The `WWW-Authenticate` header of a challenge with `params` (each
/// followed by `, `) and `scope`.
fn www_authenticate(to: &Challenge<'_>, params: &str, scope: &[String]) -> (&'static str, String) {
    let scope = match scope {
        [] => String::new(),
        scope => format!("scope=\"{}\", ", quoted_safe(&scope.join(" "))),
    };
    (
        "www-authenticate",
        format!(
            "Bearer realm=\"attach\", {params}{scope}resource_metadata=\"{}\"",
            to.metadata_url
        ),
    )
}

/// 403 for a token without scopes the request needs (RFC 6750 section
/// 3.1): the challenge names the challenge's own scopes and the `missing`
/// ones, so that one authorization gets them all.
pub fn insufficient_scope(to: &Challenge<'_>, missing: &[String]) -> LocalReply {
    let mut needed = to.scope.to_vec();
    needed.extend(missing.iter().filter(|m| !to.scope.contains(m)).cloned());
    let scope = quoted_safe(&needed.join(" "));
    LocalReply::json(
        403,
        vec![www_authenticate(
            to,
            "error=\"insufficient_scope\", ",
            &needed,
        )],
        json!({"error": "insufficient_scope", "message": "the token lacks a required scope", "scope": scope}),
    )
}

/// A token endpoint answer (RFC 6749 section 5.1): JSON, never stored by
/// any cache.
pub fn token_response(status: u32, body: serde_json::Value) -> LocalReply {
    LocalReply::json(status, vec![("pragma", "no-cache".into())], body)
}

/// The answer while the filter cannot verify anything (failed configuration).
pub fn unavailable() -> LocalReply {
    LocalReply::json(
        503,
        vec![("retry-after", "5".into())],
        json!({"error": "temporarily_unavailable", "message": "the gateway cannot verify tokens right now"}),
    )
}

/// Scope names come from configuration, but keep the header well-formed anyway.
fn quoted_safe(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect()
}

/// The RFC 9728 document describing this protected resource.
pub fn resource_metadata(cfg: &Config, resource: &str) -> LocalReply {
    let servers: Vec<&str> = cfg.providers.iter().map(|p| p.issuer.as_str()).collect();
    let mut doc = serde_json::Map::new();
    doc.insert("resource".into(), json!(resource));
    doc.insert("authorization_servers".into(), json!(servers));
    doc.insert("bearer_methods_supported".into(), json!(["header"]));
    if !cfg.scopes_supported.is_empty() {
        doc.insert("scopes_supported".into(), json!(cfg.scopes_supported));
    }
    let mut reply = LocalReply::json(200, vec![], doc.into());
    reply.headers.retain(|(k, _)| *k != "cache-control");
    reply.headers.push(("cache-control", "max-age=300".into()));
    reply
}

/// How long clients may keep the gateway's issuer documents: well within
/// the overlap a retired key stays published for.
const ISSUER_DOCUMENTS_MAX_AGE: &str = "public, max-age=300";

/// The issuer document served at `path`, if any: the keys published at
/// `now` (unix seconds), or the discovery document.
pub fn issuer_document(signing: &Signing, path: &str, now: u64) -> Option<LocalReply> {
    match path {
        JWKS_PATH => Some(jwks(signing, now)),
        DISCOVERY_PATH => Some(discovery(signing, now)),
        _ => None,
    }
}

fn cacheable(body: serde_json::Value) -> LocalReply {
    let mut reply = LocalReply::json(200, vec![], body);
    reply.headers.retain(|(k, _)| *k != "cache-control");
    reply
        .headers
        .push(("cache-control", ISSUER_DOCUMENTS_MAX_AGE.into()));
    reply
}

/// The JWKS of the keys published at `now` (unix seconds).
fn jwks(signing: &Signing, now: u64) -> LocalReply {
    let mut reply = cacheable(signing.keys.jwks(now));
    reply.headers.retain(|(k, _)| *k != "content-type");
    reply
        .headers
        .push(("content-type", "application/jwk-set+json".into()));
    reply
}

/// The gateway's issuer metadata: enough for a standard JWT library to
/// find the keys of what the gateway signs, and for an OAuth client to find
/// its token exchange. The algorithms are those of the keys published at
/// `now`, the signing key's first.
fn discovery(signing: &Signing, now: u64) -> LocalReply {
    let issuer = &signing.issuer;
    let algorithms: Vec<&str> = signing
        .keys
        .algorithms(now)
        .into_iter()
        .map(|alg| alg.name())
        .collect();
    let mut doc = json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}{JWKS_PATH}"),
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algorithms,
    });
    if let (true, Some(members)) = (signing.token_endpoint, doc.as_object_mut()) {
        members.insert(
            "token_endpoint".into(),
            format!("{issuer}{TOKEN_PATH}").into(),
        );
        members.insert("grant_types_supported".into(), json!([GRANT_TYPE]));
        members.insert(
            "token_endpoint_auth_methods_supported".into(),
            json!(["none"]),
        );
    }
    cacheable(doc)
}

/// The protected resource's base URL: configured, or derived from the
/// request's scheme and authority when those are well-formed (they are
/// caller-controlled, so anything odd falls back to a fixed value).
pub fn resource_url(cfg: &Config, scheme: Option<&str>, authority: Option<&str>) -> String {
    if let Some(r) = &cfg.resource {
        return r.clone();
    }
    let scheme = match scheme {
        Some("https") => "https",
        _ => "http",
    };
    let host_ok = |a: &&str| {
        !a.is_empty()
            && a.len() <= 255
            && a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
    };
    match authority.filter(host_ok) {
        Some(a) => format!("{scheme}://{a}"),
        None => "http://localhost".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    const RES: &str = "http://127.0.0.1:8080";

    fn refused(verdict: &Verdict, resource: &str) -> Option<LocalReply> {
        let url = metadata_url(resource);
        refusal(
            verdict,
            &Challenge {
                metadata_url: &url,
                scope: &[],
            },
        )
    }

    fn header<'a>(r: &'a LocalReply, name: &str) -> &'a str {
        r.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
            .unwrap()
    }

    #[test]
    fn missing_token_has_no_error_code() {
        let r = refused(&Verdict::MissingToken, RES).unwrap();
        assert_eq!(r.status, 401);
        let h = header(&r, "www-authenticate");
        assert!(h.starts_with("Bearer "));
        assert!(!h.contains("error="));
        assert!(h.contains(
            "resource_metadata=\"http://127.0.0.1:8080/.well-known/oauth-protected-resource\""
        ));
    }

    #[test]
    fn invalid_token_says_so() {
        let r = refused(&Verdict::Invalid(Reason::BadSignature), RES).unwrap();
        assert_eq!(r.status, 401);
        assert!(header(&r, "www-authenticate").contains("error=\"invalid_token\""));
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["error"], "invalid_token");
        let unknown_kid = refused(&Verdict::UnknownKid { issuer: 0 }, RES).unwrap();
        assert_eq!(
            unknown_kid.body, r.body,
            "an unknown kid looks like a bad signature"
        );
    }

    #[test]
    fn insufficient_scope_is_403() {
        let r = refused(
            &Verdict::InsufficientScope(vec!["write".into(), "ad\"min".into()]),
            RES,
        )
        .unwrap();
        assert_eq!(r.status, 403);
        assert!(
            header(&r, "www-authenticate")
                .contains("error=\"insufficient_scope\", scope=\"write admin\"")
        );
    }

    #[test]
    fn unreachable_idp_is_503() {
        let r = refused(&Verdict::KeysUnavailable, RES).unwrap();
        assert_eq!(r.status, 503);
        assert!(
            refused(
                &Verdict::Allow(Identity {
                    user: "u".into(),
                    exp: 0,
                    ..Default::default()
                }),
                RES
            )
            .is_none()
        );
    }

    #[test]
    fn metadata_document() {
        let cfg = Config::from_json(
            br#"{"providers":[{"issuer":"https://idp.example/","audiences":["a"]}],
                 "clusters":{"https://idp.example":"c"},"scopes_supported":["read"]}"#,
        )
        .unwrap();
        let r = resource_metadata(&cfg, RES);
        let doc: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(doc["resource"], RES);
        assert_eq!(doc["authorization_servers"][0], "https://idp.example");
        assert_eq!(doc["bearer_methods_supported"][0], "header");
        assert_eq!(doc["scopes_supported"][0], "read");
    }

    fn signing(keys: Vec<attach_contract::gateway_keys::StoredKey>) -> Signing {
        let set = serde_json::to_string(&attach_contract::gateway_keys::KeySet { keys }).unwrap();
        let json = json!({"signing_keys": set, "issuer": "https://gw.example"});
        Config::from_json(json.to_string().as_bytes())
            .unwrap()
            .signing
            .unwrap()
    }

    #[test]
    fn issuer_documents_name_the_algorithms_of_the_published_keys() {
        use attach_contract::gateway_keys::{Algorithm, KeySet, new_key, new_key_of};
        let document = |s: &Signing, path: &str, now: u64| -> serde_json::Value {
            serde_json::from_str(&issuer_document(s, path, now).unwrap().body).unwrap()
        };
        let ed = signing(vec![new_key([1; 32], 0)]);
        let doc = document(&ed, DISCOVERY_PATH, 0);
        assert_eq!(
            doc["id_token_signing_alg_values_supported"],
            json!(["EdDSA"])
        );
        assert_eq!(doc["jwks_uri"], "https://gw.example/.well-known/jwks.json");
        // No token endpoint is named unless it is served.
        assert!(doc.get("token_endpoint").is_none(), "{doc}");
        let exchanging = Signing {
            token_endpoint: true,
            ..ed.clone()
        };
        let doc = document(&exchanging, DISCOVERY_PATH, 0);
        assert_eq!(doc["token_endpoint"], "https://gw.example/oauth/token");
        assert_eq!(doc["grant_types_supported"], json!([GRANT_TYPE]));
        // A set moving to ES256: both during the overlap, the signing one first.
        let mut set = KeySet {
            keys: vec![new_key([1; 32], 0)],
        };
        set.rotate(
            new_key_of(Algorithm::ES256, [2; 32], 10).unwrap(),
            10,
            1000,
            100,
        );
        let mixed = signing(set.keys);
        let doc = document(&mixed, DISCOVERY_PATH, 20);
        assert_eq!(
            doc["id_token_signing_alg_values_supported"],
            json!(["ES256", "EdDSA"])
        );
        let jwks = issuer_document(&mixed, JWKS_PATH, 20).unwrap();
        assert_eq!(header(&jwks, "content-type"), "application/jwk-set+json");
        let jwks: serde_json::Value = serde_json::from_str(&jwks.body).unwrap();
        let kinds: Vec<(&str, &str)> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| (k["kty"].as_str().unwrap(), k["alg"].as_str().unwrap()))
            .collect();
        assert_eq!(kinds, [("OKP", "EdDSA"), ("EC", "ES256")]);
        let doc = document(&mixed, DISCOVERY_PATH, 110);
        assert_eq!(
            doc["id_token_signing_alg_values_supported"],
            json!(["ES256"])
        );
        assert_eq!(document(&mixed, JWKS_PATH, 110)["keys"][0]["crv"], "P-256");
    }

    #[test]
    fn resource_from_request_is_sanitised() {
        let cfg = Config::from_json(b"{}").unwrap();
        assert_eq!(
            resource_url(&cfg, Some("https"), Some("gw.example:8443")),
            "https://gw.example:8443"
        );
        assert_eq!(
            resource_url(&cfg, None, Some("evil\", x=\"y")),
            "http://localhost"
        );
        let cfg = Config::from_json(br#"{"resource":"https://api.example/"}"#).unwrap();
        assert_eq!(resource_url(&cfg, None, Some("x")), "https://api.example");
    }

    #[test]
    fn no_reason_leaks_detail() {
        for reason in [
            Reason::TooLarge,
            Reason::Malformed,
            Reason::UnknownIssuer,
            Reason::AlgorithmNotAllowed,
            Reason::UnknownKey,
            Reason::BadSignature,
            Reason::Claim(ClaimError::Expired),
        ] {
            let r = refused(&Verdict::Invalid(reason), RES).unwrap();
            assert!(!r.body.contains("http"), "{}", r.body);
            assert!(r.body.len() < 120);
        }
    }
}
