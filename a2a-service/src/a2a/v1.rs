//! A2A 1.0 wire shapes (JSON-RPC binding): protobuf JSON of `lf.a2a.v1`:
//! lowerCamel field names, `ROLE_*` / `TASK_STATE_*` enum names, parts as a
//! one-of of `text` / `data` / `url` / `raw`, no `kind` fields.

use serde_json::{Map, Value, json};

use super::jsonrpc::{
    field, optional_bool, optional_count, optional_object, optional_str, proto_name, required_str,
};
use super::model::{
    Artifact, Message, Part, Role, Task, TaskState, artifact_fields, message_fields,
    parse_timestamp, timestamp,
};
use super::reply::{ArtifactUpdate, StreamItem, stream_artifact};
use crate::error::AppError;

pub const SEND: &str = "SendMessage";
pub const GET: &str = "GetTask";
pub const LIST: &str = "ListTasks";
pub const CANCEL: &str = "CancelTask";
/// The methods that need `capabilities.streaming`.
pub const STREAMING: [&str; 2] = ["SendStreamingMessage", "SubscribeToTask"];
/// The methods that need `capabilities.pushNotifications`.
pub const PUSH_CONFIG: [&str; 4] = [
    "CreateTaskPushNotificationConfig",
    "GetTaskPushNotificationConfig",
    "ListTaskPushNotificationConfigs",
    "DeleteTaskPushNotificationConfig",
];
/// The method that needs `capabilities.extendedAgentCard`.
pub const EXTENDED_CARD: &str = "GetExtendedAgentCard";

fn bad(reason: impl Into<String>) -> AppError {
    AppError::InvalidParams(reason.into())
}

const PART_FIELDS: [&str; 7] = [
    "text",
    "raw",
    "url",
    "data",
    "metadata",
    "filename",
    "mediaType",
];

pub fn parse_part(value: &Value) -> Result<Part, AppError> {
    let obj = value
        .as_object()
        .ok_or_else(|| bad("each part must be an object"))?;
    let known = |k: &str| PART_FIELDS.iter().any(|f| *f == k || proto_name(f) == k);
    if let Some(unknown) = obj.keys().find(|k| !known(k)) {
        return Err(bad(format!(
            "part field {unknown:?} is not part of A2A 1.0 (a 0.3 part sent with A2A-Version: 1.0?)"
        )));
    }
    let metadata = optional_object(obj, "metadata")?.cloned();
    let present: Vec<&str> = ["text", "data", "url", "raw"]
        .into_iter()
        .filter(|k| obj.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    let [which] = present.as_slice() else {
        return Err(bad(
            "each part needs exactly one of text, data, url and raw",
        ));
    };
    match *which {
        "text" => Ok(Part::Text {
            text: obj["text"]
                .as_str()
                .ok_or_else(|| bad("text must be a string"))?
                .to_string(),
            metadata,
        }),
        "data" => Ok(Part::Data {
            data: obj["data"].clone(),
            metadata,
        }),
        _ => {
            let content = obj[*which]
                .as_str()
                .ok_or_else(|| bad(format!("{which} must be a string")))?;
            let (url, bytes) = if *which == "url" {
                (Some(content.to_string()), None)
            } else {
                (None, Some(content.to_string()))
            };
            Ok(Part::File {
                url,
                bytes,
                name: optional_str(obj, "filename")?.map(str::to_string),
                media_type: optional_str(obj, "mediaType")?.map(str::to_string),
                metadata,
            })
        }
    }
}

fn parse_role(value: Option<&Value>) -> Result<Role, AppError> {
    match value {
        Some(Value::String(s)) if s == "ROLE_USER" => Ok(Role::User),
        Some(Value::String(s)) if s == "ROLE_AGENT" => Ok(Role::Agent),
        Some(Value::Number(n)) if n.as_u64() == Some(1) => Ok(Role::User),
        Some(Value::Number(n)) if n.as_u64() == Some(2) => Ok(Role::Agent),
        _ => Err(bad("message.role must be ROLE_USER or ROLE_AGENT")),
    }
}

pub fn parse_state(value: &Value) -> Option<TaskState> {
    match value {
        Value::String(s) => TaskState::from_v1(s),
        Value::Number(n) => {
            let i = n.as_u64()? as usize;
            (1..=8).contains(&i).then(|| {
                // Proto numbering: SUBMITTED=1 … AUTH_REQUIRED=8.
                [
                    TaskState::Submitted,
                    TaskState::Working,
                    TaskState::Completed,
                    TaskState::Failed,
                    TaskState::Canceled,
                    TaskState::InputRequired,
                    TaskState::Rejected,
                    TaskState::AuthRequired,
                ][i - 1]
            })
        }
        _ => None,
    }
}

fn string_list(obj: &Map<String, Value>, name: &str) -> Result<Vec<String>, AppError> {
    match field(obj, name)? {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| bad(format!("{name} must hold strings"))),
        Some(_) => Err(bad(format!("{name} must be an array"))),
    }
}

