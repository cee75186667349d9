//! Settings read from the environment, each checked with a message that
//! names its variable.
//!
//! Every function takes the environment as a lookup function, so tests pass
//! a map instead of mutating the process environment. An empty value counts
//! as unset.

use crate::error::Error;
use attach_contract::budget::{DEFAULT_STATUS, Window, parse_window};
use attach_contract::gateway_keys::Algorithm;
use attach_filter::budget::config::{
    DEFAULT_SYNC_INTERVAL_MS, MAX_REQUEST_BYTES, SYNC_INTERVAL_MS,
};
use attach_filter::config::DidPolicy;
use attach_filter::url::Url;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};

/// Reads one variable; `None` when unset.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment as an [`Env`].
pub fn process_env(name: &str) -> Option<String> {
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}

pub const DEFAULT_ENGINE_URL: &str = "http://127.0.0.1:11434";
pub const DEFAULT_PORT: u16 = 8080;
pub const DEFAULT_WASM: &str = "target/wasm32-wasip1/release/attach_filter.wasm";
pub const DEFAULT_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
pub const DEFAULT_DATA_DIR: &str = ".attach";
/// Envoy's admin socket, in the run folder.
pub const ADMIN_SOCKET: &str = "envoy-admin.sock";
/// `sun_path` holds 108 bytes, the last one a NUL.
const MAX_SOCKET_PATH: usize = 107;

#[derive(Debug, Clone)]
pub struct Settings {
    /// `OIDC_ISSUER`, checked to be an http(s) URL.
    pub issuer: Option<String>,
    /// `OIDC_AUD`, split on commas.
    pub audiences: Vec<String>,
    /// `ENGINE_URL` as given (for messages) and parsed.
    pub engine_url: String,
    pub engine: Url,
    pub port: u16,
    pub bind: IpAddr,
    /// `ATTACH_CONFIG`, absolute.
    pub config_file: Option<PathBuf>,
    pub concurrency: usize,
    pub log_level: String,
    pub public_url: String,
    /// `ATTACH_DATA_DIR`, absolute.
    pub data_dir: PathBuf,
    pub ca_bundle: PathBuf,
    pub did: DidSettings,
    pub a2a: A2aSettings,
    pub mcp: McpSettings,
    pub memory: MemSettings,
    pub budget: BudgetSettings,
    pub dev: DevSettings,
    /// `ATTACH_KEY_ROTATION_DAYS` and `ATTACH_KEY_OVERLAP_HOURS`: when the
    /// gateway's signing key is replaced, and how long the old one stays
    /// published.
    pub rotation: crate::signing_keys::Rotation,
    /// `ATTACH_SIGNING_ALG`: the algorithm of the gateway's signing key; a
    /// current key of another one is replaced at start-up.
    pub signing_alg: Algorithm,
}

/// `ATTACH_DEV=on`, set by `make run`: the local demo. The example planner
/// and coder agents run next to the service, `/demo` serves the demo page
/// and `/dev/token` hands out DID tokens of the local identity to anyone
/// who can reach the gateway, so it is refused on a non-loopback address.
#[derive(Debug, Clone, PartialEq)]
pub struct DevSettings {
    pub enabled: bool,
    /// `ATTACH_MODEL`: the model the agents ask for.
    pub model: String,
    /// `ATTACH_DEMO_PAGE`, absolute.
    pub page: PathBuf,
    /// `ATTACH_AGENT_BIN`, absolute; `None` for `attach-agent` next to `attach`.
    pub agent_bin: Option<PathBuf>,
}

pub const DEFAULT_MODEL: &str = "tinyllama";
pub const DEFAULT_DEMO_PAGE: &str = "examples/static/demo.html";

impl DevSettings {
    fn from_env(env: Env, cwd: &Path, bind: IpAddr, a2a: bool) -> Result<DevSettings, Error> {
        let enabled = match get(env, "ATTACH_DEV") {
            None => false,
            Some(raw) => on_off("ATTACH_DEV", &raw)?,
        };
        if enabled && !bind.is_loopback() {
            return Err(Error::setting(
                "ATTACH_DEV",
                format!(
                    "on hands out tokens at /dev/token, so the gateway must listen on loopback, not {bind}"
                ),
            ));
        }
        if enabled && !a2a {
            return Err(Error::setting(
                "ATTACH_DEV",
                "the demo agents need the companion service, and ATTACH_A2A is off",
            ));
        }
        Ok(DevSettings {
            enabled,
            model: get(env, "ATTACH_MODEL").unwrap_or_else(|| DEFAULT_MODEL.to_string()),
            page: absolute(
                cwd,
                &get(env, "ATTACH_DEMO_PAGE").unwrap_or_else(|| DEFAULT_DEMO_PAGE.to_string()),
            ),
            agent_bin: get(env, "ATTACH_AGENT_BIN").map(|p| absolute(cwd, &p)),
        })
    }
}

