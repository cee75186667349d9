//! Settings from the environment.
//!
//! | Variable | Default | Meaning |
//! |---|---|---|
//! | `AGENT_ROLE` | required | `planner` or `coder` |
//! | `AGENT_HOST` | `127.0.0.1` | IP address to listen on |
//! | `AGENT_PORT` | `0` (a free port) | port to listen on |
//! | `GATEWAY_URL` | `http://127.0.0.1:8080` | the gateway the agent calls for the model, memory and other agents |
//! | `MODEL` | `tinyllama` | model name sent to `/api/chat` |
//! | `AGENT_TIMEOUT` | `120` | seconds allowed for each outbound call |
//! | `AGENT_IDENTITY` | unset | the agent's did:key identity file (`{"did", "seed"}`, mode 0600): with it the agent accepts a task only with the gateway's identity token for its DID and acts with the token delegated to it (see [`crate::gateway`]); without it, with the caller's forwarded bearer |
//! | `GATEWAY_ISSUER` | `GATEWAY_URL` | the gateway's public URL: the `iss` of the tokens it signs |
//! | `AGENT_TOKEN_AUDIENCE` | `GATEWAY_ISSUER` | the `aud` of the agent's own DID-JWTs (its RFC 8693 actor tokens): an audience the gateway's DID sign-in accepts |
//!
//! An empty variable counts as unset, so that `VAR= cmd` in a Makefile
//! means "the default".

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// What the agent does with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Planner,
    Coder,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Planner => "planner",
            Role::Coder => "coder",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub role: Role,
    pub host: IpAddr,
    pub port: u16,
    /// Scheme, host and port (and a path prefix, if any), without a trailing `/`.
    pub gateway_url: String,
    pub model: String,
    pub timeout: Duration,
    /// The did:key identity file, when the agent acts by delegation.
    pub identity: Option<PathBuf>,
    /// The gateway's public URL, without a trailing `/`.
    pub issuer: String,
    /// The audience of the agent's own DID-JWTs.
    pub actor_audience: String,
}

/// A setting that cannot be used: the variable and why.
#[derive(Debug, PartialEq, Eq)]
pub struct SettingError {
    pub var: &'static str,
    pub reason: String,
}

impl std::fmt::Display for SettingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.var, self.reason)
    }
}

/// Longest accepted `AGENT_TIMEOUT`: a day is already far beyond any
/// gateway timeout in front of the agent.
const MAX_TIMEOUT_SECS: f64 = 86_400.0;

impl Settings {
    /// Reads the settings through `get` (the process environment in the
    /// binary, a table in tests).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self, SettingError> {
        let read = |var: &str| get(var).filter(|v| !v.trim().is_empty());
        let fail = |var: &'static str, reason: String| SettingError { var, reason };

        let role = match read("AGENT_ROLE").as_deref().map(str::trim) {
            Some("planner") => Role::Planner,
            Some("coder") => Role::Coder,
            Some(other) => {
                return Err(fail(
                    "AGENT_ROLE",
                    format!("must be planner or coder, not {other:?}"),
                ));
            }
            None => return Err(fail("AGENT_ROLE", "is required (planner or coder)".into())),
        };
        let host = match read("AGENT_HOST") {
            None => IpAddr::from([127, 0, 0, 1]),
            Some(h) => h.trim().parse().map_err(|_| {
                fail(
                    "AGENT_HOST",
                    format!("must be an IP address such as 127.0.0.1, not {h:?}"),
                )
            })?,
        };
        let port = match read("AGENT_PORT") {
            None => 0,
            Some(p) => p.trim().parse().map_err(|_| {
                fail(
                    "AGENT_PORT",
                    format!("must be a port number (0-65535, 0 for a free port), not {p:?}"),
                )
            })?,
        };
        let gateway_url = match read("GATEWAY_URL") {
            None => "http://127.0.0.1:8080".to_string(),
            Some(u) => gateway_url(u.trim()).map_err(|reason| fail("GATEWAY_URL", reason))?,
        };
        let model = match read("MODEL") {
            None => "tinyllama".to_string(),
            Some(m) if m.chars().any(char::is_control) => {
                return Err(fail("MODEL", "must not contain control characters".into()));
            }
            Some(m) => m.trim().to_string(),
        };
        let timeout = match read("AGENT_TIMEOUT") {
            None => Duration::from_secs(120),
            Some(t) => match t.trim().parse::<f64>() {
                Ok(secs) if secs > 0.0 && secs <= MAX_TIMEOUT_SECS => Duration::from_secs_f64(secs),
                _ => {
                    return Err(fail(
                        "AGENT_TIMEOUT",
                        format!(
                            "must be a number of seconds above 0 and at most {MAX_TIMEOUT_SECS}, not {t:?}"
                        ),
                    ));
                }
            },
        };
        let identity = read("AGENT_IDENTITY").map(|p| PathBuf::from(p.trim()));
        let issuer = match read("GATEWAY_ISSUER") {
            None => gateway_url.clone(),
            Some(u) => {
                self::gateway_url(u.trim()).map_err(|reason| fail("GATEWAY_ISSUER", reason))?
            }
        };
        let actor_audience = match read("AGENT_TOKEN_AUDIENCE") {
            None => issuer.clone(),
            Some(a) if a.chars().any(|c| c.is_control() || c.is_whitespace()) => {
                return Err(fail(
                    "AGENT_TOKEN_AUDIENCE",
                    "must be one audience, without white space or control characters".into(),
                ));
            }
            Some(a) => a,
        };
        Ok(Settings {
            role,
            host,
            port,
            gateway_url,
            model,
            timeout,
            identity,
            issuer,
            actor_audience,
        })
    }
}

