//! Plugin configuration: the JSON string Envoy hands the filter at start-up.
//!
//! Parsing and validation live here, away from the host, so that the launcher
//! checks a configuration with exactly the rules the filter applies, and a bad
//! one is refused before Envoy ever starts (or by `envoy --mode validate`).

use crate::alg::Alg;
use crate::budget::config::{Budget, BudgetConfig};
use crate::jwks::key_set::JwkSet;
use crate::mcp::config::{Mcp, McpConfig};
use crate::memory::sink::{Memory, MemoryConfig};
use crate::url::Url;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// The whole plugin configuration as written by users (snake_case JSON).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// OIDC issuers whose tokens are accepted.
    #[serde(default)]
    pub providers: Vec<ProviderConfig>,
    /// Paths served without a token: exact, or a prefix when ending in `*`.
    #[serde(default = "default_public_paths")]
    pub public_paths: Vec<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// Tokens longer than this are refused before any decoding.
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    /// Scopes every request must carry (in `scope` or `scp`), on top of the provider's own.
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// Whether the caller's `Authorization` header goes on to the upstream.
    /// Off by default, like `jwt_authn`'s `forward`: the upstream gets the
    /// identity headers and a token the gateway signed for it, never a
    /// credential it could replay elsewhere (MCP's authorization rules
    /// forbid passing tokens through).
    #[serde(default)]
    pub forward_authorization: bool,
    /// Whether `X-Attach-User`/`X-Attach-Session` are also set on the response.
    #[serde(default = "yes")]
    pub response_headers: bool,
    /// The protected resource's identifier (RFC 9728 `resource`), usually the
    /// gateway's public base URL; when absent it is derived from the request.
    #[serde(default)]
    pub resource: Option<String>,
    /// Advertised in the protected-resource metadata.
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    /// Which Envoy cluster reaches which origin (`https://host[:port]`); every
    /// issuer and JWKS origin the filter calls must appear here.
    #[serde(default)]
    pub clusters: BTreeMap<String, String>,
    #[serde(default)]
    pub jwks: JwksTiming,
    /// Self-issued DID-JWTs (`iss` starting with `did:`); refused when absent.
    #[serde(default)]
    pub did: Option<DidPolicy>,
    /// Verified tokens kept per worker, so a repeated token skips the signature check.
    #[serde(default = "default_cache_entries")]
    pub cache_entries: usize,
    /// Base64url secret (at least 32 bytes) shared with services behind the
    /// gateway: when set, every request let through also carries
    /// `X-Attach-Assertion`, an HMAC over the identity headers. Written here
    /// it is part of Envoy's configuration, which the admin interface prints
    /// (`/config_dump`); `assertion_key_env` keeps it out of there.
    #[serde(default)]
    pub assertion_key: Option<String>,
    /// The name of a variable of Envoy's own environment that holds the
    /// assertion key (Envoy must pass it to the VM: `vm_config.environment_variables.host_env_keys`).
    #[serde(default)]
    pub assertion_key_env: Option<String>,
    /// The routes whose upstream checks the assertion, each with the audience
    /// the assertion is made for; no other request carries one, so the model
    /// engine never holds an assertion it could replay at a service.
    #[serde(default = "default_assertion_routes")]
    pub assertion_routes: Vec<AssertionRouteConfig>,
    /// Mirror model prompts and replies to a memory sink; off when absent.
    #[serde(default)]
    pub memory: Option<MemoryConfig>,
    /// The gateway's signing keys, the key-set document of
    /// `attach_contract::gateway_keys` as JSON text: when set, every request
    /// let through carries `X-Attach-Identity`, a JWT the gateway signs for
    /// the request's upstream, and the public keys are served at
    /// `/.well-known/jwks.json`. A secret, like `assertion_key`;
    /// `signing_keys_env` keeps it out of Envoy's configuration.
    #[serde(default)]
    pub signing_keys: Option<String>,
    #[serde(default)]
    pub signing_keys_env: Option<String>,
    /// The `iss` of the tokens the gateway signs and of its discovery
    /// document: its public URL; `resource` when absent.
    #[serde(default)]
    pub issuer: Option<String>,
    /// The audience of the identity token per route, the first match
    /// deciding; every request let through matches one (the last default
    /// entry is `/*`, the model engine).
    #[serde(default = "default_identity_routes")]
    pub identity_routes: Vec<AssertionRouteConfig>,
    /// Serve the token endpoint (RFC 8693 token exchange) at `/oauth/token`
    /// when the gateway signs. It reads the request body before anything
    /// goes upstream, which needs Envoy's `allow_on_headers_stop_iteration`
    /// on this filter (without it, Envoy holds the body of a request whose
    /// headers the filter paused, and the endpoint would never answer).
    #[serde(default)]
    pub token_exchange: Option<bool>,
    /// Audiences the token endpoint may issue tokens for besides the gateway itself
    /// and the identity routes' upstreams: registered agents' DIDs, other
    /// upstreams (RFC 8707 resource indicators included).
    #[serde(default)]
    pub exchange_audiences: Vec<String>,
    /// The longest a token the endpoint issues lives (never longer than
    /// its subject, nor than the contract's cap).
    #[serde(default = "default_exchange_lifetime")]
    pub exchange_max_lifetime_secs: u64,
    /// MCP servers behind the gateway, reached at `/mcp/{name}` (see
    /// [`crate::mcp`]).
    #[serde(default)]
    pub mcp: Option<McpConfig>,
    /// Token budgets and usage metering on the model routes (see
    /// [`crate::budget`]); off when absent.
    #[serde(default)]
    pub budget: Option<BudgetConfig>,
}

fn default_exchange_lifetime() -> u64 {
    attach_contract::delegation::MAX_LIFETIME_SECS
}

