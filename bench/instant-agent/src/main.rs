//! An A2A agent that answers every message at once, so that a benchmark of
//! the gateway's A2A hand-off measures the gateway and not the agent.
//!
//! ```text
//! attach-bench-agent [PORT]             listen on 127.0.0.1:PORT (default 0: a free port)
//! attach-bench-agent --engine [PORT]    the same, as a streaming model engine
//! ```
//!
//! Prints its URL as the first line on stdout, then answers JSON-RPC at `/`:
//! `SendMessage` (with `A2A-Version: 1.0`) with a completed task, and
//! `message/send` (A2A 0.3) with a message, both echoing the user's text.
//! With `--engine` it answers Ollama's `POST /api/chat` instead (see
//! [`engine`]). Stops on SIGTERM or SIGINT.

mod engine;

use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::HeaderMap;
use axum::routing::post;
use axum::serve::ListenerExt;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::signal::unix::{SignalKind, signal};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn fresh(kind: &str) -> String {
    format!("{kind}-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

async fn rpc(headers: HeaderMap, Json(request): Json<Value>) -> Json<Value> {
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let message = request.pointer("/params/message");
    let texts: Vec<&str> = message
        .and_then(|m| m.get("parts"))
        .and_then(Value::as_array)
        .map(|parts| parts.iter().filter_map(|p| p["text"].as_str()).collect())
        .unwrap_or_default();
    let text = texts.join(" ");
    let context_id = message
        .and_then(|m| m["contextId"].as_str())
        .map_or_else(|| fresh("context"), str::to_string);
    let v1 = headers.get("a2a-version").is_some_and(|v| v == "1.0");
    let result = match (request["method"].as_str(), v1) {
        (Some("SendMessage"), true) => json!({"task": {
            "id": fresh("task"),
            "contextId": context_id,
            "status": {
                "state": "TASK_STATE_COMPLETED",
                "message": {"messageId": fresh("message"), "role": "ROLE_AGENT", "parts": [{"text": text}]},
            },
        }}),
        (Some("message/send"), false) => json!({
            "kind": "message",
            "messageId": fresh("message"),
            "contextId": context_id,
            "role": "agent",
            "parts": [{"kind": "text", "text": text}],
        }),
        (method, _) => {
            let version = if v1 { "1.0" } else { "0.3" };
            let method = method.unwrap_or_default();
            let error = format!("method {method:?} is not served here in A2A {version}");
            return Json(
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": error}}),
            );
        }
    };
    Json(json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

async fn stopped() {
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        (Err(e), _) | (_, Err(e)) => eprintln!("attach-bench-agent: no signal handler: {e}"),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let as_engine = args.first().is_some_and(|a| a == "--engine");
    if as_engine {
        args.remove(0);
    }
    let port = match args.first() {
        None => 0,
        Some(arg) => arg.parse::<u16>().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{arg:?} is not a port"),
            )
        })?,
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("http://{}", listener.local_addr()?);
    if as_engine {
        // Frames are small writes: Nagle's algorithm would hold them back.
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                eprintln!("attach-bench-agent: TCP_NODELAY: {e}");
            }
        });
        return axum::serve(listener, engine::router())
            .with_graceful_shutdown(stopped())
            .await;
    }
    let app = Router::new().route("/", post(rpc));
    axum::serve(listener, app)
        .with_graceful_shutdown(stopped())
        .await
}
