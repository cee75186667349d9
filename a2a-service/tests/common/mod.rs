//! Test harness: the service's router over a fresh store, stub agents on
//! 127.0.0.1, and signed requests.
#![allow(dead_code)]

pub mod scenarios;
pub mod usage;

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

/// The `user` that makes [`Harness::request`] send the memory mirror's own
/// credential instead of a user's identity headers.
pub const MIRROR: &str = "(memory mirror)";

/// The DID of the harness's agent `delegated`.
pub const DELEGATED_DID: &str = "did:key:z6MkDelegatedAgent";

pub fn key() -> AssertionKey {
    AssertionKey::new([9; 32])
}

/// The issuer the harness's service knows the gateway by.
pub const ISSUER: &str = "https://gw.example";

/// The gateway's signing key set every harness's service has, unless
/// [`Options::assertion_only`].
pub fn signing_keys_text() -> String {
    use attach_contract::gateway_keys::{KeySet, new_key};
    serde_json::to_string(&KeySet {
        keys: vec![new_key([4; 32], 0)],
    })
    .unwrap()
}

pub fn signing_keys() -> attach_contract::gateway_keys::SigningKeys {
    attach_contract::gateway_keys::SigningKeys::parse(&signing_keys_text()).unwrap()
}

/// Who a request is sent as: a user, the session the gateway gave it, and
/// who acts for the user (the identity token's `act`).
#[derive(Clone, Debug)]
pub struct As {
    pub user: String,
    pub session: String,
    pub act: Option<Value>,
    pub scope: Option<String>,
}

impl As {
    pub fn user(user: &str) -> Self {
        As {
            user: user.into(),
            session: format!("{user}-session"),
            act: None,
            scope: Some("a2a".into()),
        }
    }

    /// `user`, with `actors` (current first) acting for them.
    pub fn through(user: &str, actors: &[&str]) -> Self {
        let chain = actors.iter().rev().fold(
            attach_contract::delegation::ActorChain::default(),
            |c, a| c.delegate_to(a).unwrap(),
        );
        As {
            act: chain.to_act(),
            ..As::user(user)
        }
    }

    /// The identity token the gateway puts on its requests to the service.
    pub fn identity_token(&self) -> String {
        let now = attach_a2a_service::auth::unix_now();
        attach_contract::identity_token::sign(
            &signing_keys(),
            &attach_contract::identity_token::IdentityClaims {
                iss: ISSUER.into(),
                sub: self.user.clone(),
                aud: attach_contract::assertion::SERVICE_AUDIENCE.into(),
                iat: now,
                exp: now + 60,
                jti: uuid::Uuid::new_v4().to_string(),
                sid: self.session.clone(),
                idp: "https://idp.example".into(),
                scope: self.scope.clone(),
                act: self.act.clone(),
            },
        )
    }
}

/// Where the store lives for a test.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite,
    /// A PostgreSQL URL; each harness gets its own schema.
    Postgres(String),
}

/// Requests the stub agents received (the bodies only of the 1.0 agent's).
#[derive(Clone, Default)]
pub struct Seen(Arc<Mutex<Vec<HeaderMap>>>, Arc<Mutex<Vec<Value>>>);

