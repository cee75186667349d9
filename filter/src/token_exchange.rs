//! The gateway's token endpoint: OAuth 2.0 Token Exchange (RFC 8693) for
//! delegation. An agent presents the user's token (`subject_token`) and its
//! own credential (`actor_token`), and gets a short-lived token signed by
//! the gateway: the user as `sub`, the agent as the current actor in `act`,
//! for one audience, with scopes no wider and a lifetime no longer than
//! the subject's.
//!
//! It lives in the filter because the filter holds every verifier the
//! tokens need (OIDC providers' keys, DID resolution, the gateway's own
//! keys) and the signing key; the exchange costs no hop and no token ever
//! leaves the gateway for it.
//!
//! The rules (written once in [`attach_contract::delegation`]):
//! - a subject token nobody acts through yet is delegated to the actor
//!   (if its `may_act` allows it, RFC 8693 section 4.4);
//! - a delegated subject token may be exchanged only by its current actor
//!   (the actor token must authenticate its outermost `act`), and keeps
//!   its chain: a stolen delegated token is useless to anyone else;
//! - the actor token is the actor's own credential, never a delegation;
//! - the audience is one the gateway knows (RFC 8693 section 2.1,
//!   RFC 8707), the gateway itself when none is named.
//!
//! Errors follow RFC 8693 section 2.2.2 and RFC 6749 section 5.2: a token
//! that is invalid or unacceptable by policy is `invalid_request`, an
//! unknown audience `invalid_target`, a wider scope `invalid_scope`.

use crate::config::{Config, Signing};
use crate::identity::Identity;
use crate::identity_tokens::{Grant, IdentityTokens};
use crate::reply::{self, LocalReply};
use crate::token;
use crate::token_cache::TokenCache;
use crate::verify::{self, KeyStore, Verdict};
use attach_contract::delegation::{
    self, GRANT_TYPE, ScopeError, TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_JWT,
};
use attach_contract::session::session_id;
use serde_json::{Value, json};

/// What the endpoint does with one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Exchange {
    /// The answer: the issued token, or an error.
    Reply(LocalReply),
    /// A token's issuer keys are not known yet: the host waits for them
    /// (or refetches them) as for any request, then asks again.
    Wait(KeyWait),
}

/// Why a token request waits, and for which issuer (by provider index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyWait {
    /// The issuer's keys are not loaded yet.
    Keys(usize),
    /// A token names a kid the issuer's current keys lack.
    Kid(usize),
}

/// The most body the endpoint reads: two tokens and a few short parameters.
pub fn max_body_bytes(cfg: &Config) -> usize {
    cfg.max_token_bytes.saturating_mul(2).saturating_add(4096)
}

/// Everything the exchange consults besides the request itself.
pub struct Context<'a> {
    pub cfg: &'a Config,
    pub signing: &'a Signing,
    pub keys: &'a dyn KeyStore,
    pub cache: &'a mut TokenCache,
    pub tokens: &'a mut IdentityTokens,
    /// The request's own `User-Agent`, for the session of a subject that
    /// has none yet.
    pub user_agent: &'a [u8],
    /// A refetch of unknown keys was already made for this request.
    pub refetched: bool,
    pub now: u64,
}

/// Answers a token request whose form body is `body`.
pub fn exchange(ctx: Context<'_>, body: &[u8]) -> Exchange {
    match issue(ctx, body) {
        Ok(reply) => Exchange::Reply(reply),
        Err(Failure::Wait(wait)) => Exchange::Wait(wait),
        Err(Failure::Refused(error, description)) => Exchange::Reply(refusal(error, description)),
    }
}

