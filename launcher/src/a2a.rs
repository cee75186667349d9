//! The companion A2A service (`attach-a2a`) that `attach run` starts next to
//! Envoy: its agents (for the public card paths), the assertion key it shares
//! with the filter, and the command that starts it.
//!
//! The service trusts `X-Attach-User`/`X-Attach-Session` only with a valid
//! `X-Attach-Assertion`, an HMAC keyed with a secret that the filter and the
//! service share. The launcher keeps that secret in
//! `$ATTACH_DATA_DIR/assertion.key` (32 random bytes as base64url text, mode
//! 0600, created on first use), puts it in the plugin configuration and hands
//! it to the service in `ATTACH_ASSERTION_KEY`.

use crate::env::{A2aSettings, AgentSource, Settings};
use crate::error::Error;
use crate::private_file::{self, Placement};
use attach_contract::agents;
use attach_contract::gateway_keys::KEYS_VAR;
use attach_filter::budget::config::BudgetConfig;
use attach_filter::memory::sink::{MemoryConfig, SinkKind};
use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const KEY_FILE: &str = "assertion.key";
/// The length of a generated key: the least the filter and the service
/// accept.
pub const KEY_BYTES: usize = attach_contract::assertion::MIN_KEY_BYTES;
/// The Envoy cluster that reaches the service.
pub const CLUSTER: &str = "a2a_service";
/// Path prefixes Envoy routes to the service, in front of the engine's `/`.
pub const ROUTE_PREFIXES: [&str; 2] = ["/a2a/", "/mem/"];
/// The service's binary, looked up next to `attach` by default.
pub const BIN_NAME: &str = "attach-a2a";
/// Agent cards, the only public paths of the service, per agent name.
const CARD_FILES: [&str; 2] = ["agent-card.json", "agent.json"];

/// The names of the registered agents, read and checked by the contract's
/// rule, as the service reads them (a name becomes part of an exact public
/// path, so `*`, `/` and dot segments are refused).
pub fn agent_names(a2a: &A2aSettings) -> Result<Vec<String>, Error> {
    let (var, entries) = match &a2a.agents {
        AgentSource::None => return Ok(Vec::new()),
        AgentSource::List(list) => (
            agents::LIST_VARIABLE,
            agents::parse_list(list).map_err(|e| e.to_string()),
        ),
        AgentSource::File(path) => (agents::FILE_VARIABLE, entries_of_file(path)),
    };
    let entries = entries.map_err(|reason| Error::setting(var, reason))?;
    Ok(entries.into_iter().map(|e| e.name).collect())
}

fn entries_of_file(path: &Path) -> Result<Vec<agents::Entry>, String> {
    let at = path.display();
    let text = fs::read_to_string(path).map_err(|e| format!("cannot read {at}: {e}"))?;
    agents::parse_file(&text).map_err(|e| match e {
        agents::SyntaxError::NotTheFileShape(shape) => format!("{at}: {shape}"),
        other => other.to_string(),
    })
}

/// The exact public paths of every agent's card: only these, never the
/// JSON-RPC endpoint `/a2a/agents/{name}` next to them.
pub fn card_paths(names: &[String]) -> Vec<String> {
    names
        .iter()
        .flat_map(|n| {
            CARD_FILES
                .iter()
                .map(move |f| format!("/a2a/agents/{n}/.well-known/{f}"))
        })
        .collect()
}

/// Whether `text` is a key the service takes: base64url of 32 bytes or more.
pub fn key_fits_service(text: &str) -> bool {
    decode_key(text).is_some_and(|k| k.len() >= KEY_BYTES)
}

fn decode_key(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    URL_SAFE_NO_PAD
        .decode(text)
        .or_else(|_| URL_SAFE.decode(text))
        .ok()
}

/// The assertion key in `dir` (base64url, unpadded), creating it on first
/// use; returns whether it was created. A key file that group or others can
/// read is refused, as is one that is not 32 bytes of base64url.
pub fn load_or_create_key(dir: &Path) -> Result<(String, bool), Error> {
    let path = dir.join(KEY_FILE);
    let io = |e: std::io::Error| Error::runtime(format!("{}: {e}", path.display()));
    match read_key(&path) {
        Ok(key) => return Ok((key, false)),
        Err(Some(e)) => return Err(e),
        Err(None) => {}
    }
    let key = URL_SAFE_NO_PAD.encode(private_file::random::<KEY_BYTES>()?);
    // A launcher starting at the same moment either creates the file or
    // reads a whole key.
    match private_file::write(dir, KEY_FILE, &format!("{key}\n"), Placement::CreateOnce) {
        Ok(()) => Ok((key, true)),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => match read_key(&path) {
            Ok(key) => Ok((key, false)),
            Err(e) => Err(e.unwrap_or_else(|| io(ErrorKind::NotFound.into()))),
        },
        Err(e) => Err(io(e)),
    }
}

