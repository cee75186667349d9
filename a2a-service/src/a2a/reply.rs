//! What an agent answered, in a shape both protocol versions parse into:
//! the versions' own modules build it, forwarding consumes it.

use serde_json::Value;

use super::model::{Artifact, Message, Part, TaskState};

/// What an A2A agent answered.
#[derive(Debug)]
pub enum AgentReply {
    Message(Message),
    Task {
        id: String,
        state: TaskState,
        status_message: Option<Message>,
        artifacts: Vec<Artifact>,
        history: Vec<Message>,
    },
}

type MessageDecoder = fn(&Value) -> Result<Message, crate::error::AppError>;
type PartDecoder = fn(&Value) -> Result<Part, crate::error::AppError>;

/// An agent's task in either version's shape, once its state is read (the
/// versions name states differently; the rest differs only in how messages
/// and parts are spelled).
pub fn task_reply(
    task: &Value,
    state: TaskState,
    message: MessageDecoder,
    part: PartDecoder,
) -> Result<AgentReply, String> {
    let status_message = match task.pointer("/status/message") {
        None | Some(Value::Null) => None,
        Some(m) => Some(message(m).map_err(|_| "agent replied with a malformed status message")?),
    };
    let artifacts = match task.get("artifacts") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|a| artifact(a, part))
            .collect::<Result<_, _>>()?,
        _ => Vec::new(),
    };
    let history = match task.get("history") {
        Some(Value::Array(h)) => h.iter().filter_map(|m| message(m).ok()).collect(),
        _ => Vec::new(),
    };
    Ok(AgentReply::Task {
        id: task
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        state,
        status_message,
        artifacts,
        history,
    })
}

fn artifact(value: &Value, part: PartDecoder) -> Result<Artifact, String> {
    let obj = value.as_object().ok_or("artifact is not an object")?;
    let parts = match obj.get("parts") {
        Some(Value::Array(p)) => p
            .iter()
            .map(part)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| "artifact with a malformed part")?,
        _ => return Err("artifact without parts".into()),
    };
    let text = |key: &str| obj.get(key).and_then(Value::as_str).map(str::to_string);
    Ok(Artifact {
        artifact_id: text("artifactId").unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        name: text("name"),
        description: text("description"),
        parts,
        metadata: obj.get("metadata").and_then(Value::as_object).cloned(),
    })
}
