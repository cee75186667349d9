//! HTTP routes. Handlers stay thin: read the request, call the layer that
//! does the work, shape the answer.

mod a2a;
mod health;
mod memory;
mod seed;

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use serde_json::Value;

use crate::error::AppError;
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body;
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(health::metrics))
        .route("/a2a/agents/{name}", post(a2a::rpc))
        .route(
            "/a2a/agents/{name}/.well-known/agent-card.json",
            get(a2a::card),
        )
        .route("/a2a/agents/{name}/.well-known/agent.json", get(a2a::card))
        .route("/a2a/tasks/send", post(seed::send))
        .route("/a2a/tasks/status/{id}", get(seed::status))
        .route("/mem/events", post(memory::create).get(memory::list))
        .route("/mem/events/{mem_id}", get(memory::fetch))
        .route("/mem/ingest", post(memory::ingest))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// The buffered body, or 413 past `A2A_MAX_BODY`.
fn body_bytes(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, AppError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::PayloadTooLarge(limit)
        } else {
            AppError::BadRequest("cannot read the request body".into())
        }
    })
}

/// A JSON body for the plain (non-JSON-RPC) routes.
fn json_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<Value, AppError> {
    let bytes = body_bytes(body, limit)?;
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or_default().to_ascii_lowercase();
        if !ct.starts_with("application/json") && !ct.contains("+json") {
            return Err(AppError::UnsupportedMediaType);
        }
    }
    if std::str::from_utf8(&bytes).is_err() {
        return Err(AppError::BadRequest(
            "request body is not valid UTF-8".into(),
        ));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| AppError::BadRequest(format!("request body is not valid JSON: {e}")))
}
