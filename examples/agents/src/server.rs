//! The agent's HTTP face: its card, a health check, and A2A 1.0 JSON-RPC at
//! `/` (`SendMessage`, `GetTask`).
//!
//! A message's work runs in a task of its own, so that a caller that hangs
//! up does not cut it short: the task still ends, and `GetTask` shows how.
//! A blocking `SendMessage` (the default) answers once the task has ended;
//! with `returnImmediately: true` it answers at once with the working task.
//!
//! An agent with a DID answers JSON-RPC only to requests with the gateway's
//! identity token for that DID ([`crate::gateway_keys`]): without one, or
//! with one that does not verify, 401 (RFC 6750 section 3), and 503 while
//! the gateway's keys cannot be fetched. Its tasks belong to the token's
//! `sub`. An agent without a DID takes the user from `X-Attach-User`.

use std::sync::Arc;

use attach_contract::headers::USER_HEADER;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::a2a::{self, RpcError};
use crate::config::{Role, Settings};
use crate::gateway::{self, Actor, Caller, Gateway};
use crate::gateway_keys::{IdentityCheck, Refused};
use crate::identity;
use crate::tasks::{Job, State as TaskState, Task, TaskStore};
use crate::{coder, planner};

pub struct Agent {
    role: Role,
    /// Where the agent is reached, for its card.
    url: String,
    gateway: Gateway,
    /// Set for an agent with a DID: who may send it tasks.
    identity_check: Option<IdentityCheck>,
    tasks: TaskStore,
}

impl Agent {
    /// An agent reached at `url` (the address it listens on); with
    /// `AGENT_IDENTITY`, one that acts by delegation.
    pub fn new(settings: &Settings, url: String) -> Result<Self, String> {
        let client = gateway::client()?;
        let (actor, identity_check) = match &settings.identity {
            None => (None, None),
            Some(path) => {
                let identity = identity::load(path).map_err(|e| format!("AGENT_IDENTITY: {e}"))?;
                let check = IdentityCheck::new(
                    client.clone(),
                    &settings.gateway_url,
                    &settings.issuer,
                    identity.did(),
                );
                let actor = Actor {
                    identity,
                    audience: settings.actor_audience.clone(),
                };
                (Some(actor), Some(check))
            }
        };
        Ok(Agent {
            role: settings.role,
            url,
            gateway: Gateway::new(
                client,
                &settings.gateway_url,
                &settings.model,
                settings.timeout,
                actor,
            ),
            identity_check,
            tasks: TaskStore::new(crate::tasks::TASK_CAP),
        })
    }

    /// The A2A 1.0 agent card.
    fn card(&self) -> Value {
        let (name, description, skill) = match self.role {
            Role::Planner => (
                "Attach planner",
                "Turns a request into a short numbered plan, stores the plan in the caller's \
                 memory, and has the coder agent write the code; everything as the caller, \
                 through Attach Gateway.",
                json!({
                    "id": "plan",
                    "name": "Plan",
                    "description": "A numbered plan of at most five steps, stored as a memory \
                                    document (kind plan), then handed to the coder.",
                    "tags": ["planning"],
                    "examples": ["A command-line tool that counts the words in a file"],
                }),
            ),
            Role::Coder => (
                "Attach coder",
                "Writes the code for a plan stored in the caller's memory, named by a data \
                 part {\"mem_id\": \"<id>\"}; everything as the caller, through Attach Gateway.",
                json!({
                    "id": "code",
                    "name": "Code",
                    "description": "One fenced code block that follows the plan.",
                    "tags": ["coding"],
                    "inputModes": ["application/json", "text/plain"],
                }),
            ),
        };
        json!({
            "name": name,
            "description": description,
            "version": env!("CARGO_PKG_VERSION"),
            "supportedInterfaces": [
                {"url": self.url, "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
            ],
            "capabilities": {"streaming": false, "pushNotifications": false},
            "defaultInputModes": ["text/plain"],
            "defaultOutputModes": ["text/plain"],
            "skills": [skill],
        })
    }
}

pub fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route("/.well-known/agent-card.json", get(card))
        .route("/healthz", get(healthz))
        .route("/", post(rpc))
        .with_state(agent)
}

