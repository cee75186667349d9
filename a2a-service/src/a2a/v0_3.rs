//! A2A 0.3 wire shapes (JSON-RPC binding): `kind`-tagged parts, lower-case
//! roles and states, `kind: "task"` / `kind: "message"` objects.

use serde_json::{Map, Value, json};

use super::jsonrpc::{optional_bool, optional_count, optional_object, optional_str, required_str};
use super::model::{
    Artifact, Message, Part, Role, Task, TaskState, artifact_fields, message_fields, timestamp,
};
use super::reply::{ArtifactUpdate, StreamItem, stream_artifact};
use crate::error::AppError;

pub const SEND: &str = "message/send";
pub const GET: &str = "tasks/get";
pub const CANCEL: &str = "tasks/cancel";
/// The methods that need `capabilities.streaming`.
pub const STREAMING: [&str; 2] = ["message/stream", "tasks/resubscribe"];
/// The methods that need `capabilities.pushNotifications`.
pub const PUSH_CONFIG: [&str; 4] = [
    "tasks/pushNotificationConfig/set",
    "tasks/pushNotificationConfig/get",
    "tasks/pushNotificationConfig/list",
    "tasks/pushNotificationConfig/delete",
];
/// The method that needs `supportsAuthenticatedExtendedCard`.
pub const EXTENDED_CARD: &str = "agent/getAuthenticatedExtendedCard";

fn bad(reason: impl Into<String>) -> AppError {
    AppError::InvalidParams(reason.into())
}

fn metadata(obj: &Map<String, Value>) -> Result<Option<Map<String, Value>>, AppError> {
    Ok(optional_object(obj, "metadata")?.cloned())
}

pub fn parse_part(value: &Value) -> Result<Part, AppError> {
    let obj = value
        .as_object()
        .ok_or_else(|| bad("each part must be an object"))?;
    let meta = metadata(obj)?;
    match obj.get("kind").and_then(Value::as_str) {
        Some("text") => Ok(Part::Text {
            text: required_str_allow_empty(obj, "text")?,
            metadata: meta,
        }),
        Some("data") => match obj.get("data") {
            Some(Value::Object(d)) => Ok(Part::Data {
                data: Value::Object(d.clone()),
                metadata: meta,
            }),
            _ => Err(bad("a data part needs a data object")),
        },
        Some("file") => {
            let file = optional_object(obj, "file")?
                .ok_or_else(|| bad("a file part needs a file object"))?;
            let url = optional_str(file, "uri")?.map(str::to_string);
            let bytes = optional_str(file, "bytes")?.map(str::to_string);
            if url.is_some() == bytes.is_some() {
                return Err(bad("a file needs exactly one of uri and bytes"));
            }
            Ok(Part::File {
                url,
                bytes,
                name: optional_str(file, "name")?.map(str::to_string),
                media_type: optional_str(file, "mimeType")?.map(str::to_string),
                metadata: meta,
            })
        }
        Some(other) => Err(bad(format!("unknown part kind {other:?}"))),
        None => Err(bad("each part needs a kind (text, data or file)")),
    }
}

fn required_str_allow_empty(obj: &Map<String, Value>, name: &str) -> Result<String, AppError> {
    obj.get(name)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| bad(format!("{name} must be a string")))
}

pub fn parse_message(value: &Value) -> Result<Message, AppError> {
    let obj = value
        .as_object()
        .ok_or_else(|| bad("message must be an object"))?;
    if let Some(kind) = obj.get("kind") {
        if kind != "message" {
            return Err(bad("message.kind must be \"message\""));
        }
    }
    let role = match obj.get("role").and_then(Value::as_str) {
        Some("user") => Role::User,
        Some("agent") => Role::Agent,
        _ => return Err(bad("message.role must be \"user\" or \"agent\"")),
    };
    let parts = match obj.get("parts") {
        Some(Value::Array(parts)) if !parts.is_empty() => {
            parts.iter().map(parse_part).collect::<Result<_, _>>()?
        }
        _ => return Err(bad("message.parts must be a non-empty array")),
    };
    let reference_task_ids = match obj.get("referenceTaskIds") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(ids)) => ids
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| bad("referenceTaskIds must be strings"))?,
        Some(_) => return Err(bad("referenceTaskIds must be an array")),
    };
    Ok(Message {
        message_id: required_str(obj, "messageId")?.to_string(),
        role,
        parts,
        context_id: optional_str(obj, "contextId")?.map(str::to_string),
        task_id: optional_str(obj, "taskId")?.map(str::to_string),
        metadata: metadata(obj)?,
        reference_task_ids,
    })
}