/// A refusal's RFC 6749 section 5.2 error code and fixed description.
enum Failure {
    Refused(&'static str, String),
    Wait(KeyWait),
}

fn refused(error: &'static str, description: impl Into<String>) -> Failure {
    Failure::Refused(error, description.into())
}

fn issue(ctx: Context<'_>, body: &[u8]) -> Result<LocalReply, Failure> {
    let form = Form::parse(body).map_err(|why| refused("invalid_request", why))?;
    match form.one("grant_type")? {
        Some(GRANT_TYPE) => {}
        Some(_) => return Err(refused("unsupported_grant_type", "only token exchange")),
        None => return Err(refused("invalid_request", "grant_type is required")),
    }
    let subject_token = token_param(&form, true)?;
    let actor_token = token_param(&form, false)?;
    let issued_type = match form.one("requested_token_type")? {
        None | Some(TOKEN_TYPE_ACCESS_TOKEN) => TOKEN_TYPE_ACCESS_TOKEN,
        Some(TOKEN_TYPE_JWT) => TOKEN_TYPE_JWT,
        Some(_) => {
            return Err(refused(
                "invalid_request",
                "requested_token_type is not one the gateway issues",
            ));
        }
    };
    let audience = audience(&form, ctx.signing)?;
    let requested_scope = form.one("scope")?;

    let Context {
        cfg,
        signing,
        keys,
        cache,
        tokens,
        user_agent,
        refetched,
        now,
    } = ctx;
    let mut check = |token: &str, which: &str| {
        let bearer = format!("Bearer {token}");
        let at = i64::try_from(now).unwrap_or(i64::MAX);
        match verify::verify(cfg, Some(&bearer), None, at, keys, cache, refetched) {
            Verdict::Allow(identity) => Ok(identity),
            Verdict::AwaitKeys { issuer } => Err(Failure::Wait(KeyWait::Keys(issuer))),
            Verdict::UnknownKid { issuer } => Err(Failure::Wait(KeyWait::Kid(issuer))),
            Verdict::KeysUnavailable => Err(refused(
                "temporarily_unavailable",
                "an identity provider cannot be reached; retry shortly",
            )),
            Verdict::Invalid(reason) => Err(refused(
                "invalid_request",
                format!("{which}: {}", reply::describe(reason)),
            )),
            Verdict::InsufficientScope(_) | Verdict::MissingToken => Err(refused(
                "invalid_request",
                format!("{which}: not accepted by the gateway"),
            )),
        }
    };
    let subject = check(subject_token, "subject_token")?;
    let actor = check(actor_token, "actor_token")?;
    if !actor.actors.is_empty() || actor.session.is_some() {
        return Err(refused(
            "invalid_request",
            "actor_token: must be the actor's own credential, not a token the gateway issued",
        ));
    }
    if actor.user == subject.user {
        return Err(refused(
            "invalid_request",
            "actor_token: names the subject itself",
        ));
    }
    let actors = match subject.actors.current() {
        Some(current) if current == actor.user => subject.actors.clone(),
        Some(_) => {
            return Err(refused(
                "invalid_request",
                "subject_token: delegated to another actor",
            ));
        }
        None if !delegation::may_act_allows(may_act(subject_token).as_ref(), &actor.user) => {
            return Err(refused(
                "invalid_request",
                "subject_token: its may_act does not name this actor",
            ));
        }
        None => subject
            .actors
            .delegate_to(&actor.user)
            .map_err(|e| refused("invalid_request", e.to_string()))?,
    };
    let scope = delegation::narrow_scope(subject.scope.as_deref(), requested_scope).map_err(
        |e| match e {
            ScopeError::Malformed => refused("invalid_scope", "scope is malformed"),
            ScopeError::Wider => refused("invalid_scope", "scope is wider than the subject's"),
        },
    )?;
    let subject_exp = u64::try_from(subject.exp).unwrap_or_default();
    let exp = delegation::lifetime_end(now, subject_exp, signing.exchange_lifetime_secs)
        .ok_or_else(|| refused("invalid_request", "subject_token: token expired"))?;
    let session = subject
        .session
        .clone()
        .unwrap_or_else(|| session_id(&subject.user, user_agent));
    let delegated = Identity { actors, ..subject };
    let token = tokens.sign(
        signing,
        Grant {
            identity: &delegated,
            session: &session,
            audience,
            scope: scope.clone(),
            exp,
        },
        now,
    );
    let mut answer = serde_json::Map::new();
    answer.insert("access_token".into(), Value::String(token));
    answer.insert("issued_token_type".into(), issued_type.into());
    answer.insert("token_type".into(), "Bearer".into());
    answer.insert("expires_in".into(), exp.saturating_sub(now).into());
    if let Some(scope) = scope {
        answer.insert("scope".into(), Value::String(scope));
    }
    Ok(reply::token_response(200, answer.into()))
}

/// A required token parameter and its type (RFC 8693 section 2.1: the
/// type is required with each token).
fn token_param(form: &Form, subject: bool) -> Result<&str, Failure> {
    let (name, type_name, missing, missing_type, bad_type) = if subject {
        (
            "subject_token",
            "subject_token_type",
            "subject_token is required",
            "subject_token_type is required",
            "subject_token_type must be a JWT or an access token",
        )
    } else {
        (
            "actor_token",
            "actor_token_type",
            "actor_token is required",
            "actor_token_type is required",
            "actor_token_type must be a JWT or an access token",
        )
    };
    let token = form
        .one(name)?
        .ok_or_else(|| refused("invalid_request", missing))?;
    match form.one(type_name)? {
        Some(TOKEN_TYPE_JWT | TOKEN_TYPE_ACCESS_TOKEN) => Ok(token),
        Some(_) => Err(refused("invalid_request", bad_type)),
        None => Err(refused("invalid_request", missing_type)),
    }
}

/// The one audience the token is for: `audience` or `resource` (RFC 8707),
/// the same when both are given, the gateway itself when neither is.
fn audience<'f>(form: &'f Form, signing: &'f Signing) -> Result<&'f str, Failure> {
    let named: Vec<&str> = form.all("audience").chain(form.all("resource")).collect();
    let target = match named.split_first() {
        None => return Ok(&signing.issuer),
        Some((first, rest)) if rest.iter().all(|other| other == first) => *first,
        Some(_) => {
            return Err(refused(
                "invalid_target",
                "a token is issued for one audience",
            ));
        }
    };
    if !signing.knows_audience(target) {
        return Err(refused(
            "invalid_target",
            "the audience is not one the gateway knows",
        ));
    }
    Ok(target)
}

/// The subject token's `may_act` claim: the token verified already, so
/// only its payload is read.
fn may_act(token: &str) -> Option<Value> {
    token::payload(token)?.get_mut("may_act").map(Value::take)
}

/// The answer when a token's keys stayed unknown after the wait: its
/// issuer is unreachable, or the key it names does not exist.
pub fn unresolved(wait: KeyWait) -> LocalReply {
    match wait {
        KeyWait::Kid(_) => refusal(
            "invalid_request",
            "a token's signature could not be verified".into(),
        ),
        KeyWait::Keys(_) => refusal(
            "temporarily_unavailable",
            "an identity provider cannot be reached; retry shortly".into(),
        ),
    }
}

/// The answer to a token request made with another method than POST
/// (RFC 6749 section 3.2).
pub fn post_only() -> LocalReply {
    let mut reply = refusal("invalid_request", "the token endpoint takes POST".into());
    reply.status = 405;
    reply.headers.push(("allow", "POST".into()));
    reply
}

/// The answer to a token request whose body is larger than
/// [`max_body_bytes`].
pub fn too_large() -> LocalReply {
    refusal("invalid_request", "the request body is too large".into())
}

fn refusal(error: &'static str, description: String) -> LocalReply {
    let status = if error == "temporarily_unavailable" {
        503
    } else {
        400
    };
    reply::token_response(
        status,
        json!({"error": error, "error_description": description}),
    )
}

/// An `application/x-www-form-urlencoded` body (the HTML form encoding
/// RFC 6749 appendix B names): decoded pairs.
struct Form(Vec<(String, String)>);

impl Form {
    fn parse(body: &[u8]) -> Result<Self, &'static str> {
        let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8")?;
        let mut pairs = Vec::new();
        for pair in text.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            pairs.push((decode(name)?, decode(value)?));
        }
        Ok(Form(pairs))
    }

    fn all<'f>(&'f self, name: &'f str) -> impl Iterator<Item = &'f str> + 'f {
        self.0
            .iter()
            .filter(move |(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// A parameter that may appear once (RFC 6749 section 3.2); an empty
    /// value counts as absent.
    fn one<'f>(&'f self, name: &'f str) -> Result<Option<&'f str>, Failure> {
        let mut values = self.all(name);
        let first = values.next();
        if values.next().is_some() {
            return Err(refused(
                "invalid_request",
                "a parameter is given more than once",
            ));
        }
        Ok(first)
    }
}

/// Percent-decoding with `+` as a space.
fn decode(text: &str) -> Result<String, &'static str> {
    const BAD: &str = "the body is not application/x-www-form-urlencoded";
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.bytes();
    while let Some(b) = rest.next() {
        bytes.push(match b {
            b'+' => b' ',
            b'%' => {
                let hex = |d: Option<u8>| d.and_then(|d| (d as char).to_digit(16));
                let (Some(hi), Some(lo)) = (hex(rest.next()), hex(rest.next())) else {
                    return Err(BAD);
                };
                u8::try_from(hi * 16 + lo).map_err(|_| BAD)?
            }
            b => b,
        });
    }
    String::from_utf8(bytes).map_err(|_| BAD)
}

#[cfg(test)]
mod tests;