/// Checks a gateway URL and drops its trailing `/`, so that route paths can
/// be appended. Credentials in the URL are refused: the agents send only the
/// token they were given for the user (and their own DID-JWT to exchange
/// it), never a password of their own.
fn gateway_url(text: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "{text:?} must be an http:// or https:// URL with a host"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials (user:password@)".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{text:?} must not have a query or fragment"));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, SettingError> {
        Settings::from_env(|var| {
            // The last pair wins, so a case can override the role.
            pairs
                .iter()
                .rev()
                .find(|(k, _)| *k == var)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn defaults() {
        let s = settings(&[("AGENT_ROLE", "coder"), ("AGENT_PORT", "")]).unwrap();
        assert_eq!(s.role, Role::Coder);
        assert_eq!(s.host.to_string(), "127.0.0.1");
        assert_eq!(s.port, 0);
        assert_eq!(s.gateway_url, "http://127.0.0.1:8080");
        assert_eq!(s.model, "tinyllama");
        assert_eq!(s.timeout, Duration::from_secs(120));
        assert_eq!(s.identity, None);
        assert_eq!(s.issuer, "http://127.0.0.1:8080");
        assert_eq!(s.actor_audience, "http://127.0.0.1:8080");
    }

    #[test]
    fn delegation_settings() {
        let s = settings(&[
            ("AGENT_ROLE", "planner"),
            ("GATEWAY_URL", "http://127.0.0.1:9000"),
            ("AGENT_IDENTITY", ".attach/agent-planner.json"),
            ("GATEWAY_ISSUER", "https://gw.example/"),
        ])
        .unwrap();
        assert_eq!(
            s.identity.as_deref(),
            Some(std::path::Path::new(".attach/agent-planner.json"))
        );
        assert_eq!(s.issuer, "https://gw.example");
        assert_eq!(s.actor_audience, "https://gw.example");
        let s = settings(&[("AGENT_ROLE", "coder"), ("AGENT_TOKEN_AUDIENCE", "urn:gw")]).unwrap();
        assert_eq!(s.actor_audience, "urn:gw");
    }

    #[test]
    fn explicit_values() {
        let s = settings(&[
            ("AGENT_ROLE", "planner"),
            ("AGENT_HOST", "::1"),
            ("AGENT_PORT", "8100"),
            ("GATEWAY_URL", "https://gw.example/prefix/"),
            ("MODEL", "llama3.2"),
            ("AGENT_TIMEOUT", "2.5"),
        ])
        .unwrap();
        assert_eq!(s.role, Role::Planner);
        assert_eq!(s.host.to_string(), "::1");
        assert_eq!(s.port, 8100);
        assert_eq!(s.gateway_url, "https://gw.example/prefix");
        assert_eq!(s.model, "llama3.2");
        assert_eq!(s.timeout, Duration::from_millis(2500));
    }

    #[test]
    fn bad_values_name_their_variable() {
        let cases: [(&[(&str, &str)], &str); 11] = [
            (&[], "AGENT_ROLE"),
            (&[("AGENT_ROLE", "reviewer")], "AGENT_ROLE"),
            (&[("AGENT_HOST", "localhost")], "AGENT_HOST"),
            (&[("AGENT_PORT", "65536")], "AGENT_PORT"),
            (&[("GATEWAY_URL", "ftp://x")], "GATEWAY_URL"),
            (&[("GATEWAY_URL", "http://u:p@gw:8080")], "GATEWAY_URL"),
            (&[("GATEWAY_URL", "127.0.0.1:8080")], "GATEWAY_URL"),
            (&[("AGENT_TIMEOUT", "0")], "AGENT_TIMEOUT"),
            (&[("AGENT_TIMEOUT", "soon")], "AGENT_TIMEOUT"),
            (&[("GATEWAY_ISSUER", "gw")], "GATEWAY_ISSUER"),
            (&[("AGENT_TOKEN_AUDIENCE", "a b")], "AGENT_TOKEN_AUDIENCE"),
        ];
        for (pairs, var) in cases {
            let mut all = vec![("AGENT_ROLE", "coder")];
            all.extend_from_slice(pairs);
            if pairs.is_empty() {
                all.clear();
            }
            let e = settings(&all).unwrap_err();
            assert_eq!(e.var, var, "{pairs:?}: {e}");
        }
    }
}
