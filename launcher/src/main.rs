//! `attach`: runs Attach Gateway locally (Envoy + the filter, and the A2A
//! service next to them).

mod a2a;
mod banner;
mod bootstrap;
mod config_file;
mod dev;
mod env;
mod envoy_admin;
mod envoy_bin;
mod error;
mod log_level;
mod mcp;
mod plugin;
mod private_file;
mod signing_keys;
mod supervise;
mod token;

use env::{Env, Settings};
use error::Error;
use plugin::Plugin;
use serde_json::Value;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// How long the A2A service may take to listen before Envoy starts.
const A2A_START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the banner waits for Envoy to be ready before saying so; Envoy
/// goes on running either way.
const ENVOY_START_TIMEOUT: Duration = Duration::from_secs(60);

const USAGE: &str = "usage: attach <command>

commands:
  run            render the Envoy bootstrap and run Envoy (and the A2A service,
                 unless ATTACH_A2A=off) in the foreground
  render         print the Envoy bootstrap JSON
  plugin-config  print the filter's plugin configuration JSON
  token [--mcp NAME]
                 print a DID-JWT for this gateway (with --mcp, for the
                 registered MCP server NAME: its canonical URI as audience),
                 signed by a local did:key identity (created on first use in
                 ATTACH_DATA_DIR)
  keys [--print | --agents NAMES]
                 create the gateway's signing key set in ATTACH_DATA_DIR, or
                 rotate it when due, as `run` does; --print also writes the
                 set (private keys included) to stdout, e.g. for a Secret;
                 --agents planner,coder also creates those agents' did:key
                 identities (agent-NAME.json, once) and prints NAME=DID lines

Settings come from the environment (OIDC_ISSUER, OIDC_AUD, ENGINE_URL,
ATTACH_PORT, ATTACH_CONFIG, ATTACH_A2A, A2A_AGENTS, ...); see launcher/README.md.";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match dispatch(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("attach: {e}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}

/// One variable of `env`, empty counting as unset.
fn get_env(env: Env, name: &str) -> Option<String> {
    env(name).filter(|v| !v.trim().is_empty())
}

fn dispatch(args: &[String]) -> Result<i32, Error> {
    let cwd =
        std::env::current_dir().map_err(|e| Error::runtime(format!("current directory: {e}")))?;
    let env: Env = &env::process_env;
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["run"] => run(env, &cwd),
        ["render"] => {
            let p = prepare(env, &cwd)?;
            let rendered = render(env, &cwd, &p)?;
            warn(&p);
            print_json(&rendered.bootstrap)
        }
        ["plugin-config"] => {
            let p = prepare(env, &cwd)?;
            warn(&p);
            let plugin = p.plugin;
            print_json(
                &serde_json::to_value(&plugin.config)
                    .map_err(|e| Error::runtime(format!("plugin configuration: {e}")))?,
            )
        }
        ["token"] => print_token(env, &cwd, None),
        ["token", "--mcp", name] => print_token(env, &cwd, Some(name)),
        ["keys"] => keys(env, &cwd, KeysOutput::Quiet),
        ["keys", "--print"] => keys(env, &cwd, KeysOutput::Set),
        ["keys", "--agents", names] => match agent_names(names) {
            Some(names) => keys(env, &cwd, KeysOutput::Agents(names)),
            None => {
                eprintln!(
                    "attach: --agents takes a comma-separated list of distinct agent names \
                     (1-{} letters, digits, '-', '_' or '.'), not {names:?}",
                    attach_contract::agents::MAX_NAME_BYTES
                );
                Ok(2)
            }
        },
        ["help" | "-h" | "--help"] => {
            println!("{USAGE}");
            Ok(0)
        }
        ["--version" | "-V"] => {
            println!("attach {}", env!("CARGO_PKG_VERSION"));
            Ok(0)
        }
        _ => {
            eprintln!("{USAGE}");
            Ok(2)
        }
    }
}

/// Settings, the validated plugin configuration and, with the A2A service
/// on, its agents and the key it shares with the filter.
struct Prepared {
    settings: Settings,
    plugin: Plugin,
    service: Option<ServicePlan>,
    /// The local demo, with `ATTACH_DEV=on`.
    dev: Option<dev::DevPlan>,
    /// What start-up did to the gateway's signing keys.
    keys_change: signing_keys::Change,
}

struct ServicePlan {
    agents: Vec<String>,
    assertion_key: String,
    /// The key file, when this call created it.
    created_key: Option<PathBuf>,
}

