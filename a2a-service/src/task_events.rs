//! Live task events for the streams that follow a task (A2A 1.0 sections
//! 3.1.2 and 3.1.6): every state change and every artifact an agent
//! streams is published here, and each open stream holds a subscription
//! to its task.
//!
//! A task has a channel only while someone follows it: the first
//! subscription opens it, and it closes when the last one goes (a client
//! that disconnects) or when the task ends, so nothing outlives its
//! readers. A publish to a task nobody follows costs one map lookup.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::a2a::model::{Artifact, Task};

/// Events a subscriber may fall behind by before it is told it lagged
/// (and re-reads the task from the store).
const BACKLOG: usize = 64;

/// One event of a task, as its followers see it.
#[derive(Clone, Debug)]
pub enum TaskEvent {
    /// The task after a change of state or status message.
    Status(Arc<Task>),
    /// An artifact, or a chunk of one, as the agent streamed it.
    Artifact {
        task_id: String,
        context_id: String,
        artifact: Artifact,
        append: bool,
        last_chunk: bool,
    },
}

#[derive(Clone, Default)]
pub struct TaskEvents(Arc<Hub>);

#[derive(Default)]
struct Hub {
    channels: Mutex<HashMap<String, broadcast::Sender<TaskEvent>>>,
    /// Subscriptions open now, for the service's metrics.
    open: AtomicU64,
}

impl TaskEvents {
    /// Follows `task_id` from now on.
    pub fn subscribe(&self, task_id: &str) -> Subscription {
        let receiver = match self.0.channels.lock() {
            Ok(mut channels) => channels
                .entry(task_id.to_string())
                .or_insert_with(|| broadcast::channel(BACKLOG).0)
                .subscribe(),
            // A poisoned map cannot be trusted with new readers: this one
            // gets a closed channel and reads the store instead.
            Err(_) => broadcast::channel(1).1,
        };
        self.0.open.fetch_add(1, Ordering::Relaxed);
        Subscription {
            receiver: Some(receiver),
            task_id: task_id.to_string(),
            hub: self.0.clone(),
        }
    }

    /// The task's new state, for everyone following it; a task that can
    /// change no more closes its channel after this last event.
    pub fn status(&self, task: &Task) {
        let ends = task.state.is_terminal();
        self.publish(&task.id, ends, || TaskEvent::Status(Arc::new(task.clone())));
    }

    /// An artifact the agent streamed, for everyone following its task.
    pub fn artifact(&self, task: &Task, artifact: &Artifact, append: bool, last_chunk: bool) {
        self.publish(&task.id, false, || TaskEvent::Artifact {
            task_id: task.id.clone(),
            context_id: task.context_id.clone(),
            artifact: artifact.clone(),
            append,
            last_chunk,
        });
    }

    /// Sends what `event` builds (only built when someone follows the task).
    fn publish(&self, task_id: &str, ends: bool, event: impl FnOnce() -> TaskEvent) {
        let Ok(mut channels) = self.0.channels.lock() else {
            return;
        };
        if let Some(sender) = channels.get(task_id) {
            // An error means nobody reads any more: the channel goes.
            if sender.send(event()).is_err() || ends {
                channels.remove(task_id);
            }
        }
    }

    /// Subscriptions open now.
    pub fn open(&self) -> u64 {
        self.0.open.load(Ordering::Relaxed)
    }

    /// Tasks with a channel now.
    pub fn followed(&self) -> usize {
        self.0.channels.lock().map_or(0, |c| c.len())
    }
}

/// One follower of one task; dropping it is unsubscribing.
pub struct Subscription {
    receiver: Option<broadcast::Receiver<TaskEvent>>,
    task_id: String,
    hub: Arc<Hub>,
}

/// What waiting on a subscription gives.
#[derive(Debug)]
pub enum Next {
    Event(TaskEvent),
    /// Events were lost to a slow reader: the store has the task's state.
    Lagged,
    /// The task's channel closed (it ended, or the hub is unusable).
    Closed,
}

impl Subscription {
    pub async fn next(&mut self) -> Next {
        let Some(receiver) = self.receiver.as_mut() else {
            return Next::Closed;
        };
        match receiver.recv().await {
            Ok(event) => Next::Event(event),
            Err(broadcast::error::RecvError::Lagged(_)) => Next::Lagged,
            Err(broadcast::error::RecvError::Closed) => Next::Closed,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // Unsubscribe before looking, so the count no longer holds this one.
        drop(self.receiver.take());
        self.hub.open.fetch_sub(1, Ordering::Relaxed);
        if let Ok(mut channels) = self.hub.channels.lock() {
            if channels
                .get(&self.task_id)
                .is_some_and(|s| s.receiver_count() == 0)
            {
                channels.remove(&self.task_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::a2a::model::TaskState;
    use serde_json::json;

    fn task(id: &str, state: TaskState) -> Task {
        Task {
            id: id.into(),
            context_id: "c".into(),
            owner: "alice".into(),
            session: "s".into(),
            agent: "a".into(),
            state,
            input: json!(null),
            history: Vec::new(),
            artifacts: Vec::new(),
            status_message: None,
            result: None,
            error: None,
            created_ms: 0,
            updated_ms: 0,
            deadline_ms: 0,
            agent_task_id: None,
            actors: Default::default(),
            delegated_to: None,
        }
    }

    #[tokio::test]
    async fn every_follower_sees_every_event_in_order() {
        let hub = TaskEvents::default();
        let mut first = hub.subscribe("t");
        let mut second = hub.subscribe("t");
        hub.status(&task("t", TaskState::Working));
        hub.status(&task("other", TaskState::Working));
        hub.status(&task("t", TaskState::Completed));
        for sub in [&mut first, &mut second] {
            for expected in [TaskState::Working, TaskState::Completed] {
                match sub.next().await {
                    Next::Event(TaskEvent::Status(t)) => assert_eq!(t.state, expected),
                    other => panic!("{other:?}"),
                }
            }
            // The task ended: its channel is gone.
            assert!(matches!(sub.next().await, Next::Closed));
        }
        assert_eq!(hub.followed(), 0);
    }

    #[tokio::test]
    async fn the_last_follower_leaving_closes_the_channel() {
        let hub = TaskEvents::default();
        let first = hub.subscribe("t");
        let second = hub.subscribe("t");
        assert_eq!((hub.open(), hub.followed()), (2, 1));
        drop(first);
        assert_eq!((hub.open(), hub.followed()), (1, 1));
        drop(second);
        assert_eq!((hub.open(), hub.followed()), (0, 0));
        // Nobody follows: publishing opens nothing.
        hub.status(&task("t", TaskState::Working));
        assert_eq!(hub.followed(), 0);
    }

    #[tokio::test]
    async fn a_slow_follower_is_told_it_lagged() {
        let hub = TaskEvents::default();
        let mut slow = hub.subscribe("t");
        for _ in 0..BACKLOG + 1 {
            hub.status(&task("t", TaskState::Working));
        }
        assert!(matches!(slow.next().await, Next::Lagged));
        assert!(matches!(slow.next().await, Next::Event(_)));
    }
}
