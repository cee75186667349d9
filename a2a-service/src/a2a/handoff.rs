//! Hand-offs to agents registered with a DID (`did=` in the registry): the
//! agent gets tokens of its own instead of the caller's credentials.
//!
//! Each request the service sends such an agent for a task (a send, a
//! stream, a poll of the agent's task) carries two tokens the service signs
//! as the gateway ([`GatewayIssuer`]), freshly for that request:
//!
//! - [`IDENTITY_HEADER`]: who the user is, for the agent to check: `aud` the
//!   agent's DID, `sub` the user, `sid` the session, `idp` and `scope` the
//!   caller's, `act` the caller's chain (who asked the service; absent when
//!   the user asked), [`identity_token::LIFETIME_SECS`] long.
//! - [`DELEGATION_HEADER`]: the agent's bearer token for calling the gateway
//!   on the user's behalf: `aud` the gateway's issuer, `sub` the user, `act`
//!   the caller's chain with the agent as its new current actor
//!   (RFC 8693 section 4.1: `{"sub": agent, "act": <caller's chain>}`),
//!   `scope` the caller's, [`MAX_LIFETIME_SECS`] long. The service knows only
//!   the caller's identity token, not the lifetime of the token the caller
//!   first showed the gateway, so this cap is its own: the hand-off outlives
//!   the caller's request by five minutes at most, whatever the user's token.
//!
//! No `Authorization` with the caller's token goes along, and no assertion.
//! The chain is checked before the task exists ([`Handoff::for_task`]): an
//! agent already in the caller's chain (a loop) or a chain past
//! [`attach_contract::delegation::MAX_DEPTH`] is refused, and nothing is
//! written or sent.

use attach_contract::delegation::{ActorChain, MAX_LIFETIME_SECS};
use attach_contract::headers::{
    ACTOR_HEADER, DELEGATION_HEADER, IDENTITY_HEADER, SESSION_HEADER, USER_HEADER,
};
use attach_contract::identity_token::{self, IdentityClaims};
use reqwest::header::{HeaderMap, HeaderValue};

use crate::auth::{Caller, GatewayIssuer};
use crate::config::AgentConfig;
use crate::error::{AppError, AppResult};

/// A task handed to an agent with a DID, by one caller.
#[derive(Clone, Debug)]
pub struct Handoff {
    issuer: GatewayIssuer,
    did: String,
    /// The caller's chain with the agent first.
    chain: ActorChain,
}

impl Handoff {
    /// The hand-off of a task `caller` gives `agent`: `None` for an agent
    /// without a DID; refused when the chain would break its rules.
    pub fn for_task(
        issuer: Option<&GatewayIssuer>,
        caller: &Caller,
        agent: &AgentConfig,
    ) -> AppResult<Option<Self>> {
        let Some(did) = &agent.did else {
            return Ok(None);
        };
        // The configuration refuses a DID without the gateway's keys.
        let issuer = issuer
            .ok_or_else(|| AppError::Internal("the gateway's signing keys are missing".into()))?;
        if caller.idp.is_none() {
            return Err(AppError::Unauthorized(
                "a hand-off needs the caller's identity token".into(),
            ));
        }
        let chain =
            caller
                .actors
                .delegate_to(did)
                .map_err(|refusal| AppError::DelegationRefused {
                    agent: agent.name.clone(),
                    refusal,
                })?;
        Ok(Some(Handoff {
            issuer: issuer.clone(),
            did: did.clone(),
            chain,
        }))
    }

    /// The DID of the agent the task is handed to.
    pub fn did(&self) -> &str {
        &self.did
    }

    /// Who acts once the agent has the task, current actor (the agent) first.
    pub fn chain(&self) -> &ActorChain {
        &self.chain
    }