fn on_off(var: &str, raw: &str) -> Result<bool, Error> {
    match raw.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => Err(Error::setting(
            var,
            format!("{raw:?} is neither on nor off"),
        )),
    }
}

/// The memory mirror's variables; `None` where unset, so a configuration
/// file's `memory` section keeps its own values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemSettings {
    /// `MEM_BACKEND`.
    pub backend: Option<MemBackend>,
    /// `MEM_MAX_BYTES`: text kept per message.
    pub max_bytes: Option<usize>,
    /// `MEM_QUEUE_MAX`: events waiting for delivery, across workers.
    pub queue_max: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MemBackend {
    /// The companion service's store (needs the service).
    Service,
    /// `WEAVIATE_URL`, with `WEAVIATE_API_KEY` sent as a bearer token.
    Weaviate {
        url: String,
        api_key: Option<String>,
    },
    None,
}

impl MemSettings {
    fn from_env(env: Env, a2a: bool) -> Result<MemSettings, Error> {
        let backend = match get(env, "MEM_BACKEND").map(|b| b.to_ascii_lowercase()) {
            None => None,
            Some(b) if b == "service" => {
                if !a2a {
                    return Err(Error::setting(
                        "MEM_BACKEND",
                        "service needs the companion service, and ATTACH_A2A is off",
                    ));
                }
                Some(MemBackend::Service)
            }
            Some(b) if b == "weaviate" => {
                let url = get(env, "WEAVIATE_URL").ok_or_else(|| {
                    Error::setting("WEAVIATE_URL", "required when MEM_BACKEND is weaviate")
                })?;
                parse_url("WEAVIATE_URL", &url)?;
                Some(MemBackend::Weaviate {
                    url,
                    api_key: get(env, "WEAVIATE_API_KEY"),
                })
            }
            Some(b) if b == "none" => Some(MemBackend::None),
            Some(b) => {
                return Err(Error::setting(
                    "MEM_BACKEND",
                    format!("{b:?} is not one of service, weaviate, none"),
                ));
            }
        };
        let number = |var: &str, range: std::ops::RangeInclusive<usize>| match get(env, var) {
            None => Ok(None),
            Some(raw) => raw
                .parse::<usize>()
                .ok()
                .filter(|n| range.contains(n))
                .map(Some)
                .ok_or_else(|| {
                    Error::setting(
                        var,
                        format!(
                            "{raw:?} is not a number from {} to {}",
                            range.start(),
                            range.end()
                        ),
                    )
                }),
        };
        Ok(MemSettings {
            backend,
            max_bytes: number("MEM_MAX_BYTES", 256..=16 * 1024 * 1024)?,
            queue_max: number("MEM_QUEUE_MAX", 1..=10_000_000)?,
        })
    }
}

/// The token budget's variables (the seed's names); `None` where unset, so
/// a configuration file's `budget` section keeps its own values.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetSettings {
    /// `MAX_TOKENS_PER_MIN` in a window of `WINDOW` (60 s when unset).
    pub window: Option<Window>,
    /// `MAX_REQUEST_BYTES`: request bodies above it on counted routes get 413.
    pub max_request_bytes: Option<usize>,
    /// `ATTACH_BUDGET_SYNC_MS`: how often the filter syncs usage with the
    /// companion service.
    pub sync_ms: u64,
}

impl BudgetSettings {
    fn from_env(env: Env) -> Result<BudgetSettings, Error> {
        let tokens = match get(env, "MAX_TOKENS_PER_MIN") {
            None => None,
            Some(raw) => Some(raw.parse::<u64>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                Error::setting(
                    "MAX_TOKENS_PER_MIN",
                    format!("{raw:?} is not a positive number of tokens"),
                )
            })?),
        };
        let seconds = match get(env, "WINDOW") {
            None => None,
            Some(raw) => Some(
                parse_window(&raw).map_err(|m| Error::setting("WINDOW", format!("{raw:?} {m}")))?,
            ),
        };
        let window = match (tokens, seconds) {
            (Some(tokens), seconds) => Some(Window {
                seconds: seconds.unwrap_or(60),
                tokens,
                status: DEFAULT_STATUS,
            }),
            (None, Some(_)) => {
                return Err(Error::setting(
                    "WINDOW",
                    "is the length of MAX_TOKENS_PER_MIN's window: set MAX_TOKENS_PER_MIN too",
                ));
            }
            (None, None) => None,
        };
        let max_request_bytes = match get(env, "MAX_REQUEST_BYTES") {
            None => None,
            Some(raw) => Some(
                raw.parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_REQUEST_BYTES).contains(n))
                    .ok_or_else(|| {
                        Error::setting(
                            "MAX_REQUEST_BYTES",
                            format!("{raw:?} is not a number of bytes (1-{MAX_REQUEST_BYTES})"),
                        )
                    })?,
            ),
        };
        let sync_ms = count(
            env,
            "ATTACH_BUDGET_SYNC_MS",
            SYNC_INTERVAL_MS,
            DEFAULT_SYNC_INTERVAL_MS,
            "milliseconds",
        )?;
        Ok(BudgetSettings {
            window,
            max_request_bytes,
            sync_ms,
        })
    }

    /// Whether a variable turns the budget section on.
    pub fn any(&self) -> bool {
        self.window.is_some() || self.max_request_bytes.is_some()
    }
}