fn prepare(env: Env, cwd: &Path) -> Result<Prepared, Error> {
    let settings = Settings::from_env(env, cwd)?;
    let file = match &settings.config_file {
        Some(path) => Some(config_file::load(path)?),
        None => None,
    };
    let own_keys = file
        .as_ref()
        .is_some_and(|f| f.signing_keys.is_some() || f.signing_keys_env.is_some());
    let (signing_keys, keys_change) = if own_keys {
        (None, signing_keys::Change::Unchanged)
    } else {
        let (text, change) = load_signing_keys(&settings)?;
        (Some(text), change)
    };
    if !settings.a2a.enabled {
        let plugin = plugin::build_with(&settings, file, None, signing_keys.as_deref())?;
        return Ok(Prepared {
            settings,
            plugin,
            service: None,
            dev: None,
            keys_change,
        });
    }
    let mut agents = a2a::agent_names(&settings.a2a)?;
    let dev = dev::DevPlan::new(&settings)?;
    if let Some(d) = &dev {
        for name in d.names() {
            if agents.contains(&name) {
                return Err(Error::setting(
                    "A2A_AGENTS",
                    format!("{name:?} is the demo's agent (ATTACH_DEV=on); pick another name"),
                ));
            }
            agents.push(name);
        }
    }
    let mut public_paths = a2a::card_paths(&agents);
    if dev.is_some() {
        public_paths.extend(dev::DevPlan::public_paths().map(String::from));
    }
    let file_key = file.as_ref().and_then(|f| {
        f.assertion_key.clone().or_else(|| {
            f.assertion_key_env
                .as_deref()
                .and_then(|var| get_env(env, var))
        })
    });
    let (key, created) = match file_key {
        Some(k) => (k, false),
        None => a2a::load_or_create_key(&settings.data_dir)?,
    };
    let wanted = plugin::Service {
        assertion_key: key,
        public_paths,
        agent_dids: dev.as_ref().map(dev::DevPlan::dids).unwrap_or_default(),
    };
    let plugin = plugin::build_with(&settings, file, Some(&wanted), signing_keys.as_deref())?;
    if dev.is_some() && plugin.config.did.is_none() {
        return Err(Error::setting(
            "ATTACH_DEV",
            "the demo signs in with DID tokens, and DID sign-in is off (DID_ALLOW=none, or OIDC_ISSUER without DID_ALLOW): set DID_ALLOW, e.g. did:key:*",
        ));
    }
    let assertion_key = plugin
        .assertion_key()
        .map(String::from)
        .unwrap_or(wanted.assertion_key);
    let created_key = created.then(|| settings.data_dir.join(a2a::KEY_FILE));
    Ok(Prepared {
        settings,
        plugin,
        service: Some(ServicePlan {
            agents,
            assertion_key,
            created_key,
        }),
        dev,
        keys_change,
    })
}

/// Printed once every check has passed, so that a refused configuration
/// leaves exactly one line (the error) on stderr.
fn warn(p: &Prepared) {
    if let Some(path) = p.service.as_ref().and_then(|s| s.created_key.as_ref()) {
        eprintln!(
            "attach: created the gateway assertion key {}",
            path.display()
        );
    }
    let keys = p
        .settings
        .data_dir
        .join(attach_contract::gateway_keys::KEYS_FILE);
    match p.keys_change {
        signing_keys::Change::Created => eprintln!(
            "attach: created the gateway signing key {} ({})",
            keys.display(),
            p.settings.signing_alg
        ),
        signing_keys::Change::Rotated => eprintln!(
            "attach: rotated the gateway signing key in {} to a new {} key (the previous one stays published for ATTACH_KEY_OVERLAP_HOURS)",
            keys.display(),
            p.settings.signing_alg
        ),
        signing_keys::Change::Unchanged => {}
    }
    for w in &p.plugin.warnings {
        eprintln!("attach: warning: {w}");
    }
}

struct Rendered {
    bootstrap: Value,
    admin_socket: PathBuf,
    a2a_port: Option<u16>,
}

