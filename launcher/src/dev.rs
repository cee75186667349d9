//! The local demo (`ATTACH_DEV=on`, as `make run` sets it): the example
//! planner and coder agents next to the companion service, the demo page at
//! `/demo`, and `/dev/token`, which hands out DID tokens of the local
//! identity. None of it exists in the compose or Kubernetes configurations.
//!
//! Each agent has a did:key identity of its own, created once in
//! `ATTACH_DATA_DIR` (`agent-planner.json`, `agent-coder.json`, mode 0600)
//! and handed to it by path: it is registered with that DID, so the
//! service sends it a token delegated to it instead of the user's, and the
//! filter's DID sign-in admits the DID, so its RFC 8693 actor tokens are
//! accepted whatever `DID_ALLOW` lists.

use crate::a2a;
use crate::env::{AgentSource, Settings};
use crate::error::Error;
use crate::token;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub const AGENT_BIN: &str = "attach-agent";
pub const DEMO_PATH: &str = "/demo";
pub const TOKEN_PATH: &str = "/dev/token";
/// The Envoy cluster that reaches the launcher's token responder.
pub const TOKEN_CLUSTER: &str = "attach_dev_token";
/// Largest request head the token responder reads.
const MAX_HEAD_BYTES: usize = 8 * 1024;

/// One example agent: its name in the registry, its role, its timeout as
/// the service applies it (the planner waits for the coder, so it gets more).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoAgent {
    pub name: &'static str,
    pub port: u16,
    timeout_secs: u64,
    /// The agent's did:key.
    pub did: String,
    /// Its identity file.
    identity: PathBuf,
}

impl DemoAgent {
    /// The agent `name` on `port`, with its identity (created on first use).
    fn new(
        settings: &Settings,
        name: &'static str,
        port: u16,
        timeout_secs: u64,
    ) -> Result<Self, Error> {
        let file = token::agent_file(name);
        let (identity, _) = token::load_or_create(&settings.data_dir, &file)?;
        Ok(DemoAgent {
            name,
            port,
            timeout_secs,
            did: identity.did().to_string(),
            identity: settings.data_dir.join(file),
        })
    }
}

/// What the demo adds to one `attach run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevPlan {
    pub agents: Vec<DemoAgent>,
    pub token_port: u16,
    pub page: PathBuf,
}

impl DevPlan {
    /// `None` unless `ATTACH_DEV` is on; ports are picked free now.
    pub fn new(settings: &Settings) -> Result<Option<DevPlan>, Error> {
        if !settings.dev.enabled {
            return Ok(None);
        }
        if let AgentSource::File(_) = settings.a2a.agents {
            return Err(Error::setting(
                "ATTACH_DEV",
                "the demo adds its agents to A2A_AGENTS; list your agents there instead of A2A_CONFIG",
            ));
        }
        if !settings.dev.page.is_file() {
            return Err(Error::setting(
                "ATTACH_DEMO_PAGE",
                format!("{} is not a file", settings.dev.page.display()),
            ));
        }
        let ports = free_ports(3)?;
        Ok(Some(DevPlan {
            agents: vec![
                DemoAgent::new(settings, "planner", ports[0], 600)?,
                DemoAgent::new(settings, "coder", ports[1], 300)?,
            ],
            token_port: ports[2],
            page: settings.dev.page.clone(),
        }))
    }

    pub fn names(&self) -> Vec<String> {
        self.agents.iter().map(|a| a.name.to_string()).collect()
    }

    /// The agents' DIDs, which the filter's DID sign-in must admit.
    pub fn dids(&self) -> Vec<String> {
        self.agents.iter().map(|a| a.did.clone()).collect()
    }

    /// The registry entries for the service: each agent with its DID, so
    /// that it gets a token delegated to it, never the caller's.
    pub fn registry(&self) -> String {
        self.agents
            .iter()
            .map(|a| {
                format!(
                    "{}=http://127.0.0.1:{};did={};timeout={}",
                    a.name, a.port, a.did, a.timeout_secs
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `A2A_AGENTS` for the service: the caller's list, then the demo's.
    pub fn agent_list(&self, settings: &Settings) -> String {
        match &settings.a2a.agents {
            AgentSource::List(list) if !list.trim().is_empty() => {
                format!("{},{}", list.trim().trim_end_matches(','), self.registry())
            }
            _ => self.registry(),
        }
    }

    pub fn public_paths() -> [&'static str; 2] {
        [DEMO_PATH, TOKEN_PATH]
    }

    /// The agent's process: `issuer` is the `iss` of what the gateway
    /// signs, `audience` one its DID sign-in accepts (for the agent's actor
    /// tokens).
    pub fn agent_command(
        bin: &Path,
        agent: &DemoAgent,
        settings: &Settings,
        issuer: &str,
        audience: &str,
    ) -> Command {
        let mut c = Command::new(bin);
        c.env("AGENT_ROLE", agent.name)
            .env("AGENT_HOST", "127.0.0.1")
            .env("AGENT_PORT", agent.port.to_string())
            .env("GATEWAY_URL", settings.gateway_url())
            .env("GATEWAY_ISSUER", issuer)
            .env("AGENT_TOKEN_AUDIENCE", audience)
            .env("AGENT_IDENTITY", &agent.identity)
            .env("MODEL", &settings.dev.model);
        c
    }
}

/// `ATTACH_AGENT_BIN`, else `attach-agent` next to `attach`.
pub fn find_agent_bin(settings: &Settings) -> Result<PathBuf, Error> {
    a2a::sibling_bin(
        settings.dev.agent_bin.as_deref(),
        AGENT_BIN,
        "ATTACH_AGENT_BIN",
        "cargo build --release -p attach-example-agents",
        "set ATTACH_DEV=off to run without the demo",
    )
}

fn free_ports(n: usize) -> Result<Vec<u16>, Error> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::runtime(format!("cannot find a free port: {e}")))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()
        .map_err(|e| Error::runtime(format!("cannot find a free port: {e}")))
}

/// Answers a `GET` on `listener` from the gateway's own page with a fresh
/// token from `mint`, as `{"token": ...}`; runs on its own thread for the
/// life of the launcher. Envoy is the client (the port is loopback), one
/// request per connection; `gateway_port` is the listener's.
pub fn serve_tokens(
    listener: TcpListener,
    gateway_port: u16,
    mint: impl Fn() -> String + Send + 'static,
) {
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = answer(stream, gateway_port, &mint);
        }
    });
}