/// The companion A2A service that `attach run` starts next to Envoy.
#[derive(Debug, Clone, PartialEq)]
pub struct A2aSettings {
    /// `ATTACH_A2A`: on unless `off`.
    pub enabled: bool,
    /// `ATTACH_A2A_BIN`, absolute; `None` for `attach-a2a` next to `attach`.
    pub bin: Option<PathBuf>,
    /// `A2A_PORT`; a free port on 127.0.0.1 is picked when unset.
    pub port: Option<u16>,
    /// Where the registered agents come from.
    pub agents: AgentSource,
}

/// `A2A_AGENTS` (a `name=url;options,...` list) or `A2A_CONFIG` (a JSON file).
#[derive(Debug, Clone, PartialEq)]
pub enum AgentSource {
    None,
    List(String),
    /// Absolute.
    File(PathBuf),
}

impl A2aSettings {
    fn from_env(env: Env, cwd: &Path, port: u16) -> Result<Self, Error> {
        let enabled = match get(env, "ATTACH_A2A") {
            None => true,
            Some(raw) => on_off("ATTACH_A2A", &raw)?,
        };
        let off = A2aSettings {
            enabled: false,
            bin: None,
            port: None,
            agents: AgentSource::None,
        };
        if !enabled {
            return Ok(off);
        }
        let bin = get(env, "ATTACH_A2A_BIN").map(|p| absolute(cwd, &p));
        let a2a_port = match get(env, "A2A_PORT") {
            Some(raw) => {
                let p = parse_port("A2A_PORT", &raw)?;
                if p == port {
                    return Err(Error::setting(
                        "A2A_PORT",
                        format!("{p} is also ATTACH_PORT; pick another port"),
                    ));
                }
                Some(p)
            }
            None => None,
        };
        let agents = match (get(env, "A2A_AGENTS"), get(env, "A2A_CONFIG")) {
            (Some(_), Some(_)) => {
                return Err(Error::setting(
                    "A2A_CONFIG",
                    "set either A2A_AGENTS or A2A_CONFIG, not both",
                ));
            }
            (Some(list), None) => AgentSource::List(list),
            (None, Some(path)) => AgentSource::File(absolute(cwd, &path)),
            (None, None) => AgentSource::None,
        };
        Ok(A2aSettings {
            enabled,
            bin,
            port: a2a_port,
            agents,
        })
    }
}

/// The MCP servers behind the gateway, reached at `/mcp/{name}`.
#[derive(Debug, Clone, PartialEq)]
pub struct McpSettings {
    /// Where the registered servers come from (read by [`crate::mcp::servers`]).
    pub servers: McpSource,
    /// `ATTACH_MCP_MAX_BODY_BYTES`: the largest request body on an MCP route.
    pub max_body_bytes: Option<usize>,
}

/// What `ATTACH_MCP_MAX_BODY_BYTES` may be: a JSON-RPC request, never an upload.
const MCP_BODY_BYTES: std::ops::RangeInclusive<usize> = 1_024..=64 * 1024 * 1024;

/// `MCP_SERVERS` (a `name=url;options,...` list) or `MCP_CONFIG` (a JSON file).
#[derive(Debug, Clone, PartialEq)]
pub enum McpSource {
    None,
    List(String),
    /// Absolute.
    File(PathBuf),
}

impl McpSettings {
    fn from_env(env: Env, cwd: &Path) -> Result<Self, Error> {
        let servers = match (get(env, "MCP_SERVERS"), get(env, "MCP_CONFIG")) {
            (Some(_), Some(_)) => {
                return Err(Error::setting(
                    "MCP_CONFIG",
                    "set either MCP_SERVERS or MCP_CONFIG, not both",
                ));
            }
            (Some(list), None) => McpSource::List(list),
            (None, Some(path)) => McpSource::File(absolute(cwd, &path)),
            (None, None) => McpSource::None,
        };
        const BODY: &str = "ATTACH_MCP_MAX_BODY_BYTES";
        let max_body_bytes = match get(env, BODY) {
            None => None,
            Some(raw) => Some(
                raw.parse::<usize>()
                    .ok()
                    .filter(|n| MCP_BODY_BYTES.contains(n))
                    .ok_or_else(|| {
                        Error::setting(
                            BODY,
                            format!(
                                "{raw:?} is not a number of bytes ({}-{})",
                                MCP_BODY_BYTES.start(),
                                MCP_BODY_BYTES.end()
                            ),
                        )
                    })?,
            ),
        };
        Ok(McpSettings {
            servers,
            max_body_bytes,
        })
    }
}

