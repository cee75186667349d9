//! Memory documents: what a caller may write and read, the batches the
//! gateway's memory mirror ingests, and how events are rendered; the HTTP
//! shapes are in `routes/memory.rs`.
//!
//! Rows are scoped to each event's `user`; a caller may ingest events of
//! its own, and only the gateway's memory mirror (with its own credential,
//! [`crate::auth::Ingester`]) those of any user. Reads return the
//! metadata present next to an event's other fields.
//!
//! Events are taken or refused one by one, within the limits the filter
//! fits its events to ([`attach_contract::limits`]), and read member by
//! member under the names the filter writes ([`attach_contract::event`]): one bad event
//! must not cost a batch of other users' events. A request that is no
//! batch at all (not JSON, not an array, too many events, over the body
//! limit) is refused whole (400/413), and so is a caller's batch naming
//! another user (401).
//!
//! Memory is an audit trail of what the engine said, so what the gateway
//! writes cannot be written by callers: their events may not use the
//! mirror's and the tasks' kinds (`prompt`, `reply`, `tool_call`,
//! `tool_result`, `task_sent`, `task_result`, in `/mem/events` too), carry
//! exchange metadata (a tool call's `tool` and `is_error` among it), take a
//! UUID version 8 id (the mirror's ids: taking one first would hide the
//! exchange), or be dated more than [`CALLER_CLOCK_WINDOW_MS`] away from
//! now (only the mirror records exchanges that happened earlier, when its
//! deliveries were delayed); such an event is refused with the reason.
//!
//! With `MEM_BACKEND=weaviate` the filter writes mirrored exchanges to
//! Weaviate instead, so reads also ask Weaviate: a listing merges both,
//! and a single event not in the store is looked up there. A Weaviate
//! failure fails the read (502) rather than showing half the events.

use serde_json::{Map, Value, json};

use attach_contract::delegation::ActorChain;
use attach_contract::event::{Kind, field};
use attach_contract::limits::{
    self, MAX_KIND_CHARS, MAX_MODEL_CHARS, MAX_REQUEST_ID_CHARS, MAX_ROLE_CHARS, MAX_ROUTE_CHARS,
    MAX_SESSION_CHARS, MAX_TASK_ID_CHARS, MAX_TOOL_CHARS, MAX_UNIX_MS, MAX_UNREADABLE_CHARS,
    STATUS_CODES,
};
use attach_contract::timestamp::rfc3339_millis;

use crate::a2a::model::{now_ms, parse_timestamp, timestamp};
use crate::auth::{Caller, Ingester};
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::store::{ExchangeMeta, MemoryEvent, MemoryFilter};
use crate::tasks::{TASK_RESULT, TASK_SENT};

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;
pub const MAX_INGEST_BATCH: usize = 1000;
/// How far from now a caller may date an event of its own: clock skew,
/// and no more (see the module's documentation).
pub const CALLER_CLOCK_WINDOW_MS: i64 = 5 * 60 * 1000;

pub fn event_json(e: &MemoryEvent) -> Value {
    let mut fields = e.meta.fields();
    if !e.actor.is_empty() {
        fields.insert(field::ACTOR.into(), json!(e.actor.header_value()));
    }
    if let Some(tool) = &e.tool {
        fields.insert(field::TOOL.into(), json!(tool));
    }
    fields.extend([
        ("mem_id".to_string(), json!(e.id)),
        (field::KIND.to_string(), json!(e.kind)),
        (field::CONTENT.to_string(), e.content.clone()),
        (field::TASK_ID.to_string(), json!(e.task_id)),
        (field::SESSION.to_string(), json!(e.session)),
        (field::ROLE.to_string(), json!(e.role)),
        ("created".to_string(), json!(timestamp(e.created_ms))),
    ]);
    Value::Object(fields)
}

fn check_kind(kind: &str) -> AppResult<()> {
    if kind.is_empty() || !limits::fits(kind, MAX_KIND_CHARS) {
        return Err(AppError::BadRequest(format!(
            "kind must be 1-{MAX_KIND_CHARS} printable characters"
        )));
    }
    Ok(())
}

