//! Builds the plugin configuration the filter runs with: the `ATTACH_CONFIG`
//! file (if any) merged with the environment, an Envoy cluster named for
//! every origin the filter calls, and the filter's own validation on top.

use crate::env::DEFAULT_DID_ALLOW;
use crate::env::MemBackend;
use crate::env::Settings;
use crate::error::Error;
use crate::mcp;
use attach_contract::{mcp as mcp_paths, mcp_servers};
use attach_filter::budget::config::{BudgetConfig, SyncConfig};
use attach_filter::config::{
    Config, ConfigError, DidPolicy, PluginConfig, ProviderConfig, normalize_issuer,
};
use attach_filter::mcp::config::McpConfig;
use attach_filter::memory::sink::{MemoryConfig, SinkKind};
use attach_filter::url::Url;
use serde_json::json;
use std::collections::BTreeMap;

/// The final plugin configuration and what the bootstrap needs from it.
#[derive(Debug, Clone)]
pub struct Plugin {
    pub config: PluginConfig,
    /// `config` as the JSON string embedded in the bootstrap.
    pub json: String,
    /// One Envoy cluster per distinct origin of `config.clusters`.
    pub callouts: Vec<Callout>,
    /// The registered MCP servers, each with a cluster and routes of its own.
    pub mcp: Vec<mcp::Server>,
    /// One-line notices for stderr.
    pub warnings: Vec<String>,
    /// Secrets the filter reads from Envoy's environment, by variable name:
    /// they go into Envoy's environment only, never into the bootstrap,
    /// which Envoy's admin interface prints.
    pub secrets: BTreeMap<String, String>,
}

impl Plugin {
    /// The assertion key the filter runs with, if any.
    pub fn assertion_key(&self) -> Option<&str> {
        let var = self.config.assertion_key_env.as_deref()?;
        self.secrets.get(var).map(String::as_str)
    }

    /// The signing key set the filter runs with (its JSON text), if any:
    /// the companion service signs agent cards with the same set.
    pub fn signing_keys(&self) -> Option<&str> {
        let var = self.config.signing_keys_env.as_deref()?;
        self.secrets.get(var).map(String::as_str)
    }

    /// The memory section with its Weaviate key filled in, for the
    /// companion service, which reads from the same store.
    pub fn memory_with_key(&self) -> Option<MemoryConfig> {
        let mut m = self.config.memory.clone()?;
        if let Some(var) = &m.api_key_env {
            m.api_key = self.secrets.get(var).cloned();
        }
        Some(m)
    }
}

/// The variables of Envoy's environment that carry the filter's secrets.
pub const ASSERTION_KEY_VAR: &str = "ATTACH_ASSERTION_KEY";
pub const WEAVIATE_KEY_VAR: &str = "ATTACH_WEAVIATE_API_KEY";
/// The variable of Envoy's environment that holds a file's bearer key for
/// its own usage sync target.
pub const USAGE_KEY_VAR: &str = "ATTACH_USAGE_API_KEY";

/// An origin the filter calls and the Envoy cluster that reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callout {
    pub origin: Url,
    pub cluster: String,
}

/// The name of the cluster that serves the model engine.
pub const ENGINE_CLUSTER: &str = "engine";
const CALLOUT_PREFIX: &str = "attach_callout_";

/// What the plugin configuration needs for the A2A service behind the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The assertion key, used unless the configuration file sets its own.
    pub assertion_key: String,
    /// Exact public paths (the agents' cards), appended to `public_paths`.
    pub public_paths: Vec<String>,
    /// DIDs of agents that act by delegation (the demo's): when DID sign-in
    /// is on, each is admitted by name if `allow` does not already admit
    /// it, since the agents sign their RFC 8693 actor tokens with them.
    pub agent_dids: Vec<String>,
}

/// [`build_with`] without the service and the signing keys.
#[cfg(test)]
pub fn build(settings: &Settings, file: Option<PluginConfig>) -> Result<Plugin, Error> {
    build_with(settings, file, None, None)
}

/// The plugin configuration for `settings` and the configuration file, with
/// the A2A service behind the gateway when `service` is given, and the
/// gateway's signing key set (JSON text) unless the file names its own.
pub fn build_with(
    settings: &Settings,
    file: Option<PluginConfig>,
    service: Option<&Service>,
    signing_keys: Option<&str>,
) -> Result<Plugin, Error> {
    let from_file = file.is_some();
    let mut config = match file {
        Some(c) => c,
        None => serde_json::from_value(json!({}))
            .map_err(|e| Error::runtime(format!("default plugin configuration: {e}")))?,
    };
    let env_provider = match &settings.issuer {
        Some(issuer) => merge_provider(&mut config, issuer, &settings.audiences)?,
        None => None,
    };
    let resource_from_env = config.resource.is_none();
    if resource_from_env {
        config.resource = Some(settings.public_url.clone());
    }
    apply_did(&mut config, settings);
    if let Some(service) = service {
        apply_service(&mut config, service);
    }
    let mcp = mcp::servers(&settings.mcp)?;
    apply_mcp(&mut config, settings, &mcp)?;
    if config.signing_keys.is_none() && config.signing_keys_env.is_none() {
        config.signing_keys = signing_keys.map(str::to_string);
    }
    // The bootstrap lets the filter read a request body before its headers
    // go on (`allow_on_headers_stop_iteration`), as the token endpoint needs.
    config.token_exchange.get_or_insert(true);
    apply_memory(&mut config, settings, service.is_some())?;
    apply_budget(&mut config, settings, service, from_file)?;
    add_callout_clusters(&mut config);
    let secrets = move_secrets(&mut config, &crate::env::process_env);

    let json = serde_json::to_string(&config)
        .map_err(|e| Error::runtime(format!("plugin configuration: {e}")))?;
    let origin = Origin {
        settings,
        from_file,
        env_provider,
        resource_from_env,
    };
    let lookup = |name: &str| secrets.get(name).cloned();
    Config::from_json_with_env(json.as_bytes(), &lookup).map_err(|e| origin.blame(&e))?;
    let callouts = callouts(&config.clusters).map_err(|m| origin.blame_clusters(m))?;
    let mut warnings: Vec<String> = callouts
        .iter()
        .filter(|c| !c.origin.https && !c.origin.is_loopback())
        .filter(|c| c.cluster != crate::a2a::CLUSTER)
        .map(|c| {
            format!(
                "{} is plain http on a non-loopback host: what the filter fetches from or sends to it can be read and tampered with",
                c.origin.origin()
            )
        })
        .collect();
    warnings.extend(did_warning(&config, settings));
    Ok(Plugin {
        config,
        json,
        callouts,
        mcp,
        warnings,
        secrets,
    })
}

