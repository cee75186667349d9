//! The agents over HTTP, against a stand-in gateway on 127.0.0.1 that
//! serves `/api/chat`, `/mem/events`, `/mem/events/{id}` and
//! `/a2a/agents/coder` and records what it was sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use attach_example_agents::{Agent, Role, Settings, router};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

const TOKEN: &str = "Bearer token-of-alice";
const USER: &str = "did:key:alice";
const PLAN: &str = "1. Read the file.\n2. Count the words.";
const CODE: &str = "```python\nprint(len(open('f').read().split()))\n```";

/// One request the stand-in gateway received.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    authorization: Option<String>,
    a2a_version: Option<String>,
    /// Whether `X-Attach-User` came along (the gateway sets it; an agent
    /// must not try).
    attach_user: bool,
    /// The session and assertion the agent carried back.
    session: Option<String>,
    assertion: Option<String>,
    body: Value,
}

#[derive(Clone)]
enum CoderRoute {
    /// Answer `SendMessage` with this `result`.
    Canned(Value),
    /// Forward to a real coder, as the companion service would.
    Agent(String),
}

#[derive(Clone)]
struct Gateway {
    seen: Arc<Mutex<Vec<Seen>>>,
    memory: Arc<Mutex<HashMap<String, Value>>>,
    chat_status: StatusCode,
    chat_delay: Duration,
    coder: CoderRoute,
}

impl Gateway {
    fn new(coder: CoderRoute) -> Self {
        Gateway {
            seen: Arc::default(),
            memory: Arc::default(),
            chat_status: StatusCode::OK,
            chat_delay: Duration::ZERO,
            coder,
        }
    }

    fn record(&self, path: &str, headers: &HeaderMap, body: Value) {
        let text = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_string());
        self.seen.lock().unwrap().push(Seen {
            path: path.to_string(),
            authorization: text("authorization"),
            a2a_version: text("a2a-version"),
            attach_user: headers.contains_key("x-attach-user"),
            session: text("x-attach-session"),
            assertion: text("x-attach-assertion"),
            body,
        });
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn store_plan(&self, request: &str) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        let document = json!({"mem_id": id, "kind": "plan",
                              "content": {"request": request, "plan": PLAN}});
        self.memory.lock().unwrap().insert(id.clone(), document);
        id
    }

    async fn start(self) -> String {
        let app = Router::new()
            .route("/api/chat", post(chat))
            .route("/mem/events", post(remember))
            .route("/mem/events/{id}", get(recall))
            .route("/a2a/agents/coder", post(coder))
            .route("/elsewhere", post(elsewhere))
            .with_state(self);
        serve(app).await
    }
}

async fn chat(State(g): State<Gateway>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    g.record("/api/chat", &headers, body.clone());
    tokio::time::sleep(g.chat_delay).await;
    if g.chat_status == StatusCode::TEMPORARY_REDIRECT {
        return (g.chat_status, [("location", "/elsewhere")]).into_response();
    }
    if g.chat_status != StatusCode::OK {
        return (g.chat_status, Json(json!({"error": "no engine"}))).into_response();
    }
    let system = body["messages"][0]["content"].as_str().unwrap_or_default();
    let content = if system.contains("fenced code block") {
        CODE
    } else {
        PLAN
    };
    Json(json!({"model": body["model"], "message": {"role": "assistant", "content": content}, "done": true}))
        .into_response()
}

async fn elsewhere(State(g): State<Gateway>, headers: HeaderMap) -> Json<Value> {
    g.record("/elsewhere", &headers, Value::Null);
    Json(json!({"message": {"content": "followed"}}))
}

async fn remember(
    State(g): State<Gateway>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Json<Value> {
    g.record("/mem/events", &headers, body.clone());
    let id = uuid::Uuid::new_v4().to_string();
    let document = json!({"mem_id": id, "kind": body["kind"], "content": body["content"]});
    g.memory.lock().unwrap().insert(id.clone(), document);
    Json(json!({"mem_id": id}))
}

async fn recall(State(g): State<Gateway>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    g.record(&format!("/mem/events/{id}"), &headers, Value::Null);
    match g.memory.lock().unwrap().get(&id) {
        Some(d) => Json(d.clone()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "not_found", "message": "no such memory document"})),
        )
            .into_response(),
    }
}

