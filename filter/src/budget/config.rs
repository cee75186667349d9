//! The plugin configuration's `budget` section: the policy (flattened in:
//! `windows`, `models`, `users`, as the contract reads them), which routes
//! count, how reservations are estimated and how the gateways share their
//! totals.
//!
//! ```json
//! "budget": {"windows": [{"seconds": 60, "tokens": 60000}],
//!            "routes": [{"path": "/api/chat", "format": "ollama"}],
//!            "default_max_tokens": 1024, "hard_stop_margin": 512, "max_request_bytes": 1048576,
//!            "sync": {"url": "http://127.0.0.1:PORT/usage/sync", "interval_ms": 1000},
//!            "user_stats": false}
//! ```
//!
//! Read by hand from a [`Value`], as the `mcp` section is: the filter's
//! module then carries no derived deserialiser for it.

use crate::mcp::config::{Members, Problem};
use crate::memory::routes::{ModelRoute, default_routes, route_index};
use crate::memory::sink::{check_api_key, endpoint};
use crate::url::Url;
use attach_contract::assertion::{self, ASSERTION_LIFETIME_SECS};
use attach_contract::budget::Policy;
use attach_contract::headers::ASSERTION_HEADER;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::ops::RangeInclusive;

/// The output part of a reservation when the request names none.
pub const DEFAULT_MAX_TOKENS: u64 = 1024;
/// Request bodies on counted routes above this are refused (413).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1 << 20;
/// The largest `max_request_bytes`: the filter holds the body in memory.
pub const MAX_REQUEST_BYTES: usize = 256 << 20;
pub const DEFAULT_SYNC_INTERVAL_MS: u64 = 1_000;
pub const SYNC_INTERVAL_MS: RangeInclusive<u64> = 100..=60_000;
/// The most windows of one list: a request's limits (its windows and its
/// model rule's) must stay well within what a ledger record keeps
/// ([`super::ledger::MAX_KEYS`]).
pub const MAX_WINDOWS: usize = 8;

/// The section as written.
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetConfig {
    pub policy: Policy,
    /// The routes whose requests count; the memory mirror's by default.
    pub routes: Vec<ModelRoute>,
    pub default_max_tokens: u64,
    /// When set, a stream whose tokens pass its reservation by this much
    /// is ended.
    pub hard_stop_margin: Option<u64>,
    pub max_request_bytes: usize,
    /// Budgets shared with other gateways through the companion service.
    pub sync: Option<SyncConfig>,
    /// Envoy stats per user (off: one label per user is unbounded).
    pub user_stats: bool,
}

/// Where and how often usage is synced, as written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SyncConfig {
    /// The service's `POST /usage/sync`.
    pub url: String,
    pub interval_ms: u64,
    /// Sent as `Authorization: Bearer` when set, for a sync target other
    /// than the companion service (which checks the mirror's credential);
    /// written here it shows in Envoy's configuration dump, which
    /// `api_key_env` avoids.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// The variable of Envoy's environment that holds `api_key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
}

/// The validated section: what the filter runs with.
#[derive(Clone, Debug, PartialEq)]
pub struct Budget {
    pub policy: Policy,
    pub routes: Vec<ModelRoute>,
    pub default_max_tokens: u64,
    pub hard_stop_margin: Option<u64>,
    pub max_request_bytes: usize,
    pub sync: Option<Sync>,
    pub user_stats: bool,
}

/// The validated sync target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sync {
    pub url: Url,
    /// The Envoy cluster that reaches it.
    pub cluster: String,
    /// `:authority` of the callout.
    pub authority: String,
    /// `:path` of the callout.
    pub path: String,
    pub api_key: Option<String>,
    pub interval_ms: u64,
}

impl Sync {
    /// The headers of a sync callout besides the pseudo-headers: the
    /// memory mirror's credential, which the companion service checks on
    /// `/usage/sync` as on `/mem/ingest` (`key` is the assertion key),
    /// and the bearer key when one is configured.
    pub fn headers(&self, key: &[u8], now_secs: u64) -> Vec<(&'static str, String)> {
        let exp = now_secs.saturating_add(ASSERTION_LIFETIME_SECS);
        let mut headers = vec![
            ("content-type", "application/json".to_string()),
            (ASSERTION_HEADER, assertion::sign_mirror(key, exp)),
        ];
        if let Some(k) = &self.api_key {
            headers.push(("authorization", format!("Bearer {k}")));
        }
        headers
    }
}

