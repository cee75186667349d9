//! A2A streams (sections 3.1.2 and 3.1.6): a streaming send, and a
//! subscription to a task already running, both as the sequence of events
//! a client reads, in either protocol version's shape.
//!
//! A stream opens with the task as it stands, then carries each status
//! change and each artifact the agent streams, in order, and ends after
//! the event that leaves the task terminal or waiting on its owner
//! (input-required, auth-required). A finished task has nothing to follow:
//! subscribing to one is refused with UnsupportedOperationError, before
//! any event. A reader that falls behind is given the task as it stands
//! again, from the store. A client that goes away ends its stream only:
//! the task runs on, and its subscription is released.

use serde_json::Value;
use tokio::sync::mpsc;

use crate::a2a::ProtocolVersion;
use crate::a2a::model::{Task, TaskState};
use crate::a2a::reply::ArtifactUpdate;
use crate::a2a::{v0_3, v1};
use crate::auth::Caller;
use crate::config::AgentConfig;
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::task_events::{Next, Subscription, TaskEvent};
use crate::tasks::{self, Submission};

/// Rendered events not yet taken by the client's connection.
const BUFFERED: usize = 16;

/// The events of one stream, rendered for its protocol version (each one
/// a 1.0 `StreamResponse`, or a 0.3 task / update event).
pub struct TaskStream(mpsc::Receiver<Value>);

impl TaskStream {
    /// The next event; `None` once the stream ended.
    pub async fn next(&mut self) -> Option<Value> {
        self.0.recv().await
    }
}

/// `SendStreamingMessage` / `message/send`: the message's task, followed
/// from `submitted` on.
pub async fn send(
    state: &AppState,
    caller: &Caller,
    agent: &AgentConfig,
    submission: Submission,
    version: ProtocolVersion,
) -> AppResult<TaskStream> {
    let (task, subscription) = tasks::send_streaming(state, caller, agent, submission).await?;
    Ok(follow(state, caller, task, subscription, version))
}

/// `SubscribeToTask` / `tasks/resubscribe`: one of the caller's tasks with
/// `agent`, from now on. Another owner's task is not found, as an unknown
/// id is not.
pub async fn subscribe(
    state: &AppState,
    caller: &Caller,
    agent: &AgentConfig,
    task_id: &str,
    version: ProtocolVersion,
) -> AppResult<TaskStream> {
    // Subscribed before the task is read, the stream misses no change
    // made after the read.
    let subscription = state.events.subscribe(task_id);
    let task = state
        .store
        .get_task(&caller.user, task_id, Some(&agent.name))
        .await
        .map_err(|e| {
            state.metrics.store_error();
            AppError::from(e)
        })?
        .ok_or(AppError::TaskNotFound)?;
    if task.state.is_terminal() {
        return Err(AppError::UnsupportedOperation(format!(
            "the task is {}; a finished task has no updates to follow",
            task.state.as_str()
        )));
    }
    Ok(follow(state, caller, task, subscription, version))
}

/// Whether a stream ends after an event leaving the task in `state`:
/// terminal, or waiting on its owner.
fn ends_stream(state: TaskState) -> bool {
    !state.is_active()
}

/// How one protocol version spells a stream's events.
#[derive(Clone, Copy)]
struct Render(ProtocolVersion);

impl Render {
    fn task(self, task: &Task) -> Value {
        match self.0 {
            ProtocolVersion::V1_0 => v1::stream_task_json(task),
            ProtocolVersion::V0_3 => v0_3::task_json(task, None),
        }
    }

    fn status(self, task: &Task) -> Value {
        match self.0 {
            ProtocolVersion::V1_0 => v1::stream_status_json(task),
            ProtocolVersion::V0_3 => v0_3::status_update_json(task, ends_stream(task.state)),
        }
    }

    fn artifact(self, update: &ArtifactUpdate<'_>) -> Value {
        match self.0 {
            ProtocolVersion::V1_0 => v1::stream_artifact_json(update),
            ProtocolVersion::V0_3 => v0_3::artifact_update_json(update),
        }
    }
}

/// Starts relaying `subscription`'s events after `first`, the task as it
/// stood when the subscription was taken.
fn follow(
    state: &AppState,
    caller: &Caller,
    first: Task,
    subscription: Subscription,
    version: ProtocolVersion,
) -> TaskStream {
    let (events, stream) = mpsc::channel(BUFFERED);
    tokio::spawn(relay(
        state.clone(),
        caller.user.clone(),
        first,
        subscription,
        Render(version),
        events,
    ));
    TaskStream(stream)
}

async fn relay(
    state: AppState,
    owner: String,
    first: Task,
    mut subscription: Subscription,
    render: Render,
    events: mpsc::Sender<Value>,
) {
    if events.send(render.task(&first)).await.is_err() || ends_stream(first.state) {
        return;
    }
    let (mut seen_state, seen_ms) = (first.state, first.updated_ms);
    loop {
        let next = tokio::select! {
            next = subscription.next() => next,
            // The client went away: nothing more to relay.
            () = events.closed() => return,
        };
        let (event, last) = match next {
            Next::Event(TaskEvent::Status(task)) => {
                // The change the opening event already showed.
                if task.state == seen_state && task.updated_ms <= seen_ms {
                    continue;
                }
                seen_state = task.state;
                (render.status(&task), ends_stream(task.state))
            }
            Next::Event(TaskEvent::Artifact {
                task_id,
                context_id,
                artifact,
                append,
                last_chunk,
            }) => {
                let update = ArtifactUpdate {
                    task_id: &task_id,
                    context_id: &context_id,
                    artifact: &artifact,
                    append,
                    last_chunk,
                };
                (render.artifact(&update), false)
            }
            Next::Lagged | Next::Closed => {
                let closed = matches!(next, Next::Closed);
                match state.store.get_task(&owner, &first.id, None).await {
                    Ok(Some(task)) => {
                        seen_state = task.state;
                        (render.task(&task), closed || ends_stream(task.state))
                    }
                    _ => return,
                }
            }
        };
        if events.send(event).await.is_err() || last {
            return;
        }
    }
}
