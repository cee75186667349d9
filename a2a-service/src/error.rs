//! The crate's one error type, answered either as HTTP
//! (`{"error": "...", "message": "..."}`) or as a JSON-RPC error object.

use attach_contract::delegation::{ChainError, MAX_DEPTH};
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

#[derive(Debug)]
pub enum AppError {
    // JSON-RPC envelope and protocol errors.
    Parse(String),
    InvalidRequest(String),
    MethodNotFound(String),
    InvalidParams(String),
    VersionNotSupported(String),
    UnsupportedOperation(String),
    PushNotificationNotSupported,
    TaskNotFound,
    TaskNotCancelable(String),
    /// A hand-off to `agent` whose delegation chain breaks its rules
    /// (`a2a/handoff.rs`): refused before the task exists.
    DelegationRefused {
        agent: String,
        refusal: ChainError,
    },
    // HTTP-level errors.
    Unauthorized(String),
    /// The caller is known but may not do this.
    Forbidden(String),
    BadRequest(String),
    NotFound(String),
    UnknownAgent(String),
    PayloadTooLarge(usize),
    UnsupportedMediaType,
    Store(String),
    /// A memory read from Weaviate failed: the caller's reason, and the
    /// detail for the log.
    MemoryBackend {
        reason: &'static str,
        detail: String,
    },
    Internal(String),
}

pub type AppResult<T> = Result<T, AppError>;

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        AppError::Store(one_line(&e.to_string()))
    }
}

/// Collapses a message to one line.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl AppError {
    fn http_parts(&self) -> (StatusCode, &'static str, String) {
        use AppError::*;
        match self {
            Parse(m) => (StatusCode::BAD_REQUEST, "invalid_json", m.clone()),
            InvalidRequest(m) | InvalidParams(m) | BadRequest(m) => {
                (StatusCode::BAD_REQUEST, "bad_request", m.clone())
            }
            MethodNotFound(m) => (StatusCode::NOT_FOUND, "not_found", m.clone()),
            VersionNotSupported(m) => (StatusCode::BAD_REQUEST, "version_not_supported", m.clone()),
            UnsupportedOperation(m) => (StatusCode::BAD_REQUEST, "unsupported", m.clone()),
            PushNotificationNotSupported => (
                StatusCode::BAD_REQUEST,
                "unsupported",
                "push notifications are not supported".into(),
            ),
            TaskNotFound => (StatusCode::NOT_FOUND, "not_found", "no such task".into()),
            TaskNotCancelable(m) => (StatusCode::CONFLICT, "not_cancelable", m.clone()),
            DelegationRefused { agent, refusal } => (
                StatusCode::FORBIDDEN,
                "delegation_refused",
                match refusal {
                    ChainError::Repeated => format!(
                        "agent {agent:?} already acts in this request's chain: handing it the task would make a loop"
                    ),
                    ChainError::TooDeep => format!(
                        "handing the task to agent {agent:?} would make a chain of more than {MAX_DEPTH} actors"
                    ),
                    ChainError::Malformed => {
                        format!("agent {agent:?} cannot act in a delegation chain")
                    }
                },
            ),
            Unauthorized(m) => (StatusCode::UNAUTHORIZED, "unauthorized", m.clone()),
            Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m.clone()),
            NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m.clone()),
            UnknownAgent(name) => (
                StatusCode::NOT_FOUND,
                "unknown_agent",
                format!("no agent named {name:?} is registered (A2A_AGENTS)"),
            ),
            PayloadTooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("request body exceeds {limit} bytes (A2A_MAX_BODY)"),
            ),
            UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as application/json".into(),
            ),
            Store(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the task store failed".into(),
            ),
            MemoryBackend { reason, .. } => (
                StatusCode::BAD_GATEWAY,
                "memory_backend_unavailable",
                (*reason).into(),
            ),
            Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", m.clone()),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.http_parts().0
    }

    /// The JSON-RPC error object (`code`, `message`, and for the A2A
    /// errors the `data` that A2A 1.0 section 9.5 asks for).
    ///
    /// A refused hand-off is an authorization failure, which A2A 1.0 gives
    /// no JSON-RPC code of its own (section 5.4 maps it to the transport:
    /// HTTP 403, gRPC `PERMISSION_DENIED`, which the HTTP+JSON binding
    /// answers). In JSON-RPC it is `-32602` Invalid params, the standard
    /// code that tells a client its request cannot be carried out as sent,
    /// told apart by its `ErrorInfo` reason `DELEGATION_REFUSED`.
    pub fn rpc_error(&self) -> Value {
        use AppError::*;
        let (code, message, reason) = match self {
            Parse(m) => (-32700, m.clone(), None),
            InvalidRequest(m) => (-32600, m.clone(), None),
            MethodNotFound(m) => (-32601, m.clone(), None),
            InvalidParams(m) | BadRequest(m) => (-32602, m.clone(), None),
            VersionNotSupported(m) => (-32009, m.clone(), Some("VERSION_NOT_SUPPORTED")),
            UnsupportedOperation(m) => (-32004, m.clone(), Some("UNSUPPORTED_OPERATION")),
            PushNotificationNotSupported => (
                -32003,
                self.http_parts().2,
                Some("PUSH_NOTIFICATION_NOT_SUPPORTED"),
            ),
            TaskNotFound => (-32001, "Task not found".to_string(), Some("TASK_NOT_FOUND")),
            TaskNotCancelable(m) => (-32002, m.clone(), Some("TASK_NOT_CANCELABLE")),
            DelegationRefused { .. } => {
                let mut error = json!({"code": -32602, "message": one_line(&self.http_parts().2)});
                error["data"] = json!([gateway_error_info(DELEGATION_REFUSED)]);
                return error;
            }
            Store(_)
            | MemoryBackend { .. }
            | Internal(_)
            | Unauthorized(_)
            | Forbidden(_)
            | NotFound(_)
            | UnknownAgent(_)
            | PayloadTooLarge(_)
            | UnsupportedMediaType => (-32603, self.http_parts().2, None),
        };
        let mut error = json!({"code": code, "message": one_line(&message)});
        if let Some(reason) = reason {
            error["data"] = json!([error_info(reason)]);
        }
        error
    }
}

/// A `google.rpc.ErrorInfo` in its ProtoJSON `Any` form: how A2A names an
/// A2A-specific error independently of the binding's numeric code.
pub(crate) fn error_info(reason: &str) -> Value {
    error_info_in(reason, "a2a-protocol.org")
}

/// The reason of [`AppError::DelegationRefused`], in [`GATEWAY_ERROR_DOMAIN`].
pub const DELEGATION_REFUSED: &str = "DELEGATION_REFUSED";
/// The `ErrorInfo` domain of the gateway's own errors, which A2A does not
/// define.
pub const GATEWAY_ERROR_DOMAIN: &str = "attach-gateway";

fn gateway_error_info(reason: &str) -> Value {
    error_info_in(reason, GATEWAY_ERROR_DOMAIN)
}

fn error_info_in(reason: &str, domain: &str) -> Value {
    json!({
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": domain,
    })
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (status, code, message) = self.http_parts();
        write!(f, "{} {code}: {message}", status.as_u16())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match &self {
            AppError::Store(detail) => eprintln!("attach-a2a: store error: {detail}"),
            AppError::MemoryBackend { detail, .. } => {
                eprintln!("attach-a2a: memory backend error: {detail}")
            }
            _ => {}
        }
        let (status, code, message) = self.http_parts();
        (
            status,
            Json(json!({"error": code, "message": one_line(&message)})),
        )
            .into_response()
    }
}
