//! A2A 1.0 HTTP+JSON binding shapes (specification section 11): how a REST
//! request's path and query become an operation's request message, and how
//! an error becomes a `google.rpc.Status` body. The operations themselves
//! are the JSON-RPC binding's, reached by their method names, so the two
//! bindings cannot drift apart.

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::jsonrpc::field;
use crate::error::{AppError, error_info};

/// The longest task id a path may carry; the service issues UUIDs.
const MAX_TASK_ID: usize = 128;

/// Query members that are booleans in their request message: a query string
/// carries only text (section 11.5), the operations read JSON types.
const BOOLEAN_QUERY: [&str; 1] = ["includeArtifacts"];

/// What `POST …/tasks/{id}:{verb}` asks for (section 11.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskVerb {
    Cancel,
    Subscribe,
}

/// A task id taken from a path segment. The ids the service issues are
/// UUIDs, so one holding anything but RFC 3986 unreserved characters names
/// no task of anyone's: it is refused as malformed instead of looked up.
pub fn task_id(segment: &str) -> Result<&str, AppError> {
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || b"-._~".contains(&b);
    if segment.is_empty() || segment.len() > MAX_TASK_ID || !segment.bytes().all(unreserved) {
        return Err(AppError::InvalidParams(format!(
            "a task id is 1 to {MAX_TASK_ID} letters, digits, '-', '.', '_' or '~'"
        )));
    }
    Ok(segment)
}

/// The `{id}:{verb}` segment of a task's custom method: the id and the verb.
/// A verb the binding does not define is a method this service lacks.
pub fn task_verb(segment: &str) -> Result<(&str, TaskVerb), AppError> {
    let Some((id, verb)) = segment.rsplit_once(':') else {
        return Err(no_such_method());
    };
    let verb = match verb {
        "cancel" => TaskVerb::Cancel,
        "subscribe" => TaskVerb::Subscribe,
        _ => return Err(no_such_method()),
    };
    Ok((task_id(id)?, verb))
}

fn no_such_method() -> AppError {
    AppError::MethodNotFound("tasks take the custom methods :cancel and :subscribe".into())
}

/// The request message a query string spells (section 11.5): each member
/// once, under its camelCase (or protobuf) name, booleans as `true`/`false`.
pub fn query_params(pairs: Vec<(String, String)>) -> Result<Map<String, Value>, AppError> {
    let mut params = Map::new();
    for (name, text) in pairs {
        let boolean = BOOLEAN_QUERY
            .iter()
            .any(|b| *b == name || super::jsonrpc::proto_name(b) == name);
        let value = match text.as_str() {
            "true" if boolean => Value::Bool(true),
            "false" if boolean => Value::Bool(false),
            _ => Value::String(text),
        };
        if params.insert(name.clone(), value).is_some() {
            let shown: String = name.chars().take(64).collect();
            return Err(AppError::InvalidParams(format!(
                "query parameter {shown:?} is given more than once"
            )));
        }
    }
    Ok(params)
}

/// `params` with the member `name` the path gave; one the query or body
/// also gives must agree with it.
pub fn with_path_field(
    mut params: Map<String, Value>,
    name: &str,
    value: &str,
) -> Result<Map<String, Value>, AppError> {
    match field(&params, name)? {
        Some(given) if given.as_str() != Some(value) => Err(AppError::InvalidParams(format!(
            "{name} differs from the one in the path"
        ))),
        _ => {
            params.insert(name.into(), json!(value));
            Ok(params)
        }
    }
}

/// An error as the HTTP+JSON binding answers it (section 11.6): the HTTP
/// status of section 5.4, and a `google.rpc.Status` whose details carry the
/// `ErrorInfo` that tells apart A2A errors sharing a status. Malformed
/// requests get one too (as the SDKs' servers send), since a 400 alone does
/// not say whether the request or the task's state was wrong.
pub fn error(e: &AppError) -> (StatusCode, Value) {
    use AppError::*;
    let (status, name) = match e {
        TaskNotFound => (StatusCode::NOT_FOUND, "NOT_FOUND"),
        TaskNotCancelable(_)
        | PushNotificationNotSupported
        | UnsupportedOperation(_)
        | VersionNotSupported(_) => (StatusCode::BAD_REQUEST, "FAILED_PRECONDITION"),
        other => (other.status(), canonical_code(other.status())),
    };
    let rpc = e.rpc_error();
    let details = match (&rpc["data"], e) {
        (Value::Array(info), _) => info.clone(),
        (_, Parse(_) | InvalidRequest(_)) => vec![error_info("INVALID_REQUEST")],
        (_, InvalidParams(_) | BadRequest(_)) => vec![error_info("INVALID_PARAMS")],
        (_, MethodNotFound(_)) => vec![error_info("METHOD_NOT_FOUND")],
        _ => Vec::new(),
    };
    let body = json!({"error": {
        "code": status.as_u16(),
        "status": name,
        "message": rpc["message"],
        "details": details,
    }});
    (status, body)
}

