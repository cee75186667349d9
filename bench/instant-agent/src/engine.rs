//! A model engine that streams at once: `POST /api/chat` is answered with
//! Ollama's NDJSON (`application/x-ndjson`, chunked), five content frames
//! and a final `done: true` frame with token counts, so that a benchmark of
//! the gateway's memory mirror measures the gateway and not the engine.
//!
//! Frames are not delayed: the body yields one frame, then tells hyper it is
//! not ready (waking itself at once), so each frame after the first leaves
//! in its own write instead of all of them in one.
//!
//! `GET /stats` answers `{"requests": N, "finished": M}`: chat requests
//! received, and replies whose last frame was handed to the connection.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body::Frame;
use serde_json::json;

static REQUESTS: AtomicU64 = AtomicU64::new(0);
static FINISHED: AtomicU64 = AtomicU64::new(0);

const MODEL: &str = "bench";
const CREATED_AT: &str = "2025-01-01T00:00:00Z";
const PIECES: [&str; 5] = ["Hello", " from", " the", " bench", " engine."];

/// The reply's frames, handed out one per poll with a yield in between.
struct Ndjson {
    frames: VecDeque<Bytes>,
    /// The next poll may hand out a frame (else it yields first).
    ready: bool,
}

impl http_body::Body for Ndjson {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        let Some(frame) = this.frames.pop_front() else {
            return Poll::Ready(None);
        };
        if !this.ready {
            // Let hyper write what it holds before the next frame.
            this.frames.push_front(frame);
            this.ready = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.ready = false;
        if this.frames.is_empty() {
            FINISHED.fetch_add(1, Ordering::Relaxed);
        }
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
    }
}

/// `{"model":…,"created_at":…,"message":{…},"done":false}` per piece, in
/// Ollama's field order, then the `done: true` frame with the counts.
fn frames(prompt_bytes: usize) -> VecDeque<Bytes> {
    let mut out: VecDeque<Bytes> = PIECES
        .iter()
        .map(|piece| {
            Bytes::from(format!(
                "{{\"model\":\"{MODEL}\",\"created_at\":\"{CREATED_AT}\",\
                 \"message\":{{\"role\":\"assistant\",\"content\":\"{piece}\"}},\"done\":false}}\n"
            ))
        })
        .collect();
    let prompt_tokens = prompt_bytes.div_ceil(4).max(1);
    let reply_tokens = PIECES.len();
    out.push_back(Bytes::from(format!(
        "{{\"model\":\"{MODEL}\",\"created_at\":\"{CREATED_AT}\",\
         \"message\":{{\"role\":\"assistant\",\"content\":\"\"}},\"done\":true,\
         \"done_reason\":\"stop\",\"prompt_eval_count\":{prompt_tokens},\"eval_count\":{reply_tokens}}}\n"
    )));
    out
}

async fn chat(body: Bytes) -> Response {
    REQUESTS.fetch_add(1, Ordering::Relaxed);
    let stream = Ndjson {
        frames: frames(body.len()),
        ready: true,
    };
    ([(CONTENT_TYPE, "application/x-ndjson")], Body::new(stream)).into_response()
}

async fn stats() -> Json<serde_json::Value> {
    Json(json!({
        "requests": REQUESTS.load(Ordering::Relaxed),
        "finished": FINISHED.load(Ordering::Relaxed),
    }))
}

pub fn router() -> Router {
    Router::new()
        .route("/api/chat", post(chat))
        .route("/stats", get(stats))
}
