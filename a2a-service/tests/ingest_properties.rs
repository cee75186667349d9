//! The ingest path against generated events: any JSON event is either
//! stored, and then read back (by id and in the listing) without a panic,
//! or refused on its own with a reason; a batch is never refused whole for
//! one of its events.
//!
//! Events mix the fields `/mem/ingest` knows, with plausible and arbitrary
//! values (timestamps at and past the ends of the range, labels over the
//! limits or with control characters, numbers of every sign and size),
//! with unknown fields. They are written by the mirror (any user) and by a
//! caller (its own user, under the caller's rules).

mod common;

use axum::http::StatusCode;
use common::{Db, Harness, MIRROR};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};
use std::sync::atomic::{AtomicU64, Ordering};

const CALLER: &str = "prop-caller";

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        "[\\x00-\\x1f\\u{7f}-\\u{9f}a ]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map("[a-z_]{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn uuid_text() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => any::<u128>().prop_map(|n| Value::from(uuid::Builder::from_random_bytes(n.to_be_bytes()).into_uuid().to_string())),
        1 => any::<u128>().prop_map(|n| Value::from(uuid::Uuid::from_u128(n).simple().to_string().to_uppercase())),
        1 => any::<u128>().prop_map(|n| Value::from(uuid::Uuid::from_u128(n).to_string())),
        1 => any_json(),
    ]
}

fn timestamp() -> impl Strategy<Value = Value> {
    let edges = [
        "9999-12-31T23:59:59-23:59",
        "9999-12-31T23:59:59.999Z",
        "9999-12-31T23:59:59.999-00:01",
        "9999-12-31T23:59:59+23:59",
        "1970-01-01T00:00:00Z",
        "1970-01-01T00:00:00+00:01",
        "1969-12-31T23:59:59Z",
        "0000-01-01T00:00:00Z",
        "10000-01-01T00:00:00Z",
        "2030-02-30T00:00:00Z",
        "2030-01-01T00:00:00+24:00",
    ];
    let text = (
        0u32..=10_000,
        1u32..=13,
        0u32..=32,
        0u32..=24,
        0u32..=60,
        0u32..=60,
        prop_oneof![
            Just(String::new()),
            (0u32..1000).prop_map(|ms| format!(".{ms:03}"))
        ],
        prop_oneof![
            Just("Z".to_string()),
            ("[+-]", 0u32..=24, 0u32..=60).prop_map(|(s, h, m)| format!("{s}{h:02}:{m:02}"))
        ],
    )
        .prop_map(|(y, mo, d, h, mi, s, frac, zone)| {
            Value::from(format!(
                "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}{zone}"
            ))
        });
    prop_oneof![
        4 => proptest::sample::select(edges.to_vec()).prop_map(Value::from),
        2 => text,
        1 => any_json(),
    ]
}

fn label() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => "[a-z0-9.:/-]{0,12}".prop_map(Value::from),
        1 => (250usize..270).prop_map(|n| Value::from("m".repeat(n))),
        1 => (2040usize..2060).prop_map(|n| Value::from("/".repeat(n))),
        1 => (60usize..70).prop_map(|n| Value::from("k".repeat(n))),
        1 => any_json(),
    ]
}

fn count() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => (0u64..1_000).prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => any_json(),
    ]
}

/// One field of an event: a known one with a value of its own kind, or an
/// unknown one.
fn field() -> impl Strategy<Value = (String, Value)> {
    let named = |name: &'static str, value: BoxedStrategy<Value>| {
        value.prop_map(move |v| (name.to_string(), v))
    };
    prop_oneof![
        named(
            "kind",
            prop_oneof![
                proptest::sample::select(vec![
                    "prompt",
                    "reply",
                    "tool_call",
                    "tool_result",
                    "note",
                    "task_sent",
                    "Reply",
                    ""
                ])
                .prop_map(Value::from),
                label(),
            ]
            .boxed()
        ),
        named("session", label().boxed()),
        named("role", label().boxed()),
        named("task_id", label().boxed()),
        named("content", any_json().boxed()),
        named("timestamp", timestamp().boxed()),
        named("model", label().boxed()),
        named("route", label().boxed()),
        named("request_id", label().boxed()),
        named("unreadable", label().boxed()),
        named("tool", label().boxed()),
        named(
            "status",
            prop_oneof![(0u64..1_000).prop_map(Value::from), any_json()].boxed()
        ),
        named("latency_ms", count().boxed()),
        named("tokens_in", count().boxed()),
        named("tokens_out", count().boxed()),
        named("request_bytes", count().boxed()),
        named(
            "truncated",
            prop_oneof![any::<bool>().prop_map(Value::from), any_json()].boxed()
        ),
        named(
            "is_error",
            prop_oneof![any::<bool>().prop_map(Value::from), any_json()].boxed()
        ),
        ("[a-z]{1,8}", any_json()),
    ]
}