async fn coder(
    State(g): State<Gateway>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Json<Value> {
    g.record("/a2a/agents/coder", &headers, body.clone());
    match &g.coder {
        CoderRoute::Canned(result) => {
            Json(json!({"jsonrpc": "2.0", "id": body["id"], "result": result}))
        }
        CoderRoute::Agent(url) => {
            let mut request = reqwest::Client::new()
                .post(url)
                .header("x-attach-user", USER)
                .json(&body);
            for name in ["authorization", "a2a-version"] {
                if let Some(v) = headers.get(name) {
                    request = request.header(name, v.clone());
                }
            }
            Json(request.send().await.unwrap().json().await.unwrap())
        }
    }
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

async fn start_agent(role: Role, gateway: &str, timeout: Duration) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let settings = Settings {
        role,
        host: [127, 0, 0, 1].into(),
        port: 0,
        gateway_url: gateway.to_string(),
        model: "test-model".into(),
        timeout,
        identity: None,
        issuer: gateway.to_string(),
        actor_audience: gateway.to_string(),
    };
    let agent = Arc::new(Agent::new(&settings, url.clone()).unwrap());
    tokio::spawn(async move { axum::serve(listener, router(agent)).await.unwrap() });
    url
}

/// Posts raw bytes to an agent as the companion service would: identity
/// headers, `A2A-Version: 1.0` and, when given, the caller's token.
async fn post_raw(agent: &str, body: Vec<u8>, authorization: Option<&str>, user: &str) -> Value {
    let mut request = reqwest::Client::new()
        .post(agent)
        .header("content-type", "application/json")
        .header("a2a-version", "1.0")
        .header("x-attach-user", user)
        .header("x-attach-session", "s1")
        .header("x-attach-assertion", "signed-by-the-service")
        .body(body);
    if let Some(a) = authorization {
        request = request.header("authorization", a);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn rpc(agent: &str, method: &str, params: Value, authorization: Option<&str>) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": "r1", "method": method, "params": params});
    post_raw(agent, body.to_string().into_bytes(), authorization, USER).await
}

fn message(parts: Value) -> Value {
    json!({"message": {"messageId": uuid::Uuid::new_v4().to_string(), "role": "ROLE_USER",
                       "contextId": "ctx-1", "parts": parts}})
}

/// `SendMessage` (blocking); the task in the result.
async fn send(agent: &str, parts: Value, authorization: Option<&str>) -> Value {
    let reply = rpc(agent, "SendMessage", message(parts), authorization).await;
    assert_eq!(reply["id"], "r1", "{reply}");
    reply["result"]["task"].clone()
}

fn status_text(task: &Value) -> &str {
    task["status"]["message"]["parts"][0]["text"]
        .as_str()
        .unwrap()
}

fn completed_coder_task() -> Value {
    json!({"task": {
        "id": "coder-task-7", "contextId": "ctx-1",
        "status": {"state": "TASK_STATE_COMPLETED",
                   "message": {"messageId": "m2", "role": "ROLE_AGENT", "parts": [{"text": "done"}]}},
        "artifacts": [{"artifactId": "a1", "name": "code", "parts": [{"text": CODE}]}],
    }})
}

const TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn planner_plans_stores_and_hands_off() {
    let gateway = Gateway::new(CoderRoute::Canned(completed_coder_task()));
    let url = gateway.clone().start().await;
    let planner = start_agent(Role::Planner, &url, TIMEOUT).await;

    let task = send(
        &planner,
        json!([{"text": "Count words in a file"}]),
        Some(TOKEN),
    )
    .await;
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{task}");
    assert_eq!(task["contextId"], "ctx-1");

    let seen = gateway.seen();
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths, ["/api/chat", "/mem/events", "/a2a/agents/coder"]);
    for s in &seen {
        assert_eq!(s.authorization.as_deref(), Some(TOKEN), "{}", s.path);
        assert!(!s.attach_user, "{}: X-Attach-User forwarded", s.path);
        assert_eq!(s.session.as_deref(), Some("s1"), "{}", s.path);
        assert_eq!(
            s.assertion.as_deref(),
            Some("signed-by-the-service"),
            "{}: the caller's session travels with its assertion",
            s.path
        );
    }

    let chat = &seen[0].body;
    assert_eq!(chat["model"], "test-model");
    assert_eq!(chat["stream"], false);
    assert_eq!(chat["messages"][0]["role"], "system");
    assert!(
        chat["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("numbered plan")
    );
    assert_eq!(
        chat["messages"][1],
        json!({"role": "user", "content": "Count words in a file"})
    );

    let stored = &seen[1].body;
    assert_eq!(
        *stored,
        json!({"kind": "plan", "content": {"request": "Count words in a file", "plan": PLAN}})
    );
    let mem_id = gateway
        .memory
        .lock()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();

    let handed = &seen[2];
    assert_eq!(handed.a2a_version.as_deref(), Some("1.0"));
    assert_eq!(handed.body["method"], "SendMessage");
    let params = &handed.body["params"];
    assert_eq!(params["configuration"]["returnImmediately"], false);
    assert_eq!(params["message"]["role"], "ROLE_USER");
    assert_eq!(params["message"]["contextId"], "ctx-1");
    assert_eq!(
        params["message"]["parts"],
        json!([{"text": "Count words in a file"}, {"data": {"mem_id": mem_id}}])
    );

    assert_eq!(
        status_text(&task),
        format!("Plan stored as {mem_id}; the coder answered.")
    );
    let artifacts = task["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 2);
    assert_eq!(artifacts[0]["name"], "plan");
    assert_eq!(artifacts[0]["parts"], json!([{"text": PLAN}]));
    assert_eq!(artifacts[0]["metadata"], json!({"mem_id": mem_id}));
    assert_eq!(artifacts[1]["name"], "code");
    assert_eq!(artifacts[1]["parts"], json!([{"text": CODE}]));
    assert_eq!(
        artifacts[1]["metadata"],
        json!({"coder_task_id": "coder-task-7"})
    );
    assert_eq!(
        task["metadata"],
        json!({"mem_id": mem_id, "coder_task_id": "coder-task-7"})
    );

    // The same task, read back.
    let read = rpc(&planner, "GetTask", json!({"id": task["id"]}), None).await;
    assert_eq!(read["result"], task);
    let read = rpc(
        &planner,
        "GetTask",
        json!({"id": task["id"], "historyLength": 1}),
        None,
    )
    .await;
    assert_eq!(read["result"]["history"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn coder_writes_code_from_the_stored_plan() {
    let gateway = Gateway::new(CoderRoute::Canned(Value::Null));
    let mem_id = gateway.store_plan("Count words");
    let url = gateway.clone().start().await;
    let coder = start_agent(Role::Coder, &url, TIMEOUT).await;

    let parts = json!([{"text": "Count words in a file"}, {"data": {"mem_id": mem_id}}]);
    let task = send(&coder, parts, Some(TOKEN)).await;
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{task}");
    assert_eq!(
        status_text(&task),
        format!("Code written from plan {mem_id}.")
    );
    assert_eq!(task["artifacts"][0]["name"], "code");
    assert_eq!(task["artifacts"][0]["parts"], json!([{"text": CODE}]));

    let seen = gateway.seen();
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        [format!("/mem/events/{mem_id}").as_str(), "/api/chat"]
    );
    assert!(
        seen.iter()
            .all(|s| s.authorization.as_deref() == Some(TOKEN))
    );
    let messages = &seen[1].body["messages"];
    assert!(
        messages[0]["content"]
            .as_str()
            .unwrap()
            .contains("fenced code block")
    );
    let prompt = messages[1]["content"].as_str().unwrap();
    assert!(
        prompt.contains("Count words in a file") && prompt.contains(PLAN),
        "{prompt}"
    );

    // A text line naming the plan serves as well.
    let text = format!("Count words in a file\nmem_id: {mem_id}");
    let task = send(&coder, json!([{"text": text}]), Some(TOKEN)).await;
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{task}");
}

#[tokio::test]
async fn coder_reports_a_missing_plan_and_a_missing_mem_id() {
    let gateway = Gateway::new(CoderRoute::Canned(Value::Null));
    let url = gateway.clone().start().await;
    let coder = start_agent(Role::Coder, &url, TIMEOUT).await;

    let unknown = uuid::Uuid::new_v4().to_string();
    let task = send(&coder, json!([{"data": {"mem_id": unknown}}]), Some(TOKEN)).await;
    assert_eq!(task["status"]["state"], "TASK_STATE_FAILED");
    assert_eq!(
        status_text(&task),
        format!("plan {unknown} not found for this user")
    );

    let task = send(&coder, json!([{"text": "write code"}]), Some(TOKEN)).await;
    assert_eq!(task["status"]["state"], "TASK_STATE_REJECTED");
    assert!(status_text(&task).contains("names no plan"), "{task}");

    let task = send(
        &coder,
        json!([{"data": {"mem_id": "../../api/tags"}}]),
        Some(TOKEN),
    )
    .await;
    assert_eq!(task["status"]["state"], "TASK_STATE_REJECTED");

    // Only the unknown plan was looked up.
    assert_eq!(gateway.seen().len(), 1);
}

#[tokio::test]
async fn engine_down_fails_the_task_and_says_so() {
    let mut gateway = Gateway::new(CoderRoute::Canned(completed_coder_task()));
    gateway.chat_status = StatusCode::SERVICE_UNAVAILABLE;
    let url = gateway.clone().start().await;
    let planner = start_agent(Role::Planner, &url, TIMEOUT).await;

    let task = send(&planner, json!([{"text": "Count words"}]), Some(TOKEN)).await;
    assert_eq!(task["status"]["state"], "TASK_STATE_FAILED");
    assert_eq!(
        status_text(&task),
        "the model engine is not answering (the gateway returned 503 for /api/chat): no engine"
    );
    assert!(task["artifacts"].as_array().unwrap().is_empty());
    assert_eq!(gateway.seen().len(), 1, "nothing is stored or handed off");
}

#[tokio::test]
async fn slow_engine_times_out() {
    let mut gateway = Gateway::new(CoderRoute::Canned(completed_coder_task()));
    gateway.chat_delay = Duration::from_secs(5);
    let url = gateway.start().await;
    let planner = start_agent(Role::Planner, &url, Duration::from_millis(300)).await;

    let task = send(&planner, json!([{"text": "Count words"}]), Some(TOKEN)).await;
    assert_eq!(task["status"]["state"], "TASK_STATE_FAILED");
    assert_eq!(
        status_text(&task),
        "the model engine did not answer within 0.3 s (/api/chat)"
    );
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let mut gateway = Gateway::new(CoderRoute::Canned(completed_coder_task()));
    gateway.chat_status = StatusCode::TEMPORARY_REDIRECT;
    let url = gateway.clone().start().await;
    let planner = start_agent(Role::Planner, &url, TIMEOUT).await;

    let task = send(&planner, json!([{"text": "Count words"}]), Some(TOKEN)).await;
    assert_eq!(task["status"]["state"], "TASK_STATE_FAILED");
    assert!(
        status_text(&task).contains("returned 307 for /api/chat"),
        "{task}"
    );
    assert!(gateway.seen().iter().all(|s| s.path != "/elsewhere"));
}

#[tokio::test]
async fn without_authorization_nothing_is_called() {
    let gateway = Gateway::new(CoderRoute::Canned(completed_coder_task()));
    let url = gateway.clone().start().await;
    let planner = start_agent(Role::Planner, &url, TIMEOUT).await;
    let coder = start_agent(Role::Coder, &url, TIMEOUT).await;

    let task = send(&planner, json!([{"text": "Count words"}]), None).await;
    assert_eq!(task["status"]["state"], "TASK_STATE_FAILED");
    assert!(status_text(&task).starts_with("no Authorization header was forwarded"));
    let id = uuid::Uuid::new_v4().to_string();
    let task = send(&coder, json!([{"data": {"mem_id": id}}]), None).await;
    assert_eq!(task["status"]["state"], "TASK_STATE_FAILED");
    assert!(status_text(&task).contains("forward_bearer=true"));
    assert!(gateway.seen().is_empty());
}

#[tokio::test]
async fn coder_failure_fails_the_planner() {
    let failed = json!({"task": {
        "id": "coder-task-8", "contextId": "ctx-1",
        "status": {"state": "TASK_STATE_FAILED",
                   "message": {"messageId": "m3", "role": "ROLE_AGENT",
                               "parts": [{"text": "agent \"coder\" answered HTTP 502"}]}},
    }});
    let gateway = Gateway::new(CoderRoute::Canned(failed));
    let url = gateway.start().await;
    let planner = start_agent(Role::Planner, &url, TIMEOUT).await;

    let task = send(&planner, json!([{"text": "Count words"}]), Some(TOKEN)).await;
    assert_eq!(task["status"]["state"], "TASK_STATE_FAILED");
    assert_eq!(
        status_text(&task),
        "the coder failed: agent \"coder\" answered HTTP 502"
    );
}

#[tokio::test]
async fn protocol_errors() {
    let gateway = Gateway::new(CoderRoute::Canned(completed_coder_task()));
    let url = gateway.start().await;
    let planner = start_agent(Role::Planner, &url, TIMEOUT).await;
    let code = |reply: &Value| reply["error"]["code"].as_i64().unwrap();

    let reply = post_raw(&planner, b"{not json".to_vec(), None, USER).await;
    assert_eq!((code(&reply), &reply["id"]), (-32700, &Value::Null));
    let reply = rpc(&planner, "message/send", json!({}), None).await;
    assert_eq!((code(&reply), &reply["id"]), (-32601, &json!("r1")));
    let reply = rpc(
        &planner,
        "SendMessage",
        json!({"message": {"parts": []}}),
        None,
    )
    .await;
    assert_eq!(code(&reply), -32602);
    let reply = rpc(&planner, "GetTask", json!({}), None).await;
    assert_eq!(code(&reply), -32602);
    let reply = rpc(&planner, "GetTask", json!({"id": "nope"}), None).await;
    assert_eq!(code(&reply), -32001);

    // Without A2A-Version the request is 0.3, which these agents do not speak.
    let reply: Value = reqwest::Client::new()
        .post(&planner)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "x"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(code(&reply), -32009);

    // A task is only another user's unknown task; it takes no second message.
    let task = send(&planner, json!([{"text": "Count words"}]), Some(TOKEN)).await;
    let get = json!({"jsonrpc": "2.0", "id": 2, "method": "GetTask", "params": {"id": task["id"]}});
    let reply = post_raw(
        &planner,
        get.to_string().into_bytes(),
        None,
        "did:key:mallory",
    )
    .await;
    assert_eq!(code(&reply), -32001);
    let mut follow_up = message(json!([{"text": "more"}]));
    follow_up["message"]["taskId"] = task["id"].clone();
    let reply = rpc(&planner, "SendMessage", follow_up, Some(TOKEN)).await;
    assert_eq!(code(&reply), -32004);
}

#[tokio::test]
async fn return_immediately_then_get_task() {
    let mut gateway = Gateway::new(CoderRoute::Canned(completed_coder_task()));
    gateway.chat_delay = Duration::from_millis(200);
    let url = gateway.start().await;
    let planner = start_agent(Role::Planner, &url, TIMEOUT).await;

    let mut params = message(json!([{"text": "Count words"}]));
    params["configuration"] = json!({"returnImmediately": true});
    let reply = rpc(&planner, "SendMessage", params, Some(TOKEN)).await;
    let task = &reply["result"]["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_WORKING", "{reply}");
    let id = task["id"].clone();
    for _ in 0..100 {
        let now = rpc(&planner, "GetTask", json!({"id": id}), None).await;
        if now["result"]["status"]["state"] == "TASK_STATE_COMPLETED" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the task never completed");
}

#[tokio::test]
async fn cards_and_health() {
    let url = Gateway::new(CoderRoute::Canned(Value::Null)).start().await;
    for (role, skill) in [(Role::Planner, "plan"), (Role::Coder, "code")] {
        let agent = start_agent(role, &url, TIMEOUT).await;
        let card: Value = reqwest::get(format!("{agent}/.well-known/agent-card.json"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(card["name"].as_str().unwrap().contains(role.name()));
        assert!(card["description"].is_string() && card["version"].is_string());
        assert_eq!(card["skills"][0]["id"], skill);
        assert_eq!(
            card["supportedInterfaces"],
            json!([{"url": agent, "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}])
        );
        assert_eq!(card["capabilities"]["streaming"], false);
        let health: Value = reqwest::get(format!("{agent}/healthz"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(health, json!({"status": "ok", "role": role.name()}));
    }
}

/// The planner hands off to a real coder behind the stand-in gateway: the
/// coder reads the plan the planner stored, as the same user.
#[tokio::test]
async fn planner_and_coder_talk() {
    let coder_gateway = Gateway::new(CoderRoute::Canned(Value::Null));
    let memory = Arc::clone(&coder_gateway.memory);
    let seen = Arc::clone(&coder_gateway.seen);
    let first = coder_gateway.start().await;
    let coder = start_agent(Role::Coder, &first, TIMEOUT).await;

    // The planner's gateway shares the memory and the record of requests
    // with the coder's, and routes /a2a/agents/coder to the real coder.
    let mut gateway = Gateway::new(CoderRoute::Agent(coder));
    gateway.memory = memory;
    gateway.seen = seen;
    let url = gateway.clone().start().await;
    let planner = start_agent(Role::Planner, &url, TIMEOUT).await;

    let task = send(
        &planner,
        json!([{"text": "Count words in a file"}]),
        Some(TOKEN),
    )
    .await;
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{task}");
    let mem_id = task["metadata"]["mem_id"].as_str().unwrap();
    assert_eq!(task["artifacts"][1]["name"], "code");
    assert_eq!(task["artifacts"][1]["parts"], json!([{"text": CODE}]));
    let coder_task_id = task["metadata"]["coder_task_id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(coder_task_id).is_ok());

    let seen = gateway.seen();
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    let plan_path = format!("/mem/events/{mem_id}");
    assert_eq!(
        paths,
        [
            "/api/chat",
            "/mem/events",
            "/a2a/agents/coder",
            plan_path.as_str(),
            "/api/chat"
        ]
    );
    assert!(
        seen.iter()
            .all(|s| s.authorization.as_deref() == Some(TOKEN))
    );
}