pub fn parse_message(value: &Value) -> Result<Message, AppError> {
    let obj = value
        .as_object()
        .ok_or_else(|| bad("message must be an object"))?;
    let parts = match obj.get("parts") {
        Some(Value::Array(parts)) if !parts.is_empty() => {
            parts.iter().map(parse_part).collect::<Result<_, _>>()?
        }
        _ => return Err(bad("message.parts must be a non-empty array")),
    };
    Ok(Message {
        message_id: required_str(obj, "messageId")?.to_string(),
        role: parse_role(obj.get("role"))?,
        parts,
        context_id: optional_str(obj, "contextId")?
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        task_id: optional_str(obj, "taskId")?
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        metadata: optional_object(obj, "metadata")?.cloned(),
        reference_task_ids: string_list(obj, "referenceTaskIds")?,
    })
}

pub fn part_json(part: &Part) -> Value {
    let mut obj = Map::new();
    let meta = match part {
        Part::Text { text, metadata } => {
            obj.insert("text".into(), json!(text));
            metadata
        }
        Part::Data { data, metadata } => {
            obj.insert("data".into(), data.clone());
            metadata
        }
        Part::File {
            url,
            bytes,
            name,
            media_type,
            metadata,
        } => {
            if let Some(u) = url {
                obj.insert("url".into(), json!(u));
            } else if let Some(b) = bytes {
                obj.insert("raw".into(), json!(b));
            }
            if let Some(n) = name {
                obj.insert("filename".into(), json!(n));
            }
            if let Some(m) = media_type {
                obj.insert("mediaType".into(), json!(m));
            }
            metadata
        }
    };
    if let Some(meta) = meta {
        obj.insert("metadata".into(), Value::Object(meta.clone()));
    }
    Value::Object(obj)
}

pub fn message_json(m: &Message) -> Value {
    let role = match m.role {
        Role::User => "ROLE_USER",
        Role::Agent => "ROLE_AGENT",
    };
    let obj = message_fields(m, role, part_json);
    Value::Object(obj)
}

pub fn artifact_json(a: &Artifact) -> Value {
    artifact_fields(a, part_json)
}

/// `TaskStatus`.
fn status_json(task: &Task) -> Value {
    let mut status = Map::new();
    status.insert("state".into(), json!(task.state.v1_name()));
    if let Some(m) = task.shown_status_message() {
        status.insert("message".into(), message_json(&m));
    }
    status.insert("timestamp".into(), json!(timestamp(task.updated_ms)));
    Value::Object(status)
}

