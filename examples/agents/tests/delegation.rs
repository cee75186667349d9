//! Agents registered with a DID, against a stand-in for the gateway and
//! the companion service on 127.0.0.1: it publishes its keys (discovery
//! and JWKS), signs the identity tokens the service would send, answers
//! the token exchange at `/oauth/token`, and records every request.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use attach_contract::did_key::DidKeyIdentity;
use attach_contract::gateway_keys::{KeySet, SigningKeys, new_key};
use attach_contract::identity_token::{self, IdentityClaims};
use attach_example_agents::{Agent, Role, Settings, router};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

const USER: &str = "did:key:z6MkAlice";
const TO_PLANNER: &str = "delegated-to-planner";
const TO_CODER: &str = "delegated-to-coder";
const EXCHANGED: &str = "exchanged-by-planner";
const ACTOR_AUDIENCE: &str = "urn:attach:gateway";
const PLAN: &str = "1. Read the file.\n2. Count the words.";
const CODE: &str = "```python\nprint(1)\n```";

/// One request the stand-in received.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Clone)]
struct StandIn {
    url: Arc<Mutex<String>>,
    keys: Arc<Mutex<SigningKeys>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    memory: Arc<Mutex<Vec<Value>>>,
    /// Discovery answers 500 this many more times.
    discovery_failures: Arc<AtomicUsize>,
    coder: Arc<Mutex<Option<(String, String)>>>,
    /// The issuer its discovery document names, when not its own URL.
    public_url: Arc<Mutex<Option<String>>>,
}

fn keys(seed: u8) -> SigningKeys {
    SigningKeys::from_set(&KeySet {
        keys: vec![new_key([seed; 32], 0)],
    })
    .unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl StandIn {
    async fn start() -> StandIn {
        let s = StandIn {
            url: Arc::default(),
            keys: Arc::new(Mutex::new(keys(1))),
            seen: Arc::default(),
            memory: Arc::default(),
            discovery_failures: Arc::default(),
            coder: Arc::default(),
            public_url: Arc::default(),
        };
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/.well-known/jwks.json", get(jwks))
            .route("/oauth/token", post(token))
            .route("/api/chat", post(chat))
            .route("/mem/events", post(remember))
            .route("/mem/events/{id}", get(recall))
            .route("/a2a/agents/coder", post(coder))
            .with_state(s.clone());
        *s.url.lock().unwrap() = serve(app).await;
        s
    }

    fn url(&self) -> String {
        self.url.lock().unwrap().clone()
    }

    fn record(&self, uri: &Uri, headers: &HeaderMap, body: &Bytes) {
        self.seen.lock().unwrap().push(Seen {
            path: uri.path().to_string(),
            headers: headers.clone(),
            body: body.clone(),
        });
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Requests other than the key fetches.
    fn calls(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| !s.path.starts_with("/.well-known/"))
            .collect()
    }

    /// An identity token as the service sends it to `audience`.
    fn identity_token(&self, audience: &str, act: Option<Value>) -> String {
        let keys = self.keys.lock().unwrap().clone();
        self.identity_token_with(&keys, &self.url(), audience, act, now())
    }

    fn identity_token_with(
        &self,
        keys: &SigningKeys,
        issuer: &str,
        audience: &str,
        act: Option<Value>,
        iat: u64,
    ) -> String {
        identity_token::sign(
            keys,
            &IdentityClaims {
                iss: issuer.to_string(),
                sub: USER.into(),
                aud: audience.to_string(),
                iat,
                exp: iat + 60,
                jti: uuid::Uuid::new_v4().to_string(),
                sid: "0123456789abcdef".into(),
                idp: USER.into(),
                scope: None,
                act,
            },
        )
    }
}

async fn discovery(State(s): State<StandIn>, uri: Uri, headers: HeaderMap) -> Response {
    s.record(&uri, &headers, &Bytes::new());
    if s.discovery_failures
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let url = s
        .public_url
        .lock()
        .unwrap()
        .clone()
        .unwrap_or_else(|| s.url());
    Json(
        json!({"issuer": url, "jwks_uri": format!("{url}/.well-known/jwks.json"),
                "token_endpoint": format!("{url}/oauth/token")}),
    )
    .into_response()
}

async fn jwks(State(s): State<StandIn>, uri: Uri, headers: HeaderMap) -> Json<Value> {
    s.record(&uri, &headers, &Bytes::new());
    Json(s.keys.lock().unwrap().jwks(now()))
}

fn form(body: &Bytes) -> Vec<(String, String)> {
    let text = std::str::from_utf8(body).unwrap();
    reqwest::Url::parse(&format!("http://x/?{text}"))
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

async fn token(State(s): State<StandIn>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    s.record(&uri, &headers, &body);
    let form = form(&body);
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if field("subject_token") != Some(TO_PLANNER) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant", "error_description": "not delegated to you"})),
        )
            .into_response();
    }
    Json(
        json!({"access_token": EXCHANGED, "token_type": "Bearer", "expires_in": 60,
                "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"}),
    )
    .into_response()
}