impl Budget {
    /// The counted route of a request path (its query left out, compared
    /// exactly, as the memory mirror's routes are), with its index.
    pub fn route(&self, path: &str) -> Option<(usize, &ModelRoute)> {
        let index = route_index(&self.routes, path)?;
        Some((index, self.routes.get(index)?))
    }
}

impl<'de> Deserialize<'de> for BudgetConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        BudgetConfig::from_value(&value)
            .map_err(|(at, what)| serde::de::Error::custom(format!("{at}: {what}")))
    }
}

impl Serialize for BudgetConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(s)
    }
}

const AT: &str = "budget";

impl BudgetConfig {
    /// The section with every default (and no limits: metering only).
    pub fn metering() -> BudgetConfig {
        BudgetConfig {
            policy: Policy::default(),
            routes: default_routes(),
            default_max_tokens: DEFAULT_MAX_TOKENS,
            hard_stop_margin: None,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            sync: None,
            user_stats: false,
        }
    }

    /// Reads the section from its JSON.
    pub fn from_value(value: &Value) -> Result<BudgetConfig, Problem> {
        let object = value
            .as_object()
            .ok_or_else(|| (AT.to_string(), "must be an object".to_string()))?;
        let policy = Policy::from_object(object, AT)?;
        check_window_counts(&policy)?;
        let mut m = Members::of(value, AT.into())?;
        for read_by_the_policy in ["windows", "models", "users"] {
            m.get(read_by_the_policy);
        }
        let routes = match m.get("routes") {
            None => default_routes(),
            Some(v) => routes(v, &m.here("routes"))?,
        };
        let default_max_tokens = match m.get("default_max_tokens") {
            None => DEFAULT_MAX_TOKENS,
            Some(v) => v.as_u64().filter(|n| *n >= 1).ok_or_else(|| {
                (
                    m.here("default_max_tokens"),
                    "must be a positive integer".to_string(),
                )
            })?,
        };
        let hard_stop_margin = match m.get("hard_stop_margin") {
            None => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| {
                (
                    m.here("hard_stop_margin"),
                    "must be a whole number of tokens".to_string(),
                )
            })?),
        };
        let max_request_bytes = match m.get("max_request_bytes") {
            None => DEFAULT_MAX_REQUEST_BYTES,
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| (1..=MAX_REQUEST_BYTES).contains(n))
                .ok_or_else(|| {
                    (
                        m.here("max_request_bytes"),
                        format!("must be a number of bytes from 1 to {MAX_REQUEST_BYTES}"),
                    )
                })?,
        };
        let sync = match m.get("sync") {
            None => None,
            Some(v) => Some(SyncConfig::from_value(v, m.here("sync"))?),
        };
        let user_stats = match m.get("user_stats") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err((m.here("user_stats"), "must be true or false".into())),
        };
        m.done()?;
        Ok(BudgetConfig {
            policy,
            routes,
            default_max_tokens,
            hard_stop_margin,
            max_request_bytes,
            sync,
            user_stats,
        })
    }

    /// The section in its JSON form (what [`BudgetConfig::from_value`] reads).
    pub fn to_value(&self) -> Value {
        let mut object = match self.policy.to_value() {
            Value::Object(o) => o,
            _ => Map::new(),
        };
        object.insert("routes".into(), json!(self.routes));
        object.insert("default_max_tokens".into(), self.default_max_tokens.into());
        if let Some(margin) = self.hard_stop_margin {
            object.insert("hard_stop_margin".into(), margin.into());
        }
        object.insert("max_request_bytes".into(), self.max_request_bytes.into());
        if let Some(sync) = &self.sync {
            object.insert("sync".into(), json!(sync));
        }
        object.insert("user_stats".into(), self.user_stats.into());
        Value::Object(object)
    }

    /// Checks the section against the configuration's clusters and
    /// assertion key (the sync's credential); the sync's bearer key has
    /// been read from its variable already.
    pub fn validate(
        self,
        clusters: &BTreeMap<String, String>,
        assertion_key: Option<&[u8]>,
    ) -> Result<Budget, Problem> {
        let sync = match self.sync {
            None => None,
            Some(s) => Some(s.validate(clusters, assertion_key)?),
        };
        Ok(Budget {
            policy: self.policy,
            routes: self.routes,
            default_max_tokens: self.default_max_tokens,
            hard_stop_margin: self.hard_stop_margin,
            max_request_bytes: self.max_request_bytes,
            sync,
            user_stats: self.user_stats,
        })
    }
}

