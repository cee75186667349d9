//! Token usage scenarios (`/usage/sync`, `/usage`, the overrides, the
//! metrics and the CloudEvents outbox), run on each store.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use attach_a2a_service::a2a::model::now_ms;
use attach_a2a_service::config::Metering;
use attach_a2a_service::usage::{self, export};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};

use super::{As, Db, Harness, MIRROR, Options, serve};

const BUDGET: &str = r#"{"windows": [{"seconds": 60, "tokens": 1000}, {"seconds": 86400, "tokens": 100000, "status": 403}],
  "models": [{"match": "llama3*", "windows": [{"seconds": 60, "tokens": 100}]}]}"#;

async fn harness(db: &Db, env: &[(&'static str, &str)]) -> Harness {
    let mut vars = vec![
        ("ATTACH_BUDGET", BUDGET.to_string()),
        ("ATTACH_ADMIN_USERS", "root, ops".to_string()),
    ];
    vars.extend(env.iter().map(|(k, v)| (*k, v.to_string())));
    Harness::with(
        db,
        Options {
            env: vars,
            ..Options::default()
        },
    )
    .await
}

fn record(id: &str, user: &str, model: &str, ago_s: i64, tokens: (u64, u64)) -> Value {
    json!({"id": id, "user": user, "model": model, "route": "/api/chat",
           "at_ms": now_ms() - ago_s * 1000, "tokens_in": tokens.0, "tokens_out": tokens.1,
           "estimated": false, "outcome": "complete"})
}

fn key(user: &str, scope: &str, seconds: u64) -> Value {
    json!({"user": user, "scope": scope, "seconds": seconds})
}

async fn sync(h: &Harness, gateway: &str, records: Value, totals_for: Value) -> Value {
    let body = json!({"gateway": gateway, "records": records, "totals_for": totals_for});
    let (status, v) = h.post("/usage/sync", Some(MIRROR), &body).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

/// The tokens of each total, in the answer's order.
fn tokens(answer: &Value) -> Vec<u64> {
    answer["totals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tokens"].as_u64().unwrap())
        .collect()
}

async fn metrics_page(h: &Harness) -> String {
    let (status, v) = h.get("/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    v.as_str().unwrap().to_string()
}

async fn send_as(
    h: &Harness,
    method: &str,
    path: &str,
    who: &As,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let body = body.map_or(Body::empty(), |b| Body::from(b.to_string()));
    h.send(Harness::request_as(method, path, who, body)).await
}

/// budget.md, usage sync wire: a record's id makes it idempotent (a batch
/// sent again, to this replica or another, counts once), and a total
/// counts the other gateways' records of the window, for the models its
/// scope matches.
pub async fn usage_sync_is_idempotent(db: &Db) {
    let h = harness(db, &[]).await;
    let other = h.replica().await;
    let batch = json!([
        record("r1", "alice", "llama3", 5, (10, 20)),
        record("r2", "alice", "qwen", 5, (5, 5)),
        {"id": "r3", "user": "alice", "model": "llama3", "route": "/api/chat", "at_ms": now_ms(),
         "tokens_in": 0, "tokens_out": 0, "estimated": true, "outcome": "refused"},
    ]);
    let body = json!({"gateway": "g1", "records": batch});
    let (a, b) = tokio::join!(
        h.post("/usage/sync", Some(MIRROR), &body),
        other.post("/usage/sync", Some(MIRROR), &body),
    );
    assert_eq!((a.0, b.0), (StatusCode::OK, StatusCode::OK), "{a:?} {b:?}");
    sync(&h, "g1", batch.clone(), json!([])).await;
    let asked = json!([
        key("alice", "*", 60),
        key("alice", "llama3*", 60),
        key("alice", "qwen", 60),
        key("bob", "*", 60)
    ]);
    let answer = sync(&h, "g2", json!([]), asked.clone()).await;
    assert_eq!(tokens(&answer), [40, 30, 10, 0], "{answer}");
    assert_eq!(
        answer["totals"][1],
        json!({"user": "alice", "scope": "llama3*", "seconds": 60, "tokens": 30})
    );
    // The asking gateway's own records are not in its totals.
    assert_eq!(
        tokens(&sync(&h, "g1", json!([]), asked).await),
        [0, 0, 0, 0]
    );
    // Counted once in the metrics, whichever replica took the batch first.
    let text = format!("{}{}", metrics_page(&h).await, metrics_page(&other).await);
    let count = |series: &str| -> u64 {
        text.lines()
            .filter(|l| l.starts_with(series))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    };
    assert_eq!(
        count(
            "attach_usage_requests_total{model=\"llama3\",route=\"/api/chat\",outcome=\"complete\"}"
        ),
        1,
        "{text}"
    );
    assert_eq!(
        count(
            "attach_usage_requests_total{model=\"llama3\",route=\"/api/chat\",outcome=\"refused\"}"
        ),
        1
    );
    assert_eq!(
        count("attach_usage_tokens_total{direction=\"out\",model=\"llama3\",route=\"/api/chat\"}"),
        20
    );
    assert!(count("attach_usage_sync_batches_total") >= 5);
}

/// budget.md, usage sync wire: totals respect the window and the model
/// pattern (exact, or a prefix whose `%`, `_` and `\` are plain
/// characters, in the exact case).
pub async fn usage_totals_respect_windows_and_patterns(db: &Db) {
    let h = harness(db, &[]).await;
    let models = ["a%b", "a_b", "axb", "A%b", "a\\b", "ab"];
    let records: Vec<Value> = models
        .iter()
        .enumerate()
        .map(|(i, m)| record(&format!("m{i}"), "carol", m, 1, (1 << i, 0)))
        .chain([record("old", "carol", "a%b", 600, (1000, 0))])
        .collect();
    sync(&h, "g1", Value::Array(records), json!([])).await;
    let answer = sync(
        &h,
        "g2",
        json!([]),
        json!([
            key("carol", "a%*", 60),
            key("carol", "a_*", 60),
            key("carol", "a\\*", 60),
            key("carol", "a%b", 60),
            key("carol", "a*", 60),
            key("carol", "A*", 60),
            key("carol", "*", 60),
            key("carol", "*", 3600),
            key("carol", "a%*", 3600),
        ]),
    )
    .await;
    assert_eq!(
        tokens(&answer),
        [1, 2, 16, 1, 1 + 2 + 4 + 16 + 32, 8, 63, 1063, 1001],
        "{answer}"
    );
}

/// budget.md: 400 for a body that is not the batch's shape, and nothing of
/// it stored; 401 without the gateway's key.
pub async fn usage_sync_refuses_bad_batches(db: &Db) {
    let h = harness(db, &[]).await;
    let good = record("r1", "dave", "m", 1, (1, 1));
    let mut lost = record("r4", "dave", "m", 1, (1, 1));
    lost["outcome"] = json!("lost");
    for (body, says) in [
        (
            json!({"gateway": "g1", "records": [good], "extra": 1}),
            "extra",
        ),
        (json!({"records": [good]}), "gateway"),
        (
            json!({"gateway": "g1", "records": [good, record("r2", "", "m", 1, (1, 1))]}),
            "user",
        ),
        (
            json!({"gateway": "g1", "records": vec![good.clone(); 501]}),
            "500",
        ),
        (
            json!({"gateway": "g1", "records": [good, {"id": "r3"}]}),
            "missing field",
        ),
        (
            json!({"gateway": "g1", "records": [good, lost]}),
            "unknown variant",
        ),
        (json!([good]), "invalid type"),
    ] {
        let (status, v) = h.post("/usage/sync", Some(MIRROR), &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert!(v["message"].as_str().unwrap().contains(says), "{v}");
    }
    let mut far = good.clone();
    far["at_ms"] = json!(u64::MAX);
    let (status, _) = h
        .post(
            "/usage/sync",
            Some(MIRROR),
            &json!({"gateway": "g1", "records": [good, far]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let body = json!({"gateway": "g1", "records": [good]});
    for who in [None, Some("dave")] {
        let (status, v) = h.post("/usage/sync", who, &body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{who:?}: {v}");
    }
    let answer = sync(&h, "g2", json!([]), json!([key("dave", "*", 60)])).await;
    assert_eq!(tokens(&answer), [0], "nothing of a refused batch is stored");
}

/// Issue 15: the usage API shows a caller only their own usage; the `user`
/// parameter is an admin's.
pub async fn usage_reads_are_the_callers_own(db: &Db) {
    let h = harness(db, &[]).await;
    sync(
        &h,
        "g1",
        json!([
            record("a1", "alice", "llama3.2", 10, (30, 40)),
            record("a2", "alice", "qwen", 10, (100, 200)),
            record("a3", "alice", "qwen", 7200, (1, 1)),
            record("b1", "bob", "llama3", 10, (500, 500)),
        ]),
        json!([]),
    )
    .await;
    let (status, v) = h.get("/usage", Some("alice")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["user"], "alice");
    assert_eq!(
        v["limits"],
        json!([
            {"scope": "*", "seconds": 60, "tokens": 1000, "used": 370, "remaining": 630, "status": 429},
            {"scope": "*", "seconds": 86400, "tokens": 100000, "used": 372, "remaining": 99628, "status": 403},
            {"scope": "llama3*", "seconds": 60, "tokens": 100, "used": 70, "remaining": 30, "status": 429},
        ])
    );
    assert_eq!(
        v["windows"][0],
        json!({"seconds": 60, "tokens_in": 130, "tokens_out": 240, "requests": 2, "models": [
            {"model": "llama3.2", "tokens_in": 30, "tokens_out": 40, "requests": 1},
            {"model": "qwen", "tokens_in": 100, "tokens_out": 200, "requests": 1},
        ]})
    );
    assert_eq!(v["windows"][1]["seconds"], 86400);
    assert_eq!(v["windows"][1]["requests"], 3);
    assert!(!v.to_string().contains("bob"), "{v}");
    let (_, v) = h.get("/usage?seconds=3600", Some("alice")).await;
    let lengths: Vec<&Value> = v["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| &w["seconds"])
        .collect();
    assert_eq!(lengths, [&json!(60), &json!(3600), &json!(86400)]);
    for bad in ["0", "x", "31536001"] {
        let (status, _) = h.get(&format!("/usage?seconds={bad}"), Some("alice")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
    // Another user's usage: an admin's only.
    let (status, _) = h.get("/usage?user=bob", Some("alice")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = h.get("/usage?user=alice", Some("alice")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, v) = h.get("/usage?user=bob", Some("root")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["user"], "bob");
    assert_eq!(v["limits"][0]["used"], 1000);
    assert_eq!(v["limits"][0]["remaining"], 0);
    let (status, _) = h.get("/usage", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// Issue 15: admins set, list and remove overrides at run time; every
/// gateway gets them in its next sync's answer.
pub async fn usage_overrides_round_trip(db: &Db) {
    let h = harness(db, &[]).await;
    let user = "oidc|erin/1";
    let path = "/usage/overrides/oidc%7Cerin%2F1";
    let limits = json!({"windows": [{"seconds": 60, "tokens": 5000}], "models": []});
    let alice = As::user("alice");
    for (method, p, body) in [
        ("GET", "/usage/overrides", None),
        ("PUT", path, Some(&limits)),
        ("DELETE", path, None),
    ] {
        let (status, v) = send_as(&h, method, p, &alice, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {p}: {v}");
    }
    let root = As::user("root");
    let (status, v) = send_as(&h, "PUT", path, &root, Some(&limits)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["user"], user);
    assert_eq!(
        v["windows"],
        json!([{"seconds": 60, "tokens": 5000, "status": 429}])
    );
    assert_eq!(v["models"], json!([]));
    assert!(v["updated_at"].as_str().unwrap().ends_with('Z'), "{v}");
    // An admin by scope.
    let scoped = As {
        scope: Some("a2a attach:admin".into()),
        ..As::user("frank")
    };
    let (status, listed) = send_as(&h, "GET", "/usage/overrides", &scoped, None).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["overrides"], json!([v]));
    // The override is in the next sync's answer, and in the user's limits.
    let answer = sync(&h, "g1", json!([]), json!([])).await;
    assert_eq!(
        answer["overrides"],
        json!([{"user": user, "windows": [{"seconds": 60, "tokens": 5000, "status": 429}], "models": []}])
    );
    let (_, usage) = h.get("/usage?user=oidc%7Cerin%2F1", Some("root")).await;
    assert_eq!(
        usage["limits"],
        json!([{"scope": "*", "seconds": 60, "tokens": 5000, "used": 0, "remaining": 5000, "status": 429}])
    );
    // A bad override is refused with its field named, and nothing changes.
    for (bad, field) in [
        (
            json!({"windows": [{"seconds": 60, "tokens": 0}]}),
            "override.windows[0].tokens",
        ),
        (json!({"limit": 1}), "override.limit"),
        (json!([]), "override"),
    ] {
        let (status, v) = send_as(&h, "PUT", path, &root, Some(&bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {v}");
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{field}:")),
            "{v}"
        );
    }
    let (_, again) = send_as(&h, "GET", "/usage/overrides", &root, None).await;
    assert_eq!(again, listed);
    let (status, _) = send_as(&h, "DELETE", path, &root, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = send_as(&h, "DELETE", path, &root, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let answer = sync(&h, "g1", json!([]), json!([])).await;
    assert_eq!(answer["overrides"], json!([]));
}

/// Records no window counts any more are removed: older than the longest
/// window plus the margin.
pub async fn usage_housekeeping(db: &Db) {
    let h = harness(db, &[]).await;
    let day = 86_400;
    sync(
        &h,
        "g1",
        json!([
            record("recent", "gina", "m", day - 60, (1, 0)),
            record("old", "gina", "m", day + 2 * 3600, (10, 0)),
        ]),
        json!([]),
    )
    .await;
    let total = || {
        sync(
            &h,
            "g2",
            json!([]),
            json!([key("gina", "*", 365 * day as u64)]),
        )
    };
    assert_eq!(tokens(&total().await), [11]);
    usage::housekeeping(&h.state).await;
    assert_eq!(tokens(&total().await), [1]);
}

/// `USAGE_METERING=off`: no usage metrics (and no export), the budgets' sync
/// still works.
pub async fn usage_metering_off(db: &Db) {
    let h = harness(db, &[("USAGE_METERING", "off")]).await;
    sync(
        &h,
        "g1",
        json!([record("r1", "hal", "m", 1, (1, 1))]),
        json!([]),
    )
    .await;
    assert!(!metrics_page(&h).await.contains("attach_usage_"));
    let answer = sync(&h, "g2", json!([]), json!([key("hal", "*", 60)])).await;
    assert_eq!(tokens(&answer), [2]);
    assert_eq!(h.state.store.outbox_len().await.unwrap(), 0);
}

/// What the collector stand-in received, and how it answers next.
#[derive(Clone, Default)]
struct Collector {
    seen: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
    answers: Arc<Mutex<Vec<StatusCode>>>,
}

async fn collect(
    State(c): State<Collector>,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    c.seen
        .lock()
        .unwrap()
        .push((headers, serde_json::from_str(&body).unwrap()));
    let status = c.answers.lock().unwrap().pop().unwrap_or(StatusCode::OK);
    if status.is_redirection() {
        return (status, [("location", "http://127.0.0.1:1/elsewhere")]).into_response();
    }
    status.into_response()
}

async fn collector() -> (String, Collector) {
    let c = Collector::default();
    let app = Router::new()
        .route("/events", post(collect))
        .with_state(c.clone());
    (format!("http://{}/events", serve(app).await), c)
}

fn exporter(h: &Harness) -> export::Exporter {
    let Metering::CloudEvents(config) = &h.state.config.usage.metering else {
        panic!("not exporting")
    };
    export::Exporter::new(config).unwrap()
}

/// Issue 15: usage exported as CloudEvents batches to USAGE_URL (through an
/// outbox: retried after a failure, never on the request's path).
pub async fn usage_export_delivers_cloudevents(db: &Db) {
    let (url, c) = collector().await;
    let h = harness(
        db,
        &[
            ("USAGE_METERING", "cloudevents"),
            ("USAGE_URL", &url),
            ("USAGE_API_KEY", "om-key"),
        ],
    )
    .await;
    c.answers.lock().unwrap().extend([
        StatusCode::OK,
        StatusCode::TEMPORARY_REDIRECT,
        StatusCode::INTERNAL_SERVER_ERROR,
    ]);
    let refused = json!({"id": "r2", "user": "ivy", "model": "m", "route": "/api/chat", "at_ms": 1_765_000_000_123u64,
        "tokens_in": 0, "tokens_out": 0, "estimated": false, "outcome": "refused"});
    let mut first = record("r1", "ivy", "llama3", 0, (12, 40));
    first["at_ms"] = json!(1_765_000_000_123u64);
    sync(&h, "g1", json!([first, refused]), json!([])).await;
    // Sent again: no more events.
    sync(&h, "g1", json!([first]), json!([])).await;
    assert!(
        c.seen.lock().unwrap().is_empty(),
        "never on the request's path"
    );
    assert_eq!(h.state.store.outbox_len().await.unwrap(), 2);
    let e = exporter(&h);
    let (store, metrics) = (&h.state.store, &h.state.metrics);
    let now = now_ms();
    let second = Duration::from_secs(1);
    assert_eq!(
        e.deliver_once(store, metrics, now, second).await,
        export::Delivery::Failed
    );
    // Not due again before the backoff.
    assert_eq!(
        e.deliver_once(store, metrics, now + 500, second).await,
        export::Delivery::Idle
    );
    // A redirect is a failure, never followed.
    assert_eq!(
        e.deliver_once(store, metrics, now + 1000, second).await,
        export::Delivery::Failed
    );
    assert_eq!(
        e.deliver_once(store, metrics, now + 2000, second).await,
        export::Delivery::Delivered(2)
    );
    assert_eq!(
        e.deliver_once(store, metrics, now + 3000, second).await,
        export::Delivery::Idle
    );
    assert_eq!(store.outbox_len().await.unwrap(), 0);
    let seen = c.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    let (headers, body) = &seen[2];
    assert_eq!(
        headers["content-type"],
        "application/cloudevents-batch+json"
    );
    assert_eq!(headers["authorization"], "Bearer om-key");
    assert_eq!(seen[0].1, *body, "a retry sends the same events");
    assert_eq!(
        *body,
        json!([
            {"specversion": "1.0", "id": "r1/input", "source": "attach-gateway", "type": "tokens",
             "subject": "ivy", "time": "2025-12-06T05:46:40.123Z",
             "data": {"tokens": 12, "model": "llama3", "type": "input", "route": "/api/chat"}},
            {"specversion": "1.0", "id": "r1/output", "source": "attach-gateway", "type": "tokens",
             "subject": "ivy", "time": "2025-12-06T05:46:40.123Z",
             "data": {"tokens": 40, "model": "llama3", "type": "output", "route": "/api/chat"}},
        ])
    );
    let text = metrics_page(&h).await;
    assert!(
        text.contains("\nattach_usage_outbox_delivered_total 2\n"),
        "{text}"
    );
    assert!(
        text.contains("\nattach_usage_outbox_failures_total 2\n"),
        "{text}"
    );
}

/// The outbox is bounded: past USAGE_OUTBOX_MAX the oldest events are
/// dropped, and counted.
pub async fn usage_outbox_is_bounded(db: &Db) {
    let (url, c) = collector().await;
    let h = harness(
        db,
        &[
            ("USAGE_METERING", "openmeter"),
            ("USAGE_URL", &url),
            ("USAGE_OUTBOX_MAX", "3"),
        ],
    )
    .await;
    sync(
        &h,
        "g1",
        json!([
            record("r1", "jo", "m", 3, (1, 1)),
            record("r2", "jo", "m", 2, (1, 1)),
            record("r3", "jo", "m", 1, (1, 1))
        ]),
        json!([]),
    )
    .await;
    let e = exporter(&h);
    let (store, metrics) = (&h.state.store, &h.state.metrics);
    assert_eq!(store.outbox_len().await.unwrap(), 6);
    e.trim(store, metrics).await;
    assert_eq!(store.outbox_len().await.unwrap(), 3);
    let text = metrics_page(&h).await;
    assert!(
        text.contains("\nattach_usage_outbox_dropped_total 3\n"),
        "{text}"
    );
    assert!(text.contains("\nattach_usage_outbox_events 3\n"), "{text}");
    assert_eq!(
        e.deliver_once(store, metrics, now_ms(), Duration::from_secs(1))
            .await,
        export::Delivery::Delivered(3)
    );
    let ids: Vec<Value> = c.seen.lock().unwrap()[0]
        .1
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].clone())
        .collect();
    assert_eq!(
        ids,
        [json!("r2/output"), json!("r3/input"), json!("r3/output")]
    );
}
