//! Service configuration, read once from the environment.
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `A2A_HOST` | `127.0.0.1` | address to listen on |
//! | `A2A_PORT` | `8090` | port to listen on |
//! | `ATTACH_DATA_DIR` | `.attach` | SQLite file and `assertion.key` live here |
//! | `A2A_DATABASE_URL` | unset | `postgres://…` selects PostgreSQL; unset selects SQLite `$ATTACH_DATA_DIR/a2a.sqlite3` |
//! | `A2A_AGENTS` | unset | registered agents, see `agents.rs` |
//! | `A2A_CONFIG` | unset | JSON file `{"agents": [{"name", "url", "kind", "timeout", "forward_bearer", "protocol", "extended_card", "did"}]}` (instead of `A2A_AGENTS`) |
//! | `A2A_TASK_TTL` | `24h` | tasks and memory documents older than this are removed (`90m`, `24h`, `7d`, `3600` seconds) |
//! | `A2A_MAX_BODY` | `1048576` | largest request body in bytes (`512k`, `1m` accepted); a longer one is answered 413 once up to 64 MiB more of it has been read and dropped, so the answer is not lost to a reset connection |
//! | `ATTACH_ASSERTION_KEY` | unset | base64url key (≥ 32 bytes) shared with the filter; else `$ATTACH_DATA_DIR/assertion.key` (the same text, mode 0600) |
//! | `ATTACH_SIGNING_KEYS` | unset | the gateway's signing key set (the JSON text of `attach_contract::gateway_keys`, which the launcher passes), else `$ATTACH_DATA_DIR/signing-keys.json` (mode 0600) when it exists; with it, callers are identified by the gateway's identity token alone (`X-Attach-Identity`, see `auth`), agent cards are signed with its current key (A2A 1.0 section 8.4), and agents registered with a `did` get tokens signed with it; without either, callers are identified by the assertion, cards are served unsigned, and no agent may have a `did`; read in `signing.rs` |
//! | `ATTACH_PUBLIC_URL` | `http://127.0.0.1:8080` | the gateway's address, used in agent cards and in their signatures' `jku`, and the issuer (`iss`) of the gateway's tokens: of the identity tokens callers are checked by, and of those the service signs for agents registered with a `did` |
//! | `OIDC_ISSUER` | unset | adds an `openIdConnect` scheme to agent cards |
//! | `MEM_BACKEND` | `service` | where the gateway mirrors model prompts and replies: `service` (`/mem/ingest`), `weaviate`, or `none`; with `weaviate`, `GET /mem/events` also reads Weaviate |
//! | `WEAVIATE_URL` | unset | Weaviate's base URL (`http(s)://host:port`, without `/v1`); required with `MEM_BACKEND=weaviate` |
//! | `WEAVIATE_API_KEY` | unset | sent to Weaviate as `Authorization: Bearer …` |
//! | `WEAVIATE_TIMEOUT` | `5s` | longest wait for one Weaviate query (`500ms`, `5s`, `1m`) |
//! | `A2A_PUSH` | `off` | `on` turns on A2A push notifications (webhooks callers register for their tasks); read in `push/settings.rs` |
//! | `A2A_PUSH_ALLOW` | unset | host names, addresses and CIDRs (comma-separated) that may be webhook targets although the guard refuses internal addresses; read in `push/settings.rs` |
//! | `ATTACH_BUDGET` | unset | the token budget policy, JSON (`{"windows", "models", "users"}`, `attach_contract::budget`; the launcher passes the filter's): the limits `GET /usage` shows usage against, whose longest window (plus an hour) is how long usage records are kept (`A2A_TASK_TTL` without any window); read in `usage.rs` |
//! | `ATTACH_ADMIN_USERS` | unset | users (comma-separated, as the gateway stamps them in `X-Attach-User`) who may read anyone's usage and set runtime overrides |
//! | `ATTACH_ADMIN_SCOPE` | `attach:admin` | a token scope that makes its caller such an admin too |
//! | `ATTACH_USAGE_USER_LABELS` | `false` | `true` adds a `user` label to the usage metrics (one series per user: mind the cardinality) |
//! | `USAGE_METERING` | `prometheus` | where usage goes besides the store: `prometheus` (`/metrics`), `cloudevents` (alias `openmeter`: `/metrics` and CloudEvents batches to `USAGE_URL`), or `off` (neither) |
//! | `USAGE_URL` | unset | where CloudEvents batches are posted (`application/cloudevents-batch+json`, e.g. OpenMeter's `/api/v1/events`); required with `USAGE_METERING=cloudevents`, ignored otherwise |
//! | `USAGE_API_KEY` | unset | sent to `USAGE_URL` as `Authorization: Bearer …` |
//! | `USAGE_OUTBOX_MAX` | `100000` | the most events waiting for export; past it the oldest are dropped (and counted) |