impl SyncConfig {
    fn from_value(value: &Value, at: String) -> Result<SyncConfig, Problem> {
        let mut m = Members::of(value, at)?;
        let url = m
            .text("url")?
            .ok_or_else(|| (m.here("url"), "is required".to_string()))?;
        let interval_ms = match m.get("interval_ms") {
            None => DEFAULT_SYNC_INTERVAL_MS,
            Some(v) => v
                .as_u64()
                .filter(|n| SYNC_INTERVAL_MS.contains(n))
                .ok_or_else(|| {
                    (
                        m.here("interval_ms"),
                        format!(
                            "must be a number of milliseconds from {} to {}",
                            SYNC_INTERVAL_MS.start(),
                            SYNC_INTERVAL_MS.end()
                        ),
                    )
                })?,
        };
        let api_key = m.text("api_key")?;
        let api_key_env = m.text("api_key_env")?;
        m.done()?;
        Ok(SyncConfig {
            url,
            interval_ms,
            api_key,
            api_key_env,
        })
    }

    fn validate(
        self,
        clusters: &BTreeMap<String, String>,
        assertion_key: Option<&[u8]>,
    ) -> Result<Sync, Problem> {
        let field = |name: &str| format!("{AT}.sync.{name}");
        let (url, path) = endpoint(&self.url).map_err(|m| (field("url"), m.to_string()))?;
        let path = path.trim_end_matches('/').to_string();
        if path.is_empty() {
            return Err((field("url"), "must name the sync route".into()));
        }
        if assertion_key.is_none() {
            return Err((
                format!("{AT}.sync"),
                "needs assertion_key: the service takes syncs with the memory mirror's credential only"
                    .into(),
            ));
        }
        if let Some(k) = &self.api_key {
            check_api_key(k).map_err(|m| (field("api_key"), m.to_string()))?;
        }
        let cluster = clusters.get(&url.origin()).cloned().ok_or_else(|| {
            (
                "clusters".to_string(),
                format!(
                    "no Envoy cluster for {} (needed by {})",
                    url.origin(),
                    field("url")
                ),
            )
        })?;
        Ok(Sync {
            authority: url.authority(),
            url,
            cluster,
            path,
            api_key: self.api_key,
            interval_ms: self.interval_ms,
        })
    }
}

fn routes(value: &Value, at: &str) -> Result<Vec<ModelRoute>, Problem> {
    let items = value
        .as_array()
        .filter(|items| !items.is_empty())
        .ok_or_else(|| {
            (
                at.to_string(),
                "must be a list of at least one route".to_string(),
            )
        })?;
    let mut routes = Vec::with_capacity(items.len());
    for (i, r) in items.iter().enumerate() {
        let at = format!("{at}[{i}]");
        let route = ModelRoute::deserialize(r).map_err(|e| (at.clone(), e.to_string()))?;
        route
            .check()
            .map_err(|m| (format!("{at}.path"), m.to_string()))?;
        routes.push(route);
    }
    Ok(routes)
}

