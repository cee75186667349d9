//! Tasks: their shape on the wire, and the bounded in-memory table they
//! live in. The companion service in front of the agents keeps the durable
//! record of every task, so losing the table on a restart, or the oldest
//! tasks when it is full, costs nothing but an old `GetTask` answer here.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::gateway::Caller;
use attach_contract::timestamp::rfc3339_millis;
use serde_json::{Map, Value, json};

use crate::a2a::{IncomingMessage, text_part};

/// How many tasks the table keeps; the oldest go first.
pub const TASK_CAP: usize = 1000;

/// The states these agents put a task in (they never ask for input).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Working,
    Completed,
    Failed,
    Rejected,
}

impl State {
    pub fn wire(self) -> &'static str {
        match self {
            State::Working => "TASK_STATE_WORKING",
            State::Completed => "TASK_STATE_COMPLETED",
            State::Failed => "TASK_STATE_FAILED",
            State::Rejected => "TASK_STATE_REJECTED",
        }
    }
}

/// What a task's work receives: the message's content, and the caller's
/// credentials as the service forwarded them (see [`Caller`]), the only
/// ones the agent may present.
pub struct Job {
    pub texts: Vec<String>,
    pub data: Vec<Value>,
    pub caller: Option<Caller>,
    pub context_id: String,
}

/// How a task's work ended.
#[derive(Debug)]
pub struct Outcome {
    pub state: State,
    /// The status message's text.
    pub text: String,
    pub artifacts: Vec<Value>,
    pub metadata: Option<Map<String, Value>>,
}

impl Outcome {
    pub fn completed(
        text: impl Into<String>,
        artifacts: Vec<Value>,
        metadata: Map<String, Value>,
    ) -> Self {
        Outcome {
            state: State::Completed,
            text: text.into(),
            artifacts,
            metadata: Some(metadata),
        }
    }

    pub fn failed(reason: impl Into<String>) -> Self {
        Self::ended(State::Failed, reason.into())
    }

    pub fn rejected(reason: impl Into<String>) -> Self {
        Self::ended(State::Rejected, reason.into())
    }

    fn ended(state: State, text: String) -> Self {
        Outcome {
            state,
            text,
            artifacts: Vec::new(),
            metadata: None,
        }
    }
}

/// A reason in plain text is a failure: this lets the work use `?` on the
/// gateway calls, which report what went wrong as text.
impl From<String> for Outcome {
    fn from(reason: String) -> Self {
        Outcome::failed(reason)
    }
}

/// Milliseconds since 1970 of `t`; a clock set before 1970 reads as 0.
fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// An artifact with a name and optional metadata.
pub fn artifact(name: &str, parts: Vec<Value>, metadata: Option<Value>) -> Value {
    let mut a = json!({
        "artifactId": uuid::Uuid::new_v4().to_string(),
        "name": name,
        "parts": parts,
    });
    if let Some(m) = metadata {
        a["metadata"] = m;
    }
    a
}

#[derive(Clone, Debug)]
pub struct Task {
    pub id: String,
    pub context_id: String,
    /// The `X-Attach-User` the task was created for; only that caller sees it.
    owner: Option<String>,
    pub state: State,
    status_message: Option<Value>,
    artifacts: Vec<Value>,
    history: Vec<Value>,
    metadata: Option<Map<String, Value>>,
    updated: SystemTime,
}

impl Task {
    /// A new working task for `message`, which joins the history with the
    /// task's ids filled in.
    pub fn start(message: IncomingMessage, owner: Option<String>) -> Self {
        let id = uuid::Uuid::new_v4().to_string();
        let context_id = message
            .context_id
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let mut wire = message.wire;
        wire.insert("taskId".into(), json!(id));
        wire.insert("contextId".into(), json!(context_id));
        Task {
            id,
            context_id,
            owner,
            state: State::Working,
            status_message: None,
            artifacts: Vec::new(),
            history: vec![Value::Object(wire)],
            metadata: None,
            updated: SystemTime::now(),
        }
    }

    pub fn finish(mut self, outcome: Outcome) -> Self {
        let message = json!({
            "messageId": uuid::Uuid::new_v4().to_string(),
            "contextId": self.context_id,
            "taskId": self.id,
            "role": "ROLE_AGENT",
            "parts": [text_part(outcome.text)],
        });
        self.state = outcome.state;
        self.history.push(message.clone());
        self.status_message = Some(message);
        self.artifacts = outcome.artifacts;
        self.metadata = outcome.metadata;
        self.updated = SystemTime::now();
        self
    }