/// The key in `path`; `Err(None)` when there is no such file.
fn read_key(path: &Path) -> Result<String, Option<Error>> {
    let at = path.display();
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Err(None),
        Err(e) => return Err(Some(Error::runtime(format!("{at}: {e}")))),
    };
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(Some(Error::runtime(format!(
            "{at}: readable by others; run chmod 600 on it"
        ))));
    }
    let text = fs::read_to_string(path).map_err(|e| Some(Error::runtime(format!("{at}: {e}"))))?;
    let text = text.trim();
    if !key_fits_service(text) {
        return Err(Some(Error::runtime(format!(
            "{at}: not a base64url key of at least {KEY_BYTES} bytes (remove it to get a new one)"
        ))));
    }
    Ok(text.to_string())
}

/// `ATTACH_A2A_BIN`, else `attach-a2a` in the folder of the running `attach`.
pub fn find_bin(a2a: &A2aSettings) -> Result<PathBuf, Error> {
    sibling_bin(
        a2a.bin.as_deref(),
        BIN_NAME,
        "ATTACH_A2A_BIN",
        "cargo build --release -p attach-a2a-service",
        "set ATTACH_A2A=off to run without the A2A service",
    )
}

/// `given` (from `var`), else `name` in the folder of the running `attach`;
/// it must be an executable file.
pub fn sibling_bin(
    given: Option<&Path>,
    name: &str,
    var: &'static str,
    build: &str,
    alternative: &str,
) -> Result<PathBuf, Error> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()
            .map_err(|e| Error::runtime(format!("cannot locate attach itself: {e}")))?
            .with_file_name(name),
    };
    let executable =
        fs::metadata(&path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if executable {
        return Ok(path);
    }
    let hint = if given.is_some() {
        String::new()
    } else {
        format!("; build it with `{build}`, set {var},")
    };
    Err(Error::setting(
        var,
        format!(
            "{} is not an executable file{hint} or {alternative}",
            path.display()
        ),
    ))
}

/// The variable that gives the service the budget policy.
pub const BUDGET_VAR: &str = "ATTACH_BUDGET";

