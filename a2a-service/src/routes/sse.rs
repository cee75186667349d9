//! A task stream as a `text/event-stream` answer (the JSON-RPC binding's
//! and the HTTP+JSON binding's streaming shape): one event per stream
//! event, its data the event's JSON on one line, and a comment every few
//! seconds while the task is quiet, so that proxies between the client and
//! the gateway do not take a long task for a dead connection.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use serde_json::Value;

use crate::task_streams::TaskStream;

/// How often a quiet stream says it is alive.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Answers `events`, each one passed through `wrap` (the JSON-RPC binding
/// puts each in a response envelope; the HTTP+JSON binding sends it bare).
pub fn answer(events: TaskStream, wrap: fn(&Value, Value) -> Value, id: Value) -> Response {
    let events = stream::unfold((events, id), move |(mut events, id)| async move {
        let event = events.next().await?;
        let data = wrap(&id, event).to_string();
        Some((
            Ok::<_, Infallible>(Event::default().data(data)),
            (events, id),
        ))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}