/// One trusted OIDC issuer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Must equal the token's `iss` (a trailing slash on either side is ignored).
    pub issuer: String,
    /// The token's `aud` must contain at least one of these.
    pub audiences: Vec<String>,
    /// Accepted signature algorithms; all asymmetric ones by default.
    #[serde(default = "all_algs")]
    pub algorithms: Vec<Alg>,
    /// Where the keys are; found through OIDC discovery when absent.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Scopes required of this issuer's tokens.
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// Put before `sub` to make the user (`X-Attach-User`). Default: none
    /// with a single issuer, `"{issuer}#"` with several, so that `alice`
    /// at one issuer is never `alice` at another.
    #[serde(default)]
    pub subject_prefix: Option<String>,
}

/// One entry of [`PluginConfig::assertion_routes`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AssertionRouteConfig {
    /// Exact path, or a prefix when ending in `*`.
    pub path: String,
    /// What the assertion is bound to; the service behind the route checks it.
    pub audience: String,
}

/// The companion service's routes, bound to its audience.
fn default_assertion_routes() -> Vec<AssertionRouteConfig> {
    ["/a2a/*", "/mem/*", "/usage", "/usage/*"]
        .into_iter()
        .map(|path| AssertionRouteConfig {
            path: path.into(),
            audience: attach_contract::assertion::SERVICE_AUDIENCE.into(),
        })
        .collect()
}

/// The audience of the model engine's identity tokens.
pub const ENGINE_AUDIENCE: &str = "attach-engine";

/// The companion service's routes, then everything else: the engine.
fn default_identity_routes() -> Vec<AssertionRouteConfig> {
    let mut routes = default_assertion_routes();
    routes.push(AssertionRouteConfig {
        path: "/*".into(),
        audience: ENGINE_AUDIENCE.into(),
    });
    routes
}

/// Which self-issued DID tokens are accepted. A DID-JWT proves possession of
/// a key, not permission, so audience, lifetime and an allow-list bound it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DidPolicy {
    /// The token's `aud` must contain at least one of these.
    pub audiences: Vec<String>,
    /// Longest accepted lifetime: `exp - iat` (or `exp - now` without `iat`).
    #[serde(default = "default_did_max_ttl")]
    pub max_ttl_secs: u64,
    /// Exact DIDs, or prefixes ending in `*` such as `did:key:*`.
    pub allow: Vec<String>,
    /// Says that prefix rules are meant to let in anyone who makes a
    /// matching key. Required for them next to OIDC providers: there an
    /// open door beside the provider is more likely a mistake than a wish.
    #[serde(default)]
    pub open: bool,
}

fn default_did_max_ttl() -> u64 {
    3_600
}

impl DidPolicy {
    /// An allow-list rule is a DID, or a prefix with one `*` at the end.
    pub fn check_rule(rule: &str) -> Result<(), &'static str> {
        if !rule.starts_with("did:") || rule.strip_suffix('*').unwrap_or(rule).contains('*') {
            return Err("must be a DID or a prefix such as did:key:* (one * at the end)");
        }
        Ok(())
    }

    /// Whether some rule is a prefix: anyone can create a key whose DID
    /// matches one, so such a policy lets anyone sign in.
    pub fn admits_anyone(&self) -> bool {
        self.allow.iter().any(|rule| rule.ends_with('*'))
    }

    /// Writes exact rules the way verified DIDs are written
    /// ([`crate::did::canonical`]), so a rule naming a did:pkh account in its
    /// checksum case still matches the key it names.
    fn canonical(mut self) -> DidPolicy {
        for rule in &mut self.allow {
            if !rule.ends_with('*') {
                if let std::borrow::Cow::Owned(c) = crate::did::canonical(rule) {
                    *rule = c;
                }
            }
        }
        self
    }

    /// `did` is already canonical ([`crate::did::canonical`]).
    pub fn allows(&self, did: &str) -> bool {
        self.allow.iter().any(|rule| match rule.strip_suffix('*') {
            Some(prefix) => did.starts_with(prefix),
            None => did == rule,
        })
    }
}

/// When key sets are fetched and refreshed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JwksTiming {
    /// Key sets are refetched this often, in the background.
    pub refresh_secs: u64,
    /// An unknown `kid` triggers at most one early refetch per issuer per this window.
    pub unknown_kid_refetch_secs: u64,
    /// How long a request may wait for the first key set before a 503.
    pub wait_ms: u64,
    /// Timeout of one discovery or JWKS callout.
    pub fetch_timeout_ms: u64,
    /// First retry delay after a failed fetch; doubles up to `retry_max_ms`.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
}

impl JwksTiming {
    /// A week: key sets rotate far more often, and larger values only risk
    /// overflowing the schedule's arithmetic.
    pub const MAX_REFRESH_SECS: u64 = 7 * 24 * 3_600;
    /// A request held longer than a minute has long been given up by its client.
    pub const MAX_WAIT_MS: u64 = 60_000;
    /// An hour between retries of a failing provider.
    pub const MAX_RETRY_MS: u64 = 3_600_000;
}

impl Default for JwksTiming {
    fn default() -> Self {
        JwksTiming {
            refresh_secs: 600,
            unknown_kid_refetch_secs: 30,
            wait_ms: 5_000,
            fetch_timeout_ms: 5_000,
            retry_initial_ms: 500,
            retry_max_ms: 30_000,
        }
    }
}

fn default_public_paths() -> Vec<String> {
    vec![
        crate::RESOURCE_METADATA_PATH.to_string(),
        "/healthz".to_string(),
    ]
}
fn default_leeway() -> u64 {
    60
}
fn default_max_token_bytes() -> usize {
    8 * 1024
}
fn default_cache_entries() -> usize {
    10_000
}
fn yes() -> bool {
    true
}
fn all_algs() -> Vec<Alg> {
    Alg::ALL.to_vec()
}

/// A configuration the user must fix: `path` names the offending field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

fn err(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.into(),
        message: message.into(),
    }
}

/// A path rule from [`PluginConfig::public_paths`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathRule {
    Exact(String),
    Prefix(String),
}

