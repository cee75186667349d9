//! JSON-RPC 2.0 envelope: parsing a request, shaping a response.

use serde_json::{Map, Value, json};

use crate::error::AppError;

/// A well-formed request: `id` is a string, a number or null.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: Value,
    pub method: String,
    pub params: Map<String, Value>,
}

/// Parses a request body. On failure, returns the error and the `id` to
/// answer with (null when it could not be read).
pub fn parse_request(body: &[u8]) -> Result<Request, (AppError, Value)> {
    if std::str::from_utf8(body).is_err() {
        return Err((
            AppError::Parse("request body is not valid UTF-8".into()),
            Value::Null,
        ));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        (
            AppError::Parse(format!("request body is not JSON: {e}")),
            Value::Null,
        )
    })?;
    let Value::Object(mut object) = value else {
        let reason = if value.is_array() {
            "batch requests are not supported"
        } else {
            "a JSON-RPC request is a JSON object"
        };
        return Err((AppError::InvalidRequest(reason.into()), Value::Null));
    };
    let id = match object.remove("id") {
        Some(id @ (Value::String(_) | Value::Number(_))) => id,
        Some(Value::Null) => Value::Null,
        Some(_) => {
            return Err((
                AppError::InvalidRequest("id must be a string or a number".into()),
                Value::Null,
            ));
        }
        None => {
            return Err((
                AppError::InvalidRequest("id is required (notifications are not supported)".into()),
                Value::Null,
            ));
        }
    };
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err((
            AppError::InvalidRequest("jsonrpc must be \"2.0\"".into()),
            id,
        ));
    }
    let method = match object.remove("method") {
        Some(Value::String(m)) if !m.is_empty() => m,
        _ => {
            return Err((
                AppError::InvalidRequest("method must be a non-empty string".into()),
                id,
            ));
        }
    };
    let params = match object.remove("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p,
        Some(_) => {
            return Err((
                AppError::InvalidParams("params must be an object".into()),
                id,
            ));
        }
    };
    Ok(Request { id, method, params })
}

pub fn success(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

pub fn failure(id: &Value, error: &AppError) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": error.rpc_error()})
}

/// `name` (lowerCamel) as its protobuf field name: `historyLength` is
/// `history_length`.
pub fn proto_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The member `name` (lowerCamel) of `params`, under either spelling a
/// ProtoJSON reader accepts: the JSON name or the protobuf field name
/// (A2A 1.0 section 5.5). Both spellings with different values are refused.
pub fn field<'a>(
    params: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a Value>, AppError> {
    let proto = proto_name(name);
    let camel = params.get(name).filter(|v| !v.is_null());
    let snake = (proto != name)
        .then(|| params.get(&proto).filter(|v| !v.is_null()))
        .flatten();
    match (camel, snake) {
        (Some(a), Some(b)) if a != b => Err(AppError::InvalidParams(format!(
            "{name} and {proto} name the same field and disagree"
        ))),
        (Some(v), _) | (None, Some(v)) => Ok(Some(v)),
        (None, None) => Ok(None),
    }
}

/// A required string parameter.
pub fn required_str<'a>(params: &'a Map<String, Value>, name: &str) -> Result<&'a str, AppError> {
    match field(params, name)? {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(_) => Err(AppError::InvalidParams(format!(
            "{name} must be a non-empty string"
        ))),
        None => Err(AppError::InvalidParams(format!("{name} is required"))),
    }
}

pub fn optional_str<'a>(
    params: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, AppError> {
    match field(params, name)? {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(AppError::InvalidParams(format!("{name} must be a string"))),
    }
}

pub fn optional_object<'a>(
    params: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a Map<String, Value>>, AppError> {
    match field(params, name)? {
        None => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(_) => Err(AppError::InvalidParams(format!("{name} must be an object"))),
    }
}

pub fn optional_bool(params: &Map<String, Value>, name: &str) -> Result<Option<bool>, AppError> {
    match field(params, name)? {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(AppError::InvalidParams(format!("{name} must be a boolean"))),
    }
}

/// A non-negative integer parameter (protobuf JSON also allows it quoted).
pub fn optional_count(params: &Map<String, Value>, name: &str) -> Result<Option<usize>, AppError> {
    let bad = || AppError::InvalidParams(format!("{name} must be a non-negative integer"));
    match field(params, name)? {
        None => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(|n| Some(n as usize)).ok_or_else(bad),
        Some(Value::String(s)) => s.parse::<usize>().map(Some).map_err(|_| bad()),
        Some(_) => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(body: &[u8]) -> (i64, Value) {
        let (e, id) = parse_request(body).unwrap_err();
        (e.rpc_error()["code"].as_i64().unwrap(), id)
    }

    #[test]
    fn envelope_errors() {
        assert_eq!(code(b"{not json"), (-32700, Value::Null));
        assert_eq!(code(b"\xff\xfe"), (-32700, Value::Null));
        assert_eq!(code(b"[]"), (-32600, Value::Null));
        assert_eq!(code(b"42"), (-32600, Value::Null));
        assert_eq!(
            code(br#"{"jsonrpc":"2.0","method":"x"}"#),
            (-32600, Value::Null)
        );
        assert_eq!(
            code(br#"{"jsonrpc":"1.0","id":1,"method":"x"}"#),
            (-32600, json!(1))
        );
        assert_eq!(
            code(br#"{"jsonrpc":"2.0","id":"a","method":7}"#),
            (-32600, json!("a"))
        );
        assert_eq!(
            code(br#"{"jsonrpc":"2.0","id":{},"method":"x"}"#),
            (-32600, Value::Null)
        );
        assert_eq!(
            code(br#"{"jsonrpc":"2.0","id":2,"method":"x","params":[1]}"#),
            (-32602, json!(2))
        );
    }

    #[test]
    fn well_formed() {
        let r = parse_request(
            br#"{"jsonrpc":"2.0","id":"r1","method":"tasks/get","params":{"id":"t"}}"#,
        )
        .unwrap();
        assert_eq!(r.id, json!("r1"));
        assert_eq!(r.method, "tasks/get");
        assert_eq!(required_str(&r.params, "id").unwrap(), "t");
        let r = parse_request(br#"{"jsonrpc":"2.0","id":null,"method":"m"}"#).unwrap();
        assert!(r.params.is_empty());
    }

    #[test]
    fn both_spellings_of_a_field() {
        let p = |v: Value| v.as_object().cloned().unwrap();
        assert_eq!(proto_name("historyLength"), "history_length");
        assert_eq!(proto_name("id"), "id");
        let camel = p(json!({"historyLength": 1}));
        let snake = p(json!({"history_length": "1"}));
        assert_eq!(optional_count(&camel, "historyLength").unwrap(), Some(1));
        assert_eq!(optional_count(&snake, "historyLength").unwrap(), Some(1));
        let same = p(json!({"contextId": "c", "context_id": "c"}));
        assert_eq!(optional_str(&same, "contextId").unwrap(), Some("c"));
        for bad in [
            json!({"context_id": 5}),
            json!({"contextId": "a", "context_id": "b"}),
        ] {
            let err = optional_str(&p(bad), "contextId").unwrap_err();
            assert_eq!(err.rpc_error()["code"], -32602);
        }
        assert!(optional_count(&p(json!({"history_length": -1})), "historyLength").is_err());
        assert!(
            optional_bool(&p(json!({"include_artifacts": "yes"})), "includeArtifacts").is_err()
        );
    }
}