mod agents;
mod error;
mod keys;
mod signing;
mod units;
mod url;
mod usage;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use attach_contract::gateway_keys::{KEYS_VAR, SigningKeys};

use crate::auth::AssertionKey;

use agents::{parse_agent_file, parse_agent_list};
use keys::read_key_file;
use signing::signing_keys;
use units::{parse_duration, parse_size};
use url::is_http_url;
use usage::parse_usage;

pub use agents::{AgentConfig, AgentKind};
pub use error::ConfigError;
pub use usage::{DEFAULT_ADMIN_SCOPE, ExportConfig, Metering, UsageConfig};

#[derive(Clone, Debug)]
pub enum DatabaseConfig {
    Sqlite(PathBuf),
    Postgres(String),
}

/// Where mirrored model exchanges live, which decides where memory reads go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemoryBackend {
    /// The filter posts them to `/mem/ingest`: the store holds everything.
    Service,
    /// The filter writes them to Weaviate; the store keeps only documents
    /// and task events, so reads merge both.
    Weaviate(WeaviateConfig),
    /// Nothing is mirrored; the store holds documents and task events.
    None,
}

#[derive(Clone, PartialEq, Eq)]
pub struct WeaviateConfig {
    /// Without a trailing `/`.
    pub url: String,
    pub api_key: Option<String>,
    pub timeout: Duration,
}

/// Leaves the API key out of logs and panics.
impl fmt::Debug for WeaviateConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeaviateConfig")
            .field("url", &self.url)
            .field("api_key", &self.api_key.as_ref().map(|_| ".."))
            .field("timeout", &self.timeout)
            .finish()
    }
}

