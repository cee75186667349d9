//! Delegation: who acts for the user, and the rules every hop that extends
//! or narrows that delegation follows (RFC 8693).
//!
//! A delegated token keeps the user as `sub` and names the acting parties
//! in nested `act` claims (RFC 8693 section 4.1): the outermost `act` is the
//! current actor, each nested one the actor before it. [`ActorChain`] holds
//! them in that order, current actor first, and is what the filter stamps
//! in [`crate::headers::ACTOR_HEADER`] (actors joined by `", "`), what the
//! identity token carries as `act`, and what the companion service records
//! with tasks and memory events.
//!
//! The token endpoint (the filter's) and the companion service's hand-offs
//! extend chains with [`ActorChain::delegate_to`]; both go through the same
//! checks: at most [`MAX_DEPTH`] actors, none twice, each a plain
//! identifier (a DID or a client id: no comma, no white space).

use serde_json::Value;

/// `grant_type` of a token exchange (RFC 8693 section 2.1).
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// Token type of a JWT (RFC 8693 section 3).
pub const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
/// Token type of an access token (RFC 8693 section 3); what the gateway issues.
pub const TOKEN_TYPE_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
/// The most actors one chain may name.
pub const MAX_DEPTH: usize = 4;
/// The longest a delegated token may live, whatever its subject's lifetime.
pub const MAX_LIFETIME_SECS: u64 = 300;
/// The longest actor identifier accepted.
pub const MAX_ACTOR_BYTES: usize = 512;
/// Between two actors in [`crate::headers::ACTOR_HEADER`].
pub const ACTOR_SEPARATOR: &str = ", ";
/// The member of an A2A message's `metadata` that carries the chain a task
/// was handed with: the actors as a JSON array of strings, current actor
/// first. An extension, named after the actor-chain proposal for A2A
/// (a2aproject/A2A issue 2028); A2A 1.0 itself carries no principal.
pub const A2A_METADATA_MEMBER: &str = "actorChain";

/// Why a chain is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainError {
    /// An `act` that is not `{"sub": "...", "act": {...}}`, or an actor
    /// that is empty, too long, or holds anything but visible ASCII other
    /// than a comma.
    Malformed,
    /// More than [`MAX_DEPTH`] actors.
    TooDeep,
    /// The same actor twice: a hand-off loop.
    Repeated,
}

impl std::fmt::Display for ChainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ChainError::Malformed => "the actor chain is malformed",
            ChainError::TooDeep => "the actor chain would be too long",
            ChainError::Repeated => "the actor chain would name an actor twice",
        })
    }
}

/// The parties acting for a user, current actor first; empty when the user
/// acts alone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ActorChain(Vec<String>);

impl ActorChain {
    /// The chain of a token's `act` claim (absent: nobody acts for the user).
    pub fn from_act(act: Option<&Value>) -> Result<Self, ChainError> {
        let mut actors = Vec::new();
        let mut next = act;
        while let Some(act) = next {
            if actors.len() == MAX_DEPTH {
                return Err(ChainError::TooDeep);
            }
            let object = act.as_object().ok_or(ChainError::Malformed)?;
            let sub = object
                .get("sub")
                .and_then(Value::as_str)
                .ok_or(ChainError::Malformed)?;
            actors.push(sub.to_string());
            next = object.get("act");
        }
        Self::checked(actors)
    }

    /// The chain written in [`crate::headers::ACTOR_HEADER`]'s format.
    pub fn from_header(value: &str) -> Result<Self, ChainError> {
        let actors = value
            .split(',')
            .map(|actor| actor.trim_matches(' ').to_string())
            .collect();
        Self::checked(actors)
    }

    fn checked(actors: Vec<String>) -> Result<Self, ChainError> {
        if actors.len() > MAX_DEPTH {
            return Err(ChainError::TooDeep);
        }
        if !actors.iter().all(|a| valid_actor(a)) {
            return Err(ChainError::Malformed);
        }
        for (i, actor) in actors.iter().enumerate() {
            if actors.iter().skip(i + 1).any(|other| other == actor) {
                return Err(ChainError::Repeated);
            }
        }
        Ok(Self(actors))
    }

