//! What an agent answered, or streamed, in a shape both protocol versions
//! parse into: the versions' own modules build it, forwarding consumes it.

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

/// One event of an agent's stream (A2A 1.0 section 3.1.2).
#[derive(Debug)]
pub enum StreamItem {
    /// A task or a message, as a send would answer.
    Reply(AgentReply),
    Status {
        state: TaskState,
        message: Option<Message>,
    },
    Artifact {
        artifact: Artifact,
        append: bool,
        last_chunk: bool,
    },
}

/// An artifact event as both versions render it for a stream.
pub struct ArtifactUpdate<'a> {
    pub task_id: &'a str,
    pub context_id: &'a str,
    pub artifact: &'a Artifact,
    pub append: bool,
    pub last_chunk: bool,
}

/// An artifact update event in either version's shape (they differ only
/// in how parts are spelled).
pub fn stream_artifact(update: &Value, part: PartDecoder) -> Result<StreamItem, String> {
    let artifact = artifact(
        update
            .get("artifact")
            .ok_or("agent streamed an artifact update without an artifact")?,
        part,
    )?;
    let flag = |key: &str| update.get(key).and_then(Value::as_bool).unwrap_or(false);
    Ok(StreamItem::Artifact {
        artifact,
        append: flag("append"),
        last_chunk: flag("lastChunk"),
    })
}

/// Adds a streamed artifact to those a task holds: a chunk marked `append`
/// extends the artifact of the same id; anything else replaces it, or
/// comes after the others when its id is new.
pub fn merge_artifact(artifacts: &mut Vec<Artifact>, chunk: Artifact, append: bool) {
    match artifacts
        .iter_mut()
        .find(|a| a.artifact_id == chunk.artifact_id)
    {
        Some(existing) if append => existing.parts.extend(chunk.parts),
        Some(existing) => *existing = chunk,
        None => artifacts.push(chunk),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(id: &str, text: &str) -> Artifact {
        Artifact {
            artifact_id: id.into(),
            name: None,
            description: None,
            parts: vec![Part::text(text)],
            metadata: None,
        }
    }

    #[test]
    fn streamed_chunks_merge_by_artifact_id() {
        let mut held = Vec::new();
        merge_artifact(&mut held, chunk("a", "one"), false);
        merge_artifact(&mut held, chunk("a", "two"), true);
        merge_artifact(&mut held, chunk("b", "other"), true);
        assert_eq!(held.len(), 2);
        assert_eq!(held[0].parts, vec![Part::text("one"), Part::text("two")]);
        merge_artifact(&mut held, chunk("a", "anew"), false);
        assert_eq!(held[0].parts, vec![Part::text("anew")]);
        assert_eq!(held[1].parts, vec![Part::text("other")]);
    }
}
