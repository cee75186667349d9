//! Task lifecycle: create, hand to the agent, record the outcome.
//!
//! A task is stored `submitted` before anything else happens, moves to
//! `working` when the exchange starts, and ends in whatever the exchange
//! produced; every step is a conditional update in the store, so a task that
//! was canceled (or failed as interrupted) meanwhile keeps that state.
//! The exchange always runs on its own tokio task: a blocking caller waits
//! for it, a non-blocking caller gets the `submitted` task back at once,
//! and a caller that disconnects does not abort it. A task the agent left
//! `input-required` (or `auth-required`) takes a follow-up message that
//! names it, which goes to the agent's own task id.
//!
//! An agent whose card declares streaming is asked for a stream: each
//! status message and artifact it streams is recorded as it passes and
//! handed to the task's followers ([`crate::task_events`]). A streaming
//! send subscribes its caller before the exchange starts, so its stream
//! misses nothing from `submitted` on.

use std::time::Duration;

use attach_contract::delegation::ActorChain;
use serde_json::{Value, json};

use crate::a2a::ProtocolVersion;
use tokio::sync::mpsc;

use crate::a2a::forward::{OnBehalfOf, Progress};
use crate::a2a::handoff::Handoff;
use crate::a2a::model::{Message, Role, Task, TaskState, now_ms};
use crate::a2a::reply::merge_artifact;
use crate::auth::Caller;
use crate::config::AgentConfig;
use crate::error::{AppError, AppResult};
use crate::push::NewConfig;
use crate::state::AppState;
use crate::store::{Completion, ExchangeMeta, MemoryEvent};
use crate::task_events::Subscription;

/// Slack added to an agent's timeout before an active task counts as
/// orphaned (covers the store writes around the exchange).
pub const DEADLINE_GRACE: Duration = Duration::from_secs(15);
pub const INTERRUPTED: &str =
    "interrupted: the service handling this task stopped before it finished";
/// The kinds of the memory events every task leaves: what was sent, and
/// how it ended. Only the service writes them.
pub const TASK_SENT: &str = "task_sent";
pub const TASK_RESULT: &str = "task_result";

/// A duration in milliseconds, the longest ones as `i64::MAX`: a timeout
/// or TTL configured past what an `i64` holds means "never", not a
/// wrapped-around negative span.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// When a task `agent` starts working on at `now` counts as orphaned.
fn deadline(now: i64, agent: &AgentConfig) -> i64 {
    now.saturating_add(millis(agent.timeout.saturating_add(DEADLINE_GRACE)))
}

pub struct Submission {
    pub message: Message,
    /// The input as plain JSON (what `http` agents receive).
    pub input: Value,
    pub wait: bool,
    /// A push config sent with the message (already vetted), registered
    /// for its task before the task's first state is pushed.
    pub push: Option<(NewConfig, ProtocolVersion)>,
}

fn store_err(state: &AppState, e: sqlx::Error) -> AppError {
    state.metrics.store_error();
    AppError::from(e)
}

/// What an A2A send answers (A2A 1.0 section 3.1.1): the task, or the
/// agent's own message when the agent answered with one instead of a task.
#[derive(Debug)]
pub enum Sent {
    Task(Box<Task>),
    Message(Message),
}

/// An A2A send. A new message the agent answers with a direct message,
/// while the caller waits, leaves no task behind: the caller gets the
/// message (in its context, naming no task), the gateway's record of the
/// exchange is removed, and its memory events stay. A message that
/// continues a task keeps that task and is answered with the message.
pub async fn send(
    state: &AppState,
    caller: &Caller,
    agent: &AgentConfig,
    s: Submission,
) -> AppResult<Sent> {
    let continues_a_task = s.message.task_id.is_some();
    let mode = if s.wait { Mode::Wait } else { Mode::Detach };
    let started = submit_inner(state, caller, agent, s, mode).await?;
    let task = started.task;
    let Some(mut message) = started.direct else {
        return Ok(Sent::Task(Box::new(task)));
    };
    if !continues_a_task {
        state
            .store
            .delete_task(&caller.user, &task.id)
            .await
            .map_err(|e| store_err(state, e))?;
        message.task_id = None;
    }
    Ok(Sent::Message(message))
}

/// A send that is always answered with the gateway's task (the plain
/// routes, which have no message answer).
pub async fn submit(
    state: &AppState,
    caller: &Caller,
    agent: &AgentConfig,
    s: Submission,
) -> AppResult<Task> {
    let mode = if s.wait { Mode::Wait } else { Mode::Detach };
    submit_inner(state, caller, agent, s, mode)
        .await
        .map(|started| started.task)
}