impl PathRule {
    /// `/exact`, or `/prefix*`.
    fn parse(rule: &str) -> Result<PathRule, &'static str> {
        if !rule.starts_with('/') {
            return Err("must start with /");
        }
        Ok(match rule.strip_suffix('*') {
            Some(prefix) => PathRule::Prefix(prefix.to_string()),
            None => PathRule::Exact(rule.to_string()),
        })
    }

    pub fn matches(&self, path: &str) -> bool {
        // The query string never decides whether a path is public.
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        match self {
            PathRule::Exact(p) => path == p,
            PathRule::Prefix(p) => path.starts_with(p.as_str()),
        }
    }
}

/// One provider after validation, with its URLs parsed.
#[derive(Clone, Debug)]
pub struct Provider {
    /// The issuer as configured, trailing slash removed (the comparison form).
    pub issuer: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Alg>,
    /// Discovery document URL, used only when `jwks_uri` is not configured.
    pub discovery: Url,
    pub jwks_uri: Option<Url>,
    pub required_scopes: Vec<String>,
    /// Put before `sub` to make the user; see [`ProviderConfig::subject_prefix`].
    pub subject_prefix: String,
}

/// A validated [`AssertionRouteConfig`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssertionRoute {
    pub path: PathRule,
    pub audience: String,
}

/// A configuration that passed every check; what the filter runs with.
#[derive(Clone, Debug)]
pub struct Config {
    pub providers: Vec<Provider>,
    pub public_paths: Vec<PathRule>,
    pub leeway_secs: u64,
    pub max_token_bytes: usize,
    pub required_scopes: Vec<String>,
    pub forward_authorization: bool,
    pub response_headers: bool,
    pub resource: Option<String>,
    pub scopes_supported: Vec<String>,
    pub clusters: BTreeMap<String, String>,
    pub jwks: JwksTiming,
    pub did: Option<DidPolicy>,
    pub cache_entries: usize,
    pub assertion_key: Option<Vec<u8>>,
    pub assertion_routes: Vec<AssertionRoute>,
    pub memory: Option<Memory>,
    pub signing: Option<Signing>,
    pub mcp: Option<Mcp>,
    pub budget: Option<Budget>,
}

/// The gateway as an issuer: the keys it signs with, the name it signs
/// under, and the audience of each route's identity token.
#[derive(Clone, Debug)]
pub struct Signing {
    pub keys: attach_contract::gateway_keys::SigningKeys,
    pub issuer: String,
    pub routes: Vec<AssertionRoute>,
    /// Whether the token endpoint is served (see `PluginConfig::token_exchange`).
    pub token_endpoint: bool,
    /// The keys of the gateway's JWKS, as the filter's verifiers hold a
    /// provider's: what the gateway's own tokens are checked with.
    pub own_keys: Arc<JwkSet>,
    /// Audiences the token endpoint issues for besides the issuer and the
    /// routes' own.
    pub exchange_audiences: Vec<String>,
    pub exchange_lifetime_secs: u64,
}

impl Signing {
    /// Whether the token endpoint may issue a token for `audience`: the
    /// gateway itself, an identity route's upstream, or a configured one.
    pub fn knows_audience(&self, audience: &str) -> bool {
        audience == self.issuer
            || self.routes.iter().any(|r| r.audience == audience)
            || self.exchange_audiences.iter().any(|a| a == audience)
    }

    /// The audience of the identity token a request to `path` carries.
    pub fn audience(&self, path: &str) -> Option<&str> {
        self.routes
            .iter()
            .find(|r| r.path.matches(path))
            .map(|r| r.audience.as_str())
    }
}

