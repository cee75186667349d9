use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::AppError;
use crate::state::AppState;

/// Public: 200 when the store answers.
pub async fn healthz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => Json(json!({"status": "ok"})).into_response(),
        Err(e) => {
            state.metrics.store_error();
            AppError::from(e).into_response()
        }
    }
}

/// Public: Prometheus text.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let counts = match state.store.count_by_state().await {
        Ok(c) => Some(c),
        Err(_) => {
            state.metrics.store_error();
            None
        }
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(counts.as_deref(), state.events.open()),
    )
        .into_response()
}