/// A streaming send (A2A 1.0 section 3.1.2): the task as submitted, and a
/// subscription to it taken before its exchange started. The task stays
/// whatever the agent answers: a direct message ends it completed, with
/// the message as its status.
pub async fn send_streaming(
    state: &AppState,
    caller: &Caller,
    agent: &AgentConfig,
    s: Submission,
) -> AppResult<(Task, Subscription)> {
    let started = submit_inner(state, caller, agent, s, Mode::Follow).await?;
    let subscription = started
        .subscription
        .ok_or_else(|| AppError::Internal("the task's stream did not open".into()))?;
    Ok((started.task, subscription))
}

/// How the caller of a send is answered.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// At once, with the task as submitted.
    Detach,
    /// When the exchange ends.
    Wait,
    /// At once, with a subscription to everything that follows.
    Follow,
}

/// What a send hands back to its caller.
struct Started {
    /// The task as it stands when the caller is answered.
    task: Task,
    /// The agent's direct message, when its answer was one and the caller
    /// waited for it.
    direct: Option<Message>,
    subscription: Option<Subscription>,
}

async fn submit_inner(
    state: &AppState,
    caller: &Caller,
    agent: &AgentConfig,
    s: Submission,
    mode: Mode,
) -> AppResult<Started> {
    if s.message.role != Role::User {
        return Err(AppError::InvalidParams(
            "message.role must be the user's".into(),
        ));
    }
    // A hand-off the chain rules refuse is refused before anything exists.
    let handoff = Handoff::for_task(state.issuer.as_ref(), caller, agent)?;
    if let Some(id) = s.message.task_id.clone() {
        return resume(state, caller, agent, &id, s, mode, handoff).await;
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
        deadline_ms: deadline(now, agent),
        agent_task_id: None,
        actors: caller.actors.clone(),
        delegated_to: handoff.as_ref().map(|h| h.did().to_string()),
    };
    // Subscribed before anything happens to the task, a follower misses
    // nothing of it.
    let subscription = (mode == Mode::Follow).then(|| state.events.subscribe(&id));
    state
        .store
        .insert_task(&task)
        .await
        .map_err(|e| store_err(state, e))?;
    state.metrics.transition(TaskState::Submitted);
    register_push(state, caller, &task.id, s.push).await?;
    state.task_changed(&task);
    start(state, caller, agent, task, mode, subscription, handoff).await
}

/// A follow-up message for a task waiting on its owner: the task goes back
/// to `working` and the message goes to the agent's same task. Only the
/// owner's tasks with this agent are found; a task in any other state
/// refuses the message.
async fn resume(
    state: &AppState,
    caller: &Caller,
    agent: &AgentConfig,
    id: &str,
    s: Submission,
    mode: Mode,
    handoff: Option<Handoff>,
) -> AppResult<Started> {
    let mut task = state
        .store
        .get_task(&caller.user, id, Some(&agent.name))
        .await
        .map_err(|e| store_err(state, e))?
        .ok_or(AppError::TaskNotFound)?;
    if s.message
        .context_id
        .as_ref()
        .is_some_and(|c| *c != task.context_id)
    {
        return Err(AppError::InvalidParams(
            "message.contextId does not match the task's context".into(),
        ));
    }
    if !task.state.can_become(TaskState::Working) || task.state == TaskState::Submitted {
        return Err(AppError::UnsupportedOperation(format!(
            "task is {}; only a task waiting for input takes another message",
            task.state.as_str()
        )));
    }
    register_push(state, caller, id, s.push).await?;
    let mut message = s.message;
    message.context_id = Some(task.context_id.clone());
    task.history.push(message);
    let now = now_ms();
    let until = deadline(now, agent);
    let subscription = (mode == Mode::Follow).then(|| state.events.subscribe(id));
    let resumed = state
        .store
        .resume(&caller.user, id, &task.history, until, now)
        .await
        .map_err(|e| store_err(state, e))?;
    if !resumed {
        return Err(AppError::UnsupportedOperation(
            "task is no longer waiting for input".into(),
        ));
    }
    state.metrics.transition(TaskState::Working);
    task.state = TaskState::Working;
    task.input = s.input;
    task.updated_ms = now;
    task.deadline_ms = until;
    state.task_changed(&task);
    start(state, caller, agent, task, mode, subscription, handoff).await
}

async fn register_push(
    state: &AppState,
    caller: &Caller,
    task_id: &str,
    push: Option<(NewConfig, ProtocolVersion)>,
) -> AppResult<()> {
    if let Some((config, version)) = push {
        crate::push::rpc::save(state, caller, task_id, config, version).await?;
    }
    Ok(())
}