/// A caller's kind must not be one the gateway writes itself, in any case.
fn check_caller_kind(kind: &str) -> AppResult<()> {
    let trimmed = kind.trim();
    let reserved = Kind::ALL
        .map(Kind::name)
        .iter()
        .chain(&[TASK_SENT, TASK_RESULT])
        .any(|k| k.eq_ignore_ascii_case(trimmed));
    if reserved {
        return Err(AppError::BadRequest(format!(
            "kind {:?} is reserved to the gateway (its memory mirror and tasks)",
            trimmed.to_ascii_lowercase()
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

/// Store rows and Weaviate objects as one list, newest first (ties by id,
/// as the store orders them), at most `limit`. An id on both sides is one
/// event (the filter derives ids from the exchange), shown once, from the
/// store.
fn merge_newest_first(
    mut stored: Vec<MemoryEvent>,
    mirrored: Vec<MemoryEvent>,
    limit: i64,
) -> Vec<MemoryEvent> {
    let known: std::collections::HashSet<String> = stored.iter().map(|e| e.id.clone()).collect();
    stored.extend(mirrored.into_iter().filter(|e| !known.contains(&e.id)));
    stored.sort_by(|a, b| {
        b.created_ms
            .cmp(&a.created_ms)
            .then_with(|| b.id.cmp(&a.id))
    });
    stored.truncate(usize::try_from(limit).unwrap_or(0));
    stored
}

/// An optional string of at most `max` characters, none of them control
/// characters (they would end up in logs and in Weaviate filters).
fn opt_label(obj: &Map<String, Value>, key: &str, max: usize) -> AppResult<Option<String>> {
    let value = opt_string(obj, key)?;
    if value.as_deref().is_some_and(|v| !limits::fits(v, max)) {
        return Err(AppError::BadRequest(format!(
            "{key} must be at most {max} printable characters"
        )));
    }
    Ok(value)
}

fn opt_count(obj: &Map<String, Value>, key: &str) -> AppResult<Option<u64>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| AppError::BadRequest(format!("{key} must be a non-negative integer"))),
    }
}

fn opt_flag(obj: &Map<String, Value>, key: &str) -> AppResult<Option<bool>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(AppError::BadRequest(format!("{key} must be true or false"))),
    }
}

/// The exchange metadata the filter sends with each mirrored event.
fn exchange_meta(obj: &Map<String, Value>) -> AppResult<ExchangeMeta> {
    let bad_status = || {
        AppError::BadRequest(format!(
            "status must be an HTTP status code ({}-{})",
            STATUS_CODES.start(),
            STATUS_CODES.end()
        ))
    };
    let status = match opt_count(obj, field::STATUS).map_err(|_| bad_status())? {
        None => None,
        Some(n) => Some(
            u16::try_from(n)
                .ok()
                .filter(|code| STATUS_CODES.contains(code))
                .ok_or_else(bad_status)?,
        ),
    };
    Ok(ExchangeMeta {
        model: opt_label(obj, field::MODEL, MAX_MODEL_CHARS)?,
        route: opt_label(obj, field::ROUTE, MAX_ROUTE_CHARS)?,
        request_id: opt_label(obj, field::REQUEST_ID, MAX_REQUEST_ID_CHARS)?,
        status,
        latency_ms: opt_count(obj, field::LATENCY_MS)?,
        tokens_in: opt_count(obj, field::TOKENS_IN)?,
        tokens_out: opt_count(obj, field::TOKENS_OUT)?,
        truncated: opt_flag(obj, field::TRUNCATED)?,
        unreadable: opt_label(obj, field::UNREADABLE, MAX_UNREADABLE_CHARS)?,
        request_bytes: opt_count(obj, field::REQUEST_BYTES)?,
        is_error: opt_flag(obj, field::IS_ERROR)?,
    })
}