/// The bootstrap and the ports it uses.
fn render(env: Env, cwd: &Path, prepared: &Prepared) -> Result<Rendered, Error> {
    let (settings, plugin) = (&prepared.settings, &prepared.plugin);
    let wasm = env::wasm_path(env, cwd)?;
    if bootstrap::needs_ca_bundle(settings, plugin) && !settings.ca_bundle.is_file() {
        return Err(Error::setting(
            "ATTACH_CA_BUNDLE",
            format!("{} not found", settings.ca_bundle.display()),
        ));
    }
    let admin_socket = settings.admin_socket()?;
    let a2a_port = if settings.a2a.enabled {
        Some(settings.a2a_port(&[])?)
    } else {
        None
    };
    let value = bootstrap::render(&bootstrap::Input {
        settings,
        plugin,
        wasm: &wasm,
        admin_socket: &admin_socket,
        a2a_port,
        dev: prepared.dev.as_ref(),
    });
    Ok(Rendered {
        bootstrap: value,
        admin_socket,
        a2a_port,
    })
}

/// What `attach keys` writes to stdout.
enum KeysOutput {
    /// Nothing.
    Quiet,
    /// The signing key set, private keys included (`--print`).
    Set,
    /// The named agents' DIDs, one `NAME=DID` line each, after creating
    /// their identities (`--agents`).
    Agents(Vec<String>),
}

/// The names of `--agents a,b`: each one the registry accepts, none twice.
fn agent_names(list: &str) -> Option<Vec<String>> {
    let names: Vec<String> = list.split(',').map(|n| n.trim().to_string()).collect();
    let distinct = names
        .iter()
        .enumerate()
        .all(|(i, n)| !names[..i].contains(n));
    (distinct && names.iter().all(|n| attach_contract::agents::valid_name(n))).then_some(names)
}

/// The signing key set in the data folder, made or rotated now as the
/// settings say: what a start and `attach keys` both do.
fn load_signing_keys(settings: &Settings) -> Result<(String, signing_keys::Change), Error> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    signing_keys::load(
        &settings.data_dir,
        now,
        settings.signing_alg,
        settings.rotation,
    )
}

/// `attach keys`: the signing key set made or rotated as a start would,
/// one line on stderr naming the file and the key that signs; the set
/// itself only on stdout, and only with `--print`. With `--agents`, also
/// the agents' did:key identities, created once as `attach run` creates
/// the demo agents', and their DIDs (nothing secret) on stdout.
fn keys(env: Env, cwd: &Path, output: KeysOutput) -> Result<i32, Error> {
    let settings = Settings::from_env(env, cwd)?;
    let (text, change) = load_signing_keys(&settings)?;
    let path = settings
        .data_dir
        .join(attach_contract::gateway_keys::KEYS_FILE);
    eprintln!("attach: {}", signing_keys::report(&path, &text, change)?);
    let stdout = match output {
        KeysOutput::Quiet => String::new(),
        KeysOutput::Set => format!("{text}\n"),
        KeysOutput::Agents(names) => {
            let mut lines = String::new();
            for name in names {
                let file = token::agent_file(&name);
                let (identity, created) = token::load_or_create(&settings.data_dir, &file)?;
                eprintln!(
                    "attach: {}: agent {name}'s identity, {}",
                    settings.data_dir.join(&file).display(),
                    if created { "created" } else { "unchanged" }
                );
                lines.push_str(&format!("{name}={}\n", identity.did()));
            }
            lines
        }
    };
    let mut out = std::io::stdout().lock();
    out.write_all(stdout.as_bytes())
        .and_then(|_| out.flush())
        .map_err(|e| Error::runtime(format!("stdout: {e}")))?;
    Ok(0)
}

/// Prints a DID-JWT for the gateway, or for the registered MCP server
/// `mcp` (whose routes accept only tokens for its canonical URI).
fn print_token(env: Env, cwd: &Path, mcp: Option<&str>) -> Result<i32, Error> {
    let p = prepare(env, cwd)?;
    let audience = match mcp {
        None => None,
        Some(name) => Some(mcp_audience(&p.plugin, name)?),
    };
    let mint = token_minter(&p.settings, &p.plugin, audience)?;
    println!("{}", mint());
    Ok(0)
}

/// The canonical URI of the registered MCP server `name`.
fn mcp_audience(plugin: &Plugin, name: &str) -> Result<String, Error> {
    let registered = plugin
        .config
        .mcp
        .as_ref()
        .is_some_and(|m| m.servers.iter().any(|s| s.name == name));
    match (&plugin.config.resource, registered) {
        (Some(resource), true) => Ok(attach_contract::mcp::canonical_uri(resource, name)),
        _ => Err(Error::setting(
            attach_contract::mcp_servers::LIST_VARIABLE,
            format!("no MCP server {name:?} is registered"),
        )),
    }
}

