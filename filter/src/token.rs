//! Compact JWS parsing: bearer extraction, base64url and JSON decoding.
//!
//! No cryptography here: the output says what a token claims, not whether
//! the claim is true. Every input is hostile, so every step returns an error
//! instead of assuming shape.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::{self, Deserializer};

/// Why a token could not even be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    TooLarge,
    /// Not three base64url segments, or a segment that is not valid base64url.
    Malformed,
    /// A segment decoded but is not the JSON object expected.
    BadJson,
    /// The header names an extension (`crit`) the gateway does not implement.
    UnsupportedCritical,
}

/// The JOSE header members the gateway uses.
#[derive(Debug, Deserialize)]
pub struct Header {
    pub alg: String,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub crit: Option<serde_json::Value>,
}

/// The registered claims the gateway checks, plus scopes.
#[derive(Debug, Default, Deserialize)]
pub struct Claims {
    #[serde(default)]
    pub iss: Option<String>,
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default, deserialize_with = "string_or_list")]
    pub aud: Vec<String>,
    /// The resource indicator (RFC 8707) some authorization servers write
    /// as a claim of its own: read only where a route binds an audience.
    #[serde(default, deserialize_with = "string_or_list")]
    pub resource: Vec<String>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub exp: Option<i64>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub nbf: Option<i64>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub iat: Option<i64>,
    /// OAuth 2.0 scopes: a space-separated string (RFC 8693 `scope`).
    #[serde(default)]
    pub scope: Option<String>,
    /// Scopes as some providers (Okta, Entra) put them: a list or a string.
    #[serde(default, deserialize_with = "string_or_list")]
    pub scp: Vec<String>,
}

impl Claims {
    /// Every scope granted, from both `scope` and `scp`.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope
            .iter()
            .flat_map(|s| s.split(' '))
            .chain(self.scp.iter().flat_map(|s| s.split(' ')))
            .filter(|s| !s.is_empty())
    }
}

/// A decoded but unverified token.
#[derive(Debug)]
pub struct Token<'a> {
    pub header: Header,
    pub claims: Claims,
    /// `header.payload`, the bytes the signature covers.
    pub signing_input: &'a [u8],
    pub signature: Vec<u8>,
}

/// The credentials of a `Bearer` authorization (scheme in any case), or
/// `None` for another scheme or none at all. What follows the scheme is
/// returned as sent: a malformed token is still a presented token, and is
/// refused as `invalid_token` by [`parse`], not treated as absent.
pub fn bearer(authorization: &str) -> Option<&str> {
    let (scheme, rest) = authorization.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim_start_matches(' ');
    (!token.is_empty()).then_some(token)
}

/// Splits and decodes a compact JWS of at most `max_len` bytes.
pub fn parse(token: &str, max_len: usize) -> Result<Token<'_>, ParseError> {
    if token.len() > max_len {
        return Err(ParseError::TooLarge);
    }
    let Some((signing_input, s)) = token.rsplit_once('.') else {
        return Err(ParseError::Malformed);
    };
    let Some((h, p)) = signing_input.split_once('.') else {
        return Err(ParseError::Malformed);
    };
    if h.is_empty() || p.is_empty() || p.contains('.') {
        return Err(ParseError::Malformed);
    }
    let header: Header = serde_json::from_slice(&b64(h)?).map_err(|_| ParseError::BadJson)?;
    if header.crit.is_some() {
        return Err(ParseError::UnsupportedCritical);
    }
    let claims: Claims = serde_json::from_slice(&b64(p)?).map_err(|_| ParseError::BadJson)?;
    let signature = b64(s)?;
    Ok(Token {
        header,
        claims,
        signing_input: signing_input.as_bytes(),
        signature,
    })
}

/// The payload of a compact JWS as JSON, every member kept: for the few
/// claims only some tokens carry (`may_act`, and the `sid`, `idp` and
/// `act` of the gateway's own), read after the token verified.
pub fn payload(token: &str) -> Option<serde_json::Value> {
    let part = token.split('.').nth(1)?;
    serde_json::from_slice(&b64(part).ok()?).ok()
}

fn b64(segment: &str) -> Result<Vec<u8>, ParseError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| ParseError::Malformed)
}

fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    })
}