pub fn part_json(part: &Part) -> Value {
    let (mut obj, meta) = match part {
        Part::Text { text, metadata } => (json!({"kind": "text", "text": text}), metadata),
        Part::Data { data, metadata } => {
            let data = if data.is_object() {
                data.clone()
            } else {
                json!({"value": data})
            };
            (json!({"kind": "data", "data": data}), metadata)
        }
        Part::File {
            url,
            bytes,
            name,
            media_type,
            metadata,
        } => {
            let mut file = Map::new();
            if let Some(u) = url {
                file.insert("uri".into(), json!(u));
            }
            if let Some(b) = bytes {
                file.insert("bytes".into(), json!(b));
            }
            if let Some(n) = name {
                file.insert("name".into(), json!(n));
            }
            if let Some(m) = media_type {
                file.insert("mimeType".into(), json!(m));
            }
            (json!({"kind": "file", "file": file}), metadata)
        }
    };
    if let (Some(meta), Some(o)) = (meta, obj.as_object_mut()) {
        o.insert("metadata".into(), Value::Object(meta.clone()));
    }
    obj
}

pub fn message_json(m: &Message) -> Value {
    let role = match m.role {
        Role::User => "user",
        Role::Agent => "agent",
    };
    let mut obj = message_fields(m, role, part_json);
    obj.insert("kind".into(), json!("message"));
    Value::Object(obj)
}

pub fn artifact_json(a: &Artifact) -> Value {
    artifact_fields(a, part_json)
}

/// `TaskStatus`.
fn status_json(task: &Task) -> Value {
    let mut status = Map::new();
    status.insert("state".into(), json!(task.state.as_str()));
    if let Some(m) = task.shown_status_message() {
        status.insert("message".into(), message_json(&m));
    }
    status.insert("timestamp".into(), json!(timestamp(task.updated_ms)));
    Value::Object(status)
}

pub fn task_json(task: &Task, history_length: Option<usize>) -> Value {
    let mut task_json = json!({
        "kind": "task",
        "id": task.id,
        "contextId": task.context_id,
        "status": status_json(task),
        "artifacts": task.artifacts.iter().map(artifact_json).collect::<Vec<_>>(),
        "history": task.history_tail(history_length).iter().map(message_json).collect::<Vec<_>>(),
    });
    if let Some(metadata) = task.metadata_json() {
        task_json["metadata"] = metadata;
    }
    task_json
}

/// A `TaskStatusUpdateEvent`; `final` marks the stream's last event.
pub fn status_update_json(task: &Task, last: bool) -> Value {
    json!({
        "kind": "status-update",
        "taskId": task.id,
        "contextId": task.context_id,
        "status": status_json(task),
        "final": last,
    })
}

/// A `TaskArtifactUpdateEvent`.
pub fn artifact_update_json(update: &ArtifactUpdate<'_>) -> Value {
    json!({
        "kind": "artifact-update",
        "taskId": update.task_id,
        "contextId": update.context_id,
        "artifact": artifact_json(update.artifact),
        "append": update.append,
        "lastChunk": update.last_chunk,
    })
}