/// Moves every secret of the configuration into Envoy's environment: a key
/// written in the file (or given by the launcher) becomes a variable the
/// filter reads, and a variable the file names is passed on from the
/// launcher's own environment. Returns the variables, by name.
fn move_secrets(config: &mut PluginConfig, env: crate::env::Env) -> BTreeMap<String, String> {
    let mut secrets = BTreeMap::new();
    let mut keep = |literal: &mut Option<String>, named: &mut Option<String>, var: &str| match (
        literal.take(),
        named.as_deref(),
    ) {
        (Some(value), None) => {
            secrets.insert(var.to_string(), value);
            *named = Some(var.to_string());
        }
        (Some(value), Some(_)) => *literal = Some(value),
        (None, Some(name)) => {
            if let Some(value) = env(name) {
                secrets.insert(name.to_string(), value);
            }
        }
        (None, None) => {}
    };
    keep(
        &mut config.assertion_key,
        &mut config.assertion_key_env,
        ASSERTION_KEY_VAR,
    );
    keep(
        &mut config.signing_keys,
        &mut config.signing_keys_env,
        crate::signing_keys::KEYS_VAR,
    );
    if let Some(m) = &mut config.memory {
        keep(&mut m.api_key, &mut m.api_key_env, WEAVIATE_KEY_VAR);
    }
    if let Some(s) = config.budget.as_mut().and_then(|b| b.sync.as_mut()) {
        keep(&mut s.api_key, &mut s.api_key_env, USAGE_KEY_VAR);
    }
    secrets
}

/// A warning when DID sign-in lets anyone in on a listener other hosts reach.
fn did_warning(config: &PluginConfig, settings: &Settings) -> Option<String> {
    let did = config.did.as_ref().filter(|d| d.admits_anyone())?;
    if settings.bind.is_loopback() {
        return None;
    }
    Some(format!(
        "DID sign-in admits any key matching {} on {}, which is not loopback: anyone who can reach it can sign in (set DID_ALLOW to the DIDs allowed, or none)",
        did.allow.join(","),
        settings.bind
    ))
}

/// The service's key (unless the file has one, which the service is then
/// given) and its agents' card paths as exact public paths.
fn apply_service(config: &mut PluginConfig, service: &Service) {
    // A key from the file wins; the filter's validation holds it to the
    // rule the service applies too (base64url, at least 32 bytes).
    if config.assertion_key.is_none() && config.assertion_key_env.is_none() {
        config.assertion_key = Some(service.assertion_key.clone());
    }
    for path in &service.public_paths {
        if !config.public_paths.contains(path) {
            config.public_paths.push(path.clone());
        }
    }
    if let Some(did) = &mut config.did {
        for agent in &service.agent_dids {
            if !did.allows(agent) {
                did.allow.push(agent.clone());
            }
        }
    }
}

/// The registered MCP servers as the filter's `mcp` section, with
/// `ATTACH_MCP_MAX_BODY_BYTES` on top, and each server's metadata path
/// public: the filter answers it itself, and a client reads it before it
/// has a token. A configuration file may set the section's limits, not its
/// servers, whose URLs (and so their routes) only the registry gives.
fn apply_mcp(
    config: &mut PluginConfig,
    settings: &Settings,
    servers: &[mcp::Server],
) -> Result<(), Error> {
    if config.mcp.as_ref().is_some_and(|m| !m.servers.is_empty()) {
        let at = settings
            .config_file
            .as_deref()
            .map(|p| format!("{}: ", p.display()))
            .unwrap_or_default();
        return Err(Error::setting(
            "ATTACH_CONFIG",
            format!(
                "{at}mcp.servers: register MCP servers with {} or {}, which give their URLs",
                mcp_servers::LIST_VARIABLE,
                mcp_servers::FILE_VARIABLE
            ),
        ));
    }
    if servers.is_empty() {
        return Ok(());
    }
    let entries: Vec<serde_json::Value> = servers.iter().map(mcp::Server::filter_entry).collect();
    let registered: McpConfig = serde_json::from_value(json!({ "servers": entries }))
        .map_err(|e| Error::setting(mcp::variable(&settings.mcp), e.to_string()))?;
    let section = match &mut config.mcp {
        Some(section) => {
            section.servers = registered.servers;
            section
        }
        None => config.mcp.insert(registered),
    };
    if let Some(n) = settings.mcp.max_body_bytes {
        section.max_body_bytes = n;
    }
    for server in servers {
        let path = mcp_paths::metadata_path(server.name());
        if !config.public_paths.contains(&path) {
            config.public_paths.push(path);
        }
    }
    Ok(())
}

/// DID sign-in: on by default, so the local stack needs no identity provider.
/// `DID_*` variables override a file's `did` section field by field;
/// `DID_ALLOW=none` turns DID sign-in off. The audience defaults to
/// `DID_AUD`, else `OIDC_AUD`, else the gateway's own public URL.
///
/// With an OIDC issuer, the default (any key) would open a second door next
/// to the provider: DID sign-in is then off unless `DID_ALLOW` (or the file's
/// `did` section) asks for it. A `DID_ALLOW` given with an issuer is the
/// operator's explicit choice, so its prefix rules count as `open`.
fn apply_did(config: &mut PluginConfig, settings: &crate::env::Settings) {
    let env = &settings.did;
    if env.allow.as_ref().is_some_and(Vec::is_empty) {
        config.did = None;
        return;
    }
    if config.did.is_none() && env.allow.is_none() && !config.providers.is_empty() {
        return;
    }
    let policy = config.did.get_or_insert_with(|| DidPolicy {
        audiences: if settings.audiences.is_empty() {
            vec![settings.public_url.trim_end_matches('/').to_string()]
        } else {
            settings.audiences.clone()
        },
        max_ttl_secs: 3_600,
        allow: DEFAULT_DID_ALLOW.iter().map(|s| s.to_string()).collect(),
        open: false,
    });
    if let Some(aud) = &env.audiences {
        policy.audiences = aud.clone();
    }
    if let Some(ttl) = env.max_ttl_secs {
        policy.max_ttl_secs = ttl;
    }
    if let Some(allow) = &env.allow {
        policy.allow = allow.clone();
        policy.open = policy.admits_anyone();
    }
}