/// Every list of windows within [`MAX_WINDOWS`].
fn check_window_counts(policy: &Policy) -> Result<(), Problem> {
    let models = |rules: &[attach_contract::budget::ModelRule], at: String| {
        rules
            .iter()
            .enumerate()
            .map(move |(i, r)| (format!("{at}.models[{i}].windows"), r.windows.len()))
            .collect::<Vec<_>>()
    };
    let mut lists = vec![(format!("{AT}.windows"), policy.windows.len())];
    lists.extend(models(&policy.models, AT.to_string()));
    for (i, o) in policy.users.iter().enumerate() {
        let at = format!("{AT}.users[{i}]");
        if let Some(w) = &o.windows {
            lists.push((format!("{at}.windows"), w.len()));
        }
        if let Some(m) = &o.models {
            lists.extend(models(m, at));
        }
    }
    match lists.into_iter().find(|(_, n)| *n > MAX_WINDOWS) {
        Some((at, _)) => Err((at, format!("at most {MAX_WINDOWS} windows"))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::routes::WireFormat;
    use attach_contract::budget::Window;

    fn read(v: Value) -> Result<BudgetConfig, Problem> {
        BudgetConfig::from_value(&v)
    }

    fn clusters() -> BTreeMap<String, String> {
        [("http://attach-a2a:80".to_string(), "a2a".to_string())].into()
    }

    #[test]
    fn defaults() {
        let c = read(json!({})).unwrap();
        assert_eq!(c, BudgetConfig::metering());
        assert_eq!(c.routes, default_routes());
        assert_eq!(
            (c.default_max_tokens, c.max_request_bytes),
            (1024, 1_048_576)
        );
        assert_eq!(
            (c.hard_stop_margin, c.sync, c.user_stats),
            (None, None, false)
        );
        assert!(!c.policy.limits_anything(), "no windows: metering only");
    }

    #[test]
    fn the_policy_is_flattened_in() {
        let c = read(json!({
            "windows": [{"seconds": 60, "tokens": 60000}],
            "models": [{"match": "llama3*", "windows": [{"seconds": 60, "tokens": 10000}]}],
            "users": [{"match": "alice", "windows": []}],
            "routes": [{"path": "/api/chat", "format": "ollama"}],
            "default_max_tokens": 256, "hard_stop_margin": 0, "max_request_bytes": 1,
            "user_stats": true,
        }))
        .unwrap();
        assert_eq!(
            c.policy.windows,
            [Window {
                seconds: 60,
                tokens: 60000,
                status: 429
            }]
        );
        assert_eq!(c.policy.models.len(), 1);
        assert_eq!(c.policy.users.len(), 1);
        assert_eq!(c.routes, [ModelRoute::new("/api/chat", WireFormat::Ollama)]);
        assert_eq!(
            (
                c.default_max_tokens,
                c.hard_stop_margin,
                c.max_request_bytes
            ),
            (256, Some(0), 1)
        );
        assert!(c.user_stats);
        // What the launcher writes reads back the same.
        let text = serde_json::to_string(&c).unwrap();
        let back: BudgetConfig = serde_json::from_str(&text).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn mistakes_name_their_field() {
        let sync = |extra: Value| {
            let mut s = json!({"url": "http://attach-a2a/usage/sync"});
            s.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            json!({ "sync": s })
        };
        let cases = [
            (json!([]), "budget", "must be an object"),
            (
                json!({"windows": [{"seconds": 60, "tokens": 0}]}),
                "budget.windows[0].tokens",
                "must be a positive integer",
            ),
            (json!({"limit": 5}), "budget", "unknown member \"limit\""),
            (json!({"routes": []}), "budget.routes", "at least one"),
            (
                json!({"routes": [{"path": "/a", "format": "anthropic"}]}),
                "budget.routes[0]",
                "anthropic",
            ),
            (
                json!({"routes": [{"path": "a", "format": "ollama"}]}),
                "budget.routes[0].path",
                "must be a path",
            ),
            (
                json!({"default_max_tokens": 0}),
                "budget.default_max_tokens",
                "positive",
            ),
            (
                json!({"hard_stop_margin": -1}),
                "budget.hard_stop_margin",
                "whole number",
            ),
            (
                json!({"max_request_bytes": 0}),
                "budget.max_request_bytes",
                "from 1",
            ),
            (
                json!({"user_stats": "yes"}),
                "budget.user_stats",
                "true or false",
            ),
            (
                sync(json!({"interval_ms": 99})),
                "budget.sync.interval_ms",
                "from 100 to 60000",
            ),
            (
                sync(json!({"interval_ms": 60001})),
                "budget.sync.interval_ms",
                "from 100",
            ),
            (sync(json!({"every": 1})), "budget.sync", "unknown member"),
            (json!({"sync": {}}), "budget.sync.url", "is required"),
            (
                json!({"windows": (1..=9).map(|s| json!({"seconds": s, "tokens": 1})).collect::<Vec<_>>()}),
                "budget.windows",
                "at most 8",
            ),
            (
                json!({"users": [{"match": "a", "models": [{"match": "m", "windows": (1..=9).map(|s| json!({"seconds": s, "tokens": 1})).collect::<Vec<_>>()}]}]}),
                "budget.users[0].models[0].windows",
                "at most 8",
            ),
        ];
        for (value, field, message) in cases {
            let (at, why) = read(value.clone()).unwrap_err();
            assert_eq!(at, field, "{value}");
            assert!(why.contains(message), "{value}: {why}");
        }
    }

    #[test]
    fn sync_needs_a_route_the_mirror_credential_and_a_cluster() {
        let key = [7u8; 32];
        let validate = |sync: Value| {
            read(json!({ "sync": sync }))
                .unwrap()
                .validate(&clusters(), Some(&key))
                .map(|b| b.sync.unwrap())
        };
        // The companion service checks the memory mirror's credential.
        let s = validate(json!({"url": "http://attach-a2a/usage/sync/"})).unwrap();
        assert_eq!(s.api_key, None);
        let headers = s.headers(&key, 1_000);
        assert_eq!(headers.len(), 2, "{headers:?}");
        let (name, credential) = &headers[1];
        assert_eq!(*name, ASSERTION_HEADER);
        assert!(
            assertion::check(&key, assertion::MIRROR_AUDIENCE, credential, "", "", 1_000).is_ok()
        );
        let bearer = validate(json!({"url": "http://attach-a2a/usage/sync/", "api_key": "k3y"}));
        assert_eq!(
            bearer.unwrap().headers(&key, 0)[2],
            ("authorization", "Bearer k3y".into())
        );
        assert_eq!(
            (
                s.cluster.as_str(),
                s.authority.as_str(),
                s.path.as_str(),
                s.interval_ms
            ),
            ("a2a", "attach-a2a", "/usage/sync", 1000)
        );
        let unsigned = read(json!({"sync": {"url": "http://attach-a2a/usage/sync"}}))
            .unwrap()
            .validate(&clusters(), None)
            .unwrap_err();
        assert_eq!(unsigned.0, "budget.sync");
        for (sync, field) in [
            (
                json!({"url": "http://attach-a2a/usage/sync", "api_key": "two words"}),
                "budget.sync.api_key",
            ),
            (
                json!({"url": "http://attach-a2a", "api_key": "k"}),
                "budget.sync.url",
            ),
            (
                json!({"url": "http://attach-a2a/usage/sync?x=1", "api_key": "k"}),
                "budget.sync.url",
            ),
            (
                json!({"url": "ftp://attach-a2a/usage/sync", "api_key": "k"}),
                "budget.sync.url",
            ),
            (
                json!({"url": "http://elsewhere/usage/sync", "api_key": "k"}),
                "clusters",
            ),
        ] {
            assert_eq!(validate(sync.clone()).unwrap_err().0, field, "{sync}");
        }
    }

    #[test]
    fn routes_match_the_path_without_its_query_exactly() {
        let b = read(json!({}))
            .unwrap()
            .validate(&clusters(), None)
            .unwrap();
        let found = |p: &str| b.route(p).map(|(i, r)| (i, r.path.clone()));
        assert_eq!(found("/api/chat"), Some((0, "/api/chat".into())));
        assert_eq!(
            found("/v1/completions?stream=1"),
            Some((3, "/v1/completions".into()))
        );
        assert_eq!(found("/api/chat/"), None);
        assert_eq!(found("/mem/events"), None);
    }
}
