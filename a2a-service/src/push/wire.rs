//! Push config wire shapes: A2A 1.0 `TaskPushNotificationConfig` (section
//! 4.3.1, with `AuthenticationInfo` of section 4.3.2: one `scheme`) and the
//! 0.3 form (`pushNotificationConfig` nested under `taskId`,
//! `authentication.schemes` a list).

use axum::http::HeaderValue;
use serde_json::{Map, Value, json};

use crate::a2a::jsonrpc::{optional_object, optional_str, required_str};
use crate::error::AppError;
use crate::store::PushConfig;

const MAX_URL: usize = 2048;
const MAX_ID: usize = 128;
const MAX_SECRET: usize = 4096;

fn bad(reason: impl Into<String>) -> AppError {
    AppError::InvalidParams(reason.into())
}

/// A config as a caller asked for it, before it names its task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewConfig {
    pub id: Option<String>,
    pub url: String,
    pub token: Option<String>,
    pub auth_scheme: Option<String>,
    pub auth_credentials: Option<String>,
}

impl NewConfig {
    /// Lengths and header syntax, so that every stored config can be sent.
    fn checked(self) -> Result<Self, AppError> {
        if self.url.len() > MAX_URL {
            return Err(bad(format!("url is longer than {MAX_URL} bytes")));
        }
        if self.id.as_ref().is_some_and(|id| id.len() > MAX_ID) {
            return Err(bad(format!("id is longer than {MAX_ID} bytes")));
        }
        let header_safe = |name: &str, v: &Option<String>| match v {
            Some(v) if v.len() > MAX_SECRET => {
                Err(bad(format!("{name} is longer than {MAX_SECRET} bytes")))
            }
            Some(v) if HeaderValue::from_str(v).is_err() => Err(bad(format!(
                "{name} must be visible ASCII, as it is sent in an HTTP header"
            ))),
            _ => Ok(()),
        };
        header_safe("token", &self.token)?;
        header_safe("authentication.credentials", &self.auth_credentials)?;
        match &self.auth_scheme {
            Some(s) if s.is_empty() || !s.bytes().all(|b| b.is_ascii_graphic()) => {
                return Err(bad(
                    "authentication.scheme must be an HTTP authentication scheme name",
                ));
            }
            _ => {}
        }
        Ok(self)
    }
}

fn nonempty(value: Option<&str>) -> Option<String> {
    value.filter(|v| !v.is_empty()).map(str::to_string)
}

/// A 1.0 `TaskPushNotificationConfig`: the task it names (empty inside a
/// SendMessage, whose task is the new one) and the config.
pub fn parse_v1(obj: &Map<String, Value>) -> Result<(Option<String>, NewConfig), AppError> {
    let (auth_scheme, auth_credentials) = match optional_object(obj, "authentication")? {
        None => (None, None),
        Some(auth) => (
            Some(required_str(auth, "scheme")?.to_string()),
            nonempty(optional_str(auth, "credentials")?),
        ),
    };
    let config = NewConfig {
        id: nonempty(optional_str(obj, "id")?),
        url: required_str(obj, "url")?.to_string(),
        token: nonempty(optional_str(obj, "token")?),
        auth_scheme,
        auth_credentials,
    };
    Ok((nonempty(optional_str(obj, "taskId")?), config.checked()?))
}

/// A 0.3 `PushNotificationConfig` (the object under
/// `pushNotificationConfig`).
pub fn parse_v0_3(obj: &Map<String, Value>) -> Result<NewConfig, AppError> {
    let (auth_scheme, auth_credentials) = match optional_object(obj, "authentication")? {
        None => (None, None),
        Some(auth) => {
            let scheme = match auth.get("schemes") {
                Some(Value::Array(s)) => s.first().and_then(Value::as_str),
                _ => None,
            }
            .ok_or_else(|| bad("authentication.schemes must name a scheme"))?;
            (
                Some(scheme.to_string()),
                nonempty(optional_str(auth, "credentials")?),
            )
        }
    };
    NewConfig {
        id: nonempty(optional_str(obj, "id")?),
        url: required_str(obj, "url")?.to_string(),
        token: nonempty(optional_str(obj, "token")?),
        auth_scheme,
        auth_credentials,
    }
    .checked()
}