pub fn task_json(task: &Task, history_length: Option<usize>, include_artifacts: bool) -> Value {
    let mut obj = Map::new();
    obj.insert("id".into(), json!(task.id));
    obj.insert("contextId".into(), json!(task.context_id));
    obj.insert("status".into(), status_json(task));
    if include_artifacts {
        obj.insert(
            "artifacts".into(),
            task.artifacts.iter().map(artifact_json).collect(),
        );
    }
    obj.insert(
        "history".into(),
        task.history_tail(history_length)
            .iter()
            .map(message_json)
            .collect(),
    );
    if let Some(metadata) = task.metadata_json() {
        obj.insert("metadata".into(), metadata);
    }
    Value::Object(obj)
}

/// A `StreamResponse` holding the task as it stands (section 3.1.2: a
/// stream opens with it).
pub fn stream_task_json(task: &Task) -> Value {
    json!({"task": task_json(task, None, true)})
}

/// A `StreamResponse` holding a `TaskStatusUpdateEvent`.
pub fn stream_status_json(task: &Task) -> Value {
    json!({"statusUpdate": {
        "taskId": task.id,
        "contextId": task.context_id,
        "status": status_json(task),
    }})
}

/// A `StreamResponse` holding a `TaskArtifactUpdateEvent`.
pub fn stream_artifact_json(update: &ArtifactUpdate<'_>) -> Value {
    json!({"artifactUpdate": {
        "taskId": update.task_id,
        "contextId": update.context_id,
        "artifact": artifact_json(update.artifact),
        "append": update.append,
        "lastChunk": update.last_chunk,
    }})
}

/// Reads one event of an agent's 1.0 stream (a `StreamResponse`).
pub fn parse_stream_event(result: &Value) -> Result<StreamItem, String> {
    if let Some(update) = result.get("statusUpdate") {
        let state = update
            .pointer("/status/state")
            .and_then(parse_state)
            .ok_or("agent streamed a status update without a known state")?;
        let message = match update.pointer("/status/message") {
            None | Some(Value::Null) => None,
            Some(m) => {
                Some(parse_message(m).map_err(|_| "agent streamed a malformed status message")?)
            }
        };
        return Ok(StreamItem::Status { state, message });
    }
    if let Some(update) = result.get("artifactUpdate") {
        return stream_artifact(update, parse_part);
    }
    parse_reply(result).map(StreamItem::Reply)
}

/// `SendMessageRequest`.
#[derive(Debug)]
pub struct SendParams {
    pub message: Message,
    pub return_immediately: bool,
    pub history_length: Option<usize>,
}

pub fn parse_send(params: &Map<String, Value>) -> Result<SendParams, AppError> {
    let message = parse_message(
        params
            .get("message")
            .ok_or_else(|| bad("message is required"))?,
    )?;
    let (return_immediately, history_length) = match optional_object(params, "configuration")? {
        Some(c) => {
            // `returnImmediately` is the released field; a `blocking: false`
            // from pre-release clients means the same.
            let immediate = optional_bool(c, "returnImmediately")?.unwrap_or(false)
                || optional_bool(c, "blocking")? == Some(false);
            (immediate, optional_count(c, "historyLength")?)
        }
        None => (false, None),
    };
    Ok(SendParams {
        message,
        return_immediately,
        history_length,
    })
}

/// `GetTaskRequest`.
pub fn parse_get(params: &Map<String, Value>) -> Result<(String, Option<usize>), AppError> {
    Ok((
        required_str(params, "id")?.to_string(),
        optional_count(params, "historyLength")?,
    ))
}

/// `ListTasksRequest`.
#[derive(Debug, Default)]
pub struct ListParams {
    pub context_id: Option<String>,
    pub state: Option<TaskState>,
    pub page_size: usize,
    pub offset: usize,
    pub history_length: Option<usize>,
    pub updated_after_ms: Option<i64>,
    pub include_artifacts: bool,
}

