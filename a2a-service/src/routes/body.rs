//! Request bodies: read whole, within `A2A_MAX_BODY`, before any handler
//! runs, and taken by the handlers as bytes or JSON.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde_json::Value;

use crate::error::AppError;

/// Past `A2A_MAX_BODY`, at most this much more of a body is read and
/// dropped before the 413 goes out ([`read_body`]).
const DRAIN_MAX: usize = 64 * 1024 * 1024;
/// And for at most this long, so a client trickling a body cannot hold on.
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// Reads the whole request body, up to `limit`, before any handler runs.
/// A longer one is answered 413 only once the rest of it has been read and
/// dropped (up to [`DRAIN_MAX`] past the limit, within [`DRAIN_TIME`]): an
/// answer sent while the client is still sending closes the connection with
/// unread data, the kernel resets it, and the client behind Envoy gets
/// Envoy's 503 instead of this 413.
pub(super) async fn read_body(
    State(limit): State<usize>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, mut body) = request.into_parts();
    let allowance = limit.saturating_add(DRAIN_MAX);
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(declared) = declared.filter(|n| *n > limit as u64) {
        // Past the allowance too: no point reading what must be cut anyway.
        if declared <= allowance as u64 {
            drain(body, allowance).await;
        }
        return AppError::PayloadTooLarge(limit).into_response();
    }
    let mut kept = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return AppError::BadRequest("cannot read the request body".into()).into_response();
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let read = kept.len() + data.len();
        if read > limit {
            drain(body, allowance.saturating_sub(read)).await;
            return AppError::PayloadTooLarge(limit).into_response();
        }
        kept.extend_from_slice(&data);
    }
    next.run(Request::from_parts(parts, Body::from(kept))).await
}

/// Reads and drops up to `budget` bytes of `body`, for at most [`DRAIN_TIME`].
async fn drain(mut body: Body, budget: usize) {
    let discard = async {
        let mut left = budget;
        while let Some(Ok(frame)) = body.frame().await {
            let n = frame.data_ref().map_or(0, Bytes::len);
            let Some(rest) = left.checked_sub(n) else {
                return;
            };
            left = rest;
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, discard).await;
}

/// The buffered body. [`read_body`] has read it already, within
/// `A2A_MAX_BODY` (past it, the request never reaches a handler).
pub(super) fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, AppError> {
    body.map_err(|_| AppError::BadRequest("cannot read the request body".into()))
}

/// A JSON body for the plain (non-JSON-RPC) routes.
pub(super) fn json_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Value, AppError> {
    let bytes = body_bytes(body)?;
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or_default().to_ascii_lowercase();
        if !ct.starts_with("application/json") && !ct.contains("+json") {
            return Err(AppError::UnsupportedMediaType);
        }
    }
    if std::str::from_utf8(&bytes).is_err() {
        return Err(AppError::BadRequest(
            "request body is not valid UTF-8".into(),
        ));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| AppError::BadRequest(format!("request body is not valid JSON: {e}")))
}