    /// The identity headers of one request to the agent, signed at `now`.
    pub fn headers(&self, caller: &Caller, now: u64) -> HeaderMap {
        let claims = |aud: &str, lifetime: u64, act: Option<serde_json::Value>| IdentityClaims {
            iss: self.issuer.issuer().to_string(),
            sub: caller.user.clone(),
            aud: aud.to_string(),
            iat: now,
            exp: now.saturating_add(lifetime),
            jti: uuid::Uuid::new_v4().to_string(),
            sid: caller.session.clone(),
            idp: caller.idp.clone().unwrap_or_default(),
            scope: caller.scope.clone(),
            act,
        };
        let identity = self.issuer.sign(&claims(
            &self.did,
            identity_token::LIFETIME_SECS,
            caller.actors.to_act(),
        ));
        let delegation = self.issuer.sign(&claims(
            self.issuer.issuer(),
            MAX_LIFETIME_SECS,
            self.chain.to_act(),
        ));
        let mut headers = HeaderMap::new();
        let asked_by = caller.actors.header_value();
        for (name, value) in [
            (USER_HEADER, caller.user.as_str()),
            (SESSION_HEADER, caller.session.as_str()),
            (IDENTITY_HEADER, identity.as_str()),
            (DELEGATION_HEADER, delegation.as_str()),
            (ACTOR_HEADER, asked_by.as_str()),
        ] {
            if let Ok(v) = HeaderValue::from_str(value) {
                if !value.is_empty() {
                    headers.insert(name, v);
                }
            }
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::a2a::ProtocolVersion;
    use crate::config::AgentKind;
    use attach_contract::delegation::{ChainError, MAX_DEPTH};
    use attach_contract::gateway_keys::{KeySet, SigningKeys, new_key};
    use std::sync::Arc;
    use std::time::Duration;

    const ISS: &str = "https://gw.example";
    const NOW: u64 = 1_700_000_000;
    const PLANNER: &str = "did:key:z6MkPlanner";
    const CODER: &str = "did:key:z6MkCoder";

    fn issuer() -> GatewayIssuer {
        let keys = SigningKeys::from_set(&KeySet {
            keys: vec![new_key([3; 32], 0)],
        })
        .unwrap();
        GatewayIssuer::new(Arc::new(keys), ISS)
    }

    fn agent(did: Option<&str>) -> AgentConfig {
        AgentConfig {
            name: "coder".into(),
            url: "http://127.0.0.1:9".into(),
            kind: AgentKind::A2a,
            timeout: Duration::from_secs(1),
            forward_bearer: false,
            protocol: ProtocolVersion::V1_0,
            extended_card: None,
            did: did.map(str::to_string),
        }
    }

    fn caller(actors: &[&str]) -> Caller {
        Caller {
            user: "alice".into(),
            session: "s1".into(),
            actors: actors
                .iter()
                .rev()
                .fold(ActorChain::default(), |c, a| c.delegate_to(a).unwrap()),
            scope: Some("a2a read".into()),
            idp: Some("https://idp.example".into()),
            authorization: Some("Bearer the-users-token".into()),
        }
    }

    fn claims(headers: &HeaderMap, name: &str, aud: &str) -> IdentityClaims {
        let token = headers[name].to_str().unwrap();
        issuer().verify(token, aud, NOW + 1).unwrap()
    }

    #[test]
    fn agents_without_a_did_get_no_handoff() {
        let handoff = Handoff::for_task(Some(&issuer()), &caller(&[]), &agent(None)).unwrap();
        assert!(handoff.is_none());
    }

    /// RFC 8693 section 4.1: the agent becomes the current actor, the
    /// caller's chain nested under it.
    #[test]
    fn the_agent_gets_an_identity_for_its_did_and_a_token_delegated_to_it() {
        let who = caller(&[PLANNER]);
        let handoff = Handoff::for_task(Some(&issuer()), &who, &agent(Some(CODER)))
            .unwrap()
            .unwrap();
        assert_eq!(handoff.chain().actors(), [CODER, PLANNER]);
        let headers = handoff.headers(&who, NOW);

        let identity = claims(&headers, IDENTITY_HEADER, CODER);
        assert_eq!(
            (identity.sub.as_str(), identity.sid.as_str()),
            ("alice", "s1")
        );
        assert_eq!(identity.exp - identity.iat, identity_token::LIFETIME_SECS);
        assert_eq!(identity.idp, "https://idp.example");
        assert_eq!(identity.scope.as_deref(), Some("a2a read"));
        assert_eq!(identity.act, Some(serde_json::json!({"sub": PLANNER})));

        let delegated = claims(&headers, DELEGATION_HEADER, ISS);
        assert_eq!(delegated.sub, "alice");
        assert_eq!(
            delegated.act,
            Some(serde_json::json!({"sub": CODER, "act": {"sub": PLANNER}}))
        );
        assert_eq!(delegated.exp - delegated.iat, MAX_LIFETIME_SECS);
        assert_eq!(delegated.scope.as_deref(), Some("a2a read"));
        // Neither is good for the other's audience.
        let token = headers[DELEGATION_HEADER].to_str().unwrap();
        assert!(issuer().verify(token, CODER, NOW + 1).is_err());

        assert_eq!(headers[ACTOR_HEADER], PLANNER);
        assert_eq!(headers[USER_HEADER], "alice");
        for name in ["authorization", "x-attach-assertion"] {
            assert!(headers.get(name).is_none(), "{name}");
        }
        let all: Vec<&str> = headers.values().map(|v| v.to_str().unwrap()).collect();
        assert!(!all.iter().any(|v| v.contains("the-users-token")));
    }

    #[test]
    fn a_user_acting_alone_hands_off_with_the_agent_as_only_actor() {
        let who = caller(&[]);
        let handoff = Handoff::for_task(Some(&issuer()), &who, &agent(Some(PLANNER)))
            .unwrap()
            .unwrap();
        let headers = handoff.headers(&who, NOW);
        assert_eq!(claims(&headers, IDENTITY_HEADER, PLANNER).act, None);
        assert_eq!(
            claims(&headers, DELEGATION_HEADER, ISS).act,
            Some(serde_json::json!({"sub": PLANNER}))
        );
        assert!(headers.get(ACTOR_HEADER).is_none());
    }

    #[test]
    fn loops_and_chains_too_deep_are_refused() {
        let looped = Handoff::for_task(
            Some(&issuer()),
            &caller(&[CODER, PLANNER]),
            &agent(Some(PLANNER)),
        );
        assert!(matches!(
            looped,
            Err(AppError::DelegationRefused {
                refusal: ChainError::Repeated,
                ..
            })
        ));
        let full: Vec<String> = (0..MAX_DEPTH).map(|i| format!("did:key:a{i}")).collect();
        let full: Vec<&str> = full.iter().map(String::as_str).collect();
        let deep = Handoff::for_task(Some(&issuer()), &caller(&full), &agent(Some(CODER)));
        assert!(matches!(
            deep,
            Err(AppError::DelegationRefused {
                refusal: ChainError::TooDeep,
                ..
            })
        ));
    }

    #[test]
    fn a_caller_vouched_for_by_the_assertion_alone_cannot_hand_off() {
        let mut who = caller(&[]);
        who.idp = None;
        let refused = Handoff::for_task(Some(&issuer()), &who, &agent(Some(CODER)));
        assert!(matches!(refused, Err(AppError::Unauthorized(_))));
    }
}