async fn card(State(agent): State<Arc<Agent>>) -> Json<Value> {
    Json(agent.card())
}

async fn healthz(State(agent): State<Arc<Agent>>) -> Json<Value> {
    Json(json!({"status": "ok", "role": agent.role.name()}))
}

async fn rpc(State(agent): State<Arc<Agent>>, headers: HeaderMap, body: Bytes) -> Response {
    let owner = match &agent.identity_check {
        None => owner(&headers),
        Some(check) => match check.check(&headers).await {
            Ok(claims) => Some(claims.sub),
            Err(refused) => return refusal(refused),
        },
    };
    let request = match a2a::parse_request(&body) {
        Ok(r) => r,
        Err((error, id)) => return Json(a2a::failure(&id, &error)).into_response(),
    };
    let outcome = match a2a::check_version(headers.get(a2a::VERSION_HEADER)) {
        Err(e) => Err(e),
        Ok(()) => match request.method.as_str() {
            a2a::SEND => send(&agent, &headers, owner, &request.params).await,
            a2a::GET => get_task(&agent, owner, &request.params),
            other => Err(RpcError::method_not_found(other)),
        },
    };
    Json(match outcome {
        Ok(result) => a2a::success(&request.id, result),
        Err(error) => a2a::failure(&request.id, &error),
    })
    .into_response()
}

/// A sender that is not accepted: 401 with an RFC 6750 challenge, or 503
/// when nothing can be checked yet; the body says why in one sentence.
fn refusal(refused: Refused) -> Response {
    match refused {
        Refused::Token(why) => (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                r#"Bearer realm="attach-agent", error="invalid_token""#,
            )],
            Json(json!({"error": "invalid_token", "message": why})),
        )
            .into_response(),
        Refused::NoKeys(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            Json(json!({"error": "temporarily_unavailable", "message": why})),
        )
            .into_response(),
    }
}

/// The user the gateway named in `X-Attach-User`: tasks belong to them
/// (for an agent without a DID).
fn owner(headers: &HeaderMap) -> Option<String> {
    headers
        .get(USER_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn send(
    agent: &Arc<Agent>,
    headers: &HeaderMap,
    owner: Option<String>,
    params: &serde_json::Map<String, Value>,
) -> Result<Value, RpcError> {
    let p = a2a::parse_send(params)?;
    if let Some(id) = &p.message.task_id {
        // These agents never leave a task waiting for input, so no task
        // takes a second message.
        return Err(match agent.tasks.get(id, owner.as_deref()) {
            None => RpcError::task_not_found(),
            Some(_) => RpcError::unsupported_operation(format!(
                "task {id} takes no further messages; send a new message without taskId"
            )),
        });
    }
    let (texts, data) = (p.message.texts(), p.message.data());
    let task = Task::start(p.message, owner);
    let job = Job {
        texts,
        data,
        caller: match agent.identity_check {
            Some(_) => Caller::delegated(headers),
            None => Caller::forwarded(headers),
        },
        context_id: task.context_id.clone(),
    };
    agent.tasks.put(task.clone());

    let worker = Arc::clone(agent);
    let working = task.clone();
    let done = tokio::spawn(async move {
        let outcome = match worker.role {
            Role::Planner => planner::run(&worker.gateway, job).await,
            Role::Coder => coder::run(&worker.gateway, job).await,
        };
        if outcome.state != TaskState::Completed {
            eprintln!(
                "attach-agent: task {} ended {}: {}",
                working.id,
                outcome.state.wire(),
                outcome.text
            );
        }
        let task = working.finish(outcome);
        worker.tasks.put(task.clone());
        task
    });
    let shown = if p.return_immediately {
        task
    } else {
        done.await
            .map_err(|_| RpcError::internal("the task's work stopped unexpectedly"))?
    };
    Ok(json!({"task": shown.to_json(p.history_length)}))
}

fn get_task(
    agent: &Agent,
    owner: Option<String>,
    params: &serde_json::Map<String, Value>,
) -> Result<Value, RpcError> {
    let (id, history_length) = a2a::parse_get(params)?;
    agent
        .tasks
        .get(&id, owner.as_deref())
        .map(|t| t.to_json(history_length))
        .ok_or_else(RpcError::task_not_found)
}