/// Appends the environment's provider unless the configuration already has
/// that issuer; returns its index when appended.
fn merge_provider(
    config: &mut PluginConfig,
    issuer: &str,
    audiences: &[String],
) -> Result<Option<usize>, Error> {
    let wanted = normalize_issuer(issuer.trim());
    if config
        .providers
        .iter()
        .any(|p| normalize_issuer(p.issuer.trim()) == wanted)
    {
        return Ok(None);
    }
    // Through serde, so that the provider gets the same defaults as one
    // written in a file (every asymmetric algorithm, discovery).
    let provider: ProviderConfig =
        serde_json::from_value(json!({ "issuer": issuer, "audiences": audiences }))
            .map_err(|e| Error::setting("OIDC_ISSUER", e.to_string()))?;
    config.providers.push(provider);
    Ok(Some(config.providers.len() - 1))
}

/// The logical origin through which the filter reaches the companion
/// service: only the cluster name matters (the service's port is picked
/// when the bootstrap is rendered).
pub const SERVICE_ORIGIN: &str = "http://attach-a2a";

/// The memory mirror: `MEM_BACKEND` (else the file's `memory` section, else
/// the service when it runs) and the `MEM_*` limits on top.
fn apply_memory(
    config: &mut PluginConfig,
    settings: &Settings,
    service: bool,
) -> Result<(), Error> {
    let env = &settings.memory;
    let sink = match &env.backend {
        Some(MemBackend::None) => {
            config.memory = None;
            return Ok(());
        }
        Some(MemBackend::Service) => {
            Some(json!({"sink": "service", "url": format!("{SERVICE_ORIGIN}/mem/ingest")}))
        }
        Some(MemBackend::Weaviate { url, api_key }) => {
            Some(json!({"sink": "weaviate", "url": url, "api_key": api_key}))
        }
        None if config.memory.is_none() && service => {
            Some(json!({"sink": "service", "url": format!("{SERVICE_ORIGIN}/mem/ingest")}))
        }
        None => None,
    };
    if let Some(sink) = sink {
        let fresh: MemoryConfig = serde_json::from_value(sink)
            .map_err(|e| Error::setting("MEM_BACKEND", e.to_string()))?;
        match &mut config.memory {
            Some(m) => {
                m.sink = fresh.sink;
                m.url = fresh.url;
                m.api_key = fresh.api_key;
            }
            None => config.memory = Some(fresh),
        }
    }
    let Some(memory) = &mut config.memory else {
        return Ok(());
    };
    if let Some(n) = env.max_bytes {
        memory.max_bytes = n;
    }
    if let Some(n) = env.queue_max {
        memory.queue_max = n;
    }
    if memory.sink == SinkKind::Service && service {
        config
            .clusters
            .insert(SERVICE_ORIGIN.to_string(), crate::a2a::CLUSTER.to_string());
    }
    Ok(())
}

/// Token budgets: the limits come from `MAX_TOKENS_PER_MIN` (in a window
/// of `WINDOW`) or from the file's `budget` section, never both;
/// `MAX_REQUEST_BYTES` on top, which turns budgets on for metering alone.
/// With the companion service, the filter syncs usage with its
/// `/usage/sync` every `ATTACH_BUDGET_SYNC_MS` (with the memory mirror's
/// credential, made with the assertion key), unless the file names another
/// sync target.
fn apply_budget(
    config: &mut PluginConfig,
    settings: &Settings,
    service: Option<&Service>,
    from_file: bool,
) -> Result<(), Error> {
    let env = &settings.budget;
    let file_limits = config
        .budget
        .as_ref()
        .is_some_and(|b| b.policy.limits_anything());
    if env.window.is_some() && file_limits && from_file {
        let at = settings
            .config_file
            .as_deref()
            .map(|p| format!(" ({})", p.display()))
            .unwrap_or_default();
        return Err(Error::setting(
            "MAX_TOKENS_PER_MIN",
            format!(
                "ATTACH_CONFIG{at} has budget limits too: set the limits in one place, MAX_TOKENS_PER_MIN and WINDOW or the file's budget section"
            ),
        ));
    }
    if env.any() && config.budget.is_none() {
        config.budget = Some(BudgetConfig::metering());
    }
    let Some(budget) = &mut config.budget else {
        return Ok(());
    };
    if let Some(window) = env.window {
        budget.policy.windows = vec![window];
    }
    if let Some(n) = env.max_request_bytes {
        budget.max_request_bytes = n;
    }
    if let (Some(_), None) = (service, &budget.sync) {
        budget.sync = Some(SyncConfig {
            url: format!("{SERVICE_ORIGIN}{}", attach_contract::usage::SYNC_PATH),
            interval_ms: env.sync_ms,
            api_key: None,
            api_key_env: None,
        });
        config
            .clusters
            .insert(SERVICE_ORIGIN.to_string(), crate::a2a::CLUSTER.to_string());
    }
    Ok(())
}

/// Adds `attach_callout_<host>_<port>` for every issuer, `jwks_uri` and
/// memory sink origin that `clusters` does not already map.
pub fn add_callout_clusters(config: &mut PluginConfig) {
    let mut needed = Vec::new();
    for p in &config.providers {
        // URLs that do not parse are left for validation to report.
        needed.extend(Url::parse(normalize_issuer(p.issuer.trim())).ok());
        needed.extend(p.jwks_uri.as_deref().and_then(|u| Url::parse(u).ok()));
    }
    if let Some(m) = &config.memory {
        needed.extend(Url::parse(m.url.trim()).ok());
    }
    if let Some(s) = config.budget.as_ref().and_then(|b| b.sync.as_ref()) {
        needed.extend(Url::parse(s.url.trim()).ok());
    }
    for url in needed {
        let present = config
            .clusters
            .keys()
            .any(|k| Url::parse(k).is_ok_and(|k| k.origin() == url.origin()));
        if present {
            continue;
        }
        let base = callout_name(&url);
        let mut name = base.clone();
        let mut n = 2;
        while config.clusters.values().any(|v| *v == name) {
            name = format!("{base}_{n}");
            n += 1;
        }
        config.clusters.insert(url.origin(), name);
    }
}

