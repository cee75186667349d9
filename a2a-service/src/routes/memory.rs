//! Memory documents.
//!
//! `POST /mem/events` `{kind, content, task_id?}` → `{"mem_id"}` (owner and
//! session are the caller's); `GET /mem/events/{mem_id}`;
//! `GET /mem/events?limit=&session=&task_id=&kind=` (newest first, limit
//! 50 by default, at most 500, only the caller's documents).
//! `POST /mem/ingest` takes the filter's memory mirror: a JSON array (or
//! `{"events": [...]}`) of `{id (UUID), user, session, role, content, kind?,
//! task_id?, timestamp?}`; duplicates by `id` are ignored. Rows are scoped to
//! each event's `user`; a caller may ingest events of other users only when
//! it is the gateway's own identity (`A2A_INGEST_IDENTITY`, default
//! `attach-gateway`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::a2a::model::{now_ms, timestamp};
use crate::auth::Caller;
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::store::{MemoryEvent, MemoryFilter};

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;
pub const MAX_INGEST_BATCH: usize = 1000;
const MAX_KIND_LEN: usize = 64;

fn event_json(e: &MemoryEvent) -> Value {
    json!({
        "mem_id": e.id,
        "kind": e.kind,
        "content": e.content,
        "task_id": e.task_id,
        "session": e.session,
        "role": e.role,
        "created": timestamp(e.created_ms),
    })
}

fn check_kind(kind: &str) -> AppResult<()> {
    if kind.is_empty() || kind.len() > MAX_KIND_LEN || kind.chars().any(char::is_control) {
        return Err(AppError::BadRequest(format!(
            "kind must be 1-{MAX_KIND_LEN} printable characters"
        )));
    }
    Ok(())
}

fn opt_string(obj: &Map<String, Value>, key: &str) -> AppResult<Option<String>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(AppError::BadRequest(format!("{key} must be a string"))),
    }
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<Json<Value>> {
    let Value::Object(body) = super::json_body(&headers, body, state.config.max_body)? else {
        return Err(AppError::BadRequest("body must be a JSON object".into()));
    };
    let kind = opt_string(&body, "kind")?
        .ok_or_else(|| AppError::BadRequest("kind is required".into()))?;
    check_kind(&kind)?;
    let content = body
        .get("content")
        .cloned()
        .ok_or_else(|| AppError::BadRequest("content is required".into()))?;
    let event = MemoryEvent {
        id: uuid::Uuid::new_v4().to_string(),
        owner: caller.user.clone(),
        session: caller.session.clone(),
        kind,
        role: opt_string(&body, "role")?,
        task_id: opt_string(&body, "task_id")?,
        content,
        created_ms: now_ms(),
    };
    state
        .store
        .insert_memory(&event)
        .await
        .inspect_err(|_| state.metrics.store_error())?;
    Ok(Json(json!({"mem_id": event.id})))
}

pub async fn fetch(
    State(state): State<AppState>,
    caller: Caller,
    Path(mem_id): Path<String>,
) -> AppResult<Json<Value>> {
    let event = state
        .store
        .get_memory(&caller.user, &mem_id)
        .await
        .inspect_err(|_| state.metrics.store_error())?
        .ok_or_else(|| AppError::NotFound("no such memory document".into()))?;
    Ok(Json(event_json(&event)))
}

#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<String>,
    session: Option<String>,
    task_id: Option<String>,
    kind: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> AppResult<Json<Value>> {
    let Query(q) = query.map_err(|_| AppError::BadRequest("malformed query string".into()))?;
    let limit = match q.limit.as_deref() {
        None | Some("") => DEFAULT_LIMIT,
        Some(text) => match text.parse::<i64>() {
            Ok(n) if n >= 1 => n.min(MAX_LIMIT),
            _ => {
                return Err(AppError::BadRequest(
                    "limit must be a positive integer".into(),
                ));
            }
        },
    };
    let filter = MemoryFilter {
        session: q.session.filter(|s| !s.is_empty()),
        task_id: q.task_id.filter(|s| !s.is_empty()),
        kind: q.kind.filter(|s| !s.is_empty()),
        limit,
    };
    let events = state
        .store
        .list_memory(&caller.user, &filter)
        .await
        .inspect_err(|_| state.metrics.store_error())?;
    Ok(Json(
        json!({"events": events.iter().map(event_json).collect::<Vec<_>>()}),
    ))
}

fn ingest_event(value: &Value, caller: &Caller, gateway_identity: &str) -> AppResult<MemoryEvent> {
    let Value::Object(obj) = value else {
        return Err(AppError::BadRequest(
            "each event must be a JSON object".into(),
        ));
    };
    let id = opt_string(obj, "id")?
        .ok_or_else(|| AppError::BadRequest("each event needs an id".into()))?;
    let id = uuid::Uuid::parse_str(&id)
        .map_err(|_| {
            AppError::BadRequest(format!(
                "event id {:?} is not a UUID",
                id.chars().take(64).collect::<String>()
            ))
        })?
        .to_string();
    let user = opt_string(obj, "user")?
        .filter(|u| !u.is_empty())
        .ok_or_else(|| AppError::BadRequest("each event needs a user".into()))?;
    if user != caller.user && caller.user != gateway_identity {
        return Err(AppError::Unauthorized(
            "only the gateway's own identity may ingest other users' events".into(),
        ));
    }
    let kind = opt_string(obj, "kind")?.unwrap_or_else(|| "message".into());
    check_kind(&kind)?;
    let created_ms = match opt_string(obj, "timestamp")? {
        None => now_ms(),
        Some(t) => humantime::parse_rfc3339_weak(&t)
            .ok()
            .and_then(|st| st.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64)
            .ok_or_else(|| AppError::BadRequest("timestamp must be RFC 3339".into()))?,
    };
    Ok(MemoryEvent {
        id,
        owner: user,
        session: opt_string(obj, "session")?.unwrap_or_default(),
        kind,
        role: opt_string(obj, "role")?,
        task_id: opt_string(obj, "task_id")?,
        content: obj.get("content").cloned().unwrap_or(Value::Null),
        created_ms,
    })
}

pub async fn ingest(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<Json<Value>> {
    let body = super::json_body(&headers, body, state.config.max_body)?;
    let items = match &body {
        Value::Array(items) => items,
        Value::Object(o) => match o.get("events") {
            Some(Value::Array(items)) => items,
            _ => return Err(AppError::BadRequest("expected an array of events".into())),
        },
        _ => return Err(AppError::BadRequest("expected an array of events".into())),
    };
    if items.len() > MAX_INGEST_BATCH {
        return Err(AppError::BadRequest(format!(
            "at most {MAX_INGEST_BATCH} events per batch"
        )));
    }
    let events = items
        .iter()
        .map(|v| ingest_event(v, &caller, &state.config.ingest_identity))
        .collect::<AppResult<Vec<_>>>()?;
    let inserted = state
        .store
        .ingest(&events)
        .await
        .inspect_err(|_| state.metrics.store_error())?;
    Ok(Json(
        json!({"accepted": events.len(), "inserted": inserted}),
    ))
}