/// The `DID_*` variables; `None` where unset, so a configuration file's
/// `did` section keeps its own values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DidSettings {
    /// `DID_AUD`, split on commas.
    pub audiences: Option<Vec<String>>,
    /// `DID_MAX_TTL`, seconds.
    pub max_ttl_secs: Option<u64>,
    /// `DID_ALLOW`, split on commas; `Some(vec![])` for `DID_ALLOW=none`.
    pub allow: Option<Vec<String>>,
}

/// DID sign-in in the local stack accepts any did:key or did:pkh identity.
pub const DEFAULT_DID_ALLOW: [&str; 2] = ["did:key:*", "did:pkh:*"];

fn comma_list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(String::from)
        .collect()
}

impl DidSettings {
    fn from_env(env: Env) -> Result<DidSettings, Error> {
        let max_ttl_secs = match get(env, "DID_MAX_TTL") {
            Some(raw) => Some(
                raw.parse::<u64>()
                    .ok()
                    .filter(|n| (1..=31_536_000).contains(n))
                    .ok_or_else(|| {
                        Error::setting(
                            "DID_MAX_TTL",
                            format!("{raw:?} is not a number of seconds (1-31536000)"),
                        )
                    })?,
            ),
            None => None,
        };
        let allow = match get(env, "DID_ALLOW") {
            Some(raw) if raw.eq_ignore_ascii_case("none") => Some(Vec::new()),
            Some(raw) => {
                let list = comma_list(&raw);
                for rule in &list {
                    DidPolicy::check_rule(rule).map_err(|m| {
                        Error::setting("DID_ALLOW", format!("{rule:?} {m} (or set none)"))
                    })?;
                }
                Some(list)
            }
            None => None,
        };
        Ok(DidSettings {
            audiences: get(env, "DID_AUD").map(|raw| comma_list(&raw)),
            max_ttl_secs,
            allow,
        })
    }
}

fn get(env: Env, name: &str) -> Option<String> {
    env(name)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// A whole number in `range`, or `default` when `var` is unset.
fn count(
    env: Env,
    var: &str,
    range: std::ops::RangeInclusive<u64>,
    default: u64,
    what: &str,
) -> Result<u64, Error> {
    let Some(raw) = get(env, var) else {
        return Ok(default);
    };
    raw.trim()
        .parse::<u64>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            Error::setting(
                var,
                format!(
                    "{raw:?} is not a number of {what} ({}-{})",
                    range.start(),
                    range.end()
                ),
            )
        })
}

fn rotation(env: Env) -> Result<crate::signing_keys::Rotation, Error> {
    const DAY: u64 = 86_400;
    let days = count(env, "ATTACH_KEY_ROTATION_DAYS", 1..=3650, 30, "days")?;
    let hours = count(env, "ATTACH_KEY_OVERLAP_HOURS", 1..=87_600, 24, "hours")?;
    if hours * 3600 >= days * DAY {
        return Err(Error::setting(
            "ATTACH_KEY_OVERLAP_HOURS",
            format!("{hours} h is not shorter than the rotation period ({days} days)"),
        ));
    }
    Ok(crate::signing_keys::Rotation {
        after_secs: days * DAY,
        overlap_secs: hours * 3600,
    })
}

/// `ATTACH_SIGNING_ALG`, its JWS name in any case; EdDSA when unset.
fn signing_alg(env: Env) -> Result<Algorithm, Error> {
    const VAR: &str = "ATTACH_SIGNING_ALG";
    let Some(raw) = get(env, VAR) else {
        return Ok(Algorithm::default());
    };
    Algorithm::ALL
        .into_iter()
        .find(|alg| alg.name().eq_ignore_ascii_case(raw.trim()))
        .ok_or_else(|| {
            Error::setting(
                VAR,
                format!(
                    "{raw:?} is not a signing algorithm ({} or {})",
                    Algorithm::EdDSA,
                    Algorithm::ES256
                ),
            )
        })
}

fn parse_port(var: &str, raw: &str) -> Result<u16, Error> {
    raw.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| Error::setting(var, format!("{raw:?} is not a port (1-65535)")))
}

fn parse_url(var: &str, raw: &str) -> Result<Url, Error> {
    Url::parse(raw).map_err(|m| Error::setting(var, format!("{raw:?}: {m}")))
}

fn absolute(cwd: &Path, p: &str) -> PathBuf {
    cwd.join(p)
}