fn event() -> impl Strategy<Value = Value> {
    let user = prop_oneof![
        6 => proptest::sample::select(vec!["prop-a", "prop-b"]).prop_map(Value::from),
        1 => any_json(),
    ];
    (
        prop::option::weighted(0.95, uuid_text()),
        prop::option::weighted(0.95, user),
        prop::option::weighted(0.5, timestamp()),
        proptest::collection::vec(field(), 0..8),
    )
        .prop_map(|(id, user, timestamp, fields)| {
            let mut obj = Map::new();
            if let Some(t) = timestamp {
                obj.insert("timestamp".into(), t);
            }
            for (k, v) in fields {
                obj.insert(k, v);
            }
            if let Some(id) = id {
                obj.insert("id".into(), id);
            }
            if let Some(user) = user {
                obj.insert("user".into(), user);
            }
            Value::Object(obj)
        })
}

fn batch() -> impl Strategy<Value = Vec<Value>> {
    prop_oneof![
        1 => Just(Vec::new()),
        3 => event().prop_map(|e| vec![e]),
        4 => proptest::collection::vec(prop_oneof![9 => event(), 1 => any_json()], 1..5),
    ]
}

fn fail(message: String) -> TestCaseError {
    TestCaseError::fail(message)
}

/// Posts `batch` as `writer` and checks the answer event by event; every
/// event stored is read back as its owner.
async fn check(h: &Harness, writer: &str, batch: &[Value]) -> Result<(), TestCaseError> {
    let body = json!(batch);
    let (status, v) = h.post("/mem/ingest", Some(writer), &body).await;
    let accepted = v["accepted"].as_array().cloned().unwrap_or_default();
    let refused = v["refused"].as_array().cloned().unwrap_or_default();
    let expected = if !batch.is_empty() && accepted.is_empty() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    prop_assert_eq!(status, expected, "{}", v);
    prop_assert!(v["accepted"].is_array() && v["refused"].is_array(), "{}", v);
    prop_assert_eq!(accepted.len() + refused.len(), batch.len(), "{}", v);

    let refused_at: Vec<usize> = refused
        .iter()
        .map(|r| {
            let reason = r["reason"].as_str().unwrap_or_default();
            if reason.is_empty() || reason.contains('\n') {
                return Err(fail(format!("a refusal needs a one-line reason: {r}")));
            }
            r["index"]
                .as_u64()
                .and_then(|i| usize::try_from(i).ok())
                .ok_or_else(|| fail(format!("no index: {r}")))
        })
        .collect::<Result<_, _>>()?;
    prop_assert!(refused_at.windows(2).all(|w| w[0] < w[1]), "{}", v);
    let stored = batch
        .iter()
        .enumerate()
        .filter(|(i, _)| !refused_at.contains(i))
        .map(|(_, e)| e);
    for (event, id) in stored.zip(&accepted) {
        let id = id.as_str().ok_or_else(|| fail(format!("id {id}")))?;
        let sent = event["id"].as_str().unwrap_or_default();
        prop_assert_eq!(
            uuid::Uuid::parse_str(sent).ok(),
            uuid::Uuid::parse_str(id).ok()
        );
        let owner = event["user"].as_str().unwrap_or_default();
        if owner.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
            // Not a user the identity headers can name; nothing reads it.
            continue;
        }
        let (status, one) = h.get(&format!("/mem/events/{id}"), Some(owner)).await;
        prop_assert_eq!(status, StatusCode::OK, "{}", one);
        prop_assert_eq!(&one["mem_id"], &json!(id));
        prop_assert!(one["created"].is_string(), "{}", one);
        let (status, list) = h.get("/mem/events?limit=500", Some(owner)).await;
        prop_assert_eq!(status, StatusCode::OK, "{}", list);
    }
    Ok(())
}

/// Makes the batch's UUIDs and users unique to this run of a case (ids keep
/// their version and variant): shrinking revisits the same events, and what
/// an earlier run stored must not stand in for this run's, nor show up in
/// its listings.
fn salt(batch: &mut [Value], run: u64) {
    for user in batch.iter_mut().filter_map(|e| e.get_mut("user")) {
        if let Some(name) = user.as_str() {
            *user = Value::from(format!("{name}~{run}"));
        }
    }
    const KEPT: u128 = (0xf << 76) | (0x3 << 62);
    let salt = u128::from(run).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835) & !KEPT;
    for id in batch.iter_mut().filter_map(|e| e.get_mut("id")) {
        let Some(text) = id.as_str() else { continue };
        let Ok(parsed) = uuid::Uuid::parse_str(text) else {
            continue;
        };
        let fresh = uuid::Uuid::from_u128(parsed.as_u128() ^ salt);
        *id = Value::from(if text.contains('-') {
            fresh.to_string()
        } else {
            fresh.simple().to_string().to_uppercase()
        });
    }
}

#[test]
fn any_event_is_stored_and_read_back_or_refused_alone() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let h = rt.block_on(Harness::new(&Db::Sqlite));
    let runs = AtomicU64::new(1);
    let mut runner = TestRunner::new(Config {
        cases: 512,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&(batch(), any::<bool>()), |(mut batch, as_caller)| {
        let run = runs.fetch_add(1, Ordering::Relaxed);
        salt(&mut batch, run);
        rt.block_on(async {
            if as_caller {
                // A caller may only write its own events: the caller's
                // rules, not the 401 for another user's, are under test.
                let caller = format!("{CALLER}~{run}");
                for event in batch.iter_mut().filter_map(Value::as_object_mut) {
                    event.insert("user".into(), caller.as_str().into());
                }
                check(&h, &caller, &batch).await
            } else {
                check(&h, MIRROR, &batch).await
            }
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
