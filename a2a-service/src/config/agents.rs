//! The registered agents: `A2A_AGENTS` or the `A2A_CONFIG` file.
//!
//! `A2A_AGENTS` is a comma-separated list of `name=url` entries, each optionally
//! followed by `;key=value` options:
//!
//! ```text
//! planner=http://127.0.0.1:8100,coder=http://127.0.0.1:8101;kind=http;timeout=30;forward_bearer=true
//! ```
//!
//! Options: `kind` (`a2a`, the default: the agent speaks A2A JSON-RPC; `http`: POST
//! the task input as JSON, the JSON reply is the result), `timeout` (duration,
//! default 30 s), `forward_bearer` (`true`/`false`, default false: pass the
//! caller's `Authorization` header on), `protocol` (`1.0`, the default, or `0.3`:
//! the A2A version the agent speaks).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::error::ConfigError;
use super::units::parse_duration;
use super::url::is_http_url;
use crate::a2a::ProtocolVersion;

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
}

fn valid_agent_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

pub(super) fn parse_agent_list(list: &str) -> Result<BTreeMap<String, AgentConfig>, ConfigError> {
    const VAR: &str = "A2A_AGENTS";
    let mut agents = BTreeMap::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let mut pieces = entry.split(';').map(str::trim);
        let head = pieces.next().unwrap_or_default();
        let (name, url) = head
            .split_once('=')
            .ok_or_else(|| ConfigError::new(VAR, format!("entry {entry:?} is not name=url")))?;
        let mut agent = AgentConfig {
            name: name.trim().to_string(),
            url: url.trim().trim_end_matches('/').to_string(),
            kind: AgentKind::A2a,
            timeout: DEFAULT_AGENT_TIMEOUT,
            forward_bearer: false,
            protocol: ProtocolVersion::V1_0,
        };
        for option in pieces.filter(|p| !p.is_empty()) {
            let (key, value) = option.split_once('=').ok_or_else(|| {
                ConfigError::new(
                    VAR,
                    format!("option {option:?} of {name:?} is not key=value"),
                )
            })?;
            apply_option(&mut agent, key.trim(), value.trim())
                .map_err(|reason| ConfigError::new(VAR, reason))?;
        }
        insert_agent(&mut agents, agent).map_err(|reason| ConfigError::new(VAR, reason))?;
    }
    Ok(agents)
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
        _ => {
            return Err(format!(
                "unknown option {key:?} for {name:?} (kind, timeout, forward_bearer, protocol)"
            ));
        }
    }
    Ok(())
}

fn insert_agent(
    agents: &mut BTreeMap<String, AgentConfig>,
    agent: AgentConfig,
) -> Result<(), String> {
    if !valid_agent_name(&agent.name) {
        return Err(format!(
            "agent name {:?} must be 1-64 letters, digits, '-', '_' or '.'",
            agent.name
        ));
    }
    if !is_http_url(&agent.url) {
        return Err(format!(
            "URL of {:?} must start with http:// or https://",
            agent.name
        ));
    }
    if agents.contains_key(&agent.name) {
        return Err(format!("agent {:?} is registered twice", agent.name));
    }
    agents.insert(agent.name.clone(), agent);
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentFile {
    agents: Vec<AgentFileEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentFileEntry {
    name: String,
    url: String,
    kind: Option<String>,
    timeout: Option<serde_json::Value>,
    forward_bearer: Option<bool>,
    protocol: Option<String>,
}

pub(super) fn parse_agent_file(path: &Path) -> Result<BTreeMap<String, AgentConfig>, ConfigError> {
    const VAR: &str = "A2A_CONFIG";
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(VAR, format!("cannot read {}: {e}", path.display())))?;
    let file: AgentFile = serde_json::from_str(&text)
        .map_err(|e| ConfigError::new(VAR, format!("{}: {e}", path.display())))?;
    let mut agents = BTreeMap::new();
    for entry in file.agents {
        let mut agent = AgentConfig {
            name: entry.name,
            url: entry.url.trim_end_matches('/').to_string(),
            kind: AgentKind::A2a,
            timeout: DEFAULT_AGENT_TIMEOUT,
            forward_bearer: entry.forward_bearer.unwrap_or(false),
            protocol: ProtocolVersion::V1_0,
        };
        let fail = |reason| ConfigError::new(VAR, reason);
        if let Some(kind) = entry.kind {
            apply_option(&mut agent, "kind", &kind).map_err(fail)?;
        }
        if let Some(timeout) = entry.timeout {
            let text = match timeout {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            apply_option(&mut agent, "timeout", &text).map_err(fail)?;
        }
        if let Some(protocol) = entry.protocol {
            apply_option(&mut agent, "protocol", &protocol).map_err(fail)?;
        }
        insert_agent(&mut agents, agent).map_err(fail)?;
    }
    Ok(agents)
}
