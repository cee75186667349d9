//! RFC 8693 token exchange, the client side: how an agent turns the token
//! the gateway delegated to it into one for the next hop, proving with its
//! own DID-JWT (the actor token) that it is the party the token was
//! delegated to.
//!
//! The request is a form POST (section 2.1, `application/x-www-form-urlencoded`
//! as RFC 6749 section 3.2 has it for the token endpoint); a success is the
//! JSON of section 2.2.1, an error that of RFC 6749 section 5.2 (section
//! 2.2.2).

use attach_contract::delegation::{GRANT_TYPE, TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_JWT};
use serde_json::Value;

use crate::a2a::one_line;

/// The gateway's token endpoint, below its URL.
pub const TOKEN_PATH: &str = "/oauth/token";

/// The form of one exchange: `subject_token` the token delegated to the
/// agent, `actor_token` the agent's DID-JWT, both JWTs; `audience` where
/// the new token is to be used (`None`: the gateway's default, itself).
pub fn request_form(
    subject_token: &str,
    actor_token: &str,
    audience: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut form = vec![
        ("grant_type", GRANT_TYPE.to_string()),
        ("subject_token", subject_token.to_string()),
        ("subject_token_type", TOKEN_TYPE_JWT.to_string()),
        ("actor_token", actor_token.to_string()),
        ("actor_token_type", TOKEN_TYPE_JWT.to_string()),
    ];
    if let Some(audience) = audience {
        form.push(("audience", audience.to_string()));
    }
    form
}

/// The issued token of a reply with `status` and `body`, or what went
/// wrong, in one sentence (the endpoint's `error` code and description,
/// never the tokens).
pub fn read_reply(status: u16, body: &[u8]) -> Result<String, String> {
    let reply: Option<Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| {
        reply
            .as_ref()
            .and_then(|r| r.get(name))
            .and_then(Value::as_str)
    };
    if !(200..300).contains(&status) {
        return Err(match field("error") {
            Some(code) => {
                let said = field("error_description")
                    .map(|d| format!(": {}", one_line(d)))
                    .unwrap_or_default();
                format!(
                    "the gateway refused the token exchange ({}, status {status}){said}",
                    one_line(code)
                )
            }
            None => format!("the gateway's token endpoint answered {status}"),
        });
    }
    let token = field("access_token")
        .filter(|t| !t.is_empty())
        .ok_or("the token exchange answered without an access_token")?;
    match field("issued_token_type") {
        Some(TOKEN_TYPE_ACCESS_TOKEN | TOKEN_TYPE_JWT) => {}
        Some(other) => {
            return Err(format!(
                "the token exchange issued a {} token, not an access token",
                one_line(other)
            ));
        }
        None => return Err("the token exchange answered without an issued_token_type".into()),
    }
    // Section 2.2.1: "Bearer" for a token used as one (RFC 6750); the
    // type's name is case-insensitive (RFC 6749 section 5.1).
    match field("token_type") {
        Some(t) if t.eq_ignore_ascii_case("bearer") => Ok(token.to_string()),
        Some(other) => Err(format!(
            "the token exchange issued a token of type {}, not a bearer token",
            one_line(other)
        )),
        None => Err("the token exchange answered without a token_type".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc_8693_section_2_1_request() {
        let form = request_form("sub.jwt", "act.jwt", Some("urn:coder"));
        assert_eq!(
            form,
            [
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange".to_string()
                ),
                ("subject_token", "sub.jwt".into()),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:jwt".into()
                ),
                ("actor_token", "act.jwt".into()),
                (
                    "actor_token_type",
                    "urn:ietf:params:oauth:token-type:jwt".into()
                ),
                ("audience", "urn:coder".into()),
            ]
        );
        assert!(
            request_form("s", "a", None)
                .iter()
                .all(|(k, _)| *k != "audience")
        );
    }

    #[test]
    fn rfc_8693_section_2_2_1_response() {
        // The section 2.2.1 example's members.
        let body = json!({
            "access_token": "eyJhbGciOiJFUzI1NiIsImtpZCI6IjllciJ9.x.y",
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "token_type": "Bearer",
            "expires_in": 60,
        });
        assert_eq!(
            read_reply(200, body.to_string().as_bytes()).unwrap(),
            "eyJhbGciOiJFUzI1NiIsImtpZCI6IjllciJ9.x.y"
        );
        let mut lower = body.clone();
        lower["token_type"] = "bearer".into();
        assert!(read_reply(200, lower.to_string().as_bytes()).is_ok());
    }

    #[test]
    fn incomplete_or_unusable_responses_are_refused() {
        let full = json!({"access_token": "t", "token_type": "Bearer",
                          "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"});
        for (name, value, reason) in [
            ("access_token", Value::Null, "without an access_token"),
            (
                "issued_token_type",
                Value::Null,
                "without an issued_token_type",
            ),
            (
                "issued_token_type",
                json!("urn:ietf:params:oauth:token-type:saml2"),
                "not an access token",
            ),
            ("token_type", Value::Null, "without a token_type"),
            // RFC 8693 section 2.2.1: N_A is a token that is not an access token.
            ("token_type", json!("N_A"), "not a bearer token"),
        ] {
            let mut body = full.clone();
            body[name] = value;
            let e = read_reply(200, body.to_string().as_bytes()).unwrap_err();
            assert!(e.contains(reason), "{name}: {e}");
        }
        assert!(read_reply(200, b"not json").is_err());
    }

    #[test]
    fn rfc_6749_section_5_2_errors_are_reported_without_tokens() {
        let body = json!({"error": "invalid_grant",
                          "error_description": "the subject token is delegated to another actor"});
        assert_eq!(
            read_reply(400, body.to_string().as_bytes()).unwrap_err(),
            "the gateway refused the token exchange (invalid_grant, status 400): \
             the subject token is delegated to another actor"
        );
        let body = json!({"error": "invalid_client"});
        assert_eq!(
            read_reply(401, body.to_string().as_bytes()).unwrap_err(),
            "the gateway refused the token exchange (invalid_client, status 401)"
        );
        assert_eq!(
            read_reply(404, b"<html>").unwrap_err(),
            "the gateway's token endpoint answered 404"
        );
        // A success status with an error body is still not a token.
        assert!(read_reply(200, body.to_string().as_bytes()).is_err());
    }
}