impl Settings {
    /// Reads and checks every setting except the Envoy binary and the wasm
    /// file, which only some subcommands need (see [`wasm_path`]).
    pub fn from_env(env: Env, cwd: &Path) -> Result<Settings, Error> {
        let issuer = match get(env, "OIDC_ISSUER") {
            Some(raw) => {
                parse_url("OIDC_ISSUER", &raw)?;
                Some(raw)
            }
            None => None,
        };
        let audiences: Vec<String> = get(env, "OIDC_AUD")
            .map(|raw| comma_list(&raw))
            .unwrap_or_default();
        if issuer.is_some() && audiences.is_empty() {
            return Err(Error::setting(
                "OIDC_AUD",
                "required when OIDC_ISSUER is set",
            ));
        }
        let did = DidSettings::from_env(env)?;

        let engine_url = get(env, "ENGINE_URL").unwrap_or_else(|| DEFAULT_ENGINE_URL.to_string());
        let engine = parse_url("ENGINE_URL", &engine_url)?;
        if engine.path != "/" {
            return Err(Error::setting(
                "ENGINE_URL",
                format!("{engine_url:?}: must not have a path or query (requests keep their own)"),
            ));
        }

        let port = match get(env, "ATTACH_PORT") {
            Some(raw) => parse_port("ATTACH_PORT", &raw)?,
            None => DEFAULT_PORT,
        };

        let bind = match get(env, "ATTACH_BIND") {
            None => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Some(raw) if raw == "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Some(raw) => raw
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .map_err(|_| {
                    Error::setting("ATTACH_BIND", format!("{raw:?} is not an IP address"))
                })?,
        };

        let config_file = get(env, "ATTACH_CONFIG").map(|p| absolute(cwd, &p));

        let concurrency = match get(env, "ATTACH_CONCURRENCY") {
            Some(raw) => raw
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=1024).contains(n))
                .ok_or_else(|| {
                    Error::setting(
                        "ATTACH_CONCURRENCY",
                        format!("{raw:?} is not a number of worker threads (1-1024)"),
                    )
                })?,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };

        let log_level = crate::log_level::choose(get(env, "ATTACH_LOG_LEVEL").as_deref())?;

        let public_url = match get(env, "ATTACH_PUBLIC_URL") {
            Some(raw) => {
                parse_url("ATTACH_PUBLIC_URL", &raw)?;
                raw
            }
            None => format!("http://127.0.0.1:{port}"),
        };

        let data_dir = absolute(
            cwd,
            &get(env, "ATTACH_DATA_DIR").unwrap_or_else(|| DEFAULT_DATA_DIR.to_string()),
        );
        let ca_bundle = absolute(
            cwd,
            &get(env, "ATTACH_CA_BUNDLE").unwrap_or_else(|| DEFAULT_CA_BUNDLE.to_string()),
        );

        let rotation = rotation(env)?;
        let signing_alg = signing_alg(env)?;
        let a2a = A2aSettings::from_env(env, cwd, port)?;
        let mcp = McpSettings::from_env(env, cwd)?;
        let memory = MemSettings::from_env(env, a2a.enabled)?;
        let budget = BudgetSettings::from_env(env)?;
        let dev = DevSettings::from_env(env, cwd, bind, a2a.enabled)?;

        Ok(Settings {
            issuer,
            audiences,
            engine_url,
            engine,
            port,
            bind,
            config_file,
            concurrency,
            log_level,
            public_url,
            data_dir,
            ca_bundle,
            did,
            a2a,
            mcp,
            memory,
            budget,
            dev,
            rotation,
            signing_alg,
        })
    }

    /// Where `attach run` keeps this stack's files: one folder per listener
    /// port, so several stacks can run side by side.
    pub fn run_dir(&self) -> PathBuf {
        self.data_dir.join(format!("run-{}", self.port))
    }

    /// Envoy's admin interface: a Unix socket in the run folder, which is
    /// the operator's alone (mode 0700, the socket 0600). The admin API has
    /// no authentication and can print the configuration and stop Envoy,
    /// so it listens on no TCP port.
    pub fn admin_socket(&self) -> Result<PathBuf, Error> {
        let path = self.run_dir().join(ADMIN_SOCKET);
        let len = path.as_os_str().len();
        if len > MAX_SOCKET_PATH {
            return Err(Error::setting(
                "ATTACH_DATA_DIR",
                format!(
                    "{} is {len} bytes, too long for a Unix socket path (at most {MAX_SOCKET_PATH}); pick a shorter folder",
                    path.display()
                ),
            ));
        }
        Ok(path)
    }

    /// `A2A_PORT`, or a port free right now on 127.0.0.1 other than `avoid`.
    pub fn a2a_port(&self, avoid: &[u16]) -> Result<u16, Error> {
        if let Some(p) = self.a2a.port {
            return Ok(p);
        }
        for _ in 0..8 {
            let probe = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|l| l.local_addr())
                .map_err(|e| {
                    Error::runtime(format!("cannot find a free port for the A2A service: {e}"))
                })?;
            if probe.port() != self.port && !avoid.contains(&probe.port()) {
                return Ok(probe.port());
            }
        }
        Err(Error::runtime(
            "cannot find a free port for the A2A service",
        ))
    }

    /// The URL clients use to reach the listener.
    pub fn gateway_url(&self) -> String {
        match self.bind {
            ip if ip.is_unspecified() => format!("http://127.0.0.1:{}", self.port),
            IpAddr::V6(ip) => format!("http://[{ip}]:{}", self.port),
            IpAddr::V4(ip) => format!("http://{ip}:{}", self.port),
        }
    }
}

