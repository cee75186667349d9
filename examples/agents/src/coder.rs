//! The coder: reads the plan a message points to (a memory document of the
//! caller's, named by `mem_id`), asks the model for code that follows it,
//! and answers with the artifact `code`, all through the gateway and as the
//! caller. Since the document is read as the caller, a `mem_id` of another
//! user's plan reads as not found.

use serde_json::{Map, Value, json};

use crate::a2a::{one_line, text_part};
use crate::gateway::Gateway;
use crate::tasks::{Job, Outcome, artifact};

const SYSTEM_PROMPT: &str = "You are a programmer. Write the code that carries out the plan \
for the user's request, following the plan's steps. Answer with one fenced code block and \
nothing else.";

/// Where the message names the plan: `{"data": {"mem_id": "<id>"}}`, or,
/// for clients that send text only, a line `mem_id: <id>`.
enum PlanRef {
    Found(uuid::Uuid),
    Invalid(String),
    Missing,
}

fn plan_ref(job: &Job) -> PlanRef {
    let from_data = job
        .data
        .iter()
        .find_map(|d| d.get("mem_id").and_then(Value::as_str));
    let from_text = || {
        job.texts
            .iter()
            .flat_map(|t| t.lines())
            .find_map(|line| line.trim().strip_prefix("mem_id:"))
            .map(str::trim)
    };
    match from_data.or_else(from_text) {
        None => PlanRef::Missing,
        Some(id) => uuid::Uuid::parse_str(id)
            .map(PlanRef::Found)
            .unwrap_or_else(|_| PlanRef::Invalid(one_line(id))),
    }
}

/// The request in the message's text, without the `mem_id:` line.
fn request_text(job: &Job) -> String {
    job.texts
        .iter()
        .flat_map(|t| t.lines())
        .filter(|line| !line.trim().starts_with("mem_id:"))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

pub async fn run(gateway: &Gateway, job: Job) -> Outcome {
    steps(gateway, job).await.unwrap_or_else(|stop| stop)
}

async fn steps(gateway: &Gateway, job: Job) -> Result<Outcome, Outcome> {
    let mem_id = match plan_ref(&job) {
        PlanRef::Found(id) => id,
        PlanRef::Invalid(id) => {
            return Err(Outcome::rejected(format!(
                "mem_id {id:?} is not a memory document id (a UUID)"
            )));
        }
        PlanRef::Missing => {
            return Err(Outcome::rejected(
                "the message names no plan: send a data part {\"mem_id\": \"<id>\"} \
                 (or a text line \"mem_id: <id>\") of a plan stored in memory",
            ));
        }
    };
    let auth = job
        .caller
        .as_ref()
        .ok_or_else(|| Outcome::failed(gateway.no_caller()))?;

    let document = gateway
        .recall(auth, &mem_id)
        .await?
        .ok_or_else(|| Outcome::failed(format!("plan {mem_id} not found for this user")))?;
    match document.get("kind").and_then(Value::as_str) {
        None | Some("plan") => {}
        Some(kind) => {
            return Err(Outcome::failed(format!(
                "memory document {mem_id} is a {:?} document, not a plan",
                one_line(kind)
            )));
        }
    }
    let plan = match document.pointer("/content/plan").and_then(Value::as_str) {
        Some(plan) if !plan.trim().is_empty() => plan.trim(),
        _ => {
            return Err(Outcome::failed(format!(
                "memory document {mem_id} holds no plan (content.plan)"
            )));
        }
    };
    let mut request = request_text(&job);
    if request.is_empty() {
        request = document
            .pointer("/content/request")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim()
            .to_string();
    }
    let prompt = if request.is_empty() {
        format!("Plan:\n{plan}")
    } else {
        format!("Request: {request}\n\nPlan:\n{plan}")
    };
    let code = gateway.chat(auth, SYSTEM_PROMPT, &prompt).await?;

    let mut metadata = Map::new();
    metadata.insert("mem_id".into(), json!(mem_id.to_string()));
    Ok(Outcome::completed(
        format!("Code written from plan {mem_id}."),
        vec![artifact(
            "code",
            vec![text_part(code)],
            Some(json!({"mem_id": mem_id.to_string()})),
        )],
        metadata,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0b9f6c1e-5d0a-4c6e-9a43-2f1d8e7b6a55";

    fn job(texts: &[&str], data: Vec<Value>) -> Job {
        Job {
            texts: texts.iter().map(|t| t.to_string()).collect(),
            data,
            caller: None,
            context_id: "c".into(),
        }
    }

    #[test]
    fn finds_the_plan_in_data_or_text() {
        let j = job(&["write it"], vec![json!({"mem_id": ID})]);
        assert!(matches!(plan_ref(&j), PlanRef::Found(id) if id.to_string() == ID));
        let j = job(&[&format!("write it\n  mem_id: {ID}\n")], vec![]);
        assert!(matches!(plan_ref(&j), PlanRef::Found(id) if id.to_string() == ID));
        assert_eq!(request_text(&j), "write it");
        let j = job(&["x"], vec![json!({"mem_id": "../api/tags"})]);
        assert!(matches!(plan_ref(&j), PlanRef::Invalid(_)));
        let j = job(&["x"], vec![json!({"other": 1})]);
        assert!(matches!(plan_ref(&j), PlanRef::Missing));
    }
}