/// Mints DID-JWTs of the local identity (created on first use) for this
/// gateway's DID audience (or `audience`), each valid for up to an hour
/// from its minting.
fn token_minter(
    settings: &Settings,
    plugin: &Plugin,
    audience: Option<String>,
) -> Result<impl Fn() -> String + Send + 'static, Error> {
    let Some(did) = &plugin.config.did else {
        return Err(Error::setting(
            "DID_ALLOW",
            "DID sign-in is off (none, or OIDC_ISSUER without DID_ALLOW), so there is no audience to sign for",
        ));
    };
    let audience = audience.unwrap_or_else(|| did.audiences.first().cloned().unwrap_or_default());
    let ttl = did.max_ttl_secs.min(3_600);
    let (identity, created) = token::load_or_create(&settings.data_dir, token::IDENTITY_FILE)?;
    if created {
        eprintln!(
            "attach: created identity {} in {}",
            identity.did(),
            settings.data_dir.join(token::IDENTITY_FILE).display()
        );
    }
    Ok(move || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        identity.token(&audience, now, ttl, None)
    })
}

fn print_json(value: &Value) -> Result<i32, Error> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::runtime(format!("rendering JSON: {e}")))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|_| out.flush())
        .map_err(|e| Error::runtime(format!("stdout: {e}")))?;
    Ok(0)
}

fn run(env: Env, cwd: &Path) -> Result<i32, Error> {
    supervise::die_with_parent()?;
    let prepared = prepare(env, cwd)?;
    let (settings, plugin) = (&prepared.settings, &prepared.plugin);
    let rendered = render(env, cwd, &prepared)?;
    let envoy = envoy_bin::find(env, cwd)?;
    let a2a_bin = match &prepared.service {
        Some(_) => Some(a2a::find_bin(&settings.a2a)?),
        None => None,
    };
    let agent_bin = match &prepared.dev {
        Some(_) => Some(dev::find_agent_bin(settings)?),
        None => None,
    };
    ensure_free("ATTACH_PORT", settings, settings.port)?;
    if let (Some(port), Some(_)) = (settings.a2a.port, &prepared.service) {
        ensure_free("A2A_PORT", settings, port)?;
    }
    let file = write_run_files(settings, plugin, &rendered.bootstrap)?;
    warn(&prepared);

    supervise::install_handlers()?;
    println!(
        "attach: gateway on {} -> {} (envoy admin unix:{})",
        settings.gateway_url(),
        settings.engine_url,
        rendered.admin_socket.display()
    );
    let mut group = supervise::Group::new();
    if let (Some(service), Some(bin), Some(port)) = (&prepared.service, &a2a_bin, rendered.a2a_port)
    {
        println!(
            "attach: a2a service on 127.0.0.1:{port} behind {}/a2a/ and /mem/ ({} agent(s){}{})",
            settings.gateway_url(),
            service.agents.len(),
            if service.agents.is_empty() { "" } else { ": " },
            service.agents.join(", ")
        );
        let _ = std::io::stdout().flush();
        let mut command = a2a::command(
            bin,
            settings,
            port,
            &service.assertion_key,
            plugin.signing_keys(),
            plugin.memory_with_key().as_ref(),
            plugin.config.budget.as_ref(),
        );
        if let Some(d) = &prepared.dev {
            command.env("A2A_AGENTS", d.agent_list(settings));
        }
        group.spawn(a2a::BIN_NAME, command)?;
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let ready = group.wait_ready(a2a::BIN_NAME, A2A_START_TIMEOUT, || {
            TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok()
        })?;
        if let supervise::Ready::Stopped(code) = ready {
            eprintln!(
                "attach: {} stopped before it listened on {address}",
                a2a::BIN_NAME
            );
            return Ok(if code == 0 { 1 } else { code });
        }
        group.keep_running(a2a::BIN_NAME);
    }
    if let (Some(d), Some(bin)) = (&prepared.dev, &agent_bin) {
        if let Some(code) = start_demo(&mut group, d, bin, &prepared)? {
            return Ok(code);
        }
    }
    let _ = std::io::stdout().flush();

    let mut command = Command::new(&envoy);
    command
        .arg("-c")
        .arg(&file)
        .args(["--concurrency", &settings.concurrency.to_string()])
        .args(["--log-level", &settings.log_level])
        // Several stacks may run on one machine: no shared-memory segment.
        .arg("--disable-hot-restart")
        // The filter's secrets: in Envoy's environment, not its configuration.
        .envs(&plugin.secrets);
    group.spawn("envoy", command)?;
    let ready = group.watch(ENVOY_START_TIMEOUT, || {
        envoy_admin::is_ready(&rendered.admin_socket)
    })?;
    match ready {
        Some(supervise::Ready::Yes) => print_banner(env, cwd, &prepared),
        Some(supervise::Ready::Stopped(code)) => return Ok(code),
        None => eprintln!(
            "attach: envoy is not ready after {ENVOY_START_TIMEOUT:?}; the gateway may not answer yet (ATTACH_LOG_LEVEL=info shows Envoy's start-up)"
        ),
    }
    group.run()
}