/// `attach_callout_<host>_<port>`, with anything but ASCII letters and
/// digits in the host turned into single underscores.
pub fn callout_name(url: &Url) -> String {
    let mut host = String::new();
    for c in url.host.chars() {
        if c.is_ascii_alphanumeric() {
            host.push(c.to_ascii_lowercase());
        } else if !host.is_empty() && !host.ends_with('_') {
            host.push('_');
        }
    }
    let host = host.trim_end_matches('_');
    format!("{CALLOUT_PREFIX}{host}_{}", url.port)
}

/// The distinct origins of `clusters` (keys that spell the same origin
/// differently collapse), refusing one cluster name for two origins and
/// the engine's name.
fn callouts(clusters: &BTreeMap<String, String>) -> Result<Vec<Callout>, String> {
    let mut out: Vec<Callout> = Vec::new();
    for (key, cluster) in clusters {
        let origin = Url::parse(key).map_err(|m| format!("clusters[{key:?}]: origin {m}"))?;
        if cluster == ENGINE_CLUSTER {
            return Err(format!(
                "clusters[{key:?}]: the name {ENGINE_CLUSTER:?} is the model engine's cluster"
            ));
        }
        if cluster.starts_with(mcp::CLUSTER_PREFIX) {
            return Err(format!(
                "clusters[{key:?}]: names starting with {:?} are the MCP servers' clusters",
                mcp::CLUSTER_PREFIX
            ));
        }
        match out.iter().find(|c| c.origin.origin() == origin.origin()) {
            Some(c) if c.cluster == *cluster => continue,
            Some(c) => {
                return Err(format!(
                    "clusters[{key:?}]: {} is already mapped to {:?}",
                    origin.origin(),
                    c.cluster
                ));
            }
            None => {}
        }
        if let Some(c) = out.iter().find(|c| c.cluster == *cluster) {
            return Err(format!(
                "clusters[{key:?}]: cluster {cluster:?} already reaches {}",
                c.origin.origin()
            ));
        }
        out.push(Callout {
            origin,
            cluster: cluster.clone(),
        });
    }
    Ok(out)
}

/// Which setting a validation error should be blamed on.
struct Origin<'a> {
    settings: &'a Settings,
    from_file: bool,
    env_provider: Option<usize>,
    resource_from_env: bool,
}