/// The `google.rpc.Code` name of an HTTP status, as Google's HTTP mapping
/// pairs them.
fn canonical_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 413 | 415 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        502 | 503 => "UNAVAILABLE",
        _ => "INTERNAL",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn task_verb_segments() {
        let id = "0b7e2c1a-5f4d-4e7b-9a1c-3d2e1f0a9b8c";
        assert_eq!(
            task_verb(&format!("{id}:cancel")).unwrap(),
            (id, TaskVerb::Cancel)
        );
        assert_eq!(
            task_verb("t-1:subscribe").unwrap(),
            ("t-1", TaskVerb::Subscribe)
        );
        // The verb is the last colon's: an id holding one is refused, not split.
        let e = task_verb("a:b:cancel").unwrap_err();
        assert_eq!(e.rpc_error()["code"], -32602);
        for unknown in ["t-1", "t-1:", "t-1:Cancel", "t-1:delete", ":"] {
            let e = task_verb(unknown).unwrap_err();
            assert_eq!(e.rpc_error()["code"], -32601, "{unknown}");
        }
        assert_eq!(
            task_verb(":cancel").unwrap_err().rpc_error()["code"],
            -32602
        );
    }

    #[test]
    fn odd_task_ids_are_refused() {
        for good in ["t", "0b7e2c1a-5f4d", "A.b_c~d"] {
            assert_eq!(task_id(good).unwrap(), good);
        }
        let long = "a".repeat(MAX_TASK_ID + 1);
        for bad in [
            "",
            "a/b",
            "a b",
            "a%2Fb",
            "..\\x",
            "t\u{0}",
            "tâche",
            "a?b",
            "a#b",
            long.as_str(),
        ] {
            let e = task_id(bad).unwrap_err();
            assert_eq!(error(&e).0, StatusCode::BAD_REQUEST, "{bad:?}");
        }
    }

    #[test]
    fn query_strings() {
        let p = query_params(pairs(&[
            ("includeArtifacts", "true"),
            ("history_length", "2"),
            ("status", "TASK_STATE_WORKING"),
        ]))
        .unwrap();
        assert_eq!(p["includeArtifacts"], true);
        assert_eq!(p["history_length"], "2");
        let p = query_params(pairs(&[("include_artifacts", "false")])).unwrap();
        assert_eq!(p["include_artifacts"], false);
        // Not a boolean: left as text, for the operation to refuse.
        let p = query_params(pairs(&[("includeArtifacts", "yes")])).unwrap();
        assert_eq!(p["includeArtifacts"], "yes");
        assert!(query_params(pairs(&[("pageSize", "1"), ("pageSize", "2")])).is_err());
    }

    #[test]
    fn path_fields() {
        let body = json!({"id": "t-1", "metadata": {}})
            .as_object()
            .cloned()
            .unwrap();
        let p = with_path_field(body.clone(), "id", "t-1").unwrap();
        assert_eq!(p["id"], "t-1");
        assert!(with_path_field(body, "id", "t-2").is_err());
        let p = with_path_field(Map::new(), "taskId", "t-3").unwrap();
        assert_eq!(p["taskId"], "t-3");
        let snake = json!({"task_id": "x"}).as_object().cloned().unwrap();
        assert!(with_path_field(snake, "taskId", "t-3").is_err());
    }

    #[test]
    fn status_bodies() {
        let (status, body) = error(&AppError::TaskNotFound);
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"]["code"], 404);
        assert_eq!(body["error"]["status"], "NOT_FOUND");
        let info = &body["error"]["details"][0];
        assert_eq!(info["@type"], "type.googleapis.com/google.rpc.ErrorInfo");
        assert_eq!(info["reason"], "TASK_NOT_FOUND");
        assert_eq!(info["domain"], "a2a-protocol.org");
        let (status, body) = error(&AppError::TaskNotCancelable("done".into()));
        assert_eq!(status, StatusCode::BAD_REQUEST, "section 5.4, not 409");
        assert_eq!(body["error"]["status"], "FAILED_PRECONDITION");
        assert_eq!(body["error"]["details"][0]["reason"], "TASK_NOT_CANCELABLE");
        let (status, body) = error(&AppError::PushNotificationNotSupported);
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body["error"]["details"][0]["reason"],
            "PUSH_NOTIFICATION_NOT_SUPPORTED"
        );
        let (status, body) = error(&AppError::InvalidParams("pageSize".into()));
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
        assert_eq!(body["error"]["details"][0]["reason"], "INVALID_PARAMS");
        let (status, body) = error(&AppError::Store("pool timed out at 10.0.0.5".into()));
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["status"], "UNAVAILABLE");
        assert!(!body.to_string().contains("10.0.0.5"), "{body}");
        assert_eq!(body["error"]["details"], json!([]));
    }
}
