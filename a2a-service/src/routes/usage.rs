//! Token usage over HTTP.
//!
//! `POST /usage/sync` takes a gateway's batch (`attach_contract::usage`'s
//! `SyncRequest`, with the memory mirror's credential as for
//! `/mem/ingest`) and answers its `SyncResponse`; a body that is not such
//! a batch is a 400 naming what is wrong, and nothing of it is stored.
//! `GET /usage?seconds=&user=` is the caller's usage (`user`: an admin's
//! view of anyone's); `GET /usage/overrides`,
//! `PUT /usage/overrides/{user}` (`{"windows": [...], "models": [...]}`)
//! and `DELETE /usage/overrides/{user}` are the admins' runtime
//! overrides. What each does is [`crate::usage`]'s.

use attach_contract::usage::SyncRequest;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::Value;

use crate::auth::{Caller, Ingester};
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::usage;

pub async fn sync(
    State(state): State<AppState>,
    writer: Ingester,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<Json<Value>> {
    let body = super::body::json_body(&headers, body)?;
    let batch: SyncRequest = serde_json::from_value(body)
        .map_err(|e| AppError::BadRequest(format!("not a usage batch: {e}")))?;
    let answer = usage::sync(&state, &writer, &batch).await?;
    Ok(Json(answer.to_value()))
}

#[derive(Deserialize)]
pub struct UsageQuery {
    user: Option<String>,
    seconds: Option<String>,
}

pub async fn read(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<UsageQuery>, QueryRejection>,
) -> AppResult<Json<Value>> {
    let Query(q) = query.map_err(|_| AppError::BadRequest("malformed query string".into()))?;
    let seconds = q.seconds.as_deref().map(usage::parse_seconds).transpose()?;
    let answer = usage::read(&state, &caller, q.user.as_deref(), seconds).await?;
    Ok(Json(answer))
}

pub async fn list_overrides(
    State(state): State<AppState>,
    caller: Caller,
) -> AppResult<Json<Value>> {
    Ok(Json(usage::list_overrides(&state, &caller).await?))
}

pub async fn put_override(
    State(state): State<AppState>,
    caller: Caller,
    Path(user): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<Json<Value>> {
    let body = super::body::json_body(&headers, body)?;
    Ok(Json(
        usage::put_override(&state, &caller, &user, &body).await?,
    ))
}

pub async fn delete_override(
    State(state): State<AppState>,
    caller: Caller,
    Path(user): Path<String>,
) -> AppResult<StatusCode> {
    usage::delete_override(&state, &caller, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}
