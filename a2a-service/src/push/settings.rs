//! Push notification settings, read from the environment apart from the
//! service's other settings (the table in `config/mod.rs` lists them too).
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `A2A_PUSH` | `off` | `on` lets callers register webhooks for their tasks, and cards declare `pushNotifications` |
//! | `A2A_PUSH_ALLOW` | unset | comma-separated host names, addresses and CIDRs that may be webhook targets although the guard refuses loopback, private, link-local and other internal addresses |

use super::ssrf::AllowList;
use crate::config::ConfigError;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PushSettings {
    pub enabled: bool,
    pub allow: AllowList,
}

impl PushSettings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let enabled = match get("A2A_PUSH").as_deref().map(str::trim) {
            None | Some("") => false,
            Some(v) if ["on", "true", "1"].contains(&v.to_ascii_lowercase().as_str()) => true,
            Some(v) if ["off", "false", "0"].contains(&v.to_ascii_lowercase().as_str()) => false,
            Some(v) => {
                return Err(ConfigError {
                    variable: "A2A_PUSH",
                    reason: format!("{v:?} is neither on nor off"),
                });
            }
        };
        let allow = AllowList::parse(get("A2A_PUSH_ALLOW").as_deref().unwrap_or_default())
            .map_err(|reason| ConfigError {
                variable: "A2A_PUSH_ALLOW",
                reason,
            })?;
        Ok(PushSettings { enabled, allow })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(vars: &[(&str, &str)]) -> Result<PushSettings, ConfigError> {
        PushSettings::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn off_unless_enabled() {
        assert!(!read(&[]).unwrap().enabled);
        assert!(read(&[("A2A_PUSH", "on")]).unwrap().enabled);
        assert!(!read(&[("A2A_PUSH", "OFF")]).unwrap().enabled);
        assert_eq!(
            read(&[("A2A_PUSH", "maybe")]).unwrap_err().variable,
            "A2A_PUSH"
        );
        let e = read(&[("A2A_PUSH_ALLOW", "10.0.0.0/40")]).unwrap_err();
        assert_eq!(e.variable, "A2A_PUSH_ALLOW");
        let s = read(&[("A2A_PUSH", "on"), ("A2A_PUSH_ALLOW", "127.0.0.1")]).unwrap();
        assert_eq!(s.allow, AllowList::parse("127.0.0.1").unwrap());
    }
}
