//! The launcher against a real Envoy: the rendered bootstrap passes
//! `envoy --mode validate`, and `attach run` starts and stops Envoy.
//!
//! Envoy is found through ENVOY_BIN, `<workspace>/.venv/bin/envoy` or PATH;
//! the filter through ATTACH_WASM or the workspace's release build. Without
//! them these tests pass with a note, except under CI (`CI` set), where a
//! missing prerequisite is a failure.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const ATTACH: &str = env!("CARGO_BIN_EXE_attach");

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Envoy and the filter, or `None` (after saying why) when the test cannot run.
fn prerequisites() -> Option<(PathBuf, PathBuf)> {
    let envoy = std::env::var_os("ENVOY_BIN")
        .map(PathBuf::from)
        .or_else(|| Some(workspace().join(".venv/bin/envoy")).filter(|p| is_executable(p)))
        .or_else(|| {
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .map(|d| d.join("envoy"))
                .find(|p| is_executable(p))
        });
    let wasm = std::env::var_os("ATTACH_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/wasm32-wasip1/release/attach_filter.wasm"));
    let missing = match (&envoy, wasm.is_file()) {
        (None, _) => {
            Some("no Envoy found (ENVOY_BIN, .venv/bin/envoy, PATH); run `make venv`".to_string())
        }
        (Some(_), false) => Some(format!("{} not found; run `make wasm`", wasm.display())),
        (Some(_), true) => None,
    };
    match missing {
        None => envoy.map(|e| (e, wasm)),
        Some(why) if std::env::var_os("CI").is_some() => panic!("CI is set but {why}"),
        Some(why) => {
            eprintln!("skipped: {why}");
            None
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

fn scratch(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let d = std::env::temp_dir().join(format!("attach-it-{tag}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn attach(args: &[&str], wasm: &Path, envs: &[(&str, &str)]) -> Command {
    let mut c = Command::new(ATTACH);
    c.args(args)
        .env("ATTACH_WASM", wasm)
        .env_remove("ATTACH_CONFIG")
        .env_remove("OIDC_ISSUER")
        .env_remove("OIDC_AUD")
        .env_remove("A2A_AGENTS")
        .env_remove("A2A_CONFIG")
        .env_remove("A2A_PORT")
        // Envoy alone, unless a test turns the A2A service on.
        .env("ATTACH_A2A", "off");
    for (k, v) in envs {
        c.env(k, v);
    }
    c
}

/// `envoy --mode validate` with the signing keys of `data_dir` in Envoy's
/// environment, the only place the launcher puts them.
fn validate(envoy: &Path, bootstrap: &Path, data_dir: &Path) -> Output {
    let keys = std::fs::read_to_string(data_dir.join("signing-keys.json")).unwrap();
    Command::new(envoy)
        .args(["--mode", "validate", "--log-level", "warn", "-c"])
        .arg(bootstrap)
        .env("ATTACH_SIGNING_KEYS", keys)
        .output()
        .unwrap()
}

fn render_and_validate(envoy: &Path, wasm: &Path, dir: &Path, envs: &[(&str, &str)]) {
    let out = attach(&["render"], wasm, envs)
        .env("ATTACH_DATA_DIR", dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "attach render: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = dir.join("envoy.json");
    std::fs::write(&file, &out.stdout).unwrap();
    let v = validate(envoy, &file, dir);
    assert!(
        v.status.success(),
        "envoy --mode validate refused {}:\n{}{}",
        file.display(),
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );
}

#[test]
fn rendered_bootstraps_pass_envoy_validate() {
    let Some((envoy, wasm)) = prerequisites() else {
        return;
    };
    let dir = scratch("validate");
    // Defaults: no provider, plain-http engine on loopback.
    render_and_validate(&envoy, &wasm, &dir, &[]);
    // An https engine and an https issuer with a separate JWKS host, from a file.
    let config = dir.join("attach.yaml");
    std::fs::write(
        &config,
        "providers:\n  - issuer: https://idp.example.com\n    audiences: [api]\n    \
         jwks_uri: https://keys.example.com/jwks\nclusters:\n  https://login.example.com: extra\n",
    )
    .unwrap();
    render_and_validate(
        &envoy,
        &wasm,
        &dir,
        &[
            ("ATTACH_CONFIG", config.to_str().unwrap()),
            ("OIDC_ISSUER", "http://localhost:9000"),
            ("OIDC_AUD", "api"),
            ("ENGINE_URL", "https://engine.example.com"),
            ("ATTACH_BIND", "0.0.0.0"),
            ("ATTACH_PORT", "18443"),
        ],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A minimal HTTP/1.1 GET (Envoy refuses HTTP/1.0 by default): the status
/// code, or `None` when nothing answers.
fn http_status(port: u16, path: &str) -> Option<u16> {
    status_of(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?, path)
}

/// Envoy's admin interface: the Unix socket in the run folder.
fn admin_socket(dir: &Path, port: u16) -> PathBuf {
    dir.join(format!("run-{port}/envoy-admin.sock"))
}

fn admin_status(socket: &Path, path: &str) -> Option<u16> {
    status_of(std::os::unix::net::UnixStream::connect(socket).ok()?, path)
}

fn status_of(mut s: impl Read + Write + SetTimeout, path: &str) -> Option<u16> {
    s.timeout(Duration::from_secs(5)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = String::new();
    s.read_to_string(&mut head).ok()?;
    head.split_whitespace().nth(1)?.parse().ok()
}

trait SetTimeout {
    fn timeout(&self, t: Duration) -> std::io::Result<()>;
}

impl SetTimeout for TcpStream {
    fn timeout(&self, t: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(t))
    }
}

impl SetTimeout for std::os::unix::net::UnixStream {
    fn timeout(&self, t: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(t))
    }
}

fn wait_until(what: &str, child: &mut Child, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("attach exited ({status}) while waiting for {what}");
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether `pid` is running (a zombie waiting to be reaped has stopped).
fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses.
    let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
    !matches!(state.and_then(|s| s.chars().next()), Some('Z' | 'X') | None)
}

fn children_of(parent: u32) -> Vec<i32> {
    let list = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).unwrap();
    list.split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

/// Envoy's pid: the only child of `parent`.
fn child_of(parent: u32) -> i32 {
    let pids = children_of(parent);
    assert_eq!(pids.len(), 1, "children of {parent}: {pids:?}");
    pids[0]
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn start(envoy: &Path, wasm: &Path, dir: &Path, port: u16, engine: &str) -> Child {
    attach(&["run"], wasm, &[])
        .env("ENVOY_BIN", envoy)
        .env("ATTACH_PORT", port.to_string())
        .env("ATTACH_DATA_DIR", dir)
        .env("ATTACH_CONCURRENCY", "1")
        .env("ATTACH_LOG_LEVEL", "warn")
        .env("ENGINE_URL", engine)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn run_starts_envoy_and_stops_it_on_sigterm() {
    let Some((envoy, wasm)) = prerequisites() else {
        return;
    };
    let dir = scratch("run");
    let port = free_port();
    let admin = admin_socket(&dir, port);
    let engine = format!("http://127.0.0.1:{}", free_port());
    let mut child = start(&envoy, &wasm, &dir, port, &engine);
    // The launcher prints its banner once its own poll of /ready succeeds,
    // which may come after ours: read its output as it comes.
    let stdout = child.stdout.take().unwrap();
    let out = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let out = out.clone();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
                let Ok(line) = line else { break };
                let mut out = out.lock().unwrap();
                out.push_str(&line);
                out.push('\n');
            }
        })
    };
    wait_until("the banner", &mut child, || {
        out.lock().unwrap().contains("attach: ready\n")
    });
    assert_eq!(admin_status(&admin, "/ready"), Some(200));
    // The listener answers (what it answers is the filter's business).
    assert!(http_status(port, "/healthz").is_some());
    assert!(dir.join(format!("run-{port}/envoy.json")).is_file());
    let envoy_pid = child_of(child.id());

    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let started = Instant::now();
    let status = child.wait().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "attach exits with Envoy's status");
    reader.join().unwrap();
    let out = out.lock().unwrap().clone();
    let (line, banner) = out.split_once('\n').unwrap();
    assert_eq!(
        line.trim(),
        format!(
            "attach: gateway on http://127.0.0.1:{port} -> {engine} (envoy admin unix:{})",
            admin.display()
        )
    );
    assert!(banner.starts_with("attach: ready\n"), "{out}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(!alive(envoy_pid), "envoy {envoy_pid} outlived the launcher");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn envoy_does_not_outlive_a_killed_launcher() {
    let Some((envoy, wasm)) = prerequisites() else {
        return;
    };
    let dir = scratch("orphan");
    let port = free_port();
    let admin = admin_socket(&dir, port);
    let engine = format!("http://127.0.0.1:{}", free_port());
    let mut child = start(&envoy, &wasm, &dir, port, &engine);
    wait_until("envoy admin /ready", &mut child, || {
        admin_status(&admin, "/ready") == Some(200)
    });
    let envoy_pid = child_of(child.id());
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(envoy_pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !alive(envoy_pid),
        "envoy {envoy_pid} outlived a killed launcher"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn taken_port_is_refused_before_envoy_starts() {
    let Some((envoy, wasm)) = prerequisites() else {
        return;
    };
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = scratch("taken");
    let out = attach(&["run"], &wasm, &[])
        .env("ENVOY_BIN", &envoy)
        .env("ATTACH_PORT", port.to_string())
        .env("ATTACH_DATA_DIR", &dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        format!("attach: ATTACH_PORT: {port} is already in use on 127.0.0.1")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The A2A service binary: next to the `attach` under test, else the
/// workspace's release build.
fn a2a_service() -> Option<PathBuf> {
    let found = [
        Path::new(ATTACH).with_file_name("attach-a2a"),
        workspace().join("target/release/attach-a2a"),
    ]
    .into_iter()
    .find(|p| is_executable(p));
    match found {
        Some(p) => Some(p),
        None if std::env::var_os("CI").is_some() => panic!("CI is set but attach-a2a is not built"),
        None => {
            eprintln!(
                "skipped: attach-a2a not built (cargo build --release -p attach-a2a-service)"
            );
            None
        }
    }
}

fn start_with_service(
    envoy: &Path,
    wasm: &Path,
    service: &Path,
    dir: &Path,
    ports: (u16, u16),
) -> Child {
    let (port, a2a) = ports;
    let engine = format!("http://127.0.0.1:{}", free_port());
    attach(&["run"], wasm, &[])
        .env("ATTACH_A2A", "on")
        .env("ATTACH_A2A_BIN", service)
        .env("A2A_PORT", a2a.to_string())
        .env("A2A_AGENTS", "echo=http://127.0.0.1:9")
        .env("ENVOY_BIN", envoy)
        .env("ATTACH_PORT", port.to_string())
        .env("ATTACH_DATA_DIR", dir)
        .env("ATTACH_CONCURRENCY", "1")
        .env("ATTACH_LOG_LEVEL", "warn")
        .env("ENGINE_URL", engine)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// `attach run` with the companion service, once Envoy is ready.
struct Running {
    child: std::process::Child,
    dir: PathBuf,
    /// Listener, service.
    ports: (u16, u16),
    /// The launcher's children (Envoy and the service).
    kids: Vec<i32>,
}

fn run_with_service(name: &str) -> Option<Running> {
    let (Some((envoy, wasm)), Some(service)) = (prerequisites(), a2a_service()) else {
        return None;
    };
    let dir = scratch(name);
    let ports = (free_port(), free_port());
    let admin = admin_socket(&dir, ports.0);
    let mut child = start_with_service(&envoy, &wasm, &service, &dir, ports);
    wait_until("envoy admin /ready", &mut child, || {
        admin_status(&admin, "/ready") == Some(200)
    });
    let kids = children_of(child.id());
    Some(Running {
        child,
        dir,
        ports,
        kids,
    })
}

/// Both children run; SIGTERM stops both; the key file is private.
#[test]
fn run_supervises_envoy_and_the_a2a_service() {
    let Some(Running {
        mut child,
        dir,
        ports,
        kids,
    }) = run_with_service("a2a")
    else {
        return;
    };
    assert_eq!(kids.len(), 2, "children: {kids:?}");
    let names: Vec<String> = kids.iter().map(|p| comm(*p)).collect();
    assert!(names.iter().any(|n| n == "attach-a2a"), "{names:?}");
    // The service listens on loopback; through Envoy its health check is
    // not reachable (that path belongs to the engine route).
    assert_eq!(http_status(ports.1, "/healthz"), Some(200));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("assertion.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let envoy_json = dir.join(format!("run-{}/envoy.json", ports.0));
    let mode = std::fs::metadata(&envoy_json).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "envoy.json is private");

    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    std::thread::sleep(Duration::from_millis(200));
    for pid in kids {
        assert!(!alive(pid), "{pid} outlived the launcher");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// When the service dies, the launcher starts it again and Envoy goes on;
/// when Envoy dies, the launcher stops the service and fails.
#[test]
fn a_dying_service_is_restarted_and_a_dying_envoy_stops_it() {
    let Some(Running {
        mut child,
        dir,
        ports,
        kids,
    }) = run_with_service("a2a-dies")
    else {
        return;
    };
    let a2a = *kids.iter().find(|p| comm(**p) == "attach-a2a").unwrap();
    let envoy = *kids.iter().find(|p| **p != a2a).unwrap();
    let launcher = child.id();
    // SAFETY: killing our own grandchild.
    unsafe { libc::kill(a2a, libc::SIGKILL) };
    wait_until("the service again", &mut child, || {
        children_of(launcher)
            .iter()
            .any(|p| *p != a2a && *p != envoy)
            && http_status(ports.1, "/healthz") == Some(200)
    });
    assert!(alive(envoy), "Envoy stopped with the service");
    let restarted = *children_of(launcher).iter().find(|p| **p != envoy).unwrap();
    assert_eq!(comm(restarted), "attach-a2a");
    // SAFETY: killing our own grandchild.
    unsafe { libc::kill(envoy, libc::SIGKILL) };
    let started = Instant::now();
    let status = child.wait().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_ne!(status.code(), Some(0), "{status}");
    std::thread::sleep(Duration::from_millis(200));
    for pid in [envoy, restarted] {
        assert!(!alive(pid), "{pid} outlived the launcher");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `attach run` with stdout and stderr in one file, in the order written,
/// as a terminal shows them.
fn start_logged(
    envoy: &Path,
    wasm: &Path,
    dir: &Path,
    port: u16,
    envs: &[(&str, &str)],
) -> (Child, PathBuf) {
    let log = dir.join("terminal.log");
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap();
    let err = out.try_clone().unwrap();
    let child = attach(&["run"], wasm, envs)
        .env_remove("ATTACH_LOG_LEVEL")
        .env("ENVOY_BIN", envoy)
        .env("ATTACH_PORT", port.to_string())
        .env("ATTACH_DATA_DIR", dir)
        .env("ATTACH_CONCURRENCY", "1")
        .envs(envs.iter().copied())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap();
    (child, log)
}

fn read(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

fn stop(mut child: Child) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();
}

/// Envoy's own log lines at `level` (`[time][pid][level][component] ...`).
fn envoy_lines<'a>(output: &'a str, level: &str) -> Vec<&'a str> {
    let tag = format!("][{level}][");
    output.lines().filter(|l| l.contains(&tag)).collect()
}

/// At the default log level start-up shows the launcher's lines and none of
/// Envoy's info log, and ends with the banner, printed once Envoy is ready.
#[test]
fn run_ends_start_up_with_the_banner() {
    let Some((envoy, wasm)) = prerequisites() else {
        return;
    };
    let dir = scratch("banner");
    let port = free_port();
    let admin = admin_socket(&dir, port);
    let engine = format!("http://127.0.0.1:{}", free_port());
    let (mut child, log) = start_logged(&envoy, &wasm, &dir, port, &[("ENGINE_URL", &engine)]);
    wait_until("the banner", &mut child, || {
        read(&log).contains("attach: ready\n")
    });
    assert_eq!(
        admin_status(&admin, "/ready"),
        Some(200),
        "the banner came before Envoy was ready"
    );
    // Whatever Envoy would still print at start-up has had time to come.
    std::thread::sleep(Duration::from_secs(2));
    let output = read(&log);
    stop(child);
    assert_eq!(envoy_lines(&output, "info"), Vec::<&str>::new(), "{output}");
    let banner = output
        .split_once("attach: ready\n")
        .map(|(_, rest)| rest)
        .unwrap();
    let lines: Vec<&str> = banner.lines().collect();
    assert_eq!(
        lines.len(),
        2,
        "the banner is not the last output:\n{output}"
    );
    assert_eq!(
        lines[0],
        format!("  gateway  http://127.0.0.1:{port} -> {engine}")
    );
    let token = format!(
        "  token    TOKEN=$(ATTACH_DATA_DIR={} ATTACH_PORT={port} ",
        dir.display()
    );
    assert!(lines[1].starts_with(&token), "{}", lines[1]);
    assert!(
        lines[1].ends_with(" token), sent as -H \"Authorization: Bearer $TOKEN\""),
        "{}",
        lines[1]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The filter's warnings come out at the default level, and its refusals,
/// logged at debug, with `ATTACH_LOG_LEVEL=debug`.
#[test]
fn filter_warnings_show_by_default_and_refusals_at_debug() {
    let Some((envoy, wasm)) = prerequisites() else {
        return;
    };
    let dir = scratch("filter-log");
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{}", free_port());
    let (mut child, log) = start_logged(
        &envoy,
        &wasm,
        &dir,
        port,
        &[("OIDC_ISSUER", &issuer), ("OIDC_AUD", "api")],
    );
    let warning = format!("fetching keys of {issuer} failed");
    wait_until("the filter's warning", &mut child, || {
        read(&log).contains(&warning)
    });
    let output = read(&log);
    stop(child);
    assert!(
        envoy_lines(&output, "warning")
            .iter()
            .any(|l| l.contains(&warning)),
        "{output}"
    );
    assert_eq!(envoy_lines(&output, "info"), Vec::<&str>::new(), "{output}");
    std::fs::remove_dir_all(&dir).unwrap();

    let dir = scratch("filter-debug");
    let port = free_port();
    let (mut child, log) =
        start_logged(&envoy, &wasm, &dir, port, &[("ATTACH_LOG_LEVEL", "debug")]);
    wait_until("the banner", &mut child, || {
        read(&log).contains("attach: ready\n")
    });
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET /api/tags HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer not.a.token\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 401"), "{reply}");
    wait_until("the refusal in the log", &mut child, || {
        read(&log).contains("attach: refused: ")
    });
    stop(child);
    std::fs::remove_dir_all(&dir).unwrap();
}
