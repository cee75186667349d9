//! Version-neutral task, message and part types, and the task state machine.
//! Stored as JSON in the task rows; each protocol version renders them.

use attach_contract::delegation::{A2A_METADATA_MEMBER, ActorChain};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskState {
    Submitted,
    Working,
    InputRequired,
    AuthRequired,
    Completed,
    Failed,
    Canceled,
    Rejected,
}

impl TaskState {
    pub const ALL: [TaskState; 8] = [
        TaskState::Submitted,
        TaskState::Working,
        TaskState::InputRequired,
        TaskState::AuthRequired,
        TaskState::Completed,
        TaskState::Failed,
        TaskState::Canceled,
        TaskState::Rejected,
    ];

    /// The stored name, which is also the 0.3 wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Submitted => "submitted",
            TaskState::Working => "working",
            TaskState::InputRequired => "input-required",
            TaskState::AuthRequired => "auth-required",
            TaskState::Completed => "completed",
            TaskState::Failed => "failed",
            TaskState::Canceled => "canceled",
            TaskState::Rejected => "rejected",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The 1.0 wire name (`TASK_STATE_…`).
    pub fn v1_name(self) -> &'static str {
        match self {
            TaskState::Submitted => "TASK_STATE_SUBMITTED",
            TaskState::Working => "TASK_STATE_WORKING",
            TaskState::InputRequired => "TASK_STATE_INPUT_REQUIRED",
            TaskState::AuthRequired => "TASK_STATE_AUTH_REQUIRED",
            TaskState::Completed => "TASK_STATE_COMPLETED",
            TaskState::Failed => "TASK_STATE_FAILED",
            TaskState::Canceled => "TASK_STATE_CANCELED",
            TaskState::Rejected => "TASK_STATE_REJECTED",
        }
    }

    pub fn from_v1(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.v1_name() == name)
    }

    /// Completed, failed, canceled and rejected tasks never change again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Completed | TaskState::Failed | TaskState::Canceled | TaskState::Rejected
        )
    }

    /// Still owned by a forward in flight (the states a restart interrupts).
    pub fn is_active(self) -> bool {
        matches!(self, TaskState::Submitted | TaskState::Working)
    }

    /// The transitions the service makes.
    pub fn can_become(self, next: TaskState) -> bool {
        use TaskState::*;
        match self {
            Submitted => next != Submitted,
            Working => !matches!(next, Submitted | Working),
            InputRequired | AuthRequired => matches!(next, Working | Canceled | Failed),
            Completed | Failed | Canceled | Rejected => false,
        }
    }

    /// The states a task may be in for a transition to `next`, as stored names.
    pub fn sources_of(next: TaskState) -> Vec<&'static str> {
        Self::ALL
            .into_iter()
            .filter(|s| s.can_become(next))
            .map(TaskState::as_str)
            .collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Agent,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Part {
    Text {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metadata: Option<Map<String, Value>>,
    },
    Data {
        data: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metadata: Option<Map<String, Value>>,
    },
    File {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
        /// base64 content.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bytes: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        media_type: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metadata: Option<Map<String, Value>>,
    },
}

impl Part {
    pub fn text(text: impl Into<String>) -> Self {
        Part::Text {
            text: text.into(),
            metadata: None,
        }
    }