pub const DEFAULT_WEAVIATE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database: DatabaseConfig,
    pub agents: BTreeMap<String, AgentConfig>,
    pub task_ttl: Duration,
    pub max_body: usize,
    pub assertion_key: AssertionKey,
    /// The gateway's signing keys, which sign the agent cards served;
    /// `None`: cards go out unsigned.
    pub signing_keys: Option<Arc<SigningKeys>>,
    pub public_url: String,
    pub oidc_issuer: Option<String>,
    pub memory_backend: MemoryBackend,
    pub usage: UsageConfig,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `get` (the environment in production,
    /// a map in tests). Empty values count as unset.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());

        let host: IpAddr = match get("A2A_HOST") {
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| ConfigError::new("A2A_HOST", format!("{v:?} is not an IP address")))?,
            None => IpAddr::from([127, 0, 0, 1]),
        };
        let port: u16 = match get("A2A_PORT") {
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| ConfigError::new("A2A_PORT", format!("{v:?} is not a port number")))?,
            None => 8090,
        };
        let data_dir = PathBuf::from(get("ATTACH_DATA_DIR").unwrap_or_else(|| ".attach".into()));

        let database = match get("A2A_DATABASE_URL") {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                DatabaseConfig::Postgres(url)
            }
            Some(url) if url.starts_with("sqlite:") => {
                let path = url
                    .trim_start_matches("sqlite://")
                    .trim_start_matches("sqlite:");
                DatabaseConfig::Sqlite(PathBuf::from(path))
            }
            Some(_) => {
                return Err(ConfigError::new(
                    "A2A_DATABASE_URL",
                    "expected postgres://… (or sqlite:PATH); leave unset for the SQLite file in ATTACH_DATA_DIR",
                ));
            }
            None => DatabaseConfig::Sqlite(data_dir.join("a2a.sqlite3")),
        };

        let agents = match (get("A2A_AGENTS"), get("A2A_CONFIG")) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "A2A_CONFIG",
                    "set either A2A_AGENTS or A2A_CONFIG, not both",
                ));
            }
            (Some(list), None) => parse_agent_list(&list)?,
            (None, Some(path)) => parse_agent_file(Path::new(&path))?,
            (None, None) => BTreeMap::new(),
        };

        let task_ttl = match get("A2A_TASK_TTL") {
            Some(v) => parse_duration(&v).filter(|d| !d.is_zero()).ok_or_else(|| {
                ConfigError::new(
                    "A2A_TASK_TTL",
                    format!("{v:?} is not a duration like 24h, 90m or 3600"),
                )
            })?,
            None => Duration::from_secs(24 * 3600),
        };
        let max_body = match get("A2A_MAX_BODY") {
            Some(v) => parse_size(&v).filter(|n| *n >= 1024).ok_or_else(|| {
                ConfigError::new(
                    "A2A_MAX_BODY",
                    format!("{v:?} is not a size of at least 1024 bytes (e.g. 1048576, 512k, 1m)"),
                )
            })?,
            None => 1024 * 1024,
        };

        let assertion_key = match get("ATTACH_ASSERTION_KEY") {
            Some(v) => AssertionKey::from_text(&v)
                .map_err(|reason| ConfigError::new("ATTACH_ASSERTION_KEY", reason))?,
            None => read_key_file(&data_dir.join("assertion.key"))?,
        };

        let signing_keys = signing_keys(get(KEYS_VAR), &data_dir)?;
        if signing_keys.is_none() {
            if let Some(agent) = agents.values().find(|a| a.did.is_some()) {
                return Err(ConfigError::new(
                    KEYS_VAR,
                    format!(
                        "agent {:?} has a did, and the tokens handed to it are signed with the gateway's keys: none found",
                        agent.name
                    ),
                ));
            }
        }

        let public_url = get("ATTACH_PUBLIC_URL").unwrap_or_else(|| "http://127.0.0.1:8080".into());
        if !is_http_url(&public_url) {
            return Err(ConfigError::new(
                "ATTACH_PUBLIC_URL",
                "expected an http:// or https:// URL",
            ));
        }
        let oidc_issuer = get("OIDC_ISSUER");
        if let Some(issuer) = &oidc_issuer {
            if !is_http_url(issuer) {
                return Err(ConfigError::new(
                    "OIDC_ISSUER",
                    "expected an http:// or https:// URL",
                ));
            }
        }

        let memory_backend = parse_memory_backend(&get)?;
        let usage = parse_usage(&get)?;

        Ok(Config {
            listen: SocketAddr::new(host, port),
            data_dir,
            database,
            agents,
            task_ttl,
            max_body,
            assertion_key,
            signing_keys,
            public_url: public_url.trim_end_matches('/').to_string(),
            oidc_issuer: oidc_issuer.map(|s| s.trim_end_matches('/').to_string()),
            memory_backend,
            usage,
        })
    }
}