/// One event of an ingest batch, or why it is refused
/// ([`AppError::BadRequest`]); [`AppError::Unauthorized`] refuses the batch.
fn ingest_event(value: &Value, writer: &Ingester, now: i64) -> AppResult<MemoryEvent> {
    let Value::Object(obj) = value else {
        return Err(AppError::BadRequest(
            "each event must be a JSON object".into(),
        ));
    };
    let id = opt_string(obj, field::ID)?
        .ok_or_else(|| AppError::BadRequest("each event needs an id".into()))?;
    let id = uuid::Uuid::parse_str(&id).map_err(|_| {
        AppError::BadRequest(format!(
            "event id {:?} is not a UUID",
            id.chars().take(64).collect::<String>()
        ))
    })?;
    let user = opt_string(obj, field::USER)?
        .filter(|u| !u.is_empty())
        .ok_or_else(|| AppError::BadRequest("each event needs a user".into()))?;
    if !writer.may_write_for(&user) {
        return Err(AppError::Unauthorized(
            "only the gateway's memory mirror may ingest other users' events".into(),
        ));
    }
    if user.chars().any(char::is_control) {
        return Err(AppError::BadRequest(
            "user must be printable characters".into(),
        ));
    }
    let kind = opt_string(obj, field::KIND)?.unwrap_or_else(|| "message".into());
    check_kind(&kind)?;
    let created_ms = match opt_string(obj, field::TIMESTAMP)? {
        None => now,
        Some(t) => parse_timestamp(&t)
            .filter(|ms| limits::in_time_range(*ms))
            .ok_or_else(|| {
                AppError::BadRequest(format!(
                    "timestamp must be an RFC 3339 instant from {} to {}",
                    rfc3339_millis(0),
                    rfc3339_millis(MAX_UNIX_MS)
                ))
            })?,
    };
    let event = MemoryEvent {
        id: id.to_string(),
        owner: user,
        session: opt_label(obj, field::SESSION, MAX_SESSION_CHARS)?.unwrap_or_default(),
        kind,
        role: opt_label(obj, field::ROLE, MAX_ROLE_CHARS)?,
        task_id: opt_label(obj, field::TASK_ID, MAX_TASK_ID_CHARS)?,
        content: obj.get(field::CONTENT).cloned().unwrap_or(Value::Null),
        created_ms,
        meta: exchange_meta(obj)?,
        actor: event_actor(obj, writer)?,
        tool: opt_label(obj, field::TOOL, MAX_TOOL_CHARS)?,
    };
    if matches!(writer, Ingester::Caller(_)) {
        check_caller_event(&event, id, now)?;
    }
    Ok(event)
}

/// Who acted, as the event says: the mirror's word for it, in
/// X-Attach-Actor's form; a caller's own chain, which its event may
/// repeat but not change.
fn event_actor(obj: &Map<String, Value>, writer: &Ingester) -> AppResult<ActorChain> {
    let written = opt_string(obj, field::ACTOR)?
        .map(|text| {
            ActorChain::from_header(&text)
                .map_err(|e| AppError::BadRequest(format!("{}: {e}", field::ACTOR)))
        })
        .transpose()?;
    match writer {
        Ingester::Mirror => Ok(written.unwrap_or_default()),
        Ingester::Caller(caller) => match written {
            Some(chain) if chain != caller.actors => Err(AppError::BadRequest(format!(
                "{} is who acts for the caller, as the gateway says",
                field::ACTOR
            ))),
            _ => Ok(caller.actors.clone()),
        },
    }
}

/// What only the gateway writes (see the module's documentation).
fn check_caller_event(event: &MemoryEvent, id: uuid::Uuid, now: i64) -> AppResult<()> {
    check_caller_kind(&event.kind)?;
    let meta = event.meta.fields();
    let tool = event.tool.is_some().then_some(field::TOOL);
    if let Some(field) = meta.keys().map(String::as_str).chain(tool).next() {
        return Err(AppError::BadRequest(format!(
            "{field} is reserved to the gateway's memory mirror"
        )));
    }
    if id.get_version_num() == 8 {
        return Err(AppError::BadRequest(
            "ids of UUID version 8 are reserved to the gateway's memory mirror".into(),
        ));
    }
    if (event.created_ms - now).abs() > CALLER_CLOCK_WINDOW_MS {
        return Err(AppError::BadRequest(format!(
            "timestamp must be within {} minutes of now: only the gateway's memory mirror records past exchanges",
            CALLER_CLOCK_WINDOW_MS / 60_000
        )));
    }
    Ok(())
}

/// The identifying part of a refused event: its id, when it is a UUID.
fn refused_id(value: &Value) -> Value {
    value
        .get(field::ID)
        .and_then(Value::as_str)
        .and_then(|id| uuid::Uuid::parse_str(id).ok())
        .map_or(Value::Null, |id| json!(id.to_string()))
}