async fn chat(State(s): State<StandIn>, uri: Uri, headers: HeaderMap, body: Bytes) -> Json<Value> {
    s.record(&uri, &headers, &body);
    let request: Value = serde_json::from_slice(&body).unwrap();
    let system = request["messages"][0]["content"]
        .as_str()
        .unwrap_or_default();
    let content = if system.contains("fenced code block") {
        CODE
    } else {
        PLAN
    };
    Json(json!({"message": {"role": "assistant", "content": content}, "done": true}))
}

async fn remember(
    State(s): State<StandIn>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Json<Value> {
    s.record(&uri, &headers, &body);
    let request: Value = serde_json::from_slice(&body).unwrap();
    let id = uuid::Uuid::new_v4().to_string();
    s.memory
        .lock()
        .unwrap()
        .push(json!({"mem_id": id, "kind": request["kind"], "content": request["content"]}));
    Json(json!({"mem_id": id}))
}

async fn recall(State(s): State<StandIn>, uri: Uri, headers: HeaderMap) -> Response {
    s.record(&uri, &headers, &Bytes::new());
    let id = uri
        .path()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let memory = s.memory.lock().unwrap();
    match memory.iter().find(|d| d["mem_id"] == id.as_str()) {
        Some(d) => Json(d.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// What the service does for a hand-off to the coder: a task for it, with
/// an identity token for its DID and a token delegated to it.
async fn coder(State(s): State<StandIn>, uri: Uri, headers: HeaderMap, body: Bytes) -> Json<Value> {
    s.record(&uri, &headers, &body);
    let (url, did) = s.coder.lock().unwrap().clone().unwrap();
    let planner = "did:key:planner";
    let act = json!({"sub": did, "act": {"sub": planner}});
    let reply = reqwest::Client::new()
        .post(url)
        .header("a2a-version", "1.0")
        .header("x-attach-identity", s.identity_token(&did, Some(act)))
        .header("x-attach-delegation", TO_CODER)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    Json(reply.json().await.unwrap())
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// An identity file for a fresh did:key, mode 0600.
fn identity_file(name: &str) -> (PathBuf, DidKeyIdentity) {
    let dir = std::env::temp_dir().join(format!("attach-agents-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}-{}.json", uuid::Uuid::new_v4()));
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&uuid::Uuid::new_v4().as_bytes().repeat(2));
    let identity = DidKeyIdentity::from_seed(seed);
    std::fs::write(&path, identity.file_text()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    (path, identity)
}

/// A delegating agent of `role` behind `stand_in`; its URL and DID.
async fn start_agent(role: Role, stand_in: &StandIn) -> (String, DidKeyIdentity) {
    start_agent_for(role, stand_in, &stand_in.url()).await
}

/// The same, for a gateway whose issuer is `issuer`.
async fn start_agent_for(role: Role, stand_in: &StandIn, issuer: &str) -> (String, DidKeyIdentity) {
    let (file, identity) = identity_file(role.name());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let settings = Settings {
        role,
        host: [127, 0, 0, 1].into(),
        port: 0,
        gateway_url: stand_in.url(),
        model: "test-model".into(),
        timeout: Duration::from_secs(10),
        identity: Some(file),
        issuer: issuer.to_string(),
        actor_audience: ACTOR_AUDIENCE.into(),
    };
    let agent = Arc::new(Agent::new(&settings, url.clone()).unwrap());
    tokio::spawn(async move { axum::serve(listener, router(agent)).await.unwrap() });
    (url, identity)
}

/// Posts a `SendMessage` with `headers`; the status and the JSON body.
async fn send(agent: &str, headers: &[(&str, String)], parts: Value) -> (u16, Value, HeaderMap) {
    let body = json!({"jsonrpc": "2.0", "id": "r1", "method": "SendMessage", "params": {
        "message": {"messageId": uuid::Uuid::new_v4().to_string(), "role": "ROLE_USER",
                    "contextId": "ctx-1", "parts": parts}}});
    let mut request = reqwest::Client::new()
        .post(agent)
        .header("a2a-version", "1.0")
        .json(&body);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, response.json().await.unwrap(), headers)
}

fn bearer(seen: &Seen) -> Option<&str> {
    seen.headers
        .get("authorization")
        .map(|v| v.to_str().unwrap())
}

fn decode(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[tokio::test]
async fn the_hand_off_runs_on_delegated_and_exchanged_tokens_only() {
    let stand_in = StandIn::start().await;
    let (planner, planner_id) = start_agent(Role::Planner, &stand_in).await;
    let (coder, coder_id) = start_agent(Role::Coder, &stand_in).await;
    *stand_in.coder.lock().unwrap() = Some((coder, coder_id.did().to_string()));

    let identity =
        stand_in.identity_token(planner_id.did(), Some(json!({"sub": planner_id.did()})));
    let (status, reply, _) = send(
        &planner,
        &[
            ("x-attach-identity", identity),
            ("x-attach-delegation", TO_PLANNER.into()),
        ],
        json!([{"text": "Count words in a file"}]),
    )
    .await;
    assert_eq!(status, 200);
    let task = &reply["result"]["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{reply}");
    assert_eq!(task["artifacts"][1]["parts"], json!([{"text": CODE}]));

    let calls = stand_in.calls();
    let route: Vec<(&str, Option<&str>)> =
        calls.iter().map(|s| (s.path.as_str(), bearer(s))).collect();
    let mem_id = task["metadata"]["mem_id"].as_str().unwrap();
    let plan_path = format!("/mem/events/{mem_id}");
    let (to_planner, to_coder, exchanged) = (
        format!("Bearer {TO_PLANNER}"),
        format!("Bearer {TO_CODER}"),
        format!("Bearer {EXCHANGED}"),
    );
    assert_eq!(
        route,
        [
            ("/api/chat", Some(to_planner.as_str())),
            ("/mem/events", Some(to_planner.as_str())),
            // RFC 8693 section 2.1: no client authentication, the actor
            // token proves who asks.
            ("/oauth/token", None),
            ("/a2a/agents/coder", Some(exchanged.as_str())),
            (plan_path.as_str(), Some(to_coder.as_str())),
            ("/api/chat", Some(to_coder.as_str())),
        ]
    );
    for seen in &calls {
        for name in ["x-attach-session", "x-attach-assertion", "x-attach-user"] {
            assert!(
                !seen.headers.contains_key(name),
                "{name} sent to {}",
                seen.path
            );
        }
    }

    // RFC 8693 section 2.1: the exchange's form, the planner's own DID-JWT
    // as the actor token.
    let exchange = &calls[2];
    assert_eq!(
        exchange.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    let form = form(&exchange.body);
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert_eq!(
        field("grant_type").as_deref(),
        Some("urn:ietf:params:oauth:grant-type:token-exchange")
    );
    assert_eq!(field("subject_token").as_deref(), Some(TO_PLANNER));
    let jwt = "urn:ietf:params:oauth:token-type:jwt";
    assert_eq!(field("subject_token_type").as_deref(), Some(jwt));
    assert_eq!(field("actor_token_type").as_deref(), Some(jwt));
    let actor_token = field("actor_token").unwrap();
    let parts: Vec<&str> = actor_token.split('.').collect();
    let (header, claims) = (decode(parts[0]), decode(parts[1]));
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["kid"], planner_id.key_id());
    assert_eq!(claims["iss"], planner_id.did());
    assert_eq!(claims["sub"], planner_id.did());
    assert_eq!(claims["aud"], ACTOR_AUDIENCE);
    let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert!(lifetime <= 60, "{lifetime}");
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
}

#[tokio::test]
async fn tasks_without_the_gateways_token_for_this_agent_are_refused() {
    let stand_in = StandIn::start().await;
    let (planner, planner_id) = start_agent(Role::Planner, &stand_in).await;
    let (_, coder_id) = start_agent(Role::Coder, &stand_in).await;
    let delegation = ("x-attach-delegation", TO_PLANNER.to_string());
    let other_keys = keys(9);
    let current = stand_in.keys.lock().unwrap().clone();
    let old = now() - 3_600;
    let cases = [
        (None, "no x-attach-identity header"),
        // RFC 7519 section 4.1.3: the token is for another agent.
        (
            Some(stand_in.identity_token(coder_id.did(), None)),
            "for another audience",
        ),
        // Section 4.1.1: another issuer, with the right keys.
        (
            Some(stand_in.identity_token_with(
                &current,
                "http://elsewhere",
                planner_id.did(),
                None,
                now(),
            )),
            "from another issuer",
        ),
        // Section 4.1.4: expired.
        (
            Some(stand_in.identity_token_with(
                &current,
                &stand_in.url(),
                planner_id.did(),
                None,
                old,
            )),
            "has expired",
        ),
        // Signed by a key the gateway does not publish.
        (
            Some(stand_in.identity_token_with(
                &other_keys,
                &stand_in.url(),
                planner_id.did(),
                None,
                now(),
            )),
            "names a key the gateway does not publish",
        ),
        (Some("not.a.token".to_string()), "malformed"),
    ];
    for (identity, why) in cases {
        let mut headers = vec![delegation.clone()];
        if let Some(token) = identity {
            headers.push(("x-attach-identity", token));
        }
        let (status, body, reply_headers) =
            send(&planner, &headers, json!([{"text": "Count words"}])).await;
        assert_eq!(status, 401, "{why}: {body}");
        assert_eq!(
            reply_headers["www-authenticate"],
            r#"Bearer realm="attach-agent", error="invalid_token""#
        );
        assert_eq!(body["error"], "invalid_token");
        assert!(
            body["message"].as_str().unwrap().contains(why),
            "{why}: {body}"
        );
    }
    assert!(
        stand_in.calls().is_empty(),
        "nothing was done for a refused task"
    );
}

#[tokio::test]
async fn a_task_without_a_delegated_token_fails_without_calling_anything() {
    let stand_in = StandIn::start().await;
    let (planner, planner_id) = start_agent(Role::Planner, &stand_in).await;
    let identity = stand_in.identity_token(planner_id.did(), None);
    let (status, reply, _) = send(
        &planner,
        &[
            ("x-attach-identity", identity),
            // The caller's own bearer is not used by a delegating agent.
            ("authorization", "Bearer token-of-alice".into()),
        ],
        json!([{"text": "Count words"}]),
    )
    .await;
    assert_eq!(status, 200);
    let task = &reply["result"]["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_FAILED");
    let text = task["status"]["message"]["parts"][0]["text"]
        .as_str()
        .unwrap();
    assert!(
        text.starts_with("no delegated token (X-Attach-Delegation)"),
        "{text}"
    );
    assert!(stand_in.calls().is_empty());
}

#[tokio::test]
async fn a_refused_exchange_fails_the_hand_off_and_says_why() {
    let stand_in = StandIn::start().await;
    let (planner, planner_id) = start_agent(Role::Planner, &stand_in).await;
    let identity = stand_in.identity_token(planner_id.did(), None);
    let (_, reply, _) = send(
        &planner,
        &[
            ("x-attach-identity", identity),
            ("x-attach-delegation", "stolen-token".into()),
        ],
        json!([{"text": "Count words"}]),
    )
    .await;
    let task = &reply["result"]["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_FAILED");
    let text = task["status"]["message"]["parts"][0]["text"]
        .as_str()
        .unwrap();
    assert_eq!(
        text,
        "the gateway refused the token exchange (invalid_grant, status 400): not delegated to you"
    );
    let paths: Vec<String> = stand_in.calls().into_iter().map(|s| s.path).collect();
    assert_eq!(
        paths,
        ["/api/chat", "/mem/events", "/oauth/token"],
        "no hand-off"
    );
}

#[tokio::test]
async fn keys_are_fetched_again_for_a_new_kid_and_retried_when_the_gateway_fails() {
    let stand_in = StandIn::start().await;
    // The first two discovery fetches fail: the agent retries.
    stand_in.discovery_failures.store(2, Ordering::SeqCst);
    let (coder, coder_id) = start_agent(Role::Coder, &stand_in).await;
    let ask = |token: String| {
        let coder = coder.clone();
        async move {
            let (status, _, _) = send(
                &coder,
                &[("x-attach-identity", token)],
                json!([{"text": "mem_id: not-a-uuid"}]),
            )
            .await;
            status
        }
    };
    assert_eq!(
        ask(stand_in.identity_token(coder_id.did(), None)).await,
        200
    );
    let discoveries = |s: &StandIn| {
        s.seen()
            .iter()
            .filter(|r| r.path == "/.well-known/openid-configuration")
            .count()
    };
    assert_eq!(discoveries(&stand_in), 3);

    // The gateway rotates: a token by its new key names a kid the agent
    // has not seen. Right after a fetch it is refused (no fetch storms)...
    *stand_in.keys.lock().unwrap() = keys(2);
    let rotated = stand_in.identity_token(coder_id.did(), None);
    assert_eq!(ask(rotated.clone()).await, 401);
    assert_eq!(discoveries(&stand_in), 3);
    // ...and once the pause has passed, the keys are fetched again.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(ask(rotated).await, 200);
    assert_eq!(discoveries(&stand_in), 4);
}

#[tokio::test]
async fn keys_under_a_public_url_the_agent_cannot_reach_are_fetched_through_gateway_url() {
    // As in compose: the issuer is the URL the browser uses, which in the
    // agent's container is the agent itself (here a closed port).
    let public = "http://127.0.0.1:9";
    let stand_in = StandIn::start().await;
    *stand_in.public_url.lock().unwrap() = Some(public.to_string());
    let (coder, coder_id) = start_agent_for(Role::Coder, &stand_in, public).await;
    let keys = stand_in.keys.lock().unwrap().clone();
    let token = stand_in.identity_token_with(&keys, public, coder_id.did(), None, now());
    let (status, body, _) = send(
        &coder,
        &[("x-attach-identity", token)],
        json!([{"text": "mem_id: not-a-uuid"}]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let fetched: Vec<String> = stand_in.seen().into_iter().map(|s| s.path).collect();
    assert!(
        fetched.iter().any(|p| p == "/.well-known/jwks.json"),
        "{fetched:?}"
    );
}

#[tokio::test]
async fn without_the_gateways_keys_nothing_is_accepted() {
    let stand_in = StandIn::start().await;
    stand_in
        .discovery_failures
        .store(usize::MAX, Ordering::SeqCst);
    let (coder, coder_id) = start_agent(Role::Coder, &stand_in).await;
    let (status, body, headers) = send(
        &coder,
        &[(
            "x-attach-identity",
            stand_in.identity_token(coder_id.did(), None),
        )],
        json!([{"text": "x"}]),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");
    assert!(headers.contains_key("retry-after"));
    assert!(
        !body.to_string().contains(&stand_in.url()),
        "no address in the body"
    );
    // Bounded: three tries, then the refusal.
    assert_eq!(stand_in.seen().len(), 3);
}

#[tokio::test]
async fn an_identity_file_others_can_read_is_refused_at_start() {
    let stand_in = StandIn::start().await;
    let (file, _) = identity_file("open");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let settings = Settings {
        role: Role::Coder,
        host: [127, 0, 0, 1].into(),
        port: 0,
        gateway_url: stand_in.url(),
        model: "m".into(),
        timeout: Duration::from_secs(1),
        identity: Some(file),
        issuer: stand_in.url(),
        actor_audience: ACTOR_AUDIENCE.into(),
    };
    let error = Agent::new(&settings, "http://127.0.0.1:1".into())
        .err()
        .unwrap();
    assert!(error.starts_with("AGENT_IDENTITY: "), "{error}");
    assert!(error.ends_with("run chmod 600 on it"), "{error}");
}