/// Whether a request head comes from the gateway's own loopback origin.
///
/// The token is the operator's identity, so it goes only to a request whose
/// `Host` is the gateway's loopback address (a DNS-rebinding page reaches
/// the port under its own name, which is refused), and that a browser does
/// not mark as sent by another site: an `Origin` must be the gateway's own,
/// and `Sec-Fetch-Site`, when present, `same-origin` (or `none`, a typed URL).
fn from_own_origin(head: &str, gateway_port: u16) -> bool {
    let own: [String; 3] = [
        format!("127.0.0.1:{gateway_port}"),
        format!("localhost:{gateway_port}"),
        format!("[::1]:{gateway_port}"),
    ];
    let mut host = None;
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "host" if host.is_some() => return false,
            "host" => host = Some(value.to_ascii_lowercase()),
            "origin" => {
                let authority = value.to_ascii_lowercase();
                let same = authority
                    .strip_prefix("http://")
                    .is_some_and(|a| own.iter().any(|o| o == a));
                if !same {
                    return false;
                }
            }
            "sec-fetch-site" if !matches!(value, "same-origin" | "none") => return false,
            _ => {}
        }
    }
    host.is_some_and(|h| own.contains(&h))
}

fn answer(
    mut stream: TcpStream,
    gateway_port: u16,
    mint: &impl Fn() -> String,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD_BYTES {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let own = from_own_origin(&String::from_utf8_lossy(&head), gateway_port);
    let (status, body) = if !head.starts_with(b"GET ") {
        (
            "405 Method Not Allowed",
            "{\"error\":\"method_not_allowed\"}".to_string(),
        )
    } else if !own {
        ("403 Forbidden", "{\"error\":\"forbidden\"}".to_string())
    } else {
        ("200 OK", format!("{{\"token\":\"{}\"}}", mint()))
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncache-control: no-store\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::tests::settings;

    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("attach-dev-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn page() -> PathBuf {
        let page = scratch().join("demo.html");
        std::fs::write(&page, "<!doctype html>").unwrap();
        page
    }

    #[test]
    fn off_unless_asked() {
        assert_eq!(DevPlan::new(&settings(&[]).unwrap()).unwrap(), None);
    }

    #[test]
    fn registers_both_agents_after_the_callers() {
        let page = page();
        let page = page.to_str().unwrap();
        let data = scratch().join("data");
        let _ = std::fs::remove_dir_all(&data);
        let s = settings(&[
            ("ATTACH_DEV", "on"),
            ("ATTACH_DEMO_PAGE", page),
            ("ATTACH_DATA_DIR", data.to_str().unwrap()),
            ("A2A_AGENTS", "seed=http://127.0.0.1:9;kind=http"),
        ])
        .unwrap();
        let plan = DevPlan::new(&s).unwrap().unwrap();
        assert_eq!(plan.names(), ["planner", "coder"]);
        let [planner, coder] = [&plan.agents[0], &plan.agents[1]];
        assert!(planner.did.starts_with("did:key:z6Mk"), "{}", planner.did);
        assert_ne!(planner.did, coder.did);
        assert_eq!(plan.dids(), [planner.did.clone(), coder.did.clone()]);
        let list = plan.agent_list(&s);
        assert_eq!(
            list,
            format!(
                "seed=http://127.0.0.1:9;kind=http,\
                 planner=http://127.0.0.1:{};did={};timeout=600,\
                 coder=http://127.0.0.1:{};did={};timeout=300",
                planner.port, planner.did, coder.port, coder.did
            )
        );
        assert!(!list.contains("forward_bearer"));
        // Created once: a second plan keeps the DIDs.
        assert_eq!(DevPlan::new(&s).unwrap().unwrap().dids(), plan.dids());

        let c = DevPlan::agent_command(
            Path::new("/bin/attach-agent"),
            coder,
            &s,
            "http://127.0.0.1:8080",
            "urn:gw",
        );
        let env = |name: &str| {
            c.get_envs()
                .find(|(k, _)| *k == name)
                .and_then(|(_, v)| v)
                .map(|v| v.to_str().unwrap().to_string())
        };
        assert_eq!(env("AGENT_ROLE").as_deref(), Some("coder"));
        assert_eq!(
            env("GATEWAY_ISSUER").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(env("AGENT_TOKEN_AUDIENCE").as_deref(), Some("urn:gw"));
        let file = PathBuf::from(env("AGENT_IDENTITY").unwrap());
        assert_eq!(file, data.join("agent-coder.json"));
        let text = std::fs::read_to_string(&file).unwrap();
        let identity = attach_contract::did_key::DidKeyIdentity::parse(&text).unwrap();
        assert_eq!(identity.did(), coder.did);
        std::fs::remove_dir_all(&data).unwrap();
    }

    #[test]
    fn refuses_what_it_cannot_serve_safely() {
        let page = page();
        let page = page.to_str().unwrap();
        let err = settings(&[("ATTACH_DEV", "on"), ("ATTACH_BIND", "0.0.0.0")]).unwrap_err();
        assert_eq!(err.var(), Some("ATTACH_DEV"));
        let err = settings(&[("ATTACH_DEV", "on"), ("ATTACH_A2A", "off")]).unwrap_err();
        assert_eq!(err.var(), Some("ATTACH_DEV"));
        let s = settings(&[
            ("ATTACH_DEV", "on"),
            ("ATTACH_DEMO_PAGE", "/nonexistent.html"),
        ])
        .unwrap();
        assert_eq!(
            DevPlan::new(&s).unwrap_err().var(),
            Some("ATTACH_DEMO_PAGE")
        );
        let s = settings(&[
            ("ATTACH_DEV", "on"),
            ("ATTACH_DEMO_PAGE", page),
            ("A2A_CONFIG", "/etc/agents.json"),
        ])
        .unwrap();
        assert_eq!(DevPlan::new(&s).unwrap_err().var(), Some("ATTACH_DEV"));
    }

    #[test]
    fn token_responder_answers_get_only() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        serve_tokens(listener, 8080, || "t0k3n".to_string());
        let ask = |request: &str| {
            let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
            s.write_all(request.as_bytes()).unwrap();
            let mut reply = String::new();
            s.read_to_string(&mut reply).unwrap();
            reply
        };
        let ok = ask("GET /dev/token HTTP/1.1\r\nhost: 127.0.0.1:8080\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.ends_with("{\"token\":\"t0k3n\"}"), "{ok}");
        assert!(ok.contains("cache-control: no-store"));
        let refused = ask("POST /dev/token HTTP/1.1\r\ncontent-length: 0\r\n\r\n");
        assert!(refused.starts_with("HTTP/1.1 405"), "{refused}");
        let rebound = ask("GET /dev/token HTTP/1.1\r\nhost: evil.example:8080\r\n\r\n");
        assert!(
            rebound.starts_with("HTTP/1.1 403 Forbidden\r\n"),
            "{rebound}"
        );
        assert!(!rebound.contains("t0k3n"));
    }

    #[test]
    fn tokens_go_only_to_the_gateways_own_origin() {
        let head =
            |lines: &[&str]| format!("GET /dev/token HTTP/1.1\r\n{}\r\n\r\n", lines.join("\r\n"));
        for ok in [
            head(&["Host: 127.0.0.1:8080"]),
            head(&["host: localhost:8080", "Origin: http://localhost:8080"]),
            head(&["Host: [::1]:8080", "Sec-Fetch-Site: same-origin"]),
            head(&[
                "Host: 127.0.0.1:8080",
                "Origin: http://127.0.0.1:8080",
                "Sec-Fetch-Site: same-origin",
            ]),
            head(&["Host: 127.0.0.1:8080", "Sec-Fetch-Site: none"]),
        ] {
            assert!(from_own_origin(&ok, 8080), "{ok}");
        }
        for refused in [
            head(&[]),
            head(&["Host: evil.example"]),
            head(&["Host: evil.example:8080"]),
            head(&["Host: 127.0.0.1:9999"]),
            head(&["Host: 127.0.0.1"]),
            head(&["Host: 127.0.0.1:8080", "Host: evil.example"]),
            head(&["Host: 127.0.0.1:8080", "Origin: http://evil.example"]),
            head(&["Host: 127.0.0.1:8080", "Origin: null"]),
            head(&["Host: 127.0.0.1:8080", "Origin: https://127.0.0.1:8080"]),
            head(&["Host: 127.0.0.1:8080", "Origin: http://127.0.0.1:3000"]),
            head(&["Host: 127.0.0.1:8080", "Sec-Fetch-Site: cross-site"]),
            head(&["Host: 127.0.0.1:8080", "Sec-Fetch-Site: same-site"]),
        ] {
            assert!(!from_own_origin(&refused, 8080), "{refused}");
        }
    }
}