/// A caller's document from a `POST /mem/events` body: its owner and
/// session are the caller's, its kind is not one the gateway writes.
pub async fn create(
    state: &AppState,
    caller: &Caller,
    body: &Map<String, Value>,
) -> AppResult<MemoryEvent> {
    let kind =
        opt_string(body, "kind")?.ok_or_else(|| AppError::BadRequest("kind is required".into()))?;
    check_kind(&kind)?;
    check_caller_kind(&kind)?;
    let content = body
        .get("content")
        .cloned()
        .ok_or_else(|| AppError::BadRequest("content is required".into()))?;
    let event = MemoryEvent {
        id: uuid::Uuid::new_v4().to_string(),
        owner: caller.user.clone(),
        session: caller.session.clone(),
        kind,
        role: opt_string(body, "role")?,
        task_id: opt_string(body, "task_id")?,
        content,
        created_ms: now_ms(),
        meta: ExchangeMeta::default(),
        actor: caller.actors.clone(),
        tool: None,
    };
    state
        .store
        .insert_memory(&event)
        .await
        .inspect_err(|_| state.metrics.store_error())?;
    Ok(event)
}

/// The owner's event `mem_id`, from the store or else from Weaviate.
pub async fn fetch(state: &AppState, owner: &str, mem_id: &str) -> AppResult<MemoryEvent> {
    let not_found = || AppError::NotFound("no such memory document".into());
    let stored = state
        .store
        .get_memory(owner, mem_id)
        .await
        .inspect_err(|_| state.metrics.store_error())?;
    if let Some(event) = stored {
        return Ok(event);
    }
    // Weaviate ids are UUIDs in canonical form; anything else is not there.
    let (Some(weaviate), Ok(id)) = (&state.weaviate, uuid::Uuid::parse_str(mem_id)) else {
        return Err(not_found());
    };
    weaviate
        .get(owner, &id.to_string())
        .await
        .inspect_err(|_| state.metrics.memory_backend_error())?
        .ok_or_else(not_found)
}

/// A listing's `limit`: [`DEFAULT_LIMIT`] when absent, at most [`MAX_LIMIT`].
pub fn list_limit(text: Option<&str>) -> AppResult<i64> {
    match text {
        None | Some("") => Ok(DEFAULT_LIMIT),
        Some(text) => match text.parse::<i64>() {
            Ok(n) if n >= 1 => Ok(n.min(MAX_LIMIT)),
            _ => Err(AppError::BadRequest(
                "limit must be a positive integer".into(),
            )),
        },
    }
}

/// The owner's events matching `filter`, newest first, merged with
/// Weaviate's when the gateway mirrors there.
pub async fn list(
    state: &AppState,
    owner: &str,
    filter: &MemoryFilter,
) -> AppResult<Vec<MemoryEvent>> {
    let stored = state.store.list_memory(owner, filter);
    let events = match &state.weaviate {
        None => stored.await.inspect_err(|_| state.metrics.store_error())?,
        Some(weaviate) => {
            let (stored, mirrored) = tokio::join!(stored, weaviate.list(owner, filter));
            let mirrored = mirrored.inspect_err(|_| state.metrics.memory_backend_error());
            let stored = stored.inspect_err(|_| state.metrics.store_error())?;
            merge_newest_first(stored, mirrored?, filter.limit)
        }
    };
    Ok(events)
}

/// The events of an ingest body: a JSON array, or `{"events": [...]}`, of
/// at most [`MAX_INGEST_BATCH`].
pub fn batch(body: &Value) -> AppResult<&[Value]> {
    let items = match body {
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
    Ok(items)
}

/// What became of an ingest batch.
pub struct Ingested {
    /// The events taken, in the batch's order.
    pub events: Vec<MemoryEvent>,
    /// How many of them were new.
    pub inserted: u64,
    /// `{"index", "id", "reason"}` for each event refused.
    pub refused: Vec<Value>,
}

/// Takes or refuses each event of `items` on its own, and stores those
/// taken in one transaction; only a caller naming another user refuses
/// the whole batch.
pub async fn ingest(state: &AppState, writer: &Ingester, items: &[Value]) -> AppResult<Ingested> {
    let now = now_ms();
    let mut events = Vec::with_capacity(items.len());
    let mut refused = Vec::new();
    for (index, item) in items.iter().enumerate() {
        match ingest_event(item, writer, now) {
            Ok(event) => events.push(event),
            Err(AppError::BadRequest(reason)) => refused.push(json!({
                "index": index, "id": refused_id(item), "reason": reason,
            })),
            Err(whole) => return Err(whole),
        }
    }
    let inserted = state
        .store
        .ingest(&events)
        .await
        .inspect_err(|_| state.metrics.store_error())?;
    Ok(Ingested {
        events,
        inserted,
        refused,
    })
}
