use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::sse;
use crate::a2a::capabilities;
use crate::a2a::card::{self, gateway_card};
use crate::a2a::card_v0_3;
use crate::a2a::jsonrpc::{self, Request};
use crate::a2a::model::{Message, now_ms};
use crate::a2a::{ProtocolVersion, v0_3, v1};
use crate::auth::Caller;
use crate::config::AgentConfig;
use crate::error::{AppError, AppResult};
use crate::push::{self, NewConfig};
use crate::state::AppState;
use crate::store::{CancelOutcome, TaskFilter};
use crate::task_streams::{self, TaskStream};
use crate::tasks::{self, Sent, Submission};

pub(super) fn agent<'a>(state: &'a AppState, name: &str) -> AppResult<&'a AgentConfig> {
    state
        .config
        .agents
        .get(name)
        .ok_or_else(|| AppError::UnknownAgent(name.to_string()))
}

/// Public: the agent's A2A 1.0 card as reached through the gateway,
/// signed by it (section 8.4).
pub async fn card(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    match card_v1(&state, &name).await {
        Ok(card) => cacheable(&headers, &state.card_signer.sign(card)),
        Err(e) => e.into_response(),
    }
}

/// Public: the same card in its A2A 0.3 form, at the 0.3 card path,
/// signed as that form (0.3's `AgentCard.signatures`).
pub async fn legacy_card(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    match card_v1(&state, &name).await {
        Ok(card) => {
            let legacy = card_v0_3::card_v0_3(&card);
            cacheable(&headers, &state.card_signer.sign(legacy))
        }
        Err(e) => e.into_response(),
    }
}

async fn card_v1(state: &AppState, name: &str) -> AppResult<Value> {
    Ok(public_card(state, agent(state, name)?).await)
}

async fn public_card(state: &AppState, agent: &AgentConfig) -> Value {
    let downstream = state.cards.downstream(&state.card_client, agent).await;
    gateway_card(
        agent,
        downstream,
        &state.config.public_url,
        state.config.oidc_issuer.as_deref(),
        state.push.enabled(),
    )
}

/// The extended card `caller` is shown (A2A 1.0 section 3.1.11), in its
/// 1.0 form: the public card with the operator's file laid over it.
async fn extended_card(state: &AppState, caller: &Caller, agent: &AgentConfig) -> AppResult<Value> {
    let extended = agent
        .extended_card
        .as_deref()
        .ok_or_else(capabilities::no_extended_card)?;
    Ok(extended.for_caller(public_card(state, agent).await, &caller.user))
}

/// A card with its `ETag` and `Cache-Control` (A2A 1.0 section 8.6.1), or
/// 304 when the client's `If-None-Match` already names this content.
fn cacheable(headers: &HeaderMap, card: &Value) -> Response {
    let body = card.to_string();
    let tag = card::etag(body.as_bytes());
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| card::none_match_hits(v, &tag));
    let cache = [
        (header::ETAG, tag),
        (header::CACHE_CONTROL, card::CACHE_CONTROL.to_string()),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    let content_type = (header::CONTENT_TYPE, "application/json".to_string());
    (cache, [content_type], body).into_response()
}

/// `POST /a2a/agents/{name}`: JSON-RPC, 1.0 with `A2A-Version: 1.0`, else 0.3.
pub async fn rpc(
    State(state): State<AppState>,
    Path(name): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let agent = match agent(&state, &name) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let bytes = match super::body::body_bytes(body) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let request = match jsonrpc::parse_request(&bytes) {
        Ok(r) => r,
        Err((error, id)) => return Json(jsonrpc::failure(&id, &error)).into_response(),
    };
    let version_header = headers
        .get("a2a-version")
        .map(|v| v.to_str().unwrap_or("?"));
    let outcome = match ProtocolVersion::from_header(version_header) {
        Err(reason) => Err(AppError::VersionNotSupported(reason)),
        Ok(version) => {
            let extended = agent.extended_card.is_some();
            match capabilities::refusal(version, &request.method, state.push.enabled(), extended) {
                Some(refused) => Err(refused),
                None if is_streaming(version, &request.method) => {
                    match open_stream(&state, &caller, agent, version, &request).await {
                        Ok(events) => return sse::answer(events, jsonrpc::success, request.id),
                        Err(e) => Err(e),
                    }
                }
                None => match version {
                    ProtocolVersion::V0_3 => dispatch_v0_3(&state, &caller, agent, &request).await,
                    ProtocolVersion::V1_0 => {
                        dispatch_v1(&state, &caller, agent, &request.method, &request.params).await
                    }
                },
            }
        }
    };
    let body = match outcome {
        Ok(result) => jsonrpc::success(&request.id, result),
        Err(error) => {
            if let AppError::Store(detail) = &error {
                eprintln!("attach-a2a: store error: {detail}");
            }
            jsonrpc::failure(&request.id, &error)
        }
    };
    Json(body).into_response()
}

