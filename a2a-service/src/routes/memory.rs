//! Memory documents over HTTP.
//!
//! `POST /mem/events` `{kind, content, task_id?}` → `{"mem_id"}` (owner and
//! session are the caller's); `GET /mem/events/{mem_id}`;
//! `GET /mem/events?limit=&session=&task_id=&kind=&tool=` (newest first,
//! limit 50 by default, at most 500, only the caller's documents; `tool`
//! selects the mirrored calls of one MCP tool and their results); each
//! event read back has `actor` when someone acted for the user.
//! `POST /mem/ingest` takes the filter's memory mirror: a JSON array (or
//! `{"events": [...]}`) of `{id (UUID), user, session, role, content, kind?,
//! task_id?, timestamp?}` plus the exchange's metadata `{model?, route?,
//! request_id?, status?, latency_ms?, tokens_in?, tokens_out?, truncated?,
//! unreadable?, request_bytes?, tool?, is_error?}` (`unreadable` and
//! `request_bytes` on the placeholder prompt of a request body the filter
//! could not read, `tool` on both events of an MCP tool call and
//! `is_error` on its result) and `actor?` (who acted for
//! the user, in X-Attach-Actor's form; a caller's own events carry its own
//! chain whatever they say, and may only repeat it); duplicates by `id` are
//! ignored. The answer is 200 `{"accepted": [ids], "inserted": n,
//! "refused": [{"index", "id", "reason"}]}` (`index` is the event's
//! position in the array, `id` its UUID or null); when every event was
//! refused, the same body comes with 400 and the first reason as
//! `message`. What may be written and read is [`crate::memory`]'s.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Caller, Ingester};
use crate::error::{AppError, AppResult};
use crate::memory::{self, event_json};
use crate::state::AppState;
use crate::store::{Cutoffs, MemoryFilter, MemorySelector};

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<Json<Value>> {
    let Value::Object(body) = super::body::json_body(&headers, body)? else {
        return Err(AppError::BadRequest("body must be a JSON object".into()));
    };
    let event = memory::create(&state, &caller, &body).await?;
    Ok(Json(json!({"mem_id": event.id})))
}

pub async fn fetch(
    State(state): State<AppState>,
    caller: Caller,
    Path(mem_id): Path<String>,
) -> AppResult<Json<Value>> {
    let event = memory::fetch(&state, &caller.user, &mem_id).await?;
    Ok(Json(event_json(&event)))
}

#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<String>,
    session: Option<String>,
    task_id: Option<String>,
    kind: Option<String>,
    tool: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> AppResult<Json<Value>> {
    let Query(q) = query.map_err(|_| AppError::BadRequest("malformed query string".into()))?;
    let filter = MemoryFilter {
        select: MemorySelector {
            session: q.session.filter(|s| !s.is_empty()),
            task_id: q.task_id.filter(|s| !s.is_empty()),
            kind: q.kind.filter(|s| !s.is_empty()),
            tool: q.tool.filter(|s| !s.is_empty()),
            ..MemorySelector::default()
        },
        limit: memory::list_limit(q.limit.as_deref())?,
        hidden: Cutoffs::default(),
    };
    let events = memory::list(&state, &caller.user, &filter).await?;
    Ok(Json(
        json!({"events": events.iter().map(event_json).collect::<Vec<_>>()}),
    ))
}

pub async fn ingest(
    State(state): State<AppState>,
    writer: Ingester,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<(StatusCode, Json<Value>)> {
    let body = super::body::json_body(&headers, body)?;
    let memory::Ingested {
        events,
        inserted,
        refused,
    } = memory::ingest(&state, &writer, memory::batch(&body)?).await?;
    let all_refused = events.is_empty() && !refused.is_empty();
    let first_reason = refused.first().map(|r| r["reason"].clone());
    let accepted: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    let mut answer = json!({"accepted": accepted, "inserted": inserted, "refused": refused});
    if all_refused {
        answer["error"] = json!("bad_request");
        answer["message"] = first_reason.unwrap_or(Value::Null);
        return Ok((StatusCode::BAD_REQUEST, Json(answer)));
    }
    Ok((StatusCode::OK, Json(answer)))
}
