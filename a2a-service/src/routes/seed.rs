//! The original task routes, kept for older clients.
//!
//! `POST /a2a/tasks/send` `{"target": "<agent>", "input": <json>}` starts the
//! task in the background and answers `{"task_id", "state"}` at once; poll
//! `GET /a2a/tasks/status/{id}`. `target_url` is accepted only when it is a
//! registered agent's URL: agents are registered by name (A2A_AGENTS).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};

use crate::a2a::model::{Message, Role, parts_from_value, timestamp};
use crate::auth::Caller;
use crate::config::AgentConfig;
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::tasks::{self, Submission};

fn resolve<'a>(
    state: &'a AppState,
    body: &serde_json::Map<String, Value>,
) -> AppResult<&'a AgentConfig> {
    let text = |key: &str| -> AppResult<Option<&str>> {
        match body.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
            Some(_) => Err(AppError::BadRequest(format!(
                "{key} must be a non-empty string"
            ))),
        }
    };
    let by_url = |url: &str| {
        let url = url.trim_end_matches('/');
        state.config.agents.values().find(|a| a.url == url)
    };
    let not_registered = || {
        AppError::BadRequest(
            "target_url is not a registered agent's URL; agents are registered by name (A2A_AGENTS) and addressed with \"target\"".into(),
        )
    };
    match (text("target")?, text("target_url")?) {
        (Some(name), url) => {
            let agent = state
                .config
                .agents
                .get(name)
                .ok_or_else(|| AppError::UnknownAgent(name.to_string()))?;
            match url {
                Some(url) if url.trim_end_matches('/') != agent.url => Err(not_registered()),
                _ => Ok(agent),
            }
        }
        (None, Some(url)) => by_url(url).ok_or_else(not_registered),
        (None, None) => Err(AppError::BadRequest(
            "target (a registered agent's name) is required".into(),
        )),
    }
}

pub async fn send(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<Json<Value>> {
    let body = super::body::json_body(&headers, body)?;
    let Value::Object(body) = body else {
        return Err(AppError::BadRequest("body must be a JSON object".into()));
    };
    let agent = resolve(&state, &body)?;
    let input = body.get("input").cloned().unwrap_or(Value::Null);
    let message = Message {
        message_id: uuid::Uuid::new_v4().to_string(),
        role: Role::User,
        parts: parts_from_value(&input),
        context_id: None,
        task_id: None,
        metadata: None,
        reference_task_ids: Vec::new(),
    };
    let task = tasks::submit(
        &state,
        &caller,
        agent,
        Submission {
            message,
            input,
            wait: false,
            push: None,
        },
    )
    .await?;
    Ok(Json(
        json!({"task_id": task.id, "state": task.state.as_str()}),
    ))
}

pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> AppResult<Json<Value>> {
    let task = state
        .store
        .get_task(&caller.user, &id, None)
        .await
        .inspect_err(|_| state.metrics.store_error())?
        .ok_or(AppError::TaskNotFound)?;
    let mut answer = json!({
        "task_id": task.id,
        "agent": task.agent,
        "actor": (!task.actors.is_empty()).then(|| task.actors.header_value()),
        "delegated_to": task.delegated_to,
        "state": task.state.as_str(),
        "result": task.result,
        "created": timestamp(task.created_ms),
        "updated": timestamp(task.updated_ms),
    });
    if let (Some(error), Some(obj)) = (&task.error, answer.as_object_mut()) {
        obj.insert("error".into(), json!(error));
    }
    Ok(Json(answer))
}
