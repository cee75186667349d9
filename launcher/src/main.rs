//! `attach`: runs Attach Gateway locally (Envoy + the filter).

mod bootstrap;
mod config_file;
mod env;
mod envoy_bin;
mod error;
mod plugin;
mod supervise;
mod token;

use env::{Env, Settings};
use error::Error;
use plugin::Plugin;
use serde_json::Value;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

const USAGE: &str = "usage: attach <command>

commands:
  run            render the Envoy bootstrap and run Envoy in the foreground
  render         print the Envoy bootstrap JSON
  plugin-config  print the filter's plugin configuration JSON
  token          print a DID-JWT for this gateway, signed by a local did:key
                 identity (created on first use in ATTACH_DATA_DIR)

Settings come from the environment (OIDC_ISSUER, OIDC_AUD, ENGINE_URL,
ATTACH_PORT, ATTACH_CONFIG, ...); see launcher/README.md.";

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
            let (settings, plugin) = prepare(env, &cwd)?;
            let (bootstrap, _) = render(env, &cwd, &settings, &plugin)?;
            warn(&plugin);
            print_json(&bootstrap)
        }
        ["plugin-config"] => {
            let (_, plugin) = prepare(env, &cwd)?;
            warn(&plugin);
            print_json(
                &serde_json::to_value(&plugin.config)
                    .map_err(|e| Error::runtime(format!("plugin configuration: {e}")))?,
            )
        }
        ["token"] => print_token(env, &cwd),
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

/// Settings and the validated plugin configuration.
fn prepare(env: Env, cwd: &Path) -> Result<(Settings, Plugin), Error> {
    let settings = Settings::from_env(env, cwd)?;
    let file = match &settings.config_file {
        Some(path) => Some(config_file::load(path)?),
        None => None,
    };
    let plugin = plugin::build(&settings, file)?;
    Ok((settings, plugin))
}

/// Printed once every check has passed, so that a refused configuration
/// leaves exactly one line (the error) on stderr.
fn warn(plugin: &Plugin) {
    for w in &plugin.warnings {
        eprintln!("attach: warning: {w}");
    }
}

/// The bootstrap and the admin port it uses.
fn render(
    env: Env,
    cwd: &Path,
    settings: &Settings,
    plugin: &Plugin,
) -> Result<(Value, u16), Error> {
    let wasm = env::wasm_path(env, cwd)?;
    if bootstrap::needs_ca_bundle(settings, plugin) && !settings.ca_bundle.is_file() {
        return Err(Error::setting(
            "ATTACH_CA_BUNDLE",
            format!("{} not found", settings.ca_bundle.display()),
        ));
    }
    let admin_port = settings.admin_port()?;
    let value = bootstrap::render(&bootstrap::Input {
        settings,
        plugin,
        wasm: &wasm,
        admin_port,
    });
    Ok((value, admin_port))
}

fn print_token(env: Env, cwd: &Path) -> Result<i32, Error> {
    let (settings, plugin) = prepare(env, cwd)?;
    let Some(did) = &plugin.config.did else {
        return Err(Error::setting(
            "DID_ALLOW",
            "DID sign-in is off (none), so there is no audience to sign for",
        ));
    };
    let audience = did.audiences.first().cloned().unwrap_or_default();
    let (identity, created) = token::load_or_create(&settings.data_dir)?;
    if created {
        eprintln!(
            "attach: created identity {} in {}",
            identity.did,
            settings.data_dir.join(token::IDENTITY_FILE).display()
        );
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| Error::runtime(format!("clock: {e}")))?
        .as_secs();
    println!(
        "{}",
        identity.token(&audience, now, did.max_ttl_secs.min(3_600))
    );
    Ok(0)
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
    let (settings, plugin) = prepare(env, cwd)?;
    let (bootstrap, admin_port) = render(env, cwd, &settings, &plugin)?;
    let envoy = envoy_bin::find(env, cwd)?;
    ensure_free("ATTACH_PORT", &settings, settings.port)?;
    if settings.admin_port.is_some() {
        ensure_free("ATTACH_ADMIN_PORT", &settings, admin_port)?;
    }
    let file = write_run_files(&settings, &plugin, &bootstrap)?;
    warn(&plugin);

    supervise::install_handlers()?;
    println!(
        "attach: gateway on {} -> {} (envoy admin 127.0.0.1:{admin_port})",
        settings.gateway_url(),
        settings.engine_url
    );
    let _ = std::io::stdout().flush();

    let mut command = Command::new(&envoy);
    command
        .arg("-c")
        .arg(&file)
        .args(["--concurrency", &settings.concurrency.to_string()])
        .args(["--log-level", &settings.log_level])
        // Several stacks may run on one machine: no shared-memory segment.
        .arg("--disable-hot-restart");
    supervise::run(command)
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
    let write = |name: &str, value: &Value| -> Result<PathBuf, Error> {
        let path = dir.join(name);
        let text = serde_json::to_string_pretty(value)
            .map_err(|e| Error::runtime(format!("rendering {name}: {e}")))?;
        std::fs::write(&path, text + "\n").map_err(|e| io(&path, e))?;
        Ok(path)
    };
    let plugin_value = serde_json::to_value(&plugin.config)
        .map_err(|e| Error::runtime(format!("plugin configuration: {e}")))?;
    write("plugin.json", &plugin_value)?;
    write("envoy.json", bootstrap)
}
