//! The registered agents: `A2A_AGENTS` or the `A2A_CONFIG` file.
//!
//! `A2A_AGENTS` is a comma-separated list of `name=url` entries, each optionally
//! followed by `;key=value` options:
//!
//! ```text
//! planner=http://127.0.0.1:8100;did=did:key:z6Mk...,coder=http://127.0.0.1:8101;kind=http;timeout=30
//! ```
//!
//! Options: `kind` (`a2a`, the default: the agent speaks A2A JSON-RPC; `http`: POST
//! the task input as JSON, the JSON reply is the result), `timeout` (duration,
//! default 30 s), `did` (the agent's own DID: each task handed to it
//! carries an identity token for that DID and a token delegated to it, see
//! [`crate::a2a::handoff`], and never the caller's bearer token),
//! `forward_bearer` (`true`/`false`, default false; a legacy option that
//! passes the caller's own `Authorization` header on, so that the agent
//! holds a credential good wherever the caller's is; not with `did`), `protocol` (`1.0`, the default, or `0.3`:
//! the A2A version the agent speaks), `extended_card` (the path of a JSON
//! file with the agent's extended card, read and checked at start-up, see
//! [`crate::a2a::extended_card`]; without it the agent has none; in the
//! list form the path cannot hold `,` or `;`, which separate entries and
//! options). Agent names are 1-64 letters, digits,
//! `-`, `_` or `.`, but not `.` or `..` (they become a segment of the
//! agents' public paths). The syntax and the name rule are the contract's
//! ([`attach_contract::agents`]), which the launcher reads too; here the
//! options get their meaning, and the URLs must be HTTP.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use attach_contract::agents;
use attach_contract::delegation::ActorChain;

use super::error::ConfigError;
use super::units::parse_duration;
use super::url::is_http_url;
use crate::a2a::ProtocolVersion;
use crate::a2a::extended_card::ExtendedCard;

pub const DEFAULT_AGENT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentKind {
    /// Speaks A2A JSON-RPC.
    A2a,
    /// Plain JSON over HTTP POST.
    Http,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentConfig {
    pub name: String,
    pub url: String,
    pub kind: AgentKind,
    pub timeout: Duration,
    pub forward_bearer: bool,
    pub protocol: ProtocolVersion,
    /// What signed-in callers see beyond the public card; shared, since
    /// every forwarded task holds a copy of its agent.
    pub extended_card: Option<Arc<ExtendedCard>>,
    /// The agent's DID, which the tasks handed to it are delegated to.
    pub did: Option<String>,
}

/// The agents of a list or a file, in their contract syntax.
fn agents_from(
    variable: &'static str,
    entries: Vec<agents::Entry>,
) -> Result<BTreeMap<String, AgentConfig>, ConfigError> {
    let fail = |reason| ConfigError::new(variable, reason);
    let mut registered = BTreeMap::new();
    for entry in entries {
        let mut agent = AgentConfig {
            name: entry.name,
            url: entry.url.trim_end_matches('/').to_string(),
            kind: AgentKind::A2a,
            timeout: DEFAULT_AGENT_TIMEOUT,
            forward_bearer: false,
            protocol: ProtocolVersion::V1_0,
            extended_card: None,
            did: None,
        };
        for (key, value) in &entry.options {
            apply_option(&mut agent, key, value).map_err(fail)?;
        }
        if agent.did.is_some() && agent.forward_bearer {
            return Err(fail(format!(
                "{:?} has a did, which gets a delegated token: forward_bearer cannot be set with it",
                agent.name
            )));
        }
        if !is_http_url(&agent.url) {
            return Err(fail(format!(
                "URL of {:?} must start with http:// or https://",
                agent.name
            )));
        }
        registered.insert(agent.name.clone(), agent);
    }
    Ok(registered)
}

pub(super) fn parse_agent_list(list: &str) -> Result<BTreeMap<String, AgentConfig>, ConfigError> {
    let entries = agents::parse_list(list)
        .map_err(|e| ConfigError::new(agents::LIST_VARIABLE, e.to_string()))?;
    agents_from(agents::LIST_VARIABLE, entries)
}

fn apply_option(agent: &mut AgentConfig, key: &str, value: &str) -> Result<(), String> {
    let name = &agent.name;
    match key {
        "kind" => {
            agent.kind = match value {
                "a2a" => AgentKind::A2a,
                "http" => AgentKind::Http,
                _ => {
                    return Err(format!(
                        "kind of {name:?} must be a2a or http, not {value:?}"
                    ));
                }
            }
        }
        "timeout" => {
            agent.timeout = parse_duration(value)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    format!("timeout of {name:?} must be a duration like 30 or 2m, not {value:?}")
                })?
        }
        "forward_bearer" => {
            agent.forward_bearer = match value {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => {
                    return Err(format!(
                        "forward_bearer of {name:?} must be true or false, not {value:?}"
                    ));
                }
            }
        }
        "protocol" => {
            agent.protocol = ProtocolVersion::parse(value)
                .ok_or_else(|| format!("protocol of {name:?} must be 1.0 or 0.3, not {value:?}"))?
        }
        "extended_card" => {
            if value.is_empty() {
                return Err(format!("extended_card of {name:?} must name a JSON file"));
            }
            let card = ExtendedCard::read(Path::new(value))
                .map_err(|reason| format!("extended_card of {name:?}: {reason}"))?;
            agent.extended_card = Some(Arc::new(card));
        }
        "did" => {
            let usable =
                value.starts_with("did:") && ActorChain::default().delegate_to(value).is_ok();
            if !usable {
                return Err(format!(
                    "did of {name:?} must be a DID (did:method:id, no comma or white space), not {value:?}"
                ));
            }
            agent.did = Some(value.to_string());
        }
        _ => {
            return Err(format!(
                "unknown option {key:?} for {name:?} (kind, timeout, forward_bearer, protocol, extended_card, did)"
            ));
        }
    }
    Ok(())
}

pub(super) fn parse_agent_file(path: &Path) -> Result<BTreeMap<String, AgentConfig>, ConfigError> {
    const VAR: &str = agents::FILE_VARIABLE;
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(VAR, format!("cannot read {}: {e}", path.display())))?;
    let entries = agents::parse_file(&text).map_err(|e| {
        let reason = match e {
            agents::SyntaxError::NotTheFileShape(shape) => format!("{}: {shape}", path.display()),
            other => other.to_string(),
        };
        ConfigError::new(VAR, reason)
    })?;
    agents_from(VAR, entries)
}
