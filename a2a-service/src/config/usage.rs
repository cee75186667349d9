//! The usage settings: the budget policy the usage API shows limits from,
//! who administers it, and where usage is metered to.

use std::fmt;

use attach_contract::budget::Policy;

use super::error::ConfigError;
use super::url::is_http_url;

pub const DEFAULT_ADMIN_SCOPE: &str = "attach:admin";
pub const DEFAULT_OUTBOX_MAX: u64 = 100_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageConfig {
    /// `ATTACH_BUDGET`; empty (no limits) when unset.
    pub policy: Policy,
    /// Users (as the gateway stamps them) who may administer budgets.
    pub admin_users: Vec<String>,
    /// A scope that makes its token's caller an admin.
    pub admin_scope: String,
    /// Whether the usage metrics carry a `user` label.
    pub user_labels: bool,
    pub metering: Metering,
}

impl Default for UsageConfig {
    fn default() -> Self {
        UsageConfig {
            policy: Policy::default(),
            admin_users: Vec::new(),
            admin_scope: DEFAULT_ADMIN_SCOPE.into(),
            user_labels: false,
            metering: Metering::Prometheus,
        }
    }
}

/// Where usage goes besides the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Metering {
    /// The service's `/metrics`.
    Prometheus,
    /// `/metrics`, and CloudEvents to a collector.
    CloudEvents(ExportConfig),
    /// Neither.
    Off,
}

#[derive(Clone, PartialEq, Eq)]
pub struct ExportConfig {
    pub url: String,
    pub api_key: Option<String>,
    /// The most events the outbox keeps; past it the oldest are dropped.
    pub outbox_max: u64,
}

/// Leaves the API key out of logs and panics.
impl fmt::Debug for ExportConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExportConfig")
            .field("url", &self.url)
            .field("api_key", &self.api_key.as_ref().map(|_| ".."))
            .field("outbox_max", &self.outbox_max)
            .finish()
    }
}

pub(super) fn parse_usage(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<UsageConfig, ConfigError> {
    let policy = match get("ATTACH_BUDGET") {
        None => Policy::default(),
        Some(text) => {
            let value: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| ConfigError::new("ATTACH_BUDGET", format!("is not JSON: {e}")))?;
            Policy::from_value(&value, "budget")
                .map_err(|(at, why)| ConfigError::new("ATTACH_BUDGET", format!("{at}: {why}")))?
        }
    };
    let admin_users = get("ATTACH_ADMIN_USERS")
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let admin_scope = match get("ATTACH_ADMIN_SCOPE") {
        None => DEFAULT_ADMIN_SCOPE.into(),
        Some(scope) if scope.trim().contains(char::is_whitespace) => {
            return Err(ConfigError::new(
                "ATTACH_ADMIN_SCOPE",
                "must be one scope (no spaces)",
            ));
        }
        Some(scope) => scope.trim().to_string(),
    };
    let user_labels = match get("ATTACH_USAGE_USER_LABELS").as_deref().map(str::trim) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ConfigError::new(
                "ATTACH_USAGE_USER_LABELS",
                format!("expected true or false, not {other:?}"),
            ));
        }
    };
    Ok(UsageConfig {
        policy,
        admin_users,
        admin_scope,
        user_labels,
        metering: parse_metering(get)?,
    })
}

