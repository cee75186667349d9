//! HTTP routes. Handlers stay thin: read the request, call the layer that
//! does the work, shape the answer.

mod a2a;
mod a2a_rest;
mod body;
mod extract;
mod health;
mod memory;
mod seed;
mod sse;
mod usage;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use tower_http::catch_panic::CatchPanicLayer;

use crate::error::AppError;
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    router_with(state, Router::new())
}

/// The service's routes and `extra` behind the same body limit and panic
/// guard; `extra` lets a test add a route that misbehaves and see the
/// guard answer for it.
pub fn router_with(state: AppState, extra: Router<AppState>) -> Router {
    let limit = state.config.max_body;
    let metrics = state.metrics.clone();
    // A handler that panics fails its own request (500, counted), never the
    // process or the other requests in flight.
    let guard = CatchPanicLayer::custom(move |_| {
        metrics.handler_panic();
        AppError::Internal("the request failed".into()).into_response()
    });
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(health::metrics))
        .route("/a2a/agents/{name}", post(a2a::rpc))
        // The card's URL plus a slash (what clients joining paths send).
        .route("/a2a/agents/{name}/", post(a2a::rpc))
        .route(
            "/a2a/agents/{name}/.well-known/agent-card.json",
            get(a2a::card),
        )
        .route(
            "/a2a/agents/{name}/.well-known/agent.json",
            get(a2a::legacy_card),
        )
        .merge(a2a_rest::routes())
        .route("/a2a/tasks/send", post(seed::send))
        .route("/a2a/tasks/status/{id}", get(seed::status))
        .route("/mem/events", post(memory::create).get(memory::list))
        .route("/mem/events/{mem_id}", get(memory::fetch))
        .route("/mem/ingest", post(memory::ingest))
        .route(attach_contract::usage::SYNC_PATH, post(usage::sync))
        .route(attach_contract::usage::USAGE_PATH, get(usage::read))
        .route("/usage/overrides", get(usage::list_overrides))
        .route(
            "/usage/overrides/{user}",
            put(usage::put_override).delete(usage::delete_override),
        )
        .merge(extra)
        .fallback(a2a::unmatched)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(limit, body::read_body))
        .layer(guard)
        .with_state(state)
}
