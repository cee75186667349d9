//! Behaviour checks, run against each store backend.

use std::time::Duration;

use attach_a2a_service::a2a::model::{Task, TaskState, now_ms};
use attach_a2a_service::auth::AssertionKey;
use attach_a2a_service::store::{ExchangeMeta, MemoryEvent, Store};
use attach_a2a_service::{AppState, router, tasks};
use axum::body::Body;
use axum::http::Request;
use axum::http::StatusCode;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{
    Db, FakeWeaviate, Harness, MIRROR, Options, WeaviateMode, closed_port, key, msg_v1, msg_v03,
    serve,
};

fn code(v: &Value) -> i64 {
    v["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("expected an error: {v}"))
}

pub async fn blocking_v0_3(db: &Db) {
    let h = Harness::new(db).await;
    let r = h
        .v03(
            "v03",
            "alice",
            "message/send",
            json!({"message": msg_v03("hello")}),
        )
        .await;
    let task = &r["result"];
    assert_eq!(r["id"], "req-1");
    assert_eq!(task["kind"], "task");
    assert_eq!(task["status"]["state"], "completed", "{r}");
    assert_eq!(task["status"]["message"]["role"], "agent");
    assert_eq!(
        task["status"]["message"]["parts"][0],
        json!({"kind": "text", "text": "echo: hello"})
    );
    assert!(task["status"]["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(task["history"].as_array().unwrap().len(), 2);
    assert_eq!(task["history"][0]["role"], "user");
    assert_eq!(task["history"][1]["taskId"], task["id"]);
    assert_eq!(task["artifacts"][0]["parts"][0]["text"], "echo: hello");

    let id = task["id"].as_str().unwrap();
    let got = h
        .v03(
            "v03",
            "alice",
            "tasks/get",
            json!({"id": id, "historyLength": 1}),
        )
        .await;
    assert_eq!(got["result"]["status"]["state"], "completed");
    assert_eq!(got["result"]["history"].as_array().unwrap().len(), 1);
    assert_eq!(got["result"]["history"][0]["role"], "agent");

    // The agent got the caller's identity with a fresh, valid assertion and no bearer.
    let seen = h.seen.last();
    assert_eq!(seen["x-attach-user"], "alice");
    let assertion = seen["x-attach-assertion"].to_str().unwrap();
    let now = attach_a2a_service::auth::unix_now();
    key()
        .verify_for(
            attach_contract::assertion::AGENT_AUDIENCE,
            assertion,
            "alice",
            "alice-session",
            now,
        )
        .unwrap();
    // It is made for agents, so the agent cannot replay it at this service.
    assert!(
        key()
            .verify(assertion, "alice", "alice-session", now)
            .is_err()
    );
    let replayed = Request::builder()
        .uri("/mem/events")
        .header("x-attach-user", "alice")
        .header("x-attach-session", "alice-session")
        .header("x-attach-assertion", assertion)
        .body(Body::empty())
        .unwrap();
    let (status, _) = h.send(replayed).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(seen.get("authorization").is_none());
    assert!(seen.get("a2a-version").is_none());

    // Memory documents for the task.
    let events = h.memory("alice", &format!("task_id={id}")).await;
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["task_result", "task_sent"]);
}

pub async fn blocking_v1(db: &Db) {
    let h = Harness::new(db).await;
    let r = h
        .v1(
            "v1",
            "alice",
            "SendMessage",
            json!({"message": msg_v1("hi")}),
        )
        .await;
    let task = &r["result"]["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{r}");
    assert!(task.get("kind").is_none());
    assert_eq!(task["status"]["message"]["role"], "ROLE_AGENT");
    assert_eq!(
        task["artifacts"][0]["parts"][0],
        json!({"text": "echo: hi"})
    );
    assert_eq!(task["history"][0]["role"], "ROLE_USER");
    assert_eq!(h.seen.last()["a2a-version"], "1.0");

    let id = task["id"].as_str().unwrap();
    let got = h.v1("v1", "alice", "GetTask", json!({"id": id})).await;
    assert_eq!(got["result"]["id"], id);
    assert_eq!(got["result"]["contextId"], task["contextId"]);

    // A second task in the same context, then list.
    let ctx = task["contextId"].clone();
    let mut m = msg_v1("again");
    m["contextId"] = ctx.clone();
    h.v1("v1", "alice", "SendMessage", json!({"message": m}))
        .await;
    h.v1(
        "v1",
        "alice",
        "SendMessage",
        json!({"message": msg_v1("other")}),
    )
    .await;
    let list = h
        .v1("v1", "alice", "ListTasks", json!({"pageSize": 2}))
        .await;
    assert_eq!(list["result"]["totalSize"], 3);
    assert_eq!(list["result"]["tasks"].as_array().unwrap().len(), 2);
    assert_eq!(list["result"]["nextPageToken"], "2");
    assert!(list["result"]["tasks"][0].get("artifacts").is_none());
    let page2 = h
        .v1(
            "v1",
            "alice",
            "ListTasks",
            json!({"pageSize": 2, "pageToken": "2"}),
        )
        .await;
    assert_eq!(page2["result"]["tasks"].as_array().unwrap().len(), 1);
    assert_eq!(page2["result"]["nextPageToken"], "");
    let by_ctx = h
        .v1("v1", "alice", "ListTasks", json!({"contextId": ctx}))
        .await;
    assert_eq!(by_ctx["result"]["totalSize"], 2);
    let by_state = h
        .v1(
            "v1",
            "alice",
            "ListTasks",
            json!({"status": "TASK_STATE_FAILED"}),
        )
        .await;
    assert_eq!(by_state["result"]["totalSize"], 0);

    // Completed tasks cannot be canceled.
    let c = h.v1("v1", "alice", "CancelTask", json!({"id": id})).await;
    assert_eq!(code(&c), -32002);
}

/// A task that waits for input takes a follow-up message naming it; the
/// agent gets its own task id back, and the task completes.
pub async fn input_required_then_continued(db: &Db) {
    let h = Harness::new(db).await;
    let send = |user: &'static str, message: Value| {
        let h = &h;
        async move {
            h.v1("asker", user, "SendMessage", json!({"message": message}))
                .await
        }
    };
    let r = send("alice", msg_v1("sort a list")).await;
    let task = &r["result"]["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_INPUT_REQUIRED", "{r}");
    let id = task["id"].as_str().unwrap().to_string();
    assert_ne!(id, "down-ask", "our task id, not the agent's");

    // Another user naming the task: not found, and the task is untouched.
    let mut follow = msg_v1("in Python");
    follow["taskId"] = json!(id);
    let r = send("bob", follow.clone()).await;
    assert_eq!(code(&r), -32001, "{r}");
    // A mismatching context is refused.
    let mut wrong_ctx = follow.clone();
    wrong_ctx["contextId"] = json!("another-context");
    assert_eq!(code(&send("alice", wrong_ctx).await), -32602);

    let r = send("alice", follow.clone()).await;
    let task = &r["result"]["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{r}");
    assert_eq!(task["id"], id.as_str());
    assert_eq!(
        task["status"]["message"]["parts"][0]["text"],
        "done in in Python"
    );
    let roles: Vec<&str> = task["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["ROLE_USER", "ROLE_AGENT", "ROLE_USER", "ROLE_AGENT"]
    );

    // A finished task takes no more messages.
    let r = send("alice", follow).await;
    assert_eq!(code(&r), -32004, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("completed")
    );
    assert_eq!(h.seen.count(), 2, "refused messages never reach the agent");
}

pub async fn non_blocking_completes_in_background(db: &Db) {
    let h = Harness::new(db).await;
    // 1.0: returnImmediately on an agent that takes 1.5 s.
    let r = h
        .v1(
            "patient",
            "alice",
            "SendMessage",
            json!({"message": msg_v1("x"), "configuration": {"returnImmediately": true}}),
        )
        .await;
    let task = &r["result"]["task"];
    let state = task["status"]["state"].as_str().unwrap();
    assert!(
        state == "TASK_STATE_SUBMITTED" || state == "TASK_STATE_WORKING",
        "{r}"
    );
    let id = task["id"].as_str().unwrap().to_string();
    let done = h.settle("alice", &id).await;
    assert_eq!(done["state"], "completed");
    assert_eq!(done["result"], json!({"late": "x"}));

    // 0.3: blocking false.
    let r = h
        .v03(
            "v03",
            "alice",
            "message/send",
            json!({"message": msg_v03("y"), "configuration": {"blocking": false}}),
        )
        .await;
    let id = r["result"]["id"].as_str().unwrap().to_string();
    assert!(
        ["submitted", "working", "completed"]
            .contains(&r["result"]["status"]["state"].as_str().unwrap())
    );
    assert_eq!(h.settle("alice", &id).await["state"], "completed");
}

pub async fn cancel_running_task(db: &Db) {
    let h = Harness::new(db).await;
    let id = h.start_in_background("patient", "alice").await;
    let c = h
        .v03("patient", "alice", "tasks/cancel", json!({"id": id}))
        .await;
    assert_eq!(c["result"]["status"]["state"], "canceled", "{c}");
    // The agent's late answer does not overwrite the cancellation.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let got = h
        .v03("patient", "alice", "tasks/get", json!({"id": id}))
        .await;
    assert_eq!(got["result"]["status"]["state"], "canceled");
    let again = h
        .v03("patient", "alice", "tasks/cancel", json!({"id": id}))
        .await;
    assert_eq!(code(&again), -32002);
}

pub async fn failing_agents_fail_tasks(db: &Db) {
    let h = Harness::new(db).await;
    for (agent, reason) in [
        ("failing", "HTTP 500"),
        ("slow", "did not answer"),
        ("refused", "unreachable"),
    ] {
        let r = h
            .v03(
                agent,
                "alice",
                "message/send",
                json!({"message": msg_v03("x")}),
            )
            .await;
        let task = &r["result"];
        assert_eq!(task["status"]["state"], "failed", "{agent}: {r}");
        let why = task["status"]["message"]["parts"][0]["text"]
            .as_str()
            .unwrap();
        assert!(why.contains(reason), "{agent}: {why}");
        let (_, status) = h
            .get(
                &format!("/a2a/tasks/status/{}", task["id"].as_str().unwrap()),
                Some("alice"),
            )
            .await;
        assert_eq!(status["state"], "failed");
        assert!(status["error"].as_str().unwrap().contains(reason));
    }
    let r = h
        .v1(
            "failing",
            "alice",
            "SendMessage",
            json!({"message": msg_v1("x")}),
        )
        .await;
    assert_eq!(r["result"]["task"]["status"]["state"], "TASK_STATE_FAILED");
}

pub async fn envelope_errors(db: &Db) {
    let h = Harness::new(db).await;
    let cases: Vec<(Option<&str>, Vec<u8>, i64, Value)> = vec![
        (None, b"{oops".to_vec(), -32700, Value::Null),
        (None, b"\xff\xfe{}".to_vec(), -32700, Value::Null),
        (None, b"[{}]".to_vec(), -32600, Value::Null),
        (None, br#"{"jsonrpc":"1.0","id":7,"method":"tasks/get"}"#.to_vec(), -32600, json!(7)),
        (None, br#"{"jsonrpc":"2.0","id":7,"method":"SendMessage","params":{}}"#.to_vec(), -32601, json!(7)),
        (Some("1.0"), br#"{"jsonrpc":"2.0","id":7,"method":"message/send","params":{}}"#.to_vec(), -32601, json!(7)),
        (Some("9.9"), br#"{"jsonrpc":"2.0","id":"v","method":"SendMessage","params":{}}"#.to_vec(), -32009, json!("v")),
        (None, br#"{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":{"role":"user"}}}"#.to_vec(), -32602, json!(1)),
        (Some("1.0"), br#"{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"messageId":"m","role":"ROLE_USER","parts":[{"kind":"text","text":"x"}]}}}"#.to_vec(), -32602, json!(1)),
        (None, br#"{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{}}"#.to_vec(), -32602, json!(1)),
        (None, br#"{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"id":"nope"}}"#.to_vec(), -32001, json!(1)),
        (Some("1.0"), br#"{"jsonrpc":"2.0","id":1,"method":"CancelTask","params":{"id":"nope"}}"#.to_vec(), -32001, json!(1)),
    ];
    for (version, body, want, id) in cases {
        let shown = String::from_utf8_lossy(&body).to_string();
        let (status, v) = h.rpc_raw("v03", version, "alice", body).await;
        assert_eq!(status, StatusCode::OK, "{shown}");
        assert_eq!(code(&v), want, "{shown}: {v}");
        assert_eq!(v["id"], id, "{shown}");
        assert_eq!(v["jsonrpc"], "2.0");
        assert!(!v["error"]["message"].as_str().unwrap().contains('\n'));
    }
    // Unknown agent: 404 with a one-line reason.
    let (status, v) = h.rpc_raw("ghost", None, "alice", b"{}".to_vec()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(v["error"], "unknown_agent");
    // Nothing was written.
    assert_eq!(h.seen.count(), 0);
    assert!(h.memory("alice", "").await.is_empty());
    let list = h.v1("v03", "alice", "ListTasks", json!({})).await;
    assert_eq!(list["result"]["totalSize"], 0);
}

pub async fn isolation(db: &Db) {
    let h = Harness::new(db).await;
    let r = h
        .v03(
            "v03",
            "alice",
            "message/send",
            json!({"message": msg_v03("secret")}),
        )
        .await;
    let id = r["result"]["id"].as_str().unwrap().to_string();
    let b = h.v03("v03", "bob", "tasks/get", json!({"id": id})).await;
    assert_eq!(code(&b), -32001);
    let b = h.v03("v03", "bob", "tasks/cancel", json!({"id": id})).await;
    assert_eq!(code(&b), -32001);
    let b = h.v1("v03", "bob", "GetTask", json!({"id": id})).await;
    assert_eq!(code(&b), -32001);
    let b = h.v1("v03", "bob", "ListTasks", json!({})).await;
    assert_eq!(b["result"]["totalSize"], 0);
    // The same task under another agent's route is not found either.
    let other = h.v03("v1", "alice", "tasks/get", json!({"id": id})).await;
    assert_eq!(code(&other), -32001);
    let (status, _) = h.get(&format!("/a2a/tasks/status/{id}"), Some("bob")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (_, doc) = h
        .post(
            "/mem/events",
            Some("alice"),
            &json!({"kind": "note", "content": {"a": 1}}),
        )
        .await;
    let mem_id = doc["mem_id"].as_str().unwrap();
    let (status, _) = h.get(&format!("/mem/events/{mem_id}"), Some("bob")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, got) = h.get(&format!("/mem/events/{mem_id}"), Some("alice")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["content"], json!({"a": 1}));
    assert_eq!(got["session"], "alice-session");
    assert!(h.memory("bob", "").await.is_empty());
    assert_eq!(h.memory("alice", "kind=note").await.len(), 1);
}

/// Stacks without the gateway's signing keys identify callers by the
/// assertion alone.
pub async fn assertion_checks(db: &Db) {
    let h = Harness::with(
        db,
        Options {
            assertion_only: true,
            ..Options::default()
        },
    )
    .await;
    let body = json!({"kind": "note", "content": 1}).to_string();
    let now = attach_a2a_service::auth::unix_now();
    let variants: Vec<(&str, Option<String>, &str)> = vec![
        ("missing", None, "alice"),
        (
            "expired",
            Some(key().sign(now - 30, "alice", "alice-session")),
            "alice",
        ),
        (
            "wrong key",
            Some(AssertionKey::new([1; 32]).sign(now + 60, "alice", "alice-session")),
            "alice",
        ),
        (
            "other user",
            Some(key().sign(now + 60, "alice", "alice-session")),
            "mallory",
        ),
        ("garbage", Some("v1.x.y".into()), "alice"),
    ];
    for (what, assertion, user) in variants {
        for (method, path) in [
            ("POST", "/mem/events"),
            ("GET", "/mem/events"),
            ("POST", "/a2a/agents/v03"),
            ("POST", "/a2a/tasks/send"),
            ("POST", "/mem/ingest"),
        ] {
            let mut req = axum::http::Request::builder()
                .method(method)
                .uri(path)
                .header("content-type", "application/json")
                .header("x-attach-user", user)
                .header("x-attach-session", "alice-session");
            if let Some(a) = &assertion {
                req = req.header("x-attach-assertion", a.as_str());
            }
            let (status, v) = h.send(req.body(Body::from(body.clone())).unwrap()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{what} {path}: {v}");
            assert_eq!(v["error"], "unauthorized");
            assert!(!v["message"].as_str().unwrap().contains('\n'));
        }
    }
    assert!(h.memory("alice", "").await.is_empty());
    assert!(h.memory("mallory", "").await.is_empty());
    assert_eq!(h.seen.count(), 0);
    // A valid assertion alone is a caller there.
    let mut alone = Harness::request(
        "POST",
        "/mem/events",
        Some("alice"),
        Body::from(body.clone()),
    );
    alone.headers_mut().remove("x-attach-identity");
    assert_eq!(h.send(alone).await.0, StatusCode::OK);
    assert_eq!(h.memory("alice", "").await.len(), 1);
    // Public routes need no assertion.
    assert_eq!(h.get("/healthz", None).await.0, StatusCode::OK);
    assert_eq!(
        h.get("/a2a/agents/v1/.well-known/agent-card.json", None)
            .await
            .0,
        StatusCode::OK
    );
}

pub async fn ingest_is_idempotent(db: &Db) {
    let h = Harness::new(db).await;
    let e1 = uuid::Uuid::new_v4().to_string();
    let e2 = uuid::Uuid::new_v4().to_string();
    let batch = json!([
        {"id": e1, "user": "alice", "session": "s1", "role": "user", "content": "hi", "timestamp": "2030-01-01T00:00:00Z"},
        {"id": e2, "user": "bob", "session": "s2", "role": "assistant", "content": {"text": "yo"}},
    ]);
    let (status, v) = h.post("/mem/ingest", Some(MIRROR), &batch).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        json!({"accepted": [e1, e2], "inserted": 2, "refused": []})
    );
    let (_, v) = h.post("/mem/ingest", Some(MIRROR), &batch).await;
    assert_eq!(
        v,
        json!({"accepted": [e1, e2], "inserted": 0, "refused": []})
    );
    let alice = h.memory("alice", "").await;
    assert_eq!(alice.len(), 1);
    assert_eq!(alice[0]["mem_id"], e1);
    assert_eq!(alice[0]["session"], "s1");
    assert_eq!(h.memory("bob", "session=s2").await.len(), 1);
    // A user may not write other users' rows, and a batch of one bad id is refused.
    let (status, _) = h
        .post(
            "/mem/ingest",
            Some("alice"),
            &json!([{"id": uuid::Uuid::new_v4().to_string(), "user": "bob", "content": 1}]),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = h
        .post(
            "/mem/ingest",
            Some(MIRROR),
            &json!([{"id": "not-a-uuid", "user": "bob", "content": 1}]),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(h.memory("bob", "").await.len(), 1);
}

/// Issue: a token whose `sub` is `attach-gateway` (any issuer may mint one)
/// wrote forged events into anyone's memory. The user name grants nothing;
/// only the mirror's own credential writes for other users.
pub async fn ingest_for_others_needs_the_mirror_credential(db: &Db) {
    let h = Harness::new(db).await;
    let forged = json!([{"id": uuid::Uuid::new_v4().to_string(), "user": "victim",
        "kind": "prompt", "role": "user", "content": "forged"}]);
    for name in ["attach-gateway", "mallory"] {
        let (status, v) = h.post("/mem/ingest", Some(name), &forged).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}: {v}");
    }
    assert!(h.memory("victim", "").await.is_empty());
    // A direct call with a mirror credential under another key is refused too.
    let wrong_key = Request::builder()
        .method("POST")
        .uri("/mem/ingest")
        .header("content-type", "application/json")
        .header(
            "x-attach-assertion",
            AssertionKey::new([1; 32]).sign_mirror(attach_a2a_service::auth::unix_now() + 60),
        )
        .body(Body::from(forged.to_string()))
        .unwrap();
    assert_eq!(h.send(wrong_key).await.0, StatusCode::UNAUTHORIZED);
    assert!(h.memory("victim", "").await.is_empty());
    // The service still answers, and the mirror itself may write.
    let (status, v) = h.post("/mem/ingest", Some(MIRROR), &forged).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(h.memory("victim", "").await.len(), 1);
}

pub async fn seed_routes(db: &Db) {
    let h = Harness::new(db).await;
    let (status, v) = h
        .post(
            "/a2a/tasks/send",
            Some("alice"),
            &json!({"target": "seed", "input": {"q": 1}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(v["state"] == "submitted", "{v}");
    let id = v["task_id"].as_str().unwrap().to_string();
    let done = h.settle("alice", &id).await;
    assert_eq!(done["state"], "completed");
    assert_eq!(done["result"], json!({"echo": {"q": 1}}));
    assert!(done["created"].as_str().unwrap().ends_with('Z'));
    let events = h.memory("alice", &format!("task_id={id}")).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["kind"], "task_sent");
    assert_eq!(events[1]["content"]["input"], json!({"q": 1}));
    assert_eq!(events[0]["kind"], "task_result");
    assert_eq!(events[0]["content"]["result"], json!({"echo": {"q": 1}}));

    // A registered agent's URL is accepted; any other is refused.
    let url = h.state.config.agents["seed"].url.clone();
    let (status, v) = h
        .post(
            "/a2a/tasks/send",
            Some("alice"),
            &json!({"target_url": url, "input": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, v) = h
        .post(
            "/a2a/tasks/send",
            Some("alice"),
            &json!({"target_url": "http://169.254.169.254/", "input": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(v["message"].as_str().unwrap().contains("A2A_AGENTS"), "{v}");
    let (status, _) = h
        .post(
            "/a2a/tasks/send",
            Some("alice"),
            &json!({"target": "seed", "target_url": "http://elsewhere/", "input": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, v) = h
        .post(
            "/a2a/tasks/send",
            Some("alice"),
            &json!({"target": "ghost", "input": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(v["error"], "unknown_agent");

    // A failing agent's task ends failed with its reason.
    let (_, v) = h
        .post(
            "/a2a/tasks/send",
            Some("alice"),
            &json!({"target": "failing", "input": 1}),
        )
        .await;
    let done = h.settle("alice", v["task_id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "failed");
    assert!(done["result"].is_null());
    let failed_events = h.memory("alice", "kind=task_result").await;
    assert!(failed_events.iter().any(|e| {
        e["content"]["error"]
            .as_str()
            .is_some_and(|s| s.contains("500"))
    }));
}

pub async fn body_limits_and_bad_bodies(db: &Db) {
    let h = Harness::with(
        db,
        Options {
            max_body: Some("2048"),
            ..Options::default()
        },
    )
    .await;
    let big = json!({"kind": "note", "content": "x".repeat(4096)});
    let (status, v) = h.post("/mem/events", Some("alice"), &big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_eq!(v["error"], "payload_too_large");
    let rpc = json!({"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"message": msg_v03(&"y".repeat(4096))}});
    let (status, _) = h
        .rpc_raw("v03", None, "alice", rpc.to_string().into_bytes())
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, v) = h
        .send(Harness::request(
            "POST",
            "/mem/events",
            Some("alice"),
            Body::from(&b"{\"kind\":\"n\",\"content\":\"\xff\"}"[..]),
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["message"].as_str().unwrap().contains("UTF-8"));
    let (status, _) = h
        .send(Harness::request(
            "POST",
            "/mem/events",
            Some("alice"),
            Body::from("{nope"),
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = h
        .post("/mem/events", Some("alice"), &json!({"content": 1}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = h.get("/mem/events?limit=abc", Some("alice")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(h.memory("alice", "").await.is_empty());
    assert_eq!(h.seen.count(), 0);
}

pub async fn memory_listing(db: &Db) {
    let h = Harness::new(db).await;
    for i in 0..5 {
        let (status, _) = h.post("/mem/events", Some("alice"), &json!({"kind": if i % 2 == 0 {"even"} else {"odd"}, "content": i, "task_id": "t1"})).await;
        assert_eq!(status, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let all = h.memory("alice", "").await;
    assert_eq!(all.len(), 5);
    assert_eq!(all[0]["content"], 4, "newest first");
    assert_eq!(h.memory("alice", "limit=2").await.len(), 2);
    assert_eq!(h.memory("alice", "limit=100000").await.len(), 5);
    assert_eq!(h.memory("alice", "kind=even").await.len(), 3);
    assert_eq!(
        h.memory("alice", "session=alice-session&task_id=t1&kind=odd")
            .await
            .len(),
        2
    );
    assert!(h.memory("alice", "session=other").await.is_empty());
}

fn stored_task(id: &str, state: TaskState, updated_ms: i64, deadline_ms: i64) -> Task {
    Task {
        id: id.into(),
        context_id: "c".into(),
        owner: "alice".into(),
        session: "s".into(),
        agent: "v03".into(),
        state,
        input: json!("x"),
        history: Vec::new(),
        artifacts: Vec::new(),
        status_message: None,
        result: None,
        error: None,
        created_ms: updated_ms,
        updated_ms,
        deadline_ms,
        agent_task_id: None,
        actors: Default::default(),
        delegated_to: None,
    }
}

pub async fn housekeeping(db: &Db) {
    let h = Harness::with(
        db,
        Options {
            ttl: Some("1h"),
            ..Options::default()
        },
    )
    .await;
    let store = &h.state.store;
    let now = now_ms();
    let hour = 3_600_000;
    store
        .insert_task(&stored_task(
            "old",
            TaskState::Completed,
            now - 2 * hour,
            now - 2 * hour,
        ))
        .await
        .unwrap();
    store
        .insert_task(&stored_task(
            "orphan",
            TaskState::Working,
            now - 60_000,
            now - 1000,
        ))
        .await
        .unwrap();
    store
        .insert_task(&stored_task(
            "queued",
            TaskState::Submitted,
            now - 60_000,
            now - 1000,
        ))
        .await
        .unwrap();
    store
        .insert_task(&stored_task(
            "running",
            TaskState::Working,
            now,
            now + 60_000,
        ))
        .await
        .unwrap();
    let old_doc = MemoryEvent {
        id: uuid::Uuid::new_v4().to_string(),
        owner: "alice".into(),
        session: "s".into(),
        kind: "note".into(),
        role: None,
        task_id: None,
        content: json!(1),
        created_ms: now - 2 * hour,
        meta: ExchangeMeta::default(),
        actor: Default::default(),
        tool: None,
    };
    store.insert_memory(&old_doc).await.unwrap();
    h.post(
        "/mem/events",
        Some("alice"),
        &json!({"kind": "note", "content": 2}),
    )
    .await;

    // Someone follows the orphan: the sweep's verdict reaches them.
    let mut follower = h.state.events.subscribe("orphan");
    tasks::housekeeping(&h.state).await;
    match follower.next().await {
        attach_a2a_service::task_events::Next::Event(
            attach_a2a_service::task_events::TaskEvent::Status(task),
        ) => assert_eq!(task.state, TaskState::Failed),
        other => panic!("the follower saw {other:?}"),
    }

    assert!(
        store
            .get_task("alice", "old", None)
            .await
            .unwrap()
            .is_none()
    );
    for id in ["orphan", "queued"] {
        let t = store.get_task("alice", id, None).await.unwrap().unwrap();
        assert_eq!(t.state, TaskState::Failed, "{id}");
        assert!(t.error.unwrap().contains("interrupted"));
    }
    assert_eq!(
        store
            .get_task("alice", "running", None)
            .await
            .unwrap()
            .unwrap()
            .state,
        TaskState::Working
    );
    let docs = h.memory("alice", "").await;
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["content"], 2);
    // Failure is visible through the protocol too.
    let got = h
        .v03("v03", "alice", "tasks/get", json!({"id": "orphan"}))
        .await;
    assert_eq!(got["result"]["status"]["state"], "failed");
}

/// On a stack without the gateway's signing keys (`signed_cards` has them).
pub async fn cards_and_health(db: &Db) {
    let h = Harness::with(
        db,
        Options {
            assertion_only: true,
            ..Options::default()
        },
    )
    .await;
    let (status, card) = h
        .get("/a2a/agents/v1/.well-known/agent-card.json", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(card["name"], "Downstream");
    let url = "https://gw.example/a2a/agents/v1";
    assert_eq!(card["supportedInterfaces"][0]["url"], url);
    assert_eq!(card["supportedInterfaces"][1]["protocolVersion"], "0.3");
    assert!(card.get("url").is_none(), "a 1.0 card has no url: {card}");
    // The gateway streams every task, whether or not its agent does.
    assert_eq!(card["capabilities"]["streaming"], true);
    assert_eq!(card["skills"][0]["id"], "echo");
    assert_eq!(
        card["securitySchemes"]["bearer"],
        json!({"httpAuthSecurityScheme": {"scheme": "bearer", "bearerFormat": "JWT"}})
    );
    assert_eq!(
        card["securityRequirements"],
        json!([{"schemes": {"bearer": {}}}])
    );
    assert!(card.get("security").is_none());
    // The 0.3 card path serves the 0.3 shape of the same card.
    let (status, legacy) = h.get("/a2a/agents/v1/.well-known/agent.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(legacy["url"], url);
    assert_eq!(legacy["protocolVersion"], "0.3.0");
    assert_eq!(legacy["securitySchemes"]["bearer"]["type"], "http");
    assert_eq!(legacy["security"], json!([{"bearer": []}]));
    assert_eq!(legacy["skills"], card["skills"]);
    let (status, synth) = h
        .get("/a2a/agents/nocard/.well-known/agent-card.json", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(synth["name"], "nocard");
    assert_eq!(synth["skills"], json!([]));
    // Without the gateway's signing keys cards go out unsigned.
    for unsigned in [&card, &legacy, &synth] {
        assert!(unsigned.get("signatures").is_none(), "{unsigned}");
    }
    let (status, _) = h
        .get("/a2a/agents/ghost/.well-known/agent-card.json", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    h.v03(
        "v03",
        "alice",
        "message/send",
        json!({"message": msg_v03("m")}),
    )
    .await;
    let (status, health) = h.get("/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["status"], "ok");
    let (status, metrics) = h.get("/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    let text = metrics.as_str().unwrap();
    assert!(
        text.contains("attach_a2a_tasks{state=\"completed\"} 1"),
        "{text}"
    );
    assert!(text.contains("attach_a2a_forward_seconds_count{agent=\"v03\",outcome=\"ok\"} 1"));
    assert!(!text.contains("alice"));
}

pub async fn bearer_forwarding(db: &Db) {
    let h = Harness::new(db).await;
    for (agent, expect) in [("bearer", Some("Bearer tok")), ("v1", None)] {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": msg_v1("x")}});
        let mut req = Harness::request(
            "POST",
            &format!("/a2a/agents/{agent}"),
            Some("alice"),
            Body::from(body.to_string()),
        );
        req.headers_mut()
            .insert("a2a-version", "1.0".parse().unwrap());
        req.headers_mut()
            .insert("authorization", "Bearer tok".parse().unwrap());
        let (_, v) = h.send(req).await;
        assert_eq!(
            v["result"]["task"]["status"]["state"], "TASK_STATE_COMPLETED",
            "{v}"
        );
        let seen = h.seen.last();
        assert_eq!(
            seen.get("authorization").map(|v| v.to_str().unwrap()),
            expect,
            "{agent}"
        );
    }
}

pub async fn replicas_share_state(db: &Db) {
    let a = Harness::new(db).await;
    let b = a.replica().await;
    // Started on A in the background, read and canceled on B.
    let id = a.start_in_background("patient", "alice").await;
    let got = b
        .v03("patient", "alice", "tasks/get", json!({"id": id}))
        .await;
    assert_eq!(got["result"]["id"], id.as_str());
    let c = b
        .v03("patient", "alice", "tasks/cancel", json!({"id": id}))
        .await;
    assert_eq!(c["result"]["status"]["state"], "canceled");
    // A's exchange finishes later and leaves the cancellation alone.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let got = a
        .v03("patient", "alice", "tasks/get", json!({"id": id}))
        .await;
    assert_eq!(got["result"]["status"]["state"], "canceled");
    // A blocking task on B is visible on A, with its memory documents.
    let r = b
        .v03(
            "v03",
            "alice",
            "message/send",
            json!({"message": msg_v03("y")}),
        )
        .await;
    let id = r["result"]["id"].as_str().unwrap();
    let got = a.v03("v03", "alice", "tasks/get", json!({"id": id})).await;
    assert_eq!(got["result"]["status"]["state"], "completed");
    assert_eq!(a.memory("alice", &format!("task_id={id}")).await.len(), 2);
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Mirrored exchanges keep their metadata, and reads show it next to the
/// event's other fields (absent fields stay absent).
pub async fn ingest_keeps_exchange_meta(db: &Db) {
    let h = Harness::new(db).await;
    let (prompt_id, reply_id) = (new_id(), new_id());
    let batch = json!([
        {"id": prompt_id, "user": "alice", "session": "s1", "role": "user", "kind": "prompt",
         "content": "what is 2+2?", "model": "llama3", "route": "/api/chat",
         "request_id": "req-1", "task_id": "t1", "status": 200,
         "timestamp": "2030-01-01T00:00:00.000Z", "latency_ms": 812, "tokens_in": 9,
         "truncated": false},
        {"id": reply_id, "user": "alice", "session": "s1", "role": "assistant", "kind": "reply",
         "content": "4", "model": "llama3", "route": "/api/chat", "request_id": "req-1",
         "status": 200, "timestamp": "2030-01-01T00:00:00.812Z", "latency_ms": 812,
         "tokens_out": 1, "truncated": true},
    ]);
    let (status, v) = h.post("/mem/ingest", Some(MIRROR), &batch).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["accepted"], json!([prompt_id, reply_id]));
    assert_eq!(v["inserted"], 2);

    let events = h.memory("alice", "session=s1").await;
    assert_eq!(
        events,
        [
            json!({"mem_id": reply_id, "kind": "reply", "content": "4", "task_id": null,
                   "session": "s1", "role": "assistant", "created": "2030-01-01T00:00:00.812Z",
                   "model": "llama3", "route": "/api/chat", "request_id": "req-1",
                   "status": 200, "latency_ms": 812, "tokens_out": 1, "truncated": true}),
            json!({"mem_id": prompt_id, "kind": "prompt", "content": "what is 2+2?",
                   "task_id": "t1", "session": "s1", "role": "user",
                   "created": "2030-01-01T00:00:00.000Z", "model": "llama3",
                   "route": "/api/chat", "request_id": "req-1", "status": 200,
                   "latency_ms": 812, "tokens_in": 9, "truncated": false}),
        ]
    );
    let (status, one) = h
        .get(&format!("/mem/events/{prompt_id}"), Some("alice"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one, events[1]);
    assert_eq!(h.memory("alice", "kind=reply&task_id=t1").await.len(), 0);
    assert_eq!(h.memory("alice", "kind=prompt&task_id=t1").await.len(), 1);

    // A second delivery with other metadata changes nothing.
    let mut again = batch.clone();
    again[0]["model"] = json!("other");
    let (_, v) = h.post("/mem/ingest", Some(MIRROR), &again).await;
    assert_eq!(v["inserted"], 0);
    assert_eq!(h.memory("alice", "session=s1").await, events);

    // Events and documents without metadata show none of its fields, and
    // null metadata counts as absent.
    let bare = new_id();
    let nulls = json!([{"id": bare, "user": "alice", "session": "s2", "role": "user",
        "content": "x", "model": null, "status": null, "latency_ms": null, "truncated": null}]);
    let (status, v) = h.post("/mem/ingest", Some(MIRROR), &nulls).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    h.post(
        "/mem/events",
        Some("alice"),
        &json!({"kind": "note", "content": 1, "model": "ignored"}),
    )
    .await;
    for event in [
        h.memory("alice", "session=s2").await,
        h.memory("alice", "kind=note").await,
    ]
    .concat()
    {
        let keys: Vec<&String> = event.as_object().unwrap().keys().collect();
        let mut keys: Vec<&str> = keys.into_iter().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "content", "created", "kind", "mem_id", "role", "session", "task_id"
            ],
            "{event}"
        );
    }
}

/// Issue 14: the mirror's events of an MCP tool call (`tool_call`, role
/// user, and `tool_result`, role assistant, on the server's route, no
/// model) are stored with their tool and `is_error`, read back with them,
/// and listed by kind and by tool.
pub async fn ingest_keeps_tool_calls(db: &Db) {
    use attach_contract::event::{Role, event_id};
    let h = Harness::new(db).await;
    let call_id = event_id("alice", "req-9", Role::User);
    let result_id = event_id("alice", "req-9", Role::Assistant);
    let other_id = new_id();
    let batch = json!([
        {"id": call_id, "user": "alice", "session": "s1", "role": "user", "kind": "tool_call",
         "content": "read_file {\"path\":\"/etc/hosts\"}", "route": "/mcp/files",
         "request_id": "req-9", "status": 200, "timestamp": "2030-01-01T00:00:00.000Z",
         "latency_ms": 31, "truncated": false, "tool": "read_file",
         "actor": "did:key:z6MkAgent"},
        {"id": result_id, "user": "alice", "session": "s1", "role": "assistant",
         "kind": "tool_result", "content": "no such file", "route": "/mcp/files",
         "request_id": "req-9", "status": 200, "timestamp": "2030-01-01T00:00:00.031Z",
         "latency_ms": 31, "truncated": false, "tool": "read_file", "is_error": true,
         "actor": "did:key:z6MkAgent"},
        {"id": other_id, "user": "bob", "session": "s2", "role": "user", "kind": "tool_call",
         "content": "read_file {}", "route": "/mcp/files", "request_id": "req-10",
         "timestamp": "2030-01-01T00:00:01.000Z", "latency_ms": 2, "truncated": false,
         "tool": "read_file"},
    ]);
    let (status, v) = h.post("/mem/ingest", Some(MIRROR), &batch).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["accepted"], json!([call_id, result_id, other_id]));
    assert_eq!(v["refused"], json!([]));

    let result = json!({"mem_id": result_id, "kind": "tool_result", "content": "no such file",
        "task_id": null, "session": "s1", "role": "assistant",
        "created": "2030-01-01T00:00:00.031Z", "route": "/mcp/files", "request_id": "req-9",
        "status": 200, "latency_ms": 31, "truncated": false, "tool": "read_file",
        "is_error": true, "actor": "did:key:z6MkAgent"});
    let call = json!({"mem_id": call_id, "kind": "tool_call",
        "content": "read_file {\"path\":\"/etc/hosts\"}", "task_id": null, "session": "s1",
        "role": "user", "created": "2030-01-01T00:00:00.000Z", "route": "/mcp/files",
        "request_id": "req-9", "status": 200, "latency_ms": 31, "truncated": false,
        "tool": "read_file", "actor": "did:key:z6MkAgent"});
    assert_eq!(h.memory("alice", "").await, [result.clone(), call.clone()]);
    let (status, one) = h
        .get(&format!("/mem/events/{result_id}"), Some("alice"))
        .await;
    assert_eq!((status, &one), (StatusCode::OK, &result));
    assert_eq!(
        h.memory("alice", "kind=tool_call").await,
        std::slice::from_ref(&call)
    );
    assert_eq!(
        h.memory("alice", "kind=tool_result").await,
        std::slice::from_ref(&result)
    );
    assert_eq!(h.memory("alice", "tool=read_file").await, [result, call]);
    assert!(h.memory("alice", "tool=write_file").await.is_empty());
    assert!(
        h.memory("alice", "tool=read_file&kind=prompt")
            .await
            .is_empty()
    );
    assert_eq!(
        ids(&h.memory("bob", "tool=read_file").await),
        [other_id.as_str()]
    );
    // The caller's listing of its own notes names no tool.
    h.post(
        "/mem/events",
        Some("alice"),
        &json!({"kind": "note", "content": 1, "tool": "ignored"}),
    )
    .await;
    let note = &h.memory("alice", "kind=note").await[0];
    assert!(
        note.get("tool").is_none() && note.get("is_error").is_none(),
        "{note}"
    );
}

/// A metadata field of the wrong type or size refuses its event with a
/// one-line reason naming the field; the other events of the batch are
/// stored. Issue: one event over the limits refused the whole batch, and
/// batches mix all users' events.
pub async fn ingest_refuses_bad_meta(db: &Db) {
    let h = Harness::new(db).await;
    let cases = [
        ("model", json!(5)),
        ("model", json!("m".repeat(257))),
        ("route", json!(format!("/{}", "r".repeat(2048)))),
        ("request_id", json!("req\n1")),
        ("request_id", json!({"id": 1})),
        ("request_id", json!("r".repeat(257))),
        ("status", json!("200")),
        ("status", json!(42)),
        ("status", json!(600)),
        ("latency_ms", json!(-1)),
        ("latency_ms", json!(1.5)),
        ("tokens_in", json!("9")),
        ("tokens_out", json!(true)),
        ("truncated", json!("no")),
        ("truncated", json!(0)),
        ("unreadable", json!("u".repeat(65))),
        ("request_bytes", json!(-3)),
        ("tool", json!("t".repeat(257))),
        ("tool", json!("echo\n")),
        ("tool", json!(["echo"])),
        ("is_error", json!("true")),
        ("is_error", json!(1)),
        ("session", json!("s\u{0}1")),
        ("role", json!(["user"])),
        ("task_id", json!("t".repeat(257))),
    ];
    let mut stored = 0;
    for (field, value) in cases {
        let event = |user: &str| {
            json!({"id": new_id(), "user": user, "session": "s1", "role": "user",
                "kind": "prompt", "content": "ok", "model": "llama3", "status": 200,
                "latency_ms": 3, "truncated": false})
        };
        let (victim, other) = (event("victim"), event("other"));
        let mut bad = event("attacker");
        bad[field] = value.clone();
        let (status, v) = h
            .post("/mem/ingest", Some(MIRROR), &json!([victim, bad, other]))
            .await;
        assert_eq!(status, StatusCode::OK, "{field}={value}: {v}");
        assert_eq!(v["accepted"], json!([victim["id"], other["id"]]), "{v}");
        assert_eq!(v["inserted"], 2);
        let refused = v["refused"].as_array().unwrap();
        assert_eq!(refused.len(), 1, "{v}");
        assert_eq!(
            (&refused[0]["index"], &refused[0]["id"]),
            (&json!(1), &bad["id"])
        );
        let reason = refused[0]["reason"].as_str().unwrap();
        assert!(reason.starts_with(field), "{field}: {reason}");
        assert!(!reason.contains('\n'));
        stored += 1;

        // Alone, the bad event gets a 400 with the same answer.
        bad["id"] = json!(new_id());
        let (status, v) = h.post("/mem/ingest", Some(MIRROR), &json!([bad])).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}={value}: {v}");
        assert_eq!(v["error"], "bad_request");
        assert!(v["message"].as_str().unwrap().starts_with(field), "{v}");
        assert_eq!((&v["accepted"], &v["inserted"]), (&json!([]), &json!(0)));
        assert_eq!(v["refused"][0]["index"], 0);
    }
    assert_eq!(h.memory("victim", "limit=500").await.len(), stored);
    assert_eq!(h.memory("other", "limit=500").await.len(), stored);
    assert!(h.memory("attacker", "").await.is_empty());
    // What is no batch at all is refused whole.
    for body in [
        json!({"id": new_id()}),
        json!("events"),
        json!({"events": {}}),
    ] {
        let (status, v) = h.post("/mem/ingest", Some(MIRROR), &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert!(v.get("refused").is_none(), "{v}");
    }
    let too_many: Vec<Value> = (0..=1000)
        .map(|_| json!({"id": new_id(), "user": "victim"}))
        .collect();
    let (status, _) = h.post("/mem/ingest", Some(MIRROR), &json!(too_many)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(h.memory("victim", "limit=500").await.len(), stored);
}

/// Issue: a timestamp in year 10000 (`9999-12-31T23:59:59-23:59` is one,
/// once its offset is applied) was stored, and every read of it crashed
/// the service. Timestamps outside 1970 to 9999 are refused, per event.
pub async fn ingest_refuses_timestamps_out_of_range(db: &Db) {
    let h = Harness::new(db).await;
    let event = |timestamp: &str| {
        json!({"id": new_id(), "user": "alice", "session": "s1", "kind": "prompt",
               "content": timestamp, "timestamp": timestamp})
    };
    // The attack as reported: one event, then a listing.
    let (status, v) = h
        .post(
            "/mem/ingest",
            Some(MIRROR),
            &json!([event("9999-12-31T23:59:59-23:59")]),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(h.memory("alice", "").await.is_empty());

    let refused = [
        "9999-12-31T23:59:59-23:59",
        "9999-12-31T23:59:59.999-00:01",
        "1970-01-01T00:00:00+00:01",
        "1969-12-31T23:59:59.999Z",
        "10000-01-01T00:00:00Z",
        "0000-01-01T00:00:00Z",
    ];
    let kept = [
        ("9999-12-31T23:59:59.999Z", "9999-12-31T23:59:59.999Z"),
        ("9999-12-31T23:59:59+23:59", "9999-12-31T00:00:59.000Z"),
        ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00.000Z"),
        ("1970-01-01T01:00:00+01:00", "1970-01-01T00:00:00.000Z"),
    ];
    let batch: Vec<Value> = refused
        .iter()
        .chain(kept.iter().map(|(t, _)| t))
        .map(|t| event(t))
        .collect();
    let (status, v) = h.post("/mem/ingest", Some(MIRROR), &json!(batch)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let reasons: Vec<(u64, &str)> = v["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["index"].as_u64().unwrap(), r["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        reasons.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        (0..refused.len() as u64).collect::<Vec<_>>(),
        "{v}"
    );
    for (_, reason) in reasons {
        assert_eq!(
            reason,
            "timestamp must be an RFC 3339 instant from 1970-01-01T00:00:00.000Z to 9999-12-31T23:59:59.999Z"
        );
    }
    assert_eq!(v["inserted"], kept.len());
    // Everything stored reads back, listed and one by one.
    let events = h.memory("alice", "").await;
    assert_eq!(events.len(), kept.len());
    for (sent, created) in kept {
        let e = events.iter().find(|e| e["content"] == sent).unwrap();
        assert_eq!(e["created"], created, "{sent}");
        let (status, one) = h
            .get(
                &format!("/mem/events/{}", e["mem_id"].as_str().unwrap()),
                Some("alice"),
            )
            .await;
        assert_eq!((status, &one["created"]), (StatusCode::OK, &json!(created)));
    }
    assert_eq!(h.get("/healthz", None).await.0, StatusCode::OK);
}

/// Issue: callers wrote events that read back exactly like mirrored ones
/// (kind `prompt`/`reply`, model, status, a back-dated timestamp). What
/// the gateway writes is reserved to it; the mirror still writes it all.
pub async fn caller_writes_cannot_pass_for_the_mirror(db: &Db) {
    let h = Harness::new(db).await;
    let now = attach_a2a_service::auth::unix_now() as i64 * 1000;
    let at = |offset_ms: i64| attach_contract::timestamp::rfc3339_millis((now + offset_ms) as u64);
    let own = |extra: Value| {
        let mut e = json!({"id": new_id(), "user": "alice", "session": "s1", "role": "user",
                           "kind": "note", "content": "mine"});
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        e
    };
    let mirror_id =
        attach_contract::event::event_id("alice", "req-1", attach_contract::event::Role::User);
    let forged = [
        (
            own(json!({"kind": "prompt"})),
            "kind \"prompt\" is reserved",
        ),
        (own(json!({"kind": "reply"})), "kind \"reply\" is reserved"),
        (own(json!({"kind": " Reply"})), "kind \"reply\" is reserved"),
        (
            own(json!({"kind": "task_result"})),
            "kind \"task_result\" is reserved",
        ),
        (
            own(json!({"kind": "tool_call"})),
            "kind \"tool_call\" is reserved",
        ),
        (
            own(json!({"kind": "Tool_Result "})),
            "kind \"tool_result\" is reserved",
        ),
        (own(json!({"tool": "echo"})), "tool is reserved"),
        (own(json!({"is_error": true})), "is_error is reserved"),
        (own(json!({"model": "llama3"})), "model is reserved"),
        (own(json!({"status": 200})), "status is reserved"),
        (own(json!({"truncated": false})), "truncated is reserved"),
        (
            own(json!({"unreadable": "duplicate key"})),
            "unreadable is reserved",
        ),
        (
            own(json!({"request_bytes": 12})),
            "request_bytes is reserved",
        ),
        (
            own(json!({"timestamp": "2020-01-01T00:00:00Z"})),
            "timestamp must be within 5 minutes",
        ),
        (
            own(json!({"timestamp": at(-6 * 60_000)})),
            "timestamp must be within 5 minutes",
        ),
        (
            own(json!({"timestamp": at(6 * 60_000)})),
            "timestamp must be within 5 minutes",
        ),
        (
            own(json!({"id": mirror_id})),
            "ids of UUID version 8 are reserved",
        ),
    ];
    for (event, why) in &forged {
        let (status, v) = h.post("/mem/ingest", Some("alice"), &json!([event])).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{event}: {v}");
        let message = v["message"].as_str().unwrap();
        assert!(message.starts_with(why), "{event}: {message}");
        assert_eq!(v["refused"][0]["reason"], message);
    }
    let (status, v) = h
        .post(
            "/mem/events",
            Some("alice"),
            &json!({"kind": "prompt", "content": "forged"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(h.memory("alice", "").await.is_empty());

    // A caller's own events within the rules are taken, beside refused ones.
    let fine = [
        own(json!({})),
        own(json!({"timestamp": at(-60_000), "model": null})),
    ];
    let (status, v) = h
        .post(
            "/mem/ingest",
            Some("alice"),
            &json!([fine[0], forged[0].0, fine[1]]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["accepted"], json!([fine[0]["id"], fine[1]["id"]]));
    assert_eq!(v["refused"][0]["index"], 1);
    let (status, _) = h
        .post(
            "/mem/events",
            Some("alice"),
            &json!({"kind": "promptly", "content": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h.memory("alice", "").await.len(), 3);
    assert!(h.memory("alice", "kind=prompt").await.is_empty());

    // The mirror writes all of it.
    let mirrored: Vec<Value> = forged.iter().map(|(e, _)| e.clone()).collect();
    let (status, v) = h.post("/mem/ingest", Some(MIRROR), &json!(mirrored)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["refused"], json!([]));
    assert_eq!(v["inserted"], forged.len());
    let prompt = &h.memory("alice", "kind=prompt").await[0];
    assert_eq!(prompt["content"], "mine");
}

const WEAVIATE_KEY: &str = "wv-test-key";

/// A service with `MEM_BACKEND=weaviate` pointed at `url`.
async fn weaviate_service(db: &Db, url: String) -> Harness {
    Harness::with(
        db,
        Options {
            env: vec![
                ("MEM_BACKEND", "weaviate".into()),
                ("WEAVIATE_URL", url),
                ("WEAVIATE_API_KEY", WEAVIATE_KEY.into()),
                ("WEAVIATE_TIMEOUT", "500ms".into()),
            ],
            ..Options::default()
        },
    )
    .await
}

fn ids(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["mem_id"].as_str().unwrap())
        .collect()
}

/// With `MEM_BACKEND=weaviate`, listings merge the store's rows with the
/// caller's Weaviate objects, and a single event missing from the store is
/// looked up in Weaviate.
pub async fn weaviate_reads(db: &Db) {
    let (url, fake) = FakeWeaviate::start().await;
    let h = weaviate_service(db, url).await;

    // Before the filter's first write the class does not exist: the store's
    // documents alone are the whole answer.
    fake.set_mode(WeaviateMode::NoClass);
    let (_, doc) = h
        .post(
            "/mem/events",
            Some("alice"),
            &json!({"kind": "note", "content": {"n": 1}}),
        )
        .await;
    let doc_id = doc["mem_id"].as_str().unwrap().to_string();
    assert_eq!(ids(&h.memory("alice", "").await), [doc_id.as_str()]);
    fake.set_mode(WeaviateMode::Answer);

    let [prompt, reply, namesake, bob, old] = [(); 5].map(|_| new_id());
    let exchange = json!({"user": "alice", "session": "s1", "model": "llama3",
        "route": "/api/chat", "requestId": "r1", "status": 200, "latencyMs": 40});
    let with = |extra: Value| {
        let mut o = exchange.clone();
        for (k, v) in extra.as_object().unwrap() {
            o[k] = v.clone();
        }
        o
    };
    fake.add(
        &prompt,
        with(json!({"role": "user", "kind": "prompt", "content": "hi",
            "timestamp": "2030-01-01T00:00:00.000Z", "tokensIn": 2, "truncated": false})),
    );
    fake.add(
        &reply,
        with(
            json!({"role": "assistant", "kind": "reply", "content": "hello", "taskId": "t9",
            "timestamp": "2030-01-01T00:00:00.040Z", "tokensOut": 1, "truncated": false}),
        ),
    );
    // Another user sharing a word of the name, and another user: never shown.
    fake.add(
        &namesake,
        with(
            json!({"user": "alice smith", "kind": "prompt", "content": "theirs",
            "timestamp": "2031-01-01T00:00:00Z"}),
        ),
    );
    fake.add(
        &bob,
        with(json!({"user": "bob", "kind": "prompt", "content": "bob's",
            "timestamp": "2031-01-01T00:00:00Z"})),
    );
    fake.add(
        &old,
        with(json!({"session": "s2", "kind": "prompt", "content": "old",
            "timestamp": "2000-01-01T00:00:00Z"})),
    );
    // A tool result, from another session.
    let tool_result = new_id();
    fake.add(
        &tool_result,
        json!({"user": "alice", "session": "s3", "role": "assistant", "kind": "tool_result",
            "content": "no such file", "route": "/mcp/files", "requestId": "r5", "status": 200,
            "latencyMs": 7, "truncated": false, "tool": "read_file", "isError": true,
            "timestamp": "2001-01-01T00:00:00Z"}),
    );
    // A store row between the prompt and the reply.
    let ingested = new_id();
    let (status, _) = h
        .post(
            "/mem/ingest",
            Some(MIRROR),
            &json!([{"id": ingested, "user": "alice", "session": "s1", "role": "user",
                "kind": "prompt", "content": "stored", "timestamp": "2030-01-01T00:00:00.020Z"}]),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let all = h.memory("alice", "").await;
    assert_eq!(
        ids(&all),
        [
            reply.as_str(),
            ingested.as_str(),
            prompt.as_str(),
            doc_id.as_str(),
            tool_result.as_str(),
            old.as_str()
        ]
    );
    assert_eq!(
        all[4],
        json!({"mem_id": tool_result, "kind": "tool_result", "content": "no such file",
            "task_id": null, "session": "s3", "role": "assistant",
            "created": "2001-01-01T00:00:00.000Z", "route": "/mcp/files", "request_id": "r5",
            "status": 200, "latency_ms": 7, "truncated": false, "tool": "read_file",
            "is_error": true})
    );
    assert_eq!(
        ids(&h.memory("alice", "tool=read_file").await),
        [tool_result.as_str()]
    );
    let q = fake.queries().pop().unwrap();
    assert!(
        q.contains(r#"{path: ["tool"], operator: Equal, valueText: "read_file"}"#),
        "{q}"
    );
    assert!(h.memory("alice", "tool=write_file").await.is_empty());
    let reply_json = json!({"mem_id": reply, "kind": "reply", "content": "hello",
        "task_id": "t9", "session": "s1", "role": "assistant",
        "created": "2030-01-01T00:00:00.040Z", "model": "llama3", "route": "/api/chat",
        "request_id": "r1", "status": 200, "latency_ms": 40, "tokens_out": 1,
        "truncated": false});
    assert_eq!(all[0], reply_json);
    assert_eq!(
        fake.last_headers()["authorization"],
        format!("Bearer {WEAVIATE_KEY}")
    );

    // Filters go to both sides, and the limit applies to the merged list.
    let two = h.memory("alice", "session=s1&limit=2").await;
    assert_eq!(ids(&two), [reply.as_str(), ingested.as_str()]);
    assert_eq!(
        fake.queries().last().unwrap(),
        r#"{ Get { MemoryEvent(where: {operator: And, operands: [{path: ["user"], operator: Equal, valueText: "alice"}, {path: ["session"], operator: Equal, valueText: "s1"}]}, limit: 2, sort: [{path: ["timestamp"], order: desc}]) { user session role kind content model route requestId taskId status timestamp latencyMs tokensIn tokensOut truncated unreadable requestBytes tool isError _additional { id } } } }"#
    );
    assert_eq!(
        ids(&h.memory("alice", "task_id=t9&kind=reply").await),
        [reply.as_str()]
    );
    let q = fake.queries().pop().unwrap();
    assert!(
        q.contains(r#"{path: ["taskId"], operator: Equal, valueText: "t9"}"#),
        "{q}"
    );
    assert!(
        q.contains(r#"{path: ["kind"], operator: Equal, valueText: "reply"}"#),
        "{q}"
    );
    assert_eq!(
        ids(&h.memory("alice", "kind=note").await),
        [doc_id.as_str()]
    );
    assert_eq!(ids(&h.memory("bob", "").await), [bob.as_str()]);

    // A session that tries to close the string and widen the filter stays
    // one value.
    let hostile = r#"s1"}, {path: ["user"], operator: Equal, valueText: "bob"#;
    let encoded: String = hostile.bytes().map(|b| format!("%{b:02X}")).collect();
    let query = format!("session={encoded}");
    assert!(h.memory("alice", &query).await.is_empty());
    let q = fake.queries().pop().unwrap();
    assert!(
        q.contains(
            r#"{path: ["session"], operator: Equal, valueText: "s1\"}, {path: [\"user\"], operator: Equal, valueText: \"bob"}]}, limit: 50, sort:"#
        ),
        "{q}"
    );

    // Single events: the store first, then Weaviate (scoped to the caller).
    let asked = fake.queries().len();
    let (status, got) = h.get(&format!("/mem/events/{doc_id}"), Some("alice")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["content"], json!({"n": 1}));
    assert_eq!(fake.queries().len(), asked, "found in the store");
    let (status, got) = h.get(&format!("/mem/events/{reply}"), Some("alice")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, reply_json);
    let q = fake.queries().pop().unwrap();
    assert!(
        q.contains(&format!(
            r#"[{{path: ["user"], operator: Equal, valueText: "alice"}}, {{path: ["id"], operator: Equal, valueText: "{reply}"}}]"#
        )),
        "{q}"
    );
    let (status, got) = h
        .get(
            &format!("/mem/events/{}", reply.to_uppercase()),
            Some("alice"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["mem_id"], reply.as_str());
    for (id, user) in [(&bob, "alice"), (&namesake, "alice"), (&reply, "bob")] {
        let (status, _) = h.get(&format!("/mem/events/{id}"), Some(user)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id} as {user}");
    }
    let asked = fake.queries().len();
    let (status, _) = h.get("/mem/events/not-a-uuid", Some("alice")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(fake.queries().len(), asked, "no UUID, nothing to ask");
}

/// A failing, slow or absent Weaviate fails reads with a 502 and a short
/// reason, counted in the metrics; events the store holds stay readable
/// one by one.
/// A class an older gateway made lacks `tool` and `isError` until a
/// gateway's schema check adds them: meanwhile listings and lookups read
/// it without them, and a listing by tool finds nothing.
pub async fn weaviate_older_class(db: &Db) {
    let (url, fake) = FakeWeaviate::start().await;
    let h = weaviate_service(db, url).await;
    fake.set_mode(WeaviateMode::OlderClass);
    let prompt = new_id();
    fake.add(
        &prompt,
        json!({"user": "alice", "session": "s1", "role": "user", "kind": "prompt",
            "content": "hi", "route": "/api/chat", "timestamp": "2030-01-01T00:00:00Z"}),
    );
    let all = h.memory("alice", "").await;
    assert_eq!(ids(&all), [prompt.as_str()]);
    assert_eq!(all[0]["content"], "hi");
    let (status, one) = h.get(&format!("/mem/events/{prompt}"), Some("alice")).await;
    assert_eq!((status, &one["mem_id"]), (StatusCode::OK, &json!(prompt)));
    assert_eq!(h.memory("alice", "tool=echo").await, Vec::<Value>::new());
    let queries = fake.queries();
    assert_eq!(
        queries.len(),
        5,
        "each read tries once with every property: {queries:#?}"
    );
    for q in &queries {
        assert!(
            !q.contains("path: [\"tool\"]") || q.contains("isError"),
            "{q}"
        );
    }
    let (_, metrics) = h.get("/metrics", None).await;
    let text = metrics.as_str().unwrap();
    assert!(
        text.contains("attach_a2a_memory_backend_errors_total 0"),
        "{text}"
    );
}

pub async fn weaviate_failures(db: &Db) {
    let (url, fake) = FakeWeaviate::start().await;
    let h = weaviate_service(db, url).await;
    let (status, doc) = h
        .post(
            "/mem/events",
            Some("alice"),
            &json!({"kind": "note", "content": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "documents are written to the store");
    let doc_id = doc["mem_id"].as_str().unwrap().to_string();
    let refused = |v: &Value, what: &str| {
        assert_eq!(v["error"], "memory_backend_unavailable", "{what}: {v}");
        let message = v["message"].as_str().unwrap();
        for detail in [
            "\n",
            "10.9.8.7",
            "secretProp",
            "127.0.0.1",
            "graphql",
            WEAVIATE_KEY,
        ] {
            assert!(!message.contains(detail), "{what}: {message}");
        }
        message.to_string()
    };
    let modes = [
        WeaviateMode::Status(500),
        WeaviateMode::Status(401),
        WeaviateMode::QueryError,
        WeaviateMode::Stall,
    ];
    for mode in modes {
        fake.set_mode(mode);
        let what = format!("{mode:?}");
        let (status, v) = h.get("/mem/events", Some("alice")).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{what}: {v}");
        let message = refused(&v, &what);
        assert_eq!(
            message.contains("in time"),
            mode == WeaviateMode::Stall,
            "{message}"
        );
        let (status, v) = h
            .get(&format!("/mem/events/{}", new_id()), Some("alice"))
            .await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{what}: {v}");
        refused(&v, &what);
        let (status, _) = h.get(&format!("/mem/events/{doc_id}"), Some("alice")).await;
        assert_eq!(status, StatusCode::OK, "{what}");
    }
    let (_, metrics) = h.get("/metrics", None).await;
    let text = metrics.as_str().unwrap();
    assert!(
        text.contains("attach_a2a_memory_backend_errors_total 8"),
        "{text}"
    );
    assert!(text.contains("attach_a2a_store_errors_total 0"), "{text}");

    // Nothing listening at WEAVIATE_URL.
    let port = closed_port().await;
    let down = weaviate_service(db, format!("http://127.0.0.1:{port}")).await;
    let (status, v) = down.get("/mem/events", Some("alice")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{v}");
    refused(&v, "unreachable");
}

/// Rows whose instants RFC 3339 cannot write (past year 9999, before 1970)
/// read back with the nearest instant it can, through every route that
/// shows them: a stored row must never fail a read.
pub async fn extreme_timestamps_read_back(db: &Db) {
    let h = Harness::new(db).await;
    let store = &h.state.store;
    let beyond = attach_a2a_service::a2a::model::parse_timestamp("9999-12-31T23:59:59-23:59")
        .expect("the parser takes it");
    let last = "9999-12-31T23:59:59.999Z";
    let epoch = "1970-01-01T00:00:00.000Z";
    let mut ids = Vec::new();
    for (created_ms, shown) in [(beyond, last), (i64::MAX, last), (i64::MIN, epoch)] {
        let event = MemoryEvent {
            id: new_id(),
            owner: "alice".into(),
            session: "alice-session".into(),
            kind: "note".into(),
            role: None,
            task_id: None,
            content: json!("far"),
            created_ms,
            meta: ExchangeMeta::default(),
            actor: Default::default(),
            tool: None,
        };
        store.insert_memory(&event).await.unwrap();
        ids.push((event.id, shown));
    }
    let listed = h.memory("alice", "").await;
    assert_eq!(listed.len(), 3);
    for (id, shown) in &ids {
        let row = listed.iter().find(|e| e["mem_id"] == id.as_str()).unwrap();
        assert_eq!(row["created"], *shown);
        let (status, one) = h.get(&format!("/mem/events/{id}"), Some("alice")).await;
        assert_eq!(status, StatusCode::OK, "{one}");
        assert_eq!(one["created"], *shown);
    }

    let mut task = stored_task("far", TaskState::Completed, i64::MAX, i64::MAX);
    task.created_ms = i64::MIN;
    store.insert_task(&task).await.unwrap();
    let (status, seed) = h.get("/a2a/tasks/status/far", Some("alice")).await;
    assert_eq!(status, StatusCode::OK, "{seed}");
    assert_eq!(
        (seed["created"].as_str(), seed["updated"].as_str()),
        (Some(epoch), Some(last))
    );
    let got = h
        .v03("v03", "alice", "tasks/get", json!({"id": "far"}))
        .await;
    assert_eq!(got["result"]["status"]["timestamp"], last);
    let got = h.v1("v03", "alice", "GetTask", json!({"id": "far"})).await;
    assert_eq!(got["result"]["status"]["timestamp"], last, "{got}");
    let listed = h.v1("v03", "alice", "ListTasks", json!({})).await;
    assert_eq!(listed["result"]["tasks"][0]["status"]["timestamp"], last);
}

/// A handler that panics answers 500 with the usual error body, naming
/// nothing of the panic; the connection and the service go on, and the
/// panic is counted.
pub async fn a_panicking_handler_fails_only_its_request(db: &Db) {
    let h = Harness::new(db).await;
    async fn boom() -> StatusCode {
        panic!("secret detail")
    }
    let extra = axum::Router::new().route("/boom", axum::routing::get(boom));
    let app = attach_a2a_service::routes::router_with(h.state.clone(), extra);
    let base = format!("http://{}", serve(app).await);
    // One connection for every request (reqwest keeps it alive).
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    for _ in 0..2 {
        let r = client.get(format!("{base}/boom")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            r.headers()["content-type"].to_str().unwrap(),
            "application/json"
        );
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "internal");
        assert!(!body.to_string().contains("secret"), "{body}");
        let r = client.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("\nattach_a2a_handler_panics_total 2\n"),
        "{metrics}"
    );
}

/// A body past `A2A_MAX_BODY` sent over a real connection gets the 413 and
/// its JSON body (the rest of the body is read first, so the answer is not
/// lost to a reset), and the connection serves the next request.
pub async fn oversized_bodies_get_their_413_over_the_wire(db: &Db) {
    let h = Harness::with(
        db,
        Options {
            max_body: Some("4096"),
            ..Options::default()
        },
    )
    .await;
    let app = h.app.clone();
    let base = format!("http://{}", serve(app).await);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let signed = |path: &str, body: Vec<u8>| {
        let mut r = client.post(format!("{base}{path}")).body(body);
        for (name, value) in Harness::request("POST", path, Some("alice"), Body::empty()).headers()
        {
            r = r.header(name, value);
        }
        r
    };
    let big = serde_json::to_vec(&json!({"kind": "note", "content": "x".repeat(4 << 20)})).unwrap();
    for path in ["/mem/events", "/mem/ingest", "/a2a/agents/v03"] {
        let r = signed(path, big.clone()).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "payload_too_large", "{path}");
        let ok = signed("/mem/events", br#"{"kind": "note", "content": 1}"#.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), StatusCode::OK, "after {path}");
    }
    assert_eq!(h.memory("alice", "").await.len(), 3);
}

/// A TTL or agent timeout too long for an `i64` of milliseconds means
/// "keep" and "wait", not a span that wrapped around: housekeeping keeps
/// fresh rows, and a task's deadline lies ahead.
pub async fn huge_durations_do_not_wrap(db: &Db) {
    let h = Harness::with(
        db,
        Options {
            ttl: Some("150000000000d"),
            ..Options::default()
        },
    )
    .await;
    h.post(
        "/mem/events",
        Some("alice"),
        &json!({"kind": "note", "content": 1}),
    )
    .await;
    tasks::housekeeping(&h.state).await;
    assert_eq!(h.memory("alice", "").await.len(), 1);

    let mut config = h.state.config.clone();
    let patient = config.agents.get_mut("patient").unwrap();
    patient.timeout = Duration::from_millis(u64::MAX);
    let store = Store::open(&config.database).await.unwrap();
    let state = AppState::new(config, store).unwrap();
    let far = Harness {
        app: router(state.clone()),
        state,
        seen: h.seen.clone(),
        dir: tempfile::tempdir().unwrap(),
    };
    let id = far.start_in_background("patient", "alice").await;
    let task = far
        .state
        .store
        .get_task("alice", &id, None)
        .await
        .unwrap()
        .unwrap();
    let year = 365 * 86_400_000;
    assert!(task.deadline_ms > now_ms() + year, "{}", task.deadline_ms);
}

/// A page token past any count the store can hold finds an empty page.
pub async fn page_tokens_past_any_count(db: &Db) {
    let h = Harness::new(db).await;
    h.v1(
        "v1",
        "alice",
        "SendMessage",
        json!({"message": msg_v1("x")}),
    )
    .await;
    for token in ["9223372036854775807", "18446744073709551615"] {
        let r = h
            .v1("v1", "alice", "ListTasks", json!({"pageToken": token}))
            .await;
        assert_eq!(r["result"]["tasks"], json!([]), "{r}");
        assert_eq!(r["result"]["nextPageToken"], "", "{r}");
    }
}

/// The endpoint answers with or without a trailing slash; a path no route
/// takes answers JSON, a JSON-RPC error object for a JSON-RPC request.
pub async fn trailing_slash_and_unmatched_paths(db: &Db) {
    let h = Harness::new(db).await;
    let request =
        json!({"jsonrpc": "2.0", "id": 5, "method": "tasks/get", "params": {"id": "none"}});
    let (status, v) = h.post("/a2a/agents/v03/", Some("alice"), &request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(code(&v), -32001);
    let (status, v) = h
        .post("/a2a/agents/v03/extra", Some("alice"), &request)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!((v["id"].clone(), code(&v)), (json!(5), -32600));
    let (status, v) = h.get("/a2a/nothing", Some("alice")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(v["error"], "not_found");
}

/// An agent that answers a message with a message, not a task: a waiting
/// caller gets that message in its context and no task is left (A2A 1.0
/// section 3.1.1); the exchange is still in the caller's memory.
pub async fn direct_message_replies(db: &Db) {
    let h = Harness::new(db).await;
    let mut m = msg_v1("hi");
    m["contextId"] = json!("ctx-talk");
    let r = h
        .v1("talker", "alice", "SendMessage", json!({"message": m}))
        .await;
    let message = &r["result"]["message"];
    assert!(r["result"].get("task").is_none(), "{r}");
    assert_eq!(message["role"], "ROLE_AGENT");
    assert_eq!(message["parts"], json!([{"text": "said: hi"}]));
    assert_eq!(message["contextId"], "ctx-talk");
    assert!(message.get("taskId").is_none(), "{message}");
    let r = h
        .v03(
            "talker03",
            "alice",
            "message/send",
            json!({"message": msg_v03("old")}),
        )
        .await;
    assert_eq!(r["result"]["kind"], "message", "{r}");
    assert_eq!(r["result"]["parts"][0]["text"], "said: old");
    for agent in ["talker", "talker03"] {
        let list = h.v1(agent, "alice", "ListTasks", json!({})).await;
        assert_eq!(list["result"]["totalSize"], 0, "{agent}: {list}");
    }
    let kinds: Vec<String> = h
        .memory("alice", "")
        .await
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| *k == tasks::TASK_RESULT).count(),
        2,
        "{kinds:?}"
    );
    // A caller that does not wait has its task already: the answer ends it.
    let r = h
        .v1(
            "talker",
            "alice",
            "SendMessage",
            json!({"message": msg_v1("later"), "configuration": {"returnImmediately": true}}),
        )
        .await;
    let id = r["result"]["task"]["id"].as_str().unwrap().to_string();
    let done = h.settle("alice", &id).await;
    assert_eq!(done["state"], "completed", "{done}");
}

/// Methods the protocol defines for capabilities the card does not declare
/// get A2A's errors, with an ErrorInfo; proto field names are read as the
/// JSON names are (A2A 1.0 sections 3.3.4, 5.4, 5.5, 9.5).
pub async fn protocol_errors_and_field_names(db: &Db) {
    let h = Harness::new(db).await;
    let err = |v: Value| v["error"].clone();
    let e = err(h
        .v1("v1", "alice", "CreateTaskPushNotificationConfig", json!({}))
        .await);
    assert_eq!(e["code"], -32003, "{e}");
    assert_eq!(e["data"][0]["reason"], "PUSH_NOTIFICATION_NOT_SUPPORTED");
    let e = err(h.v1("v1", "alice", "GetExtendedAgentCard", json!({})).await);
    assert_eq!(e["code"], -32004, "{e}");
    // A streaming method refused before its stream opens answers one error.
    let e = err(h.v1("v1", "alice", "SendStreamingMessage", json!({})).await);
    assert_eq!(e["code"], -32602, "{e}");
    let e = err(h
        .v1("v1", "alice", "SubscribeToTask", json!({"id": "nope"}))
        .await);
    assert_eq!(e["code"], -32001, "{e}");
    let e = err(h
        .v03(
            "v03",
            "alice",
            "tasks/pushNotificationConfig/get",
            json!({}),
        )
        .await);
    assert_eq!(e["code"], -32003, "{e}");
    let e = err(h.v1("v1", "alice", "Frobnicate", json!({})).await);
    assert_eq!(e["code"], -32601, "{e}");
    assert!(e.get("data").is_none(), "{e}");
    let e = err(h.v1("v1", "alice", "GetTask", json!({"id": "nope"})).await);
    assert_eq!(
        e["data"],
        json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "TASK_NOT_FOUND", "domain": "a2a-protocol.org"}])
    );

    let mut m = msg_v1("one");
    m["context_id"] = json!("ctx-snake");
    let r = h
        .v1("v1", "alice", "SendMessage", json!({"message": m}))
        .await;
    let task = &r["result"]["task"];
    assert_eq!(task["contextId"], "ctx-snake", "{r}");
    h.v1(
        "v1",
        "alice",
        "SendMessage",
        json!({"message": msg_v1("two")}),
    )
    .await;
    let id = task["id"].as_str().unwrap();
    let got = h
        .v1(
            "v1",
            "alice",
            "GetTask",
            json!({"id": id, "history_length": 1}),
        )
        .await;
    assert_eq!(got["result"]["history"].as_array().unwrap().len(), 1);
    let listed = h
        .v1(
            "v1",
            "alice",
            "ListTasks",
            json!({"context_id": "ctx-snake"}),
        )
        .await;
    assert_eq!(listed["result"]["totalSize"], 1, "{listed}");
    for bad in [
        json!({"id": id, "history_length": "lots"}),
        json!({"id": id, "historyLength": 1, "history_length": 2}),
    ] {
        let e = err(h.v1("v1", "alice", "GetTask", bad).await);
        assert_eq!(e["code"], -32602, "{e}");
    }
}

/// An agent with an extended card serves it to signed-in callers over both
/// JSON-RPC versions and HTTP+JSON, each caller with the skills the file
/// lets them see; an agent without one still refuses the method (A2A 1.0
/// sections 3.1.11, 3.3.4 and 13.3).
pub async fn extended_cards(db: &Db) {
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("carded.json");
    let extended = json!({
        "card": {
            "description": "more for signed-in callers",
            "skills": [
                {"id": "plan", "name": "Plan", "description": "plans", "tags": []},
                {"id": "deploy", "name": "Deploy", "description": "ships", "tags": ["ops"]},
            ],
        },
        "skill_users": {"deploy": ["alice"]},
    });
    std::fs::write(&file, extended.to_string()).unwrap();
    // No downstream card: the public card is synthesized.
    let closed = closed_port().await;
    let agents = format!(
        "carded=http://127.0.0.1:{closed}/a;extended_card={},plain=http://127.0.0.1:{closed}/b",
        file.display()
    );
    let h = Harness::with(
        db,
        Options {
            env: vec![("A2A_AGENTS", agents)],
            ..Options::default()
        },
    )
    .await;
    let (_, public) = h
        .get("/a2a/agents/carded/.well-known/agent-card.json", None)
        .await;
    assert_eq!(public["capabilities"]["extendedAgentCard"], true);
    assert_eq!(public["skills"], json!([]));
    let (_, legacy) = h
        .get("/a2a/agents/carded/.well-known/agent.json", None)
        .await;
    assert_eq!(legacy["supportsAuthenticatedExtendedCard"], true);

    let ids = |card: &Value| -> Vec<String> {
        card["skills"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    };
    let alice = h
        .v1("carded", "alice", "GetExtendedAgentCard", json!({}))
        .await["result"]
        .clone();
    assert_eq!(ids(&alice), ["plan", "deploy"], "{alice}");
    assert_eq!(alice["description"], "more for signed-in callers");
    assert_eq!(alice["supportedInterfaces"], public["supportedInterfaces"]);
    assert_eq!(alice["securitySchemes"], public["securitySchemes"]);
    let bob = h
        .v1("carded", "bob", "GetExtendedAgentCard", json!({}))
        .await["result"]
        .clone();
    assert_eq!(ids(&bob), ["plan"], "{bob}");
    let bob_v03 = h
        .v03(
            "carded",
            "bob",
            "agent/getAuthenticatedExtendedCard",
            json!({}),
        )
        .await["result"]
        .clone();
    assert_eq!(bob_v03["url"], "https://gw.example/a2a/agents/carded");
    assert_eq!(bob_v03["supportsAuthenticatedExtendedCard"], true);
    assert_eq!(bob_v03["skills"], bob["skills"]);
    assert!(bob_v03.get("supportedInterfaces").is_none(), "{bob_v03}");

    let rest = |user| {
        Harness::request(
            "GET",
            "/a2a/agents/carded/extendedAgentCard",
            user,
            Body::empty(),
        )
    };
    let response = h.app.clone().oneshot(rest(Some("alice"))).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(headers["cache-control"], "private, max-age=300");
    assert_eq!(headers["vary"], "Authorization");
    assert_eq!(headers["content-type"], "application/a2a+json");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap(), alice);
    // Without the gateway's assertion there is no caller, so no card.
    let (status, _) = h.send(rest(None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // An agent without one: the public card says so, the method is refused.
    let (_, plain) = h
        .get("/a2a/agents/plain/.well-known/agent-card.json", None)
        .await;
    assert_eq!(plain["capabilities"]["extendedAgentCard"], false);
    let e = h
        .v1("plain", "alice", "GetExtendedAgentCard", json!({}))
        .await;
    assert_eq!(code(&e), -32004, "{e}");
    let e = h
        .v03(
            "plain",
            "alice",
            "agent/getAuthenticatedExtendedCard",
            json!({}),
        )
        .await;
    assert_eq!(code(&e), -32004, "{e}");
    let (status, e) = h
        .get("/a2a/agents/plain/extendedAgentCard", Some("alice"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(e["error"]["details"][0]["reason"], "UNSUPPORTED_OPERATION");
}

/// Every card the service serves is signed by the gateway (A2A 1.0
/// section 8.4): the public 1.0 and 0.3 cards and the extended ones over
/// each binding, each verifying over its RFC 8785 form with the key set's
/// published key, the same bytes each time (so the ETag holds), and no
/// longer once a member changes.
pub async fn signed_cards(db: &Db) {
    use attach_contract::card_signature::{Refusal, verify};
    use attach_contract::gateway_keys::{KeySet, SigningKeys, new_key};

    let set = KeySet {
        keys: vec![new_key([4; 32], 0)],
    };
    let text = serde_json::to_string(&set).unwrap();
    let keys = SigningKeys::parse(&text).unwrap();
    let lookup = |kid: &str| keys.published(0).find(|k| k.kid == kid).map(|k| &k.key);
    let check = |card: &Value| {
        let card = card.as_object().unwrap();
        assert_eq!(verify(card, lookup), Ok(()), "{card:?}");
        let header = card["signatures"][0]["protected"].as_str().unwrap();
        let header: Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            header,
            json!({"alg": "EdDSA", "typ": "JOSE", "kid": keys.kid(),
                   "jku": "https://gw.example/.well-known/jwks.json"})
        );
        let mut changed = card.clone();
        changed["name"] = json!("impostor");
        assert_eq!(verify(&changed, lookup), Err(Refusal::NoValidSignature));
    };

    let h = Harness::with(
        db,
        Options {
            env: vec![("ATTACH_SIGNING_KEYS", text.clone())],
            ..Options::default()
        },
    )
    .await;
    for path in ["agent-card.json", "agent.json"] {
        let path = format!("/a2a/agents/v1/.well-known/{path}");
        let first = h
            .app
            .clone()
            .oneshot(Harness::request("GET", &path, None, Body::empty()));
        let first = first.await.unwrap();
        let tag = first.headers()["etag"].clone();
        let bytes = first.into_body().collect().await.unwrap().to_bytes();
        let card: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            card["name"], "Downstream",
            "the downstream's card, rewritten"
        );
        check(&card);
        let mut again = Harness::request("GET", &path, None, Body::empty());
        again.headers_mut().insert("if-none-match", tag);
        let again = h.app.clone().oneshot(again).await.unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
    }

    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("carded.json");
    std::fs::write(
        &file,
        json!({"card": {"skills": [{"id": "deploy", "name": "Deploy", "description": "ships", "tags": []}]}})
            .to_string(),
    )
    .unwrap();
    let closed = closed_port().await;
    let h = Harness::with(
        db,
        Options {
            env: vec![
                ("ATTACH_SIGNING_KEYS", text),
                (
                    "A2A_AGENTS",
                    format!(
                        "carded=http://127.0.0.1:{closed}/a;extended_card={}",
                        file.display()
                    ),
                ),
            ],
            ..Options::default()
        },
    )
    .await;
    let v1 = h
        .v1("carded", "alice", "GetExtendedAgentCard", json!({}))
        .await["result"]
        .clone();
    assert_eq!(v1["skills"][0]["id"], "deploy");
    check(&v1);
    let v03 = h
        .v03(
            "carded",
            "alice",
            "agent/getAuthenticatedExtendedCard",
            json!({}),
        )
        .await["result"]
        .clone();
    assert_eq!(v03["protocolVersion"], "0.3.0");
    check(&v03);
    let (status, rest) = h
        .get("/a2a/agents/carded/extendedAgentCard", Some("alice"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rest, v1);
}

/// The claims of a token the service signed as the gateway, for `aud`.
fn gateway_claims(token: &str, aud: &str) -> attach_contract::identity_token::IdentityClaims {
    let keys = super::signing_keys();
    let now = attach_a2a_service::auth::unix_now();
    attach_contract::identity_token::verify(token, super::ISSUER, aud, now, |kid| {
        keys.published(now).find(|k| k.kid == kid).map(|k| &k.key)
    })
    .unwrap_or_else(|refusal| panic!("{refusal}: {token}"))
}

/// A SendMessage to `agent` as `who`, with a bearer token of the caller's.
async fn send_as(h: &Harness, agent: &str, who: &super::As, message: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
                      "params": {"message": message}});
    let mut req = Harness::request_as(
        "POST",
        &format!("/a2a/agents/{agent}"),
        who,
        Body::from(body.to_string()),
    );
    req.headers_mut()
        .insert("a2a-version", "1.0".parse().unwrap());
    req.headers_mut()
        .insert("authorization", "Bearer the-users-token".parse().unwrap());
    let (status, v) = h.send(req).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

/// Issue 13, hand-offs without the user's token: an agent registered with
/// a DID gets an identity token for its DID and a token delegated to it
/// (RFC 8693 section 4.1: `act` names it, the caller's chain nested), the
/// chain in `metadata.actorChain`, and neither the caller's bearer token
/// nor an assertion.
pub async fn delegated_handoffs(db: &Db) {
    use super::{As, DELEGATED_DID, ISSUER};
    const PLANNER: &str = "did:key:z6MkPlanner";
    let h = Harness::new(db).await;

    let alone = send_as(&h, "delegated", &As::user("alice"), msg_v1("hi")).await;
    assert_eq!(
        alone["result"]["task"]["status"]["state"], "TASK_STATE_COMPLETED",
        "{alone}"
    );
    let seen = h.seen.last();
    let identity = gateway_claims(seen["x-attach-identity"].to_str().unwrap(), DELEGATED_DID);
    assert_eq!(
        (identity.sub.as_str(), identity.sid.as_str()),
        ("alice", "alice-session")
    );
    assert_eq!(identity.act, None, "the user asked alone");
    let delegated = gateway_claims(seen["x-attach-delegation"].to_str().unwrap(), ISSUER);
    assert_eq!(delegated.sub, "alice");
    assert_eq!(delegated.act, Some(json!({"sub": DELEGATED_DID})));
    assert_eq!(delegated.scope.as_deref(), Some("a2a"));
    assert!(seen.get("authorization").is_none());
    assert!(seen.get("x-attach-assertion").is_none());
    assert_eq!(
        h.seen.last_body()["params"]["message"]["metadata"]["actorChain"],
        json!([DELEGATED_DID])
    );

    // Handed on by a planner: the chain grows, and what the caller wrote
    // into the metadata is not passed on.
    let mut forged = msg_v1("from the planner");
    forged["metadata"] = json!({"actorChain": ["did:key:nobody"], "kept": true});
    let send_planner = send_as(&h, "delegated", &As::through("alice", &[PLANNER]), forged).await;
    let seen = h.seen.last();
    let identity = gateway_claims(seen["x-attach-identity"].to_str().unwrap(), DELEGATED_DID);
    assert_eq!(identity.act, Some(json!({"sub": PLANNER})));
    let delegated = gateway_claims(seen["x-attach-delegation"].to_str().unwrap(), ISSUER);
    assert_eq!(
        delegated.act,
        Some(json!({"sub": DELEGATED_DID, "act": {"sub": PLANNER}}))
    );
    assert_eq!(seen["x-attach-actor"], PLANNER);
    let handed = &send_planner["result"]["task"];
    assert_eq!(
        handed["metadata"]["actorChain"],
        json!([DELEGATED_DID, PLANNER]),
        "the task records who acted"
    );
    let metadata = &h.seen.last_body()["params"]["message"]["metadata"];
    assert_eq!(metadata["actorChain"], json!([DELEGATED_DID, PLANNER]));
    assert_eq!(metadata["kept"], true);
    assert!(
        seen.values()
            .all(|v| !v.to_str().unwrap().contains("the-users-token"))
    );

    // The task's memory events say who asked (sent) and who acted (result).
    let task_id = handed["id"].as_str().unwrap();
    let events = h.memory("alice", &format!("task_id={task_id}")).await;
    let actor_of = |kind: &str| {
        events
            .iter()
            .find(|e| e["kind"] == kind)
            .map(|e| e["actor"].clone())
            .unwrap_or_else(|| panic!("no {kind}: {events:?}"))
    };
    assert_eq!(actor_of("task_sent"), PLANNER);
    assert_eq!(
        actor_of("task_result"),
        format!("{DELEGATED_DID}, {PLANNER}")
    );
    let (status, seed) = h
        .get(&format!("/a2a/tasks/status/{task_id}"), Some("alice"))
        .await;
    assert_eq!(status, StatusCode::OK, "{seed}");
    assert_eq!(
        (&seed["actor"], &seed["delegated_to"]),
        (&json!(PLANNER), &json!(DELEGATED_DID))
    );

    // Agents without a DID still get the assertion, and no tokens.
    send_as(&h, "v1", &As::user("alice"), msg_v1("plain")).await;
    let seen = h.seen.last();
    assert!(seen.get("x-attach-assertion").is_some());
    assert!(seen.get("x-attach-delegation").is_none());
    assert!(seen.get("authorization").is_none(), "forward_bearer is off");
    assert!(
        h.seen.last_body()["params"]["message"]
            .get("metadata")
            .is_none()
    );
}

/// A hand-off that would loop (the agent already acts in the caller's
/// chain) or exceed the chain's depth is refused before anything exists:
/// no task, no memory event, no request to the agent.
pub async fn refused_handoffs_leave_nothing(db: &Db) {
    use super::{As, DELEGATED_DID};
    let h = Harness::new(db).await;
    let before = h.seen.count();
    let looped = As::through("alice", &["did:key:z6MkCoder", DELEGATED_DID]);
    let deep = As::through(
        "alice",
        &["did:key:a", "did:key:b", "did:key:c", "did:key:d"],
    );
    for who in [&looped, &deep] {
        let v = send_as(&h, "delegated", who, msg_v1("again")).await;
        assert_eq!(code(&v), -32602, "{v}");
        assert_eq!(v["error"]["data"][0]["reason"], "DELEGATION_REFUSED", "{v}");
        assert!(!v["error"]["message"].as_str().unwrap().contains('\n'));
    }
    // The HTTP+JSON binding answers the same refusal as 403.
    let body = json!({"message": msg_v1("rest")});
    let req = Harness::request_as(
        "POST",
        "/a2a/agents/delegated/message:send",
        &looped,
        Body::from(body.to_string()),
    );
    let (status, v) = h.send(req).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"]["status"], "PERMISSION_DENIED", "{v}");

    assert_eq!(h.seen.count(), before, "nothing was sent");
    let listed = h.v1("delegated", "alice", "ListTasks", json!({})).await;
    assert_eq!(listed["result"]["tasks"], json!([]), "{listed}");
    assert!(h.memory("alice", "").await.is_empty());
}

/// Memory events carry who acted: a caller's documents and events its own
/// chain (which its events may repeat, not change), the mirror's events
/// what the mirror says; old rows and events without one read back
/// without it.
pub async fn memory_events_carry_the_actor(db: &Db) {
    use super::As;
    const PLANNER: &str = "did:key:z6MkPlanner";
    let h = Harness::new(db).await;
    let planner = As::through("alice", &[PLANNER]);
    let post_as = |path: &str, body: Value| {
        Harness::request_as("POST", path, &planner, Body::from(body.to_string()))
    };
    let (status, v) = h
        .send(post_as(
            "/mem/events",
            json!({"kind": "plan", "content": "steps"}),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let mem_id = v["mem_id"].as_str().unwrap().to_string();
    let (_, doc) = h.get(&format!("/mem/events/{mem_id}"), Some("alice")).await;
    assert_eq!(doc["actor"], PLANNER, "{doc}");

    let own = uuid::Uuid::new_v4().to_string();
    let forged = uuid::Uuid::new_v4().to_string();
    let batch = json!([
        {"id": own, "user": "alice", "session": "s", "content": "mine", "actor": PLANNER},
        {"id": forged, "user": "alice", "session": "s", "content": "x", "actor": "did:key:other"},
    ]);
    let (status, v) = h.send(post_as("/mem/ingest", batch)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["accepted"], json!([own]), "{v}");
    assert_eq!(v["refused"][0]["id"], forged.as_str(), "{v}");

    let mirrored = uuid::Uuid::new_v4().to_string();
    let plain = uuid::Uuid::new_v4().to_string();
    let batch = json!([
        {"id": mirrored, "user": "alice", "session": "s", "role": "user", "content": "p",
         "kind": "prompt", "actor": "did:key:z6MkCoder, did:key:z6MkPlanner"},
        {"id": plain, "user": "alice", "session": "s", "role": "user", "content": "q", "kind": "prompt"},
    ]);
    let (status, v) = h.post("/mem/ingest", Some(MIRROR), &batch).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["inserted"], 2, "{v}");
    let (status, v) = h
        .post(
            "/mem/ingest",
            Some(MIRROR),
            &json!([{"id": uuid::Uuid::new_v4().to_string(), "user": "alice",
                     "content": "r", "actor": "a, a"}]),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a chain that loops: {v}");

    let events = h.memory("alice", "").await;
    let actor = |id: &str| {
        events
            .iter()
            .find(|e| e["mem_id"] == id)
            .map(|e| e.get("actor").cloned())
            .unwrap()
    };
    assert_eq!(actor(&own), Some(json!(PLANNER)));
    assert_eq!(
        actor(&mirrored),
        Some(json!("did:key:z6MkCoder, did:key:z6MkPlanner"))
    );
    assert_eq!(actor(&plain), None);
}