    /// The nested `act` claim of this chain; `None` when it is empty.
    pub fn to_act(&self) -> Option<Value> {
        self.0.iter().rev().fold(None, |inner, actor| {
            let mut act = serde_json::Map::new();
            act.insert("sub".into(), Value::String(actor.clone()));
            if let Some(inner) = inner {
                act.insert("act".into(), inner);
            }
            Some(Value::Object(act))
        })
    }

    /// The chain with `actor` as its new current actor.
    pub fn delegate_to(&self, actor: &str) -> Result<Self, ChainError> {
        let mut actors = Vec::with_capacity(self.0.len() + 1);
        actors.push(actor.to_string());
        actors.extend(self.0.iter().cloned());
        Self::checked(actors)
    }

    /// The [`crate::headers::ACTOR_HEADER`] value: the actors, current first.
    pub fn header_value(&self) -> String {
        self.0.join(ACTOR_SEPARATOR)
    }

    /// The party acting now, if any.
    pub fn current(&self) -> Option<&str> {
        self.0.first().map(String::as_str)
    }

    pub fn actors(&self) -> &[String] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Visible ASCII but the comma: what DIDs and client ids are made of, and
/// what keeps the header form unambiguous.
fn valid_actor(actor: &str) -> bool {
    !actor.is_empty()
        && actor.len() <= MAX_ACTOR_BYTES
        && actor
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// Whether a subject token's `may_act` claim (RFC 8693 section 4.4) lets
/// `actor` act for its subject: an absent claim restricts nothing; a claim
/// names the one party allowed by its `sub`, and anything else allows
/// nobody.
pub fn may_act_allows(may_act: Option<&Value>, actor: &str) -> bool {
    match may_act {
        None => true,
        Some(claim) => claim.get("sub").and_then(Value::as_str) == Some(actor),
    }
}

/// Why a requested scope is refused (RFC 6749 section 5.2 `invalid_scope`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScopeError {
    /// Not a list of scope tokens (RFC 6749 section 3.3).
    Malformed,
    /// A scope the subject does not hold.
    Wider,
}

/// The scopes of a token issued from a subject holding `subject` when
/// `requested` is asked for: the subject's own when nothing is asked, else
/// exactly the requested ones, each of which the subject must hold.
pub fn narrow_scope(
    subject: Option<&str>,
    requested: Option<&str>,
) -> Result<Option<String>, ScopeError> {
    let Some(requested) = requested else {
        return Ok(subject.map(str::to_string));
    };
    let held = subject.unwrap_or_default();
    let mut granted = String::new();
    for scope in requested.split(' ') {
        if scope.is_empty() || !scope.bytes().all(scope_byte) {
            return Err(ScopeError::Malformed);
        }
        if !held.split(' ').any(|h| h == scope) {
            return Err(ScopeError::Wider);
        }
        if !granted.split(' ').any(|g| g == scope) {
            if !granted.is_empty() {
                granted.push(' ');
            }
            granted.push_str(scope);
        }
    }
    Ok(Some(granted))
}

/// RFC 6749 section 3.3: `%x21 / %x23-5B / %x5D-7E`.
fn scope_byte(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x5b | 0x5d..=0x7e)
}