/// `ATTACH_WASM` (or the workspace's release build), made absolute; it must exist.
pub fn wasm_path(env: Env, cwd: &Path) -> Result<PathBuf, Error> {
    let raw = get(env, "ATTACH_WASM").unwrap_or_else(|| DEFAULT_WASM.to_string());
    let path = absolute(cwd, &raw);
    if !path.is_file() {
        return Err(Error::setting(
            "ATTACH_WASM",
            format!("{} not found; run `make wasm`", path.display()),
        ));
    }
    Ok(path)
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use std::collections::HashMap;

    /// An environment made of `NAME=value` pairs.
    pub fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| map.get(name).cloned()
    }

    pub fn settings(pairs: &[(&str, &str)]) -> Result<Settings, Error> {
        Settings::from_env(&env_of(pairs), Path::new("/srv/attach"))
    }

    #[test]
    fn defaults() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.issuer, None);
        assert_eq!(s.engine.origin(), "http://127.0.0.1:11434");
        assert_eq!(s.port, 8080);
        assert_eq!(s.bind, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert!(s.concurrency >= 1);
        assert_eq!(s.log_level, "warn");
        assert_eq!(s.public_url, "http://127.0.0.1:8080");
        assert_eq!(s.data_dir, Path::new("/srv/attach/.attach"));
        assert_eq!(s.ca_bundle, Path::new(DEFAULT_CA_BUNDLE));
        assert_eq!(s.gateway_url(), "http://127.0.0.1:8080");
        assert_eq!(s.signing_alg, Algorithm::EdDSA);
    }

    #[test]
    fn budget_variables() {
        let b = settings(&[]).unwrap().budget;
        assert_eq!(
            (b.window, b.max_request_bytes, b.sync_ms),
            (None, None, 1000)
        );
        assert!(!b.any());
        let window = |pairs: &[(&str, &str)]| settings(pairs).unwrap().budget.window.unwrap();
        assert_eq!(
            window(&[("MAX_TOKENS_PER_MIN", "60000")]),
            Window {
                seconds: 60,
                tokens: 60000,
                status: 429
            }
        );
        for (raw, seconds) in [
            ("90", 90),
            ("90s", 90),
            ("15m", 900),
            ("1h", 3600),
            ("1d", 86400),
        ] {
            let w = window(&[("MAX_TOKENS_PER_MIN", "5"), ("WINDOW", raw)]);
            assert_eq!((w.seconds, w.tokens), (seconds, 5), "{raw}");
        }
        let b = settings(&[
            ("MAX_REQUEST_BYTES", "4096"),
            ("ATTACH_BUDGET_SYNC_MS", "250"),
        ])
        .unwrap()
        .budget;
        assert_eq!((b.max_request_bytes, b.sync_ms), (Some(4096), 250));
        assert!(b.any());
        for (pairs, var, says) in [
            (
                &[("MAX_TOKENS_PER_MIN", "0")][..],
                "MAX_TOKENS_PER_MIN",
                "positive",
            ),
            (
                &[("MAX_TOKENS_PER_MIN", "lots")][..],
                "MAX_TOKENS_PER_MIN",
                "positive",
            ),
            (
                &[("MAX_TOKENS_PER_MIN", "5"), ("WINDOW", "1w")][..],
                "WINDOW",
                "15m",
            ),
            (
                &[("MAX_TOKENS_PER_MIN", "5"), ("WINDOW", "400d")][..],
                "WINDOW",
                "a year",
            ),
            (&[("WINDOW", "60")][..], "WINDOW", "MAX_TOKENS_PER_MIN"),
            (
                &[("MAX_REQUEST_BYTES", "0")][..],
                "MAX_REQUEST_BYTES",
                "1-268435456",
            ),
            (
                &[("MAX_REQUEST_BYTES", "268435457")][..],
                "MAX_REQUEST_BYTES",
                "bytes",
            ),
            (
                &[("ATTACH_BUDGET_SYNC_MS", "99")][..],
                "ATTACH_BUDGET_SYNC_MS",
                "100-60000",
            ),
        ] {
            let e = settings(pairs).unwrap_err();
            assert_eq!(e.var(), Some(var), "{pairs:?}: {e}");
            assert!(e.to_string().contains(says), "{pairs:?}: {e}");
        }
    }

    #[test]
    fn the_signing_algorithm_is_eddsa_or_es256() {
        for (raw, alg) in [
            ("EdDSA", Algorithm::EdDSA),
            ("eddsa", Algorithm::EdDSA),
            ("ES256", Algorithm::ES256),
            (" es256 ", Algorithm::ES256),
        ] {
            let s = settings(&[("ATTACH_SIGNING_ALG", raw)]).unwrap();
            assert_eq!(s.signing_alg, alg, "{raw}");
        }
        for raw in ["RS256", "HS256", "none", "ES384"] {
            let e = settings(&[("ATTACH_SIGNING_ALG", raw)]).unwrap_err();
            assert_eq!(e.var(), Some("ATTACH_SIGNING_ALG"));
            assert!(e.to_string().contains("EdDSA or ES256"), "{e}");
            assert_eq!(e.exit_code(), 2);
        }
    }

    #[test]
    fn values_are_read() {
        let s = settings(&[
            ("OIDC_ISSUER", "https://idp.example"),
            ("OIDC_AUD", " api , ,cli "),
            ("ENGINE_URL", "https://engine.example:8443/"),
            ("ATTACH_PORT", "9000"),
            ("ATTACH_BIND", "0.0.0.0"),
            ("ATTACH_CONFIG", "conf/attach.yaml"),
            ("ATTACH_CONCURRENCY", "3"),
            ("ATTACH_LOG_LEVEL", "DEBUG"),
            ("ATTACH_PUBLIC_URL", "https://gw.example"),
            ("ATTACH_DATA_DIR", "/var/lib/attach"),
            ("ATTACH_CA_BUNDLE", "ca.pem"),
        ])
        .unwrap();
        assert_eq!(s.issuer.as_deref(), Some("https://idp.example"));
        assert_eq!(s.audiences, ["api", "cli"]);
        assert!(s.engine.https);
        assert_eq!(s.engine.port, 8443);
        assert_eq!(s.port, 9000);
        assert_eq!(s.gateway_url(), "http://127.0.0.1:9000");
        assert_eq!(
            s.config_file.as_deref(),
            Some(Path::new("/srv/attach/conf/attach.yaml"))
        );
        assert_eq!(s.concurrency, 3);
        assert_eq!(s.log_level, "debug");
        assert_eq!(s.public_url, "https://gw.example");
        assert_eq!(s.data_dir, Path::new("/var/lib/attach"));
        assert_eq!(s.ca_bundle, Path::new("/srv/attach/ca.pem"));
    }

    #[test]
    fn empty_values_count_as_unset() {
        let s = settings(&[("ATTACH_PORT", ""), ("OIDC_ISSUER", "  ")]).unwrap();
        assert_eq!(s.port, 8080);
        assert_eq!(s.issuer, None);
    }

    #[test]
    fn ipv6_bind() {
        let s = settings(&[("ATTACH_BIND", "[::1]")]).unwrap();
        assert_eq!(s.gateway_url(), "http://[::1]:8080");
    }

    /// An environment, the variable its error must name, and a part of the message.
    type BadCase<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);

    #[test]
    fn bad_values_name_their_variable() {
        let cases: &[BadCase] = &[
            (
                &[("ATTACH_PORT", "80x")],
                "ATTACH_PORT",
                "ATTACH_PORT: \"80x\" is not a port (1-65535)",
            ),
            (&[("ATTACH_PORT", "0")], "ATTACH_PORT", "not a port"),
            (&[("ATTACH_PORT", "65536")], "ATTACH_PORT", "not a port"),
            (
                &[("OIDC_ISSUER", "https://idp.example")],
                "OIDC_AUD",
                "OIDC_AUD: required when OIDC_ISSUER is set",
            ),
            (
                &[("OIDC_ISSUER", "https://idp.example"), ("OIDC_AUD", ",")],
                "OIDC_AUD",
                "required",
            ),
            (
                &[("OIDC_ISSUER", "idp.example"), ("OIDC_AUD", "a")],
                "OIDC_ISSUER",
                "must start with http:// or https://",
            ),
            (&[("ENGINE_URL", "ftp://x")], "ENGINE_URL", "http://"),
            (&[("ENGINE_URL", "http://x/v1")], "ENGINE_URL", "path"),
            (&[("ATTACH_BIND", "example.com")], "ATTACH_BIND", "IP"),
            (
                &[("ATTACH_CONCURRENCY", "0")],
                "ATTACH_CONCURRENCY",
                "\"0\"",
            ),
            (
                &[("ATTACH_CONCURRENCY", "two")],
                "ATTACH_CONCURRENCY",
                "two",
            ),
            (&[("ATTACH_LOG_LEVEL", "loud")], "ATTACH_LOG_LEVEL", "loud"),
            (
                &[("ATTACH_PUBLIC_URL", "gw.example")],
                "ATTACH_PUBLIC_URL",
                "gw.example",
            ),
        ];
        for (pairs, var, needle) in cases {
            let e = settings(pairs).unwrap_err();
            assert_eq!(e.var(), Some(*var), "{pairs:?}: {e}");
            assert!(e.to_string().starts_with(&format!("{var}: ")), "{e}");
            assert!(e.to_string().contains(needle), "{pairs:?}: {e}");
            assert!(!e.to_string().contains('\n'));
            assert_eq!(e.exit_code(), 2);
        }
    }

    #[test]
    fn did_variables() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.did, DidSettings::default());
        let s = settings(&[
            ("DID_AUD", "a, b"),
            ("DID_MAX_TTL", "600"),
            ("DID_ALLOW", "did:key:*,did:pkh:eip155:1:*"),
        ])
        .unwrap();
        assert_eq!(
            s.did.audiences,
            Some(vec!["a".to_string(), "b".to_string()])
        );
        assert_eq!(s.did.max_ttl_secs, Some(600));
        assert_eq!(s.did.allow.as_ref().map(Vec::len), Some(2));
        let s = settings(&[("DID_ALLOW", "None")]).unwrap();
        assert_eq!(s.did.allow, Some(vec![]));
        for (var, value) in [
            ("DID_MAX_TTL", "0"),
            ("DID_MAX_TTL", "1h"),
            ("DID_ALLOW", "key:*"),
        ] {
            let e = settings(&[(var, value)]).unwrap_err();
            assert!(e.to_string().starts_with(&format!("{var}: ")), "{e}");
        }
    }

    #[test]
    fn a2a_variables() {
        let s = settings(&[]).unwrap();
        assert!(s.a2a.enabled, "on by default");
        assert_eq!(s.a2a.bin, None);
        assert_eq!(s.a2a.port, None);
        assert_eq!(s.a2a.agents, AgentSource::None);
        let s = settings(&[
            ("ATTACH_A2A", "on"),
            ("ATTACH_A2A_BIN", "bin/attach-a2a"),
            ("A2A_PORT", "8090"),
            ("A2A_AGENTS", "echo=http://127.0.0.1:9000"),
        ])
        .unwrap();
        assert_eq!(
            s.a2a.bin.as_deref(),
            Some(Path::new("/srv/attach/bin/attach-a2a"))
        );
        assert_eq!(s.a2a.port, Some(8090));
        assert_eq!(s.a2a_port(&[]).unwrap(), 8090);
        assert_eq!(
            s.a2a.agents,
            AgentSource::List("echo=http://127.0.0.1:9000".into())
        );
        let s = settings(&[("A2A_CONFIG", "a2a.json")]).unwrap();
        assert_eq!(
            s.a2a.agents,
            AgentSource::File("/srv/attach/a2a.json".into())
        );
        for off in ["off", "OFF", "false", "0", "no"] {
            let s = settings(&[("ATTACH_A2A", off), ("A2A_PORT", "x")]).unwrap();
            assert!(!s.a2a.enabled, "{off}");
        }
        let s = settings(&[]).unwrap();
        let p = s.a2a_port(&[9901]).unwrap();
        assert!(p != 8080 && p != 9901);
    }

    #[test]
    fn bad_a2a_values_name_their_variable() {
        for (pairs, var) in [
            (&[("ATTACH_A2A", "maybe")][..], "ATTACH_A2A"),
            (&[("A2A_PORT", "x")][..], "A2A_PORT"),
            (&[("A2A_PORT", "8080")][..], "A2A_PORT"),
            (
                &[("A2A_AGENTS", "a=http://x"), ("A2A_CONFIG", "/a.json")][..],
                "A2A_CONFIG",
            ),
        ] {
            let e = settings(pairs).unwrap_err();
            assert_eq!(e.var(), Some(var), "{pairs:?}: {e}");
            assert_eq!(e.exit_code(), 2);
        }
    }

    #[test]
    fn different_ports_get_different_run_dirs() {
        let a = settings(&[("ATTACH_PORT", "8081")]).unwrap();
        let b = settings(&[("ATTACH_PORT", "8082")]).unwrap();
        assert_ne!(a.run_dir(), b.run_dir());
        assert_eq!(a.run_dir(), Path::new("/srv/attach/.attach/run-8081"));
        assert_eq!(b.public_url, "http://127.0.0.1:8082");
    }

    #[test]
    fn admin_socket_is_in_the_run_folder_and_fits() {
        let s = settings(&[("ATTACH_PORT", "8081")]).unwrap();
        assert_eq!(
            s.admin_socket().unwrap(),
            Path::new("/srv/attach/.attach/run-8081/envoy-admin.sock")
        );
        let long = format!("/{}", "d".repeat(100));
        let e = settings(&[("ATTACH_DATA_DIR", long.as_str())])
            .unwrap()
            .admin_socket()
            .unwrap_err();
        assert_eq!(e.var(), Some("ATTACH_DATA_DIR"));
        assert!(
            e.to_string().contains("too long for a Unix socket path"),
            "{e}"
        );
    }

    #[test]
    fn wasm_must_exist() {
        let e = wasm_path(&env_of(&[]), Path::new("/nonexistent")).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("ATTACH_WASM: /nonexistent/{DEFAULT_WASM} not found; run `make wasm`")
        );
        let dir = std::env::temp_dir();
        let file = dir.join(format!("attach-env-test-{}.wasm", std::process::id()));
        std::fs::write(&file, b"\0asm").unwrap();
        let got = wasm_path(
            &env_of(&[("ATTACH_WASM", file.file_name().unwrap().to_str().unwrap())]),
            &dir,
        )
        .unwrap();
        assert_eq!(got, file);
        std::fs::remove_file(&file).unwrap();
    }
}