/// A request no route takes: 404 with a JSON body, never an empty one; a
/// JSON-RPC request (an agent's endpoint misspelt) gets a JSON-RPC error
/// object with its id, so JSON-RPC clients can read the answer.
pub async fn unmatched(method: Method, body: Result<Bytes, BytesRejection>) -> Response {
    const NO_ROUTE: &str =
        "nothing is served at this path; A2A agents answer at /a2a/agents/{name}";
    let request = match body {
        Ok(bytes) if method == Method::POST => jsonrpc::parse_request(&bytes).ok(),
        _ => None,
    };
    match request {
        Some(request) => (
            StatusCode::NOT_FOUND,
            Json(jsonrpc::failure(
                &request.id,
                &AppError::InvalidRequest(NO_ROUTE.into()),
            )),
        )
            .into_response(),
        None => AppError::NotFound(NO_ROUTE.into()).into_response(),
    }
}

/// A send in either version: the message's content is the task's input;
/// a push config in its configuration is registered for the task.
async fn submission(
    state: &AppState,
    message: Message,
    wait: bool,
    (version, params): (ProtocolVersion, &serde_json::Map<String, Value>),
) -> AppResult<Submission> {
    let push: Option<NewConfig> = push::rpc::from_send(state, version, params).await?;
    let input = message.plain_value();
    Ok(Submission {
        message,
        input,
        wait,
        push: push.map(|config| (config, version)),
    })
}

async fn send(
    state: &AppState,
    caller: &Caller,
    agent: &AgentConfig,
    message: Message,
    wait: bool,
    call: (ProtocolVersion, &serde_json::Map<String, Value>),
) -> AppResult<Sent> {
    let submission = submission(state, message, wait, call).await?;
    tasks::send(state, caller, agent, submission).await
}

/// Whether `method` is one of `version`'s streaming methods, answered with
/// an event stream rather than one result.
fn is_streaming(version: ProtocolVersion, method: &str) -> bool {
    match version {
        ProtocolVersion::V1_0 => v1::STREAMING.contains(&method),
        ProtocolVersion::V0_3 => v0_3::STREAMING.contains(&method),
    }
}

/// A streaming method of either version: a send that streams its task, or
/// a subscription to a task of the caller's.
async fn open_stream(
    state: &AppState,
    caller: &Caller,
    agent: &AgentConfig,
    version: ProtocolVersion,
    request: &Request,
) -> AppResult<TaskStream> {
    let params = &request.params;
    let (send_method, subscribe_method) = match version {
        ProtocolVersion::V1_0 => (v1::STREAMING[0], v1::STREAMING[1]),
        ProtocolVersion::V0_3 => (v0_3::STREAMING[0], v0_3::STREAMING[1]),
    };
    let method = request.method.as_str();
    if method == send_method {
        let message = match version {
            ProtocolVersion::V1_0 => v1::parse_send(params)?.message,
            ProtocolVersion::V0_3 => v0_3::parse_send(params)?.message,
        };
        let submission = submission(state, message, false, (version, params)).await?;
        return task_streams::send(state, caller, agent, submission, version).await;
    }
    if method == subscribe_method {
        let id = jsonrpc::required_str(params, "id")?;
        return task_streams::subscribe(state, caller, agent, id, version).await;
    }
    Err(method_not_found(method, "the streaming methods"))
}

/// An A2A 1.0 streaming operation named by its JSON-RPC method, for the
/// HTTP+JSON binding, with the JSON-RPC binding's capability checks.
pub(super) async fn operate_stream_v1(
    state: &AppState,
    caller: &Caller,
    agent: &AgentConfig,
    method: &str,
    params: Map<String, Value>,
) -> AppResult<TaskStream> {
    let extended = agent.extended_card.is_some();
    if let Some(refused) = capabilities::refusal(
        ProtocolVersion::V1_0,
        method,
        state.push.enabled(),
        extended,
    ) {
        return Err(refused);
    }
    let request = Request {
        id: Value::Null,
        method: method.to_string(),
        params,
    };
    open_stream(state, caller, agent, ProtocolVersion::V1_0, &request).await
}

async fn dispatch_v0_3(
    state: &AppState,
    caller: &Caller,
    agent: &AgentConfig,
    r: &Request,
) -> AppResult<Value> {
    match r.method.as_str() {
        v0_3::SEND => {
            let p = v0_3::parse_send(&r.params)?;
            Ok(
                match send(
                    state,
                    caller,
                    agent,
                    p.message,
                    p.blocking,
                    (ProtocolVersion::V0_3, &r.params),
                )
                .await?
                {
                    Sent::Task(task) => v0_3::task_json(&task, p.history_length),
                    Sent::Message(message) => v0_3::message_json(&message),
                },
            )
        }
        v0_3::GET => {
            let (id, history_length) = v0_3::parse_query(&r.params)?;
            let task = find(state, caller, agent, &id).await?;
            Ok(v0_3::task_json(&task, history_length))
        }
        v0_3::CANCEL => {
            let (id, _) = v0_3::parse_query(&r.params)?;
            let task = cancel(state, caller, agent, &id).await?;
            Ok(v0_3::task_json(&task, None))
        }
        m if v0_3::PUSH_CONFIG.contains(&m) => {
            push::rpc::dispatch_v0_3(state, caller, agent, r).await
        }
        v0_3::EXTENDED_CARD => {
            let legacy = card_v0_3::card_v0_3(&extended_card(state, caller, agent).await?);
            Ok(state.card_signer.sign(legacy))
        }
        other => Err(method_not_found(
            other,
            "message/send, tasks/get, tasks/cancel",
        )),
    }
}