/// Reads one event of an agent's 0.3 stream: a task, a message, or an
/// update event, told apart by `kind`.
pub fn parse_stream_event(result: &Value) -> Result<StreamItem, String> {
    match result.get("kind").and_then(Value::as_str) {
        Some("status-update") => {
            let state = result
                .pointer("/status/state")
                .and_then(Value::as_str)
                .and_then(TaskState::parse)
                .ok_or("agent streamed a status update without a known state")?;
            let message = match result.pointer("/status/message") {
                None | Some(Value::Null) => None,
                Some(m) => Some(
                    parse_message(m).map_err(|_| "agent streamed a malformed status message")?,
                ),
            };
            Ok(StreamItem::Status { state, message })
        }
        Some("artifact-update") => stream_artifact(result, parse_part),
        _ => parse_reply(result).map(StreamItem::Reply),
    }
}

/// `MessageSendParams`.
#[derive(Debug)]
pub struct SendParams {
    pub message: Message,
    pub blocking: bool,
    pub history_length: Option<usize>,
}

pub fn parse_send(params: &Map<String, Value>) -> Result<SendParams, AppError> {
    let message = parse_message(
        params
            .get("message")
            .ok_or_else(|| bad("message is required"))?,
    )?;
    let config = optional_object(params, "configuration")?;
    let (blocking, history_length) = match config {
        Some(c) => (
            optional_bool(c, "blocking")?.unwrap_or(true),
            optional_count(c, "historyLength")?,
        ),
        None => (true, None),
    };
    Ok(SendParams {
        message,
        blocking,
        history_length,
    })
}

/// `TaskQueryParams`: the id and an optional history length.
pub fn parse_query(params: &Map<String, Value>) -> Result<(String, Option<usize>), AppError> {
    Ok((
        required_str(params, "id")?.to_string(),
        optional_count(params, "historyLength")?,
    ))
}

/// Reads a 0.3 `message/send` result (a task or a message) from an agent.
pub fn parse_reply(result: &Value) -> Result<super::reply::AgentReply, String> {
    use super::reply::AgentReply;
    match result.get("kind").and_then(Value::as_str) {
        Some("message") => parse_message(result).map(AgentReply::Message).map_err(|e| {
            format!(
                "agent replied with a malformed message: {}",
                e.rpc_error()["message"]
            )
        }),
        Some("task") => {
            let state = result
                .pointer("/status/state")
                .and_then(Value::as_str)
                .and_then(TaskState::parse)
                .ok_or("agent replied with a task without a known state")?;
            super::reply::task_reply(result, state, parse_message, parse_part)
        }
        _ => Err("agent replied with neither a task nor a message".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_round_trip() {
        let wire = json!({
            "kind": "message", "messageId": "m1", "role": "user", "contextId": "c1",
            "parts": [
                {"kind": "text", "text": "hi"},
                {"kind": "data", "data": {"a": 1}},
                {"kind": "file", "file": {"uri": "https://x/y.png", "mimeType": "image/png"}}
            ]
        });
        let m = parse_message(&wire).unwrap();
        assert_eq!(m.role, Role::User);
        assert_eq!(message_json(&m), wire);
    }

    #[test]
    fn rejects_malformed_messages() {
        for bad in [
            json!({"messageId": "m", "role": "robot", "parts": [{"kind": "text", "text": "x"}]}),
            json!({"messageId": "m", "role": "user", "parts": []}),
            json!({"messageId": "m", "role": "user", "parts": [{"text": "x"}]}),
            json!({"role": "user", "parts": [{"kind": "text", "text": "x"}]}),
            json!({"messageId": "m", "role": "user", "parts": [{"kind": "data", "data": 3}]}),
            json!({"messageId": "m", "role": "user", "kind": "task", "parts": [{"kind": "text", "text": "x"}]}),
        ] {
            assert!(parse_message(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn blocking_defaults_to_true() {
        let msg =
            json!({"messageId": "m", "role": "user", "parts": [{"kind": "text", "text": "x"}]});
        let p = json!({"message": msg}).as_object().cloned().unwrap();
        assert!(parse_send(&p).unwrap().blocking);
        let p = json!({"message": msg, "configuration": {"blocking": false, "historyLength": 1}})
            .as_object()
            .cloned()
            .unwrap();
        let s = parse_send(&p).unwrap();
        assert!(!s.blocking);
        assert_eq!(s.history_length, Some(1));
    }
}