/// `MEM_BACKEND` and, for `weaviate`, its connection. The Weaviate
/// variables are ignored for the other backends: the launcher passes one
/// environment to every process.
fn parse_memory_backend(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<MemoryBackend, ConfigError> {
    match get("MEM_BACKEND").as_deref().map(str::trim) {
        None | Some("service") => return Ok(MemoryBackend::Service),
        Some("none") => return Ok(MemoryBackend::None),
        Some("weaviate") => {}
        Some(other) => {
            return Err(ConfigError::new(
                "MEM_BACKEND",
                format!("expected service, weaviate or none, not {other:?}"),
            ));
        }
    }
    let url = get("WEAVIATE_URL")
        .map(|u| u.trim().trim_end_matches('/').to_string())
        .ok_or_else(|| ConfigError::new("WEAVIATE_URL", "required with MEM_BACKEND=weaviate"))?;
    if !is_http_url(&url) {
        return Err(ConfigError::new(
            "WEAVIATE_URL",
            "expected an http:// or https:// URL",
        ));
    }
    let timeout = match get("WEAVIATE_TIMEOUT") {
        Some(v) => parse_duration(&v).filter(|d| !d.is_zero()).ok_or_else(|| {
            ConfigError::new(
                "WEAVIATE_TIMEOUT",
                format!("{v:?} is not a duration like 5s or 500ms"),
            )
        })?,
        None => DEFAULT_WEAVIATE_TIMEOUT,
    };
    let api_key = get("WEAVIATE_API_KEY").map(|k| k.trim().to_string());
    if api_key
        .as_deref()
        .is_some_and(|k| k.chars().any(|c| c.is_control() || c == ' '))
    {
        return Err(ConfigError::new(
            "WEAVIATE_API_KEY",
            "must not contain spaces or control characters",
        ));
    }
    Ok(MemoryBackend::Weaviate(WeaviateConfig {
        url,
        api_key,
        timeout,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::a2a::ProtocolVersion;
    use std::collections::HashMap;

    const KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = load(&[("ATTACH_ASSERTION_KEY", KEY)]).unwrap();
        assert_eq!(c.listen.port(), 8090);
        assert_eq!(c.task_ttl, Duration::from_secs(86400));
        assert_eq!(c.max_body, 1 << 20);
        assert!(matches!(c.database, DatabaseConfig::Sqlite(ref p) if p.ends_with("a2a.sqlite3")));
        assert!(c.agents.is_empty());
        assert_eq!(c.memory_backend, MemoryBackend::Service);
    }

    #[test]
    fn memory_backends() {
        let c = load(&[("ATTACH_ASSERTION_KEY", KEY), ("MEM_BACKEND", "none")]).unwrap();
        assert_eq!(c.memory_backend, MemoryBackend::None);
        // The Weaviate variables only matter with MEM_BACKEND=weaviate.
        let c = load(&[
            ("ATTACH_ASSERTION_KEY", KEY),
            ("MEM_BACKEND", "service"),
            ("WEAVIATE_URL", "not a url"),
        ])
        .unwrap();
        assert_eq!(c.memory_backend, MemoryBackend::Service);
        let c = load(&[
            ("ATTACH_ASSERTION_KEY", KEY),
            ("MEM_BACKEND", "weaviate"),
            ("WEAVIATE_URL", "http://127.0.0.1:8081/"),
            ("WEAVIATE_API_KEY", "secret-key"),
            ("WEAVIATE_TIMEOUT", "750ms"),
        ])
        .unwrap();
        let MemoryBackend::Weaviate(w) = &c.memory_backend else {
            panic!("{:?}", c.memory_backend)
        };
        assert_eq!(w.url, "http://127.0.0.1:8081");
        assert_eq!(w.api_key.as_deref(), Some("secret-key"));
        assert_eq!(w.timeout, Duration::from_millis(750));
        assert!(!format!("{c:?}").contains("secret-key"));
        let c = load(&[
            ("ATTACH_ASSERTION_KEY", KEY),
            ("MEM_BACKEND", "weaviate"),
            ("WEAVIATE_URL", "https://weaviate.example"),
        ])
        .unwrap();
        let MemoryBackend::Weaviate(w) = &c.memory_backend else {
            panic!("{:?}", c.memory_backend)
        };
        assert_eq!(w.api_key, None);
        assert_eq!(w.timeout, DEFAULT_WEAVIATE_TIMEOUT);
    }

    #[test]
    fn agent_list_with_options() {
        let c = load(&[
            ("ATTACH_ASSERTION_KEY", KEY),
            (
                "A2A_AGENTS",
                "planner=http://127.0.0.1:8100, coder=http://127.0.0.1:8101/;kind=http;timeout=2m;forward_bearer=true;protocol=0.3",
            ),
        ])
        .unwrap();
        let coder = &c.agents["coder"];
        assert_eq!(coder.url, "http://127.0.0.1:8101");
        assert_eq!(coder.kind, AgentKind::Http);
        assert_eq!(coder.timeout, Duration::from_secs(120));
        assert!(coder.forward_bearer);
        assert_eq!(coder.protocol, ProtocolVersion::V0_3);
        let planner = &c.agents["planner"];
        assert_eq!(planner.kind, AgentKind::A2a);
        assert!(!planner.forward_bearer);
    }

    fn key_set() -> String {
        use attach_contract::gateway_keys::{KeySet, new_key};
        serde_json::to_string(&KeySet {
            keys: vec![new_key([4; 32], 0)],
        })
        .unwrap()
    }

    #[test]
    fn agents_with_a_did() {
        let keys = key_set();
        let list =
            "planner=http://127.0.0.1:8100;did=did:key:z6MkPlanner,plain=http://127.0.0.1:8101";
        let c = load(&[
            ("ATTACH_ASSERTION_KEY", KEY),
            (KEYS_VAR, &keys),
            ("A2A_AGENTS", list),
        ])
        .unwrap();
        assert_eq!(
            c.agents["planner"].did.as_deref(),
            Some("did:key:z6MkPlanner")
        );
        assert_eq!(c.agents["plain"].did, None);
        // The file form says the same.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a2a.json");
        std::fs::write(
            &path,
            r#"{"agents": [{"name": "planner", "url": "http://127.0.0.1:8100", "did": "did:key:z6MkPlanner"}]}"#,
        )
        .unwrap();
        let c = load(&[
            ("ATTACH_ASSERTION_KEY", KEY),
            (KEYS_VAR, &keys),
            ("A2A_CONFIG", path.to_str().unwrap()),
        ])
        .unwrap();
        assert_eq!(
            c.agents["planner"].did.as_deref(),
            Some("did:key:z6MkPlanner")
        );

        for bad in [
            "a=http://x;did=z6Mk",
            "a=http://x;did=",
            "a=http://x;did=did:key:two words",
            "a=http://x;did=did:key:x;forward_bearer=true",
        ] {
            let err = load(&[
                ("ATTACH_ASSERTION_KEY", KEY),
                (KEYS_VAR, &keys),
                ("A2A_AGENTS", bad),
            ])
            .unwrap_err();
            assert_eq!(err.variable, "A2A_AGENTS", "{bad}: {err}");
        }
        // Without the gateway's keys nothing could be signed for the agent.
        let err = load(&[("ATTACH_ASSERTION_KEY", KEY), ("A2A_AGENTS", list)]).unwrap_err();
        assert_eq!(err.variable, KEYS_VAR, "{err}");
        assert!(err.to_string().contains("\"planner\""), "{err}");
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            ("A2A_PORT", "eighty"),
            ("A2A_TASK_TTL", "soon"),
            ("A2A_MAX_BODY", "lots"),
            ("A2A_AGENTS", "planner"),
            ("A2A_AGENTS", "planner=ftp://x"),
            ("A2A_AGENTS", "a=http://x;kind=grpc"),
            ("A2A_DATABASE_URL", "mysql://x"),
            ("ATTACH_ASSERTION_KEY", "short"),
            ("MEM_BACKEND", "redis"),
        ] {
            let vars = if var == "ATTACH_ASSERTION_KEY" {
                vec![(var, value)]
            } else {
                vec![("ATTACH_ASSERTION_KEY", KEY), (var, value)]
            };
            let err = load(&vars).unwrap_err();
            assert_eq!(err.variable, var, "{value}");
            assert!(!err.to_string().contains('\n'));
        }
    }

    /// `.` and `..` would be normalised away as segments of the agents'
    /// public paths: refused, by the rule the launcher applies too.
    #[test]
    fn dot_names_are_refused() {
        for name in [".", ".."] {
            let err = load(&[
                ("ATTACH_ASSERTION_KEY", KEY),
                ("A2A_AGENTS", &format!("{name}=http://127.0.0.1:9")),
            ])
            .unwrap_err();
            assert_eq!(err.variable, "A2A_AGENTS");
            assert!(err.to_string().contains(&format!("{name:?}")), "{err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a2a.json");
        std::fs::write(&path, r#"{"agents": [{"name": "..", "url": "http://x"}]}"#).unwrap();
        let err = load(&[
            ("ATTACH_ASSERTION_KEY", KEY),
            ("A2A_CONFIG", path.to_str().unwrap()),
        ])
        .unwrap_err();
        assert_eq!(err.variable, "A2A_CONFIG", "{err}");
        let ok = load(&[
            ("ATTACH_ASSERTION_KEY", KEY),
            (
                "A2A_AGENTS",
                "b.2=http://127.0.0.1:9,...=http://127.0.0.1:9",
            ),
        ])
        .unwrap();
        assert_eq!(ok.agents.keys().collect::<Vec<_>>(), ["...", "b.2"]);
    }

    #[test]
    fn weaviate_needs_a_url() {
        for (vars, variable) in [
            (vec![], "WEAVIATE_URL"),
            (vec![("WEAVIATE_URL", "weaviate:8080")], "WEAVIATE_URL"),
            (
                vec![
                    ("WEAVIATE_URL", "http://weaviate:8080"),
                    ("WEAVIATE_TIMEOUT", "never"),
                ],
                "WEAVIATE_TIMEOUT",
            ),
            (
                vec![
                    ("WEAVIATE_URL", "http://weaviate:8080"),
                    ("WEAVIATE_API_KEY", "two words"),
                ],
                "WEAVIATE_API_KEY",
            ),
        ] {
            let mut all = vec![("ATTACH_ASSERTION_KEY", KEY), ("MEM_BACKEND", "weaviate")];
            all.extend(vars);
            let err = load(&all).unwrap_err();
            assert_eq!(err.variable, variable, "{err}");
        }
    }

    #[test]
    fn missing_key_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().to_str().unwrap();
        let err = load(&[("ATTACH_DATA_DIR", data_dir)]).unwrap_err();
        assert_eq!(err.variable, "ATTACH_ASSERTION_KEY");
        let path = dir.path().join("assertion.key");
        std::fs::write(&path, format!("{KEY}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(load(&[("ATTACH_DATA_DIR", data_dir)]).is_ok());
        for mode in [0o640, 0o604] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = load(&[("ATTACH_DATA_DIR", data_dir)]).unwrap_err();
            assert!(err.to_string().contains("chmod 600"), "{err}");
        }
        std::fs::write(&path, [7u8; 32]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(
            load(&[("ATTACH_DATA_DIR", data_dir)]).is_err(),
            "raw bytes are not the format"
        );
    }

    /// The gateway's signing keys: the variable's text, else the data
    /// folder's file when only its owner may read it, else none at all,
    /// which still starts the service (its cards go out unsigned).
    #[test]
    fn signing_keys() {
        use attach_contract::gateway_keys::{KeySet, new_key};
        use std::os::unix::fs::PermissionsExt;
        let key = new_key([9; 32], 0);
        let set = serde_json::to_string(&KeySet {
            keys: vec![key.clone()],
        })
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().to_str().unwrap();
        let with = |extra: &[(&str, &str)]| {
            let mut vars = vec![("ATTACH_ASSERTION_KEY", KEY), ("ATTACH_DATA_DIR", data_dir)];
            vars.extend_from_slice(extra);
            load(&vars)
        };

        assert!(with(&[]).unwrap().signing_keys.is_none());

        let c = with(&[("ATTACH_SIGNING_KEYS", &set)]).unwrap();
        assert_eq!(c.signing_keys.as_deref().unwrap().kid(), key.kid);
        assert!(
            !format!("{c:?}").contains(&key.seed),
            "no private key in logs"
        );
        for bad in ["not json", r#"{"keys": []}"#] {
            let err = with(&[("ATTACH_SIGNING_KEYS", bad)]).unwrap_err();
            assert_eq!(err.variable, "ATTACH_SIGNING_KEYS", "{bad}");
            assert!(!err.to_string().contains('\n'), "{err}");
        }

        let path = dir.path().join("signing-keys.json");
        std::fs::write(&path, &set).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = with(&[]).unwrap();
        assert_eq!(c.signing_keys.as_deref().unwrap().kid(), key.kid);
        // The variable comes first.
        let other = serde_json::to_string(&KeySet {
            keys: vec![new_key([8; 32], 0)],
        })
        .unwrap();
        let c = with(&[("ATTACH_SIGNING_KEYS", &other)]).unwrap();
        assert_ne!(c.signing_keys.as_deref().unwrap().kid(), key.kid);
        for mode in [0o644, 0o640] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = with(&[]).unwrap_err();
            assert_eq!(err.variable, "ATTACH_SIGNING_KEYS");
            let text = err.to_string();
            assert!(
                text.contains("chmod 600") && text.contains("signing-keys.json"),
                "{text}"
            );
        }
        std::fs::write(&path, "{}").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = with(&[]).unwrap_err();
        assert_eq!(err.variable, "ATTACH_SIGNING_KEYS");
        assert!(err.to_string().contains("not a signing key set"), "{err}");
    }

    #[test]
    fn keys_shorter_than_32_bytes_are_refused() {
        use base64::Engine;
        let encode =
            |n: usize| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(vec![5u8; n]);
        assert!(load(&[("ATTACH_ASSERTION_KEY", &encode(31))]).is_err());
        assert!(load(&[("ATTACH_ASSERTION_KEY", &encode(32))]).is_ok());
        assert!(load(&[("ATTACH_ASSERTION_KEY", &encode(64))]).is_ok());
    }

    /// `extended_card` names a file read at start-up, in either form of the
    /// registry; a file that cannot be used refuses the registry, naming
    /// the agent and the member at fault.
    #[test]
    fn extended_cards() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("planner-card.json");
        std::fs::write(
            &good,
            r#"{"card": {"skills": [{"id": "deploy", "name": "Deploy", "description": "ships"}]},
                "skill_users": {"deploy": ["alice"]}}"#,
        )
        .unwrap();
        let good = good.to_str().unwrap();
        let c = load(&[
            ("ATTACH_ASSERTION_KEY", KEY),
            (
                "A2A_AGENTS",
                &format!(
                    "planner=http://127.0.0.1:9;extended_card={good},coder=http://127.0.0.1:9"
                ),
            ),
        ])
        .unwrap();
        let card = c.agents["planner"].extended_card.as_deref().unwrap();
        let empty = serde_json::json!({"skills": []});
        assert_eq!(
            card.for_caller(empty.clone(), "alice")["skills"][0]["id"],
            "deploy"
        );
        assert_eq!(
            card.for_caller(empty, "bob")["skills"],
            serde_json::json!([])
        );
        assert!(c.agents["coder"].extended_card.is_none());

        let file = dir.path().join("a2a.json");
        std::fs::write(
            &file,
            serde_json::json!({"agents": [
                {"name": "planner", "url": "http://127.0.0.1:9", "extended_card": good},
            ]})
            .to_string(),
        )
        .unwrap();
        let from_file = load(&[
            ("ATTACH_ASSERTION_KEY", KEY),
            ("A2A_CONFIG", file.to_str().unwrap()),
        ])
        .unwrap();
        assert_eq!(from_file.agents["planner"], c.agents["planner"]);

        let bad = dir.path().join("bad-card.json");
        std::fs::write(&bad, r#"{"card": {"securitySchemes": {}}}"#).unwrap();
        let missing = dir.path().join("missing.json");
        for (path, reason) in [
            (
                bad.display().to_string(),
                "card.securitySchemes is the gateway's",
            ),
            (missing.display().to_string(), "cannot read"),
            (String::new(), "must name a JSON file"),
        ] {
            let err = load(&[
                ("ATTACH_ASSERTION_KEY", KEY),
                (
                    "A2A_AGENTS",
                    &format!("planner=http://127.0.0.1:9;extended_card={path}"),
                ),
            ])
            .unwrap_err();
            assert_eq!(err.variable, "A2A_AGENTS");
            let text = err.to_string();
            assert!(
                text.starts_with("A2A_AGENTS: extended_card of \"planner\""),
                "{text}"
            );
            assert!(text.contains(reason) && text.contains(&path), "{text}");
            assert!(!text.contains('\n'), "{text}");
        }
    }

    #[test]
    fn config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a2a.json");
        std::fs::write(
            &path,
            r#"{"agents": [{"name": "seed", "url": "http://127.0.0.1:9", "kind": "http", "timeout": 5}]}"#,
        )
        .unwrap();
        let c = load(&[
            ("ATTACH_ASSERTION_KEY", KEY),
            ("A2A_CONFIG", path.to_str().unwrap()),
        ])
        .unwrap();
        assert_eq!(c.agents["seed"].timeout, Duration::from_secs(5));
        assert_eq!(c.agents["seed"].kind, AgentKind::Http);
    }
}