/// `USAGE_METERING` and, for `cloudevents`, the collector. The export
/// variables are ignored otherwise: the launcher passes one environment
/// to every process.
fn parse_metering(get: &impl Fn(&str) -> Option<String>) -> Result<Metering, ConfigError> {
    match get("USAGE_METERING").as_deref().map(str::trim) {
        None | Some("prometheus") => return Ok(Metering::Prometheus),
        Some("off") => return Ok(Metering::Off),
        Some("cloudevents" | "openmeter") => {}
        Some(other) => {
            return Err(ConfigError::new(
                "USAGE_METERING",
                format!("expected prometheus, cloudevents (or openmeter) or off, not {other:?}"),
            ));
        }
    }
    let url = get("USAGE_URL")
        .map(|u| u.trim().to_string())
        .ok_or_else(|| ConfigError::new("USAGE_URL", "required with USAGE_METERING=cloudevents"))?;
    if !is_http_url(&url) {
        return Err(ConfigError::new(
            "USAGE_URL",
            "expected an http:// or https:// URL",
        ));
    }
    let api_key = get("USAGE_API_KEY").map(|k| k.trim().to_string());
    if api_key
        .as_deref()
        .is_some_and(|k| k.chars().any(|c| c.is_control() || c == ' '))
    {
        return Err(ConfigError::new(
            "USAGE_API_KEY",
            "must not contain spaces or control characters",
        ));
    }
    let outbox_max = match get("USAGE_OUTBOX_MAX") {
        None => DEFAULT_OUTBOX_MAX,
        Some(v) => v.trim().parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
            ConfigError::new(
                "USAGE_OUTBOX_MAX",
                format!("{v:?} is not a positive number of events"),
            )
        })?,
    };
    Ok(Metering::CloudEvents(ExportConfig {
        url,
        api_key,
        outbox_max,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)]) -> Result<UsageConfig, ConfigError> {
        let map: HashMap<&str, &str> = vars.iter().copied().collect();
        parse_usage(&|k: &str| map.get(k).map(|v| v.to_string()))
    }

    #[test]
    fn defaults_and_values() {
        assert_eq!(load(&[]).unwrap(), UsageConfig::default());
        let c = load(&[
            (
                "ATTACH_BUDGET",
                r#"{"windows": [{"seconds": 60, "tokens": 100}]}"#,
            ),
            ("ATTACH_ADMIN_USERS", "alice, did:key:z6Mk ,"),
            ("ATTACH_ADMIN_SCOPE", "budget:admin"),
            ("ATTACH_USAGE_USER_LABELS", "true"),
            ("USAGE_METERING", "openmeter"),
            ("USAGE_URL", "https://openmeter.example/api/v1/events"),
            ("USAGE_API_KEY", "om-secret"),
            ("USAGE_OUTBOX_MAX", "5"),
        ])
        .unwrap();
        assert_eq!(c.policy.windows[0].tokens, 100);
        assert_eq!(c.admin_users, ["alice", "did:key:z6Mk"]);
        assert_eq!(c.admin_scope, "budget:admin");
        assert!(c.user_labels);
        let Metering::CloudEvents(export) = &c.metering else {
            panic!("{:?}", c.metering)
        };
        assert_eq!(export.outbox_max, 5);
        assert!(!format!("{c:?}").contains("om-secret"));
        // The collector's variables only matter when exporting.
        let c = load(&[("USAGE_METERING", "off"), ("USAGE_URL", "not a url")]).unwrap();
        assert_eq!(c.metering, Metering::Off);
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (vars, variable, says) in [
            (vec![("ATTACH_BUDGET", "{")], "ATTACH_BUDGET", "not JSON"),
            (
                vec![(
                    "ATTACH_BUDGET",
                    r#"{"windows": [{"seconds": 60, "tokens": 0}]}"#,
                )],
                "ATTACH_BUDGET",
                "budget.windows[0].tokens: must be a positive integer",
            ),
            (
                vec![("ATTACH_ADMIN_SCOPE", "a b")],
                "ATTACH_ADMIN_SCOPE",
                "one scope",
            ),
            (
                vec![("ATTACH_USAGE_USER_LABELS", "yes")],
                "ATTACH_USAGE_USER_LABELS",
                "true or false",
            ),
            (
                vec![("USAGE_METERING", "statsd")],
                "USAGE_METERING",
                "prometheus",
            ),
            (
                vec![("USAGE_METERING", "cloudevents")],
                "USAGE_URL",
                "required",
            ),
            (
                vec![("USAGE_METERING", "cloudevents"), ("USAGE_URL", "ftp://x")],
                "USAGE_URL",
                "http",
            ),
            (
                vec![
                    ("USAGE_METERING", "cloudevents"),
                    ("USAGE_URL", "http://collector"),
                    ("USAGE_API_KEY", "two words"),
                ],
                "USAGE_API_KEY",
                "spaces",
            ),
            (
                vec![
                    ("USAGE_METERING", "cloudevents"),
                    ("USAGE_URL", "http://collector"),
                    ("USAGE_OUTBOX_MAX", "0"),
                ],
                "USAGE_OUTBOX_MAX",
                "positive",
            ),
        ] {
            let err = load(&vars).unwrap_err();
            assert_eq!(err.variable, variable, "{err}");
            assert!(err.to_string().contains(says), "{err}");
        }
    }
}
