//! The A2A 1.0 HTTP+JSON binding under each agent (specification section
//! 11.3): every route turns its path, query and body into the request
//! message of one operation and runs it exactly as the JSON-RPC binding
//! does ([`super::a2a::operate_v1`]): same caller scoping, same store, same
//! capability refusals; only the error shape differs (section 11.6).

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value};

use super::a2a::{agent, operate_stream_v1, operate_v1};
use super::body::{body_bytes, json_body};
use super::sse;
use crate::a2a::extended_card;
use crate::a2a::rest::{self, TaskVerb};
use crate::a2a::{ProtocolVersion, v1};
use crate::auth::Caller;
use crate::error::{AppError, AppResult};
use crate::state::AppState;

/// The media type section 11.1 gives the binding's bodies.
const CONTENT_TYPE: &str = "application/a2a+json";

type Pairs = Result<Query<Vec<(String, String)>>, QueryRejection>;
type Body = Result<Bytes, BytesRejection>;

pub fn routes() -> Router<AppState> {
    const BASE: &str = "/a2a/agents/{name}";
    let route = |path: &str| format!("{BASE}{path}");
    Router::new()
        .route(&route("/message:send"), post(send_message))
        .route(&route("/message:stream"), post(stream_message))
        .route(&route("/tasks"), get(list_tasks))
        .route(&route("/tasks/{task}"), get(get_task).post(task_method))
        .route(
            &route("/tasks/{task}/pushNotificationConfigs"),
            post(create_push_config).get(list_push_configs),
        )
        .route(
            &route("/tasks/{task}/pushNotificationConfigs/{config}"),
            get(get_push_config).delete(delete_push_config),
        )
        .route(&route("/extendedAgentCard"), get(extended_card))
}

/// What every route extracts besides its own parts.
struct Call {
    state: AppState,
    headers: HeaderMap,
}

impl Call {
    /// Runs `method` on `name`'s agent with the request message `params`
    /// builds, and answers the result or the binding's error.
    async fn run(
        self,
        caller: Result<Caller, AppError>,
        name: &str,
        method: &str,
        params: impl FnOnce(&Call) -> AppResult<Map<String, Value>>,
    ) -> Response {
        let outcome = async {
            let caller = caller?;
            let agent = agent(&self.state, name)?;
            version(&self.headers)?;
            let params = params(&self)?;
            operate_v1(&self.state, &caller, agent, method, &params).await
        }
        .await;
        match outcome {
            Ok(result) => reply(StatusCode::OK, &result),
            Err(error) => failure(&error),
        }
    }

    /// Runs the streaming `method` as [`Call::run`] runs the others, and
    /// answers its events as they come, each a bare `StreamResponse`
    /// (section 11.7); a refusal before the stream opens is the binding's
    /// error.
    async fn stream(
        self,
        caller: Result<Caller, AppError>,
        name: &str,
        method: &str,
        params: impl FnOnce(&Call) -> AppResult<Map<String, Value>>,
    ) -> Response {
        let outcome = async {
            let caller = caller?;
            let agent = agent(&self.state, name)?;
            version(&self.headers)?;
            let params = params(&self)?;
            operate_stream_v1(&self.state, &caller, agent, method, params).await
        }
        .await;
        match outcome {
            Ok(events) => sse::answer(events, bare, Value::Null),
            Err(error) => failure(&error),
        }
    }

    /// The body as the operation's request message: a JSON object, or
    /// nothing (the custom methods' bodies are optional).
    fn body(&self, body: Body) -> AppResult<Map<String, Value>> {
        let bytes = body_bytes(body)?;
        if bytes.is_empty() {
            return Ok(Map::new());
        }
        match json_body(&self.headers, Ok(bytes))? {
            Value::Object(params) => Ok(params),
            _ => Err(AppError::InvalidParams(
                "the request body must be a JSON object".into(),
            )),
        }
    }
}

/// The binding is served for A2A 1.0 only (0.3's HTTP+JSON paths were
/// other ones), so a request without `A2A-Version` is read as 1.0 and one
/// naming any other version is refused.
fn version(headers: &HeaderMap) -> AppResult<()> {
    let Some(value) = headers.get("a2a-version") else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or("?").trim();
    if text.is_empty() || ProtocolVersion::parse(text) == Some(ProtocolVersion::V1_0) {
        return Ok(());
    }
    let shown: String = text.chars().take(32).collect();
    Err(AppError::VersionNotSupported(format!(
        "A2A version {shown:?} is not served over HTTP+JSON; use 1.0, or JSON-RPC for 0.3"
    )))
}