fn auth_fields(c: &PushConfig, scheme_field: &str, scheme: Value) -> Option<Value> {
    c.auth_scheme.as_ref()?;
    let mut auth = Map::new();
    auth.insert(scheme_field.into(), scheme);
    if let Some(cred) = &c.auth_credentials {
        auth.insert("credentials".into(), json!(cred));
    }
    Some(Value::Object(auth))
}

fn config_fields(c: &PushConfig, auth: Option<Value>) -> Map<String, Value> {
    let mut obj = Map::new();
    obj.insert("id".into(), json!(c.id));
    obj.insert("url".into(), json!(c.url));
    if let Some(t) = &c.token {
        obj.insert("token".into(), json!(t));
    }
    if let Some(a) = auth {
        obj.insert("authentication".into(), a);
    }
    obj
}

/// A stored config as a 1.0 `TaskPushNotificationConfig`.
pub fn v1_json(c: &PushConfig) -> Value {
    let auth = auth_fields(c, "scheme", json!(c.auth_scheme));
    let mut obj = config_fields(c, auth);
    obj.insert("taskId".into(), json!(c.task_id));
    Value::Object(obj)
}

/// A stored config as a 0.3 `TaskPushNotificationConfig`.
pub fn v0_3_json(c: &PushConfig) -> Value {
    let auth = auth_fields(c, "schemes", json!([c.auth_scheme]));
    json!({
        "taskId": c.task_id,
        "pushNotificationConfig": Value::Object(config_fields(c, auth)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    fn stored(new: NewConfig, task: &str) -> PushConfig {
        PushConfig {
            id: new.id.unwrap_or_else(|| "c1".into()),
            task_id: task.into(),
            owner: "alice".into(),
            url: new.url,
            token: new.token,
            auth_scheme: new.auth_scheme,
            auth_credentials: new.auth_credentials,
            protocol: "1.0".into(),
            created_ms: 0,
        }
    }

    #[test]
    fn v1_round_trip() {
        let wire = json!({
            "id": "c1", "taskId": "t1", "url": "https://hooks.example/x", "token": "tok",
            "authentication": {"scheme": "Bearer", "credentials": "secret"}
        });
        let (task, new) = parse_v1(&obj(wire.clone())).unwrap();
        assert_eq!(task.as_deref(), Some("t1"));
        assert_eq!(v1_json(&stored(new, "t1")), wire);
        // snake_case names are the same fields.
        let (task, _) = parse_v1(&obj(json!({"task_id": "t2", "url": "http://h/"}))).unwrap();
        assert_eq!(task.as_deref(), Some("t2"));
    }

    #[test]
    fn v0_3_round_trip() {
        let inner = json!({
            "id": "c1", "url": "https://hooks.example/x",
            "authentication": {"schemes": ["Bearer"], "credentials": "secret"}
        });
        let new = parse_v0_3(&obj(inner.clone())).unwrap();
        assert_eq!(new.auth_scheme.as_deref(), Some("Bearer"));
        assert_eq!(
            v0_3_json(&stored(new, "t1")),
            json!({"taskId": "t1", "pushNotificationConfig": inner})
        );
    }

    #[test]
    fn refuses_what_cannot_be_sent() {
        for wire in [
            json!({}),
            json!({"url": ""}),
            json!({"url": "http://h/", "token": "a\r\nX-Evil: 1"}),
            json!({"url": "http://h/", "authentication": {}}),
            json!({"url": "http://h/", "authentication": {"scheme": "Bad Scheme"}}),
            json!({"url": format!("http://h/{}", "a".repeat(MAX_URL))}),
        ] {
            assert!(parse_v1(&obj(wire.clone())).is_err(), "{wire}");
        }
        let no_scheme = json!({"url": "http://h/", "authentication": {"schemes": []}});
        assert!(parse_v0_3(&obj(no_scheme)).is_err());
    }
}