/// Records what was sent, then runs the task's exchange on its own tokio
/// task; waits for it when the caller asked to block.
async fn start(
    state: &AppState,
    caller: &Caller,
    agent: &AgentConfig,
    task: Task,
    mode: Mode,
    subscription: Option<Subscription>,
    handoff: Option<Handoff>,
) -> AppResult<Started> {
    record_memory(
        state,
        memory_event(
            caller,
            &caller.actors,
            &task.id,
            TASK_SENT,
            json!({"agent": agent.name, "input": task.input}),
        ),
    )
    .await;
    let id = task.id.clone();
    if let Ok(mut set) = state.in_flight.lock() {
        set.insert(id.clone());
    }
    let handle = tokio::spawn(run(
        state.clone(),
        caller.clone(),
        agent.clone(),
        task.clone(),
        handoff,
    ));
    if mode != Mode::Wait {
        return Ok(Started {
            task,
            direct: None,
            subscription,
        });
    }
    let finished = handle
        .await
        .map_err(|_| AppError::Internal("the task's exchange stopped unexpectedly".into()))?;
    if let Some((task, direct)) = finished {
        let direct = direct.then(|| task.status_message.clone()).flatten();
        return Ok(Started {
            task,
            direct,
            subscription,
        });
    }
    // Someone else moved the task on (a cancel, a shutdown): the store knows.
    let task = state
        .store
        .get_task(&caller.user, &id, None)
        .await
        .map_err(|e| store_err(state, e))?
        .ok_or(AppError::TaskNotFound)?;
    Ok(Started {
        task,
        direct: None,
        subscription,
    })
}

/// The exchange for one task, from `working` to its end state; the task as
/// recorded, when this exchange was the one that ended it, and whether the
/// agent answered with a direct message rather than a task.
async fn run(
    state: AppState,
    caller: Caller,
    agent: AgentConfig,
    task: Task,
    handoff: Option<Handoff>,
) -> Option<(Task, bool)> {
    let id = task.id.clone();
    let finished = run_inner(&state, &caller, &agent, task, handoff.as_ref()).await;
    if let Ok(mut set) = state.in_flight.lock() {
        set.remove(&id);
    }
    finished
}

async fn run_inner(
    state: &AppState,
    caller: &Caller,
    agent: &AgentConfig,
    mut task: Task,
    handoff: Option<&Handoff>,
) -> Option<(Task, bool)> {
    // A resumed task is `working` already; a new one starts here.
    if task.state == TaskState::Submitted {
        let started = now_ms();
        match state
            .store
            .transition(&task.id, TaskState::Working, started)
            .await
        {
            Ok(true) => {
                state.metrics.transition(TaskState::Working);
                task.state = TaskState::Working;
                task.updated_ms = started;
                state.task_changed(&task);
            }
            Ok(false) => return None, // canceled before it started
            Err(e) => {
                state.metrics.store_error();
                eprintln!(
                    "attach-a2a: cannot start task {}: {}",
                    task.id,
                    crate::error::one_line(&e.to_string())
                );
                return None;
            }
        }
    }
    let message = task.history.last()?;
    let who = OnBehalfOf {
        caller,
        context_id: &task.context_id,
        task_id: &task.id,
        agent_task_id: task.agent_task_id.as_deref(),
        handoff,
    };
    let exchange = if streams(state, agent).await {
        let (progress, mut reports) = mpsc::channel(PROGRESS_BACKLOG);
        let mut live = task.clone();
        let record = async {
            while let Some(report) = reports.recv().await {
                record_progress(state, &mut live, report).await;
            }
        };
        let forward = state
            .forwarder
            .run(agent, &who, message, &task.input, Some(progress));
        tokio::join!(forward, record).0
    } else {
        state
            .forwarder
            .run(agent, &who, message, &task.input, None)
            .await
    };
    let completion = exchange.completion;
    let mut history = task.history.clone();
    if let Some(reply) = &completion.reply {
        history.push(reply.clone());
    }
    let now = now_ms();
    match state
        .store
        .complete(
            &task.id,
            &completion,
            &history,
            now,
            &memory_event(
                caller,
                handoff.map_or(&caller.actors, Handoff::chain),
                &task.id,
                TASK_RESULT,
                result_content(&completion),
            ),
        )
        .await
    {
        Ok(true) => {
            state.metrics.transition(completion.state);
            task.state = completion.state;
            task.history = history;
            task.artifacts = completion.artifacts;
            task.status_message = completion.reply;
            task.result = completion.result;
            task.error = completion.error;
            task.updated_ms = now;
            if completion.agent_task_id.is_some() {
                task.agent_task_id = completion.agent_task_id;
            }
            state.task_changed(&task);
            Some((task, exchange.direct_message))
        }
        Ok(false) => None,
        Err(e) => {
            state.metrics.store_error();
            eprintln!(
                "attach-a2a: cannot record task {}: {}",
                task.id,
                crate::error::one_line(&e.to_string())
            );
            None
        }
    }
}

