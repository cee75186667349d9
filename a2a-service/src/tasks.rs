//! Task lifecycle: create, hand to the agent, record the outcome.
//!
//! A task is stored `submitted` before anything else happens, moves to
//! `working` when the exchange starts, and ends in whatever the exchange
//! produced; every step is a conditional update in the store, so a task that
//! was canceled (or failed as interrupted) meanwhile keeps that state.
//! The exchange always runs on its own tokio task: a blocking caller waits
//! for it, a non-blocking caller gets the `submitted` task back at once,
//! and a caller that disconnects does not abort it.

use std::time::Duration;

use serde_json::{Value, json};

use crate::a2a::forward::OnBehalfOf;
use crate::a2a::model::{Message, Role, Task, TaskState, now_ms};
use crate::auth::Caller;
use crate::config::AgentConfig;
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::store::{Completion, MemoryEvent};

/// Slack added to an agent's timeout before an active task counts as
/// orphaned (covers the store writes around the exchange).
pub const DEADLINE_GRACE: Duration = Duration::from_secs(15);
pub const INTERRUPTED: &str =
    "interrupted: the service handling this task stopped before it finished";

pub struct Submission {
    pub message: Message,
    /// The input as plain JSON (what `http` agents receive).
    pub input: Value,
    pub wait: bool,
}

fn store_err(state: &AppState, e: sqlx::Error) -> AppError {
    state.metrics.store_error();
    AppError::from(e)
}

pub async fn submit(
    state: &AppState,
    caller: &Caller,
    agent: &AgentConfig,
    s: Submission,
) -> AppResult<Task> {
    if s.message.role != Role::User {
        return Err(AppError::InvalidParams(
            "message.role must be the user's".into(),
        ));
    }
    if s.message.task_id.is_some() {
        return Err(AppError::UnsupportedOperation(
            "continuing an existing task is not supported; send without taskId to start a new task"
                .into(),
        ));
    }
    let now = now_ms();
    let id = uuid::Uuid::new_v4().to_string();
    let context_id = s
        .message
        .context_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let mut message = s.message;
    message.context_id = Some(context_id.clone());
    message.task_id = Some(id.clone());
    let task = Task {
        id: id.clone(),
        context_id,
        owner: caller.user.clone(),
        session: caller.session.clone(),
        agent: agent.name.clone(),
        state: TaskState::Submitted,
        input: s.input,
        history: vec![message],
        artifacts: Vec::new(),
        status_message: None,
        result: None,
        error: None,
        created_ms: now,
        updated_ms: now,
        deadline_ms: now + (agent.timeout + DEADLINE_GRACE).as_millis() as i64,
    };
    state
        .store
        .insert_task(&task)
        .await
        .map_err(|e| store_err(state, e))?;
    state.metrics.transition(TaskState::Submitted);
    record_memory(
        state,
        caller,
        &task.id,
        "task_sent",
        json!({"agent": agent.name, "input": task.input}),
    )
    .await;

    if let Ok(mut set) = state.in_flight.lock() {
        set.insert(task.id.clone());
    }
    let handle = tokio::spawn(run(
        state.clone(),
        caller.clone(),
        agent.clone(),
        task.clone(),
    ));
    if !s.wait {
        return Ok(task);
    }
    handle
        .await
        .map_err(|_| AppError::Internal("the task's exchange stopped unexpectedly".into()))?;
    state
        .store
        .get_task(&caller.user, &id, None)
        .await
        .map_err(|e| store_err(state, e))?
        .ok_or(AppError::TaskNotFound)
}

/// The exchange for one task, from `working` to its end state.
async fn run(state: AppState, caller: Caller, agent: AgentConfig, task: Task) {
    let id = task.id.clone();
    run_inner(&state, &caller, &agent, task).await;
    if let Ok(mut set) = state.in_flight.lock() {
        set.remove(&id);
    }
}