/// The service's command: it listens on 127.0.0.1:`port` only (Envoy is
/// its one way in) and gets the gateway's data folder, address and key,
/// the signing key set the filter runs with (in its environment, as Envoy
/// gets it: never on a command line), with which it signs agent cards,
/// the memory backend the filter mirrors to (it reads from the same), and
/// and the budget policy the filter enforces (its usage syncs carry the
/// mirror's credential, as its memory deliveries do). Other `A2A_*` variables (A2A_DATABASE_URL, A2A_TASK_TTL, ...)
/// and the usage export's (USAGE_METERING, USAGE_URL, USAGE_OUTBOX_MAX,
/// ATTACH_ADMIN_USERS, ATTACH_ADMIN_SCOPE) pass through from the
/// launcher's environment.
pub fn command(
    bin: &Path,
    settings: &Settings,
    port: u16,
    key: &str,
    signing_keys: Option<&str>,
    memory: Option<&MemoryConfig>,
    budget: Option<&BudgetConfig>,
) -> Command {
    let mut c = Command::new(bin);
    c.env("A2A_HOST", "127.0.0.1")
        .env("A2A_PORT", port.to_string())
        .env("ATTACH_DATA_DIR", &settings.data_dir)
        .env("ATTACH_PUBLIC_URL", &settings.public_url)
        .env("ATTACH_ASSERTION_KEY", key);
    match signing_keys {
        Some(keys) => c.env(KEYS_VAR, keys),
        None => c.env_remove(KEYS_VAR),
    };
    match &settings.issuer {
        Some(issuer) => c.env("OIDC_ISSUER", issuer),
        None => c.env_remove("OIDC_ISSUER"),
    };
    if let AgentSource::File(path) = &settings.a2a.agents {
        c.env("A2A_CONFIG", path);
    }
    match budget {
        Some(b) => c.env(BUDGET_VAR, b.policy.to_value().to_string()),
        None => c.env_remove(BUDGET_VAR),
    };
    c.env_remove("WEAVIATE_URL").env_remove("WEAVIATE_API_KEY");
    match memory {
        None => {
            c.env("MEM_BACKEND", "none");
        }
        Some(m) => {
            match m.sink {
                SinkKind::Service => c.env("MEM_BACKEND", "service"),
                SinkKind::Weaviate => {
                    c.env("MEM_BACKEND", "weaviate").env("WEAVIATE_URL", &m.url);
                    if let Some(k) = &m.api_key {
                        c.env("WEAVIATE_API_KEY", k);
                    }
                    &mut c
                }
            };
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::tests::settings;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("attach-a2a-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn names(pairs: &[(&str, &str)]) -> Result<Vec<String>, Error> {
        agent_names(&settings(pairs).unwrap().a2a)
    }

    #[test]
    fn names_from_the_agent_list() {
        assert!(names(&[]).unwrap().is_empty());
        assert_eq!(
            names(&[(
                "A2A_AGENTS",
                " planner=http://127.0.0.1:8100 , coder=http://127.0.0.1:8101;kind=http;timeout=30,"
            )])
            .unwrap(),
            ["planner", "coder"]
        );
        for bad in [
            "a*=http://x",
            "a/b=http://x",
            ".=http://x",
            "..=http://x",
            "=http://x",
            "planner",
            "a=http://x,a=http://y",
        ] {
            let e = names(&[("A2A_AGENTS", bad)]).unwrap_err();
            assert_eq!(e.var(), Some("A2A_AGENTS"), "{bad}: {e}");
        }
    }

    #[test]
    fn names_from_the_agent_file() {
        let dir = temp_dir("file");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a2a.json");
        fs::write(
            &path,
            r#"{"agents": [{"name": "seed", "url": "http://127.0.0.1:9", "kind": "http"}, {"name": "b.2", "url": "http://x"}]}"#,
        )
        .unwrap();
        let p = path.to_str().unwrap();
        assert_eq!(names(&[("A2A_CONFIG", p)]).unwrap(), ["seed", "b.2"]);
        for dots in [".", ".."] {
            fs::write(
                &path,
                format!(r#"{{"agents": [{{"name": "{dots}", "url": "http://x"}}]}}"#),
            )
            .unwrap();
            let e = names(&[("A2A_CONFIG", p)]).unwrap_err();
            assert_eq!(e.var(), Some("A2A_CONFIG"), "{e}");
            assert!(e.to_string().contains(r#"not "." or "..""#), "{e}");
        }
        fs::write(&path, r#"{"agents": [{"url": "http://x"}]}"#).unwrap();
        assert_eq!(
            names(&[("A2A_CONFIG", p)]).unwrap_err().var(),
            Some("A2A_CONFIG")
        );
        let missing = dir.join("missing.json");
        let e = names(&[("A2A_CONFIG", missing.to_str().unwrap())]).unwrap_err();
        assert!(e.to_string().starts_with("A2A_CONFIG: cannot read"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn card_paths_are_exact_per_agent() {
        let paths = card_paths(&["echo".to_string(), "seed".to_string()]);
        assert_eq!(
            paths,
            [
                "/a2a/agents/echo/.well-known/agent-card.json",
                "/a2a/agents/echo/.well-known/agent.json",
                "/a2a/agents/seed/.well-known/agent-card.json",
                "/a2a/agents/seed/.well-known/agent.json",
            ]
        );
        assert!(paths.iter().all(|p| !p.ends_with('*')));
    }

    #[test]
    fn key_is_created_once_with_private_permissions() {
        let dir = temp_dir("key");
        let (key, created) = load_or_create_key(&dir).unwrap();
        assert!(created);
        assert_eq!(URL_SAFE_NO_PAD.decode(&key).unwrap().len(), 32);
        let path = dir.join(KEY_FILE);
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read_to_string(&path).unwrap().trim(), key);
        let (again, created) = load_or_create_key(&dir).unwrap();
        assert!(!created);
        assert_eq!(again, key);
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        let other = temp_dir("key2");
        assert_ne!(load_or_create_key(&other).unwrap().0, key);
        fs::remove_dir_all(&dir).unwrap();
        fs::remove_dir_all(&other).unwrap();
    }

    #[test]
    fn open_or_bad_key_files_are_refused() {
        let dir = temp_dir("keyperm");
        load_or_create_key(&dir).unwrap();
        let path = dir.join(KEY_FILE);
        for mode in [0o640, 0o604, 0o644] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let e = load_or_create_key(&dir).unwrap_err();
            assert!(e.to_string().contains("chmod 600"), "{e}");
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&path, URL_SAFE_NO_PAD.encode([1u8; 16])).unwrap();
        let e = load_or_create_key(&dir).unwrap_err();
        assert!(e.to_string().contains("32 bytes"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn key_length_the_service_takes() {
        assert!(key_fits_service(&URL_SAFE_NO_PAD.encode([7u8; 32])));
        assert!(key_fits_service(&URL_SAFE.encode([7u8; 32])));
        assert!(key_fits_service(&URL_SAFE_NO_PAD.encode([7u8; 48])));
        assert!(!key_fits_service(&URL_SAFE_NO_PAD.encode([7u8; 31])));
        assert!(!key_fits_service("!!"));
    }

    #[test]
    fn binary_must_be_executable() {
        let dir = temp_dir("bin");
        fs::create_dir_all(&dir).unwrap();
        let bin = dir.join("attach-a2a");
        fs::write(&bin, "#!/bin/sh\n").unwrap();
        let mut a2a = settings(&[]).unwrap().a2a;
        a2a.bin = Some(bin.clone());
        let e = find_bin(&a2a).unwrap_err();
        assert_eq!(e.var(), Some("ATTACH_A2A_BIN"));
        assert!(e.to_string().contains("ATTACH_A2A=off"), "{e}");
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find_bin(&a2a).unwrap(), bin);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn command_environment() {
        let s = settings(&[
            ("OIDC_ISSUER", "https://idp.example"),
            ("OIDC_AUD", "api"),
            ("ATTACH_DATA_DIR", "/var/lib/attach"),
            ("ATTACH_PUBLIC_URL", "https://gw.example"),
        ])
        .unwrap();
        let weaviate: MemoryConfig = serde_json::from_value(serde_json::json!({
            "sink": "weaviate", "url": "http://127.0.0.1:8081", "api_key": "w"
        }))
        .unwrap();
        let budget: BudgetConfig = serde_json::from_value(serde_json::json!({
            "windows": [{"seconds": 60, "tokens": 600}], "default_max_tokens": 5
        }))
        .unwrap();
        let c = command(
            Path::new("/bin/attach-a2a"),
            &s,
            18090,
            "k3y",
            Some(r#"{"keys": []}"#),
            Some(&weaviate),
            Some(&budget),
        );
        let envs: std::collections::HashMap<String, Option<String>> = c
            .get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.map(|v| v.to_string_lossy().into_owned()),
                )
            })
            .collect();
        let get = |k: &str| envs.get(k).cloned().flatten();
        assert_eq!(get("A2A_HOST").as_deref(), Some("127.0.0.1"));
        assert_eq!(get("A2A_PORT").as_deref(), Some("18090"));
        assert_eq!(get("ATTACH_DATA_DIR").as_deref(), Some("/var/lib/attach"));
        assert_eq!(
            get("ATTACH_PUBLIC_URL").as_deref(),
            Some("https://gw.example")
        );
        assert_eq!(get("ATTACH_ASSERTION_KEY").as_deref(), Some("k3y"));
        assert_eq!(get(KEYS_VAR).as_deref(), Some(r#"{"keys": []}"#));
        assert_eq!(get("OIDC_ISSUER").as_deref(), Some("https://idp.example"));
        assert_eq!(get("MEM_BACKEND").as_deref(), Some("weaviate"));
        assert_eq!(
            get("WEAVIATE_URL").as_deref(),
            Some("http://127.0.0.1:8081")
        );
        assert_eq!(get("WEAVIATE_API_KEY").as_deref(), Some("w"));
        // The policy alone, in the contract's form.
        let policy: serde_json::Value = serde_json::from_str(&get(BUDGET_VAR).unwrap()).unwrap();
        assert_eq!(
            attach_contract::budget::Policy::from_value(&policy, BUDGET_VAR).unwrap(),
            budget.policy
        );
        // The key set travels in the environment only.
        assert!(c.get_args().all(|a| !a.to_string_lossy().contains("keys")));
        let off = command(
            Path::new("/bin/attach-a2a"),
            &s,
            18090,
            "k3y",
            None,
            None,
            None,
        );
        let env_of = |name: &str| {
            off.get_envs()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.map(|v| v.to_string_lossy().into_owned()))
        };
        assert_eq!(env_of("MEM_BACKEND"), Some(Some("none".into())));
        // Without a set or a policy, neither leaks in from the launcher's
        // own environment.
        for var in [KEYS_VAR, BUDGET_VAR] {
            assert_eq!(env_of(var), Some(None), "{var}");
        }
    }
}