    pub fn data(data: Value) -> Self {
        Part::Data {
            data,
            metadata: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub message_id: String,
    pub role: Role,
    pub parts: Vec<Part>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reference_task_ids: Vec<String>,
}

impl Message {
    pub fn agent(parts: Vec<Part>, context_id: &str, task_id: &str) -> Self {
        Message {
            message_id: uuid::Uuid::new_v4().to_string(),
            role: Role::Agent,
            parts,
            context_id: Some(context_id.to_string()),
            task_id: Some(task_id.to_string()),
            metadata: None,
            reference_task_ids: Vec::new(),
        }
    }

    /// The message as plain JSON for `http` agents and the seed routes:
    /// all-text parts join into a string, a lone data part is its data.
    pub fn plain_value(&self) -> Value {
        plain_value(&self.parts)
    }
}

pub fn plain_value(parts: &[Part]) -> Value {
    if !parts.is_empty() && parts.iter().all(|p| matches!(p, Part::Text { .. })) {
        let text: Vec<&str> = parts
            .iter()
            .filter_map(|p| match p {
                Part::Text { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        return Value::String(text.join("\n"));
    }
    if let [Part::Data { data, .. }] = parts {
        return data.clone();
    }
    serde_json::to_value(parts).unwrap_or(Value::Null)
}

/// Parts for a plain JSON value: a string is text, anything else data.
pub fn parts_from_value(value: &Value) -> Vec<Part> {
    match value {
        Value::String(s) => vec![Part::text(s.clone())],
        other => vec![Part::data(other.clone())],
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    pub artifact_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub parts: Vec<Part>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// A stored task.
#[derive(Clone, Debug, PartialEq)]
pub struct Task {
    pub id: String,
    pub context_id: String,
    pub owner: String,
    pub session: String,
    pub agent: String,
    pub state: TaskState,
    /// The input as plain JSON (the seed route's `input`, or the message's).
    pub input: Value,
    pub history: Vec<Message>,
    pub artifacts: Vec<Artifact>,
    /// The message that accompanies the current status, if any.
    pub status_message: Option<Message>,
    /// The plain JSON result (seed routes).
    pub result: Option<Value>,
    /// Why the task failed.
    pub error: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// After this instant an active task is known to be orphaned.
    pub deadline_ms: i64,
    /// The agent's own id for this task (A2A agents that answered with a
    /// task), where a follow-up message is sent.
    pub agent_task_id: Option<String>,
    /// Who acted for the owner when the task was created, current actor
    /// first; empty when the owner asked alone.
    pub actors: ActorChain,
    /// The DID of the agent the task was handed to, for an agent
    /// registered with one.
    pub delegated_to: Option<String>,
}

impl Task {
    /// Who acts on the task: the agent it was handed to, then those who
    /// asked for it.
    pub fn handed_chain(&self) -> ActorChain {
        match &self.delegated_to {
            Some(did) => self
                .actors
                .delegate_to(did)
                .unwrap_or_else(|_| self.actors.clone()),
            None => self.actors.clone(),
        }
    }

    /// The task's `metadata` in the A2A answers: the chain it was handed
    /// with as `actorChain` (the extension of `a2a/handoff.rs`), absent
    /// when nobody acts for the owner.
    pub fn metadata_json(&self) -> Option<Value> {
        let chain = self.handed_chain();
        (!chain.is_empty()).then(|| json!({A2A_METADATA_MEMBER: chain.actors()}))
    }

    /// The history, newest last, cut to the `history_length` most recent
    /// messages when one is given.
    pub fn history_tail(&self, history_length: Option<usize>) -> &[Message] {
        let n = history_length
            .unwrap_or(self.history.len())
            .min(self.history.len());
        &self.history[self.history.len() - n..]
    }

    /// The status message to show: the agent's, or one carrying the failure.
    pub fn shown_status_message(&self) -> Option<Message> {
        if let Some(m) = &self.status_message {
            return Some(m.clone());
        }
        self.error
            .as_ref()
            .map(|e| Message::agent(vec![Part::text(e.clone())], &self.context_id, &self.id))
    }
}

/// RFC 3339 text for a unix-millisecond instant, for any `i64`: an instant
/// before 1970 reads as the epoch and one past year 9999 as that year's last
/// millisecond (the format has four-digit years). Stored rows are rendered
/// with it, so no value a row can hold may fail a read.
pub fn timestamp(ms: i64) -> String {
    attach_contract::timestamp::rfc3339_millis(u64::try_from(ms).unwrap_or(0))
}

/// Unix milliseconds of an RFC 3339 instant. A numeric offset (`+02:00`)
/// is applied rather than refused: clients and Weaviate do not all answer
/// in UTC.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let text = text.trim();
    let split = text.len().checked_sub(6)?;
    let (utc, offset_ms) = match text.get(split..).map(str::as_bytes) {
        Some([sign @ (b'+' | b'-'), h1, h2, b':', m1, m2])
            if split > 10 && [h1, h2, m1, m2].iter().all(|b| b.is_ascii_digit()) =>
        {
            let hours = i64::from((h1 - b'0') * 10 + (h2 - b'0'));
            let minutes = i64::from((m1 - b'0') * 10 + (m2 - b'0'));
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = (hours * 60 + minutes) * 60_000;
            (&text[..split], if *sign == b'-' { -offset } else { offset })
        }
        _ => (text, 0),
    };
    let since = humantime::parse_rfc3339_weak(utc)
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    Some(since.as_millis() as i64 - offset_ms)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Encodes a part in one protocol version's shape.
pub type PartEncoder = fn(&Part) -> Value;

/// The message fields both versions share; each version names the role
/// (`user` / `ROLE_USER`) and encodes parts its own way.
pub fn message_fields(m: &Message, role: &str, part: PartEncoder) -> Map<String, Value> {
    let mut obj = Map::new();
    obj.insert("messageId".into(), json!(m.message_id));
    if let Some(c) = &m.context_id {
        obj.insert("contextId".into(), json!(c));
    }
    if let Some(t) = &m.task_id {
        obj.insert("taskId".into(), json!(t));
    }
    obj.insert("role".into(), json!(role));
    obj.insert("parts".into(), m.parts.iter().map(part).collect());
    if let Some(meta) = &m.metadata {
        obj.insert("metadata".into(), Value::Object(meta.clone()));
    }
    if !m.reference_task_ids.is_empty() {
        obj.insert("referenceTaskIds".into(), json!(m.reference_task_ids));
    }
    obj
}

/// An artifact; only the part shape differs between versions.
pub fn artifact_fields(a: &Artifact, part: PartEncoder) -> Value {
    let mut obj = Map::new();
    obj.insert("artifactId".into(), json!(a.artifact_id));
    if let Some(n) = &a.name {
        obj.insert("name".into(), json!(n));
    }
    if let Some(d) = &a.description {
        obj.insert("description".into(), json!(d));
    }
    obj.insert("parts".into(), a.parts.iter().map(part).collect());
    if let Some(meta) = &a.metadata {
        obj.insert("metadata".into(), Value::Object(meta.clone()));
    }
    Value::Object(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_with_offsets() {
        let utc = parse_timestamp("2030-01-01T00:00:00.250Z").unwrap();
        assert_eq!(timestamp(utc), "2030-01-01T00:00:00.250Z");
        assert_eq!(parse_timestamp("2030-01-01T02:00:00.250+02:00"), Some(utc));
        assert_eq!(parse_timestamp("2029-12-31T23:30:00.250-00:30"), Some(utc));
        assert_eq!(parse_timestamp("2030-01-01T00:00:00.250+00:00"), Some(utc));
        for bad in [
            "",
            "soon",
            "2030-01-01T00:00:00+24:00",
            "2030-01-01T00:00:00++1:00",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn terminal_states_never_move() {
        for from in TaskState::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in TaskState::ALL {
                assert!(!from.can_become(to), "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn lifecycle() {
        use TaskState::*;
        assert!(Submitted.can_become(Working));
        assert!(Working.can_become(Completed));
        assert!(Working.can_become(Failed));
        assert!(Working.can_become(Canceled));
        assert!(!Working.can_become(Submitted));
        assert!(InputRequired.can_become(Working));
        assert!(!InputRequired.can_become(Completed));
        let mut to_canceled = TaskState::sources_of(Canceled);
        to_canceled.sort();
        assert_eq!(
            to_canceled,
            ["auth-required", "input-required", "submitted", "working"]
        );
    }

    #[test]
    fn names_round_trip() {
        for s in TaskState::ALL {
            assert_eq!(TaskState::parse(s.as_str()), Some(s));
            assert_eq!(TaskState::from_v1(s.v1_name()), Some(s));
        }
    }

    #[test]
    fn plain_values() {
        assert_eq!(
            plain_value(&[Part::text("a"), Part::text("b")]),
            Value::String("a\nb".into())
        );
        assert_eq!(
            plain_value(&[Part::data(serde_json::json!({"x": 1}))]),
            serde_json::json!({"x": 1})
        );
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn timestamps_are_total() {
        let last = "9999-12-31T23:59:59.999Z";
        assert_eq!(timestamp(i64::MAX), last);
        assert_eq!(timestamp(253_402_300_800_000), last);
        assert_eq!(timestamp(i64::MIN), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp(-1), "1970-01-01T00:00:00.000Z");
        // Accepted by the parser and past year 9999 once the offset applies.
        let beyond = parse_timestamp("9999-12-31T23:59:59-23:59").unwrap();
        assert_eq!(timestamp(beyond), last);
        // Within the range, the same text humantime writes.
        for ms in (0..=253_402_300_799_999_i64).step_by(7_919_999_999_993) {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64);
            assert_eq!(
                timestamp(ms),
                humantime::format_rfc3339_millis(t).to_string()
            );
        }
    }
}