/// RFC 7519 NumericDate: seconds, possibly fractional; truncated to whole
/// seconds. Non-finite or absurd values are refused rather than wrapped.
fn numeric_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(i) = n.as_i64() {
        return Ok(Some(i));
    }
    match n.as_f64() {
        Some(f) if f.is_finite() && f.abs() < 1e15 => Ok(Some(f.trunc() as i64)),
        _ => Err(de::Error::custom("NumericDate out of range")),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub fn encode(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    pub fn compact(header: &str, claims: &str, sig: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            encode(header),
            encode(claims),
            URL_SAFE_NO_PAD.encode(sig)
        )
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer("Bearer abc.def.ghi"), Some("abc.def.ghi"));
        assert_eq!(bearer("bearer abc"), Some("abc"));
        assert_eq!(bearer("BEARER   abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearerabc"), None);
        // Presented but malformed: returned, so that parsing refuses it.
        assert_eq!(bearer("Bearer a b"), Some("a b"));
        assert_eq!(parse("a b", 8192).err(), Some(ParseError::Malformed));
        assert_eq!(bearer("Bearer *!*.x.y"), Some("*!*.x.y"));
        assert_eq!(parse("*!*.x.y", 8192).err(), Some(ParseError::Malformed));
    }

    #[test]
    fn parses_a_token() {
        let t = compact(
            r#"{"alg":"ES256","kid":"k1","typ":"JWT"}"#,
            r#"{"iss":"https://i","sub":"u","aud":["a","b"],"exp":1.9e9,"iat":100,"scope":"read write","scp":["x"]}"#,
            b"sig",
        );
        let tok = parse(&t, 8192).unwrap();
        assert_eq!(tok.header.alg, "ES256");
        assert_eq!(tok.header.kid.as_deref(), Some("k1"));
        assert_eq!(tok.claims.aud, vec!["a", "b"]);
        assert_eq!(tok.claims.exp, Some(1_900_000_000));
        assert_eq!(tok.claims.iat, Some(100));
        assert_eq!(
            tok.claims.scopes().collect::<Vec<_>>(),
            vec!["read", "write", "x"]
        );
        assert_eq!(tok.signature, b"sig");
        let dot2 = t.rfind('.').unwrap();
        assert_eq!(tok.signing_input, &t.as_bytes()[..dot2]);
    }

    #[test]
    fn aud_may_be_a_string() {
        let t = compact(r#"{"alg":"EdDSA"}"#, r#"{"aud":"only"}"#, b"s");
        assert_eq!(parse(&t, 8192).unwrap().claims.aud, vec!["only"]);
    }

    #[test]
    fn rejects_malformed_tokens() {
        let good_h = encode(r#"{"alg":"RS256"}"#);
        let good_p = encode(r#"{"sub":"x"}"#);
        let cases = [
            ("", ParseError::Malformed),
            ("a.b", ParseError::Malformed),
            ("a.b.c.d", ParseError::Malformed),
            (&format!(".{good_p}.c") as &str, ParseError::Malformed),
            (&format!("{good_h}.{good_p}.!!"), ParseError::Malformed),
            (&format!("{good_h}=.{good_p}.c"), ParseError::Malformed),
            (
                &format!("{}.{good_p}.c", encode("[1]")),
                ParseError::BadJson,
            ),
            (&format!("{}.{good_p}.c", encode("{}")), ParseError::BadJson),
            (
                &format!("{good_h}.{}.c", encode("nope")),
                ParseError::BadJson,
            ),
            (
                &format!("{good_h}.{}.c", encode(r#"{"exp":"soon"}"#)),
                ParseError::BadJson,
            ),
            (
                &format!("{good_h}.{}.c", encode(r#"{"sub":"a","sub":"b"}"#)),
                ParseError::BadJson,
            ),
            (
                &format!("{good_h}.{}.c", encode(r#"{"exp":1e300}"#)),
                ParseError::BadJson,
            ),
            (
                &format!("{}.{good_p}.c", encode(r#"{"alg":"RS256","crit":["b64"]}"#)),
                ParseError::UnsupportedCritical,
            ),
        ];
        for (tok, want) in cases {
            assert_eq!(parse(tok, 8192).err(), Some(want), "{tok}");
        }
    }

    #[test]
    fn size_cap_applies_before_decoding() {
        let t = compact(r#"{"alg":"RS256"}"#, r#"{"sub":"x"}"#, &[0u8; 64]);
        assert!(parse(&t, t.len()).is_ok());
        assert_eq!(parse(&t, t.len() - 1).err(), Some(ParseError::TooLarge));
    }

    proptest! {
        #[test]
        fn arbitrary_strings_never_panic(s in "\\PC{0,300}") {
            let _ = parse(&s, 8192);
            let _ = bearer(&s);
        }

        #[test]
        fn arbitrary_segments_never_panic(h in proptest::collection::vec(any::<u8>(), 0..200),
                                          p in proptest::collection::vec(any::<u8>(), 0..200),
                                          s in proptest::collection::vec(any::<u8>(), 0..100)) {
            let t = format!("{}.{}.{}", URL_SAFE_NO_PAD.encode(&h), URL_SAFE_NO_PAD.encode(&p), URL_SAFE_NO_PAD.encode(&s));
            prop_assert!(parse(&t, 8192).is_err() || serde_json::from_slice::<serde_json::Value>(&h).is_ok());
        }

        #[test]
        fn json_shaped_claims_never_panic(exp in any::<f64>(), aud in "\\PC{0,20}", sub in any::<Option<i64>>()) {
            let claims = format!(r#"{{"exp":{exp},"aud":{aud:?},"sub":{}}}"#, sub.map_or("null".to_string(), |s| s.to_string()));
            let t = compact(r#"{"alg":"ES256"}"#, &claims, b"x");
            let _ = parse(&t, 8192);
        }
    }
}