impl Seen {
    pub fn last_body(&self) -> Value {
        self.1
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the agent was called")
    }

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
    seen.1.lock().unwrap().push(req.clone());
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

/// Asks for more input on a new task; completes the task when a follow-up
/// message names it.
async fn agent_v1_ask(
    State(seen): State<Seen>,
    headers: HeaderMap,
    body: String,
) -> axum::Json<Value> {
    seen.0.lock().unwrap().push(headers);
    let req: Value = serde_json::from_str(&body).unwrap();
    let message = &req["params"]["message"];
    let (state, text) = match message["taskId"].as_str() {
        None => ("TASK_STATE_INPUT_REQUIRED", "which language?".to_string()),
        Some("down-ask") => (
            "TASK_STATE_COMPLETED",
            format!("done in {}", text_of(message)),
        ),
        Some(other) => panic!("unexpected task id {other}"),
    };
    let reply = json!({"messageId": "r3", "role": "ROLE_AGENT", "parts": [{"text": text}]});
    axum::Json(
        json!({"jsonrpc": "2.0", "id": req["id"], "result": {"task": {
            "id": "down-ask", "contextId": message["contextId"],
            "status": {"state": state, "message": reply},
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
    let reply = json!({"kind": "message", "messageId": "r2", "role": "agent",
                       "parts": [{"kind": "text", "text": text}]});
    axum::Json(json!({"jsonrpc": "2.0", "id": req["id"], "result": {
        "kind": "task", "id": "down-03", "contextId": "down-ctx",
        "status": {"state": "completed", "message": reply},
        "artifacts": [{"artifactId": "a2", "parts": [{"kind": "text", "text": text}]}],
    }}))
}

/// Answers with a direct message instead of a task, in either version.
async fn agent_message(
    State(seen): State<Seen>,
    headers: HeaderMap,
    body: String,
) -> axum::Json<Value> {
    let v1 = headers.get("a2a-version").and_then(|v| v.to_str().ok()) == Some("1.0");
    seen.0.lock().unwrap().push(headers);
    let req: Value = serde_json::from_str(&body).unwrap();
    let text = format!("said: {}", text_of(&req["params"]["message"]));
    let result = if v1 {
        json!({"message": {"messageId": "r4", "role": "ROLE_AGENT", "parts": [{"text": text}]}})
    } else {
        json!({"kind": "message", "messageId": "r4", "role": "agent",
               "parts": [{"kind": "text", "text": text}]})
    };
    axum::Json(json!({"jsonrpc": "2.0", "id": req["id"], "result": result}))
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
        "version": "2.0.0", "capabilities": {"streaming": false},
        "skills": [{"id": "echo", "name": "Echo", "description": "echoes", "tags": ["echo"]}],
    }))
}

/// Starts the stub agents; returns their address and what they saw.
pub async fn start_agents() -> (SocketAddr, Seen) {
    let seen = Seen::default();
    let app = Router::new()
        .route("/v1", post(agent_v1))
        .route("/v1/.well-known/agent-card.json", get(agent_card))
        .route("/v1ask", post(agent_v1_ask))
        .route("/v03", post(agent_v03))
        .route("/message", post(agent_message))
        .route("/http", post(agent_http))
        .route("/slow", post(agent_slow))
        .route(
            "/fail",
            post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .with_state(seen.clone());
    (serve(app).await, seen)
}

/// How the Weaviate stand-in answers GraphQL queries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeaviateMode {
    /// `{"data": {"Get": {"MemoryEvent": [every object]}}}`.
    Answer,
    /// A GraphQL error naming a missing class, as before the first write.
    NoClass,
    /// A GraphQL error about the query.
    QueryError,
    /// This HTTP status, with an error body.
    Status(u16),
    /// Answers after two seconds.
    Stall,
    /// As Weaviate with a class an older gateway made, without `tool` and
    /// `isError`: a query naming them gets GraphQL errors, one without
    /// them the objects (without them too).
    OlderClass,
}

/// The properties [`WeaviateMode::OlderClass`] lacks.
const NEWER: [&str; 2] = ["tool", "isError"];

struct WeaviateInner {
    objects: Vec<Value>,
    queries: Vec<(HeaderMap, Value)>,
    mode: WeaviateMode,
}

/// A Weaviate stand-in for the memory read path. It answers every query
/// with all its objects, unfiltered and unsorted, so that the service's own
/// scoping, ordering and limit are what the tests see; the queries it got
/// are kept for checking their text.
#[derive(Clone)]
pub struct FakeWeaviate(Arc<Mutex<WeaviateInner>>);

impl FakeWeaviate {
    pub async fn start() -> (String, FakeWeaviate) {
        let fake = FakeWeaviate(Arc::new(Mutex::new(WeaviateInner {
            objects: Vec::new(),
            queries: Vec::new(),
            mode: WeaviateMode::Answer,
        })));
        let app = Router::new()
            .route("/v1/graphql", post(fake_graphql))
            .with_state(fake.clone());
        (format!("http://{}", serve(app).await), fake)
    }

    /// Adds an object as Weaviate returns it: the selected properties
    /// (absent ones null) and `_additional.id`.
    pub fn add(&self, id: &str, properties: Value) {
        let mut object = json!({
            "user": null, "session": null, "role": null, "kind": null, "content": null,
            "model": null, "route": null, "requestId": null, "taskId": null, "status": null,
            "timestamp": null, "latencyMs": null, "tokensIn": null, "tokensOut": null,
            "truncated": null, "unreadable": null, "requestBytes": null, "tool": null,
            "isError": null,
        });
        for (k, v) in properties.as_object().unwrap() {
            object[k] = v.clone();
        }
        object["_additional"] = json!({"id": id});
        self.0.lock().unwrap().objects.push(object);
    }

    pub fn set_mode(&self, mode: WeaviateMode) {
        self.0.lock().unwrap().mode = mode;
    }

    /// The GraphQL query texts received, oldest first.
    pub fn queries(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .queries
            .iter()
            .map(|(_, body)| body["query"].as_str().unwrap().to_string())
            .collect()
    }

    pub fn last_headers(&self) -> HeaderMap {
        let inner = self.0.lock().unwrap();
        inner.queries.last().expect("a query").0.clone()
    }
}

async fn fake_graphql(
    State(fake): State<FakeWeaviate>,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let body: Value = serde_json::from_str(&body).expect("a JSON body");
    assert_eq!(
        body.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["query"],
        "{body}"
    );
    let query = body["query"].as_str().unwrap().to_string();
    let (mode, objects) = {
        let mut inner = fake.0.lock().unwrap();
        inner.queries.push((headers, body));
        (inner.mode, inner.objects.clone())
    };
    match mode {
        WeaviateMode::OlderClass => {
            // The selection is what follows the arguments' closing parenthesis.
            let (arguments, selection) = query.rsplit_once(") {").unwrap();
            let mut errors: Vec<Value> = NEWER
                .iter()
                .filter(|name| selection.split_whitespace().any(|w| w == **name))
                .map(|name| json!({
                    "message": format!("Cannot query field \"{name}\" on type \"MemoryEvent\"."),
                    "locations": [{"line": 1, "column": 200}],
                }))
                .collect();
            if errors.is_empty() {
                errors = NEWER
                    .iter()
                    .filter(|name| arguments.contains(&format!("path: [\"{name}\"]")))
                    .map(|name| json!({"message": format!(
                        "no such prop with name '{name}' found in class 'MemoryEvent' in the schema"
                    )}))
                    .collect();
            }
            if !errors.is_empty() {
                return axum::Json(json!({"data": null, "errors": errors})).into_response();
            }
            let older: Vec<Value> = objects
                .into_iter()
                .map(|mut o| {
                    for name in NEWER {
                        o.as_object_mut().unwrap().remove(name);
                    }
                    o
                })
                .collect();
            axum::Json(json!({"data": {"Get": {"MemoryEvent": older}}})).into_response()
        }
        WeaviateMode::Answer => {
            axum::Json(json!({"data": {"Get": {"MemoryEvent": objects}}})).into_response()
        }
        WeaviateMode::NoClass => axum::Json(json!({"data": null, "errors": [{
            "message": "Cannot query field \"MemoryEvent\" on type \"GetObjectsObj\".",
            "locations": [{"line": 1, "column": 9}],
        }]}))
        .into_response(),
        WeaviateMode::QueryError => axum::Json(json!({"data": null, "errors": [{
            "message": "no such prop with name 'secretProp' found in class 'MemoryEvent'",
        }]}))
        .into_response(),
        WeaviateMode::Status(code) => (
            StatusCode::from_u16(code).unwrap(),
            axum::Json(json!({"error": [{"message": "internal detail 10.9.8.7"}]})),
        )
            .into_response(),
        WeaviateMode::Stall => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            axum::Json(json!({"data": {"Get": {"MemoryEvent": []}}})).into_response()
        }
    }
}

/// Serves `app` on a free port of 127.0.0.1 for the rest of the test.
pub async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A port nothing listens on.
pub async fn closed_port() -> u16 {
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
    /// More environment variables for the service.
    pub env: Vec<(&'static str, String)>,
    /// Without the gateway's signing keys: callers are identified by the
    /// assertion alone, as in stacks that predate the keys.
    pub assertion_only: bool,
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
            format!("asker={base}/v1ask"),
            format!("v03={base}/v03;protocol=0.3"),
            format!("talker={base}/message"),
            format!("talker03={base}/message;protocol=0.3"),
            format!("seed={base}/http;kind=http"),
            format!("failing={base}/fail;kind=http"),
            format!("slow={base}/slow;kind=http;timeout=500ms"),
            format!("patient={base}/slow;kind=http;timeout=5"),
            format!("refused=http://127.0.0.1:{refused}/x;timeout=2"),
            format!("bearer={base}/v1;forward_bearer=true"),
            format!("nocard={base}/http;kind=http"),
            format!("delegated={base}/v1;did={DELEGATED_DID}"),
        ]
        .join(",");
        let mut vars: HashMap<&str, String> = HashMap::new();
        vars.insert("ATTACH_ASSERTION_KEY", KEY_B64.into());
        vars.insert("ATTACH_DATA_DIR", dir.path().to_str().unwrap().into());
        vars.insert("A2A_AGENTS", agents.clone());
        vars.insert("ATTACH_PUBLIC_URL", ISSUER.into());
        if opts.assertion_only {
            // No agent may have a DID without the gateway's keys.
            let without: Vec<&str> = agents.split(',').filter(|a| !a.contains(";did=")).collect();
            vars.insert("A2A_AGENTS", without.join(","));
        } else {
            vars.insert("ATTACH_SIGNING_KEYS", signing_keys_text());
        }
        if let Some(url) = database_url(db).await {
            vars.insert("A2A_DATABASE_URL", url);
        }
        if let Some(m) = opts.max_body {
            vars.insert("A2A_MAX_BODY", m.into());
        }
        if let Some(t) = opts.ttl {
            vars.insert("A2A_TASK_TTL", t.into());
        }
        vars.extend(opts.env);
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

    /// A request as the gateway sends it for `user`: the identity headers,
    /// the assertion and the identity token (the service checks the token
    /// when it has the signing keys, else the assertion).
    pub fn request(method: &str, path: &str, user: Option<&str>, body: Body) -> Request<Body> {
        match user {
            Some(MIRROR) => {
                let now = attach_a2a_service::auth::unix_now();
                Request::builder()
                    .method(method)
                    .uri(path)
                    .header("content-type", "application/json")
                    .header("x-attach-assertion", key().sign_mirror(now + 60))
                    .body(body)
                    .unwrap()
            }
            Some(user) => Self::request_as(method, path, &As::user(user), body),
            None => Request::builder()
                .method(method)
                .uri(path)
                .header("content-type", "application/json")
                .body(body)
                .unwrap(),
        }
    }

    pub fn request_as(method: &str, path: &str, who: &As, body: Body) -> Request<Body> {
        let now = attach_a2a_service::auth::unix_now();
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .header("x-attach-user", &who.user)
            .header("x-attach-session", &who.session)
            .header(
                "x-attach-assertion",
                key().sign(now + 60, &who.user, &who.session),
            )
            .header("x-attach-identity", who.identity_token());
        if let Ok(chain) = attach_contract::delegation::ActorChain::from_act(who.act.as_ref()) {
            if !chain.is_empty() {
                b = b.header("x-attach-actor", chain.header_value());
            }
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

    /// A 1.0 call (`A2A-Version: 1.0`).
    pub async fn v1(&self, agent: &str, user: &str, method: &str, params: Value) -> Value {
        self.rpc(agent, Some("1.0"), user, method, params).await
    }

    /// A 0.3 call (no version header).
    pub async fn v03(&self, agent: &str, user: &str, method: &str, params: Value) -> Value {
        self.rpc(agent, None, user, method, params).await
    }

    /// Starts a 0.3 task without waiting for it; returns its id.
    pub async fn start_in_background(&self, agent: &str, user: &str) -> String {
        let params = json!({"message": msg_v03("x"), "configuration": {"blocking": false}});
        let r = self.v03(agent, user, "message/send", params).await;
        r["result"]["id"].as_str().expect("a task id").to_string()
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