/// An A2A 1.0 operation named by its JSON-RPC method, whichever binding
/// carried it: the HTTP+JSON routes map their paths to these names, so both
/// bindings share the capability checks and the operations.
pub(super) async fn operate_v1(
    state: &AppState,
    caller: &Caller,
    agent: &AgentConfig,
    method: &str,
    params: &Map<String, Value>,
) -> AppResult<Value> {
    let extended = agent.extended_card.is_some();
    match capabilities::refusal(
        ProtocolVersion::V1_0,
        method,
        state.push.enabled(),
        extended,
    ) {
        Some(refused) => Err(refused),
        None => dispatch_v1(state, caller, agent, method, params).await,
    }
}

async fn dispatch_v1(
    state: &AppState,
    caller: &Caller,
    agent: &AgentConfig,
    method: &str,
    params: &Map<String, Value>,
) -> AppResult<Value> {
    match method {
        v1::SEND => {
            let p = v1::parse_send(params)?;
            Ok(
                match send(
                    state,
                    caller,
                    agent,
                    p.message,
                    !p.return_immediately,
                    (ProtocolVersion::V1_0, params),
                )
                .await?
                {
                    Sent::Task(task) => {
                        json!({"task": v1::task_json(&task, p.history_length, true)})
                    }
                    Sent::Message(message) => json!({"message": v1::message_json(&message)}),
                },
            )
        }
        v1::GET => {
            let (id, history_length) = v1::parse_get(params)?;
            let task = find(state, caller, agent, &id).await?;
            Ok(v1::task_json(&task, history_length, true))
        }
        v1::LIST => {
            let p = v1::parse_list(params)?;
            let filter = TaskFilter {
                context_id: p.context_id.clone(),
                state: p.state,
                updated_after_ms: p.updated_after_ms,
                limit: p.page_size as i64,
                // A token past any count the store holds finds nothing.
                offset: i64::try_from(p.offset).unwrap_or(i64::MAX),
            };
            let (found, total) = state
                .store
                .list_tasks(&caller.user, &agent.name, &filter)
                .await
                .map_err(|e| store_err(state, e))?;
            let next = p.offset.saturating_add(found.len());
            let next_page_token = if i64::try_from(next).is_ok_and(|n| n < total) {
                next.to_string()
            } else {
                String::new()
            };
            let tasks: Vec<Value> = found
                .iter()
                .map(|t| v1::task_json(t, p.history_length, p.include_artifacts))
                .collect();
            Ok(json!({
                "tasks": tasks,
                "nextPageToken": next_page_token,
                "pageSize": p.page_size,
                "totalSize": total,
            }))
        }
        v1::CANCEL => {
            let id = jsonrpc::required_str(params, "id")?.to_string();
            let task = cancel(state, caller, agent, &id).await?;
            Ok(v1::task_json(&task, None, true))
        }
        m if v1::PUSH_CONFIG.contains(&m) => {
            push::rpc::dispatch_v1(state, caller, agent, m, params).await
        }
        v1::EXTENDED_CARD => Ok(state
            .card_signer
            .sign(extended_card(state, caller, agent).await?)),
        other => Err(method_not_found(
            other,
            "SendMessage, GetTask, ListTasks, CancelTask",
        )),
    }
}

fn method_not_found(method: &str, known: &str) -> AppError {
    let shown: String = method.chars().take(64).collect();
    AppError::MethodNotFound(format!("method {shown:?} is not supported here ({known})"))
}

fn store_err(state: &AppState, e: sqlx::Error) -> AppError {
    state.metrics.store_error();
    AppError::from(e)
}

async fn find(
    state: &AppState,
    caller: &Caller,
    agent: &AgentConfig,
    id: &str,
) -> AppResult<crate::a2a::model::Task> {
    state
        .store
        .get_task(&caller.user, id, Some(&agent.name))
        .await
        .map_err(|e| store_err(state, e))?
        .ok_or(AppError::TaskNotFound)
}

async fn cancel(
    state: &AppState,
    caller: &Caller,
    agent: &AgentConfig,
    id: &str,
) -> AppResult<crate::a2a::model::Task> {
    match state
        .store
        .cancel(&caller.user, id, Some(&agent.name), now_ms())
        .await
        .map_err(|e| store_err(state, e))?
    {
        CancelOutcome::Canceled(task) => {
            state
                .metrics
                .transition(crate::a2a::model::TaskState::Canceled);
            state.task_changed(&task);
            Ok(*task)
        }
        CancelOutcome::NotCancelable(s) => Err(AppError::TaskNotCancelable(format!(
            "Task cannot be canceled: it is already {}",
            s.as_str()
        ))),
        CancelOutcome::NotFound => Err(AppError::TaskNotFound),
    }
}