impl Origin<'_> {
    fn blame(&self, e: &ConfigError) -> Error {
        let env_provider = self
            .env_provider
            .is_some_and(|i| e.path.starts_with(&format!("providers[{i}]")));
        if env_provider {
            Error::setting("OIDC_ISSUER", e.to_string())
        } else if e.path == "resource" && self.resource_from_env {
            Error::setting("ATTACH_PUBLIC_URL", e.to_string())
        } else if e.path.starts_with("mcp.servers") {
            Error::setting(mcp::variable(&self.settings.mcp), e.to_string())
        } else {
            self.blame_clusters(e.to_string())
        }
    }

    fn blame_clusters(&self, message: String) -> Error {
        match (&self.settings.config_file, self.from_file) {
            (Some(path), true) => {
                Error::setting("ATTACH_CONFIG", format!("{}: {message}", path.display()))
            }
            _ => Error::setting("OIDC_ISSUER", message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::tests::settings;
    use std::path::PathBuf;

    fn file(json: serde_json::Value) -> PluginConfig {
        serde_json::from_value(json).unwrap()
    }

    fn with_file(s: &mut Settings) {
        s.config_file = Some(PathBuf::from("/x.yaml"));
    }

    #[test]
    fn no_provider_no_callouts() {
        let p = build(&settings(&[]).unwrap(), None).unwrap();
        assert!(p.config.providers.is_empty());
        assert!(p.callouts.is_empty());
        assert_eq!(p.config.resource.as_deref(), Some("http://127.0.0.1:8080"));
        assert!(p.warnings.is_empty());
        Config::from_json(p.json.as_bytes()).unwrap();
    }

    #[test]
    fn did_sign_in_defaults_and_overrides() {
        let p = build(&settings(&[]).unwrap(), None).unwrap();
        let did = p.config.did.unwrap();
        assert_eq!(did.audiences, ["http://127.0.0.1:8080"]);
        assert_eq!(did.allow, ["did:key:*", "did:pkh:*"]);
        assert_eq!(did.max_ttl_secs, 3600);

        let s = settings(&[
            ("OIDC_ISSUER", "https://idp.example"),
            ("OIDC_AUD", "api,cli"),
            ("DID_ALLOW", "did:key:*"),
        ])
        .unwrap();
        assert_eq!(
            build(&s, None).unwrap().config.did.unwrap().audiences,
            ["api", "cli"]
        );

        let f = json!({"did": {"audiences": ["from-file"], "allow": ["did:key:*"], "max_ttl_secs": 60}});
        let p = build(&settings(&[]).unwrap(), Some(file(f.clone()))).unwrap();
        let did = p.config.did.unwrap();
        assert_eq!(
            (did.audiences, did.max_ttl_secs),
            (vec!["from-file".to_string()], 60)
        );

        let s = settings(&[("DID_AUD", "x,y"), ("DID_MAX_TTL", "120")]).unwrap();
        let did = build(&s, Some(file(f.clone())))
            .unwrap()
            .config
            .did
            .unwrap();
        assert_eq!(did.audiences, ["x", "y"]);
        assert_eq!(did.max_ttl_secs, 120);
        assert_eq!(
            did.allow,
            ["did:key:*"],
            "unset variables keep the file's values"
        );

        let s = settings(&[("DID_ALLOW", "none")]).unwrap();
        assert!(build(&s, Some(file(f))).unwrap().config.did.is_none());
        assert!(build(&s, None).unwrap().config.did.is_none());
    }

    #[test]
    fn with_an_issuer_did_sign_in_needs_an_explicit_allow_list() {
        let issuer = [("OIDC_ISSUER", "https://idp.example"), ("OIDC_AUD", "api")];
        let p = build(&settings(&issuer).unwrap(), None).unwrap();
        assert!(p.config.did.is_none(), "no DID door next to the provider");
        // Chosen explicitly: a prefix is the operator's wish, said so.
        let mut pairs = issuer.to_vec();
        pairs.push(("DID_ALLOW", "did:key:*"));
        let did = build(&settings(&pairs).unwrap(), None)
            .unwrap()
            .config
            .did
            .unwrap();
        assert!(did.open);
        let mut pairs = issuer.to_vec();
        pairs.push(("DID_ALLOW", "did:key:z6MkExact"));
        let did = build(&settings(&pairs).unwrap(), None)
            .unwrap()
            .config
            .did
            .unwrap();
        assert!(!did.open);
        // A file that opens DID sign-in next to a provider must say so.
        let mut s = settings(&issuer).unwrap();
        with_file(&mut s);
        let f = json!({"did": {"audiences": ["api"], "allow": ["did:key:*"]}});
        let e = build(&s, Some(file(f))).unwrap_err();
        assert_eq!(e.var(), Some("ATTACH_CONFIG"));
        assert!(e.to_string().contains("did.open"), "{e}");
        let f = json!({"did": {"audiences": ["api"], "allow": ["did:key:*"], "open": true}});
        assert!(build(&s, Some(file(f))).unwrap().config.did.is_some());
    }

    #[test]
    fn open_did_sign_in_off_loopback_warns() {
        let p = build(&settings(&[]).unwrap(), None).unwrap();
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        let p = build(&settings(&[("ATTACH_BIND", "0.0.0.0")]).unwrap(), None).unwrap();
        assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
        assert!(
            p.warnings[0]
                .starts_with("DID sign-in admits any key matching did:key:*,did:pkh:* on 0.0.0.0")
        );
        let s = settings(&[
            ("ATTACH_BIND", "0.0.0.0"),
            ("DID_ALLOW", "did:key:z6MkExact"),
        ])
        .unwrap();
        assert!(build(&s, None).unwrap().warnings.is_empty());
    }

    #[test]
    fn env_provider_gets_a_cluster() {
        let s = settings(&[
            ("OIDC_ISSUER", "https://IdP.example.com/"),
            ("OIDC_AUD", "api,cli"),
        ])
        .unwrap();
        let p = build(&s, None).unwrap();
        assert_eq!(p.config.providers.len(), 1);
        assert_eq!(p.config.providers[0].audiences, ["api", "cli"]);
        assert_eq!(
            p.config
                .clusters
                .get("https://idp.example.com:443")
                .map(String::as_str),
            Some("attach_callout_idp_example_com_443")
        );
        assert_eq!(p.callouts.len(), 1);
        assert_eq!(p.callouts[0].origin.host, "idp.example.com");
        let c = Config::from_json(p.json.as_bytes()).unwrap();
        assert_eq!(c.providers[0].algorithms.len(), 9);
    }

    #[test]
    fn env_provider_is_appended_to_the_file() {
        let s = settings(&[("OIDC_ISSUER", "https://b.example"), ("OIDC_AUD", "api")]).unwrap();
        let f = file(json!({
            "providers": [{"issuer": "https://a.example", "audiences": ["x"]}],
            "clusters": {"https://a.example": "mine"}
        }));
        let p = build(&s, Some(f)).unwrap();
        let issuers: Vec<_> = p
            .config
            .providers
            .iter()
            .map(|p| p.issuer.as_str())
            .collect();
        assert_eq!(issuers, ["https://a.example", "https://b.example"]);
        assert_eq!(p.config.clusters["https://a.example"], "mine");
        assert_eq!(
            p.config.clusters["https://b.example:443"],
            "attach_callout_b_example_443"
        );
        assert_eq!(p.callouts.len(), 2);
    }

    #[test]
    fn file_issuer_wins_over_env() {
        let s = settings(&[("OIDC_ISSUER", "https://a.example/"), ("OIDC_AUD", "api")]).unwrap();
        let f = file(json!({
            "providers": [{"issuer": "https://a.example", "audiences": ["x"]}],
        }));
        let p = build(&s, Some(f)).unwrap();
        assert_eq!(p.config.providers.len(), 1);
        assert_eq!(p.config.providers[0].audiences, ["x"]);
    }

    #[test]
    fn file_resource_wins_over_public_url() {
        let s = settings(&[("ATTACH_PUBLIC_URL", "https://gw.example")]).unwrap();
        let p = build(&s, Some(file(json!({"resource": "https://api.example"})))).unwrap();
        assert_eq!(p.config.resource.as_deref(), Some("https://api.example"));
        let p = build(&s, Some(file(json!({})))).unwrap();
        assert_eq!(p.config.resource.as_deref(), Some("https://gw.example"));
    }

    #[test]
    fn jwks_origin_and_extra_clusters() {
        let f = file(json!({
            "providers": [{"issuer": "https://idp.example", "audiences": ["a"],
                           "jwks_uri": "https://keys.example:8443/jwks"}],
            "clusters": {"https://login.example": "discovered_host"}
        }));
        let p = build(&settings(&[]).unwrap(), Some(f)).unwrap();
        let names: Vec<_> = p.callouts.iter().map(|c| c.cluster.as_str()).collect();
        assert_eq!(
            names,
            [
                "attach_callout_idp_example_443",
                "attach_callout_keys_example_8443",
                "discovered_host"
            ]
        );
    }

    #[test]
    fn origins_already_mapped_are_not_added_again() {
        let mut c = file(json!({
            "providers": [{"issuer": "https://idp.example/", "audiences": ["a"]}],
            "clusters": {"https://IDP.example:443/": "idp"}
        }));
        add_callout_clusters(&mut c);
        assert_eq!(c.clusters.len(), 1);
        let p = build(&settings(&[]).unwrap(), Some(c)).unwrap();
        assert_eq!(p.callouts.len(), 1);
        assert_eq!(p.callouts[0].cluster, "idp");
    }

    #[test]
    fn callout_names() {
        let name = |u: &str| callout_name(&Url::parse(u).unwrap());
        assert_eq!(
            name("https://idp.example.com"),
            "attach_callout_idp_example_com_443"
        );
        assert_eq!(
            name("http://localhost:9000/x"),
            "attach_callout_localhost_9000"
        );
        assert_eq!(
            name("http://127.0.0.1:8081"),
            "attach_callout_127_0_0_1_8081"
        );
        assert_eq!(name("http://[::1]:9000"), "attach_callout_1_9000");
        assert_eq!(
            name("https://my-idp.Example"),
            "attach_callout_my_idp_example_443"
        );
    }

    #[test]
    fn same_host_port_on_both_schemes_get_distinct_names() {
        let mut c = file(json!({
            "providers": [
                {"issuer": "http://idp.example:8443", "audiences": ["a"]},
                {"issuer": "https://idp.example:8443", "audiences": ["a"]}
            ]
        }));
        add_callout_clusters(&mut c);
        let mut names: Vec<_> = c.clusters.values().cloned().collect();
        names.sort();
        assert_eq!(
            names,
            [
                "attach_callout_idp_example_8443",
                "attach_callout_idp_example_8443_2"
            ]
        );
    }

    #[test]
    fn plain_http_remote_origins_warn() {
        let f = file(json!({
            "providers": [
                {"issuer": "http://idp.example", "audiences": ["a"]},
                {"issuer": "http://127.0.0.1:9000", "audiences": ["a"]},
                {"issuer": "http://localhost:9001", "audiences": ["a"]}
            ]
        }));
        let p = build(&settings(&[]).unwrap(), Some(f)).unwrap();
        assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
        assert!(p.warnings[0].starts_with("http://idp.example:80 "));
    }

    #[test]
    fn validation_errors_name_the_file() {
        let mut s = settings(&[]).unwrap();
        with_file(&mut s);
        let f = file(json!({"providers": [{"issuer": "idp.example", "audiences": ["a"]}]}));
        let e = build(&s, Some(f)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "ATTACH_CONFIG: /x.yaml: providers[0].issuer: must start with http:// or https://"
        );
        let f = file(json!({"max_token_bytes": 1}));
        let e = build(&s, Some(f)).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("ATTACH_CONFIG: /x.yaml: max_token_bytes"),
            "{e}"
        );
    }

    #[test]
    fn cluster_name_clashes_are_refused() {
        let mut s = settings(&[]).unwrap();
        with_file(&mut s);
        for (clusters, needle) in [
            (json!({"https://a.example": "engine"}), "engine"),
            (
                json!({"https://a.example": "same", "https://b.example": "same"}),
                "already reaches",
            ),
            (
                json!({"https://a.example": "one", "https://a.example:443": "two"}),
                "already mapped",
            ),
        ] {
            let e = build(&s, Some(file(json!({ "clusters": clusters })))).unwrap_err();
            assert_eq!(e.var(), Some("ATTACH_CONFIG"));
            assert!(e.to_string().contains(needle), "{e}");
        }
    }

    #[test]
    fn env_errors_name_env_variables() {
        let s = settings(&[("ATTACH_PUBLIC_URL", "https://gw.example")]).unwrap();
        let mut s2 = s.clone();
        s2.public_url = "gw".into();
        let e = build(&s2, None).unwrap_err();
        assert_eq!(e.var(), Some("ATTACH_PUBLIC_URL"), "{e}");
    }

    fn key(byte: u8) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([byte; 32])
    }

    fn service() -> Service {
        Service {
            assertion_key: key(1),
            public_paths: crate::a2a::card_paths(&["echo".to_string()]),
            agent_dids: Vec::new(),
        }
    }

    #[test]
    fn budgets_from_the_environment() {
        let p = build(&settings(&[]).unwrap(), None).unwrap();
        assert!(p.config.budget.is_none(), "off unless configured");
        let s = settings(&[("MAX_TOKENS_PER_MIN", "600"), ("WINDOW", "1m")]).unwrap();
        let b = build(&s, None).unwrap().config.budget.unwrap();
        assert_eq!(b.policy.windows.len(), 1);
        assert_eq!(
            (b.policy.windows[0].seconds, b.policy.windows[0].tokens),
            (60, 600)
        );
        assert_eq!(b.max_request_bytes, 1_048_576);
        assert!(b.sync.is_none(), "no service, no sync");
        let s = settings(&[("MAX_REQUEST_BYTES", "2048")]).unwrap();
        let b = build(&s, None).unwrap().config.budget.unwrap();
        assert_eq!(b.max_request_bytes, 2048);
        assert!(!b.policy.limits_anything(), "metering only");
    }

    #[test]
    fn budget_limits_come_from_one_place() {
        let limits = json!({"budget": {"windows": [{"seconds": 60, "tokens": 5}]}});
        let mut s = settings(&[("MAX_TOKENS_PER_MIN", "600")]).unwrap();
        with_file(&mut s);
        let e = build(&s, Some(file(limits.clone()))).unwrap_err();
        assert_eq!(e.var(), Some("MAX_TOKENS_PER_MIN"));
        let text = e.to_string();
        assert!(
            text.contains("ATTACH_CONFIG") && text.contains("/x.yaml"),
            "{text}"
        );
        // A file section without limits takes the variable's window.
        let routes = json!({"budget": {"routes": [{"path": "/api/chat", "format": "ollama"}],
                                       "default_max_tokens": 64}});
        let b = build(&s, Some(file(routes)))
            .unwrap()
            .config
            .budget
            .unwrap();
        assert_eq!(
            (b.policy.windows[0].tokens, b.default_max_tokens),
            (600, 64)
        );
        assert_eq!(b.routes.len(), 1);
        // The file alone, with MAX_REQUEST_BYTES on top.
        let mut s = settings(&[("MAX_REQUEST_BYTES", "10")]).unwrap();
        with_file(&mut s);
        let b = build(&s, Some(file(limits)))
            .unwrap()
            .config
            .budget
            .unwrap();
        assert_eq!((b.policy.windows[0].tokens, b.max_request_bytes), (5, 10));
        // What the filter refuses in the file is blamed on the file.
        let bad = json!({"budget": {"windows": [{"seconds": 60, "tokens": 0}]}});
        let e = serde_json::from_value::<PluginConfig>(bad).unwrap_err();
        assert!(e.to_string().contains("budget.windows[0].tokens"), "{e}");
    }

    #[test]
    fn with_the_service_budgets_sync_through_it() {
        let s = settings(&[
            ("MAX_TOKENS_PER_MIN", "600"),
            ("ATTACH_BUDGET_SYNC_MS", "500"),
        ])
        .unwrap();
        let p = build_with(&s, None, Some(&service()), None).unwrap();
        let sync = p.config.budget.as_ref().unwrap().sync.clone().unwrap();
        assert_eq!(sync.url, format!("{SERVICE_ORIGIN}/usage/sync"));
        assert_eq!(sync.interval_ms, 500);
        // Signed with the mirror's credential: no key of its own.
        assert_eq!((sync.api_key, sync.api_key_env), (None, None));
        let c = Config::from_json_with_env(p.json.as_bytes(), &|n: &str| p.secrets.get(n).cloned())
            .unwrap();
        let sync = c.budget.unwrap().sync.unwrap();
        assert_eq!(
            (sync.cluster.as_str(), sync.path.as_str()),
            ("a2a_service", "/usage/sync")
        );
        // A file's own sync target keeps its bearer key out of the bootstrap.
        let own =
            json!({"budget": {"sync": {"url": "https://usage.example/sync", "api_key": "s3cret"}}});
        let p = build_with(&s, Some(file(own)), Some(&service()), None).unwrap();
        let sync = p.config.budget.as_ref().unwrap().sync.clone().unwrap();
        assert_eq!(sync.url, "https://usage.example/sync");
        assert_eq!(sync.api_key_env.as_deref(), Some(USAGE_KEY_VAR));
        assert_eq!(
            p.secrets.get(USAGE_KEY_VAR).map(String::as_str),
            Some("s3cret")
        );
        assert!(!p.json.contains("s3cret"));
        assert!(p.callouts.iter().any(|c| c.origin.host == "usage.example"));
        // Budgets off: no sync.
        let p = build_with(&settings(&[]).unwrap(), None, Some(&service()), None).unwrap();
        assert!(p.config.budget.is_none());
    }

    #[test]
    fn delegating_agents_are_admitted_by_did_sign_in() {
        const PLANNER: &str = "did:key:z6MkPlanner";
        let agents = Service {
            agent_dids: vec![PLANNER.to_string()],
            ..service()
        };
        let allow = |pairs: &[(&str, &str)]| {
            let s = settings(pairs).unwrap();
            build_with(&s, None, Some(&agents), None)
                .unwrap()
                .config
                .did
                .map(|d| d.allow)
        };
        // A prefix that admits it already is left as it is.
        assert_eq!(
            allow(&[]).unwrap(),
            ["did:key:*", "did:pkh:*"],
            "already admitted"
        );
        // An exact list gains the agent, by name, not a prefix.
        assert_eq!(
            allow(&[("DID_ALLOW", "did:key:z6MkAlice")]).unwrap(),
            ["did:key:z6MkAlice", PLANNER]
        );
        // DID sign-in off stays off.
        assert_eq!(allow(&[("DID_ALLOW", "none")]), None);
    }

    #[test]
    fn signing_keys_reach_the_filter_through_envoys_environment_only() {
        use attach_contract::gateway_keys::{KeySet, new_key};
        let set = serde_json::to_string(&KeySet {
            keys: vec![new_key([6; 32], 0)],
        })
        .unwrap();
        let s = settings(&[("ATTACH_PUBLIC_URL", "https://gw.example")]).unwrap();
        let p = build_with(&s, None, None, Some(&set)).unwrap();
        assert_eq!(p.config.signing_keys, None);
        assert_eq!(
            p.config.signing_keys_env.as_deref(),
            Some(crate::signing_keys::KEYS_VAR)
        );
        assert!(!p.json.contains("seed"), "no key material in the bootstrap");
        assert_eq!(p.secrets.get(crate::signing_keys::KEYS_VAR), Some(&set));
        assert_eq!(
            p.signing_keys(),
            Some(set.as_str()),
            "the service's set too"
        );
        let lookup = |name: &str| p.secrets.get(name).cloned();
        let c = Config::from_json_with_env(p.json.as_bytes(), &lookup).unwrap();
        let signing = c.signing.unwrap();
        assert_eq!(signing.issuer, "https://gw.example");
        assert_eq!(
            signing.audience("/v1/chat/completions"),
            Some("attach-engine")
        );
        assert_eq!(signing.audience("/a2a/agents/x"), Some("attach-a2a"));
        // A file's own key set wins over the launcher's.
        let own = serde_json::to_string(&KeySet {
            keys: vec![new_key([7; 32], 0)],
        })
        .unwrap();
        let f = file(json!({"signing_keys": own}));
        let p = build_with(&s, Some(f), None, Some(&set)).unwrap();
        assert_eq!(p.secrets.get(crate::signing_keys::KEYS_VAR), Some(&own));
        assert_eq!(p.signing_keys(), Some(own.as_str()));
    }

    #[test]
    fn service_key_and_card_paths() {
        let s = settings(&[]).unwrap();
        let p = build_with(&s, None, Some(&service()), None).unwrap();
        assert_eq!(p.assertion_key(), Some(key(1).as_str()));
        assert_eq!(
            p.config.assertion_key, None,
            "the key is never in the configuration"
        );
        assert!(!p.json.contains(&key(1)));
        assert_eq!(
            p.config.assertion_key_env.as_deref(),
            Some(ASSERTION_KEY_VAR)
        );
        let paths = &p.config.public_paths;
        assert!(
            paths.contains(&"/healthz".to_string()),
            "defaults stay: {paths:?}"
        );
        assert!(paths.contains(&"/a2a/agents/echo/.well-known/agent-card.json".to_string()));
        assert!(paths.contains(&"/a2a/agents/echo/.well-known/agent.json".to_string()));
        // The JSON-RPC endpoint and other agents stay protected.
        let lookup = |name: &str| p.secrets.get(name).cloned();
        let c = Config::from_json_with_env(p.json.as_bytes(), &lookup).unwrap();
        assert_eq!(c.assertion_key.as_ref().map(Vec::len), Some(32));
        assert!(c.is_public("/a2a/agents/echo/.well-known/agent-card.json"));
        assert!(!c.is_public("/a2a/agents/echo"));
        assert!(!c.is_public("/a2a/agents/other/.well-known/agent-card.json"));
        assert!(!c.is_public("/a2a/tasks/send"));
        assert!(!c.is_public("/mem/events"));
        // Without the service nothing changes.
        let p = build(&s, None).unwrap();
        assert_eq!(p.config.assertion_key, None);
        assert!(!p.config.public_paths.iter().any(|p| p.starts_with("/a2a/")));
    }

    #[test]
    fn file_assertion_key_wins_and_must_suit_the_service() {
        let mut s = settings(&[]).unwrap();
        with_file(&mut s);
        let own = key(2);
        let f = json!({"assertion_key": own, "public_paths": ["/open"]});
        let p = build_with(&s, Some(file(f)), Some(&service()), None).unwrap();
        assert_eq!(p.assertion_key(), Some(own.as_str()));
        assert!(!p.json.contains(&own));
        assert_eq!(p.config.public_paths[0], "/open");
        assert_eq!(p.config.public_paths.len(), 3);
        // A key the filter refuses is refused with the service too.
        let short = {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([4u8; 31])
        };
        let f = json!({ "assertion_key": short });
        let e = build_with(&s, Some(file(f)), Some(&service()), None).unwrap_err();
        assert_eq!(e.var(), Some("ATTACH_CONFIG"));
        assert!(e.to_string().contains("assertion_key"), "{e}");
    }

    #[test]
    fn mcp_servers_become_the_filters_mcp_section() {
        let s = settings(&[
            ("ATTACH_PUBLIC_URL", "https://gw.example"),
            (
                "MCP_SERVERS",
                "tools=http://127.0.0.1:9000/mcp;tools_list=callable,files=http://127.0.0.1:9001/mcp;scopes=files:read files:write;default=deny",
            ),
        ])
        .unwrap();
        let p = build(&s, None).unwrap();
        assert_eq!(p.mcp.len(), 2);
        let written: serde_json::Value = serde_json::from_str(&p.json).unwrap();
        assert_eq!(written["resource"], "https://gw.example");
        assert_eq!(
            written["mcp"],
            json!({
                "max_body_bytes": 1_048_576,
                "servers": [
                    {"name": "tools", "scopes": [], "tools_list": "callable", "default": "allow", "tools": []},
                    {"name": "files", "scopes": ["files:read", "files:write"], "tools_list": "all",
                     "default": "deny", "tools": []}
                ]
            })
        );
        // RFC 9728 section 3.1: a client reads the metadata before it has
        // a token, so those paths are public; the servers' own are not.
        let lookup = |name: &str| p.secrets.get(name).cloned();
        let c = Config::from_json_with_env(p.json.as_bytes(), &lookup).unwrap();
        assert!(c.is_public("/.well-known/oauth-protected-resource/mcp/tools"));
        assert!(c.is_public("/.well-known/oauth-protected-resource/mcp/files"));
        assert!(!c.is_public("/.well-known/oauth-protected-resource/mcp/other"));
        assert!(!c.is_public("/mcp/tools"));
        assert!(!c.is_public("/mcp/tools/x"));
        // Without servers there is no section.
        let p = build(&settings(&[]).unwrap(), None).unwrap();
        assert_eq!(p.config.mcp, None);
        assert!(!p.config.public_paths.iter().any(|p| p.contains("mcp")));
    }

    #[test]
    fn the_mcp_body_limit_comes_from_the_environment_or_the_file() {
        let list = ("MCP_SERVERS", "tools=http://127.0.0.1:9000/mcp");
        let s = settings(&[list, ("ATTACH_MCP_MAX_BODY_BYTES", "65536")]).unwrap();
        let p = build(&s, None).unwrap();
        assert_eq!(p.config.mcp.unwrap().max_body_bytes, 65_536);
        let mut s = settings(&[list]).unwrap();
        with_file(&mut s);
        let f = file(json!({"mcp": {"max_body_bytes": 4096, "servers": []}}));
        let p = build(&s, Some(f)).unwrap();
        let section = p.config.mcp.unwrap();
        assert_eq!(section.max_body_bytes, 4096);
        assert_eq!(section.servers[0].name, "tools");
        for bad in ["0", "1023", "lots"] {
            let e = settings(&[list, ("ATTACH_MCP_MAX_BODY_BYTES", bad)]).unwrap_err();
            assert_eq!(e.var(), Some("ATTACH_MCP_MAX_BODY_BYTES"), "{e}");
        }
    }

    #[test]
    fn a_file_cannot_register_mcp_servers_without_urls() {
        let mut s = settings(&[]).unwrap();
        with_file(&mut s);
        let f = file(json!({"mcp": {"servers": [{"name": "tools"}]}}));
        let e = build(&s, Some(f)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "ATTACH_CONFIG: /x.yaml: mcp.servers: register MCP servers with MCP_SERVERS or MCP_CONFIG, which give their URLs"
        );
        let f = file(json!({"clusters": {"https://a.example": "mcp_tools"}}));
        let e = build(&s, Some(f)).unwrap_err();
        assert!(e.to_string().contains("MCP servers' clusters"), "{e}");
    }

    #[test]
    fn mcp_registry_errors_name_their_variable() {
        for (pairs, var) in [
            (
                &[("MCP_SERVERS", "t=http://x,t=http://y")][..],
                "MCP_SERVERS",
            ),
            (&[("MCP_SERVERS", "a b=http://x")][..], "MCP_SERVERS"),
            (&[("MCP_SERVERS", "t=gopher://x")][..], "MCP_SERVERS"),
            (&[("MCP_CONFIG", "/nonexistent/mcp.json")][..], "MCP_CONFIG"),
        ] {
            let e = build(&settings(pairs).unwrap(), None).unwrap_err();
            assert_eq!(e.var(), Some(var), "{pairs:?}: {e}");
        }
        // What the filter's validation refuses in a server is blamed on
        // the registry too.
        let s = settings(&[("MCP_SERVERS", "t=http://x;scopes=a\"b")]).unwrap();
        let e = build(&s, None).unwrap_err();
        assert_eq!(e.var(), Some("MCP_SERVERS"), "{e}");
        assert!(e.to_string().contains("mcp.servers[0].scopes"), "{e}");
        let e = settings(&[("MCP_SERVERS", "t=http://x"), ("MCP_CONFIG", "/m.json")]).unwrap_err();
        assert_eq!(e.var(), Some("MCP_CONFIG"));
        assert!(e.to_string().contains("not both"), "{e}");
    }

    #[test]
    fn the_weaviate_key_goes_to_envoys_environment_only() {
        let s = settings(&[
            ("MEM_BACKEND", "weaviate"),
            ("WEAVIATE_URL", "http://127.0.0.1:8081"),
            ("WEAVIATE_API_KEY", "w3aviate"),
        ])
        .unwrap();
        let p = build(&s, None).unwrap();
        assert!(!p.json.contains("w3aviate"));
        assert_eq!(
            p.secrets.get(WEAVIATE_KEY_VAR).map(String::as_str),
            Some("w3aviate")
        );
        let m = p.config.memory.as_ref().unwrap();
        assert_eq!(m.api_key, None);
        assert_eq!(m.api_key_env.as_deref(), Some(WEAVIATE_KEY_VAR));
        assert_eq!(
            p.memory_with_key().unwrap().api_key.as_deref(),
            Some("w3aviate")
        );
    }
}