/// An operation's error in the binding's shape; a store failure's detail
/// goes to the log, never to the caller.
fn failure(error: &AppError) -> Response {
    if let AppError::Store(detail) = error {
        eprintln!("attach-a2a: store error: {detail}");
    }
    let (status, body) = rest::error(error);
    reply(status, &body)
}

/// A stream event as the binding sends it: as it is.
fn bare(_: &Value, event: Value) -> Value {
    event
}

fn reply(status: StatusCode, body: &Value) -> Response {
    let content_type = (header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    (status, [content_type], body.to_string()).into_response()
}

fn query(pairs: Pairs) -> AppResult<Map<String, Value>> {
    let Query(pairs) =
        pairs.map_err(|_| AppError::InvalidParams("the query string is malformed".into()))?;
    rest::query_params(pairs)
}

fn path<T>(path: Result<Path<T>, PathRejection>) -> AppResult<T> {
    path.map(|Path(p)| p)
        .map_err(|_| AppError::InvalidParams("a path segment is not valid UTF-8".into()))
}

/// Answers a path that did not decode, in the binding's shape.
fn refused(error: AppError) -> Response {
    let (status, body) = rest::error(&error);
    reply(status, &body)
}

/// `POST …/message:send`: SendMessage.
async fn send_message(
    State(state): State<AppState>,
    segments: Result<Path<String>, PathRejection>,
    caller: Result<Caller, AppError>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let name = match path(segments) {
        Ok(name) => name,
        Err(e) => return refused(e),
    };
    let call = Call { state, headers };
    call.run(caller, &name, v1::SEND, |c| c.body(body)).await
}

/// `POST …/message:stream`: SendStreamingMessage.
async fn stream_message(
    State(state): State<AppState>,
    segments: Result<Path<String>, PathRejection>,
    caller: Result<Caller, AppError>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let [send_streaming, _] = v1::STREAMING;
    let name = match path(segments) {
        Ok(name) => name,
        Err(e) => return refused(e),
    };
    let call = Call { state, headers };
    call.stream(caller, &name, send_streaming, |c| c.body(body))
        .await
}

/// `GET …/tasks`: ListTasks, its request message in the query.
async fn list_tasks(
    State(state): State<AppState>,
    segments: Result<Path<String>, PathRejection>,
    caller: Result<Caller, AppError>,
    headers: HeaderMap,
    pairs: Pairs,
) -> Response {
    let name = match path(segments) {
        Ok(name) => name,
        Err(e) => return refused(e),
    };
    let call = Call { state, headers };
    call.run(caller, &name, v1::LIST, |_| query(pairs)).await
}

/// `GET …/tasks/{id}`: GetTask (`historyLength` in the query); and
/// `GET …/tasks/{id}:subscribe`, the form of SubscribeToTask that
/// gRPC transcoding gives, as the `POST` form.
async fn get_task(
    State(state): State<AppState>,
    segments: Result<Path<(String, String)>, PathRejection>,
    caller: Result<Caller, AppError>,
    headers: HeaderMap,
    pairs: Pairs,
) -> Response {
    let (name, task) = match path(segments) {
        Ok(p) => p,
        Err(e) => return refused(e),
    };
    let call = Call { state, headers };
    if task.contains(':') {
        let [_, subscribe] = v1::STREAMING;
        return match rest::task_verb(&task) {
            Ok((id, TaskVerb::Subscribe)) => {
                call.stream(caller, &name, subscribe, |_| {
                    rest::with_path_field(Map::new(), "id", id)
                })
                .await
            }
            Ok((_, TaskVerb::Cancel)) => refused(AppError::MethodNotFound(
                "a task is canceled with POST".into(),
            )),
            Err(e) => refused(e),
        };
    }
    call.run(caller, &name, v1::GET, |_| {
        rest::with_path_field(query(pairs)?, "id", rest::task_id(&task)?)
    })
    .await
}

/// `POST …/tasks/{id}:cancel` (CancelTask) and `…:subscribe`
/// (SubscribeToTask, also taken as `GET`).
async fn task_method(
    State(state): State<AppState>,
    segments: Result<Path<(String, String)>, PathRejection>,
    caller: Result<Caller, AppError>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (name, segment) = match path(segments) {
        Ok(p) => p,
        Err(e) => return refused(e),
    };
    let (id, verb) = match rest::task_verb(&segment) {
        Ok(parsed) => parsed,
        Err(e) => return refused(e),
    };
    let [_, subscribe] = v1::STREAMING;
    let call = Call { state, headers };
    let params = |c: &Call| rest::with_path_field(c.body(body)?, "id", id);
    match verb {
        TaskVerb::Cancel => call.run(caller, &name, v1::CANCEL, params).await,
        TaskVerb::Subscribe => call.stream(caller, &name, subscribe, params).await,
    }
}

/// `POST …/tasks/{id}/pushNotificationConfigs`:
/// CreateTaskPushNotificationConfig.
async fn create_push_config(
    State(state): State<AppState>,
    segments: Result<Path<(String, String)>, PathRejection>,
    caller: Result<Caller, AppError>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (name, task) = match path(segments) {
        Ok(p) => p,
        Err(e) => return refused(e),
    };
    let [create, ..] = v1::PUSH_CONFIG;
    let call = Call { state, headers };
    call.run(caller, &name, create, |c| {
        rest::with_path_field(c.body(body)?, "taskId", rest::task_id(&task)?)
    })
    .await
}

/// `GET …/tasks/{id}/pushNotificationConfigs`:
/// ListTaskPushNotificationConfigs.
async fn list_push_configs(
    State(state): State<AppState>,
    segments: Result<Path<(String, String)>, PathRejection>,
    caller: Result<Caller, AppError>,
    headers: HeaderMap,
    pairs: Pairs,
) -> Response {
    let (name, task) = match path(segments) {
        Ok(p) => p,
        Err(e) => return refused(e),
    };
    let [_, _, list, _] = v1::PUSH_CONFIG;
    let call = Call { state, headers };
    call.run(caller, &name, list, |_| {
        rest::with_path_field(query(pairs)?, "taskId", rest::task_id(&task)?)
    })
    .await
}

/// `GET …/tasks/{id}/pushNotificationConfigs/{configId}`:
/// GetTaskPushNotificationConfig.
async fn get_push_config(
    State(state): State<AppState>,
    segments: Result<Path<(String, String, String)>, PathRejection>,
    caller: Result<Caller, AppError>,
    headers: HeaderMap,
) -> Response {
    let [_, get, ..] = v1::PUSH_CONFIG;
    push_config(state, segments, caller, headers, get).await
}

/// `DELETE …/tasks/{id}/pushNotificationConfigs/{configId}`:
/// DeleteTaskPushNotificationConfig.
async fn delete_push_config(
    State(state): State<AppState>,
    segments: Result<Path<(String, String, String)>, PathRejection>,
    caller: Result<Caller, AppError>,
    headers: HeaderMap,
) -> Response {
    let [.., delete] = v1::PUSH_CONFIG;
    push_config(state, segments, caller, headers, delete).await
}

/// One named push configuration of a task: its task id and id are the
/// whole request message.
async fn push_config(
    state: AppState,
    segments: Result<Path<(String, String, String)>, PathRejection>,
    caller: Result<Caller, AppError>,
    headers: HeaderMap,
    method: &str,
) -> Response {
    let (name, task, config) = match path(segments) {
        Ok(p) => p,
        Err(e) => return refused(e),
    };
    let call = Call { state, headers };
    call.run(caller, &name, method, |_| {
        let params = rest::with_path_field(Map::new(), "taskId", rest::task_id(&task)?)?;
        rest::with_path_field(params, "id", &config)
    })
    .await
}

/// `GET …/extendedAgentCard`: GetExtendedAgentCard, the caller's own
/// card (kept out of shared caches, section 13.3), or refused as the
/// JSON-RPC binding refuses it for an agent whose card declares none.
async fn extended_card(
    State(state): State<AppState>,
    segments: Result<Path<String>, PathRejection>,
    caller: Result<Caller, AppError>,
    headers: HeaderMap,
) -> Response {
    let name = match path(segments) {
        Ok(name) => name,
        Err(e) => return refused(e),
    };
    let call = Call { state, headers };
    let mut response = call
        .run(caller, &name, v1::EXTENDED_CARD, |_| Ok(Map::new()))
        .await;
    if response.status().is_success() {
        let headers = response.headers_mut();
        let cache = HeaderValue::from_static(extended_card::CACHE_CONTROL);
        headers.insert(header::CACHE_CONTROL, cache);
        headers.insert(header::VARY, HeaderValue::from_static("Authorization"));
    }
    response
}
