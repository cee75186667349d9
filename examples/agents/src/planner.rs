//! The planner: asks the model for a short plan, stores the plan as one of
//! the caller's memory documents, and hands the request to the coder with
//! the document's id, all through the gateway and as the caller.
//!
//! Its completed task carries the status message "Plan stored as <mem_id>;
//! the coder answered.", the artifacts `plan` (the plan's text; metadata
//! `mem_id`) and `code` (the coder's answer; metadata `coder_task_id`), and
//! task metadata `{mem_id, coder_task_id}`. The ids are repeated on the
//! artifacts because the companion service keeps artifacts as they are but
//! not a task's metadata.

use serde_json::{Map, Value, json};

use crate::a2a::{check_part, text_part};
use crate::gateway::Gateway;
use crate::tasks::{Job, Outcome, artifact};

/// The gateway's name for the agent the planner hands off to.
pub const CODER: &str = "coder";

const SYSTEM_PROMPT: &str = "You are a planning assistant. Answer with a short numbered plan \
of at most 5 steps for the user's request, one sentence per step. Do not write any code.";

pub async fn run(gateway: &Gateway, job: Job) -> Outcome {
    steps(gateway, job).await.unwrap_or_else(|stop| stop)
}

async fn steps(gateway: &Gateway, job: Job) -> Result<Outcome, Outcome> {
    let request = job.texts.join("\n").trim().to_string();
    if request.is_empty() {
        return Err(Outcome::rejected(
            "the message has no text to plan for: send the request as a text part",
        ));
    }
    let auth = job
        .caller
        .as_ref()
        .ok_or_else(|| Outcome::failed(gateway.no_caller()))?;

    let plan = gateway.chat(auth, SYSTEM_PROMPT, &request).await?;
    let mem_id = gateway
        .remember(auth, "plan", json!({"request": request, "plan": plan}))
        .await?;
    let message = json!({
        "messageId": uuid::Uuid::new_v4().to_string(),
        "role": "ROLE_USER",
        "contextId": job.context_id,
        "parts": [text_part(&request), {"data": {"mem_id": mem_id}}],
    });
    let coder_task = gateway.hand_off(auth, CODER, message).await?;

    let coder_task_id = coder_task
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_string);
    let code = code_parts(&coder_task);
    if code.is_empty() {
        return Err(Outcome::failed(format!(
            "the {CODER} completed its task without any code"
        )));
    }
    let mut metadata = Map::new();
    metadata.insert("mem_id".into(), json!(mem_id));
    metadata.insert("coder_task_id".into(), json!(coder_task_id));
    Ok(Outcome::completed(
        format!("Plan stored as {mem_id}; the {CODER} answered."),
        vec![
            artifact(
                "plan",
                vec![text_part(plan)],
                Some(json!({"mem_id": mem_id})),
            ),
            artifact("code", code, Some(json!({"coder_task_id": coder_task_id}))),
        ],
        metadata,
    ))
}

/// The coder's answer: the parts of its `code` artifacts, else of all its
/// artifacts, else of its status message. Parts that are not valid 1.0
/// parts are left out, since they would spoil this task's own reply.
fn code_parts(task: &Value) -> Vec<Value> {
    let artifacts = task
        .get("artifacts")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let parts_of = |value: &Value| -> Vec<Value> {
        value
            .get("parts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|p| check_part(p).is_ok())
            .cloned()
            .collect()
    };
    let named: Vec<Value> = artifacts
        .iter()
        .filter(|a| a.get("name").and_then(Value::as_str) == Some("code"))
        .flat_map(parts_of)
        .collect();
    if !named.is_empty() {
        return named;
    }
    let all: Vec<Value> = artifacts.iter().flat_map(parts_of).collect();
    if !all.is_empty() {
        return all;
    }
    task.pointer("/status/message")
        .map(parts_of)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_comes_from_the_code_artifact_first() {
        let task = json!({"artifacts": [
            {"name": "notes", "parts": [{"text": "n"}]},
            {"name": "code", "parts": [{"text": "c"}, {"kind": "text", "text": "bad"}]},
        ]});
        assert_eq!(code_parts(&task), [json!({"text": "c"})]);
        let task = json!({"artifacts": [{"name": "response", "parts": [{"text": "r"}]}]});
        assert_eq!(code_parts(&task), [json!({"text": "r"})]);
        let task = json!({"status": {"message": {"parts": [{"text": "s"}]}}});
        assert_eq!(code_parts(&task), [json!({"text": "s"})]);
        assert!(code_parts(&json!({})).is_empty());
    }
}