pub fn parse_list(params: &Map<String, Value>) -> Result<ListParams, AppError> {
    let state = match field(params, "status")? {
        None => None,
        Some(Value::String(s)) if s == "TASK_STATE_UNSPECIFIED" => None,
        Some(Value::Number(n)) if n.as_u64() == Some(0) => None,
        Some(v) => Some(parse_state(v).ok_or_else(|| bad("status is not a task state"))?),
    };
    let page_size = match optional_count(params, "pageSize")? {
        None => 50,
        Some(n) if (1..=100).contains(&n) => n,
        Some(_) => return Err(bad("pageSize must be between 1 and 100")),
    };
    let offset = match optional_str(params, "pageToken")? {
        None | Some("") => 0,
        Some(t) => t
            .parse()
            .map_err(|_| bad("pageToken is not one this service issued"))?,
    };
    let updated_after_ms = match optional_str(params, "statusTimestampAfter")? {
        None | Some("") => None,
        Some(t) => Some(
            parse_timestamp(t)
                .ok_or_else(|| bad("statusTimestampAfter must be an RFC 3339 timestamp"))?,
        ),
    };
    Ok(ListParams {
        context_id: optional_str(params, "contextId")?
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        state,
        page_size,
        offset,
        history_length: optional_count(params, "historyLength")?,
        updated_after_ms,
        include_artifacts: optional_bool(params, "includeArtifacts")?.unwrap_or(false),
    })
}

/// Reads a 1.0 `SendMessage` / `GetTask` result from an agent.
pub fn parse_reply(result: &Value) -> Result<super::reply::AgentReply, String> {
    use super::reply::AgentReply;
    if let Some(message) = result.get("message") {
        return parse_message(message)
            .map(AgentReply::Message)
            .map_err(|e| {
                format!(
                    "agent replied with a malformed message: {}",
                    e.rpc_error()["message"]
                )
            });
    }
    let task = result.get("task").unwrap_or(result);
    let state = task
        .pointer("/status/state")
        .and_then(parse_state)
        .ok_or("agent replied with neither a task nor a message")?;
    super::reply::task_reply(task, state, parse_message, parse_part)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_round_trip() {
        let wire = json!({
            "messageId": "m1", "contextId": "c1", "role": "ROLE_USER",
            "parts": [
                {"text": "hi"},
                {"data": [1, 2]},
                {"url": "https://x/y.png", "filename": "y.png", "mediaType": "image/png"},
                {"raw": "aGk=", "mediaType": "text/plain"}
            ]
        });
        let m = parse_message(&wire).unwrap();
        assert_eq!(message_json(&m), wire);
    }

    #[test]
    fn rejects_malformed_parts() {
        for part in [
            json!({}),
            json!({"text": "a", "data": {}}),
            json!({"kind": "text", "text": 1}),
        ] {
            let m = json!({"messageId": "m", "role": "ROLE_USER", "parts": [part]});
            assert!(parse_message(&m).is_err(), "{m}");
        }
        let m = json!({"messageId": "m", "role": "user", "parts": [{"text": "x"}]});
        assert!(parse_message(&m).is_err());
    }

    #[test]
    fn send_configuration() {
        let msg = json!({"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "x"}]});
        let p = json!({"message": msg}).as_object().cloned().unwrap();
        assert!(!parse_send(&p).unwrap().return_immediately);
        let p = json!({"message": msg, "configuration": {"returnImmediately": true}})
            .as_object()
            .cloned()
            .unwrap();
        assert!(parse_send(&p).unwrap().return_immediately);
    }

    #[test]
    fn list_params() {
        let p = json!({"status": "TASK_STATE_COMPLETED", "pageSize": 2, "pageToken": "4"})
            .as_object()
            .cloned()
            .unwrap();
        let l = parse_list(&p).unwrap();
        assert_eq!(l.state, Some(TaskState::Completed));
        assert_eq!((l.page_size, l.offset), (2, 4));
        let p = json!({"pageSize": 0}).as_object().cloned().unwrap();
        assert!(parse_list(&p).is_err());
        assert_eq!(parse_state(&json!(3)), Some(TaskState::Completed));
        assert_eq!(parse_state(&json!(8)), Some(TaskState::AuthRequired));
    }
}