async fn run_inner(state: &AppState, caller: &Caller, agent: &AgentConfig, task: Task) {
    match state
        .store
        .transition(&task.id, TaskState::Working, now_ms())
        .await
    {
        Ok(true) => state.metrics.transition(TaskState::Working),
        Ok(false) => return, // canceled before it started
        Err(e) => {
            state.metrics.store_error();
            eprintln!(
                "attach-a2a: cannot start task {}: {}",
                task.id,
                crate::error::one_line(&e.to_string())
            );
            return;
        }
    }
    let Some(message) = task.history.first() else {
        return;
    };
    let who = OnBehalfOf {
        caller,
        context_id: &task.context_id,
        task_id: &task.id,
    };
    let completion = state.forwarder.run(agent, &who, message, &task.input).await;
    let mut history = task.history.clone();
    if let Some(reply) = &completion.reply {
        history.push(reply.clone());
    }
    match state
        .store
        .complete(&task.id, &completion, &history, now_ms())
        .await
    {
        Ok(true) => {
            state.metrics.transition(completion.state);
            record_memory(
                state,
                caller,
                &task.id,
                "task_result",
                result_content(&completion),
            )
            .await;
        }
        Ok(false) => {}
        Err(e) => {
            state.metrics.store_error();
            eprintln!(
                "attach-a2a: cannot record task {}: {}",
                task.id,
                crate::error::one_line(&e.to_string())
            );
        }
    }
}

fn result_content(c: &Completion) -> Value {
    match &c.error {
        Some(e) => json!({"state": c.state.as_str(), "error": e}),
        None => json!({"state": c.state.as_str(), "result": c.result}),
    }
}

async fn record_memory(
    state: &AppState,
    caller: &Caller,
    task_id: &str,
    kind: &str,
    content: Value,
) {
    let event = MemoryEvent {
        id: uuid::Uuid::new_v4().to_string(),
        owner: caller.user.clone(),
        session: caller.session.clone(),
        kind: kind.into(),
        role: Some("system".into()),
        task_id: Some(task_id.into()),
        content,
        created_ms: now_ms(),
    };
    if let Err(e) = state.store.insert_memory(&event).await {
        state.metrics.store_error();
        eprintln!(
            "attach-a2a: cannot record {kind} for task {task_id}: {}",
            crate::error::one_line(&e.to_string())
        );
    }
}

/// Fails orphaned tasks and removes expired rows; run at start-up and then
/// every minute.
pub async fn housekeeping(state: &AppState) {
    let now = now_ms();
    match state.store.fail_overdue(now, INTERRUPTED).await {
        Ok(n) => {
            for _ in 0..n {
                state.metrics.transition(TaskState::Failed);
            }
            if n > 0 {
                eprintln!("attach-a2a: marked {n} interrupted task(s) failed");
            }
        }
        Err(e) => {
            state.metrics.store_error();
            eprintln!(
                "attach-a2a: interrupted-task sweep failed: {}",
                crate::error::one_line(&e.to_string())
            );
        }
    }
    let cutoff = now - state.config.task_ttl.as_millis() as i64;
    if let Err(e) = state.store.delete_expired(cutoff).await {
        state.metrics.store_error();
        eprintln!(
            "attach-a2a: expiry sweep failed: {}",
            crate::error::one_line(&e.to_string())
        );
    }
}

/// At shutdown: give exchanges in flight `grace` to finish, then fail the
/// rest so no client waits on a task nobody is running.
pub async fn drain(state: &AppState, grace: Duration) {
    let until = tokio::time::Instant::now() + grace;
    while !state.in_flight_ids().is_empty() && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left = state.in_flight_ids();
    if !left.is_empty() {
        match state.store.fail_tasks(&left, now_ms(), INTERRUPTED).await {
            Ok(n) => eprintln!("attach-a2a: stopped with {n} task(s) unfinished; marked failed"),
            Err(e) => eprintln!(
                "attach-a2a: cannot mark unfinished tasks: {}",
                crate::error::one_line(&e.to_string())
            ),
        }
    }
}