    /// The task as 1.0 `Task` JSON, with at most `history_length` of the
    /// most recent messages when a length is asked for.
    pub fn to_json(&self, history_length: Option<usize>) -> Value {
        let mut status = json!({
            "state": self.state.wire(),
            "timestamp": rfc3339_millis(unix_ms(self.updated)),
        });
        if let Some(m) = &self.status_message {
            status["message"] = m.clone();
        }
        let keep = history_length
            .unwrap_or(self.history.len())
            .min(self.history.len());
        let mut task = json!({
            "id": self.id,
            "contextId": self.context_id,
            "status": status,
            "artifacts": self.artifacts,
            "history": self.history[self.history.len() - keep..],
        });
        if let Some(m) = &self.metadata {
            task["metadata"] = Value::Object(m.clone());
        }
        task
    }
}

#[derive(Default)]
struct Table {
    by_id: HashMap<String, Task>,
    /// Ids, oldest first.
    order: VecDeque<String>,
}

/// The bounded task table.
pub struct TaskStore {
    table: Mutex<Table>,
    cap: usize,
}

impl TaskStore {
    pub fn new(cap: usize) -> Self {
        TaskStore {
            table: Mutex::default(),
            cap: cap.max(1),
        }
    }

    /// Inserts or replaces a task; a task new to the table may push the
    /// oldest one out.
    pub fn put(&self, task: Task) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if !table.by_id.contains_key(&task.id) {
            table.order.push_back(task.id.clone());
        }
        table.by_id.insert(task.id.clone(), task);
        while table.order.len() > self.cap {
            if let Some(old) = table.order.pop_front() {
                table.by_id.remove(&old);
            }
        }
    }

    /// The task, if it exists and belongs to `owner`: another caller's task
    /// is answered exactly like one that does not exist.
    pub fn get(&self, id: &str, owner: Option<&str>) -> Option<Task> {
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table
            .by_id
            .get(id)
            .filter(|t| t.owner.as_deref() == owner)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::a2a::parse_send;

    fn task(owner: Option<&str>) -> Task {
        let p =
            json!({"message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "x"}]}});
        let p = parse_send(p.as_object().unwrap()).unwrap();
        Task::start(p.message, owner.map(str::to_string))
    }

    #[test]
    fn table_keeps_the_newest_and_checks_the_owner() {
        let store = TaskStore::new(2);
        let tasks: Vec<Task> = (0..3).map(|_| task(Some("alice"))).collect();
        for t in &tasks {
            store.put(t.clone());
        }
        assert!(store.get(&tasks[0].id, Some("alice")).is_none());
        assert!(store.get(&tasks[2].id, Some("alice")).is_some());
        assert!(store.get(&tasks[2].id, Some("bob")).is_none());
        assert!(store.get(&tasks[2].id, None).is_none());
        // Replacing a task does not count it twice.
        store.put(tasks[2].clone().finish(Outcome::failed("x")));
        assert!(store.get(&tasks[1].id, Some("alice")).is_some());
    }

    #[test]
    fn wire_shape() {
        let t = task(None);
        let working = t.to_json(None);
        assert_eq!(working["status"]["state"], "TASK_STATE_WORKING");
        assert_eq!(working["history"][0]["taskId"], json!(t.id));
        assert_eq!(working["history"][0]["contextId"], json!(t.context_id));
        let done = t.finish(Outcome::completed(
            "done",
            vec![artifact("plan", vec![text_part("1. a")], None)],
            Map::new(),
        ));
        let v = done.to_json(Some(1));
        assert_eq!(v["status"]["state"], "TASK_STATE_COMPLETED");
        assert_eq!(v["status"]["message"]["role"], "ROLE_AGENT");
        assert_eq!(v["status"]["message"]["parts"][0]["text"], "done");
        assert_eq!(v["artifacts"][0]["name"], "plan");
        assert_eq!(v["history"].as_array().unwrap().len(), 1);
        assert_eq!(v["metadata"], json!({}));
    }

    #[test]
    fn timestamps_for_any_clock() {
        let mut t = task(None);
        let day = std::time::Duration::from_secs(86_400);
        for (clock, want) in [
            (UNIX_EPOCH - day, "1970-01-01T00:00:00.000Z"),
            (UNIX_EPOCH + day * 3_000_000, "9999-12-31T23:59:59.999Z"),
        ] {
            t.updated = clock;
            assert_eq!(t.to_json(None)["status"]["timestamp"], want);
        }
    }
}
