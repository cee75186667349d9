//! Test harness: the service's router over a fresh store, stub agents on
//! 127.0.0.1, and signed requests.
#![allow(dead_code)]

pub mod scenarios;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use attach_a2a_service::auth::AssertionKey;
use attach_a2a_service::config::Config;
use attach_a2a_service::store::Store;
use attach_a2a_service::{AppState, router};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

pub const KEY_B64: &str = "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk";

pub fn key() -> AssertionKey {
    AssertionKey::new([9; 32])
}

/// Where the store lives for a test.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite,
    /// A PostgreSQL URL; each harness gets its own schema.
    Postgres(String),
}

/// Requests the stub agents received.
#[derive(Clone, Default)]
pub struct Seen(Arc<Mutex<Vec<HeaderMap>>>);

impl Seen {
    pub fn last(&self) -> HeaderMap {
        self.0
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the agent was called")
    }
    pub fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

fn text_of(message: &Value) -> String {
    message["parts"]
        .as_array()
        .map(|parts| {
            parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

async fn agent_v1(State(seen): State<Seen>, headers: HeaderMap, body: String) -> axum::Json<Value> {
    seen.0.lock().unwrap().push(headers.clone());
    let req: Value = serde_json::from_str(&body).unwrap();
    if headers.get("a2a-version").and_then(|v| v.to_str().ok()) != Some("1.0")
        || req["method"] != "SendMessage"
    {
        return axum::Json(
            json!({"jsonrpc": "2.0", "id": req["id"], "error": {"code": -32009, "message": "want 1.0"}}),
        );
    }
    let text = format!("echo: {}", text_of(&req["params"]["message"]));
    let reply = json!({"messageId": "r1", "role": "ROLE_AGENT", "parts": [{"text": text}]});
    axum::Json(
        json!({"jsonrpc": "2.0", "id": req["id"], "result": {"task": {
            "id": "down-1", "contextId": "down-ctx",
            "status": {"state": "TASK_STATE_COMPLETED", "message": reply},
            "artifacts": [{"artifactId": "a1", "name": "answer", "parts": [{"text": text}]}],
        }}}),
    )
}

async fn agent_v03(
    State(seen): State<Seen>,
    headers: HeaderMap,
    body: String,
) -> axum::Json<Value> {
    seen.0.lock().unwrap().push(headers);
    let req: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(req["method"], "message/send");
    let text = format!("echo: {}", text_of(&req["params"]["message"]));
    axum::Json(json!({"jsonrpc": "2.0", "id": req["id"], "result": {
        "kind": "message", "messageId": "r2", "role": "agent", "parts": [{"kind": "text", "text": text}],
    }}))
}

async fn agent_http(
    State(seen): State<Seen>,
    headers: HeaderMap,
    body: String,
) -> axum::Json<Value> {
    seen.0.lock().unwrap().push(headers);
    let input: Value = serde_json::from_str(&body).unwrap();
    axum::Json(json!({"echo": input}))
}

async fn agent_slow(
    State(seen): State<Seen>,
    headers: HeaderMap,
    body: String,
) -> axum::Json<Value> {
    seen.0.lock().unwrap().push(headers);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let input: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    axum::Json(json!({"late": input}))
}

async fn agent_card() -> axum::Json<Value> {
    axum::Json(json!({
        "name": "Downstream", "description": "echoes", "url": "http://127.0.0.1:1/",
        "version": "2.0.0", "capabilities": {"streaming": true},
        "skills": [{"id": "echo", "name": "Echo", "description": "echoes", "tags": ["echo"]}],
    }))
}

/// Starts the stub agents; returns their address and what they saw.
pub async fn start_agents() -> (SocketAddr, Seen) {
    let seen = Seen::default();
    let app = Router::new()
        .route("/v1", post(agent_v1))
        .route("/v1/.well-known/agent-card.json", get(agent_card))
        .route("/v03", post(agent_v03))
        .route("/http", post(agent_http))
        .route("/slow", post(agent_slow))
        .route(
            "/fail",
            post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

/// A port nothing listens on.
async fn closed_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

pub struct Harness {
    pub app: Router,
    pub state: AppState,
    pub seen: Seen,
    pub dir: tempfile::TempDir,
}

#[derive(Default)]
pub struct Options {
    pub max_body: Option<&'static str>,
    pub ttl: Option<&'static str>,
}

async fn database_url(db: &Db) -> Option<String> {
    let Db::Postgres(url) = db else { return None };
    use sqlx::Connection;
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .expect("connect to A2A_TEST_DATABASE_URL");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    Some(format!("{url}{sep}options=-c%20search_path%3D{schema}"))
}

impl Harness {
    pub async fn new(db: &Db) -> Self {
        Self::with(db, Options::default()).await
    }

    pub async fn with(db: &Db, opts: Options) -> Self {
        let (addr, seen) = start_agents().await;
        let refused = closed_port().await;
        let dir = tempfile::tempdir().unwrap();
        let base = format!("http://{addr}");
        let agents = [
            format!("v1={base}/v1;timeout=5"),
            format!("v03={base}/v03;protocol=0.3"),
            format!("seed={base}/http;kind=http"),
            format!("failing={base}/fail;kind=http"),
            format!("slow={base}/slow;kind=http;timeout=500ms"),
            format!("patient={base}/slow;kind=http;timeout=5"),
            format!("refused=http://127.0.0.1:{refused}/x;timeout=2"),
            format!("bearer={base}/v1;forward_bearer=true"),
            format!("nocard={base}/http;kind=http"),
        ]
        .join(",");
        let mut vars: HashMap<&str, String> = HashMap::new();
        vars.insert("ATTACH_ASSERTION_KEY", KEY_B64.into());
        vars.insert("ATTACH_DATA_DIR", dir.path().to_str().unwrap().into());
        vars.insert("A2A_AGENTS", agents);
        vars.insert("ATTACH_PUBLIC_URL", "https://gw.example".into());
        if let Some(url) = database_url(db).await {
            vars.insert("A2A_DATABASE_URL", url);
        }
        if let Some(m) = opts.max_body {
            vars.insert("A2A_MAX_BODY", m.into());
        }
        if let Some(t) = opts.ttl {
            vars.insert("A2A_TASK_TTL", t.into());
        }
        let config = Config::from_lookup(|k| vars.get(k).cloned()).unwrap();
        let store = Store::open(&config.database).await.unwrap();
        let state = AppState::new(config, store).unwrap();
        Harness {
            app: router(state.clone()),
            state,
            seen,
            dir,
        }
    }

    /// A second service instance over the same database (another replica).
    pub async fn replica(&self) -> Harness {
        let config = self.state.config.clone();
        let store = Store::open(&config.database).await.unwrap();
        let state = AppState::new(config, store).unwrap();
        Harness {
            app: router(state.clone()),
            state,
            seen: self.seen.clone(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub async fn send(&self, req: Request<Body>) -> (StatusCode, Value) {
        let response = self.app.clone().oneshot(req).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, value)
    }

    pub fn request(method: &str, path: &str, user: Option<&str>, body: Body) -> Request<Body> {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json");
        if let Some(user) = user {
            let session = format!("{user}-session");
            b = b
                .header("x-attach-user", user)
                .header("x-attach-session", &session)
                .header("x-attach-assertion", key().sign_now(user, &session));
        }
        b.body(body).unwrap()
    }

    pub async fn get(&self, path: &str, user: Option<&str>) -> (StatusCode, Value) {
        self.send(Self::request("GET", path, user, Body::empty()))
            .await
    }

    pub async fn post(&self, path: &str, user: Option<&str>, body: &Value) -> (StatusCode, Value) {
        self.send(Self::request(
            "POST",
            path,
            user,
            Body::from(body.to_string()),
        ))
        .await
    }

    /// A JSON-RPC call; `version` is the `A2A-Version` header.
    pub async fn rpc(
        &self,
        agent: &str,
        version: Option<&str>,
        user: &str,
        method: &str,
        params: Value,
    ) -> Value {
        let body = json!({"jsonrpc": "2.0", "id": "req-1", "method": method, "params": params});
        let (status, value) = self
            .rpc_raw(agent, version, user, body.to_string().into_bytes())
            .await;
        assert_eq!(status, StatusCode::OK, "{value}");
        value
    }

    pub async fn rpc_raw(
        &self,
        agent: &str,
        version: Option<&str>,
        user: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let mut req = Self::request(
            "POST",
            &format!("/a2a/agents/{agent}"),
            Some(user),
            Body::from(body),
        );
        if let Some(v) = version {
            req.headers_mut().insert("a2a-version", v.parse().unwrap());
        }
        self.send(req).await
    }

    /// Polls the seed status route until the task leaves submitted/working.
    pub async fn settle(&self, user: &str, task_id: &str) -> Value {
        for _ in 0..100 {
            let (status, v) = self
                .get(&format!("/a2a/tasks/status/{task_id}"), Some(user))
                .await;
            assert_eq!(status, StatusCode::OK, "{v}");
            if v["state"] != "submitted" && v["state"] != "working" {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("task {task_id} did not settle");
    }

    pub async fn memory(&self, user: &str, query: &str) -> Vec<Value> {
        let (status, v) = self.get(&format!("/mem/events?{query}"), Some(user)).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v["events"].as_array().cloned().unwrap()
    }
}

pub fn msg_v03(text: &str) -> Value {
    json!({"kind": "message", "messageId": uuid::Uuid::new_v4().to_string(), "role": "user",
           "parts": [{"kind": "text", "text": text}]})
}

pub fn msg_v1(text: &str) -> Value {
    json!({"messageId": uuid::Uuid::new_v4().to_string(), "role": "ROLE_USER", "parts": [{"text": text}]})
}

/// The test database for PostgreSQL runs: `A2A_TEST_DATABASE_URL`, or `None`
/// with a printed notice (a failure under `CI`).
pub fn postgres_url() -> Option<String> {
    match std::env::var("A2A_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let line = "A2A_TEST_DATABASE_URL is not set: PostgreSQL tests skipped (run a2a-service/tests/pg.sh)";
            eprintln!("{line}");
            if std::env::var_os("CI").is_some() {
                panic!("{line}; CI requires them");
            }
            None
        }
    }
}