/// The end of start-up: where the gateway is and how to sign in to it.
fn print_banner(env: Env, cwd: &Path, prepared: &Prepared) {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("attach"));
    let text = banner::text(
        &prepared.settings,
        &prepared.plugin.config,
        &prepared.plugin.mcp,
        prepared.dev.is_some(),
        &banner::token_command(env, &exe, cwd),
    );
    println!("{text}");
    let _ = std::io::stdout().flush();
}

/// The demo's agents (each waited for until it listens) and the token
/// responder; `Some(exit code)` when an agent stopped instead of starting.
fn start_demo(
    group: &mut supervise::Group,
    d: &dev::DevPlan,
    bin: &Path,
    prepared: &Prepared,
) -> Result<Option<i32>, Error> {
    let settings = &prepared.settings;
    let config = &prepared.plugin.config;
    let issuer = config
        .issuer
        .as_deref()
        .or(config.resource.as_deref())
        .unwrap_or(&settings.public_url)
        .trim_end_matches('/');
    // DID sign-in is on in dev mode (checked when the plan was made).
    let audience = config
        .did
        .as_ref()
        .and_then(|d| d.audiences.first())
        .map_or(issuer, String::as_str);
    for agent in &d.agents {
        let name = format!("{} {}", dev::AGENT_BIN, agent.name);
        let command = dev::DevPlan::agent_command(bin, agent, settings, issuer, audience);
        group.spawn(&name, command)?;
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, agent.port));
        let ready = group.wait_ready(&name, A2A_START_TIMEOUT, || {
            TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok()
        })?;
        if let supervise::Ready::Stopped(code) = ready {
            eprintln!("attach: {name} stopped before it listened on {address}");
            return Ok(Some(if code == 0 { 1 } else { code }));
        }
    }
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, d.token_port))
        .map_err(|e| Error::runtime(format!("dev token responder: {e}")))?;
    dev::serve_tokens(
        listener,
        settings.port,
        token_minter(settings, &prepared.plugin, None)?,
    );
    Ok(None)
}

/// Refuses to start when the port is taken, with a message naming the variable.
fn ensure_free(var: &str, settings: &Settings, port: u16) -> Result<(), Error> {
    let ip = if var == "ATTACH_PORT" {
        settings.bind
    } else {
        std::net::Ipv4Addr::LOCALHOST.into()
    };
    match TcpListener::bind((ip, port)) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(Error::setting(
            var,
            format!("{port} is already in use on {ip}"),
        )),
        Err(e) => Err(Error::setting(
            var,
            format!("cannot listen on {ip}:{port}: {e}"),
        )),
    }
}

/// Writes `envoy.json` (and `plugin.json`, for reference) into the run folder.
fn write_run_files(
    settings: &Settings,
    plugin: &Plugin,
    bootstrap: &Value,
) -> Result<PathBuf, Error> {
    let dir = settings.run_dir();
    let io = |what: &Path, e: std::io::Error| Error::runtime(format!("{}: {e}", what.display()));
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    // The admin socket lives here: the folder is the operator's alone.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| io(&dir, e))?;
    let write = |name: &str, value: &Value| -> Result<PathBuf, Error> {
        let path = dir.join(name);
        let text = serde_json::to_string_pretty(value)
            .map_err(|e| Error::runtime(format!("rendering {name}: {e}")))?;
        // The filter's configuration is the operator's business: private
        // before anything is written (secrets are in neither file).
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io(&path, e))?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .and_then(|_| f.set_len(0))
            .and_then(|_| f.write_all((text + "\n").as_bytes()))
            .map_err(|e| io(&path, e))?;
        Ok(path)
    };
    let plugin_value = serde_json::to_value(&plugin.config)
        .map_err(|e| Error::runtime(format!("plugin configuration: {e}")))?;
    write("plugin.json", &plugin_value)?;
    write("envoy.json", bootstrap)
}