/// Reports of a streaming exchange not yet recorded before the agent's
/// stream waits for the store.
const PROGRESS_BACKLOG: usize = 32;

/// Whether `agent` is asked for a stream: an A2A agent whose own card
/// declares streaming.
async fn streams(state: &AppState, agent: &AgentConfig) -> bool {
    if agent.kind != crate::config::AgentKind::A2a {
        return false;
    }
    state
        .cards
        .downstream(&state.card_client, agent)
        .await
        .is_some_and(|card| card.pointer("/capabilities/streaming") == Some(&Value::Bool(true)))
}

/// Records what a streaming agent reported while working, unless the task
/// moved on meanwhile, and hands it to the task's followers.
async fn record_progress(state: &AppState, live: &mut Task, report: Progress) {
    let artifact = match report {
        // Still working and nothing to say: nothing changed.
        Progress::Status(None) => return,
        Progress::Status(message) => {
            live.status_message = message;
            None
        }
        Progress::Artifact {
            artifact,
            append,
            last_chunk,
        } => {
            merge_artifact(&mut live.artifacts, artifact.clone(), append);
            Some((artifact, append, last_chunk))
        }
    };
    let now = now_ms();
    match state
        .store
        .progress(&live.id, live.status_message.as_ref(), &live.artifacts, now)
        .await
    {
        Ok(true) => {
            live.updated_ms = now;
            match artifact {
                Some((artifact, append, last_chunk)) => {
                    state.events.artifact(live, &artifact, append, last_chunk)
                }
                None => state.task_changed(live),
            }
        }
        Ok(false) => {}
        Err(e) => {
            state.metrics.store_error();
            eprintln!(
                "attach-a2a: cannot record progress of task {}: {}",
                live.id,
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

/// The service's own event about a task, in its caller's memory, by
/// `actor`: who asked for the task (what was sent), or who acted on it
/// (how it ended: the agent it was handed to first).
fn memory_event(
    caller: &Caller,
    actor: &ActorChain,
    task_id: &str,
    kind: &str,
    content: Value,
) -> MemoryEvent {
    MemoryEvent {
        id: uuid::Uuid::new_v4().to_string(),
        owner: caller.user.clone(),
        session: caller.session.clone(),
        kind: kind.into(),
        role: Some("system".into()),
        task_id: Some(task_id.into()),
        content,
        created_ms: now_ms(),
        meta: ExchangeMeta::default(),
        actor: actor.clone(),
        tool: None,
    }
}

async fn record_memory(state: &AppState, event: MemoryEvent) {
    if let Err(e) = state.store.insert_memory(&event).await {
        state.metrics.store_error();
        eprintln!(
            "attach-a2a: cannot record {} for task {}: {}",
            event.kind,
            event.task_id.as_deref().unwrap_or_default(),
            crate::error::one_line(&e.to_string())
        );
    }
}

/// Fails orphaned tasks and removes expired rows; run at start-up and then
/// every minute.
pub async fn housekeeping(state: &AppState) {
    let now = now_ms();
    match state.store.fail_overdue(now, INTERRUPTED).await {
        Ok(failed) => {
            for task in &failed {
                state.metrics.transition(TaskState::Failed);
                state.task_changed(task);
            }
            if !failed.is_empty() {
                eprintln!(
                    "attach-a2a: marked {} interrupted task(s) failed",
                    failed.len()
                );
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
    let cutoff = now.saturating_sub(millis(state.config.task_ttl));
    let expired = state.store.delete_expired(cutoff).await;
    let orphans = state.store.delete_orphan_push_configs().await;
    if let Err(e) = expired.and(orphans.map(|_| (0, 0))) {
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
            Ok(failed) => {
                // Their followers see the end instead of a broken stream.
                for task in &failed {
                    state.task_changed(task);
                }
                eprintln!(
                    "attach-a2a: stopped with {} task(s) unfinished; marked failed",
                    failed.len()
                );
            }
            Err(e) => eprintln!(
                "attach-a2a: cannot mark unfinished tasks: {}",
                crate::error::one_line(&e.to_string())
            ),
        }
    }
}