/// When a token delegated at `now` from a subject expiring at `subject_exp`
/// ends: never after its subject, never more than `max_lifetime` from now;
/// `None` when the subject has already expired.
pub fn lifetime_end(now: u64, subject_exp: u64, max_lifetime: u64) -> Option<u64> {
    (subject_exp > now).then(|| subject_exp.min(now.saturating_add(max_lifetime)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chain(actors: &[&str]) -> ActorChain {
        ActorChain::checked(actors.iter().map(|a| a.to_string()).collect()).unwrap()
    }

    #[test]
    fn rfc_8693_section_4_1_nesting_current_actor_outermost() {
        let act = json!({"sub": "did:key:coder", "act": {"sub": "did:key:planner"}});
        let parsed = ActorChain::from_act(Some(&act)).unwrap();
        assert_eq!(parsed.actors(), ["did:key:coder", "did:key:planner"]);
        assert_eq!(parsed.current(), Some("did:key:coder"));
        assert_eq!(parsed.to_act(), Some(act));
        assert_eq!(parsed.header_value(), "did:key:coder, did:key:planner");
        assert_eq!(ActorChain::from_header(&parsed.header_value()), Ok(parsed));
    }

    #[test]
    fn no_act_is_an_empty_chain() {
        let empty = ActorChain::from_act(None).unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty.to_act(), None);
        assert_eq!(empty.current(), None);
    }

    #[test]
    fn delegation_puts_the_new_actor_first() {
        let planner = ActorChain::default()
            .delegate_to("did:key:planner")
            .unwrap();
        let coder = planner.delegate_to("did:key:coder").unwrap();
        assert_eq!(coder, chain(&["did:key:coder", "did:key:planner"]));
        assert_eq!(
            coder.to_act(),
            Some(json!({"sub": "did:key:coder", "act": {"sub": "did:key:planner"}}))
        );
    }

    #[test]
    fn a_loop_is_refused() {
        let back = chain(&["did:key:coder", "did:key:planner"]).delegate_to("did:key:planner");
        assert_eq!(back, Err(ChainError::Repeated));
        let act = json!({"sub": "a", "act": {"sub": "b", "act": {"sub": "a"}}});
        assert_eq!(ActorChain::from_act(Some(&act)), Err(ChainError::Repeated));
    }

    #[test]
    fn depth_is_capped_both_when_extending_and_when_reading() {
        let full = chain(&["d", "c", "b", "a"]);
        assert_eq!(full.actors().len(), MAX_DEPTH);
        assert_eq!(full.delegate_to("e"), Err(ChainError::TooDeep));
        let deep = json!({"sub": "e", "act": full.to_act()});
        assert_eq!(ActorChain::from_act(Some(&deep)), Err(ChainError::TooDeep));
        assert_eq!(
            ActorChain::from_header("a, b, c, d, e"),
            Err(ChainError::TooDeep)
        );
    }

    #[test]
    fn malformed_actors_are_refused() {
        for act in [
            json!("did:key:x"),
            json!({"sub": 7}),
            json!({"iss": "x"}),
            json!({"sub": "a", "act": "b"}),
            json!({"sub": ""}),
            json!({"sub": "a,b"}),
            json!({"sub": "a b"}),
            json!({"sub": "a\nb"}),
            json!({"sub": "x".repeat(MAX_ACTOR_BYTES + 1)}),
            json!({"sub": "did:key:é"}),
        ] {
            assert_eq!(
                ActorChain::from_act(Some(&act)),
                Err(ChainError::Malformed),
                "{act}"
            );
        }
        assert_eq!(
            ActorChain::default().delegate_to("two words"),
            Err(ChainError::Malformed)
        );
        assert_eq!(ActorChain::from_header(""), Err(ChainError::Malformed));
        assert_eq!(ActorChain::from_header("a,,b"), Err(ChainError::Malformed));
    }

    #[test]
    fn rfc_8693_section_4_4_may_act() {
        assert!(may_act_allows(None, "did:key:planner"));
        let claim = json!({"sub": "did:key:planner"});
        assert!(may_act_allows(Some(&claim), "did:key:planner"));
        assert!(!may_act_allows(Some(&claim), "did:key:coder"));
        assert!(!may_act_allows(
            Some(&json!("did:key:planner")),
            "did:key:planner"
        ));
    }

    #[test]
    fn scopes_only_narrow() {
        assert_eq!(
            narrow_scope(Some("read write"), None),
            Ok(Some("read write".into()))
        );
        assert_eq!(narrow_scope(None, None), Ok(None));
        assert_eq!(
            narrow_scope(Some("read write"), Some("read read")),
            Ok(Some("read".into()))
        );
        assert_eq!(
            narrow_scope(Some("read"), Some("read write")),
            Err(ScopeError::Wider)
        );
        assert_eq!(narrow_scope(None, Some("read")), Err(ScopeError::Wider));
        for bad in ["", "read  write", "a\"b", "a\\b", "é"] {
            assert_eq!(
                narrow_scope(Some("read"), Some(bad)),
                Err(ScopeError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn lifetime_never_exceeds_the_subject_or_the_cap() {
        assert_eq!(lifetime_end(1000, 5000, MAX_LIFETIME_SECS), Some(1300));
        assert_eq!(lifetime_end(1000, 1100, MAX_LIFETIME_SECS), Some(1100));
        assert_eq!(lifetime_end(1000, 1000, MAX_LIFETIME_SECS), None);
        assert_eq!(lifetime_end(1000, 10, MAX_LIFETIME_SECS), None);
    }
}