/// No two issuers may produce the same user: when one prefix starts
/// another's, `prefix + sub` of one can equal `prefix + sub` of the other.
/// (Issuer URLs contain no `#`, so the default prefixes never collide.)
fn check_distinct_users(providers: &[Provider]) -> Result<(), ConfigError> {
    for (i, p) in providers.iter().enumerate() {
        for (j, q) in providers.iter().enumerate() {
            if i != j && q.subject_prefix.starts_with(&p.subject_prefix) {
                return Err(err(
                    format!("providers[{j}].subject_prefix"),
                    format!(
                        "{:?} starts with the subject prefix of providers[{i}] ({:?}), so two issuers could name the same user",
                        q.subject_prefix, p.subject_prefix
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Removes one trailing slash: `https://idp/` and `https://idp` name the same issuer.
pub fn normalize_issuer(iss: &str) -> &str {
    iss.strip_suffix('/').unwrap_or(iss)
}

/// Reads one environment variable; `None` when unset.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// This process's environment (inside Envoy: the variables Envoy hands the VM).
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// A secret written in the configuration, or read from the variable that
/// `{field}_env` names; never both.
fn secret(
    field: &str,
    literal: Option<String>,
    var: Option<&str>,
    env: Env,
) -> Result<Option<String>, ConfigError> {
    let at = format!("{field}_env");
    let Some(var) = var else {
        return Ok(literal);
    };
    if literal.is_some() {
        return Err(err(at, format!("set {field} or {field}_env, not both")));
    }
    if var.is_empty() || var.contains(['=', '\0']) {
        return Err(err(at, "must name an environment variable"));
    }
    match env(var) {
        Some(value) if !value.trim().is_empty() => Ok(Some(value.trim().to_string())),
        _ => Err(err(
            at,
            format!(
                "{var} is not set in Envoy's environment (pass it to the VM with vm_config.environment_variables.host_env_keys)"
            ),
        )),
    }
}

impl Config {
    /// Parses and validates the plugin configuration JSON; secrets named by
    /// `*_env` fields come from this process's environment.
    pub fn from_json(json: &[u8]) -> Result<Config, ConfigError> {
        Config::from_json_with_env(json, &process_env)
    }

    /// [`Config::from_json`], with secrets looked up in `env` (the launcher
    /// passes the variables it will give Envoy).
    pub fn from_json_with_env(json: &[u8], env: Env) -> Result<Config, ConfigError> {
        // One reader type for both: each would carry its own copy of the
        // configuration's deserialiser into the wasm module.
        let json: &[u8] = if json.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            json
        };
        let raw: PluginConfig = serde_json::from_slice(json)
            .map_err(|e| err("", format!("invalid plugin configuration: {e}")))?;
        raw.validate_with_env(env)
    }

    /// The cluster that reaches `url`, if the configuration names one.
    pub fn cluster_for(&self, url: &Url) -> Option<&str> {
        self.clusters.get(&url.origin()).map(String::as_str)
    }

    /// The provider for a token's `iss`, with its index (the key store's id for it).
    pub fn provider_index(&self, iss: &str) -> Option<(usize, &Provider)> {
        let iss = normalize_issuer(iss);
        self.providers
            .iter()
            .enumerate()
            .find(|(_, p)| p.issuer == iss)
    }

    pub fn is_public(&self, path: &str) -> bool {
        self.public_paths.iter().any(|r| r.matches(path))
    }

    /// The audience of the assertion a request to `path` carries, if any
    /// (the first matching route decides).
    pub fn assertion_audience(&self, path: &str) -> Option<&str> {
        self.assertion_routes
            .iter()
            .find(|r| r.path.matches(path))
            .map(|r| r.audience.as_str())
    }
}

impl PluginConfig {
    pub fn validate_with_env(self, env: Env) -> Result<Config, ConfigError> {
        let mut providers = Vec::with_capacity(self.providers.len());
        let mut clusters = BTreeMap::new();
        for (origin, cluster) in &self.clusters {
            let url = Url::parse(origin)
                .map_err(|m| err(format!("clusters[{origin:?}]"), format!("origin {m}")))?;
            if cluster.is_empty() {
                return Err(err(
                    format!("clusters[{origin:?}]"),
                    "cluster name is empty",
                ));
            }
            clusters.insert(url.origin(), cluster.clone());
        }
        let provider_count = self.providers.len();
        for (i, p) in self.providers.into_iter().enumerate() {
            let at = |field: &str| format!("providers[{i}].{field}");
            let issuer = normalize_issuer(p.issuer.trim()).to_string();
            let issuer_url = Url::parse(&issuer).map_err(|m| err(at("issuer"), m))?;
            if providers.iter().any(|q: &Provider| q.issuer == issuer) {
                return Err(err(at("issuer"), format!("{issuer} is configured twice")));
            }
            if p.audiences.is_empty() || p.audiences.iter().any(|a| a.trim().is_empty()) {
                return Err(err(
                    at("audiences"),
                    "at least one non-empty audience is required",
                ));
            }
            if p.algorithms.is_empty() {
                return Err(err(at("algorithms"), "at least one algorithm is required"));
            }
            let discovery = Url::parse(&format!("{issuer}/.well-known/openid-configuration"))
                .map_err(|m| err(at("issuer"), m))?;
            let jwks_uri = match &p.jwks_uri {
                Some(u) => Some(Url::parse(u).map_err(|m| err(at("jwks_uri"), m))?),
                None => None,
            };
            let fetched = jwks_uri.as_ref().unwrap_or(&issuer_url);
            if !clusters.contains_key(&fetched.origin()) {
                return Err(err(
                    "clusters",
                    format!(
                        "no Envoy cluster for {} (needed by providers[{i}])",
                        fetched.origin()
                    ),
                ));
            }
            let subject_prefix = match p.subject_prefix {
                Some(prefix) => {
                    if prefix.starts_with("did:") || prefix.chars().any(char::is_control) {
                        return Err(err(
                            at("subject_prefix"),
                            "must not start with did: or contain control characters",
                        ));
                    }
                    prefix
                }
                None if provider_count > 1 => format!("{issuer}#"),
                None => String::new(),
            };
            providers.push(Provider {
                issuer,
                audiences: p.audiences,
                algorithms: p.algorithms,
                discovery,
                jwks_uri,
                required_scopes: p.required_scopes,
                subject_prefix,
            });
        }
        check_distinct_users(&providers)?;
        let public_paths = self
            .public_paths
            .iter()
            .enumerate()
            .map(|(i, p)| PathRule::parse(p).map_err(|m| err(format!("public_paths[{i}]"), m)))
            .collect::<Result<Vec<_>, _>>()?;
        let assertion_routes = route_audiences("assertion_routes", &self.assertion_routes)?;
        if self.max_token_bytes < 64 || self.max_token_bytes > 1024 * 1024 {
            return Err(err("max_token_bytes", "must be between 64 and 1048576"));
        }
        if self.cache_entries > 1_000_000 {
            return Err(err("cache_entries", "must be at most 1000000"));
        }
        let j = &self.jwks;
        if !(10..=JwksTiming::MAX_REFRESH_SECS).contains(&j.refresh_secs) {
            return Err(err(
                "jwks.refresh_secs",
                format!("must be from 10 to {}", JwksTiming::MAX_REFRESH_SECS),
            ));
        }
        for (field, value, max) in [
            (
                "jwks.unknown_kid_refetch_secs",
                j.unknown_kid_refetch_secs,
                JwksTiming::MAX_REFRESH_SECS,
            ),
            ("jwks.wait_ms", j.wait_ms, JwksTiming::MAX_WAIT_MS),
            (
                "jwks.fetch_timeout_ms",
                j.fetch_timeout_ms,
                JwksTiming::MAX_WAIT_MS,
            ),
            (
                "jwks.retry_initial_ms",
                j.retry_initial_ms,
                JwksTiming::MAX_RETRY_MS,
            ),
            (
                "jwks.retry_max_ms",
                j.retry_max_ms,
                JwksTiming::MAX_RETRY_MS,
            ),
        ] {
            if value > max {
                return Err(err(field, format!("must be at most {max}")));
            }
        }
        if j.fetch_timeout_ms == 0 || j.retry_initial_ms == 0 || j.retry_max_ms < j.retry_initial_ms
        {
            return Err(err(
                "jwks",
                "fetch_timeout_ms and retry_initial_ms must be positive, retry_max_ms at least retry_initial_ms",
            ));
        }
        if let Some(r) = &self.resource {
            Url::parse(r).map_err(|m| err("resource", m))?;
        }
        if let Some(d) = &self.did {
            if d.audiences.is_empty() || d.audiences.iter().any(|a| a.trim().is_empty()) {
                return Err(err(
                    "did.audiences",
                    "at least one non-empty audience is required",
                ));
            }
            if d.max_ttl_secs == 0 {
                return Err(err("did.max_ttl_secs", "must be positive"));
            }
            for (i, rule) in d.allow.iter().enumerate() {
                DidPolicy::check_rule(rule).map_err(|m| err(format!("did.allow[{i}]"), m))?;
            }
            if !providers.is_empty() && d.admits_anyone() && !d.open {
                return Err(err(
                    "did.allow",
                    "a prefix rule lets anyone who makes a key sign in next to the OIDC providers: list the DIDs allowed, or set did.open to true",
                ));
            }
        }
        let key_field = match &self.assertion_key_env {
            Some(_) => "assertion_key_env",
            None => "assertion_key",
        };
        let assertion_key = match secret(
            "assertion_key",
            self.assertion_key,
            self.assertion_key_env.as_deref(),
            env,
        )? {
            Some(k) => {
                use base64::Engine;
                let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(k.trim_end_matches('='))
                    .map_err(|_| err(key_field, "the key must be base64url"))?;
                if key.len() < attach_contract::assertion::MIN_KEY_BYTES {
                    return Err(err(key_field, "the key must decode to at least 32 bytes"));
                }
                Some(key)
            }
            None => None,
        };
        let memory = match self.memory {
            Some(mut m) => {
                m.api_key = secret(
                    "memory.api_key",
                    m.api_key.take(),
                    m.api_key_env.as_deref(),
                    env,
                )?;
                let m = m
                    .validate(assertion_key.as_deref())
                    .map_err(|(path, message)| err(path, message))?;
                if !clusters.contains_key(&m.sink.url.origin()) {
                    return Err(err(
                        "clusters",
                        format!(
                            "no Envoy cluster for {} (needed by memory.url)",
                            m.sink.url.origin()
                        ),
                    ));
                }
                Some(m)
            }
            None => None,
        };
        let budget = match self.budget {
            Some(mut b) => {
                if let Some(sync) = &mut b.sync {
                    sync.api_key = secret(
                        "budget.sync.api_key",
                        sync.api_key.take(),
                        sync.api_key_env.as_deref(),
                        env,
                    )?;
                }
                Some(
                    b.validate(&clusters, assertion_key.as_deref())
                        .map_err(|(path, message)| err(path, message))?,
                )
            }
            None => None,
        };
        let resource = self.resource.map(|r| r.trim_end_matches('/').to_string());
        let mcp = self
            .mcp
            .map(|m| m.validate(resource.as_deref()))
            .transpose()
            .map_err(|(at, message)| err(at, message))?;
        let signing = match secret(
            "signing_keys",
            self.signing_keys,
            self.signing_keys_env.as_deref(),
            env,
        )? {
            Some(text) => {
                let field = match &self.signing_keys_env {
                    Some(_) => "signing_keys_env",
                    None => "signing_keys",
                };
                let keys = attach_contract::gateway_keys::SigningKeys::parse(&text)
                    .map_err(|e| err(field, e.to_string()))?;
                let issuer = self
                    .issuer
                    .as_deref()
                    .or(resource.as_deref())
                    .ok_or_else(|| {
                        err(
                            "issuer",
                            "signing needs the gateway's public URL (issuer or resource)",
                        )
                    })?;
                Url::parse(issuer).map_err(|m| err("issuer", m))?;
                let own_keys = JwkSet::parse(keys.jwks(0).to_string().as_bytes())
                    .map_err(|e| err(field, e.to_string()))?;
                Some(Signing {
                    token_endpoint: self.token_exchange == Some(true),
                    own_keys: Arc::new(own_keys),
                    keys,
                    issuer: issuer.trim_end_matches('/').to_string(),
                    routes: mcp_routes(mcp.as_ref())
                        .chain(route_audiences("identity_routes", &self.identity_routes)?)
                        .collect(),
                    exchange_audiences: exchange_audiences(&self.exchange_audiences)?,
                    exchange_lifetime_secs: match self.exchange_max_lifetime_secs {
                        0 => {
                            return Err(err("exchange_max_lifetime_secs", "must be at least 1"));
                        }
                        secs => secs.min(attach_contract::delegation::MAX_LIFETIME_SECS),
                    },
                })
            }
            None => None,
        };
        Ok(Config {
            providers,
            public_paths,
            leeway_secs: self.leeway_secs,
            max_token_bytes: self.max_token_bytes,
            required_scopes: self.required_scopes,
            forward_authorization: self.forward_authorization,
            response_headers: self.response_headers,
            resource,
            scopes_supported: self.scopes_supported,
            clusters,
            jwks: self.jwks,
            did: self.did.map(DidPolicy::canonical),
            cache_entries: self.cache_entries,
            assertion_key,
            assertion_routes,
            memory,
            signing,
            mcp,
            budget,
        })
    }
}

/// The identity routes of the MCP servers: each server's requests carry an
/// identity token for its canonical URI, and only for it. They come before
/// the configured routes, so that no broader route names another audience.
fn mcp_routes(mcp: Option<&Mcp>) -> impl Iterator<Item = AssertionRoute> + '_ {
    mcp.into_iter().flat_map(|m| &m.servers).flat_map(|s| {
        let route = attach_contract::mcp::route(&s.name);
        [
            PathRule::Prefix(format!("{route}/")),
            PathRule::Exact(route),
        ]
        .map(|path| AssertionRoute {
            path,
            audience: s.canonical_uri.clone(),
        })
    })
}

/// The token endpoint's extra audiences: each a plain identifier (a DID,
/// a name or a URI) in visible ASCII, never a wildcard.
fn exchange_audiences(audiences: &[String]) -> Result<Vec<String>, ConfigError> {
    for (i, audience) in audiences.iter().enumerate() {
        if audience.is_empty()
            || !audience
                .bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b'*')
        {
            return Err(err(
                format!("exchange_audiences[{i}]"),
                "must be visible ASCII, without '*'",
            ));
        }
    }
    Ok(audiences.to_vec())
}

/// Routes bound to audiences, as `field` writes them.
fn route_audiences(
    field: &str,
    routes: &[AssertionRouteConfig],
) -> Result<Vec<AssertionRoute>, ConfigError> {
    routes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let at = |name: &str| format!("{field}[{i}].{name}");
            let path = PathRule::parse(&r.path).map_err(|m| err(at("path"), m))?;
            if !attach_contract::assertion::valid_audience(&r.audience) {
                return Err(err(
                    at("audience"),
                    "must be 1-64 letters, digits, '_', ':' or '-'",
                ));
            }
            if r.audience == attach_contract::assertion::MIRROR_AUDIENCE {
                return Err(err(
                    at("audience"),
                    "is reserved for the memory mirror's own deliveries",
                ));
            }
            Ok(AssertionRoute {
                path,
                audience: r.audience.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider_json(issuer: &str) -> String {
        format!(
            r#"{{"providers":[{{"issuer":"{issuer}","audiences":["api"]}}],
                "clusters":{{"https://idp.example":"idp"}}}}"#
        )
    }

    #[test]
    fn empty_config_has_defaults() {
        let c = Config::from_json(b"").unwrap();
        assert!(c.providers.is_empty());
        assert!(c.is_public("/.well-known/oauth-protected-resource"));
        assert!(c.is_public("/healthz?x=1"));
        assert!(!c.is_public("/healthz/x"));
        assert_eq!(c.leeway_secs, 60);
        assert_eq!(c.max_token_bytes, 8192);
        assert!(!c.forward_authorization);
    }

    #[test]
    fn provider_defaults_and_lookup() {
        let c = Config::from_json(provider_json("https://idp.example/").as_bytes()).unwrap();
        let (i, p) = c.provider_index("https://idp.example").unwrap();
        assert_eq!(i, 0);
        assert_eq!(p.algorithms.len(), Alg::ALL.len());
        assert_eq!(
            p.discovery.path,
            "/.well-known/openid-configuration".to_string()
        );
        assert!(c.provider_index("https://idp.example/").is_some());
        assert!(c.provider_index("https://idp.example.evil").is_none());
        assert_eq!(c.cluster_for(&p.discovery), Some("idp"));
    }

    #[test]
    fn subject_prefixes_keep_issuers_apart() {
        let two = |a: &str, b: &str| {
            Config::from_json(
                format!(
                    r#"{{"providers":[{{"issuer":"https://idp.example","audiences":["api"]{a}}},
                                      {{"issuer":"https://idp.example/b","audiences":["api"]{b}}}],
                        "clusters":{{"https://idp.example":"idp"}}}}"#
                )
                .as_bytes(),
            )
        };
        let c = two("", "").unwrap();
        let prefixes: Vec<_> = c
            .providers
            .iter()
            .map(|p| p.subject_prefix.as_str())
            .collect();
        assert_eq!(prefixes, ["https://idp.example#", "https://idp.example/b#"]);
        let single = Config::from_json(provider_json("https://idp.example").as_bytes()).unwrap();
        assert_eq!(single.providers[0].subject_prefix, "");
        assert!(two(r#","subject_prefix":"a:""#, r#","subject_prefix":"b:""#).is_ok());
        for (a, b) in [
            (r#","subject_prefix":"""#, ""),
            (r#","subject_prefix":"a""#, r#","subject_prefix":"ab""#),
            (r#","subject_prefix":"x""#, r#","subject_prefix":"x""#),
            (r#","subject_prefix":"did:x:""#, ""),
            (r#","subject_prefix":"a\u0000""#, ""),
        ] {
            let e = two(a, b).unwrap_err().to_string();
            assert!(e.contains("subject_prefix"), "{a} {b}: {e}");
        }
    }

    #[test]
    fn assertions_go_only_to_the_routes_that_name_an_audience() {
        let c = Config::from_json(b"{}").unwrap();
        assert_eq!(c.assertion_audience("/a2a/agents/x"), Some("attach-a2a"));
        assert_eq!(
            c.assertion_audience("/mem/events?limit=1"),
            Some("attach-a2a")
        );
        assert_eq!(c.assertion_audience("/usage?user=bob"), Some("attach-a2a"));
        assert_eq!(
            c.assertion_audience("/usage/overrides/bob"),
            Some("attach-a2a")
        );
        assert_eq!(c.assertion_audience("/usages"), None);
        assert_eq!(c.assertion_audience("/api/chat"), None);
        assert_eq!(c.assertion_audience("/v1/chat/completions"), None);
        let own = Config::from_json(
            br#"{"assertion_routes":[{"path":"/tools/*","audience":"tools"},{"path":"/x","audience":"x"}]}"#,
        )
        .unwrap();
        assert_eq!(own.assertion_audience("/tools/run"), Some("tools"));
        assert_eq!(own.assertion_audience("/x"), Some("x"));
        assert_eq!(own.assertion_audience("/a2a/agents/x"), None);
        for (bad, path) in [
            (
                r#"[{"path":"tools","audience":"t"}]"#,
                "assertion_routes[0].path",
            ),
            (
                r#"[{"path":"/t","audience":"a.b"}]"#,
                "assertion_routes[0].audience",
            ),
            (
                r#"[{"path":"/t","audience":""}]"#,
                "assertion_routes[0].audience",
            ),
            (
                r#"[{"path":"/t","audience":"attach-mirror"}]"#,
                "assertion_routes[0].audience",
            ),
        ] {
            let e = Config::from_json(format!(r#"{{"assertion_routes":{bad}}}"#).as_bytes())
                .unwrap_err();
            assert_eq!(e.path, path, "{bad}");
        }
    }

    #[test]
    fn memory_needs_a_cluster_and_for_the_service_a_key() {
        let key = "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk";
        let service = r#"{"sink":"service","url":"http://attach-a2a/mem/ingest"}"#;
        let with = |memory: &str, extra: &str| {
            Config::from_json(format!(r#"{{"memory":{memory}{extra}}}"#).as_bytes())
        };
        let e = with(service, r#","clusters":{"http://attach-a2a":"a2a"}"#).unwrap_err();
        assert_eq!(e.path, "memory.sink", "{e}");
        let e = with(service, &format!(r#","assertion_key":"{key}""#)).unwrap_err();
        assert_eq!(e.path, "clusters", "{e}");
        let c = with(
            service,
            &format!(r#","assertion_key":"{key}","clusters":{{"http://attach-a2a:80":"a2a"}}"#),
        )
        .unwrap();
        let m = c.memory.unwrap();
        assert_eq!(
            c.clusters.get(&m.sink.url.origin()).map(String::as_str),
            Some("a2a")
        );
        assert!(
            Config::from_json(b"{}").unwrap().memory.is_none(),
            "off by default"
        );
    }

    #[test]
    fn symmetric_algorithms_cannot_be_configured() {
        let json = r#"{"providers":[{"issuer":"https://idp.example","audiences":["a"],
            "algorithms":["HS256"]}],"clusters":{"https://idp.example":"idp"}}"#;
        let e = Config::from_json(json.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("HS256"), "{e}");
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                r#"{"providers":[{"issuer":"idp.example","audiences":["a"]}]}"#,
                "providers[0].issuer",
            ),
            (
                r#"{"providers":[{"issuer":"https://idp.example","audiences":[]}],"clusters":{"https://idp.example":"c"}}"#,
                "providers[0].audiences",
            ),
            (
                r#"{"providers":[{"issuer":"https://idp.example","audiences":["a"]}]}"#,
                "clusters",
            ),
            (r#"{"public_paths":["healthz"]}"#, "public_paths[0]"),
            (r#"{"max_token_bytes":1}"#, "max_token_bytes"),
            (r#"{"bogus":1}"#, "bogus"),
            (r#"{"resource":"ftp://x"}"#, "resource"),
            (r#"{"assertion_key":"c2hvcnQ"}"#, "assertion_key"),
            (r#"{"assertion_key":"!!"}"#, "assertion_key"),
        ];
        for (json, needle) in cases {
            let e = Config::from_json(json.as_bytes()).unwrap_err();
            assert!(e.to_string().contains(needle), "{json}: {e}");
        }
    }

    #[test]
    fn duplicate_issuer_refused() {
        let json = r#"{"providers":[{"issuer":"https://idp.example","audiences":["a"]},
            {"issuer":"https://idp.example/","audiences":["b"]}],"clusters":{"https://idp.example":"c"}}"#;
        assert!(Config::from_json(json.as_bytes()).is_err());
    }

    #[test]
    fn jwks_uri_needs_its_own_cluster() {
        let json = r#"{"providers":[{"issuer":"https://idp.example","audiences":["a"],
            "jwks_uri":"https://keys.example/jwks"}],"clusters":{"https://idp.example":"c"}}"#;
        let e = Config::from_json(json.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("https://keys.example:443"), "{e}");
    }

    #[test]
    fn jwks_timing_is_bounded() {
        for (field, value) in [
            ("refresh_secs", 9),
            ("refresh_secs", JwksTiming::MAX_REFRESH_SECS + 1),
            ("unknown_kid_refetch_secs", JwksTiming::MAX_REFRESH_SECS + 1),
            ("wait_ms", JwksTiming::MAX_WAIT_MS + 1),
            ("fetch_timeout_ms", u64::MAX),
            ("retry_max_ms", JwksTiming::MAX_RETRY_MS + 1),
        ] {
            let json = format!(r#"{{"jwks":{{"{field}":{value}}}}}"#);
            let e = Config::from_json(json.as_bytes()).unwrap_err();
            assert_eq!(e.path, format!("jwks.{field}"), "{json}: {e}");
        }
        let most = format!(
            r#"{{"jwks":{{"refresh_secs":{},"wait_ms":{}}}}}"#,
            JwksTiming::MAX_REFRESH_SECS,
            JwksTiming::MAX_WAIT_MS
        );
        assert!(Config::from_json(most.as_bytes()).is_ok());
    }

    #[test]
    fn did_policy() {
        let c = Config::from_json(
            br#"{"did":{"audiences":["http://gw"],"allow":["did:key:*","did:pkh:eip155:1:0xabc"]}}"#,
        )
        .unwrap();
        let d = c.did.unwrap();
        assert_eq!(d.max_ttl_secs, 3600);
        assert!(d.allows("did:key:z6Mk"));
        assert!(d.allows("did:pkh:eip155:1:0xabc"));
        assert!(!d.allows("did:pkh:eip155:1:0xabcd"));
        assert!(!d.allows("did:web:x"));
        let pkh = "did:pkh:eip155:01:0x2c7536E3605D9C16a7a3D7b1898e529396a65c23";
        let c = Config::from_json(
            format!(r#"{{"did":{{"audiences":["a"],"allow":["{pkh}"]}}}}"#).as_bytes(),
        )
        .unwrap();
        let d = c.did.as_ref().unwrap();
        assert!(d.allows("did:pkh:eip155:1:0x2c7536e3605d9c16a7a3d7b1898e529396a65c23"));
        assert!(!d.allows(pkh), "rules are compared in canonical form only");
        for bad in [
            r#"{"did":{"audiences":[],"allow":[]}}"#,
            r#"{"did":{"audiences":["a"],"allow":["key:*"]}}"#,
            r#"{"did":{"audiences":["a"],"allow":["did:*:x*"]}}"#,
            r#"{"did":{"audiences":["a"],"allow":[],"max_ttl_secs":0}}"#,
        ] {
            assert!(Config::from_json(bad.as_bytes()).is_err(), "{bad}");
        }
        // A multibyte last character is an exact rule, not a slicing hazard.
        assert!(
            Config::from_json(r#"{"did":{"audiences":["a"],"allow":["did:\u00e9"]}}"#.as_bytes())
                .is_ok()
        );
    }

    const KEY: &str = "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk";

    fn env_with(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn secrets_come_from_the_named_variable() {
        let json = br#"{"assertion_key_env":"ATTACH_ASSERTION_KEY",
            "memory":{"sink":"weaviate","url":"http://w:8080","api_key_env":"W_KEY"},
            "clusters":{"http://w:8080":"w"}}"#;
        let env = env_with(&[("ATTACH_ASSERTION_KEY", KEY), ("W_KEY", "s3cret")]);
        let c = Config::from_json_with_env(json, &env).unwrap();
        assert_eq!(c.assertion_key, Some(vec![9u8; 32]));
        let sink = format!("{:?}", c.memory.unwrap().sink);
        assert!(sink.contains(r#"api_key: Some("s3cret")"#), "{sink}");
    }

    #[test]
    fn a_missing_or_short_secret_is_named() {
        let json = br#"{"assertion_key_env":"ATTACH_ASSERTION_KEY"}"#;
        let e = Config::from_json_with_env(json, &env_with(&[])).unwrap_err();
        assert_eq!(e.path, "assertion_key_env");
        assert!(e.message.contains("ATTACH_ASSERTION_KEY is not set"), "{e}");
        let e = Config::from_json_with_env(json, &env_with(&[("ATTACH_ASSERTION_KEY", "c2hvcnQ")]))
            .unwrap_err();
        assert_eq!(e.path, "assertion_key_env");
        assert!(e.message.contains("at least 32 bytes"), "{e}");
        let both = format!(r#"{{"assertion_key":"{KEY}","assertion_key_env":"K"}}"#);
        let e = Config::from_json_with_env(both.as_bytes(), &env_with(&[("K", KEY)])).unwrap_err();
        assert!(e.message.contains("not both"), "{e}");
        let json = br#"{"memory":{"sink":"weaviate","url":"http://w:8080","api_key_env":"W"},
            "clusters":{"http://w:8080":"w"}}"#;
        let e = Config::from_json_with_env(json, &env_with(&[])).unwrap_err();
        assert_eq!(e.path, "memory.api_key_env");
    }

    #[test]
    fn open_did_sign_in_next_to_providers_must_be_explicit() {
        let with = |did: &str| {
            Config::from_json(
                format!(
                    r#"{{"providers":[{{"issuer":"https://idp.example","audiences":["api"]}}],
                    "clusters":{{"https://idp.example":"idp"}},"did":{did}}}"#
                )
                .as_bytes(),
            )
        };
        for open in [
            r#"{"audiences":["a"],"allow":["did:key:*","did:pkh:*"]}"#,
            r#"{"audiences":["a"],"allow":["did:key:z6MkExact","did:pkh:eip155:1:*"]}"#,
        ] {
            let e = with(open).unwrap_err();
            assert_eq!(e.path, "did.allow", "{open}");
            assert!(e.message.contains("did.open"), "{e}");
        }
        assert!(with(r#"{"audiences":["a"],"allow":["did:key:*"],"open":true}"#).is_ok());
        assert!(with(r#"{"audiences":["a"],"allow":["did:key:z6MkExact"]}"#).is_ok());
        // Without providers a prefix is the configuration's plain meaning.
        assert!(Config::from_json(br#"{"did":{"audiences":["a"],"allow":["did:key:*"]}}"#).is_ok());
    }

    #[test]
    fn path_rules() {
        let c = Config::from_json(br#"{"public_paths":["/docs/*","/x"]}"#).unwrap();
        assert!(c.is_public("/docs/a"));
        assert!(c.is_public("/docs/"));
        assert!(!c.is_public("/doc"));
        assert!(c.is_public("/x?q"));
        assert!(!c.is_public("/x/y"));
    }

    #[test]
    fn signing_needs_a_sound_key_set_and_an_issuer() {
        use attach_contract::gateway_keys::{KeySet, new_key};
        let set = serde_json::to_string(&KeySet {
            keys: vec![new_key([8; 32], 0)],
        })
        .unwrap();
        let with = |extra: serde_json::Value| {
            let mut doc = serde_json::json!({"signing_keys": set});
            if let (Some(d), Some(e)) = (doc.as_object_mut(), extra.as_object()) {
                d.extend(e.clone());
            }
            Config::from_json(doc.to_string().as_bytes())
        };
        let e = with(serde_json::json!({})).unwrap_err().to_string();
        assert!(e.contains("issuer"), "{e}");
        let c = with(serde_json::json!({"resource": "https://gw.example/"})).unwrap();
        assert_eq!(c.signing.unwrap().issuer, "https://gw.example");
        let e = Config::from_json(br#"{"signing_keys": "{}", "issuer": "https://gw.example"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("signing_keys"), "{e}");
        let e = with(serde_json::json!({"issuer": "https://gw.example",
            "identity_routes": [{"path": "/x/*", "audience": "has space"}]}))
        .unwrap_err()
        .to_string();
        assert!(e.contains("identity_routes[0].audience"), "{e}");
    }
}
