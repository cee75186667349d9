//! Who may call which tool: the server's and the matching rule's scopes,
//! and the rule's allow-lists of users and actors.

use super::config::{Server, ToolRule, Unmatched};
use attach_contract::delegation::ActorChain;

/// The caller, as verified.
pub struct Caller<'a> {
    pub user: &'a str,
    pub scopes: &'a [&'a str],
    pub actors: &'a ActorChain,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// The token lacks a scope: every scope the request needs, so that the
    /// client asks for all of them at once (MCP 2026-07-28,
    /// basic/authorization, "Runtime Insufficient Scope Errors").
    NeedsScopes(Vec<String>),
    /// No scope would help: the rule does not admit this caller.
    Forbidden,
}

/// The scopes a request for `tool` (none: any other request) needs on
/// `server`: the server's, then the matching rule's, each once.
pub fn needed_scopes(server: &Server, tool: Option<&str>) -> Vec<String> {
    let mut needed = server.scopes.clone();
    if let Some(rule) = tool.and_then(|t| rule_for(server, t)) {
        for scope in &rule.scopes {
            if !needed.contains(scope) {
                needed.push(scope.clone());
            }
        }
    }
    needed
}

fn rule_for<'a>(server: &'a Server, tool: &str) -> Option<&'a ToolRule> {
    server.tools.iter().find(|r| r.tool.matches(tool))
}

/// Whether `caller` may make a request for `tool` (none: a request that
/// calls no tool) to `server`.
pub fn decide(server: &Server, caller: &Caller<'_>, tool: Option<&str>) -> Decision {
    let needed = needed_scopes(server, tool);
    if needed.iter().any(|s| !caller.scopes.contains(&s.as_str())) {
        return Decision::NeedsScopes(needed);
    }
    match tool {
        None => Decision::Allow,
        Some(tool) => match rule_for(server, tool) {
            Some(rule) if admits(rule, caller) => Decision::Allow,
            Some(_) => Decision::Forbidden,
            None => match server.default {
                Unmatched::Allow => Decision::Allow,
                Unmatched::Deny => Decision::Forbidden,
            },
        },
    }
}

/// Whether `caller` may call the tools `server` lists, as far as the
/// rules tell without a request: what `tools/list` shows when it lists
/// only what the caller may call.
pub fn may_call(server: &Server, caller: &Caller<'_>, tool: &str) -> bool {
    decide(server, caller, Some(tool)) == Decision::Allow
}

fn admits(rule: &ToolRule, caller: &Caller<'_>) -> bool {
    let delegated = !caller.actors.is_empty();
    if delegated && !rule.delegated {
        return false;
    }
    if let Some(users) = &rule.users {
        if !users.iter().any(|p| p.matches(caller.user)) {
            return false;
        }
    }
    match &rule.actors {
        Some(actors) if delegated => caller
            .actors
            .actors()
            .iter()
            .all(|a| actors.iter().any(|p| p.matches(a))),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::config::McpConfig;
    use serde_json::json;

    fn server(section: serde_json::Value) -> Server {
        let mut mcp = McpConfig::from_value(&json!({"servers": [section]}))
            .unwrap()
            .validate(Some("https://gw"))
            .unwrap();
        mcp.servers.remove(0)
    }

    fn chain(actors: &[&str]) -> ActorChain {
        actors
            .iter()
            .rev()
            .fold(ActorChain::default(), |c, a| c.delegate_to(a).unwrap())
    }

    fn decision(s: &Server, user: &str, scopes: &[&str], actors: &[&str], tool: &str) -> Decision {
        let actors = chain(actors);
        let caller = Caller {
            user,
            scopes,
            actors: &actors,
        };
        decide(s, &caller, Some(tool))
    }

    #[test]
    fn scopes_of_the_server_and_the_rule_are_asked_for_together() {
        let s = server(json!({"name": "t", "scopes": ["t:use"],
            "tools": [{"match": "admin_*", "scopes": ["t:admin"]}]}));
        assert_eq!(
            decision(&s, "alice", &["t:use"], &[], "echo"),
            Decision::Allow
        );
        assert_eq!(
            decision(&s, "alice", &["t:use"], &[], "admin_rm"),
            Decision::NeedsScopes(vec!["t:use".into(), "t:admin".into()])
        );
        assert_eq!(
            decision(&s, "alice", &[], &[], "echo"),
            Decision::NeedsScopes(vec!["t:use".into()])
        );
        assert_eq!(
            decision(&s, "alice", &["t:admin", "t:use"], &[], "admin_rm"),
            Decision::Allow
        );
        assert_eq!(needed_scopes(&s, None), ["t:use"]);
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let s = server(json!({"name": "t", "tools": [
            {"match": "echo", "users": ["alice"]},
            {"match": "e*", "users": ["bob"]}]}));
        assert_eq!(decision(&s, "alice", &[], &[], "echo"), Decision::Allow);
        assert_eq!(decision(&s, "bob", &[], &[], "echo"), Decision::Forbidden);
        assert_eq!(decision(&s, "bob", &[], &[], "else"), Decision::Allow);
        assert_eq!(decision(&s, "carol", &[], &[], "other"), Decision::Allow);
    }

    #[test]
    fn the_default_decides_for_unmatched_tools() {
        let s = server(json!({"name": "t", "default": "deny",
            "tools": [{"match": "echo"}]}));
        assert_eq!(decision(&s, "alice", &[], &[], "echo"), Decision::Allow);
        assert_eq!(decision(&s, "alice", &[], &[], "rm"), Decision::Forbidden);
        let caller = Caller {
            user: "alice",
            scopes: &[],
            actors: &ActorChain::default(),
        };
        assert!(may_call(&s, &caller, "echo") && !may_call(&s, &caller, "rm"));
    }

    #[test]
    fn user_patterns() {
        let s = server(json!({"name": "t", "tools": [
            {"match": "sign", "users": ["did:key:*", "https://idp#ops-*"]}]}));
        assert_eq!(
            decision(&s, "did:key:z6Mk1", &[], &[], "sign"),
            Decision::Allow
        );
        assert_eq!(
            decision(&s, "https://idp#ops-1", &[], &[], "sign"),
            Decision::Allow
        );
        assert_eq!(
            decision(&s, "https://idp#dev-1", &[], &[], "sign"),
            Decision::Forbidden
        );
    }

    #[test]
    fn actor_rules_apply_to_delegated_calls() {
        let s = server(json!({"name": "t", "tools": [
            {"match": "write", "actors": ["did:key:zPlanner", "did:key:zCoder"]},
            {"match": "pay", "delegated": false}]}));
        assert_eq!(decision(&s, "alice", &[], &[], "write"), Decision::Allow);
        assert_eq!(
            decision(
                &s,
                "alice",
                &[],
                &["did:key:zCoder", "did:key:zPlanner"],
                "write"
            ),
            Decision::Allow
        );
        assert_eq!(
            decision(
                &s,
                "alice",
                &[],
                &["did:key:zCoder", "did:key:zEvil"],
                "write"
            ),
            Decision::Forbidden
        );
        assert_eq!(decision(&s, "alice", &[], &[], "pay"), Decision::Allow);
        assert_eq!(
            decision(&s, "alice", &[], &["did:key:zPlanner"], "pay"),
            Decision::Forbidden
        );
    }
}
